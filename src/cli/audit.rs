//! `masklab audit`.
use crate::audit::run::{render, RunAuditOptions, DEFAULT_MIN_SCORE};
use crate::run_dir::RunDir;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct AuditArgs {
    /// k-fold run folder (data.folds >= 2) with oof_predictions.csv.
    run: PathBuf,
    /// Suspects to list and to consider for --write-relabel (0 = all).
    #[arg(long, default_value_t = 50)]
    top: usize,
    /// Also write the listed suspects as CSV.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write a relabel.csv draft (id,field,true_value) of the accepted suspects: the listed ones scoring at least --min-score. Never applied unless passed back with --relabel FILE or data.relabel=FILE.
    #[arg(long)]
    write_relabel: Option<PathBuf>,
    /// Replace the --write-relabel file (and the --out CSV) when it exists.
    #[arg(long)]
    force: bool,
    /// Lowest score a suspect needs to be accepted into the draft.
    #[arg(long, default_value_t = DEFAULT_MIN_SCORE, value_parser = crate::util::parse::unit_interval)]
    min_score: f64,
    /// An age suspect at most this many years outside the suggested band is a hard case (marked, score halved).
    #[arg(long, default_value_t = 2)]
    hard_years: u32,
    /// Dataset folder for ids, ages and photos (default: the one the run trained on).
    #[arg(long)]
    data: Option<PathBuf>,
}

pub fn run(a: AuditArgs) -> Result<()> {
    // Checked before the audit runs: a relabel list (perhaps the dataset's own) is not replaced
    // by a draft unless asked.
    for file in [&a.write_relabel, &a.out].into_iter().flatten() {
        crate::util::out_folder::claim_file(file, "audit", a.force)?;
    }
    let o = RunAuditOptions { top: a.top, min_score: a.min_score, hard_years: a.hard_years, data: a.data, out_csv: a.out.clone(), write_relabel: a.write_relabel };
    let file = crate::app::runs::audit(&RunDir::new(a.run), &o)?;
    print!("{}", render(&file));
    if let Some(out) = a.out {
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
