//! `masklab report`.
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReportArgs {
    /// Run folder written by `masklab train` (a k-fold run folder gets the cross-validation page).
    run: PathBuf,
    /// Validation mistakes to show (default: the run's report.worst).
    #[arg(long)]
    worst: Option<usize>,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let page = crate::report::write_report(&a.run, a.worst)?;
    println!("wrote {}", page.display());
    Ok(())
}
