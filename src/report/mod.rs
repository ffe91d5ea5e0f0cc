//! Reports: the page of a run (`RUN/report.html`, its charts also as PNG files in `RUN/report/`),
//! the page of a k-fold run (cross-validated scores, out-of-fold confusion, per-fold curves), and
//! comparisons of runs (a Markdown table, an HTML page and overlaid curves).
pub mod audit_page;
pub mod compare;
pub mod cv_page;
pub mod html;
pub mod mistakes;
pub mod plots;
pub mod run;
pub mod run_page;
pub mod search_plots;
pub mod settings;

use crate::audit::run::{AuditFile, AuditObserver};
use crate::run_dir::{RunDir, RunLock};
use crate::train::observer::{KfoldEnd, RunEnd, TrainObserver};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Writes `RUN/report.html` (and its charts) from what the run folder holds, holding the lock of
/// every run folder it writes into. A k-fold run gets the cross-validation page, and each of its
/// folds its own page again. `worst`: how many mistakes to show (None: the run's `report.worst`).
pub fn write_report(run: &Path, worst: Option<usize>) -> Result<PathBuf> {
    let run = RunDir::new(run);
    let _lock = RunLock::acquire(&run, "report")?;
    if run.is_kfold() {
        for fold in 1..=run.folds_state()?.folds {
            let dir = run.fold(fold);
            if dir.metrics_file().is_file() {
                let _fold_lock = RunLock::acquire(&dir, "report")?;
                write_page(&dir, worst)?;
            }
        }
    }
    write_page(&run, worst)
}

/// The page at the end of training (a k-fold run's own page; each fold wrote its page as it
/// ended). The checkpoints are what a run is for: a page that cannot be written is a warning.
pub fn write_after_training(run: &Path, worst: usize) {
    match write_page(&RunDir::new(run), Some(worst)) {
        Ok(page) => eprintln!("report: {}", page.display()),
        Err(e) => {
            tracing::warn!("cannot write the report of {}: {e:#}", run.display());
            eprintln!("warning: cannot write the report of {}: {e:#}", run.display());
        }
    }
}

fn write_page(run: &RunDir, worst: Option<usize>) -> Result<PathBuf> {
    let page = if run.is_kfold() {
        cv_page::cv_page(run, worst)?
    } else {
        let record = run::RunRecord::load(run.path())?;
        let worst = worst.unwrap_or(record.report.worst);
        run_page::run_page(&record, worst, RunDir::figure_dir_name())?
    };
    page.write(run.path(), RunDir::report_page_name()).with_context(|| format!("cannot write the report of {}", run.path().display()))
}

/// Writes the run's page when training ends (`report.enabled`).
pub struct ReportObserver {
    worst: usize,
}

impl ReportObserver {
    pub fn new(worst: usize) -> ReportObserver {
        ReportObserver { worst }
    }
}

impl TrainObserver for ReportObserver {
    fn end(&mut self, end: &RunEnd) -> Result<()> {
        write_after_training(end.run.path(), self.worst);
        Ok(())
    }

    fn kfold_end(&mut self, end: &KfoldEnd) -> Result<()> {
        write_after_training(end.run.path(), self.worst);
        Ok(())
    }
}

/// The run's page shows the suspects of its audit with their photos.
impl AuditObserver for ReportObserver {
    fn audited(&mut self, run: &RunDir, _file: &AuditFile) -> Result<()> {
        write_after_training(run.path(), self.worst);
        Ok(())
    }
}
