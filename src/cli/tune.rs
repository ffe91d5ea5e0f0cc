//! `masklab tune`.
use crate::decision_biases::{render, tune_run, Search, TuneBy};
use crate::run_dir::RunDir;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TuneArgs {
    run: PathBuf,
    /// class: one bias per 18-way class; task: 3 mask + 2 gender + 3 age biases.
    #[arg(long, value_enum, default_value = "class")]
    by: TuneBy,
    /// Person groups for the held-out report when the rows have no k-fold folds.
    #[arg(long, default_value_t = 5)]
    groups: usize,
    /// Largest bias tried (both signs).
    #[arg(long, default_value_t = 3.0)]
    range: f64,
    /// Grid step of the biases tried.
    #[arg(long, default_value_t = 0.1)]
    step: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Have predict apply the biases even when their held-out (cross-fitted) macro F1 is not
    /// higher than the argmax's (by default they are then recorded but not applied).
    #[arg(long)]
    force: bool,
}

pub fn run(a: TuneArgs) -> Result<()> {
    if !(a.step > 0.0 && a.range >= a.step) {
        bail!("--step must be positive and --range at least --step (got step {}, range {})", a.step, a.range);
    }
    let search = Search { range: a.range, step: a.step, ..Default::default() };
    let run = RunDir::new(a.run);
    let report = tune_run(&run, a.by, &search, a.groups, a.force)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
        println!("wrote {}", run.tune_file().display());
    }
    Ok(())
}
