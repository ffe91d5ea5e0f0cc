//! The training loop: data -> augmented batches on the device -> every model of the layout
//! (loss, backward, optimiser, EMA) -> validation each epoch -> best/last checkpoints, early
//! stopping. What happens is announced to observers (train::observer); the run folder's
//! checkpoints are written here, everything else by them. A run resumes from `last`.
//!
//! The trainer holds the run folder's lock (run_dir::lock) from `new` until it is dropped, checks
//! the config against the data before the first step (train::preflight), skips steps whose loss
//! or gradients are not finite and stops after a run of them (train::nonfinite), and never
//! writes weights that hold a NaN or an infinity.
//!
//! In a data-parallel run (train::data_parallel) every rank runs a trainer on its share of each
//! epoch; rank 0 alone holds the lock and writes the run folder.
use crate::data::loader::Loader;
use crate::data::prepared::{prepare, Prepared};
use crate::data::sampler::epoch_indices;
use crate::evaluate::{evaluate, score_outputs, Evaluated};
use crate::data::augment::mask_plan::painted_class;
use crate::run_dir::heldout;
use crate::metrics::Evaluation;
use crate::model::net::{infer, to_channels_last, Net, NonFiniteOutputs, RunOptions};
use crate::model::precise_bn;
use crate::model::task_layout::Head;
use crate::model::trained::build_nets;
use crate::run_dir::metrics_log::{EarlyStopLine, EpochLine, StartLine, StepLine, ValScores};
use crate::run_dir::checkpoint::{self, CheckpointKind, CheckpointMeta, ReplicaFingerprints, TrainState};
use crate::run_dir::{RunDir, RunLock, TrainingFolder, BEST, LAST};
use crate::train::data_parallel::{micro_batch_order, Replicas};
use crate::train::ema::Ema;
use crate::model::loss::{head_losses, Loss};
use crate::train::loss_scale::LossScaler;
use crate::train::nonfinite::NonFiniteGuard;
use crate::train::observer::{EpochVerdict, Resumed, RunEnd, RunStart, TrainObserver};
use crate::train::optim::Optimizer;
use crate::train::schedule::lr_at;
use crate::train::settings::RunSettings;
use crate::train::stopping::{BestCheckpoint, EarlyStopping};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub struct TrainSummary {
    pub run: PathBuf,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best: Option<Evaluation>,
}

/// A training run, ready to go: the data, the models and their optimisers, and the counters.
pub struct Trainer {
    cfg: RunSettings,
    run: RunDir,
    device: Device,
    run_opts: RunOptions,
    data: Prepared,
    loader: Loader,
    /// The models of the layout, and per model: its optimiser, its weight average (EMA), and
    /// its heads with their losses.
    nets: Vec<Net>,
    optimizers: Vec<Optimizer>,
    emas: Vec<Option<Ema>>,
    losses: Vec<Vec<(Head, Loss)>>,
    scaler: LossScaler,
    steps_per_epoch: usize,
    epoch: usize,
    step: usize,
    best: BestCheckpoint,
    stopping: EarlyStopping,
    resumed: Option<Resumed>,
    start_line: StartLine,
    guard: NonFiniteGuard,
    /// The other processes of a data-parallel run (none for a plain run).
    replicas: Replicas,
    /// Held while the trainer lives (by rank 0 of a data-parallel run); the last field, so it is
    /// released after everything else.
    _lock: Option<RunLock>,
}

/// What one epoch's training pass measured.
struct EpochStats {
    mean_loss: f64,
    /// Over all ranks.
    images: usize,
    seconds: f64,
    allreduce_seconds: Option<f64>,
}

