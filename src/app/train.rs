//! `masklab train`: what to run. A process started with `--nproc` launches its workers; a rank
//! of a distributed run (torchrun, srun, the launcher) joins the others; then the config decides
//! between one fold's job (`--fold`), a whole k-fold run (`data.folds >= 2`) and a single run.
use super::observers::training_observers;
use crate::config::Config;
use crate::dist::launch::Nproc;
use crate::run_dir::{CrossValidation, RunDir, RunLock};
use crate::train::data_parallel::Replicas;
use crate::train::kfold::{train_fold_job, train_folds};
use crate::train::observer::TrainObserver;
use crate::train::settings::RunSettings;
use crate::train::trainer::{TrainSummary, Trainer};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A training command as given.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub data: PathBuf,
    /// The TOML config (None: the built-in defaults).
    pub config: Option<PathBuf>,
    pub out: Option<PathBuf>,
    /// Continue the run in this folder (its config.toml, plus the overrides).
    pub resume: Option<PathBuf>,
    pub overrides: Vec<String>,
    /// Show a progress bar.
    pub progress: bool,
    /// Start this many data-parallel workers of this program.
    pub nproc: Option<Nproc>,
    /// Allow `nproc` beyond this machine's cores and GPUs.
    pub oversubscribe: bool,
    /// Train this fold of the k-fold run as a job of its own.
    pub fold: Option<usize>,
}

/// How a training command ended.
pub enum TrainEnd {
    /// A single run (its summary).
    Run(TrainSummary),
    /// A whole k-fold run, or the fold job that finished its last fold: the run and its scores.
    KFold { run: RunDir, cv: CrossValidation },
    /// A fold job; other folds are still to finish.
    FoldDone { run: RunDir, fold: usize, remaining: Vec<usize> },
    /// The workers this process launched (`--nproc`) finished.
    Launched,
    /// This process is a rank other than 0 of a data-parallel run: rank 0 reports.
    OtherRank,
}

pub fn train(req: &TrainRequest) -> Result<TrainEnd> {
    let launched = crate::dist::env::DistEnv::from_env()?;
    let has_folder = req.out.is_some() || req.resume.is_some();
    if launched.is_some() && !has_folder {
        bail!("a distributed run needs --out RUN (or --resume RUN): every rank must train into the same folder");
    }
    if let Some(nproc) = req.nproc {
        if launched.is_some() {
            bail!("--nproc starts its own workers; this process already is a rank of a distributed run (torchrun, srun): leave --nproc out");
        }
        if !has_folder {
            bail!("--nproc needs --out RUN (or --resume RUN): every worker must train into the same folder");
        }
        crate::dist::launch::relaunch_self(nproc.resolve(req.oversubscribe)?, "--nproc")?;
        return Ok(TrainEnd::Launched);
    }
    let (cfg, run, resume) = match &req.resume {
        Some(run) => {
            let run = RunDir::new(run);
            (Config::load(Some(&run.config_file()), &req.overrides)?, run, true)
        }
        None => {
            let cfg = Config::load(req.config.as_deref(), &req.overrides)?;
            let run = RunDir::new(req.out.clone().unwrap_or_else(|| next_run_dir(&cfg)));
            (cfg, run, false)
        }
    };
    // A folder this command creates (or finds empty) is left as it was found if the command
    // fails before training anything (bad data, a config that does not fit it): no half-made
    // run is left to confuse the next `--out`. Rank 0 alone, which writes the folder.
    let existed = run.path().exists();
    let found_empty = !existed || std::fs::read_dir(run.path()).is_ok_and(|mut d| d.next().is_none());
    let clean_up = !resume && req.fold.is_none() && found_empty && launched.as_ref().is_none_or(|e| e.rank == 0);
    let result = train_into(req, cfg, run.clone(), resume, has_folder);
    if result.is_err() && clean_up {
        if let Err(e) = run.remove_if_nothing_trained(existed) {
            tracing::warn!("{e:#}");
        }
    }
    result
}

/// `train` once the run folder and config are known.
fn train_into(req: &TrainRequest, cfg: Config, run: RunDir, resume: bool, has_folder: bool) -> Result<TrainEnd> {
    // A rank of a data-parallel run joins the others here (None when started alone).
    let timeout = std::time::Duration::from_secs(cfg.train.dist_timeout);
    let dist = crate::dist::Dist::init(cfg.train.dist_backend, cfg.train.device.resolve()?, timeout)?;
    let replicas = Replicas::new(dist.map(std::rc::Rc::new));
    // Rank 0 alone logs, tracks and reports.
    let main = replicas.is_main();
    let observers_for = |_run: &RunDir, _settings: &RunSettings| -> Result<Vec<Box<dyn TrainObserver>>> {
        Ok(if main { training_observers(&cfg, req.progress) } else { Vec::new() })
    };
    let settings = cfg.run_settings()?;
    let end = if let Some(fold) = req.fold {
        if !has_folder {
            bail!("--fold needs the k-fold run's folder: --out RUN (or --resume RUN), the same for every fold's job");
        }
        let end = train_fold_job(&req.data, &settings, &run, fold, resume, &observers_for, &replicas)?;
        match end.gathered {
            Some(cv) => TrainEnd::KFold { run, cv },
            None => TrainEnd::FoldDone { run, fold, remaining: end.remaining },
        }
    } else if cfg.data.folds >= 2 && cfg.data.fold == 0 {
        std::fs::create_dir_all(run.path()).with_context(|| format!("cannot create run folder {}", run.path().display()))?;
        // Held until the run's observers have heard that it ended (its report is written).
        let lock = if main { Some(RunLock::acquire(&run, "train")?) } else { None };
        match train_folds(&req.data, &settings, &run, lock.as_ref(), resume, &observers_for, &replicas)? {
            Some(cv) => TrainEnd::KFold { run, cv },
            None => TrainEnd::OtherRank,
        }
    } else {
        let mut observers = observers_for(&run, &settings)?;
        TrainEnd::Run(Trainer::new(&req.data, &settings, run, resume, replicas)?.run(&mut observers)?)
    };
    Ok(if main { end } else { TrainEnd::OtherRank })
}

/// runs/<backbone>-<layout>-<n>, the first n not taken.
fn next_run_dir(cfg: &Config) -> PathBuf {
    let base = format!("{}-{}", cfg.model.backbone, cfg.model.layout);
    (1..).map(|n| Path::new("runs").join(format!("{base}-{n}"))).find(|p| !p.exists()).expect("a free run name")
}
