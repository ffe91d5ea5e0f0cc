//! `RUN/metrics.jsonl`: the run's log, one JSON object per line, tagged by `kind`. The trainer
//! produces these lines, the metrics-file observer writes them, and the console, the trackers
//! and the report read them: one type for all of them.
//!
//! Fields added over time are optional when read, so older runs still load; lines of kinds this
//! version does not know are skipped (the file is shared with whatever else logs per run).
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::metrics::bootstrap::ScoreIntervals;
use crate::metrics::Evaluation;
use crate::util::provenance::Provenance;
use crate::util::write_atomic;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsLine {
    Start(StartLine),
    Resume(ResumeLine),
    Step(StepLine),
    Epoch(EpochLine),
    EarlyStop(EarlyStopLine),
    End(EndLine),
    /// A line of a kind this version does not write.
    #[serde(other)]
    Other,
}

/// What the run trained on; written once, when a run starts (not again on resume).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StartLine {
    /// The dataset folder, canonical when training could resolve it.
    pub data: Option<PathBuf>,
    /// The k-fold fold held out (0: a plain train/validation split).
    pub fold: Option<usize>,
    pub train_images: Option<u64>,
    pub val_images: Option<u64>,
    pub people: Option<u64>,
    pub device: Option<String>,
    pub layout: Option<String>,
    /// Images per 18-way class in the training and validation splits (runs before these were logged have none).
    pub train_classes: Option<Vec<u64>>,
    pub val_classes: Option<Vec<u64>>,
    /// With `data.face_crop = "mtcnn"`: how the training and validation images were cropped.
    pub face_crop: Option<FaceCropCounts>,
    /// With `augment.synth_mask > 0`: training samples that may get a synthetic mask (unmasked, landmarks found).
    pub synth_mask_eligible: Option<u64>,
    /// With `augment.synth_mask_on_masked > 0`: how many of those are correctly masked photos (a mask over theirs).
    pub synth_mask_on_masked_eligible: Option<u64>,
    /// With `augment.synth_mask_copies`: copies of unmasked training photos added to each epoch
    /// for synthetic masks (counted in `train_images` and `synth_mask_eligible`).
    pub synth_mask_copies: Option<u64>,
    /// With `augment.tight_crop > 0`: training samples that may be seen tightly cropped (face box found).
    pub tight_crop_eligible: Option<u64>,
    /// Processes training data-parallel (1: a plain run; absent in runs before this was logged).
    pub world_size: Option<u64>,
    /// Images per optimiser step over all processes: batch_size x accumulate x world_size.
    pub global_batch: Option<u64>,
    /// Who started the run and from what (absent in runs from before it was logged).
    pub provenance: Option<Provenance>,
}

/// A resumed run continues after `epoch`: who resumed it and from what.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResumeLine {
    /// The last finished epoch, which the run continues after.
    pub epoch: usize,
    pub step: usize,
    pub provenance: Option<Provenance>,
}

/// The training loss averaged over the steps since the previous step line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepLine {
    pub epoch: usize,
    /// Optimiser steps done so far.
    pub step: usize,
    #[serde(deserialize_with = "number_or_nan")]
    pub loss: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub lr: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub images_per_s: f64,
}

/// An epoch's training loss and validation scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EpochLine {
    pub epoch: usize,
    /// Optimiser steps done by the end of the epoch.
    pub step: usize,
    #[serde(deserialize_with = "number_or_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub lr: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub train_images_per_s: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub seconds: f64,
    /// None for a run without a validation split.
    pub val: Option<ValScores>,
    /// Distributed runs: seconds of the epoch's training pass spent averaging gradients across
    /// processes (the all-reduces, waiting for the slowest rank included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allreduce_seconds: Option<f64>,
    /// The 95% intervals of the validation scores, on the epochs that became the best checkpoint
    /// (absent on the others, in runs from before intervals, and with `intervals.resamples = 0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<ScoreIntervals>,
}

