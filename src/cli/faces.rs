//! `masklab faces`.
use super::read_args::ReadArgs;
use crate::data::face_detection::{run as detect_faces, FacesOptions};
use crate::device::DeviceArg;
use crate::faces::args::DetectorArgs;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct FacesArgs {
    /// A dataset (train/ and/or eval/), its train or eval folder, or any folder of photos.
    path: PathBuf,
    /// File to write (default: faces.csv beside train.csv / info.csv, or in the folder).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    detector: DetectorArgs,
    #[command(flatten)]
    device: DeviceArg,
    /// Photos decoded and detected together.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Print one JSON object per dataset.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    read: ReadArgs,
}

pub fn run(a: FacesArgs) -> Result<()> {
    let opts = FacesOptions {
        weights: a.detector.weights_dir(),
        device: a.device.device.resolve()?,
        batch: a.batch,
        skip_bad: a.read.skip_bad,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        min_face: a.detector.min_face.get(),
    };
    for s in detect_faces(&a.path, a.out.as_deref(), &(&a.read).into(), &opts)? {
        if a.json {
            println!("{}", serde_json::to_string(&s)?);
        } else {
            println!("{}: {}", s.kind, s.render());
        }
        for p in &s.skipped {
            crate::util::skips::warn_skipped(p);
        }
    }
    Ok(())
}
