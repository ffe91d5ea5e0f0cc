//! `masklab sweep`.
use crate::sweep::run::{sweep, SweepRequest};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct SweepArgs {
    /// The sweep file: [space] (config keys and their ranges), [budget], [objective], [sampler], [pruner].
    space: PathBuf,
    /// Dataset folder holding train/.
    data: PathBuf,
    /// Sweep folder: study.json, a run per trial (trial-NNN), sweep.csv, sweep.html, best.toml.
    /// Running the same command again resumes the sweep where it stopped.
    #[arg(long)]
    out: PathBuf,
    /// Worker processes on this machine, each training one trial at a time on its own GPU (round
    /// robin) or its share of the CPU cores.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Run as one worker of the sweep in --out, beside others sharing the folder (one task of a
    /// Slurm array, or jobs on several machines): the same command in every job.
    #[arg(long)]
    job: bool,
    /// Base TOML config of every trial (the built-in defaults when absent).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Config overrides of every trial, under the trial's parameters (e.g. train.epochs=8 data.size=96).
    overrides: Vec<String>,
}

pub fn run(a: SweepArgs) -> Result<()> {
    let request = SweepRequest { space: a.space, data: a.data, out: a.out, workers: a.workers, job: a.job, config: a.config, overrides: a.overrides };
    let end = sweep(&request)?;
    if let Some(t) = end.tally {
        println!("this worker: {} trials complete, {} pruned, {} failed", t.complete, t.pruned, t.failed);
    }
    let w = &end.written;
    println!("sweep {}: {}", request.out.display(), w.summary);
    println!("  {}\n  {}", w.csv.display(), w.page.display());
    if let Some(p) = &w.preset {
        println!("  {} (masklab train DATA --config {})", p.display(), p.display());
    }
    if !end.failed_workers.is_empty() {
        bail!("{} (run the same command again to resume the sweep)", end.failed_workers.join("; "));
    }
    Ok(())
}
