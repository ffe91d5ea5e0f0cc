//! The training loop: data -> augmented batches on the device -> every model of the layout
//! (loss, backward, optimiser, EMA) -> validation each epoch -> best/last checkpoints,
//! metrics.jsonl, early stopping. A run directory holds all of it and resumes from `last`.
use crate::config::Config;
use crate::data::layout::{read_train, ReadOptions, Sample, TrainSet};
use crate::data::loader::{Loader, OnBadImage};
use crate::data::sampler::epoch_indices;
use crate::data::split::{kfold_assign, train_val_split};
use crate::data::decode::Preprocess;
use crate::evaluate::{evaluate, head_losses, Evaluation};

use crate::model::net::{to_channels_last, Net, RunOptions};
use crate::predictions;
use crate::train::checkpoint;
use crate::train::ema::Ema;
use crate::train::optim::Optimizer;
use crate::train::schedule::lr_at;
use crate::tracking::Trackers;
use crate::util::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The validation split's labelled predictions at the best epoch, in a run folder.
pub const VAL_PREDICTIONS: &str = "val_predictions.csv";

/// Picks the device named in the config.
pub fn device_from(name: &str) -> Result<Device> {
    match name {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            if !tch::Cuda::is_available() {
                bail!("train.device = {s}, but CUDA is not available (masklab --version tells what libtorch sees)");
            }
            let index = s.strip_prefix("cuda:").map(|i| i.parse::<usize>()).transpose().map_err(|_| anyhow!("bad device `{s}`"))?;
            Ok(Device::Cuda(index.unwrap_or(0)))
        }
        s => bail!("train.device must be auto, cpu, cuda or cuda:N, got `{s}`"),
    }
}

/// Everything the data side of a run needs: samples, the split, and preprocessing.
pub struct Prepared {
    pub set: TrainSet,
    pub samples: Vec<Sample>,
    pub classes: Vec<usize>,
    pub train_idx: Vec<usize>,
    pub val_idx: Vec<usize>,
    pub prep: Preprocess,
}

/// Reads the dataset as the config says and splits it by person.
pub fn prepare(data: &Path, cfg: &Config) -> Result<Prepared> {
    let opts = ReadOptions {
        relabel: (!cfg.data.relabel.is_empty()).then(|| PathBuf::from(&cfg.data.relabel)),
        no_relabel: cfg.data.no_relabel,
        skip_bad: cfg.data.skip_bad,
    };
    let set = read_train(data, &opts)?;
    for p in &set.problems {
        tracing::warn!("skipped: {p}");
    }
    let bounds = cfg.data.bounds()?;
    let samples = set.samples(&bounds);
    if samples.is_empty() {
        bail!("{}: no training images found", data.display());
    }
    let strata = set.strata(&bounds);
    let is_val: Vec<bool> = if cfg.data.folds >= 2 {
        if cfg.data.fold == 0 {
            bail!("data.folds = {} trains every fold through kfold::train_folds; a single run needs data.fold in 1..={}", cfg.data.folds, cfg.data.folds);
        }
        kfold_assign(&strata, cfg.data.folds, cfg.train.seed).into_iter().map(|f| f + 1 == cfg.data.fold).collect()
    } else {
        train_val_split(&strata, cfg.data.val_ratio, cfg.train.seed)
    };
    let (mut train_idx, mut val_idx) = (Vec::new(), Vec::new());
    for (i, s) in samples.iter().enumerate() {
        if is_val[s.person] {
            val_idx.push(i)
        } else {
            train_idx.push(i)
        }
    }
    let prep = cfg.data.preprocess()?;
    let classes = samples.iter().map(|s| s.class.encode()).collect();
    Ok(Prepared { set, samples, classes, train_idx, val_idx, prep })
}

pub fn make_loader(p: &Prepared, cfg: &Config) -> Loader {
    let on_bad = if cfg.data.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
    Loader::new(p.samples.iter().map(|s| s.path.clone()).collect(), p.prep, cfg.data.cache_mib, cfg.data.prefetch, on_bad)
}