/// Where the faces sat in the training inputs (`framing.json`, read by `predict` and `serve`):
/// measured from the training split's faces.csv for a whole-photo run; None for a face-crop run
/// (its framing is its crop), or when the faces were not detected. A faces.csv that cannot be
/// read is reported and nothing recorded.
fn record_framing(cfg: &RunSettings, data: &crate::data::prepared::Prepared) -> Option<crate::run_dir::framing::TrainingFraming> {
    if cfg.data.face_crop != crate::data::settings::FaceCrop::None {
        return None;
    }
    // The photos only: copies made for synthetic masks would count the bare photos twice.
    let paths: Vec<std::path::PathBuf> = data.train_idx.iter().filter(|&&i| i < data.photos()).map(|&i| data.samples[i].path.clone()).collect();
    match crate::data::framing::measure(&paths, &data.prep.crop) {
        Ok(Some(f)) => {
            tracing::info!("framing of the training photos: {}", f.render());
            Some(f)
        }
        Ok(None) => {
            tracing::info!("no framing recorded: fewer than {} training faces in faces.csv (`masklab faces DATA` detects them)", crate::data::framing::MIN_MEASURED_FACES);
            None
        }
        Err(e) => {
            tracing::warn!("no framing recorded (predict --faces and serve will crop faces with data.face_margin): {e:#}");
            None
        }
    }
}

