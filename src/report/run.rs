//! A training run folder read back from disk: the resolved config, the metrics.jsonl history
//! (start, step, epoch and early-stop lines), the best epoch's evaluation and its validation
//! predictions. Reports and comparisons are built from this alone, so `masklab report RUN`
//! gives the page that training wrote.
use crate::config::Config;
use crate::evaluate::Evaluation;
use crate::labels::{AgeBounds, NUM_CLASSES};
use crate::predictions::{read_rows, PredictionRow};
use crate::train::kfold::is_kfold_run;
use crate::train::trainer::VAL_PREDICTIONS;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `start` line of metrics.jsonl: what the run trained on.
#[derive(Clone, Debug, Default)]
pub struct StartInfo {
    /// The dataset folder, canonical when training could resolve it.
    pub data: Option<PathBuf>,
    pub device: Option<String>,
    pub train_images: Option<u64>,
    pub val_images: Option<u64>,
    pub people: Option<u64>,
    /// Images per class in the training and validation splits (runs before these were logged have none).
    pub train_classes: Option<Vec<u64>>,
    pub val_classes: Option<Vec<u64>>,
}

/// Validation scores of one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValPoint {
    pub loss: f64,
    pub f1: f64,
    pub accuracy: f64,
    pub f1_mask: f64,
    pub f1_gender: f64,
    pub f1_age: f64,
}

/// One `epoch` line.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochPoint {
    pub epoch: usize,
    /// Optimiser steps done by the end of the epoch.
    pub step: usize,
    pub train_loss: f64,
    pub lr: f64,
    pub seconds: f64,
    pub val: Option<ValPoint>,
}

/// One `step` line: the training loss averaged over the steps since the previous one.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPoint {
    pub epoch: usize,
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
}

/// The best checkpoint's epoch and validation evaluation (best.json).
#[derive(Clone, Debug)]
pub struct Best {
    pub epoch: usize,
    pub eval: Evaluation,
}

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub dir: PathBuf,
    pub config: Config,
    /// config.toml as written, for people to read.
    pub config_text: String,
    pub start: StartInfo,
    pub epochs: Vec<EpochPoint>,
    pub steps: Vec<StepPoint>,
    /// The epoch after which early stopping ended the run.
    pub early_stop: Option<usize>,
    pub best: Option<Best>,
}

impl RunRecord {
    /// Reads a single (not k-fold) run folder; anything else is an error naming the path.
    pub fn load(dir: &Path) -> Result<RunRecord> {
        if !dir.is_dir() {
            bail!("{} is not a folder (expected a run folder written by masklab train)", dir.display());
        }
        if is_kfold_run(dir) {
            bail!("{} is a k-fold run: its folds are the runs (fold-1 ...)", dir.display());
        }
        let config_path = dir.join("config.toml");
        let metrics_path = dir.join("metrics.jsonl");
        if !config_path.is_file() || !metrics_path.is_file() {
            bail!("{} is not a masklab run folder: it has no config.toml and metrics.jsonl", dir.display());
        }
        let config_text = std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
        let config = Config::load(Some(&config_path), &[]).with_context(|| format!("{} is not a masklab run", dir.display()))?;
        let metrics = std::fs::read_to_string(&metrics_path).with_context(|| format!("cannot read {}", metrics_path.display()))?;
        let (start, epochs, steps, early_stop) = parse_metrics(&metrics, &metrics_path)?;
        let best_path = dir.join("best.json");
        let best = if best_path.is_file() {
            let v: Value = serde_json::from_slice(&std::fs::read(&best_path).with_context(|| format!("cannot read {}", best_path.display()))?)
                .with_context(|| format!("{} is not JSON", best_path.display()))?;
            let eval: Option<Evaluation> = serde_json::from_value(v["metrics"].clone()).ok();
            eval.map(|eval| Best { epoch: v["epoch"].as_u64().unwrap_or(0) as usize, eval })
        } else {
            None
        };
        Ok(RunRecord { dir: dir.to_path_buf(), config, config_text, start, epochs, steps, early_stop, best })
    }

    /// The run's name for people: its folder name.
    pub fn name(&self) -> String {
        folder_name(&self.dir)
    }

    pub fn bounds(&self) -> AgeBounds {
        self.config.data.bounds().unwrap_or_default()
    }

    /// The best epoch's validation predictions, when the run wrote them.
    pub fn val_predictions(&self) -> Result<Option<Vec<PredictionRow>>> {
        let path = self.dir.join(VAL_PREDICTIONS);
        if !path.is_file() {
            return Ok(None);
        }
        read_rows(&path).map(Some)
    }

    /// Fractional epoch of each step line: epoch e spans (e-1, e], split evenly by its steps.
    pub fn step_epoch(&self, s: &StepPoint) -> f64 {
        let end = self.epochs.iter().find(|e| e.epoch == s.epoch).map(|e| e.step);
        let begin = self.epochs.iter().find(|e| e.epoch + 1 == s.epoch).map(|e| e.step).unwrap_or(0);
        match end {
            Some(end) if end > begin => (s.epoch - 1) as f64 + (s.step - begin) as f64 / (end - begin) as f64,
            _ => s.epoch as f64,
        }
    }
}