/// Builds the models of the config's layout on `device`.
pub fn build_nets(cfg: &Config, device: Device) -> Result<Vec<Net>> {
    cfg.model
        .layout
        .models()
        .into_iter()
        .map(|(name, n)| Net::new(name, &cfg.model_settings(name)?, n, device))
        .collect()
}

fn monitor_value(e: &Evaluation, monitor: &str) -> f64 {
    match monitor {
        "loss" => -e.loss, // higher is better everywhere below
        "accuracy" => e.scores.accuracy,
        "f1_mask" => e.scores.f1_mask,
        "f1_gender" => e.scores.f1_gender,
        "f1_age" => e.scores.f1_age,
        _ => e.scores.f1,
    }
}

/// Dynamic loss scaling for fp16: grow after a run of finite steps, halve on overflow.
struct LossScaler {
    scale: f64,
    good_steps: usize,
}

impl LossScaler {
    const GROWTH_INTERVAL: usize = 2000;
}

pub struct TrainSummary {
    pub run: PathBuf,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best: Option<Evaluation>,
}

/// Trains per the config into `run`. With `resume`, continues from `run/last.safetensors`.
pub fn train(data: &Path, cfg: &Config, run: &Path, resume: bool, progress: bool) -> Result<TrainSummary> {
    std::fs::create_dir_all(run).with_context(|| format!("cannot create run folder {}", run.display()))?;
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    if cfg.data.workers > 0 {
        // Decoding runs on rayon's global pool; it can be sized once per process.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(cfg.data.workers).build_global();
    }
    let device = device_from(&cfg.train.device)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(cfg.train.cudnn_benchmark);
    }
    let runopt = RunOptions::new(cfg, device, Default::default());
    let (amp, channels_last) = (runopt.amp, runopt.channels_last);
    let layout = cfg.model.layout;
    write_atomic(&run.join("config.toml"), cfg.to_toml()?.as_bytes())?;

    let prepared = prepare(data, cfg)?;
    if prepared.train_idx.is_empty() {
        bail!("no training images left after the validation split");
    }
    let loader = make_loader(&prepared, cfg);
    tch::manual_seed(cfg.train.seed as i64);
    let mut nets = build_nets(cfg, device)?;
    if !resume {
        // Before the optimisers and EMAs take their copies of the weights. A resumed run gets
        // its weights from its checkpoint instead.
        crate::weights::import::load_pretrained(&nets, run)?;
    }
    let mut optims = Vec::new();
    let mut emas = Vec::new();
    for net in &nets {
        optims.push(Optimizer::new(&net.vs, &net.settings.optim).with_context(|| format!("model `{}`", net.name))?);
        emas.push((net.settings.optim.ema > 0.0).then(|| Ema::new(&net.vs, net.settings.optim.ema)));
    }
    let losses = head_losses(&nets, layout, &prepared.classes, &prepared.train_idx, device)?;

    let batch = cfg.train.batch_size;
    let eval_batch = cfg.train.eval_batch();
    let steps_per_epoch = {
        let n = epoch_indices(&cfg.sampler, &train_classes(&prepared), 0, cfg.train.seed)?.len();
        if n >= batch { n / batch } else { 1 }
    };
    let mut state = RunState { epoch: 0, step: 0, best: f64::NEG_INFINITY, best_epoch: 0, bad_epochs: 0, loss_scale: 65536.0 };
    let last_path = run.join("last.safetensors");
    if resume {
        state = restore(&last_path, &mut nets, &mut optims, &mut emas)?;
        forget_metrics_after(&run.join("metrics.jsonl"), state.epoch)?;
        eprintln!("resuming {} after epoch {} (step {})", run.display(), state.epoch, state.step);
    } else if last_path.exists() {
        bail!("{} already holds a run; use --resume {} to continue it, or another --out", run.display(), run.display());
    }
    let mut scaler = LossScaler { scale: state.loss_scale, good_steps: 0 };
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.join("metrics.jsonl"))
        .with_context(|| format!("cannot open {}", run.join("metrics.jsonl").display()))?;
    let mut log = |v: serde_json::Value| -> Result<()> {
        writeln!(metrics, "{v}")?;
        metrics.flush()?;
        Ok(())
    };
    if !resume {
        let data_path = data.canonicalize().unwrap_or_else(|_| data.to_path_buf());
        let per_class = |idx: &[usize]| idx.iter().fold(vec![0u64; crate::labels::NUM_CLASSES], |mut n, &i| {
            n[prepared.classes[i]] += 1;
            n
        });
        log(json!({"kind": "start", "data": data_path.display().to_string(), "fold": cfg.data.fold, "train_images": prepared.train_idx.len(), "val_images": prepared.val_idx.len(),
                   "people": prepared.set.people.len(), "device": format!("{device:?}"), "layout": layout.to_string(),
                   "train_classes": per_class(&prepared.train_idx), "val_classes": per_class(&prepared.val_idx)}))?;
    }
    // TensorBoard and MLflow receive the metrics.jsonl lines; they warn instead of failing.
    let mut trackers = Trackers::start(cfg, run, resume.then_some(state.step));

    let total_epochs = cfg.train.epochs;
    let mut best_eval: Option<Evaluation> = None;
    let mut epochs_run = 0;
    for epoch in state.epoch + 1..=total_epochs {
        let t0 = Instant::now();
        // Reseeding per epoch makes a resumed run draw what an uninterrupted one would.
        tch::manual_seed(cfg.train.seed as i64 + epoch as i64);
        let order: Vec<usize> = epoch_indices(&cfg.sampler, &train_classes(&prepared), epoch, cfg.train.seed)?
            .into_iter()
            .map(|i| prepared.train_idx[i])
            .collect();
        let batches = loader.batches(order, batch, true);
        let bar = progress_bar(progress, batches.total() as u64, epoch, total_epochs);
        // Losses are summed on the device and read at log points: no host sync per step.
        let mut epoch_loss = Tensor::zeros([], (Kind::Float, device));
        let (mut loss_n, mut images) = (0usize, 0usize);
        let mut window_loss = Tensor::zeros([], (Kind::Float, device));
        let mut window = (Instant::now(), 0usize, 0usize);
        for b in batches {
            let b = b?;
            let images_dev = b.images.to_device(device);
            let truth = Tensor::from_slice(&b.indices.iter().map(|&i| prepared.classes[i] as i64).collect::<Vec<_>>()).to_device(device);
            let mut step_loss = Tensor::zeros([], (Kind::Float, device));
            for (k, net) in nets.iter().enumerate() {
                let lr = lr_at(&net.settings.schedule, net.settings.optim.lr, state.step, steps_per_epoch, total_epochs);
                let x = net.augmenter.train(&images_dev);
                let (x, mix) = net.augmenter.mix(&x);
                let x = if channels_last { to_channels_last(&x) } else { x };
                let out = tch::autocast(amp, || net.module.forward_t(&x, true));
                let mut loss = Tensor::zeros([], (Kind::Float, device));
                for (head, l) in &losses[k] {
                    let logits = head.slice(&out);
                    let target = head.task.target(&truth);
                    loss = loss + match &mix {
                        Some(m) => l.forward(&logits, &target) * m.lam + l.forward(&logits, &target.index_select(0, &m.perm)) * (1.0 - m.lam),
                        None => l.forward(&logits, &target),
                    };
                }
                let opt = &mut optims[k];
                opt.zero_grad();
                if amp {
                    (&loss * scaler.scale).backward();
                    if !opt.unscale_grads(1.0 / scaler.scale) {
                        scaler.scale /= 2.0;
                        scaler.good_steps = 0;
                        tracing::info!("fp16 overflow: loss scale -> {}", scaler.scale);
                        continue;
                    }
                } else {
                    loss.backward();
                }
                if net.settings.optim.grad_clip > 0.0 {
                    opt.clip_grad_norm(net.settings.optim.grad_clip);
                }
                opt.step(lr);
                if let Some(ema) = &mut emas[k] {
                    ema.update(&net.vs);
                }
                step_loss += loss.detach();
            }
            if amp {
                scaler.good_steps += 1;
                if scaler.good_steps >= LossScaler::GROWTH_INTERVAL {
                    scaler.scale *= 2.0;
                    scaler.good_steps = 0;
                }
            }
            state.step += 1;
            images += b.indices.len();
            epoch_loss += &step_loss;
            window_loss += &step_loss;
            loss_n += 1;
            window.1 += b.indices.len();
            window.2 += 1;
            bar.inc(1);
            if progress && (loss_n % 10 == 1) {
                bar.set_message(format!("loss {:.4}", epoch_loss.double_value(&[]) / loss_n as f64));
            }
            if cfg.train.log_every > 0 && state.step % cfg.train.log_every == 0 {
                let secs = window.0.elapsed().as_secs_f64();
                let line = json!({"kind": "step", "epoch": epoch, "step": state.step, "loss": window_loss.double_value(&[]) / window.2 as f64,
                           "lr": lr_at(&nets[0].settings.schedule, nets[0].settings.optim.lr, state.step, steps_per_epoch, total_epochs),
                           "images_per_s": window.1 as f64 / secs.max(1e-9)});
                log(line.clone())?;
                trackers.step(&line);
                window = (Instant::now(), 0, 0);
                window_loss = Tensor::zeros([], (Kind::Float, device));
            }
        }
        bar.finish_and_clear();
        let train_secs = t0.elapsed().as_secs_f64();

        // Validation, on the EMA weights when EMA is on.
        for (net, ema) in nets.iter().zip(emas.iter_mut()) {
            if let Some(e) = ema {
                e.swap(&net.vs);
            }
        }
        let evaluated = if prepared.val_idx.is_empty() {
            None
        } else {
            Some(evaluate(&nets, &losses, layout, &loader, &prepared.classes, prepared.val_idx.clone(), eval_batch, &runopt)?)
        };
        let eval = evaluated.as_ref().map(|e| e.eval.clone());
        let weights: Vec<(String, Tensor)> = nets.iter().flat_map(|n| n.named_tensors()).collect();
        let score = eval.as_ref().map(|e| monitor_value(e, &cfg.train.monitor)).unwrap_or(epoch as f64);
        let improved = state.record(epoch, score);
        let lr_now = lr_at(&nets[0].settings.schedule, nets[0].settings.optim.lr, state.step, steps_per_epoch, total_epochs);
        let epoch_line = json!({
            "kind": "epoch", "epoch": epoch, "step": state.step, "train_loss": epoch_loss.double_value(&[]) / loss_n.max(1) as f64,
            "lr": lr_now, "train_images_per_s": images as f64 / train_secs.max(1e-9), "seconds": t0.elapsed().as_secs_f64(),
            "val": eval.as_ref().map(|e| json!({"loss": e.loss, "f1": e.scores.f1, "accuracy": e.scores.accuracy,
                "f1_mask": e.scores.f1_mask, "f1_gender": e.scores.f1_gender, "f1_age": e.scores.f1_age, "images": e.images})),
        });
        if improved {
            let meta = json!({"kind": "best", "epoch": epoch, "layout": layout.to_string(), "metrics": eval, "config": cfg});
            checkpoint::save(&run.join("best.safetensors"), &weights, &meta)?;
            write_atomic(&run.join("best.json"), serde_json::to_string_pretty(&meta)?.as_bytes())?;
            if let Some(e) = &evaluated {
                predictions::write_rows(&run.join(VAL_PREDICTIONS), &e.rows(&prepared, cfg.data.fold)?)?;
            }
            best_eval = eval.clone();
        }
        for (net, ema) in nets.iter().zip(emas.iter_mut()) {
            if let Some(e) = ema {
                e.swap(&net.vs);
            }
        }
        state.epoch = epoch;
        state.loss_scale = scaler.scale;
        // The epoch's line goes first: a run killed before the checkpoint lands redoes the
        // epoch, and resuming drops the lines of epochs after the checkpoint.
        log(epoch_line.clone())?;
        trackers.epoch(&epoch_line, eval.as_ref().map(|e| e.confusion.as_slice()));
        save_last(run, cfg, &state, &nets, &optims, &emas, &eval)?;
        epochs_run += 1;
        print_epoch(&epoch_line, total_epochs, improved);
        if state.should_stop(cfg.train.patience) {
            eprintln!("early stop: no improvement of {} in {} epochs", cfg.train.monitor, cfg.train.patience);
            log(json!({"kind": "early_stop", "epoch": epoch, "best_epoch": state.best_epoch}))?;
            break;
        }
    }
    if cfg.report.enabled {
        crate::report::write_after_training(run, cfg.report.worst);
    }
    if best_eval.is_none() && run.join("best.json").exists() {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("best.json"))?)?;
        best_eval = serde_json::from_value(meta["metrics"].clone()).ok();
    }
    // Last: the artifacts MLflow receives are the run folder's final files.
    trackers.finish(state.best_epoch);
    Ok(TrainSummary { run: run.to_path_buf(), epochs_run, best_epoch: state.best_epoch, best: best_eval })
}

