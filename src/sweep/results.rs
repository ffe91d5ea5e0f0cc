//! What a sweep leaves for people, rewritten whenever a worker ends (the last one to end writes
//! the final state):
//!
//! ```text
//! SWEEP/sweep.csv          one row per trial: status, value, epochs, timing, parameters
//! SWEEP/best.toml          the best trial's config as a preset (`masklab train DATA --config SWEEP/best.toml`)
//! SWEEP/sweep.html         the page (see `page`), its charts in SWEEP/sweep/
//! SWEEP/best-trials/       the best trials' paired comparison (compare.html)
//! ```
//!
//! Writers take `SWEEP/.results`' lock around reading the study and writing, so that the files
//! are written in the order the study was read: the last writer's state is the newest.
use super::page::PRESET_FILE;
use super::study::{Study, StudyState};
use super::trial::{Trial, TrialStatus};
use crate::config::Config;
use crate::metrics::bootstrap::Resampling;
use crate::run_dir::{RunDir, RunLock};
use crate::util::write_atomic;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

pub const CSV_FILE: &str = "sweep.csv";
const RESULTS_LOCK_DIR: &str = ".results";

/// Config keys that say where and how fast a trial ran, not what it trained: left out of the preset.
const PER_WORKER_KEYS: &[&str] = &["train.device", "train.threads", "data.workers", "data.prefetch", "data.cache_mib", "train.dist_backend", "train.dist_timeout"];

/// What was written.
pub struct Written {
    pub csv: PathBuf,
    pub page: PathBuf,
    /// None until a trial is complete.
    pub preset: Option<PathBuf>,
    /// `12 trials: 5 complete, 6 pruned, 1 failed; best trial-004 f1 0.7120`.
    pub summary: String,
}

/// Writes every result file from the study as it stands.
pub fn write_results(study: &Study, resampling: Option<Resampling>) -> Result<Written> {
    let dir = study.dir();
    let lock_dir = RunDir::new(dir.join(RESULTS_LOCK_DIR));
    std::fs::create_dir_all(lock_dir.path()).with_context(|| format!("cannot create {}", lock_dir.path().display()))?;
    let _lock = RunLock::acquire_waiting(&lock_dir, "sweep results", Duration::from_secs(600))?;
    let state = study.state()?;
    let csv = dir.join(CSV_FILE);
    write_atomic(&csv, &trials_csv(&state)?)?;
    let preset = match state.best() {
        Some(best) => {
            let path = dir.join(PRESET_FILE);
            write_atomic(&path, preset_text(&state, best, &study.trial_run(best.number))?.as_bytes())?;
            Some(path)
        }
        None => None,
    };
    let page = super::page::sweep_page(study, &state, resampling)?.write(dir, super::page::PAGE_FILE)?;
    Ok(Written { csv, page, preset, summary: summary(&state) })
}


/// `trial,status,value,epochs,started_s,seconds,attempts,worker,<parameters>,note`: `started_s`
/// counts from the sweep's start, `seconds` is how long the trial took (empty while it runs).
/// scripts/optuna_sweep.py writes the same columns.
pub fn trials_csv(state: &StudyState) -> Result<Vec<u8>> {
    let keys = state.param_keys();
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["trial", "status", "value", "epochs", "started_s", "seconds", "attempts", "worker"].iter().map(|s| s.to_string()).collect();
    header.extend(keys.iter().cloned());
    header.push("note".into());
    out.write_record(&header)?;
    for t in &state.trials {
        let mut row = vec![
            t.number.to_string(),
            t.status.to_string(),
            t.value.map(|v| v.to_string()).unwrap_or_default(),
            t.epochs.len().to_string(),
            format!("{:.1}", t.started - state.created),
            t.finished.map(|f| format!("{:.1}", f - t.started)).unwrap_or_default(),
            t.attempts.to_string(),
            t.worker.clone(),
        ];
        row.extend(keys.iter().map(|k| t.params.get(k).map(|v| v.to_string()).unwrap_or_default()));
        row.push(t.note.clone().unwrap_or_default());
        out.write_record(&row)?;
    }
    Ok(out.into_inner().context("sweep.csv")?)
}

