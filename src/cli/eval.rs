//! `masklab eval`.
use crate::device::DeviceArg;
use crate::evaluate::{render_evaluation, EvalSplit};
use crate::metrics::bootstrap::IntervalArgs;
use crate::run_dir::RunDir;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    /// Run folder written by `masklab train`.
    run: PathBuf,
    /// Dataset folder (train/ layout; with --split eval, eval/info.csv + eval/answers.csv).
    data: PathBuf,
    /// Which images: val (the run's person-level validation split), all (every train image), eval (eval/ with answers.csv).
    #[arg(long, value_enum, default_value = "val")]
    split: EvalSplit,
    /// Same as --split all.
    #[arg(long)]
    all: bool,
    /// Evaluate the last checkpoint instead of the best.
    #[arg(long)]
    last: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    intervals: IntervalArgs,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let split = if a.all { EvalSplit::All } else { a.split };
    let (e, bounds) = crate::app::runs::eval(&RunDir::new(a.run), &a.data, split, a.last, a.device.device, a.intervals)?;
    if a.json {
        println!("{}", serde_json::to_string(&e)?);
    } else {
        print!("{}", render_evaluation(&e, &bounds));
    }
    Ok(())
}