/// Drops metrics.jsonl lines of epochs after `epoch`: a resumed run writes them again.
fn forget_metrics_after(path: &Path, epoch: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["epoch"].as_u64())
                .is_none_or(|e| e as usize <= epoch)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    write_atomic(path, out.as_bytes())
}

fn train_classes(p: &Prepared) -> Vec<usize> {
    p.train_idx.iter().map(|&i| p.classes[i]).collect()
}

fn progress_bar(show: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}

fn print_epoch(line: &serde_json::Value, epochs: usize, improved: bool) {
    let f = |k: &str| line["val"][k].as_f64().map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    eprintln!(
        "epoch {}/{}  train loss {:.4}  val loss {}  f1 {}  acc {}  (mask {} gender {} age {})  {:.0} img/s  {:.1}s{}",
        line["epoch"],
        epochs,
        line["train_loss"].as_f64().unwrap_or(f64::NAN),
        f("loss"),
        f("f1"),
        f("accuracy"),
        f("f1_mask"),
        f("f1_gender"),
        f("f1_age"),
        line["train_images_per_s"].as_f64().unwrap_or(0.0),
        line["seconds"].as_f64().unwrap_or(0.0),
        if improved { "  *best" } else { "" }
    );
}

/// Counters that a resumed run continues from.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct RunState {
    epoch: usize,
    step: usize,
    best: f64,
    best_epoch: usize,
    bad_epochs: usize,
    loss_scale: f64,
}

