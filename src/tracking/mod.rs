//! Experiment tracking: TensorBoard event files in the run folder and an MLflow run on a tracking
//! server. Both observe the run and receive the lines of its metrics log, so they show exactly
//! what metrics.jsonl holds. A tracker that fails warns once and is switched off for the rest of
//! the run: tracking never fails a training run.
pub mod mlflow;
pub mod settings;
pub mod tensorboard;
pub mod tfrecord;

use crate::labels::Class;
use crate::metrics::Evaluation;
use crate::report::plots::confusion_png;
use crate::run_dir::metrics_log::{EpochLine, StepLine};
use crate::run_dir::RunDir;
use crate::data::settings::DataConfig;
use crate::train::observer::{EpochVerdict, RunEnd, RunStart, TrainObserver};
use crate::util::provenance::Provenance;
use crate::util::section::read;
use settings::TrackingConfig;
use anyhow::Result;
use mlflow::MlflowRun;
use std::path::Path;
use tensorboard::EventWriter;

/// Tag of the confusion matrix image in TensorBoard.
pub const CONFUSION_TAG: &str = "val/confusion";

/// The trackers of one training run: `start`, then `step` and `epoch` with each metrics log
/// line, and `finish` at the end; dropped without `finish` (the training failed), the MLflow
/// run is marked FAILED.
pub struct Trackers {
    run_dir: RunDir,
    tensorboard: Option<EventWriter>,
    /// Class labels for the confusion image; empty once drawing it failed.
    labels: Vec<String>,
    mlflow: Option<MlflowRun>,
    mlflow_url: String,
    ended: bool,
}

impl Trackers {
    /// Opens the configured trackers for `run_dir`. `resumed_at` is the global step of the
    /// checkpoint a resumed run continues from: TensorBoard forgets what was logged after it.
    /// `config`: the run's resolved config (its `[tracking]` section says where to log; every
    /// key becomes an MLflow param).
    /// `provenance`: who started (or resumed) the run and from what: MLflow tags, and a text
    /// summary in TensorBoard.
    pub fn start(config: &toml::Table, run_dir: &RunDir, resumed_at: Option<usize>, provenance: Option<&Provenance>) -> Trackers {
        let t: TrackingConfig = read(config).unwrap_or_else(|e| {
            tracing::warn!("tracking off: {e:#}");
            TrackingConfig { tensorboard: false, mlflow: String::new(), ..TrackingConfig::default() }
        });
        let mut trackers = Trackers {
            run_dir: run_dir.clone(),
            tensorboard: None,
            labels: match read::<DataConfig>(config).and_then(|d| d.bounds()) {
                Ok(b) => Class::all().map(|c| c.label(&b)).collect(),
                Err(_) => Vec::new(),
            },
            mlflow: None,
            mlflow_url: t.mlflow.clone(),
            ended: false,
        };
        if t.tensorboard {
            let dir = run_dir.tensorboard_dir();
            match EventWriter::create(&dir, resumed_at.map(|s| s as i64)) {
                Ok(w) => trackers.tensorboard = Some(w),
                Err(e) => tracing::warn!("TensorBoard log off: {e:#}"),
            }
            if let Some(p) = provenance {
                let (tag, text) = (if resumed_at.is_some() { "run/resumed_by" } else { "run/started_by" }, provenance_markdown(p));
                trackers.tensorboard_do(|w| w.text(resumed_at.unwrap_or(0) as i64, tag, &text));
            }
        }
        if !t.mlflow.is_empty() {
            let tags = provenance.map(|p| provenance_tags(p, resumed_at.is_some())).unwrap_or_default();
            match MlflowRun::start(&t.mlflow, &t.experiment, run_dir.path(), &config_params(config), &tags, resumed_at.is_some()) {
                Ok(run) => {
                    eprintln!(
                        "MLflow: run {} in experiment `{}`: {}/#/experiments/{}/runs/{}",
                        run.link.run_id,
                        t.experiment,
                        t.mlflow.trim_end_matches('/'),
                        run.link.experiment_id,
                        run.link.run_id
                    );
                    trackers.mlflow = Some(run);
                }
                Err(e) => warn_mlflow_off(&t.mlflow, "starting the run", &e),
            }
        }
        trackers
    }

