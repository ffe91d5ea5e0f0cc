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
    /// Folder for compare.html and its charts (new, empty, or holding an earlier comparison).
    #[arg(long, default_value = "compare")]
    out: PathBuf,
    /// Write into --out even when it holds other files.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    intervals: IntervalArgs,
}

pub fn run(a: CompareArgs) -> Result<()> {
    let own = |name: &str| name == crate::report::compare::COMPARE_FILE || name.ends_with(".png");
    crate::util::out_folder::claim_folder(&a.out, "compare", a.force, own)?;
    let c = crate::app::runs::compare(&a.runs, &a.out, a.intervals)?;
    print!("{}", c.markdown);
    eprintln!("wrote {}", c.page.display());
    Ok(())
}