impl RunState {
    /// Records an epoch's monitored score (higher is better); true when it is a new best.
    fn record(&mut self, epoch: usize, score: f64) -> bool {
        if score > self.best {
            self.best = score;
            self.best_epoch = epoch;
            self.bad_epochs = 0;
            true
        } else {
            self.bad_epochs += 1;
            false
        }
    }

    /// Early stopping: `patience` epochs in a row without a new best (0 = never stop).
    fn should_stop(&self, patience: usize) -> bool {
        patience > 0 && self.bad_epochs >= patience
    }
}

fn save_last(run: &Path, cfg: &Config, state: &RunState, nets: &[Net], optims: &[Optimizer], emas: &[Option<Ema>], eval: &Option<Evaluation>) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for ((net, opt), ema) in nets.iter().zip(optims).zip(emas) {
        tensors.extend(net.named_tensors());
        tensors.extend(opt.state().into_iter().map(|(k, t)| (format!("optim.{}.{k}", net.name), t)));
        if let Some(e) = ema {
            tensors.extend(e.state().into_iter().map(|(k, t)| (format!("ema.{}.{k}", net.name), t)));
        }
    }
    // -inf does not survive JSON; a run with no validation yet stores the lowest finite value.
    let mut state = state.clone();
    if !state.best.is_finite() {
        state.best = f64::MIN;
    }
    let meta = json!({"kind": "last", "epoch": state.epoch, "state": state, "metrics": eval, "config": cfg});
    checkpoint::save(&run.join("last.safetensors"), &tensors, &meta)?;
    write_atomic(&run.join("last.json"), serde_json::to_string_pretty(&meta)?.as_bytes())
}

