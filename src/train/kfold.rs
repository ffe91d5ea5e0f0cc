//! k-fold cross-validation: with `data.folds = k`, a run folder holds one ordinary run per fold
//! (`RUN/fold-1` .. `RUN/fold-k`), each trained on k-1 folds of people and validated on the
//! held-out one. Their best-epoch validation predictions together are the out-of-fold (OOF)
//! predictions: every image predicted once by a model that never saw its person, which gives
//! the cross-validated macro F1. `predict` on such a run ensembles its folds.
use crate::metrics::bootstrap::{Resampling, ScoreIntervals};
use crate::run_dir::heldout::{read_rows, score_intervals, score_rows, write_rows, HeldOutRow};
use crate::data::identity::dataset_identity;
use crate::data::prepared::prepare;
use crate::run_dir::{CrossValidation, DatasetIdentity, FoldScore, FoldsState, RunDir, RunLock};
use crate::train::data_parallel::Replicas;
use crate::train::observer::{KfoldEnd, ObserverFactory};
use crate::train::settings::RunSettings;
use crate::train::trainer::Trainer;
use crate::util::section::differences;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Trains every fold of `cfg.data.folds` in turn into `run/fold-k`, then gathers the OOF
/// predictions and the cross-validated scores. The caller holds the parent folder's lock (and
/// keeps it while it writes the run's report); each fold's trainer locks its own folder. Every
/// fold's config is checked against its data before the first fold trains. With `resume`,
/// finished folds are skipped and an interrupted one continues from its last checkpoint (or
/// starts afresh when it had none). In a data-parallel run every rank calls this, with the folder
/// (`run`) whose lock rank 0 holds (`lock`: None on the other ranks), and rank 0 alone writes.
pub fn train_folds(
    data: &Path,
    cfg: &RunSettings,
    run: &RunDir,
    lock: Option<&RunLock>,
    resume: bool,
    observers_for: &ObserverFactory,
    replicas: &Replicas,
) -> Result<Option<CrossValidation>> {
    let main = replicas.is_main();
    if main && lock.is_none() {
        bail!("train_folds: the caller must hold the lock of {}", run.path().display());
    }
    let k = cfg.data.folds;
    if k < 2 || cfg.data.fold != 0 {
        bail!("train_folds needs data.folds >= 2 and data.fold = 0");
    }
    std::fs::create_dir_all(run.path()).with_context(|| format!("cannot create run folder {}", run.path().display()))?;
    let resume = resume && {
        if !run.is_kfold() && main {
            eprintln!("{}: no fold has started yet; starting the k-fold run afresh", run.path().display());
        }
        run.is_kfold()
    };
    let mut state = if resume {
        run.folds_state()?
    } else {
        // Rank 0 alone: the others could see the folds state it writes next.
        if main && (run.is_kfold() || run.has_checkpoint()) {
            let p = run.path().display();
            bail!("{p} already holds a run; use --resume {p} to continue it, or another --out");
        }
        FoldsState { folds: k, completed: Vec::new() }
    };
    if state.folds != k {
        bail!("{}: the run has {} folds, the config asks for {k}", run.path().display(), state.folds);
    }
    check_folds(data, cfg, &state)?;
    if main {
        let identity = dataset_identity(data, &cfg.prepare_settings())?;
        if resume {
            check_same_data(run, &identity)?;
        }
        run.write_dataset_identity(&identity)?;
        run.write_config(&cfg.config)?;
        run.write_folds_state(&state)?;
    }
    for fold in 1..=k {
        if state.completed.contains(&fold) {
            if main {
                eprintln!("fold {fold}/{k}: finished earlier");
            }
            continue;
        }
        let dir = run.fold(fold);
        let fold_cfg = cfg.for_fold(fold)?;
        let resume_fold = resume && dir.has_checkpoint();
        if main {
            eprintln!("fold {fold}/{k} -> {}", dir.path().display());
        }
        let mut observers = if main { observers_for(&dir, &fold_cfg)? } else { Vec::new() };
        let summary = Trainer::new(data, &fold_cfg, dir, resume_fold, replicas.clone())
            .and_then(|t| t.run(&mut observers))
            .with_context(|| format!("fold {fold} of {k}"))?;
        state.completed.push(fold);
        state.completed.sort_unstable();
        if !main {
            continue;
        }
        if let Some(e) = &summary.best {
            eprintln!("fold {fold}/{k}: best epoch {} f1 {:.4}", summary.best_epoch, e.scores.f1);
        }
        run.write_folds_state(&state)?;
    }
    if !main {
        return Ok(None);
    }
    let cv = gather_oof(run, k, cfg.intervals.resampling())?;
    run.write_cv(&cv)?;
    announce_end(run, cfg, &cv, observers_for)?;
    Ok(Some(cv))
}