/// The config as dotted keys (`optim.lr`) and their TOML values, for tables and comparisons.
pub fn config_values(config: &Config) -> BTreeMap<String, String> {
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
    if let Ok(table) = toml::Table::try_from(config) {
        walk("", &table, &mut out);
    }
    out
}

pub fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string())
}

type History = (StartInfo, Vec<EpochPoint>, Vec<StepPoint>, Option<usize>);

/// Lines of other kinds are skipped: the file is shared with whatever else logs per run.
fn parse_metrics(text: &str, path: &Path) -> Result<History> {
    let mut start = StartInfo::default();
    let mut epochs: Vec<EpochPoint> = Vec::new();
    let mut steps: Vec<StepPoint> = Vec::new();
    let mut early_stop = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON line", path.display(), i + 1))?;
        let num = |k: &str| v[k].as_f64();
        let int = |k: &str| v[k].as_u64();
        match v["kind"].as_str() {
            Some("start") => {
                let classes = |k: &str| -> Option<Vec<u64>> {
                    let c: Vec<u64> = serde_json::from_value(v[k].clone()).ok()?;
                    (c.len() == NUM_CLASSES).then_some(c)
                };
                start = StartInfo {
                    data: v["data"].as_str().map(PathBuf::from),
                    device: v["device"].as_str().map(str::to_string),
                    train_images: int("train_images"),
                    val_images: int("val_images"),
                    people: int("people"),
                    train_classes: classes("train_classes"),
                    val_classes: classes("val_classes"),
                };
            }
            Some("epoch") => {
                let val = v["val"].is_object().then(|| {
                    let f = |k: &str| v["val"][k].as_f64().unwrap_or(f64::NAN);
                    ValPoint { loss: f("loss"), f1: f("f1"), accuracy: f("accuracy"), f1_mask: f("f1_mask"), f1_gender: f("f1_gender"), f1_age: f("f1_age") }
                });
                let point = EpochPoint {
                    epoch: int("epoch").unwrap_or(0) as usize,
                    step: int("step").unwrap_or(0) as usize,
                    train_loss: num("train_loss").unwrap_or(f64::NAN),
                    lr: num("lr").unwrap_or(f64::NAN),
                    seconds: num("seconds").unwrap_or(0.0),
                    val,
                };
                // A resumed run may repeat an epoch; its latest line is the one that counts.
                epochs.retain(|e| e.epoch != point.epoch);
                epochs.push(point);
            }
            Some("step") => steps.push(StepPoint {
                epoch: int("epoch").unwrap_or(0) as usize,
                step: int("step").unwrap_or(0) as usize,
                loss: num("loss").unwrap_or(f64::NAN),
                lr: num("lr").unwrap_or(f64::NAN),
            }),
            Some("early_stop") => early_stop = int("epoch").map(|e| e as usize),
            _ => {}
        }
    }
    epochs.sort_by_key(|e| e.epoch);
    steps.sort_by_key(|s| s.step);
    steps.dedup_by_key(|s| s.step);
    Ok((start, epochs, steps, early_stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_are_read_and_steps_placed_within_their_epoch() {
        let text = r#"{"kind":"start","data":"/d","train_images":10,"val_images":4,"people":3,"device":"Cpu","train_classes":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,9]}
{"kind":"step","epoch":1,"step":2,"loss":2.0,"lr":0.1}
{"kind":"epoch","epoch":1,"step":4,"train_loss":1.5,"lr":0.1,"seconds":2.0,"val":{"loss":1.2,"f1":0.3,"accuracy":0.5,"f1_mask":0.6,"f1_gender":0.7,"f1_age":0.4,"images":4}}
{"kind":"tracking","note":"lines of other writers are skipped"}
{"kind":"step","epoch":2,"step":6,"loss":1.0,"lr":0.05}
{"kind":"epoch","epoch":2,"step":8,"train_loss":0.9,"lr":0.05,"seconds":2.0,"val":null}
{"kind":"early_stop","epoch":2,"best_epoch":1}
"#;
        let (start, epochs, steps, stop) = parse_metrics(text, Path::new("m.jsonl")).unwrap();
        assert_eq!(start.train_images, Some(10));
        assert_eq!(start.train_classes.as_ref().map(|c| c[17]), Some(9));
        assert_eq!(start.val_classes, None);
        assert_eq!(epochs.len(), 2);
        assert_eq!(epochs[0].val.unwrap().f1, 0.3);
        assert!(epochs[1].val.is_none());
        assert_eq!(stop, Some(2));
        let run = RunRecord {
            dir: PathBuf::from("r"),
            config: Config::default(),
            config_text: String::new(),
            start,
            epochs,
            steps: steps.clone(),
            early_stop: stop,
            best: None,
        };
        assert_eq!(run.step_epoch(&steps[0]), 0.5);
        assert_eq!(run.step_epoch(&steps[1]), 1.5);
        let values = config_values(&Config::default());
        assert_eq!(values["optim.kind"], "adamw");
        assert_eq!(values["data.age_bounds"], "[30, 60]");
        let err = parse_metrics("{\"kind\":\"epoch\"}\nnot json\n", Path::new("m.jsonl")).unwrap_err();
        assert!(format!("{err:#}").contains("m.jsonl:2"), "{err:#}");
    }
}
