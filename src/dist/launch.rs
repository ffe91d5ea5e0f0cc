//! `masklab train --nproc N ...`: one machine, N worker processes of this same program.
//!
//! The launcher hosts the rendezvous store on a free port of loopback (as torchrun's agent does,
//! so no port is picked and then raced for), starts the workers with torchrun's variables
//! (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) plus
//! `MASKLAB_LAUNCHER_STORE=1`, prefixes each line they print with `[rank R]`, and waits. When a
//! worker fails (non-zero exit or a signal) it stops the others (SIGTERM, SIGKILL after a grace
//! period) and returns an error naming the rank and how it ended, instead of leaving the others
//! to hang. Workers die with the launcher (PR_SET_PDEATHSIG).
use super::env::LAUNCHER_STORE_VAR;
use super::Store;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How many workers `--nproc` asks for: a count, or `gpu` (one per visible GPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nproc {
    Count(usize),
    Gpu,
}

impl std::str::FromStr for Nproc {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "gpu" => Ok(Nproc::Gpu),
            _ => match text.parse::<usize>() {
                Ok(0) | Err(_) => bail!("--nproc takes a number of processes (1 or more) or `gpu` (one per visible GPU), got `{text}`"),
                Ok(n) => Ok(Nproc::Count(n)),
            },
        }
    }
}

impl Nproc {
    /// The number of workers; `gpu` counts the GPUs this process sees (CUDA_VISIBLE_DEVICES).
    /// A count beyond this machine's cores and GPUs (the larger) is refused unless
    /// `oversubscribe`: such workers only compete for them, and a mistyped `--nproc 1000` would
    /// start processes until the system refuses.
    pub fn resolve(self, oversubscribe: bool) -> Result<usize> {
        let gpus = tch::Cuda::device_count().max(0) as usize;
        match self {
            Nproc::Count(n) => {
                let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
                let limit = cores.max(gpus);
                if n > limit && !oversubscribe {
                    bail!(
                        "--nproc {n}: this machine has {cores} cores and {gpus} GPUs, so at most {limit} workers each get one; give --nproc {limit} or fewer, or add --oversubscribe to start {n} anyway"
                    );
                }
                Ok(n)
            }
            Nproc::Gpu => match gpus {
                0 => bail!("--nproc gpu: no GPU is visible; give a number of CPU processes (--nproc 2)"),
                n => Ok(n),
            },
        }
    }
}

/// What each worker runs.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Extra environment for every worker.
    pub env: Vec<(OsString, OsString)>,
}

/// Launcher settings.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    pub nproc: usize,
    /// How long the store waits for requests (rendezvous, collectives' key exchange).
    pub store_timeout: Duration,
    /// How long the other workers get to exit after SIGTERM before SIGKILL, once one failed.
    pub grace: Duration,
}

impl LaunchOptions {
    pub fn new(nproc: usize) -> LaunchOptions {
        LaunchOptions { nproc, store_timeout: Duration::from_secs(600), grace: Duration::from_secs(10) }
    }
}

/// This program's command line without `flag` and its value (`--nproc 2`, `--nproc=2`): what the
/// launcher's workers run for `masklab train --nproc 2 DATA ...`.
pub fn args_without(args: &[OsString], flag: &str) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        match arg.to_str() {
            Some(a) if a == flag => skip_value = true,
            Some(a) if a.strip_prefix(flag).is_some_and(|rest| rest.starts_with('=')) => {}
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// Runs this same program's command line, minus `flag` (e.g. `--nproc`), on `nproc` workers.
pub fn relaunch_self(nproc: usize, flag: &str) -> Result<()> {
    let program = std::env::current_exe().context("cannot find this program's path to start its workers")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = WorkerCommand { program, args: args_without(&args, flag), env: Vec::new() };
    launch(&command, &LaunchOptions::new(nproc))
}

/// How a worker ended, in words.
pub fn describe(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => format!("was killed by signal {signal} ({})", signal_name(signal)),
        None => format!("ended ({status})"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "another signal",
    }
}

/// Copies `from` line by line to stdout or stderr, each line prefixed with the rank; says `done`
/// at the end of the stream.
fn forward(from: impl Read + Send + 'static, rank: usize, to_stderr: bool, done: mpsc::Sender<()>) {
    forward_lines(from, format!("[rank {rank}] "), to_stderr, done)
}

/// Copies `from` line by line to stdout or stderr, each line prefixed with `prefix` and written
/// whole (lines of several children do not interleave); says `done` at the end of the stream.
pub fn forward_lines(from: impl Read + Send + 'static, prefix: String, to_stderr: bool, done: mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    // One write per line, so that lines of different ranks do not interleave.
                    let mut out = prefix.as_bytes().to_vec();
                    out.extend_from_slice(&line);
                    let _ = if to_stderr { std::io::stderr().lock().write_all(&out) } else { std::io::stdout().lock().write_all(&out) };
                }
            }
        }
        let _ = done.send(());
    });
}

