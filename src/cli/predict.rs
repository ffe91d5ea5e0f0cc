//! `masklab predict`.
use crate::device::DeviceArg;
use crate::faces::args::FaceDetectorArgs;
use crate::model::net::Tta;
use crate::predict::faces::{predict_faces, FacePredictOptions};
use crate::predict::{predict, PredictOptions, SkipLimit};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PredictArgs {
    /// Runs, then the eval folder: RUN [RUN ...] EVAL_DIR. A RUN is a run folder (its best checkpoint), a k-fold run (its folds) or a checkpoint file such as RUN/last.safetensors.
    #[arg(required = true, num_args = 2..)]
    paths: Vec<PathBuf>,
    /// Submission CSV to write (ImageID,ans, in info.csv's order).
    #[arg(long)]
    out: PathBuf,
    /// Test-time augmentation, averaged: `flip` (each image and its mirror image), `crops`
    /// (the image and five 7/8 crops: corners and centre), or `flip,crops` (all of them mirrored too).
    #[arg(long, default_value = "none")]
    tta: Tta,
    /// Ensemble weights, one per run, e.g. 2,1.
    #[arg(long, value_delimiter = ',')]
    weights: Option<Vec<f64>>,
    /// Also write the 18 ensemble probabilities per image (ImageID,p0..p17).
    #[arg(long)]
    probs: Option<PathBuf>,
    /// Report unreadable images and give them the most frequent class instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// With --skip-bad: fail when more images than this were unreadable, a count (3) or a share of the images (5%).
    #[arg(long, default_value = "5%", requires = "skip_bad")]
    max_skipped: SkipLimit,
    /// Decide by plain argmax even for runs tuned with `masklab tune` (their tune.json).
    #[arg(long)]
    no_tune: bool,
    #[command(flatten)]
    device: DeviceArg,
    /// Images per step (0: each run's train.eval_batch_size, by default twice its training batch).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Every face of a folder of photos (or an eval folder): --out gets one row per face
    /// (image,face,x1,y1,x2,y2,score,label,class,p0..p17) instead of a submission, each face
    /// framed as the run's training photos framed theirs; faces from the folder's faces.csv,
    /// detected first where missing.
    #[arg(long, conflicts_with = "probs")]
    faces: bool,
    /// As --faces, one row per photo: its largest face, framed as in training (a folder of
    /// single-face photos framed unlike the training photos: tight crops, small faces).
    #[arg(long, conflicts_with = "probs")]
    largest_face: bool,
    /// With --faces or --largest-face, or runs tuned with --face-heads: the detector.
    #[command(flatten)]
    detector: FaceDetectorArgs,
}

pub fn run(a: PredictArgs) -> Result<()> {
    let mut runs = a.paths;
    let eval_dir = runs.pop().expect("clap requires two paths");
    let device = a.device.device;
    if a.faces || a.largest_face {
        let o = FacePredictOptions {
            runs,
            photos: eval_dir,
            out: a.out.clone(),
            tta: a.tta,
            weights: a.weights,
            no_tune: a.no_tune,
            device,
            batch_size: a.batch,
            face_weights: a.detector.weights_dir(),
            min_face: a.detector.min_face.get(),
            skip_bad: a.skip_bad,
            largest_only: a.largest_face,
        };
        let s = predict_faces(&o)?;
        for k in &s.skipped {
            crate::util::skips::warn_skipped(k);
        }
        eprintln!("wrote {}: {} faces in {} photos ({} without a face, answered for the whole photo) in {:.1}s", a.out.display(), s.faces, s.images, s.without_face, s.seconds);
        return Ok(());
    }
    if eval_dir.is_dir() && !eval_dir.join("info.csv").is_file() {
        bail!(
            "{}: no info.csv, so no submission to write; for a folder of photos use --faces (one row per face) or --largest-face (one row per photo)",
            eval_dir.display()
        );
    }
    let o = PredictOptions {
        runs,
        eval_dir,
        out: a.out.clone(),
        tta: a.tta,
        weights: a.weights,
        probs: a.probs,
        skip_bad: a.skip_bad,
        max_skipped: a.max_skipped,
        no_tune: a.no_tune,
        device,
        batch_size: a.batch,
        detector: a.detector,
    };
    let s = predict(&o)?;
    eprintln!("wrote {}: {} images in {:.1}s ({:.1} images/s){}", a.out.display(), s.images, s.seconds, s.images_per_s,
        if s.skipped.is_empty() { String::new() } else { format!(", {} unreadable", s.skipped.len()) });
    Ok(())
}
