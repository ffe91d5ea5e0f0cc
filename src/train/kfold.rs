//! k-fold cross-validation: with `data.folds = k`, a run folder holds one ordinary run per fold
//! (`RUN/fold-1` .. `RUN/fold-k`), each trained on k-1 folds of people and validated on the
//! held-out one. Their best-epoch validation predictions together are the out-of-fold (OOF)
//! predictions: every image predicted once by a model that never saw its person, which gives
//! the cross-validated macro F1. `predict` on such a run ensembles its folds.
use crate::config::Config;
use crate::metrics::Scores;
use crate::predictions::{read_rows, score_rows, write_rows, PredictionRow};
use crate::train::trainer::{train, VAL_PREDICTIONS};
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which folds of a k-fold run have finished (written after each fold, so a resumed run skips them).
pub const FOLDS_FILE: &str = "folds.json";
pub const OOF_PREDICTIONS: &str = "oof_predictions.csv";
/// The cross-validated scores.
pub const CV_FILE: &str = "cv.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FoldsState {
    pub folds: usize,
    /// Fold numbers (1-based) whose training has finished.
    pub completed: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FoldScore {
    pub fold: usize,
    pub images: usize,
    pub people: usize,
    pub best_epoch: usize,
    pub scores: Scores,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: usize,
    /// Scores of all out-of-fold predictions pooled (what the competition metric sees).
    pub oof: Scores,
    pub images: usize,
    pub per_fold: Vec<FoldScore>,
    /// Mean and standard deviation of the folds' macro F1.
    pub fold_f1_mean: f64,
    pub fold_f1_std: f64,
}

pub fn fold_dir(run: &Path, fold: usize) -> PathBuf {
    run.join(format!("fold-{fold}"))
}

pub fn is_kfold_run(run: &Path) -> bool {
    run.join(FOLDS_FILE).is_file()
}

/// The runs whose models make up `run`: its folds for a k-fold run, else the run itself.
pub fn member_runs(run: &Path) -> Result<Vec<PathBuf>> {
    if !is_kfold_run(run) {
        return Ok(vec![run.to_path_buf()]);
    }
    let state = read_state(run)?;
    let missing: Vec<usize> = (1..=state.folds).filter(|k| !state.completed.contains(k)).collect();
    if !missing.is_empty() {
        bail!("{} is a k-fold run whose folds {missing:?} have not finished; continue it with masklab train DATA --resume {}", run.display(), run.display());
    }
    Ok((1..=state.folds).map(|k| fold_dir(run, k)).collect())
}

fn read_state(run: &Path) -> Result<FoldsState> {
    let path = run.join(FOLDS_FILE);
    serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?)
        .with_context(|| format!("{} is not a k-fold state file", path.display()))
}

fn write_state(run: &Path, state: &FoldsState) -> Result<()> {
    write_atomic(&run.join(FOLDS_FILE), serde_json::to_string_pretty(state)?.as_bytes())
}

