//! `masklab compare`.
use crate::metrics::bootstrap::IntervalArgs;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// Run folders (two or more).
    #[arg(required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    /// Folder for compare.html and its charts.
    #[arg(long, default_value = "compare")]
    out: PathBuf,
    #[command(flatten)]
    intervals: IntervalArgs,
}

pub fn run(a: CompareArgs) -> Result<()> {
    let c = crate::app::runs::compare(&a.runs, &a.out, a.intervals)?;
    print!("{}", c.markdown);
    eprintln!("wrote {}", c.page.display());
    Ok(())
}