    /// A step line: its numbers go to TensorBoard as `train/<name>` at its step.
    pub fn step(&mut self, line: &StepLine) {
        let scalars: Vec<(String, f64)> = line.scalars().into_iter().map(|(k, v)| (format!("train/{k}"), v)).collect();
        self.tensorboard_do(|w| w.scalars(line.step as i64, &scalars));
    }

    /// An epoch line: its numbers go to TensorBoard as `epoch/<name>` at the epoch's last step,
    /// with the confusion matrix image, and to MLflow as `<name>` at step = epoch.
    pub fn epoch(&mut self, line: &EpochLine, confusion: Option<&[Vec<u64>]>) {
        let (epoch, step) = (line.epoch as i64, line.step as i64);
        let scalars = line.scalars();
        if self.tensorboard.is_some() {
            let tagged: Vec<(String, f64)> = scalars.iter().map(|(k, v)| (format!("epoch/{k}"), *v)).collect();
            self.tensorboard_do(|w| w.scalars(step, &tagged));
            if let (Some(m), false) = (confusion, self.labels.is_empty()) {
                match confusion_png(m, &self.labels, &format!("validation confusion matrix, epoch {epoch}")).and_then(|png| {
                    let (width, height) = png_size(&png)?;
                    Ok((png, width, height))
                }) {
                    Ok((png, width, height)) => self.tensorboard_do(|writer| writer.image(step, CONFUSION_TAG, &png, width, height)),
                    Err(e) => {
                        tracing::warn!("TensorBoard: cannot draw the confusion matrix ({e:#}); logging scalars only");
                        self.labels.clear();
                    }
                }
            }
        }
        self.mlflow_do("logging metrics", |run| run.log_metrics(epoch, &scalars));
    }

    /// The end of a training run: uploads the run folder's artifacts to MLflow and marks its run FINISHED.
    pub fn finish(&mut self, best_epoch: usize) {
        let files = run_artifacts(&self.run_dir);
        let run_dir = self.run_dir.path().to_path_buf();
        self.mlflow_do("setting tags", |run| run.set_tag("masklab.best_epoch", &best_epoch.to_string()));
        self.mlflow_do("uploading artifacts", |run| run.upload(&run_dir, &files));
        self.mlflow_do("ending the run", |run| run.end("FINISHED"));
        self.ended = true;
    }

    fn tensorboard_do(&mut self, f: impl FnOnce(&mut EventWriter) -> Result<()>) {
        if let Some(w) = &mut self.tensorboard {
            if let Err(e) = f(w) {
                tracing::warn!("TensorBoard log off for the rest of the run: {e:#}");
                self.tensorboard = None;
            }
        }
    }

    fn mlflow_do(&mut self, what: &str, f: impl FnOnce(&MlflowRun) -> Result<()>) {
        if let Some(run) = &self.mlflow {
            if let Err(e) = f(run) {
                warn_mlflow_off(&self.mlflow_url, what, &e);
                self.mlflow = None;
            }
        }
    }
}

impl Drop for Trackers {
    fn drop(&mut self) {
        if !self.ended {
            self.mlflow_do("marking the run failed", |run| run.end("FAILED"));
        }
    }
}

fn warn_mlflow_off(url: &str, what: &str, e: &anyhow::Error) {
    tracing::warn!("MLflow at {url}: {what} failed, training goes on without MLflow: {e:#}");
}

/// Who ran the run and from what as MLflow tags: MLflow's own `mlflow.user` and
/// `mlflow.source.git.commit` (which its UI shows), the rest as `masklab.*`. A resume records
/// who resumed it in `masklab.resumed_by` and leaves the starter's tags.
pub fn provenance_tags(p: &Provenance, resumed: bool) -> Vec<(String, String)> {
    if resumed {
        return vec![("masklab.resumed_by".into(), format!("{}, {}: {}", p.summary(), p.at, p.command))];
    }
    let mut tags = vec![("mlflow.user".to_string(), p.user.clone())];
    tags.extend(p.git_commit.clone().map(|c| ("mlflow.source.git.commit".to_string(), c)));
    tags.extend(p.fields().into_iter().filter(|(k, _)| !["user", "git_commit", "masklab_version"].contains(k)).map(|(k, v)| (format!("masklab.{k}"), v)));
    tags
}

