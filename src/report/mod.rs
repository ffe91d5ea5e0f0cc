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

use crate::train::kfold::{fold_dir, is_kfold_run, FoldsState, FOLDS_FILE};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The page in a run folder.
pub const REPORT_FILE: &str = "report.html";
/// The folder beside the page that holds its charts as PNG files.
pub const FIGURE_DIR: &str = "report";

/// Writes `RUN/report.html` (and its charts) from what the run folder holds. A k-fold run gets
/// the cross-validation page, and each of its folds its own page again. `worst`: how many
/// mistakes to show (None: the run's `report.worst`).
pub fn write_report(run: &Path, worst: Option<usize>) -> Result<PathBuf> {
    if is_kfold_run(run) {
        for fold in 1..=kfold_folds(run)? {
            let dir = fold_dir(run, fold);
            if dir.join("metrics.jsonl").is_file() {
                write_page(&dir, worst)?;
            }
        }
    }
    write_page(run, worst)
}

/// The page at the end of training (a k-fold run's own page; each fold wrote its page as it
/// ended). The checkpoints are what a run is for: a page that cannot be written is a warning.
pub fn write_after_training(run: &Path, worst: usize) {
    match write_page(run, Some(worst)) {
        Ok(page) => eprintln!("report: {}", page.display()),
        Err(e) => {
            tracing::warn!("cannot write the report of {}: {e:#}", run.display());
            eprintln!("warning: cannot write the report of {}: {e:#}", run.display());
        }
    }
}

fn write_page(run: &Path, worst: Option<usize>) -> Result<PathBuf> {
    let page = if is_kfold_run(run) {
        cv_page::cv_page(run, worst)?
    } else {
        let record = run::RunRecord::load(run)?;
        let worst = worst.unwrap_or(record.config.report.worst);
        run_page::run_page(&record, worst, FIGURE_DIR)?
    };
    page.write(run, REPORT_FILE).with_context(|| format!("cannot write the report of {}", run.display()))
}

fn kfold_folds(run: &Path) -> Result<usize> {
    let path = run.join(FOLDS_FILE);
    let state: FoldsState = serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?)
        .with_context(|| format!("{} is not a k-fold state file", path.display()))?;
    Ok(state.folds)
}
