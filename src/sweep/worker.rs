//! One sweep worker: it claims trials from the study one after another and runs each as an
//! ordinary training run in `SWEEP/trial-NNN` (its config.toml, lock, metrics log, checkpoints,
//! report and trackers, resumable like any run), with the sweep's observer beside the usual
//! ones. A trial whose worker died is taken over and resumed from its last checkpoint.
use super::observer::{PrunedBy, TrialObserver};
use super::space::Params;
use super::spec::{Direction, Objective};
use super::study::{Claim, Outcome, Study};
use crate::config::Config;
use crate::run_dir::metrics_log::History;
use crate::run_dir::RunDir;
use crate::train::data_parallel::Replicas;
use crate::train::trainer::Trainer;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::rc::Rc;

/// What every trial's config is made of, bottom to top: the base config file, the command
/// line's `key=value` (a local worker's device and threads among them), the trial's
/// parameters, and `train.monitor` set to the objective (so that the best checkpoint is the
/// best epoch by the objective).
#[derive(Clone, Debug, Default)]
pub struct TrialRecipe {
    pub data: PathBuf,
    pub base_config: Option<PathBuf>,
    pub overrides: Vec<String>,
}

impl TrialRecipe {
    /// The config of a trial with `params`.
    pub fn config(&self, params: &Params, objective: &Objective) -> Result<Config> {
        Config::load(self.base_config.as_deref(), &self.overrides_for(params, objective))
    }

    fn overrides_for(&self, params: &Params, objective: &Objective) -> Vec<String> {
        let mut all = self.overrides.clone();
        all.extend(params.iter().map(|(key, value)| value.as_override(key)));
        all.push(format!("train.monitor={}", objective.metric));
        all
    }

    /// Whether trials can run on this recipe at all: single runs with a validation split, not
    /// varying what the sweep itself sets. Checked once, before any trial.
    pub fn check(&self, space_keys: impl Iterator<Item = String>) -> Result<()> {
        for key in space_keys {
            if key == "train.monitor" {
                bail!("space.train.monitor: a sweep sets train.monitor to its objective's metric; choose the metric in [objective]");
            }
            if key == "data.folds" || key == "data.fold" {
                bail!("space.{key}: each trial of a sweep is a single run (no k-fold)");
            }
        }
        let cfg = Config::load(self.base_config.as_deref(), &self.overrides)?;
        if cfg.data.folds >= 2 {
            bail!("data.folds = {}: each trial of a sweep is a single run; leave data.folds at 0", cfg.data.folds);
        }
        if cfg.data.val_ratio <= 0.0 {
            bail!("data.val_ratio = 0: a sweep scores each epoch on the validation split; give it a share of the people (e.g. data.val_ratio=0.2)");
        }
        Ok(())
    }
}

/// What one worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerTally {
    pub complete: usize,
    pub pruned: usize,
    pub failed: usize,
}

/// Runs trials until the study's budget is spent (or this worker's time is up).
pub fn run_worker(study: &Rc<Study>, recipe: &TrialRecipe) -> Result<WorkerTally> {
    let mut tally = WorkerTally::default();
    while let Some(claim) = study.next_trial()? {
        match run_trial(study, recipe, claim)? {
            TrialEnd::Complete => tally.complete += 1,
            TrialEnd::Pruned => tally.pruned += 1,
            TrialEnd::Failed => tally.failed += 1,
        }
    }
    Ok(tally)
}

enum TrialEnd {
    Complete,
    Pruned,
    Failed,
}

fn run_trial(study: &Rc<Study>, recipe: &TrialRecipe, claim: Claim) -> Result<TrialEnd> {
    let objective = study.objective();
    let name = claim.name();
    let params: Vec<String> = claim.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("{name}: {}{}", params.join(" "), if claim.resume { format!(" (attempt {}: resuming)", claim.attempt) } else { String::new() });
    let cfg = match recipe.config(&claim.params, &objective) {
        Ok(cfg) => cfg,
        Err(e) => return fail(study, claim, format!("its config: {e:#}")),
    };
    let run = claim.run().clone();
    let resume = claim.resume;
    let claim = Rc::new(claim);
    let pruned: PrunedBy = PrunedBy::default();
    let mut observers = crate::app::observers::recording_observers(&cfg);
    observers.push(Box::new(TrialObserver::new(study.clone(), claim.clone(), objective, pruned.clone())));
    let result = cfg
        .run_settings()
        .and_then(|settings| Trainer::new(&recipe.data, &settings, run.clone(), resume, Replicas::default()))
        .and_then(|trainer| trainer.run(&mut observers));
    drop(observers);
    let claim = Rc::try_unwrap(claim).map_err(|_| anyhow::anyhow!("{name}: the trial's observers outlived its run"))?;
    if let Some(why) = pruned.take() {
        // The study marked the trial pruned when its pruner said so; the claim just ends.
        if let Err(e) = result {
            eprintln!("{name}: pruned ({why}), then its run failed: {e:#}");
        }
        return Ok(TrialEnd::Pruned);
    }
    match result.and_then(|_| best_value(&run, &objective)) {
        Ok(value) => {
            eprintln!("{name}: complete, {} {value:.4}", objective.metric);
            study.finish(claim, Outcome::Complete(value))?;
            Ok(TrialEnd::Complete)
        }
        Err(e) => fail(study, claim, format!("{e:#}")),
    }
}

fn fail(study: &Study, claim: Claim, error: String) -> Result<TrialEnd> {
    eprintln!("{}: failed: {error}", claim.name());
    study.finish(claim, Outcome::Failed(error))?;
    Ok(TrialEnd::Failed)
}

/// The trial's value: the objective at its best epoch, from its metrics log.
pub fn best_value(run: &RunDir, objective: &Objective) -> Result<f64> {
    let history = History::read(&run.metrics_file())?;
    let values: Vec<f64> = history.epochs.iter().filter_map(|e| e.val.as_ref()).map(|v| objective.value_of(v)).filter(|v| !v.is_nan()).collect();
    let best = match objective.direction {
        Direction::Maximize => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Direction::Minimize => values.iter().copied().fold(f64::INFINITY, f64::min),
    };
    if values.is_empty() {
        bail!("{}: no epoch with a validation score", run.metrics_file().display());
    }
    Ok(best)
}
