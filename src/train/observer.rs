//! What a training run announces to whoever listens: the metrics file, the console and progress
//! bar, TensorBoard, MLflow and the end-of-run report are observers that the command line wires
//! in; the trainer knows none of them. Events come in order: `start`, then per epoch
//! `epoch_begin`, `batch`* and `step`* (the log lines), `epoch`, possibly `early_stop`, and `end`
//! when the run finished; a k-fold run ends with `kfold_end` to its own observers. A run that fails ends without `end`: an observer that must record a
//! failure does so when it is dropped.
use crate::metrics::Evaluation;
use crate::run_dir::metrics_log::{EarlyStopLine, EpochLine, StartLine, StepLine};
use crate::run_dir::{CrossValidation, RunDir};
use crate::train::settings::RunSettings;
use anyhow::Result;

/// The beginning of a run.
pub struct RunStart<'a> {
    pub run: &'a RunDir,
    pub settings: &'a RunSettings,
    /// What the run trains on; logged once, when a run starts fresh.
    pub line: &'a StartLine,
    /// Set when the run continues from its last checkpoint.
    pub resumed: Option<Resumed>,
    pub epochs: usize,
}

/// Where a resumed run continues from.
#[derive(Clone, Copy, Debug)]
pub struct Resumed {
    /// The last finished epoch.
    pub epoch: usize,
    /// The optimiser steps done by then.
    pub step: usize,
}

/// The end of a finished run.
pub struct RunEnd<'a> {
    pub run: &'a RunDir,
    pub best_epoch: usize,
    /// The last epoch trained.
    pub epoch: usize,
    /// The best epoch's validation evaluation (with its intervals when they were drawn).
    pub best: Option<&'a Evaluation>,
}

/// What an observer answers when an epoch ended: go on, or end the run after this epoch (its
/// last checkpoint is written first), for a reason the run's log records. A sweep's pruner stops
/// a poor trial this way; the trainer knows no more than the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EpochVerdict {
    Continue,
    Stop(String),
}

/// Every method has a default that ignores the event. Errors fail the run: an observer whose
/// failure should not (a tracker) warns and returns Ok.
pub trait TrainObserver {
    fn start(&mut self, _run: &RunStart) -> Result<()> {
        Ok(())
    }
    /// An epoch of `batches` optimiser steps begins.
    fn epoch_begin(&mut self, _epoch: usize, _batches: usize) {}
    /// A step finished; `mean_loss` reads the epoch's mean training loss so far (a device sync:
    /// call it only now and then).
    fn batch(&mut self, _done: usize, _mean_loss: &dyn Fn() -> f64) {}
    /// A step log line (every `train.log_every` steps).
    fn step(&mut self, _line: &StepLine) -> Result<()> {
        Ok(())
    }
    /// An epoch finished and was validated (`eval`: None without a validation split; with the
    /// 95% intervals of its scores when it is the new best); `improved`: it is the new best
    /// checkpoint. Every observer hears the epoch; if any answers `Stop`, the run ends after it.
    fn epoch(&mut self, _line: &EpochLine, _eval: Option<&Evaluation>, _improved: bool) -> Result<EpochVerdict> {
        Ok(EpochVerdict::Continue)
    }
    fn early_stop(&mut self, _line: &EarlyStopLine) -> Result<()> {
        Ok(())
    }
    fn end(&mut self, _end: &RunEnd) -> Result<()> {
        Ok(())
    }
    /// Every fold of a k-fold run finished and their out-of-fold predictions were gathered
    /// (announced to the observers of the k-fold run itself, while its folder is locked).
    fn kfold_end(&mut self, _end: &KfoldEnd) -> Result<()> {
        Ok(())
    }
}

/// The end of a k-fold run: its folder and cross-validated scores.
pub struct KfoldEnd<'a> {
    pub run: &'a RunDir,
    pub cv: &'a CrossValidation,
}

/// Makes the observers of one run (a k-fold run makes a set per fold).
pub type ObserverFactory<'a> = dyn Fn(&RunDir, &RunSettings) -> Result<Vec<Box<dyn TrainObserver>>> + 'a;