impl Default for EpochLine {
    fn default() -> Self {
        EpochLine { epoch: 0, step: 0, train_loss: f64::NAN, lr: f64::NAN, train_images_per_s: 0.0, seconds: 0.0, val: None, allreduce_seconds: None, intervals: None }
    }
}

/// Validation scores of one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValScores {
    #[serde(deserialize_with = "number_or_nan")]
    pub loss: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub f1: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub accuracy: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub f1_mask: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub f1_gender: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub f1_age: f64,
    pub images: usize,
}

impl Default for ValScores {
    fn default() -> Self {
        ValScores { loss: f64::NAN, f1: f64::NAN, accuracy: f64::NAN, f1_mask: f64::NAN, f1_gender: f64::NAN, f1_age: f64::NAN, images: 0 }
    }
}

impl From<&Evaluation> for ValScores {
    fn from(e: &Evaluation) -> ValScores {
        let s = &e.scores;
        ValScores { loss: e.loss, f1: s.f1, accuracy: s.accuracy, f1_mask: s.f1_mask, f1_gender: s.f1_gender, f1_age: s.f1_age, images: e.images }
    }
}

/// JSON has no NaN: serde_json writes a non-finite number as null, which reads back as NaN.
fn number_or_nan<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// The run ended early, after `epoch`: early stopping (no reason given), or an observer asked
/// it to (a sweep's pruner), for `reason`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EarlyStopLine {
    pub epoch: usize,
    pub best_epoch: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The run finished (written at each end: a resumed run that trains on writes another): its
/// best epoch with its validation scores and their 95% intervals. Runs from before this line
/// have none; readers that predate it skip it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndLine {
    /// The last epoch trained.
    pub epoch: usize,
    pub best_epoch: usize,
    /// None for a run without a validation split.
    pub val: Option<ValScores>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<ScoreIntervals>,
}

impl StepLine {
    /// The line's numbers by name (`loss`, `lr`, `images_per_s`).
    pub fn scalars(&self) -> Vec<(String, f64)> {
        scalars_of(self)
    }
}

impl EpochLine {
    /// The line's numbers by name, validation ones prefixed `val_` (`train_loss`, `val_f1`, ...).
    pub fn scalars(&self) -> Vec<(String, f64)> {
        scalars_of(self)
    }
}

fn scalars_of(line: &impl Serialize) -> Vec<(String, f64)> {
    serde_json::to_value(line).map(|v| line_scalars(&v)).unwrap_or_default()
}

