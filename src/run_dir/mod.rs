//! The run folder: the one place that knows every file a run writes, their names and formats,
//! and how a run is read back. Training writes through it; eval, predict, tune, export, the
//! report and the trackers read through it.
//!
//! ```text
//! RUN/config.toml            the resolved config
//! RUN/metrics.jsonl          the metrics log (start, step, epoch, early-stop lines; see metrics_log)
//! RUN/best.safetensors|json  the best epoch's weights and its evaluation
//! RUN/last.safetensors|json  the last epoch's weights, optimiser state and counters (resume)
//! RUN/val_predictions.csv    the validation split's predictions at the best epoch
//! RUN/pretrained.json        what pretrained weights were loaded
//! RUN/framing.json           where the faces sat in the training inputs (see framing)
//! RUN/tune.json              fitted decision biases (masklab tune)
//! RUN/audit.json             suspected wrong labels (masklab audit, on a k-fold run)
//! RUN/report.html, report/   the report page and its charts
//! RUN/tensorboard/           TensorBoard event files;  RUN/mlflow.json  the MLflow run
//! RUN/.masklab.lock          held by whoever writes the run; names its process (see lock)
//! k-fold parent: RUN/folds.json (finished folds), RUN/dataset.json (the data every fold
//!                trains, see DatasetIdentity), RUN/fold-1 .. fold-k (runs),
//!                RUN/oof_predictions.csv, RUN/cv.json
//! ```
pub mod checkpoint;
pub mod framing;
pub mod heldout;
pub mod lock;
pub mod metrics_log;
pub mod predictions_csv;

pub use lock::RunLock;

use crate::metrics::bootstrap::ScoreIntervals;
use crate::metrics::{Evaluation, Scores};
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The checkpoint of the epoch with the best monitored score.
pub const BEST: &str = "best";
/// The checkpoint of the last finished epoch, which `--resume` continues from.
pub const LAST: &str = "last";

const CONFIG_FILE: &str = "config.toml";
const METRICS_FILE: &str = "metrics.jsonl";
const VAL_PREDICTIONS: &str = "val_predictions.csv";
const PRETRAINED_FILE: &str = "pretrained.json";
const FRAMING_FILE: &str = "framing.json";
const TUNE_FILE: &str = "tune.json";
const FACE_HEADS_FILE: &str = "face_heads.safetensors";
const REPORT_FILE: &str = "report.html";
const FIGURE_DIR: &str = "report";
const TENSORBOARD_DIR: &str = "tensorboard";
const MLFLOW_FILE: &str = "mlflow.json";
const FOLDS_FILE: &str = "folds.json";
const DATASET_FILE: &str = "dataset.json";
const OOF_PREDICTIONS: &str = "oof_predictions.csv";
const CV_FILE: &str = "cv.json";
const AUDIT_FILE: &str = "audit.json";
/// How TensorBoard's event files are named (tracking::tensorboard writes them).
const TENSORBOARD_EVENT_PREFIX: &str = "events.out.tfevents.";

