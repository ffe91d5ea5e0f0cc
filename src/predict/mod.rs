//! `masklab predict`: the submission. Reads `EVAL/info.csv` and `EVAL/images/`, runs one or
//! more trained runs (a soft-vote ensemble with optional weights, each with optional
//! horizontal-flip TTA), and writes `ImageID,ans` for every row of info.csv in its order.
pub mod ensemble;

use crate::config::DeviceChoice;
use crate::data::dataset::read_eval;
use crate::data::loader::OnBadImage;
use crate::labels::NUM_CLASSES;
use crate::model::net::Tta;
use crate::util::write_atomic;
use anyhow::{Context, Result};
use ensemble::{Ensemble, InferenceOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// Run folders, k-fold run folders, or checkpoint files inside run folders.
    pub runs: Vec<PathBuf>,
    pub eval_dir: PathBuf,
    pub out: PathBuf,
    /// Test-time augmentation: mirror images and/or five crops, averaged.
    pub tta: Tta,
    /// One weight per run (default: equal).
    pub weights: Option<Vec<f64>>,
    /// Also write the 18 ensemble probabilities per image here.
    pub probs: Option<PathBuf>,
    /// An unreadable image is reported and gets the most frequent predicted class, instead of an error.
    pub skip_bad: bool,
    /// Ignore the runs' tuned decision biases (`RUN/tune.json`).
    pub no_tune: bool,
    pub device: DeviceChoice,
    /// Images per step (0: each run's train.eval_batch_size, by default twice its training batch).
    pub batch_size: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PredictSummary {
    pub images: usize,
    pub skipped: Vec<String>,
    pub seconds: f64,
    pub images_per_s: f64,
}

pub fn predict(o: &PredictOptions) -> Result<PredictSummary> {
    let start = Instant::now();
    let options = InferenceOptions { device: o.device.resolve()?, tta: o.tta, use_biases: !o.no_tune, batch_size: o.batch_size };
    let ensemble = Ensemble::load(&o.runs, o.weights.as_deref(), &options)?;
    for m in ensemble.members.iter().filter(|m| m.biases.is_some()) {
        eprintln!("{}: applying its tuned decision biases (tune.json; --no-tune to switch off)", m.source.display());
    }
    let eval = read_eval(&o.eval_dir, o.skip_bad)?;
    let n = eval.image_ids.len();
    let on_bad = if o.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
    let (probs, present) = ensemble.probs_of_files(&eval.paths, on_bad)?;
    let mut answers: Vec<i64> = Vec::<i64>::try_from(probs.argmax(1, false)).context("predictions")?;
    let skipped: Vec<String> = eval.image_ids.iter().zip(&present).filter(|(_, p)| !**p).map(|(id, _)| id.clone()).collect();
    if !skipped.is_empty() {
        // The most frequent class among the images that were read.
        let mut counts = [0usize; NUM_CLASSES];
        for (a, p) in answers.iter().zip(&present) {
            if *p {
                counts[*a as usize] += 1;
            }
        }
        let fallback = (0..NUM_CLASSES).max_by_key(|&c| counts[c]).unwrap_or(0) as i64;
        for (a, p) in answers.iter_mut().zip(&present) {
            if !*p {
                *a = fallback;
            }
        }
        for id in &skipped {
            eprintln!("warning: {id}: unreadable, predicted the most frequent class {fallback}");
        }
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["ImageID", "ans"])?;
    for (id, a) in eval.image_ids.iter().zip(&answers) {
        csv.write_record([id.as_str(), &a.to_string()])?;
    }
    write_atomic(&o.out, &csv.into_inner().context("submission")?)?;
    if let Some(path) = &o.probs {
        write_probs(path, &eval.image_ids, &probs)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(PredictSummary { images: n, skipped, seconds, images_per_s: n as f64 / seconds.max(1e-9) })
}

/// `ImageID,p0,...,p17`, for ensembling later.
fn write_probs(path: &Path, ids: &[String], probs: &Tensor) -> Result<()> {
    let values = Vec::<f32>::try_from(probs.contiguous().view([-1]))?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(std::iter::once("ImageID".to_string()).chain((0..NUM_CLASSES).map(|c| format!("p{c}"))))?;
    for (i, id) in ids.iter().enumerate() {
        csv.write_record(std::iter::once(id.clone()).chain(values[i * NUM_CLASSES..(i + 1) * NUM_CLASSES].iter().map(|v| v.to_string())))?;
    }
    write_atomic(path, &csv.into_inner().context("probabilities")?)
}
