//! `masklab sweep SPACE DATA --out SWEEP`: what runs. One process is one worker of the sweep
//! (`--job`, or `--workers 1`); `--workers N` starts N worker processes of this program on this
//! machine, each with its own device (a GPU each, round robin, when CUDA is there) or its share
//! of the CPU threads, and waits for them. Jobs on other machines sharing the folder (a Slurm
//! array) run the same command with `--job`: the study's locks coordinate them all. Every worker
//! writes the results when it ends; the launcher writes them once more after its workers.
use super::results::{write_results, Written};
use super::spec::SweepSpec;
use super::study::Study;
use super::worker::{run_worker, TrialRecipe, WorkerTally};
use crate::config::Config;
use crate::device::DeviceChoice;
use crate::dist::launch::{args_without, describe, forward_lines};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;

/// A sweep command as given.
#[derive(Clone, Debug)]
pub struct SweepRequest {
    /// The sweep file.
    pub space: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    /// Local worker processes (1: this process is the worker).
    pub workers: usize,
    /// This process is one worker of a sweep that others run too.
    pub job: bool,
    pub config: Option<PathBuf>,
    pub overrides: Vec<String>,
}

/// How a sweep command ended.
pub struct SweepEnd {
    /// What this process's worker did (None for a launcher).
    pub tally: Option<WorkerTally>,
    pub written: Written,
    /// Local workers that failed, as "worker 2 exited with status 1".
    pub failed_workers: Vec<String>,
}

pub fn sweep(req: &SweepRequest) -> Result<SweepEnd> {
    if req.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if req.job && req.workers > 1 {
        bail!("--job runs this process as one worker; leave --workers out (each job is one worker)");
    }
    let spec = SweepSpec::load(&req.space)?;
    let recipe = TrialRecipe { data: req.data.clone(), base_config: req.config.clone(), overrides: req.overrides.clone() };
    recipe.check(spec.space.params.keys().cloned()).with_context(|| format!("sweep file {}", req.space.display()))?;
    spec.space.check_against_config(req.config.as_deref()).with_context(|| format!("sweep file {}", req.space.display()))?;
    let base = Config::load(req.config.as_deref(), &req.overrides)?;
    let resampling = base.intervals.resampling();
    if req.workers > 1 {
        // The study is started here, so that the workers find it (and a bad folder fails once).
        let study = Study::open(&req.out, spec.clone())?;
        let failed_workers = launch_local(req.workers, &base)?;
        let written = write_results(&study, resampling)?;
        return Ok(SweepEnd { tally: None, written, failed_workers });
    }
    let study = Rc::new(Study::open(&req.out, spec)?);
    let tally = run_worker(&study, &recipe)?;
    let written = write_results(&study, resampling)?;
    Ok(SweepEnd { tally: Some(tally), written, failed_workers: Vec::new() })
}

/// The `key=value` that give local worker `index` of `workers` its device and threads, unless
/// the config fixes them: a GPU each (round robin over the visible GPUs) when the device is
/// `auto` and CUDA is there; an equal share of the CPU cores for libtorch's threads and the
/// decoding threads when those are left to their defaults (0).
pub fn worker_keys(index: usize, workers: usize, cfg: &Config, gpus: usize, cores: usize) -> Vec<String> {
    let mut keys = Vec::new();
    if cfg.train.device == DeviceChoice::Auto {
        keys.push(if gpus > 0 { format!("train.device=cuda:{}", index % gpus) } else { "train.device=cpu".to_string() });
    }
    let share = (cores / workers).max(1);
    if cfg.train.threads == 0 {
        keys.push(format!("train.threads={share}"));
    }
    if cfg.data.workers == 0 {
        keys.push(format!("data.workers={share}"));
    }
    keys
}

/// Starts `workers` processes of this program's command line as jobs (`--job`, with their
/// device and threads), their output prefixed `[worker I]`, and waits for all of them. They die
/// with this process. Returns the workers that failed (the others ran on).
fn launch_local(workers: usize, cfg: &Config) -> Result<Vec<String>> {
    let program = std::env::current_exe().context("cannot find this program's path to start its workers")?;
    let args: Vec<OsString> = args_without(&std::env::args_os().skip(1).collect::<Vec<_>>(), "--workers");
    let gpus = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let launcher = std::process::id() as libc::pid_t;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut children = Vec::new();
    for index in 0..workers {
        let keys = worker_keys(index, workers, cfg, gpus, cores);
        eprintln!("[worker {index}] {}", if keys.is_empty() { "as configured".to_string() } else { keys.join(" ") });
        let mut cmd = Command::new(&program);
        cmd.args(&args).arg("--job").args(&keys).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 || libc::getppid() != launcher {
                    return Err(std::io::Error::other("the sweep launcher is gone"));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start sweep worker {index}: {}", program.display()))?;
        if let Some(out) = child.stdout.take() {
            forward_lines(out, format!("[worker {index}] "), false, done_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, format!("[worker {index}] "), true, done_tx.clone());
        }
        children.push(child);
    }
    drop(done_tx);
    let mut failed = Vec::new();
    for (index, child) in children.iter_mut().enumerate() {
        let status = child.wait().with_context(|| format!("cannot wait for sweep worker {index}"))?;
        if !status.success() {
            failed.push(format!("worker {index} {}", describe(&status)));
        }
    }
    // Their last lines.
    while done_rx.recv_timeout(std::time::Duration::from_secs(2)).is_ok() {}
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_workers_get_a_gpu_each_or_a_share_of_the_cores() {
        let auto = Config::default();
        assert_eq!(worker_keys(0, 2, &auto, 0, 8), vec!["train.device=cpu", "train.threads=4", "data.workers=4"]);
        assert_eq!(worker_keys(3, 4, &auto, 2, 2), vec!["train.device=cuda:1", "train.threads=1", "data.workers=1"]);
        let fixed = Config::load(None, &["train.device=cpu".into(), "train.threads=2".into(), "data.workers=3".into()]).unwrap();
        assert!(worker_keys(1, 2, &fixed, 1, 16).is_empty(), "what the config fixes stays");
    }
}