/// A run folder (which need not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The run's name for people: its folder name.
    pub fn name(&self) -> String {
        self.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.root.display().to_string())
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn metrics_file(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }
    /// `RUN/<which>.safetensors`: BEST, LAST, or any other checkpoint name a user points at.
    pub fn checkpoint(&self, which: &str) -> PathBuf {
        self.root.join(format!("{which}.safetensors"))
    }
    /// `RUN/<which>.json`: the checkpoint's metadata for people and for other tools.
    pub fn checkpoint_meta(&self, which: &str) -> PathBuf {
        self.root.join(format!("{which}.json"))
    }
    pub fn val_predictions(&self) -> PathBuf {
        self.root.join(VAL_PREDICTIONS)
    }
    pub fn pretrained_report(&self) -> PathBuf {
        self.root.join(PRETRAINED_FILE)
    }
    pub fn framing_file(&self) -> PathBuf {
        self.root.join(FRAMING_FILE)
    }

    /// The training inputs' face framing (framing.json), None for a run that recorded none (its
    /// dataset had no faces.csv, or it cropped to faces, or an older masklab trained it).
    pub fn framing(&self) -> Result<Option<framing::TrainingFraming>> {
        let path = self.framing_file();
        if !path.is_file() {
            return Ok(None);
        }
        framing::TrainingFraming::read(&path).map(Some)
    }

    /// Records the framing a run trains with; None removes what an earlier attempt recorded.
    pub fn write_framing(&self, measured: Option<&framing::TrainingFraming>) -> Result<()> {
        let path = self.framing_file();
        match measured {
            Some(f) => f.write(&path),
            None if path.is_file() => std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display())),
            None => Ok(()),
        }
    }

    pub fn tune_file(&self) -> PathBuf {
        self.root.join(TUNE_FILE)
    }
    /// The face heads `tune --face-heads` fitted (`face_heads`).
    pub fn face_heads_file(&self) -> PathBuf {
        self.root.join(FACE_HEADS_FILE)
    }
    pub fn report_page(&self) -> PathBuf {
        self.root.join(REPORT_FILE)
    }
    /// The page's file name, relative to the run folder (pages link to each other with it).
    pub fn report_page_name() -> &'static str {
        REPORT_FILE
    }
    /// The folder beside the page that holds its charts as PNG files, relative to the run folder.
    pub fn figure_dir_name() -> &'static str {
        FIGURE_DIR
    }
    pub fn tensorboard_dir(&self) -> PathBuf {
        self.root.join(TENSORBOARD_DIR)
    }
    pub fn mlflow_file(&self) -> PathBuf {
        self.root.join(MLFLOW_FILE)
    }
    pub fn folds_file(&self) -> PathBuf {
        self.root.join(FOLDS_FILE)
    }
    /// The identity of the data a k-fold run's folds train (checked by every fold job).
    pub fn dataset_file(&self) -> PathBuf {
        self.root.join(DATASET_FILE)
    }
    pub fn oof_predictions(&self) -> PathBuf {
        self.root.join(OOF_PREDICTIONS)
    }
    pub fn cv_file(&self) -> PathBuf {
        self.root.join(CV_FILE)
    }
    /// The label audit of a k-fold run's out-of-fold predictions.
    pub fn audit_file(&self) -> PathBuf {
        self.root.join(AUDIT_FILE)
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(lock::LOCK_FILE)
    }

    /// The files of a finished run that are worth keeping elsewhere (MLflow's artifacts), when present.
    pub fn result_files(&self) -> Vec<PathBuf> {
        [self.checkpoint(BEST), self.checkpoint_meta(BEST), self.config_file(), self.metrics_file(), self.val_predictions(), self.framing_file(), self.report_page()]
            .into_iter()
            .filter(|p| p.is_file())
            .collect()
    }

    /// Fold `k` (1-based) of a k-fold run: an ordinary run in `RUN/fold-k`.
    pub fn fold(&self, k: usize) -> RunDir {
        RunDir::new(self.root.join(format!("fold-{k}")))
    }

    /// Whether this is the parent folder of a k-fold run.
    pub fn is_kfold(&self) -> bool {
        self.folds_file().is_file()
    }

    /// Whether training wrote a checkpoint here (a run to resume, not to overwrite).
    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint(LAST).exists()
    }

    /// Removes what a training attempt that stopped before its first checkpoint left (its
    /// metrics log, an early best checkpoint and validation predictions, decision biases fitted
    /// on them, its report page, its TensorBoard events), so that a fresh start neither appends
    /// to them nor shows them beside its own. Returns what it removed. A folder with a
    /// metrics.jsonl but no config.toml (which every masklab run writes before its log) holds
    /// someone else's log: an error, and nothing is removed. Call it only where no checkpoint is.
    pub fn discard_unfinished_attempt(&self) -> Result<Vec<PathBuf>> {
        if self.has_checkpoint() {
            bail!("{} holds a checkpoint: refusing to discard it", self.root.display());
        }
        if self.metrics_file().is_file() && !self.config_file().is_file() {
            bail!(
                "{} holds a {METRICS_FILE} that no masklab run wrote (there is no {CONFIG_FILE}); masklab will not write into it: choose another run folder",
                self.root.display()
            );
        }
        let mut doomed: Vec<PathBuf> = [
            self.metrics_file(),
            self.checkpoint(BEST),
            self.checkpoint_meta(BEST),
            self.checkpoint_meta(LAST),
            self.val_predictions(),
            self.tune_file(),
            self.report_page(),
        ]
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
        if let Ok(entries) = std::fs::read_dir(self.tensorboard_dir()) {
            doomed.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(TENSORBOARD_EVENT_PREFIX))
            }));
        }
        for path in &doomed {
            std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(doomed)
    }

    pub fn folds_state(&self) -> Result<FoldsState> {
        let path = self.folds_file();
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?)
            .with_context(|| format!("{} is not a k-fold state file", path.display()))
    }

    pub fn write_folds_state(&self, state: &FoldsState) -> Result<()> {
        write_atomic(&self.folds_file(), serde_json::to_string_pretty(state)?.as_bytes())
    }

    /// The runs whose models make up this run: its folds for a k-fold run, else the run itself.
    pub fn member_runs(&self) -> Result<Vec<RunDir>> {
        if !self.is_kfold() {
            return Ok(vec![self.clone()]);
        }
        let state = self.folds_state()?;
        let missing: Vec<usize> = (1..=state.folds).filter(|k| !state.completed.contains(k)).collect();
        if !missing.is_empty() {
            bail!(
                "{} is a k-fold run whose folds {missing:?} have not finished; continue it with masklab train DATA --resume {}",
                self.root.display(),
                self.root.display()
            );
        }
        Ok((1..=state.folds).map(|k| self.fold(k)).collect())
    }

    /// Opens the folder for a training run: creates and locks it (rank 0 of a data-parallel run;
    /// the other ranks neither lock nor write), and decides how the run starts. With `resume`, it
    /// continues from the last checkpoint, or starts afresh when the run stopped before writing
    /// one; without, a folder that already holds a run is an error, and what an attempt that
    /// stopped before its first checkpoint left is removed.
    pub fn open_for_training(&self, resume: bool, main: bool) -> Result<TrainingFolder> {
        std::fs::create_dir_all(self.path()).with_context(|| format!("cannot create run folder {}", self.path().display()))?;
        let lock = if main { Some(RunLock::acquire(self, "train")?) } else { None };
        let resume = resume && {
            let has = self.has_checkpoint();
            if !has && main {
                eprintln!("{}: no checkpoint to resume from (the run stopped during its first epoch); starting it afresh", self.path().display());
            }
            has
        };
        if !resume {
            if self.has_checkpoint() || self.is_kfold() {
                let p = self.path().display();
                bail!("{p} already holds a run; use --resume {p} to continue it, or another --out");
            }
            let removed = if main { self.discard_unfinished_attempt()? } else { Vec::new() };
            if !removed.is_empty() {
                let names: Vec<String> = removed.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
                eprintln!("{}: removed what an attempt that stopped before its first checkpoint left: {}", self.path().display(), names.join(", "));
            }
        }
        Ok(TrainingFolder { lock, resume })
    }

    /// Removes what a run wrote here when that is nothing trained (only its config, lock, and a
    /// k-fold run's folds.json and dataset.json), and the folder itself unless `keep_folder`: a
    /// command that failed before training anything leaves nothing behind that looks like a
    /// run. Anything else in the folder, or another process holding its lock, keeps it all.
    /// Returns whether anything was removed.
    pub fn remove_if_nothing_trained(&self, keep_folder: bool) -> Result<bool> {
        const SETUP_ONLY: [&str; 4] = [CONFIG_FILE, lock::LOCK_FILE, FOLDS_FILE, DATASET_FILE];
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(false) };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry.with_context(|| format!("cannot list {}", self.root.display()))?.file_name();
            match name.to_str() {
                Some(n) if SETUP_ONLY.contains(&n) => names.push(n.to_string()),
                _ => return Ok(false),
            }
        }
        let Ok(Ok(lock)) = RunLock::try_acquire(self, "cleanup") else { return Ok(false) };
        for name in names.iter().filter(|n| *n != lock::LOCK_FILE) {
            std::fs::remove_file(self.root.join(name)).with_context(|| format!("cannot remove {}", self.root.join(name).display()))?;
        }
        std::fs::remove_file(self.lock_file()).with_context(|| format!("cannot remove {}", self.lock_file().display()))?;
        drop(lock);
        if !keep_folder {
            std::fs::remove_dir(&self.root).with_context(|| format!("cannot remove {}", self.root.display()))?;
        }
        Ok(true)
    }

    /// The run's resolved config (config.toml) as a table of sections, each read by the module
    /// that owns it (`util::section`); a folder without one is not a run.
    pub fn config_table(&self) -> Result<toml::Table> {
        let path = self.config_file();
        let text = std::fs::read_to_string(&path).with_context(|| format!("{} is not a masklab run: cannot read {}", self.root.display(), path.display()))?;
        text.parse().with_context(|| format!("{}: not a TOML config", path.display()))
    }

    /// Writes the run's resolved config (config.toml).
    pub fn write_config(&self, config: &toml::Table) -> Result<()> {
        write_atomic(&self.config_file(), toml::to_string_pretty(config)?.as_bytes())
    }

    /// best.json: the best epoch and its validation evaluation; None before the first best.
    pub fn best(&self) -> Result<Option<BestEpoch>> {
        let path = self.checkpoint_meta(BEST);
        if !path.is_file() {
            return Ok(None);
        }
        let meta = checkpoint::CheckpointMeta::read_side_file(&path)?;
        Ok(Some(BestEpoch { epoch: meta.epoch, eval: meta.metrics }))
    }

    /// dataset.json; None for a run that has not recorded one (made before masklab recorded it).
    pub fn dataset_identity(&self) -> Result<Option<DatasetIdentity>> {
        let path = self.dataset_file();
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).map(Some).with_context(|| format!("{} is not a dataset identity file", path.display()))
    }

    pub fn write_dataset_identity(&self, identity: &DatasetIdentity) -> Result<()> {
        write_atomic(&self.dataset_file(), serde_json::to_string_pretty(identity)?.as_bytes())
    }

    pub fn read_cv(&self) -> Result<CrossValidation> {
        let path = self.cv_file();
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?)
            .with_context(|| format!("{} is not a cross-validation file", path.display()))
    }

    pub fn write_cv(&self, cv: &CrossValidation) -> Result<()> {
        write_atomic(&self.cv_file(), serde_json::to_string_pretty(cv)?.as_bytes())
    }
}