/// Trains every fold of `cfg.data.folds` in turn into `run/fold-k`, then gathers the OOF
/// predictions and the cross-validated scores. With `resume`, finished folds are skipped and
/// an interrupted one continues from its last checkpoint.
pub fn train_folds(data: &Path, cfg: &Config, run: &Path, resume: bool, progress: bool) -> Result<CrossValidation> {
    let k = cfg.data.folds;
    if k < 2 || cfg.data.fold != 0 {
        bail!("train_folds needs data.folds >= 2 and data.fold = 0");
    }
    std::fs::create_dir_all(run).with_context(|| format!("cannot create run folder {}", run.display()))?;
    let mut state = if resume {
        read_state(run)?
    } else {
        if run.join(FOLDS_FILE).exists() || run.join("last.safetensors").exists() {
            bail!("{} already holds a run; use --resume {} to continue it, or another --out", run.display(), run.display());
        }
        FoldsState { folds: k, completed: Vec::new() }
    };
    if state.folds != k {
        bail!("{}: the run has {} folds, the config asks for {k}", run.display(), state.folds);
    }
    write_atomic(&run.join("config.toml"), cfg.to_toml()?.as_bytes())?;
    write_state(run, &state)?;
    for fold in 1..=k {
        if state.completed.contains(&fold) {
            eprintln!("fold {fold}/{k}: finished earlier");
            continue;
        }
        let dir = fold_dir(run, fold);
        let mut fold_cfg = cfg.clone();
        fold_cfg.data.fold = fold;
        let resume_fold = resume && dir.join("last.safetensors").exists();
        eprintln!("fold {fold}/{k} -> {}", dir.display());
        let summary = train(data, &fold_cfg, &dir, resume_fold, progress).with_context(|| format!("fold {fold} of {k}"))?;
        if let Some(e) = &summary.best {
            eprintln!("fold {fold}/{k}: best epoch {} f1 {:.4}", summary.best_epoch, e.scores.f1);
        }
        state.completed.push(fold);
        state.completed.sort_unstable();
        write_state(run, &state)?;
    }
    let cv = gather_oof(run, k)?;
    write_atomic(&run.join(CV_FILE), serde_json::to_string_pretty(&cv)?.as_bytes())?;
    if cfg.report.enabled {
        crate::report::write_after_training(run, cfg.report.worst);
    }
    Ok(cv)
}

/// Concatenates the folds' best-epoch validation predictions into `RUN/oof_predictions.csv`
/// and scores them. Fails if a person or image appears in two folds.
pub fn gather_oof(run: &Path, k: usize) -> Result<CrossValidation> {
    let mut all: Vec<PredictionRow> = Vec::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_fold = Vec::new();
    for fold in 1..=k {
        let dir = fold_dir(run, fold);
        let rows = read_rows(&dir.join(VAL_PREDICTIONS)).with_context(|| format!("fold {fold} has no validation predictions"))?;
        let people: BTreeSet<&str> = rows.iter().map(|r| r.person.as_str()).collect();
        for p in &people {
            if let Some(other) = owner.insert(p.to_string(), fold) {
                bail!("person {p} is held out in folds {other} and {fold}: the folds overlap");
            }
        }
        let best: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("best.json")).with_context(|| format!("{}", dir.join("best.json").display()))?)?;
        per_fold.push(FoldScore {
            fold,
            images: rows.len(),
            people: people.len(),
            best_epoch: best["epoch"].as_u64().unwrap_or(0) as usize,
            scores: score_rows(&rows, |r| r.predicted()),
        });
        all.extend(rows.into_iter().map(|r| PredictionRow { fold, ..r }));
    }
    let mut paths = BTreeSet::new();
    for r in &all {
        if !paths.insert(r.path.as_str()) {
            bail!("{} is predicted by two folds", r.path);
        }
    }
    write_rows(&run.join(OOF_PREDICTIONS), &all)?;
    let f1s: Vec<f64> = per_fold.iter().map(|f| f.scores.f1).collect();
    let mean = f1s.iter().sum::<f64>() / f1s.len() as f64;
    let std = (f1s.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / f1s.len() as f64).sqrt();
    Ok(CrossValidation { folds: k, oof: score_rows(&all, |r| r.predicted()), images: all.len(), per_fold, fold_f1_mean: mean, fold_f1_std: std })
}

/// The cross-validation as people read it.
pub fn render(cv: &CrossValidation) -> String {
    let mut s = String::new();
    for f in &cv.per_fold {
        s.push_str(&format!(
            "fold {}: {} people, {} images, best epoch {}, f1 {:.4} (mask {:.4} gender {:.4} age {:.4})\n",
            f.fold, f.people, f.images, f.best_epoch, f.scores.f1, f.scores.f1_mask, f.scores.f1_gender, f.scores.f1_age
        ));
    }
    let o = &cv.oof;
    s.push_str(&format!(
        "cross-validated ({} folds, {} out-of-fold images): f1 {:.4} accuracy {:.4} (mask {:.4} gender {:.4} age {:.4}); fold f1 {:.4} +- {:.4}\n",
        cv.folds, cv.images, o.f1, o.accuracy, o.f1_mask, o.f1_gender, o.f1_age, cv.fold_f1_mean, cv.fold_f1_std
    ));
    s
}