/// The best trial's config as a preset: the keys of its config.toml that differ from masklab's
/// defaults, less where and how fast it ran (device, threads, loader), with a header saying
/// where it came from.
fn preset_text(state: &StudyState, best: &Trial, run: &RunDir) -> Result<String> {
    let config = run.config_table().with_context(|| format!("the best trial, {}", best.name()))?;
    let defaults = Config::default().table()?;
    let preset = differing(&config, &defaults, "", &PER_WORKER_KEYS.iter().copied().collect());
    let objective = &state.spec.objective;
    let params: Vec<String> = best.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    Ok(format!(
        "# The best trial of a masklab sweep: {} ({}), {} {} at its best epoch.\n# Its parameters: {}.\n# The keys of its config that differ from masklab's defaults (device and threads left out):\n#   masklab train DATA --config {PRESET_FILE}\n\n{}",
        best.name(),
        run.path().display(),
        objective.metric,
        best.value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
        params.join(", "),
        toml::to_string_pretty(&preset)?
    ))
}

/// The leaves of `config` whose value differs from `defaults` (or that it lacks), as a table.
fn differing(config: &toml::Table, defaults: &toml::Table, prefix: &str, leave_out: &BTreeSet<&str>) -> toml::Table {
    let mut out = toml::Table::new();
    for (key, value) in config {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if leave_out.contains(path.as_str()) {
            continue;
        }
        match (value, defaults.get(key)) {
            (toml::Value::Table(inner), Some(toml::Value::Table(default_inner))) => {
                let sub = differing(inner, default_inner, &path, leave_out);
                if !sub.is_empty() {
                    out.insert(key.clone(), toml::Value::Table(sub));
                }
            }
            (value, default) if default != Some(value) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    out
}

fn summary(state: &StudyState) -> String {
    let mut s = format!(
        "{} trials: {} complete, {} pruned, {} failed",
        state.trials.len(),
        state.count(TrialStatus::Complete),
        state.count(TrialStatus::Pruned),
        state.count(TrialStatus::Failed)
    );
    let running = state.count(TrialStatus::Running);
    if running > 0 {
        s.push_str(&format!(", {running} running or interrupted"));
    }
    if let Some(best) = state.ranked().first() {
        s.push_str(&format!("; best {} {} {:.4}", best.name(), state.spec.objective.metric, best.value.unwrap_or(f64::NAN)));
    }
    s
}



#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preset_holds_what_differs_from_the_defaults_and_trains_the_same() {
        let trial = Config::load(None, &["optim.lr=0.0042".into(), "model.backbone=resnet18".into(), "train.threads=3".into(), "train.device=cpu".into(), "model.layout=two".into(), "models.age.optim.lr=0.5".into()]).unwrap();
        let preset = differing(&trial.table().unwrap(), &Config::default().table().unwrap(), "", &PER_WORKER_KEYS.iter().copied().collect());
        let text = toml::to_string_pretty(&preset).unwrap();
        assert!(text.contains("lr = 0.0042") && text.contains("backbone = \"resnet18\""), "{text}");
        assert!(!text.contains("threads") && !text.contains("device"), "per-worker keys stay out: {text}");
        assert!(!text.contains("epochs"), "defaults stay out: {text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.toml");
        std::fs::write(&path, format!("# a comment\n{text}")).unwrap();
        let loaded = Config::load(Some(&path), &[]).unwrap();
        let expected = Config::load(None, &["optim.lr=0.0042".into(), "model.backbone=resnet18".into(), "model.layout=two".into(), "models.age.optim.lr=0.5".into()]).unwrap();
        assert_eq!(loaded, expected, "the preset trains what the trial trained, wherever it runs");
    }
}