/// Tells the k-fold run's own observers (its report) that the run ended, while its lock is held.
fn announce_end(run: &RunDir, cfg: &RunSettings, cv: &CrossValidation, observers_for: &ObserverFactory) -> Result<()> {
    for mut o in observers_for(run, cfg)? {
        o.kfold_end(&KfoldEnd { run, cv })?;
    }
    Ok(())
}

/// How long a fold job waits for the parent folder while another job records its fold there.
const PARENT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(600);

/// Config keys that may differ between the jobs of one k-fold run: where and how fast each job
/// runs, not what it trains.
const PER_JOB_KEYS: &[&str] =
    &["data.fold", "data.workers", "data.prefetch", "data.cache_mib", "train.device", "train.threads", "train.dist_backend", "train.dist_timeout"];

/// How a fold job (`train_fold_job`) ended.
pub struct FoldJobEnd {
    /// The folds of the run not finished yet, this one excluded.
    pub remaining: Vec<usize>,
    /// With the last fold finished: the gathered cross-validation (the run's observers heard
    /// of it before the parent's lock was released).
    pub gathered: Option<CrossValidation>,
}

/// Trains fold `fold` of the k-fold run `run` as a job of its own (`masklab train --fold I`),
/// into `run/fold-I`. Jobs of different folds may run at the same time, on one machine or many
/// sharing the folder (a Slurm array): each takes the parent's lock only for a moment, to create
/// or check the parent (its config.toml must match this job's, but for `PER_JOB_KEYS`) and to
/// record its fold in folds.json when done. The job that finishes the last fold gathers the
/// out-of-fold predictions and cv.json, as `train_folds` would. With `resume`, an interrupted
/// fold continues from its last checkpoint, and a finished one is not trained again (the gather
/// is redone if every fold has finished). In a data-parallel job every rank calls this; rank 0
/// alone touches the parent.
pub fn train_fold_job(
    data: &Path,
    cfg: &RunSettings,
    run: &RunDir,
    fold: usize,
    resume: bool,
    observers_for: &ObserverFactory,
    replicas: &Replicas,
) -> Result<FoldJobEnd> {
    let main = replicas.is_main();
    let k = cfg.data.folds;
    if k < 2 {
        bail!("--fold {fold} trains one fold of a k-fold run: set data.folds (2 or more)");
    }
    if fold == 0 || fold > k {
        bail!("--fold must be in 1..={k} (data.folds = {k}), got {fold}");
    }
    if cfg.data.fold != 0 && cfg.data.fold != fold {
        bail!("--fold {fold} and data.fold = {} disagree: give the fold once, with --fold", cfg.data.fold);
    }
    let parent_cfg = cfg.for_fold(0)?;
    let mut already_finished = false;
    if main {
        std::fs::create_dir_all(run.path()).with_context(|| format!("cannot create run folder {}", run.path().display()))?;
        let _lock = RunLock::acquire_waiting(run, &format!("train --fold {fold}"), PARENT_PATIENCE)?;
        let identity = dataset_identity(data, &parent_cfg.prepare_settings())?;
        already_finished = join_parent(run, &parent_cfg, &identity, fold, resume)?;
    }
    let already_finished = replicas.any(already_finished)?;
    let dir = run.fold(fold);
    if already_finished {
        if main {
            eprintln!("fold {fold}/{k}: finished earlier ({})", dir.path().display());
        }
    } else {
        let fold_cfg = parent_cfg.for_fold(fold)?;
        if !resume && dir.has_checkpoint() {
            let p = run.path().display();
            bail!("fold {fold} of {p} was started earlier ({}); continue it with masklab train DATA --resume {p} --fold {fold}", dir.path().display());
        }
        if main {
            eprintln!("fold {fold}/{k} -> {}", dir.path().display());
        }
        let mut observers = if main { observers_for(&dir, &fold_cfg)? } else { Vec::new() };
        let summary = Trainer::new(data, &fold_cfg, dir.clone(), resume && dir.has_checkpoint(), replicas.clone())
            .and_then(|t| t.run(&mut observers))
            .with_context(|| format!("fold {fold} of {k} of {}", run.path().display()))?;
        if main {
            if let Some(e) = &summary.best {
                eprintln!("fold {fold}/{k}: best epoch {} f1 {:.4}", summary.best_epoch, e.scores.f1);
            }
        }
    }
    if !main {
        return Ok(FoldJobEnd { remaining: Vec::new(), gathered: None });
    }
    let lock = RunLock::acquire_waiting(run, &format!("train --fold {fold}"), PARENT_PATIENCE)?;
    let mut state = run.folds_state()?;
    if !state.completed.contains(&fold) {
        state.completed.push(fold);
        state.completed.sort_unstable();
        run.write_folds_state(&state)?;
    }
    let remaining: Vec<usize> = (1..=k).filter(|f| !state.completed.contains(f)).collect();
    if !remaining.is_empty() {
        return Ok(FoldJobEnd { remaining, gathered: None });
    }
    let cv = gather_oof(run, k, parent_cfg.intervals.resampling())?;
    run.write_cv(&cv)?;
    announce_end(run, &parent_cfg, &cv, observers_for)?;
    drop(lock);
    Ok(FoldJobEnd { remaining, gathered: Some(cv) })
}