/// The numbers of a metrics.jsonl line, nested objects flattened with `_` (`val.f1` -> `val_f1`);
/// `epoch` and `step` are where the values go, not values.
pub fn line_scalars(line: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Some(fields) = line.as_object() else { return out };
    for (key, value) in fields {
        if ["kind", "epoch", "step"].contains(&key.as_str()) {
            continue;
        }
        match value {
            Value::Number(n) => out.extend(n.as_f64().map(|v| (key.clone(), v))),
            Value::Object(inner) => {
                out.extend(inner.iter().filter_map(|(k, v)| Some((format!("{key}_{k}"), v.as_f64()?))));
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A run's history as its metrics.jsonl tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub start: StartLine,
    /// One line per epoch, in epoch order; of an epoch logged twice (a resumed run), the latest.
    pub epochs: Vec<EpochLine>,
    /// In step order, each step once.
    pub steps: Vec<StepLine>,
    /// The epoch after which early stopping ended the run.
    pub early_stop: Option<usize>,
    /// Why the run ended early when an observer stopped it (None: early stopping, or not early).
    pub stop_reason: Option<String>,
    /// The latest end line (None: the run has not finished, or predates end lines).
    pub end: Option<EndLine>,
    /// Each time the run was resumed, in order (of a resume that was itself cut short and
    /// resumed from the same epoch, both).
    pub resumes: Vec<ResumeLine>,
}

impl History {
    pub fn read(path: &Path) -> Result<History> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        History::parse(&text, path)
    }

    /// Parses the lines of `text` (read from `path`, named in errors with the line number).
    pub fn parse(text: &str, path: &Path) -> Result<History> {
        let mut h = History::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed: MetricsLine = serde_json::from_str(line).with_context(|| format!("{}:{}: not a metrics line", path.display(), i + 1))?;
            match parsed {
                MetricsLine::Start(s) => h.start = s,
                MetricsLine::Epoch(e) => {
                    h.epochs.retain(|x| x.epoch != e.epoch);
                    h.epochs.push(e);
                }
                MetricsLine::Step(s) => h.steps.push(s),
                MetricsLine::EarlyStop(s) => {
                    h.early_stop = Some(s.epoch);
                    h.stop_reason = s.reason;
                }
                MetricsLine::End(e) => h.end = Some(e),
                MetricsLine::Resume(r) => h.resumes.push(r),
                MetricsLine::Other => {}
            }
        }
        h.epochs.sort_by_key(|e| e.epoch);
        h.steps.sort_by_key(|s| s.step);
        h.steps.dedup_by_key(|s| s.step);
        Ok(h)
    }
}

/// Writes a run's metrics.jsonl, each line with one write and flushed at once (a killed run
/// keeps every line but possibly a torn last one).
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsWriter {
    /// Opens `path` for a run. A fresh run (`resumed_after` None) starts the file anew: whatever
    /// was there is not its history. A resumed run continues the run's own log after the epoch
    /// of its checkpoint: the lines of later epochs are dropped first (the run writes them
    /// again), so is a torn last line, and a log with a line that is not JSON in the middle is
    /// not the run's log: an error, never appended to.
    pub fn open(path: &Path, resumed_after: Option<usize>) -> Result<MetricsWriter> {
        let file = match resumed_after {
            Some(epoch) => {
                forget_after(path, epoch)?;
                std::fs::OpenOptions::new().create(true).append(true).open(path)
            }
            None => std::fs::File::create(path),
        }
        .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(MetricsWriter { path: path.to_path_buf(), file })
    }

    pub fn write(&mut self, line: &MetricsLine) -> Result<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        self.file.write_all(text.as_bytes()).and_then(|_| self.file.flush()).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Drops the lines of epochs after `epoch`, and a torn last line; fails on any other line that
/// is not a JSON object.
fn forget_after(path: &Path, epoch: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(line).map_err(|_| ()).and_then(|v| if v.is_object() { Ok(v) } else { Err(()) }) else {
            if i + 1 == lines.len() && !text.ends_with('\n') {
                continue; // torn by a kill mid-write
            }
            bail!(
                "{}:{}: not a metrics line: this is not the run's own log, and masklab will not append to it (move it away to resume with a new log)",
                path.display(),
                i + 1
            );
        };
        if value["epoch"].as_u64().is_none_or(|e| e as usize <= epoch) {
            kept.push(line);
        }
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    write_atomic(path, out.as_bytes())
}


/// How many samples were cropped to which kind of box (the run's start line and report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaceCropCounts {
    /// Cropped to the photo's own detected face.
    pub detected: u64,
    /// Masked training photos cropped to their person's unmasked box.
    pub reused_from_normal: u64,
    /// No face: the centre crop (`data.crop`).
    pub centre_crop: u64,
}

impl FaceCropCounts {
    pub fn render(&self) -> String {
        format!(
            "{} detected, {} reused from the person's unmasked photo, {} without a face (centre crop)",
            self.detected, self.reused_from_normal, self.centre_crop
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let History { start, epochs, steps, early_stop: stop, .. } = History::parse(text, Path::new("m.jsonl")).unwrap();
        assert_eq!(start.train_images, Some(10));
        assert_eq!(start.train_classes.as_ref().map(|c| c[17]), Some(9));
        assert_eq!(start.val_classes, None);
        assert_eq!(epochs.len(), 2);
        assert_eq!(epochs[0].val.unwrap().f1, 0.3);
        assert!(epochs[1].val.is_none());
        assert_eq!(stop, Some(2));
        assert_eq!(steps.len(), 2);
        let err = History::parse("{\"kind\":\"epoch\"}\nnot json\n", Path::new("m.jsonl")).unwrap_err();
        assert!(format!("{err:#}").contains("m.jsonl:2"), "{err:#}");
    }

    #[test]
    fn lines_become_named_scalars() {
        let line = json!({"kind": "epoch", "epoch": 3, "step": 12, "train_loss": 0.5, "lr": 1e-3,
                          "val": {"loss": 0.7, "f1": 0.25, "images": 21}, "note": "text"});
        let got = line_scalars(&line);
        let want: Vec<(String, f64)> = [("lr", 1e-3), ("train_loss", 0.5), ("val_f1", 0.25), ("val_images", 21.0), ("val_loss", 0.7)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(got, want);
        // An epoch without validation logs null there.
        assert_eq!(line_scalars(&json!({"kind": "epoch", "val": null, "lr": 0.1})), vec![("lr".to_string(), 0.1)]);
    }

    #[test]
    fn written_lines_read_back_and_a_resume_forgets_later_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let epoch = |e: usize| MetricsLine::Epoch(EpochLine { epoch: e, step: 2 * e, train_loss: 1.0 / e as f64, ..Default::default() });
        {
            let mut w = MetricsWriter::open(&path, None).unwrap();
            w.write(&MetricsLine::Start(StartLine { train_images: Some(8), ..Default::default() })).unwrap();
            for e in 1..=3 {
                w.write(&MetricsLine::Step(StepLine { epoch: e, step: 2 * e - 1, loss: 2.0, lr: 0.1, images_per_s: 5.0 })).unwrap();
                w.write(&epoch(e)).unwrap();
            }
        }
        let h = History::read(&path).unwrap();
        assert_eq!((h.epochs.len(), h.steps.len(), h.start.train_images), (3, 3, Some(8)));
        let mut w = MetricsWriter::open(&path, Some(1)).unwrap();
        w.write(&epoch(2)).unwrap();
        let h = History::read(&path).unwrap();
        assert_eq!(h.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(h.steps.len(), 1, "the steps of epochs after the checkpoint are gone");
        assert_eq!(h.start.train_images, Some(8), "the start line stays");
    }

    #[test]
    fn a_fresh_run_starts_its_log_anew_and_a_resume_never_appends_to_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let start = MetricsLine::Start(StartLine { train_images: Some(8), ..Default::default() });
        let epoch1 = MetricsLine::Epoch(EpochLine { epoch: 1, step: 2, train_loss: 1.0, ..Default::default() });
        // Three attempts killed before their first checkpoint, then a fourth: one start line.
        for _ in 0..4 {
            MetricsWriter::open(&path, None).unwrap().write(&start).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        // A kill tore the last line: a resume drops it and the next line stands on its own.
        let mut w = MetricsWriter::open(&path, None).unwrap();
        w.write(&start).unwrap();
        w.write(&epoch1).unwrap();
        drop(w);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"kind":"step","epoch":2,"st"#).unwrap();
        drop(f);
        let mut w = MetricsWriter::open(&path, Some(1)).unwrap();
        w.write(&MetricsLine::Epoch(EpochLine { epoch: 2, step: 4, train_loss: 0.5, ..Default::default() })).unwrap();
        let h = History::read(&path).unwrap();
        assert_eq!(h.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2]);
        // Someone else's text in the middle: refused, and the file is left as it was.
        let foreign = "{\"kind\":\"start\"}\nhello world\n{\"kind\":\"epoch\",\"epoch\":1}\n";
        std::fs::write(&path, foreign).unwrap();
        let err = format!("{:#}", MetricsWriter::open(&path, Some(1)).err().unwrap());
        assert!(err.contains("metrics.jsonl:2") && err.contains("will not append"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), foreign);
    }
}
