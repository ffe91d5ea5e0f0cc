//! Commands on finished runs: each run's config read here, its sections handed down.
use crate::audit::run::{audit_run, AuditFile, AuditObserver, RunAuditOptions};
use crate::config::Config;
use crate::device::DeviceChoice;
use crate::evaluate::{eval_run, EvalSplit};
use crate::labels::AgeBounds;
use crate::metrics::bootstrap::{IntervalArgs, IntervalConfig};
use crate::metrics::Evaluation;
use crate::run_dir::RunDir;
use anyhow::Result;
use std::path::Path;

/// `masklab eval`: the evaluation, and the run's age bounds to label it with.
/// `intervals`: the command line's `--resamples` / `--bootstrap-seed`, over the run's `[intervals]`.
pub fn eval(run: &RunDir, data: &Path, split: EvalSplit, last: bool, device: DeviceChoice, intervals: IntervalArgs) -> Result<(Evaluation, AgeBounds)> {
    let cfg = Config::of_run(run)?;
    let mut settings = cfg.run_settings()?.eval_settings();
    settings.intervals = intervals.over(cfg.intervals)?.resampling();
    let evaluation = eval_run(run, &settings, data, split, last, device)?;
    Ok((evaluation, cfg.data.bounds()?))
}

/// `masklab audit`: the suspects, and the run's report rewritten to show them (`report.enabled`).
pub fn audit(run: &RunDir, opts: &RunAuditOptions) -> Result<AuditFile> {
    // The audit names what is wrong with a folder that is no k-fold run; its config decides
    // only whether the page is rewritten.
    let mut report = Config::of_run(run).ok().and_then(|cfg| super::observers::report_observer(&cfg));
    let mut observers: Vec<&mut dyn AuditObserver> = report.iter_mut().map(|r| r as &mut dyn AuditObserver).collect();
    audit_run(run, opts, &mut observers)
}

/// `masklab compare`: the runs side by side, with 95% intervals and each run's difference from
/// the first drawn as the first run's `[intervals]` says, unless the command line says otherwise.
pub fn compare(dirs: &[std::path::PathBuf], out: &Path, intervals: IntervalArgs) -> Result<crate::report::compare::Comparison> {
    let base: IntervalConfig = match dirs.first().map(|d| RunDir::new(d).config_table()) {
        Some(Ok(table)) => crate::util::section::read(&table)?,
        _ => IntervalConfig::default(), // not a run: comparing it names the problem
    };
    crate::report::compare::compare(dirs, out, intervals.over(base)?.resampling())
}