/// Under the parent's lock: makes `run` a k-fold run of `cfg` on the data `identity` names
/// (config.toml, dataset.json, an empty folds.json) or checks that it is one, with the same
/// config and data. Returns whether `fold` has finished already (only allowed with `resume`).
fn join_parent(run: &RunDir, cfg: &RunSettings, identity: &DatasetIdentity, fold: usize, resume: bool) -> Result<bool> {
    let p = run.path().display();
    let k = cfg.data.folds;
    if !run.is_kfold() {
        if run.has_checkpoint() {
            bail!("{p} holds a run that is not a k-fold run; give --fold another --out");
        }
        run.write_dataset_identity(identity)?;
        run.write_config(&cfg.config)?;
        run.write_folds_state(&FoldsState { folds: k, completed: Vec::new() })?;
        return Ok(false);
    }
    let state = run.folds_state()?;
    if state.folds != k {
        bail!("{p} is a k-fold run of {} folds; this job's config asks for {k}", state.folds);
    }
    let differences = differences(&run.config_table()?, &cfg.config, PER_JOB_KEYS);
    if !differences.is_empty() {
        bail!(
            "{p} was started with another config than this job's (its config.toml vs this job); the folds of one run must train alike:\n  - {}",
            differences.join("\n  - ")
        );
    }
    check_same_data(run, identity)?;
    if run.dataset_identity()?.is_none() {
        run.write_dataset_identity(identity)?;
    }
    let finished = state.completed.contains(&fold);
    if finished && !resume {
        bail!("fold {fold} of {p} has finished already; to gather the run again, use masklab train DATA --resume {p}");
    }
    Ok(finished)
}

/// Refuses to add to the k-fold run `run` folds trained on other data than the data it records
/// (its dataset.json): their out-of-fold predictions would mix two datasets into one score. A run
/// that recorded none (made before masklab recorded it) is taken as it is.
fn check_same_data(run: &RunDir, identity: &DatasetIdentity) -> Result<()> {
    match run.dataset_identity()? {
        Some(recorded) if recorded.digest != identity.digest => bail!(
            "{} is a k-fold run of other data: its folds train {}, this job's data is {}; the folds of one run must train the same people, labels (after relabelling) and image files. Give this job the run's data, or another --out",
            run.path().display(),
            recorded.describe(),
            identity.describe()
        ),
        _ => Ok(()),
    }
}

