//! `masklab face-attributes PHOTOS --out attributes.csv`: gender and age of every face as
//! FaceRes's own heads read them (HSE FaceRes: trained on VGGFace2, then IMDB-Wiki age and gender;
//! never on this task). A reader that needs no training, and a second opinion to set beside a
//! trained model's answers: on bare, tightly cropped UTKFace faces it reads gender and age better
//! than the CPU preset learns to; under masks, and on the stand-in's photos, it reads age worse
//! (README, Presets). `--features` adds the pooled features, for heads of one's own.
//!
//! The faces come from the folder's `faces.csv`, brought up to date first exactly as `masklab
//! faces PHOTOS` does. Each face is framed and read as the face heads of `tune --face-heads` read
//! faces ([`crate::face_heads::features`]: the MTCNN box grown by `margin` on every side, made
//! square, resized to 224 x 224, scaled as the network was trained). Photos without a face get
//! no row; they are counted.
//! Rows name photos by their path below the folder given (`train/images/...` and
//! `eval/images/...` for a dataset).
use crate::data::face_detection::{find_sets, set_faces, FacesOptions, SetFaces};
use crate::data::dataset::ReadOptions;
use crate::device::DeviceChoice;
use crate::faces::cache::relative_key;
use crate::face_heads::features::{crop_face, FaceReader};
use crate::face_heads::FaceReading;
use crate::image::decode::{read_upright, RgbImage};
use crate::labels::AgeBounds;
use crate::model::faceres;
use crate::image::batch::batch_u8;
use crate::util::write_atomic;
use anyhow::{anyhow, Context, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The columns of the file written: the face, then P(male), the authors' age estimate in years,
/// and the age distribution summed over masklab's three bands (young, middle, old).
pub const COLUMNS: [&str; 12] = ["image", "face", "x1", "y1", "x2", "y2", "score", "male", "age", "young", "middle", "old"];

/// The margin the parity test frames FaceRes's faces with (the authors grow the box by 10 pixels).
pub const DEFAULT_MARGIN: f32 = 0.1;

#[derive(Clone, Debug)]
pub struct AttributeOptions {
    /// A dataset, its train or eval folder, or any folder of photos.
    pub photos: PathBuf,
    pub out: PathBuf,
    /// `faceres` or `faceres-deep` (fetched into the weights cache when missing).
    pub weights: String,
    pub device: DeviceChoice,
    /// Faces per network step.
    pub batch_size: usize,
    /// MTCNN's weight folder (needed only when some photo is not in faces.csv yet).
    pub face_weights: PathBuf,
    pub min_face: f64,
    pub skip_bad: bool,
    /// One row per photo: its largest face.
    pub largest_only: bool,
    /// The face box grown by this share of its size on every side before it is squared.
    pub margin: f32,
    /// Where the three age bands start and end.
    pub bounds: AgeBounds,
    /// Also the 1,024 pooled features (`f0..f1023`: the face descriptor Human matches faces by).
    pub features: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct AttributeSummary {
    pub images: usize,
    pub faces: usize,
    /// Photos in which the detector found no face (no row).
    pub without_face: usize,
    pub skipped: Vec<String>,
    pub seconds: f64,
}

/// One face to read.
struct Item {
    image: String,
    face: usize,
    bbox: [f32; 4],
    score: f32,
}

/// What the network says about a batch of `[N, 224, 224, 3]` RGB crops: per face P(male), age in
/// years and the three band probabilities, then (with `features`) the 1,024 pooled features.
fn read_batch(reader: &FaceReader, crops: &Tensor, bounds: &AgeBounds, features: bool) -> Result<Vec<Vec<f32>>> {
    let out = reader.forward(crops);
    let mut parts = vec![out.male.unsqueeze(1), out.age_years().unsqueeze(1), out.age_band_probabilities(bounds)];
    if features {
        parts.push(out.features.shallow_clone());
    }
    let columns = Tensor::cat(&parts, 1);
    let width = columns.size()[1] as usize;
    let values = Vec::<f32>::try_from(columns.to_device(tch::Device::Cpu).contiguous().view([-1])).context("FaceRes outputs")?;
    Ok(values.chunks_exact(width).map(<[f32]>::to_vec).collect())
}

pub fn read_attributes(o: &AttributeOptions) -> Result<AttributeSummary> {
    let start = std::time::Instant::now();
    let device = o.device.resolve()?;
    let reader = FaceReader::open(&FaceReading { network: o.weights.clone(), margin: o.margin }, device)?;
    let step = o.batch_size.max(1);

    let read = ReadOptions { skip_bad: o.skip_bad, ..Default::default() };
    let faces_options = FacesOptions { weights: o.face_weights.clone(), device, batch: 16, skip_bad: o.skip_bad, progress: false, min_face: o.min_face };
    let mut summary = AttributeSummary { images: 0, faces: 0, without_face: 0, skipped: Vec::new(), seconds: 0.0 };
    let mut csv = csv::Writer::from_writer(Vec::new());
    let feature_columns = (0..if o.features { faceres::FEATURES } else { 0 }).map(|k| format!("f{k}"));
    csv.write_record(COLUMNS.iter().map(|c| c.to_string()).chain(feature_columns))?;
    // A photo's path relative to the folder given, so that rows of a dataset's train and eval
    // sets never share a name.
    let key_of = |path: &Path| relative_key(&o.photos, path);
    for set in find_sets(&o.photos, &read)? {
        let SetFaces { cache, photos, skipped } = set_faces(&set, &faces_options)?;
        summary.skipped.extend(skipped);
        summary.images += photos.len();
        for chunk in photos.chunks(step) {
            // Each photo decoded once, its faces cropped from it.
            let read: Vec<Result<Vec<(Item, RgbImage)>>> = chunk
                .par_iter()
                .map(|path| -> Result<Vec<(Item, RgbImage)>> {
                    let entry = cache.get(path).expect("listed above");
                    if entry.faces.is_empty() {
                        return Ok(Vec::new());
                    }
                    let img = read_upright(path)?;
                    // faces.csv lists a photo's faces largest first.
                    let take = if o.largest_only { 1 } else { entry.faces.len() };
                    entry.faces.iter().enumerate().take(take).map(|(k, f)| {
                        let crop = crop_face(&img, &f.bbox, o.margin).map_err(|e| anyhow!("{}: {e}", path.display()))?;
                        Ok((Item { image: key_of(path), face: k, bbox: f.bbox, score: f.score }, crop))
                    }).collect()
                })
                .collect();
            let mut per_photo = Vec::new();
            for (path, faces) in chunk.iter().zip(read) {
                match faces {
                    Ok(faces) => per_photo.push(faces),
                    // Readable when its faces were detected, not now (changed or removed since).
                    Err(e) if o.skip_bad => summary.skipped.push(format!("{}: {e:#}", path.display())),
                    Err(e) => return Err(e),
                }
            }
            summary.without_face += per_photo.iter().filter(|faces| faces.is_empty()).count();
            let (items, crops): (Vec<Item>, Vec<RgbImage>) = per_photo.into_iter().flatten().unzip();
            for start in (0..items.len()).step_by(step) {
                let end = (start + step).min(items.len());
                let batch = batch_u8(&crops[start..end].iter().collect::<Vec<_>>())?;
                for (item, values) in items[start..end].iter().zip(read_batch(&reader, &batch, &o.bounds, o.features)?) {
                    let mut row = vec![item.image.clone(), item.face.to_string()];
                    row.extend(item.bbox.iter().map(|v| format!("{v:.1}")));
                    row.push(format!("{:.4}", item.score));
                    row.extend(values.iter().map(|v| v.to_string()));
                    csv.write_record(&row)?;
                }
                summary.faces += end - start;
            }
        }
    }
    write_atomic(&o.out, &csv.into_inner().context("attributes CSV")?)?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
