//! Commands on finished runs: each run's config read here, its sections handed down.
use crate::audit::run::{audit_run, AuditFile, AuditObserver, RunAuditOptions};
use crate::config::Config;
use crate::device::DeviceChoice;
use crate::evaluate::{eval_run, EvalSplit};
use crate::labels::AgeBounds;
use crate::metrics::Evaluation;
use crate::run_dir::RunDir;
use anyhow::Result;
use std::path::Path;

/// `masklab eval`: the evaluation, and the run's age bounds to label it with.
pub fn eval(run: &RunDir, data: &Path, split: EvalSplit, last: bool, device: DeviceChoice) -> Result<(Evaluation, AgeBounds)> {
    let cfg = Config::of_run(run)?;
    let evaluation = eval_run(run, &cfg.run_settings()?.eval_settings(), data, split, last, device)?;
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