fn restore(path: &Path, nets: &mut [Net], optims: &mut [Optimizer], emas: &mut [Option<Ema>]) -> Result<RunState> {
    let (tensors, meta) = checkpoint::load(path).with_context(|| format!("cannot resume from {}", path.display()))?;
    let state: RunState = serde_json::from_value(meta["state"].clone()).with_context(|| format!("{}: no run state in the checkpoint", path.display()))?;
    for ((net, opt), ema) in nets.iter_mut().zip(optims.iter_mut()).zip(emas.iter_mut()) {
        net.load_tensors(&tensors)?;
        let strip = |prefix: String| -> Vec<(String, Tensor)> {
            tensors.iter().filter_map(|(k, t)| k.strip_prefix(&prefix).map(|k| (k.to_string(), t.shallow_clone()))).collect()
        };
        opt.load_state(&strip(format!("optim.{}.", net.name)))?;
        if let Some(e) = ema {
            e.load_state(&strip(format!("ema.{}.", net.name)))?;
        }
    }
    Ok(state)
}

/// Loads a trained run's models from `RUN/best.safetensors` (or `last`) with the run's config.
pub fn load_run(run: &Path, which: &str, device: Device) -> Result<(Config, Vec<Net>)> {
    if crate::train::kfold::is_kfold_run(run) {
        bail!(
            "{} is a k-fold run: its models are {}/fold-1 .. fold-k (predict takes the k-fold run itself and ensembles them; its cross-validated scores are in cv.json)",
            run.display(),
            run.display()
        );
    }
    let cfg_path = run.join("config.toml");
    let cfg = Config::load(Some(&cfg_path), &[]).with_context(|| format!("{} is not a masklab run", run.display()))?;
    let path = run.join(format!("{which}.safetensors"));
    let (tensors, _) = checkpoint::load(&path)?;
    let mut nets = build_nets(&cfg, device)?;
    for net in &mut nets {
        net.load_tensors(&tensors).with_context(|| format!("{}", path.display()))?;
    }
    Ok((cfg, nets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_counts_epochs_without_a_new_best() {
        let mut s = RunState { epoch: 0, step: 0, best: f64::NEG_INFINITY, best_epoch: 0, bad_epochs: 0, loss_scale: 1.0 };
        // f1 per epoch: 0.2, 0.5, 0.5 (no gain), 0.4, 0.6, 0.1, 0.1
        let verdicts: Vec<(bool, bool)> = [0.2, 0.5, 0.5, 0.4, 0.6, 0.1, 0.1]
            .iter()
            .enumerate()
            .map(|(i, &f1)| (s.record(i + 1, f1), s.should_stop(2)))
            .collect();
        assert_eq!(
            verdicts,
            vec![(true, false), (true, false), (false, false), (false, true), (true, false), (false, false), (false, true)]
        );
        assert_eq!((s.best, s.best_epoch), (0.6, 5));
        assert!(!s.should_stop(0), "patience 0 never stops");
        // Loss is monitored as its negative, so a falling loss is an improvement.
        let mut l = RunState { best: f64::NEG_INFINITY, ..s.clone() };
        assert!(l.record(1, -0.9) && l.record(2, -0.5) && !l.record(3, -0.7));
    }
}