/// best.json, as read back.
#[derive(Clone, Debug)]
pub struct BestEpoch {
    pub epoch: usize,
    /// The validation evaluation (None for a run without a validation split).
    pub eval: Option<Evaluation>,
}

/// A run folder opened for training (`RunDir::open_for_training`).
pub struct TrainingFolder {
    /// Held while the run trains (None on the ranks other than 0).
    pub lock: Option<RunLock>,
    /// Whether the run continues from its last checkpoint.
    pub resume: bool,
}

/// What a k-fold run's folds train: a digest of every person (id, labels after relabelling,
/// folder) and every image (path inside the dataset folder, mask state, size in bytes), so that
/// fold jobs started apart (a Slurm array, a resumed run) can prove they split the same data.
/// Paths are relative to the dataset folder: the same data mounted elsewhere is the same data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    /// sha256 of the canonical listing, hex.
    pub digest: String,
    pub people: usize,
    pub images: usize,
    /// The dataset folder as the recording job named it (for the message only).
    pub folder: String,
}

impl DatasetIdentity {
    /// "280 images of 40 people in D (digest 1a2b3c4d5e6f)".
    pub fn describe(&self) -> String {
        format!("{} images of {} people in {} (digest {})", self.images, self.people, self.folder, &self.digest[..self.digest.len().min(12)])
    }
}