/// Starts `options.nproc` workers of `command` and waits for all of them: Ok when every one exits
/// with status 0; an error naming the first to fail, after the others were stopped.
pub fn launch(command: &WorkerCommand, options: &LaunchOptions) -> Result<()> {
    let nproc = options.nproc;
    if nproc == 0 {
        bail!("the launcher needs at least one worker");
    }
    let store = Store::host("127.0.0.1", 0, nproc, options.store_timeout).context("the launcher cannot host the rendezvous store")?;
    let port = store.port().to_string();
    // As torchrun: several CPU-hungry workers on one machine should not each start a thread per core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let omp_threads = (threads / nproc).max(1).to_string();
    let launcher_pid = std::process::id() as libc::pid_t;

    // Each worker's end, and when its waiter saw it: several failures can arrive almost together
    // (one rank dies, its peers then fail in a collective), and the earliest is the cause.
    let (exited_tx, exited_rx) = mpsc::channel::<(usize, std::io::Result<ExitStatus>, Instant)>();
    let mut pids: Vec<libc::pid_t> = Vec::with_capacity(nproc);
    let (forwarded_tx, forwarded_rx) = mpsc::channel::<()>();
    let mut streams = 0;
    for rank in 0..nproc {
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("GROUP_RANK", "0")
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .env(LAUNCHER_STORE_VAR, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            cmd.env("OMP_NUM_THREADS", &omp_threads);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 || libc::getppid() != launcher_pid {
                    return Err(std::io::Error::other("the launcher is gone"));
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                stop(&pids, &[], libc::SIGKILL);
                return Err(e).with_context(|| format!("cannot start worker {rank}: {}", command.program.display()));
            }
        };
        pids.push(child.id() as libc::pid_t);
        if let Some(out) = child.stdout.take() {
            forward(out, rank, false, forwarded_tx.clone());
            streams += 1;
        }
        if let Some(err) = child.stderr.take() {
            forward(err, rank, true, forwarded_tx.clone());
            streams += 1;
        }
        let tx = exited_tx.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send((rank, status, Instant::now()));
        });
    }
    drop(exited_tx);

    let mut exited: Vec<usize> = Vec::new();
    let mut failures: Vec<(Instant, usize, String)> = Vec::new();
    let mut stopping = false;
    let mut stop_deadline: Option<Instant> = None;
    while exited.len() < nproc {
        let received = match stop_deadline {
            None => exited_rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(deadline) => exited_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
        };
        match received {
            Ok((rank, status, when)) => {
                exited.push(rank);
                let how = match &status {
                    Ok(s) if s.success() => continue,
                    // The launcher's own SIGTERM or SIGKILL: stopped, not a failure of its own.
                    Ok(s) if stopping && matches!(s.signal(), Some(libc::SIGTERM | libc::SIGKILL)) => continue,
                    Ok(s) => describe(s),
                    Err(e) => format!("could not be waited for ({e})"),
                };
                failures.push((when, rank, how));
                if !stopping {
                    stopping = true;
                    stop(&pids, &exited, libc::SIGTERM);
                    stop_deadline = Some(Instant::now() + options.grace);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stop(&pids, &exited, libc::SIGKILL);
                stop_deadline = None;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // The workers' last lines; a process a worker left behind may hold its pipe open: wait a little only.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..streams {
        if forwarded_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
            break;
        }
    }
    drop(store);
    failures.sort_by_key(|(when, rank, _)| (*when, *rank));
    let Some((_, rank, how)) = failures.first() else { return Ok(()) };
    let mut message = format!("worker rank {rank} of {nproc} {how}; the launcher stopped the other workers");
    if failures.len() > 1 {
        let others: Vec<String> = failures[1..].iter().map(|(_, rank, how)| format!("rank {rank} {how}")).collect();
        message.push_str(&format!(" (then: {})", others.join(", ")));
    }
    bail!(message)
}

/// Sends `signal` to the workers that have not exited yet.
fn stop(pids: &[libc::pid_t], exited: &[usize], signal: libc::c_int) {
    for (rank, &pid) in pids.iter().enumerate() {
        if !exited.contains(&rank) {
            // SAFETY: kill(2) on a child this process started and has not yet reaped.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn nproc_is_a_count_or_gpu() {
        assert_eq!("4".parse::<Nproc>().unwrap(), Nproc::Count(4));
        assert_eq!("gpu".parse::<Nproc>().unwrap(), Nproc::Gpu);
        assert!("0".parse::<Nproc>().unwrap_err().to_string().contains("1 or more"));
        assert!("many".parse::<Nproc>().is_err());
    }

    #[test]
    fn the_workers_command_line_drops_only_the_launcher_flag() {
        let args = os(&["train", "--nproc", "2", "data", "--out", "run", "epochs=1"]);
        assert_eq!(args_without(&args, "--nproc"), os(&["train", "data", "--out", "run", "epochs=1"]));
        let args = os(&["train", "data", "--nproc=gpu", "--nprocs-like", "x"]);
        assert_eq!(args_without(&args, "--nproc"), os(&["train", "data", "--nprocs-like", "x"]));
    }

    fn shell(script: &str) -> WorkerCommand {
        WorkerCommand { program: "/bin/sh".into(), args: os(&["-c", script]), env: Vec::new() }
    }

    #[test]
    fn all_workers_succeeding_is_success() {
        // Each worker checks its own variables.
        let command = shell(r#"test "$WORLD_SIZE" = 3 && test "$RANK" = "$LOCAL_RANK" && test -n "$MASTER_PORT" && test "$MASKLAB_LAUNCHER_STORE" = 1"#);
        launch(&command, &LaunchOptions::new(3)).unwrap();
    }

    #[test]
    fn a_failing_worker_stops_the_others_and_is_named() {
        // Rank 1 fails at once; the others would sleep for a minute.
        let command = shell(r#"if [ "$RANK" = 1 ]; then exit 7; fi; exec sleep 60"#);
        let started = Instant::now();
        let err = launch(&command, &LaunchOptions { grace: Duration::from_secs(5), ..LaunchOptions::new(3) }).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        assert!(err.contains("worker rank 1 of 3 exited with status 7"), "{err}");
        assert!(err.contains("stopped the other workers"), "{err}");
    }

    #[test]
    fn a_worker_ignoring_sigterm_is_killed_after_the_grace_period() {
        let command = shell(r#"if [ "$RANK" = 0 ]; then sleep 0.5; kill -9 $$; fi; trap '' TERM; while true; do sleep 0.2; done"#);
        let started = Instant::now();
        let err = launch(&command, &LaunchOptions { grace: Duration::from_millis(500), ..LaunchOptions::new(2) }).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        assert!(err.contains("worker rank 0 of 2 was killed by signal 9 (SIGKILL)"), "{err}");
    }

    #[test]
    fn a_program_that_does_not_exist_is_an_error() {
        let command = WorkerCommand { program: "/nonexistent/masklab".into(), args: Vec::new(), env: Vec::new() };
        let err = format!("{:#}", launch(&command, &LaunchOptions::new(2)).unwrap_err());
        assert!(err.contains("cannot start worker 0: /nonexistent/masklab"), "{err}");
    }
}
