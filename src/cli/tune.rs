//! `masklab tune`.
use crate::data::face_detection::FacesOptions;
use crate::decision_biases::{render, tune_run, Search, TuneBy};
use crate::device::DeviceArg;
use crate::face_heads::fit::{FitRequest, HeadKind};
use crate::face_heads::FaceReading;
use crate::faces::args::FaceDetectorArgs;
use crate::predict::attributes::DEFAULT_MARGIN;
use crate::run_dir::RunDir;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TuneArgs {
    run: PathBuf,
    /// class: one bias per 18-way class; task: 3 mask + 2 gender + 3 age biases.
    #[arg(long, value_enum, default_value = "class")]
    by: TuneBy,
    /// Person groups for the held-out report when the rows have no k-fold folds.
    #[arg(long, default_value_t = 5)]
    groups: usize,
    /// Largest bias tried (both signs).
    #[arg(long, default_value_t = 3.0)]
    range: f64,
    /// Grid step of the biases tried.
    #[arg(long, default_value_t = 0.1)]
    step: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Have predict apply the biases even when their held-out (cross-fitted) macro F1 is not
    /// higher than the argmax's (by default they are then recorded but not applied).
    #[arg(long)]
    force: bool,
    /// A second opinion on gender and age: build heads on this face network's features
    /// (faceres or faceres-deep, fetched when missing) of the largest face of each training
    /// photo of the run's training people, choose on the validation rows how much they weigh,
    /// and fit the biases on the fused rows; predict and serve then read each face with it.
    #[arg(long, value_name = "NETWORK", value_parser = ["faceres", "faceres-deep"])]
    face_heads: Option<String>,
    /// With --face-heads: the heads' form: the votes of the most similar training faces, or
    /// softmax regression.
    #[arg(long, value_enum, default_value = "neighbours", requires = "face_heads")]
    face_head_kind: HeadKind,
    /// With --face-heads: the dataset the run trained on (default: the one its metrics.jsonl names).
    #[arg(long, requires = "face_heads")]
    data: Option<PathBuf>,
    /// With --face-heads: the face box grown by this share of its size on every side, then squared.
    #[arg(long, default_value_t = DEFAULT_MARGIN, requires = "face_heads")]
    face_margin: f32,
    /// With --face-heads: faces per network step.
    #[arg(long, default_value_t = 64, requires = "face_heads")]
    batch: usize,
    /// With --face-heads: report unreadable photos and go on.
    #[arg(long, requires = "face_heads")]
    skip_bad: bool,
    /// With --face-heads: the detector for training photos not yet in train/faces.csv.
    #[command(flatten)]
    detector: FaceDetectorArgs,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(a: TuneArgs) -> Result<()> {
    if !(a.step > 0.0 && a.range >= a.step) {
        bail!("--step must be positive and --range at least --step (got step {}, range {})", a.step, a.range);
    }
    if a.face_heads.is_none() && a.detector.given() {
        bail!("--face-weights and --min-face go with --face-heads");
    }
    if !(a.face_margin.is_finite() && (0.0..=2.0).contains(&a.face_margin)) {
        bail!("--face-margin {}: expected a share of the face box between 0 and 2", a.face_margin);
    }
    let search = Search { range: a.range, step: a.step, ..Default::default() };
    let run = RunDir::new(a.run);
    let request = match a.face_heads {
        Some(network) => {
            let device = a.device.device.resolve()?;
            Some(FitRequest {
                reading: FaceReading { network, margin: a.face_margin },
                kind: a.face_head_kind,
                data: a.data,
                faces: FacesOptions { weights: a.detector.weights_dir(), device, batch: 16, skip_bad: a.skip_bad, progress: true, min_face: a.detector.min_face.get() },
                batch: a.batch.max(1),
            })
        }
        None => None,
    };
    let report = tune_run(&run, a.by, &search, a.groups, a.force, request.as_ref())?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
        println!("wrote {}", run.tune_file().display());
    }
    Ok(())
}
