//! A training run folder read back from disk: the resolved config, the metrics log (start,
//! step, epoch and early-stop lines), the best epoch's evaluation and its validation
//! predictions. Reports and comparisons are built from this alone, so `masklab report RUN`
//! gives the page that training wrote.
use crate::run_dir::heldout::{read_rows, score_intervals, HeldOutRow};
use crate::labels::AgeBounds;
use crate::metrics::Evaluation;
use crate::run_dir::metrics_log::{EpochLine, History, ResumeLine, StartLine, StepLine};
use crate::report::settings::ReportConfig;
use crate::run_dir::RunDir;
use crate::train::settings::RunSettings;
use crate::util::section::read;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The best checkpoint's epoch and validation evaluation (best.json).
#[derive(Clone, Debug)]
pub struct Best {
    pub epoch: usize,
    pub eval: Evaluation,
}

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub dir: PathBuf,
    /// The run's settings, read from its config.toml.
    pub settings: RunSettings,
    pub report: ReportConfig,
    /// config.toml as written, for people to read.
    pub config_text: String,
    pub start: StartLine,
    pub epochs: Vec<EpochLine>,
    pub steps: Vec<StepLine>,
    /// The epoch after which early stopping ended the run.
    pub early_stop: Option<usize>,
    /// Why the run ended early when something other than early stopping ended it (a sweep's pruner).
    pub stop_reason: Option<String>,
    /// Who resumed the run, each time (who started it is in `start`).
    pub resumes: Vec<ResumeLine>,
    /// The best epoch, with the 95% intervals of its scores (drawn from its validation
    /// predictions here for runs from before training recorded them).
    pub best: Option<Best>,
}

impl RunRecord {
    /// Reads a single (not k-fold) run folder; anything else is an error naming the path.
    pub fn load(dir: &Path) -> Result<RunRecord> {
        if !dir.is_dir() {
            bail!("{} is not a folder (expected a run folder written by masklab train)", dir.display());
        }
        let run = RunDir::new(dir);
        if run.is_kfold() {
            bail!("{} is a k-fold run: its folds are the runs (fold-1 ...)", dir.display());
        }
        let (config_path, metrics_path) = (run.config_file(), run.metrics_file());
        if !config_path.is_file() || !metrics_path.is_file() {
            bail!("{} is not a masklab run folder: it has no config.toml and metrics.jsonl", dir.display());
        }
        let config_text = std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
        let config = run.config_table()?;
        let report = read(&config).with_context(|| format!("{}", config_path.display()))?;
        let settings = RunSettings::from_config(config).with_context(|| format!("{}", config_path.display()))?;
        let History { start, epochs, steps, early_stop, stop_reason, resumes, .. } = History::read(&metrics_path)?;
        let mut best = run.best()?.and_then(|b| b.eval.map(|eval| Best { epoch: b.epoch, eval }));
        if let (Some(b), Some(resampling)) = (best.as_mut(), settings.intervals.resampling()) {
            let predictions = run.val_predictions();
            if b.eval.intervals.is_none() && predictions.is_file() {
                let rows = read_rows(&predictions)?;
                b.eval.intervals = Some(score_intervals(&rows, resampling).with_context(|| format!("the intervals of {}", predictions.display()))?);
            }
        }
        Ok(RunRecord { dir: dir.to_path_buf(), settings, report, config_text, start, epochs, steps, early_stop, stop_reason, resumes, best })
    }

    /// The run's name for people: its folder name.
    pub fn name(&self) -> String {
        folder_name(&self.dir)
    }

    pub fn bounds(&self) -> AgeBounds {
        self.settings.data.bounds().unwrap_or_default()
    }

    /// The best epoch's validation predictions, when the run wrote them.
    pub fn val_predictions(&self) -> Result<Option<Vec<HeldOutRow>>> {
        let path = RunDir::new(&self.dir).val_predictions();
        if !path.is_file() {
            return Ok(None);
        }
        read_rows(&path).map(Some)
    }

    /// Fractional epoch of each step line: epoch e spans (e-1, e], split evenly by its steps.
    pub fn step_epoch(&self, s: &StepLine) -> f64 {
        let end = self.epochs.iter().find(|e| e.epoch == s.epoch).map(|e| e.step);
        let begin = self.epochs.iter().find(|e| e.epoch + 1 == s.epoch).map(|e| e.step).unwrap_or(0);
        match end {
            Some(end) if end > begin => (s.epoch - 1) as f64 + (s.step - begin) as f64 / (end - begin) as f64,
            _ => s.epoch as f64,
        }
    }
}

/// The config as dotted keys (`optim.lr`) and their TOML values, for tables and comparisons.
pub fn config_values(config: &toml::Table) -> BTreeMap<String, String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(sub) if !sub.is_empty() => walk(&key, sub, out),
                toml::Value::String(s) => {
                    out.insert(key, s.clone());
                }
                other => {
                    out.insert(key, other.to_string());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", config, &mut out);
    out
}

pub fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_placed_within_their_epoch() {
        let text = r#"{"kind":"step","epoch":1,"step":2,"loss":2.0,"lr":0.1}
{"kind":"epoch","epoch":1,"step":4,"train_loss":1.5,"lr":0.1,"seconds":2.0,"val":null}
{"kind":"step","epoch":2,"step":6,"loss":1.0,"lr":0.05}
{"kind":"epoch","epoch":2,"step":8,"train_loss":0.9,"lr":0.05,"seconds":2.0,"val":null}
"#;
        let History { start, epochs, steps, early_stop, .. } = History::parse(text, Path::new("m.jsonl")).unwrap();
        let config = crate::config::Config::default().table().unwrap();
        let run = RunRecord {
            dir: PathBuf::from("r"),
            settings: RunSettings::from_config(config.clone()).unwrap(),
            report: ReportConfig::default(),
            config_text: String::new(),
            start,
            epochs,
            steps: steps.clone(),
            early_stop,
            stop_reason: None,
            resumes: Vec::new(),
            best: None,
        };
        assert_eq!(run.step_epoch(&steps[0]), 0.5);
        assert_eq!(run.step_epoch(&steps[1]), 1.5);
        let values = config_values(&config);
        assert_eq!(values["optim.kind"], "adamw");
        assert_eq!(values["data.age_bounds"], "[30, 60]");
    }
}
