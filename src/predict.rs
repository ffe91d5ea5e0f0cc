//! `masklab predict`: the submission. Reads `EVAL/info.csv` and `EVAL/images/`, runs one or
//! more trained runs (a soft-vote ensemble with optional weights, each with optional
//! horizontal-flip TTA), and writes `ImageID,ans` for every row of info.csv in its order.
use crate::data::layout::{read_eval, EvalSet};
use crate::data::loader::{Loader, OnBadImage};
use crate::labels::NUM_CLASSES;
use crate::model::net::{infer, RunOptions, Tta};
use crate::train::kfold::member_runs;
use crate::train::trainer::{device_from, load_run};
use crate::tune::{load_biases, TUNE_FILE};
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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
    pub device: String,
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

/// Soft vote: the weighted mean of each run's `[N, 18]` probabilities.
pub fn soft_vote(probs: &[Tensor], weights: &[f64]) -> Tensor {
    let total: f64 = weights.iter().sum();
    let mut acc = Tensor::zeros_like(&probs[0]);
    for (p, w) in probs.iter().zip(weights) {
        acc += p * (*w / total);
    }
    acc
}

pub fn predict(o: &PredictOptions) -> Result<PredictSummary> {
    let start = Instant::now();
    if o.runs.is_empty() {
        bail!("predict needs at least one run");
    }
    let weights = match &o.weights {
        Some(w) if w.len() != o.runs.len() => bail!("--weights has {} values for {} runs", w.len(), o.runs.len()),
        Some(w) if w.iter().any(|v| !v.is_finite() || *v < 0.0) || w.iter().sum::<f64>() <= 0.0 => {
            bail!("--weights must be non-negative with a positive sum, got {w:?}")
        }
        Some(w) => w.clone(),
        None => vec![1.0; o.runs.len()],
    };
    let device = device_from(&o.device)?;
    let eval = read_eval(&o.eval_dir, o.skip_bad)?;
    let n = eval.image_ids.len();
    let mut all_probs = Vec::with_capacity(o.runs.len());
    let mut present = vec![true; n];
    for run in &o.runs {
        // A k-fold run is the equal-weight ensemble of its folds, then the run's tuned decisions.
        let members = models_of(run)?;
        let mut member_probs = Vec::with_capacity(members.len());
        for (member, which) in &members {
            member_probs.push(run_probs(member, which, &eval, device, o, &mut present)?);
        }
        let mut probs = soft_vote(&member_probs, &vec![1.0; members.len()]);
        if !o.no_tune {
            if let Some(biases) = load_biases(run)? {
                eprintln!("{}: applying its tuned decision biases ({}; --no-tune to switch off)", run.display(), TUNE_FILE);
                probs = biases.adjust(&probs);
            }
        }
        all_probs.push(probs);
    }
    let probs = soft_vote(&all_probs, &weights);
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
    let mut csv = String::from("ImageID,ans\n");
    for (id, a) in eval.image_ids.iter().zip(&answers) {
        csv.push_str(&format!("{id},{a}\n"));
    }
    write_atomic(&o.out, csv.as_bytes())?;
    if let Some(path) = &o.probs {
        write_probs(path, &eval.image_ids, &probs)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(PredictSummary { images: n, skipped, seconds, images_per_s: n as f64 / seconds.max(1e-9) })
}

/// The models one predict argument names, as (run folder, checkpoint): a run's best checkpoint,
/// each fold's best for a k-fold run, or one checkpoint file of a run (`RUN/last.safetensors`).
fn models_of(arg: &Path) -> Result<Vec<(PathBuf, String)>> {
    if arg.is_file() {
        let which = arg.file_stem().and_then(|s| s.to_str()).filter(|_| arg.extension().is_some_and(|e| e == "safetensors"));
        let (Some(which), Some(run)) = (which, arg.parent()) else {
            bail!("{}: expected a run folder or a checkpoint file RUN/<name>.safetensors", arg.display());
        };
        let run = if run.as_os_str().is_empty() { Path::new(".") } else { run };
        return Ok(vec![(run.to_path_buf(), which.to_string())]);
    }
    Ok(member_runs(arg)?.into_iter().map(|r| (r, "best".to_string())).collect())
}

/// One trained run's `[N, 18]` probabilities for every eval image; rows of images that could
/// not be read are zero and clear their entry of `present`.
fn run_probs(run: &Path, which: &str, eval: &EvalSet, device: Device, o: &PredictOptions, present: &mut [bool]) -> Result<Tensor> {
    let n = eval.image_ids.len();
    let (cfg, nets) = load_run(run, which, device).with_context(|| format!("run {}", run.display()))?;
    let prep = cfg.data.preprocess().with_context(|| format!("run {}", run.display()))?;
    let on_bad = if o.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
    // Nothing is cached: each image is read once per run, and the set never has to fit in memory.
    let loader = Loader::new(eval.paths.clone(), prep, 0, cfg.data.prefetch, on_bad);
    let batch = if o.batch_size > 0 { o.batch_size } else { cfg.train.eval_batch() };
    let run_opts = RunOptions::new(&cfg, device, o.tta);
    let (probs, _, kept) = infer(&nets, cfg.model.layout, &loader, (0..n).collect(), batch, &run_opts)?;
    // Rows of images that could not be read stay zero; predict() fills in their answers.
    let mut full = Tensor::zeros([n as i64, NUM_CLASSES as i64], (Kind::Float, Device::Cpu));
    let mut seen = vec![false; n];
    for &i in &kept {
        seen[i] = true;
    }
    if !kept.is_empty() {
        let idx = Tensor::from_slice(&kept.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let _ = full.index_copy_(0, &idx, &probs);
    }
    for (p, s) in present.iter_mut().zip(seen) {
        *p &= s;
    }
    Ok(full)
}

/// `ImageID,p0,...,p17`, for ensembling later.
fn write_probs(path: &Path, ids: &[String], probs: &Tensor) -> Result<()> {
    let values = Vec::<f32>::try_from(probs.contiguous().view([-1]))?;
    let mut out = String::from("ImageID");
    for c in 0..NUM_CLASSES {
        out.push_str(&format!(",p{c}"));
    }
    out.push('\n');
    for (i, id) in ids.iter().enumerate() {
        out.push_str(id);
        for v in &values[i * NUM_CLASSES..(i + 1) * NUM_CLASSES] {
            out.push_str(&format!(",{v}"));
        }
        out.push('\n');
    }
    write_atomic(path, out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_vote_is_the_weighted_mean() {
        let a = Tensor::from_slice(&[0.8f32, 0.2]).view([1, 2]);
        let b = Tensor::from_slice(&[0.2f32, 0.8]).view([1, 2]);
        let v = Vec::<f32>::try_from(soft_vote(&[a, b], &[3.0, 1.0]).view([-1])).unwrap();
        // (3*0.8 + 1*0.2)/4 = 0.65, (3*0.2 + 1*0.8)/4 = 0.35
        assert!((v[0] - 0.65).abs() < 1e-6 && (v[1] - 0.35).abs() < 1e-6, "{v:?}");
    }
}