/// Which folds of a k-fold run have finished (written after each fold, so a resumed run skips them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FoldsState {
    pub folds: usize,
    /// Fold numbers (1-based) whose training has finished.
    pub completed: Vec<usize>,
}

/// One fold's held-out scores, in cv.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FoldScore {
    pub fold: usize,
    pub images: usize,
    pub people: usize,
    pub best_epoch: usize,
    pub scores: Scores,
    /// 95% intervals of the fold's scores by a bootstrap over its people (absent in older files
    /// and with `intervals.resamples = 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<ScoreIntervals>,
}

/// cv.json: the cross-validated scores of a k-fold run.
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
    /// 95% intervals of the out-of-fold scores by a bootstrap over all the run's people (absent
    /// in older files and with `intervals.resamples = 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oof_intervals: Option<ScoreIntervals>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_start_discards_an_unfinished_attempt_but_not_a_foreign_log() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::write(run.metrics_file(), "{\"kind\":\"start\"}\n").unwrap();
        let err = format!("{:#}", run.discard_unfinished_attempt().unwrap_err());
        assert!(err.contains("no masklab run wrote"), "{err}");
        assert!(run.metrics_file().exists(), "a foreign log is left alone");
        std::fs::write(run.config_file(), "").unwrap();
        std::fs::create_dir_all(run.tensorboard_dir()).unwrap();
        for f in [run.checkpoint(BEST), run.checkpoint_meta(BEST), run.val_predictions(), run.tensorboard_dir().join("events.out.tfevents.1.host")] {
            std::fs::write(f, "x").unwrap();
        }
        std::fs::write(run.tensorboard_dir().join("notes.txt"), "mine").unwrap();
        let removed = run.discard_unfinished_attempt().unwrap();
        assert_eq!(removed.len(), 5, "{removed:?}");
        assert!(!run.metrics_file().exists() && !run.checkpoint(BEST).exists());
        assert!(run.config_file().exists() && run.tensorboard_dir().join("notes.txt").exists());
        std::fs::write(run.checkpoint(LAST), "x").unwrap();
        assert!(run.discard_unfinished_attempt().is_err(), "a run with a checkpoint is never discarded");
    }

    #[test]
    fn a_kfold_run_is_its_finished_folds() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert!(!run.is_kfold());
        assert_eq!(run.member_runs().unwrap(), vec![run.clone()]);
        run.write_folds_state(&FoldsState { folds: 3, completed: vec![1, 3] }).unwrap();
        assert!(run.is_kfold());
        let err = format!("{:#}", run.member_runs().unwrap_err());
        assert!(err.contains("[2]") && err.contains("--resume"), "{err}");
        run.write_folds_state(&FoldsState { folds: 3, completed: vec![1, 2, 3] }).unwrap();
        let members = run.member_runs().unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[1].path(), dir.path().join("fold-2"));
        assert_eq!(members[1].checkpoint(BEST), dir.path().join("fold-2/best.safetensors"));
    }
}