/// Who ran the run and from what as a Markdown table (TensorBoard's text plugin).
pub fn provenance_markdown(p: &Provenance) -> String {
    let mut s = String::from("| | |\n|---|---|\n");
    for (k, v) in p.fields() {
        s.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
    }
    s
}

/// Every config key as an MLflow param: dotted key -> value (strings bare, the rest as TOML writes them).
pub fn config_params(config: &toml::Table) -> Vec<(String, String)> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) if !t.is_empty() => walk(&key, t, out),
                toml::Value::String(s) => out.push((key, s.clone())),
                other => out.push((key, other.to_string())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", config, &mut out);
    out
}

/// The run folder's files that go to MLflow, relative and slash-separated: its results, and
/// the report's folder.
fn run_artifacts(run_dir: &RunDir) -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // a temporary file of an atomic write
            }
            let path = e.path();
            if path.is_dir() {
                walk(&path, &format!("{rel}/{name}"), out);
            } else if path.is_file() {
                out.push(format!("{rel}/{name}"));
            }
        }
    }
    let root = run_dir.path();
    let mut out: Vec<String> = run_dir.result_files().iter().filter_map(|f| f.strip_prefix(root).ok()).map(|f| f.to_string_lossy().into_owned()).collect();
    let figures = RunDir::figure_dir_name();
    walk(&root.join(figures), figures, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_params_cover_every_key() {
        let cfg = crate::config::Config::load(None, &["model.backbone=resnet18".into(), "models.class18.optim.lr=0.5".into()]).unwrap();
        let params = config_params(&cfg.table().unwrap());
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("model.backbone"), Some("resnet18"));
        assert_eq!(get("train.epochs"), Some("10"));
        assert_eq!(get("optim.betas"), Some("[0.9, 0.999]"));
        assert_eq!(get("sampler.oversample"), Some("{}"));
        assert_eq!(get("models.class18.optim.lr"), Some("0.5"));
        assert_eq!(get("tracking.experiment"), Some("masklab"));
    }

    #[test]
    fn artifacts_are_the_results_and_the_report_folder() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["best.safetensors", "last.safetensors", "metrics.jsonl", "report/curves.png", "report/img/a b.png", "report/.x.tmp1"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(run_artifacts(&RunDir::new(dir.path())), vec!["best.safetensors", "metrics.jsonl", "report/curves.png", "report/img/a b.png"]);
    }
}

/// TensorBoard and MLflow as observers of a training run.
#[derive(Default)]
pub struct TrackingObserver {
    trackers: Option<Trackers>,
}

impl TrackingObserver {
    pub fn new() -> TrackingObserver {
        TrackingObserver::default()
    }
}

impl TrainObserver for TrackingObserver {
    fn start(&mut self, run: &RunStart) -> Result<()> {
        self.trackers = Some(Trackers::start(&run.settings.config, run.run, run.resumed.map(|r| r.step), run.line.provenance.as_ref()));
        Ok(())
    }

    fn step(&mut self, line: &StepLine) -> Result<()> {
        if let Some(t) = &mut self.trackers {
            t.step(line);
        }
        Ok(())
    }

    fn epoch(&mut self, line: &EpochLine, eval: Option<&Evaluation>, _improved: bool) -> Result<EpochVerdict> {
        if let Some(t) = &mut self.trackers {
            t.epoch(line, eval.map(|e| e.confusion.as_slice()));
        }
        Ok(EpochVerdict::Continue)
    }

    /// Last among the observers: the artifacts MLflow receives are the run folder's final files.
    fn end(&mut self, end: &RunEnd) -> Result<()> {
        if let Some(t) = &mut self.trackers {
            t.finish(end.best_epoch);
        }
        Ok(())
    }
}

/// Width and height of a PNG, which TensorBoard's image summary states beside the bytes.
fn png_size(png: &[u8]) -> Result<(u32, u32)> {
    let reader = image::ImageReader::new(std::io::Cursor::new(png)).with_guessed_format()?;
    Ok(reader.into_dimensions()?)
}