/// The preflight checks of every fold still to train, all reported together.
fn check_folds(data: &Path, cfg: &RunSettings, state: &FoldsState) -> Result<()> {
    // Each problem once, with the folds it concerns (most concern all of them).
    let mut problems: Vec<(String, Vec<usize>)> = Vec::new();
    for fold in (1..=cfg.data.folds).filter(|f| !state.completed.contains(f)) {
        let fold_cfg = cfg.for_fold(fold)?;
        let prepared = prepare(data, &fold_cfg.prepare_settings())?;
        for p in crate::train::preflight::problems(&fold_cfg, &prepared) {
            match problems.iter_mut().find(|(q, _)| *q == p) {
                Some((_, folds)) => folds.push(fold),
                None => problems.push((p, vec![fold])),
            }
        }
    }
    if !problems.is_empty() {
        let lines: Vec<String> = problems
            .iter()
            .map(|(p, folds)| match folds.as_slice() {
                [one] => format!("fold {one}: {p}"),
                many => format!("folds {}: {p}", many.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")),
            })
            .collect();
        bail!("the config does not fit the data in {} (no fold was trained):\n  - {}", data.display(), lines.join("\n  - "));
    }
    Ok(())
}

/// Concatenates the folds' best-epoch validation predictions into `RUN/oof_predictions.csv`
/// and scores them, with 95% intervals by a bootstrap over people (each fold's, and the
/// out-of-fold scores') unless `intervals` is None. Fails if a person or image appears in two folds.
pub fn gather_oof(run: &RunDir, k: usize, intervals: Option<Resampling>) -> Result<CrossValidation> {
    let intervals_of = |rows: &[HeldOutRow], what: &str| -> Result<Option<ScoreIntervals>> {
        intervals.map(|r| score_intervals(rows, r).with_context(|| format!("the intervals of {what}"))).transpose()
    };
    let mut all: Vec<HeldOutRow> = Vec::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_fold = Vec::new();
    for fold in 1..=k {
        let dir = run.fold(fold);
        let rows = read_rows(&dir.val_predictions()).with_context(|| format!("fold {fold} has no validation predictions"))?;
        let people: BTreeSet<&str> = rows.iter().map(|r| r.person.as_str()).collect();
        for p in &people {
            if let Some(other) = owner.insert(p.to_string(), fold) {
                bail!("person {p} is held out in folds {other} and {fold}: the folds overlap");
            }
        }
        let best = dir.best()?.with_context(|| format!("fold {fold} has no best checkpoint ({})", dir.path().display()))?;
        per_fold.push(FoldScore {
            fold,
            images: rows.len(),
            people: people.len(),
            best_epoch: best.epoch,
            scores: score_rows(&rows, |r| r.predicted()),
            intervals: intervals_of(&rows, &format!("fold {fold}"))?,
        });
        all.extend(rows.into_iter().map(|r| HeldOutRow { fold, ..r }));
    }
    let mut paths = BTreeSet::new();
    for r in &all {
        if !paths.insert(r.path.as_str()) {
            bail!("{} is predicted by two folds", r.path);
        }
    }
    write_rows(&run.oof_predictions(), &all)?;
    let f1s: Vec<f64> = per_fold.iter().map(|f| f.scores.f1).collect();
    let mean = f1s.iter().sum::<f64>() / f1s.len() as f64;
    let std = (f1s.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / f1s.len() as f64).sqrt();
    let oof_intervals = intervals_of(&all, "the out-of-fold predictions")?;
    Ok(CrossValidation { folds: k, oof: score_rows(&all, |r| r.predicted()), images: all.len(), per_fold, fold_f1_mean: mean, fold_f1_std: std, oof_intervals })
}

/// The cross-validation as people read it.
pub fn render(cv: &CrossValidation) -> String {
    let mut s = String::new();
    for f in &cv.per_fold {
        s.push_str(&format!(
            "fold {}: {} people, {} images, best epoch {}, f1 {:.4}{} (mask {:.4} gender {:.4} age {:.4})\n",
            f.fold,
            f.people,
            f.images,
            f.best_epoch,
            f.scores.f1,
            f.intervals.map(|i| format!(" {}", i.f1.bracket())).unwrap_or_default(),
            f.scores.f1_mask,
            f.scores.f1_gender,
            f.scores.f1_age
        ));
    }
    let o = &cv.oof;
    s.push_str(&format!(
        "cross-validated ({} folds, {} out-of-fold images): f1 {:.4} accuracy {:.4} (mask {:.4} gender {:.4} age {:.4}); fold f1 {:.4} +- {:.4}\n",
        cv.folds, cv.images, o.f1, o.accuracy, o.f1_mask, o.f1_gender, o.f1_age, cv.fold_f1_mean, cv.fold_f1_std
    ));
    if let Some(i) = &cv.oof_intervals {
        s.push_str(&format!(
            "  95% CI: f1 {} (mask {} gender {} age {}); {}\n",
            i.f1.bracket(),
            i.f1_mask.bracket(),
            i.f1_gender.bracket(),
            i.f1_age.bracket(),
            i.method()
        ));
    }
    s
}