impl Trainer {
    /// Prepares a run per the config in `run`: locks the folder, reads and splits the data, checks
    /// the config against it, builds the models (from pretrained weights when configured) and
    /// their optimisers. With `resume`, continues from `run/last.safetensors`, or starts afresh
    /// when the run stopped before writing it; without, a folder that already holds a run is an
    /// error. A fresh start removes what an attempt that stopped before its first checkpoint left.
    /// `replicas`: the data-parallel run this trainer is one rank of (`Replicas::default()` alone);
    /// its ranks start from rank 0's weights.
    pub fn new(data_dir: &Path, cfg: &RunSettings, run: RunDir, resume: bool, replicas: Replicas) -> Result<Trainer> {
        let main = replicas.is_main();
        let TrainingFolder { lock, resume } = run.open_for_training(resume, main)?;
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads as i32);
        }
        if cfg.data.workers > 0 {
            // Decoding runs on rayon's global pool; it can be sized once per process.
            let _ = rayon::ThreadPoolBuilder::new().num_threads(cfg.data.workers).build_global();
        }
        let device = replicas.device(cfg.train.device.resolve()?);
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(cfg.train.cudnn_benchmark);
        }
        let run_opts = RunOptions::new(cfg.train.amp, cfg.train.channels_last, device, Default::default());
        if main {
            run.write_config(&cfg.config)?;
        }

        let data_settings = cfg.prepare_settings();
        let data = prepare(data_dir, &data_settings)?;
        crate::train::preflight::check(cfg, &data)?;
        if main {
            run.write_framing(record_framing(cfg, &data).as_ref())?;
        }
        let loader = data.loader(&data_settings);
        tch::manual_seed(cfg.train.seed as i64);
        let nets = build_nets(cfg.layout, &cfg.models.iter().map(|m| &m.net).collect::<Vec<_>>(), device)?;
        if !resume {
            // Before the optimisers and EMAs take their copies of the weights. A resumed run gets
            // its weights from its checkpoint instead (every rank reads the same file).
            if main {
                crate::model::pretrained::load_pretrained(&nets, &run)?;
            }
            let tensors: Vec<Tensor> = nets.iter().flat_map(|n| n.named_tensors()).map(|(_, t)| t).collect();
            replicas.broadcast_from_main(&tensors)?;
        }
        // Before the optimisers take the variables into their buffers, which keep the layout.
        run_opts.prepare_weights(&nets);
        let losses = head_losses(&nets.iter().map(Net::loss_settings).collect::<Vec<_>>(), cfg.layout, &data.class_counts(&data.train_idx), device)?;
        let mut optimizers = Vec::with_capacity(nets.len());
        let mut emas = Vec::with_capacity(nets.len());
        for (net, settings) in nets.iter().zip(&cfg.models) {
            optimizers.push(Optimizer::new(&net.vs, &settings.optim).with_context(|| format!("model `{}`", net.name))?);
            emas.push((settings.optim.ema > 0.0).then(|| Ema::new(&net.vs, settings.optim.ema)));
        }
        let steps_per_epoch = {
            let n = epoch_indices(&cfg.sampler, &data.train_classes(), 0, cfg.train.seed)?.len();
            (replicas.train_shard_len(n) / (cfg.train.batch_size * cfg.train.accumulate)).max(1)
        };
        let synth_plan = data.synth_plan(&data_settings);
        let start_line = StartLine {
            data: Some(data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_path_buf())),
            fold: Some(cfg.data.fold),
            train_images: Some(data.train_idx.len() as u64),
            val_images: Some(data.val_idx.len() as u64),
            people: Some(data.set.people.len() as u64),
            device: Some(format!("{device:?}")),
            layout: Some(cfg.layout.to_string()),
            train_classes: Some(data.class_counts(&data.train_idx)),
            val_classes: Some(data.class_counts(&data.val_idx)),
            face_crop: data.faces.as_ref().filter(|_| cfg.data.face_crop == crate::data::settings::FaceCrop::Mtcnn).map(|f| f.counts),
            synth_mask_eligible: synth_plan.as_ref().map(|p| p.eligible() as u64),
            synth_mask_on_masked_eligible: synth_plan.as_ref().filter(|p| p.rates.masked > 0.0).map(|p| p.eligible_masked() as u64),
            synth_mask_copies: cfg.synth_mask_copies.then(|| data.mask_copies() as u64),
            tight_crop_eligible: data.tight_crop_plan(&data_settings).map(|p| p.eligible() as u64),
            world_size: Some(replicas.world_size() as u64),
            global_batch: Some((cfg.train.batch_size * cfg.train.accumulate * replicas.world_size()) as u64),
            provenance: main.then(crate::util::provenance::Provenance::of_this_process),
        };
        let mut trainer = Trainer {
            cfg: cfg.clone(),
            scaler: LossScaler::new(run_opts.autocast.scales_loss(), LossScaler::INITIAL_SCALE),
            run,
            device,
            run_opts,
            data,
            loader,
            nets,
            optimizers,
            emas,
            losses,
            steps_per_epoch,
            epoch: 0,
            step: 0,
            best: BestCheckpoint::default(),
            stopping: EarlyStopping::new(cfg.train.patience),
            resumed: None,
            start_line,
            guard: NonFiniteGuard::new(cfg.train.max_nonfinite_steps, device),
            replicas,
            _lock: lock,
        };
        if resume {
            trainer.restore()?;
        }
        Ok(trainer)
    }

    /// Trains the remaining epochs, announcing each event to `observers`.
    pub fn run(mut self, observers: &mut [Box<dyn TrainObserver>]) -> Result<TrainSummary> {
        let start = RunStart { run: &self.run, settings: &self.cfg, line: &self.start_line, resumed: self.resumed, epochs: self.cfg.train.epochs };
        for o in observers.iter_mut() {
            o.start(&start)?;
        }
        let mut best_eval: Option<Evaluation> = None;
        let mut epochs_run = 0;
        for epoch in self.epoch + 1..=self.cfg.train.epochs {
            let t0 = Instant::now();
            let stats = self.train_epoch(epoch, observers)?;
            self.ensure_weights_finite(epoch)?;
            let (evaluated, improved) = self.validate(epoch)?;
            let eval = evaluated.map(|e| e.eval);
            if improved {
                best_eval = eval.clone();
            }
            self.epoch = epoch;
            let line = EpochLine {
                epoch,
                step: self.step,
                train_loss: stats.mean_loss,
                lr: self.lr(0),
                train_images_per_s: stats.images as f64 / stats.seconds.max(1e-9),
                seconds: t0.elapsed().as_secs_f64(),
                val: eval.as_ref().map(ValScores::from),
                allreduce_seconds: stats.allreduce_seconds,
                intervals: eval.as_ref().filter(|_| improved).and_then(|e| e.intervals),
            };
            // The epoch's line goes first: a run killed before the checkpoint lands redoes the
            // epoch, and resuming drops the log lines of epochs after the checkpoint.
            let mut stop_asked: Option<String> = None;
            for o in observers.iter_mut() {
                if let EpochVerdict::Stop(reason) = o.epoch(&line, eval.as_ref(), improved)? {
                    stop_asked.get_or_insert(reason);
                }
            }
            self.save_last(&eval)?;
            epochs_run += 1;
            let reason = match stop_asked {
                Some(reason) => Some(Some(reason)),
                None => self.stopping.should_stop().then_some(None),
            };
            if let Some(reason) = reason {
                let line = EarlyStopLine { epoch, best_epoch: self.best.best_epoch, reason };
                for o in observers.iter_mut() {
                    o.early_stop(&line)?;
                }
                break;
            }
        }
        if best_eval.is_none() {
            best_eval = self.run.best()?.and_then(|b| b.eval);
        }
        let end = RunEnd { run: &self.run, best_epoch: self.best.best_epoch, epoch: self.epoch, best: best_eval.as_ref() };
        for o in observers.iter_mut() {
            o.end(&end)?;
        }
        Ok(TrainSummary { run: self.run.path().to_path_buf(), epochs_run, best_epoch: self.best.best_epoch, best: best_eval })
    }

    /// The learning rate of model `k` at the current step.
    fn lr(&self, k: usize) -> f64 {
        let settings = &self.cfg.models[k];
        lr_at(&settings.schedule, settings.optim.lr, self.step, self.steps_per_epoch, self.cfg.train.epochs)
    }

    /// One pass over the epoch's sampled training order.
    fn train_epoch(&mut self, epoch: usize, observers: &mut [Box<dyn TrainObserver>]) -> Result<EpochStats> {
        let t0 = Instant::now();
        let cfg = &self.cfg;
        // Reseeding per epoch makes a resumed run draw what an uninterrupted one would; each rank
        // draws its own augmentations (rank 0 those of a plain run).
        tch::manual_seed(cfg.train.seed as i64 + epoch as i64 + 1_000_003 * self.replicas.rank() as i64);
        // Every rank draws the same order and trains its share of it.
        let order: Vec<usize> =
            epoch_indices(&cfg.sampler, &self.data.train_classes(), epoch, cfg.train.seed)?.into_iter().map(|i| self.data.train_idx[i]).collect();
        let (micro, world) = (cfg.train.accumulate, self.replicas.world_size());
        let order = micro_batch_order(&self.replicas.train_shard(order), cfg.train.batch_size, micro);
        let batches = self.loader.for_epoch(epoch).batches(order, cfg.train.batch_size, true);
        for o in observers.iter_mut() {
            o.epoch_begin(epoch, batches.total() / micro);
        }
        // Losses, and the steps whose loss counts (those with finite ones), are summed on the
        // device and read at log points: no host sync per step.
        let device = self.device;
        let zero = || Tensor::zeros([], (Kind::Float, device));
        let (mut epoch_loss, mut window_loss) = (zero(), zero());
        let (mut epoch_counted, mut window_counted) = (zero(), zero());
        let (mut steps, mut images) = (0usize, 0usize);
        let mut window = (Instant::now(), 0usize);
        self.guard.begin_epoch();
        let mut micro_batches: Vec<(Tensor, Tensor)> = Vec::with_capacity(micro);
        for batch in batches {
            let batch = batch?;
            // A synthetic mask changes the sample's mask label to the state painted.
            let truth: Vec<i64> = batch
                .indices
                .iter()
                .zip(&batch.painted)
                .map(|(&i, mask)| mask.map_or(self.data.classes[i], |m| painted_class(self.data.classes[i], m.label)) as i64)
                .collect();
            micro_batches.push((batch.images, Tensor::from_slice(&truth)));
            if micro_batches.len() < micro {
                continue;
            }
            let (step_loss, bad) = self.step(&std::mem::take(&mut micro_batches))?;
            self.guard.record(&bad);
            let counted = bad.logical_not().to_kind(Kind::Float);
            self.step += 1;
            steps += 1;
            let step_images = batch.indices.len() * micro * world;
            images += step_images;
            epoch_loss += &step_loss;
            window_loss += &step_loss;
            epoch_counted += &counted;
            window_counted += &counted;
            window.1 += step_images;
            let mean_loss = || epoch_loss.double_value(&[]) / epoch_counted.double_value(&[]);
            for o in observers.iter_mut() {
                o.batch(steps, &mean_loss);
            }
            let log_every = self.cfg.train.log_every;
            let log_point = log_every > 0 && self.step % log_every == 0;
            if log_point || self.step % self.guard.check_every() == 0 {
                self.guard.check(epoch, self.step, self.lr(0))?;
            }
            if log_point {
                // The mean over every rank's steps (a collective: every rank logs at the same steps).
                let sums = self.replicas.sum(&[&window_loss, &window_counted])?;
                let line = StepLine {
                    epoch,
                    step: self.step,
                    loss: sums[0] / sums[1],
                    lr: self.lr(0),
                    images_per_s: window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9),
                };
                for o in observers.iter_mut() {
                    o.step(&line)?;
                }
                window = (Instant::now(), 0);
                window_loss = zero();
                window_counted = zero();
            }
        }
        let bad = self.guard.check(epoch, self.step, self.lr(0))?;
        if bad.skipped > 0 {
            tracing::warn!("epoch {epoch}: {} of {steps} steps skipped for a non-finite loss or gradients", bad.skipped);
        }
        let sums = self.replicas.sum(&[&epoch_loss, &epoch_counted])?;
        let mean_loss = if steps == 0 { 0.0 } else { sums[0] / sums[1] };
        Ok(EpochStats { mean_loss, images, seconds: t0.elapsed().as_secs_f64(), allreduce_seconds: self.replicas.take_allreduce_time() })
    }

    /// One optimiser step of every model on `train.accumulate` micro-batches (uint8 NHWC images,
    /// 18-way classes): their gradients are summed (each loss divided by their count) and, in a
    /// data-parallel run, averaged over the ranks. Returns the mean loss of the models that
    /// stepped, summed over models, and whether a model's loss or gradients were not finite on
    /// some rank (that model's step was skipped on every rank), both on the device.
    fn step(&mut self, micro_batches: &[(Tensor, Tensor)]) -> Result<(Tensor, Tensor)> {
        let device = self.device;
        let on_device: Vec<(Tensor, Tensor)> = micro_batches.iter().map(|(x, y)| (x.to_device(device), y.to_device(device))).collect();
        let share = 1.0 / on_device.len() as f64;
        let mut step_loss = Tensor::zeros([], (Kind::Float, device));
        let mut bad = Tensor::zeros([], (Kind::Bool, device));
        for k in 0..self.nets.len() {
            let lr = self.lr(k);
            let (net, optimizer) = (&self.nets[k], &mut self.optimizers[k]);
            optimizer.zero_grad();
            let mut loss = Tensor::zeros([], (Kind::Float, device));
            let mut loss_finite = Tensor::ones([], (Kind::Bool, device));
            for (images, truth) in &on_device {
                let x = net.augmenter.train(images);
                let (x, mix) = net.augmenter.mix(&x);
                let x = if self.run_opts.channels_last { to_channels_last(&x) } else { x };
                let out = self.run_opts.autocast.run(self.run_opts.device, || net.module.forward_t(&x, true));
                let mut micro_loss = Tensor::zeros([], (Kind::Float, device));
                for (head, l) in &self.losses[k] {
                    let logits = head.slice(&out);
                    let target = head.task.target(truth);
                    micro_loss = micro_loss
                        + match &mix {
                            Some(m) => l.forward(&logits, &target) * m.lam + l.forward(&logits, &target.index_select(0, &m.perm)) * (1.0 - m.lam),
                            None => l.forward(&logits, &target),
                        };
                }
                loss_finite = loss_finite.logical_and(&micro_loss.isfinite());
                let micro_loss = if on_device.len() > 1 { micro_loss * share } else { micro_loss };
                self.scaler.scaled(&micro_loss).backward();
                loss += micro_loss.detach();
            }
            self.replicas.average_gradients(optimizer)?;
            let replicas = &self.replicas;
            if !self.scaler.unscale_agreed(optimizer, |overflow| replicas.any(overflow))? {
                // fp16 overflow (on some rank): every rank skips this model's step and lowers its
                // scale, which is no fault; a loss that was not finite before scaling is one.
                bad = bad.logical_or(&replicas.all_true(&loss_finite)?.logical_not());
                continue;
            }
            // Decided on the device (and agreed by the ranks): the step applies only when the loss
            // and every gradient are finite.
            let finite = self.replicas.all_true(&loss_finite.logical_and(&optimizer.grads_finite()))?;
            let grad_clip = self.cfg.models[k].optim.grad_clip;
            if grad_clip > 0.0 {
                optimizer.clip_grad_norm(grad_clip);
            }
            optimizer.step_if(lr, &finite);
            if let Some(ema) = &mut self.emas[k] {
                ema.update(&net.vs);
            }
            step_loss += loss.where_self(&finite, &Tensor::zeros([], (Kind::Float, device)));
            bad = bad.logical_or(&finite.logical_not());
        }
        self.scaler.step_done();
        Ok((step_loss, bad))
    }

    /// Stops a run whose weights (or their average) stopped being finite, which a skipped step
    /// cannot undo (a non-finite forward pass also updates batch-norm statistics); before
    /// anything of the epoch is validated or saved.
    fn ensure_weights_finite(&self, epoch: usize) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = self.nets.iter().flat_map(|n| n.named_tensors()).collect();
        for (net, ema) in self.nets.iter().zip(&self.emas) {
            if let Some(e) = ema {
                tensors.extend(e.state().into_iter().map(|(k, t)| (format!("ema.{}.{k}", net.name), t)));
            }
        }
        let bad = checkpoint::non_finite_tensors(&tensors);
        if !bad.is_empty() {
            bail!(
                "training diverged in epoch {epoch}: {}; no checkpoint of them was written{}. Lower optim.lr or set optim.grad_clip",
                checkpoint::describe_non_finite(&bad),
                if self.epoch > 0 { format!(" (the last good one is epoch {}'s: --resume it with other settings)", self.epoch) } else { String::new() }
            );
        }
        Ok(())
    }

    /// Validates the epoch on the EMA weights when EMA is on, and keeps them as the best
    /// checkpoint when the monitored score improved (every epoch without a validation split).
    /// Returns the evaluation (None without a validation split) and whether it improved.
    fn validate(&mut self, epoch: usize) -> Result<(Option<Evaluated>, bool)> {
        // Each rank's BatchNorm statistics saw only its own share: take rank 0's, of the live
        // weights and of their average, before they are validated and saved.
        self.take_main_buffers()?;
        self.swap_ema();
        // PreciseBN on the weights validation sees (the average, with EMA on); every rank
        // estimates over the same batches, and rank 0's estimate is kept.
        let result = self.estimate_batch_norm(epoch).and_then(|estimated| {
            if estimated || self.emas.iter().any(Option::is_some) {
                self.take_main_buffers()
            } else {
                Ok(())
            }
        });
        let result = result.and_then(|_| self.validate_current(epoch));
        self.swap_ema();
        result
    }

    /// `train.precise_bn`: every model's BatchNorm statistics re-estimated over the first that
    /// many batches of the epoch's training order, without random augmentation. Returns whether
    /// it ran.
    fn estimate_batch_norm(&self, epoch: usize) -> Result<bool> {
        let (batches, batch_size) = (self.cfg.train.precise_bn, self.cfg.train.batch_size);
        if batches == 0 {
            return Ok(false);
        }
        let order: Vec<usize> = epoch_indices(&self.cfg.sampler, &self.data.train_classes(), epoch, self.cfg.train.seed)?
            .into_iter()
            .map(|i| self.data.train_idx[i])
            .take(batches * batch_size)
            .collect();
        for net in &self.nets {
            let images = self.loader.batches(order.clone(), batch_size, true).map(|b| b.map(|b| b.images).map_err(anyhow::Error::from));
            precise_bn::recompute_net(net, images, &self.run_opts)?;
        }
        Ok(true)
    }

    /// Overwrites every model's non-trainable tensors (BatchNorm statistics) with rank 0's.
    fn take_main_buffers(&self) -> Result<()> {
        if !self.replicas.is_distributed() {
            return Ok(());
        }
        let buffers: Vec<Tensor> = self.nets.iter().flat_map(|n| n.named_tensors()).map(|(_, t)| t).filter(|t| !t.requires_grad()).collect();
        self.replicas.broadcast_from_main(&buffers)
    }

    /// Validation outputs over the whole split: each rank infers its share, and all gather them.
    fn evaluate_split(&self) -> Result<Evaluated> {
        let (cfg, data) = (&self.cfg, &self.data);
        if !self.replicas.is_distributed() {
            return evaluate(&self.nets, &self.losses, cfg.layout, &self.loader, &data.classes, data.val_idx.clone(), cfg.train.eval_batch(), &self.run_opts);
        }
        let share = self.replicas.val_shard(&data.val_idx);
        let (probs, outputs, kept) = infer(&self.nets, cfg.layout, &self.loader, share, cfg.train.eval_batch(), &self.run_opts)?;
        let (probs, outputs, kept) = self.replicas.gather_validation(&data.val_idx, probs, outputs, kept)?;
        score_outputs(&self.losses, &data.classes, probs, &outputs, kept, &self.run_opts)
    }

    fn validate_current(&mut self, epoch: usize) -> Result<(Option<Evaluated>, bool)> {
        let evaluated = if self.data.val_idx.is_empty() {
            None
        } else {
            Some(self.evaluate_split().map_err(|e| {
                if e.downcast_ref::<NonFiniteOutputs>().is_some() {
                    e.context(format!("training diverged in epoch {epoch} (validation); no checkpoint of it was written. Lower optim.lr or set optim.grad_clip"))
                } else {
                    e
                }
            })?)
        };
        let mut evaluated = evaluated;
        let score = evaluated.as_ref().map(|e| self.cfg.train.monitor.score(&e.eval)).unwrap_or(epoch as f64);
        let improved = self.best.record(epoch, score);
        self.stopping.record(improved);
        if improved && self.replicas.is_main() {
            // The new best's rows (validation predictions) and the intervals of its scores, by a
            // bootstrap over the validation people (rank 0 alone writes and reports them).
            let rows = match &evaluated {
                Some(e) => Some(e.rows(&self.data, self.cfg.data.fold)?),
                None => None,
            };
            if let (Some(e), Some(rows), Some(resampling)) = (evaluated.as_mut(), &rows, self.cfg.intervals.resampling()) {
                e.eval.intervals = Some(heldout::score_intervals(rows, resampling).with_context(|| format!("epoch {epoch}: the intervals of the validation scores"))?);
            }
            self.save_best(epoch, evaluated.as_ref().map(|e| &e.eval), rows.as_deref())?;
        }
        Ok((evaluated, improved))
    }

    /// Exchanges live and averaged weights of every model with EMA (call again to restore).
    fn swap_ema(&mut self) {
        for (net, ema) in self.nets.iter().zip(&mut self.emas) {
            if let Some(e) = ema {
                e.swap(&net.vs);
            }
        }
    }

    /// The best checkpoint (rank 0): the current weights (those validation saw), the evaluation,
    /// and the validation predictions.
    fn save_best(&self, epoch: usize, eval: Option<&Evaluation>, rows: Option<&[heldout::HeldOutRow]>) -> Result<()> {
        let weights: Vec<(String, Tensor)> = self.nets.iter().flat_map(|n| n.named_tensors()).collect();
        let meta = CheckpointMeta {
            version: checkpoint::META_VERSION,
            kind: CheckpointKind::Best,
            epoch,
            layout: Some(self.cfg.layout.to_string()),
            metrics: eval.cloned(),
            config: self.cfg.config.clone(),
            state: None,
            replicas: None,
        };
        checkpoint::save_run_checkpoint(&self.run.checkpoint(BEST), &self.run.checkpoint_meta(BEST), &weights, &meta)?;
        if let Some(rows) = rows {
            heldout::write_rows(&self.run.val_predictions(), rows)?;
        }
        Ok(())
    }

    fn state(&self) -> TrainState {
        TrainState {
            epoch: self.epoch,
            step: self.step,
            // -inf does not survive JSON; a run with no validation yet stores the lowest finite value.
            best: if self.best.best.is_finite() { self.best.best } else { f64::MIN },
            best_epoch: self.best.best_epoch,
            bad_epochs: self.stopping.bad_epochs,
            loss_scale: self.scaler.scale(),
        }
    }

    /// The last checkpoint: live weights, optimiser and EMA state, and the counters to resume from.
    fn save_last(&self, eval: &Option<Evaluation>) -> Result<()> {
        // Every rank must hold the same weights; a checkpoint is taken only when they do.
        let weights: Vec<Tensor> = self.nets.iter().flat_map(|n| n.named_tensors()).map(|(_, t)| t).collect();
        let fingerprints = self.replicas.check_identical(&weights)?;
        if !self.replicas.is_main() {
            return Ok(());
        }
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for ((net, optimizer), ema) in self.nets.iter().zip(&self.optimizers).zip(&self.emas) {
            tensors.extend(net.named_tensors());
            tensors.extend(optimizer.state().into_iter().map(|(k, t)| (format!("optim.{}.{k}", net.name), t)));
            if let Some(e) = ema {
                tensors.extend(e.state().into_iter().map(|(k, t)| (format!("ema.{}.{k}", net.name), t)));
            }
        }
        let meta = CheckpointMeta {
            version: checkpoint::META_VERSION,
            kind: CheckpointKind::Last,
            epoch: self.epoch,
            layout: None,
            metrics: eval.clone(),
            config: self.cfg.config.clone(),
            state: Some(self.state()),
            replicas: self.replicas.is_distributed().then(|| ReplicaFingerprints { world_size: self.replicas.world_size(), weight_fingerprints: fingerprints }),
        };
        checkpoint::save_run_checkpoint(&self.run.checkpoint(LAST), &self.run.checkpoint_meta(LAST), &tensors, &meta)
    }

    /// Loads the last checkpoint's weights, optimiser and EMA state and counters.
    fn restore(&mut self) -> Result<()> {
        let path = self.run.checkpoint(LAST);
        let (tensors, meta) = checkpoint::load_run_checkpoint(&path).with_context(|| format!("cannot resume from {}", path.display()))?;
        let Some(state) = meta.state else { bail!("cannot resume from {}: it is no last checkpoint (no training state)", path.display()) };
        let strip = |prefix: String| -> Vec<(String, Tensor)> {
            tensors.iter().filter_map(|(k, t)| k.strip_prefix(&prefix).map(|k| (k.to_string(), t.shallow_clone()))).collect()
        };
        for ((net, optimizer), ema) in self.nets.iter_mut().zip(&mut self.optimizers).zip(&mut self.emas) {
            net.load_tensors(&tensors)?;
            optimizer.load_state(&strip(format!("optim.{}.", net.name)))?;
            if let Some(e) = ema {
                e.load_state(&strip(format!("ema.{}.", net.name)))?;
            }
        }
        self.epoch = state.epoch;
        self.step = state.step;
        self.best = BestCheckpoint { best: state.best, best_epoch: state.best_epoch };
        self.stopping = EarlyStopping { patience: self.cfg.train.patience, bad_epochs: state.bad_epochs };
        self.scaler = LossScaler::new(self.run_opts.autocast.scales_loss(), state.loss_scale);
        self.resumed = Some(Resumed { epoch: state.epoch, step: state.step });
        Ok(())
    }
}
