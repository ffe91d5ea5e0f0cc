//! One writer per run folder. Every command that writes into a run (`train`, each fold of a
//! k-fold run and its parent, `tune`, `report`) holds an exclusive lock on `RUN/.masklab.lock`
//! while it writes; a second writer is refused with the holder's process id, which the holder
//! keeps in the lock file. Readers (`eval`, `predict`, `export`, `compare`) take no lock: every
//! run file is replaced atomically, so they read a whole old or a whole new file.
//!
//! The lock is the operating system's advisory file lock (std's `File::try_lock`: `flock` on
//! Unix, `LockFileEx` on Windows), which the kernel releases when the holder exits in any way,
//! killed included: a dead writer's lock is free at once, and its file, still naming the dead
//! process, is simply overwritten by the next holder. The lock file is never deleted (deleting
//! it would let two writers lock two different files of the same name).
//!
//! Taking the lock also removes the temporary files that writers killed mid-write left in the
//! run folder (`util::write_atomic`'s `.NAME.tmpPID.*`), when process PID no longer runs.
use super::RunDir;
use crate::util::{process_alive, temp_file_owner};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The lock file's name inside a run folder.
pub(super) const LOCK_FILE: &str = ".masklab.lock";

/// The right to write one run folder, held until dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    run: RunDir,
    /// Open for as long as the lock is held: closing it releases the lock.
    _file: File,
}

impl RunLock {
    /// Locks the folder `run` (which must exist) for `command` (named to whoever is refused),
    /// or fails naming the process that holds it.
    pub fn acquire(run: &RunDir, command: &str) -> Result<RunLock> {
        match Self::try_acquire(run, command)? {
            Ok(lock) => Ok(lock),
            Err(holder) => bail!(
                "{} is being written by {holder}; wait for it to finish (or stop it), or use another run folder",
                run.path().display()
            ),
        }
    }

    /// Like `acquire`, but waits up to `patience` for a holder to let go: for writers that hold
    /// the lock for a moment only, such as the jobs of one k-fold run recording their folds in
    /// the parent folder. Says once on stderr whom it waits for.
    pub fn acquire_waiting(run: &RunDir, command: &str, patience: Duration) -> Result<RunLock> {
        let start = Instant::now();
        let mut said = false;
        loop {
            match Self::try_acquire(run, command)? {
                Ok(lock) => return Ok(lock),
                Err(holder) if start.elapsed() >= patience => bail!(
                    "{} is being written by {holder}; waited {:.1} s for it: wait for it to finish (or stop it), then try again",
                    run.path().display(),
                    patience.as_secs_f64()
                ),
                Err(holder) => {
                    if !said {
                        eprintln!("{}: waiting for {holder} to finish writing it", run.path().display());
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The lock, or (inner Err) the description of the process that holds it.
    pub fn try_acquire(run: &RunDir, command: &str) -> Result<std::result::Result<RunLock, String>> {
        if !run.path().is_dir() {
            bail!("{}: no such run folder", run.path().display());
        }
        let path = run.lock_file();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the run's lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Ok(Err(describe_holder(&holder)));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {} (does this file system support file locks?)", path.display()));
            }
        }
        let since = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let text = format!("pid = {}\ncommand = \"masklab {command}\"\nsince = {since}\n", std::process::id());
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        let lock = RunLock { run: run.clone(), _file: file };
        for stale in remove_stale_temp_files(run.path())? {
            eprintln!("removed {}, left by a writer that no longer runs", stale.display());
        }
        Ok(Ok(lock))
    }

    /// The locked run folder.
    pub fn run(&self) -> &RunDir {
        &self.run
    }
}

/// "process 1234 (masklab train, for 5 min)" from the lock file's text.
fn describe_holder(text: &str) -> String {
    let table: toml::Table = text.parse().unwrap_or_default();
    let pid = table.get("pid").and_then(|v| v.as_integer());
    let command = table.get("command").and_then(|v| v.as_str());
    let since = table.get("since").and_then(|v| v.as_integer());
    let Some(pid) = pid else {
        return "another process (it has not written its process id yet)".to_string();
    };
    let mut s = format!("process {pid}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    match (command, since) {
        (Some(c), Some(t)) => s.push_str(&format!(" ({c}, for {})", duration_words(now - t))),
        (Some(c), None) => s.push_str(&format!(" ({c})")),
        _ => {}
    }
    s
}

fn duration_words(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// Removes `write_atomic` temporary files of processes that no longer run, in the run folder
/// and the folders directly below it (`report/`, `tensorboard/`, `fold-k/`). A file whose
/// writer still runs is left alone, whoever that writer is. A folder below that is a run locked
/// by someone else (a fold trained by another job, perhaps on another machine, whose process
/// ids this machine cannot check) is left alone as a whole.
fn remove_stale_temp_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    for entry in std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) && !locked_by_another(&entry.path().join(LOCK_FILE)) {
            dirs.push(entry.path());
        }
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = temp_file_owner(&name) else { continue };
            if pid != std::process::id() && !process_alive(pid) && entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(entry.path()).with_context(|| format!("cannot remove the stale temporary file {}", entry.path().display()))?;
                removed.push(entry.path());
            }
        }
    }
    Ok(removed)
}

/// Whether someone holds the lock file `path` (false when there is none).
fn locked_by_another(path: &Path) -> bool {
    match File::open(path) {
        Ok(file) => matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process id of a process that has ended (it is not reused this quickly).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_second_writer_is_refused_naming_the_holder_and_the_lock_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        assert!(format!("{:#}", RunLock::acquire(&run, "report").unwrap_err()).contains("no such run folder"));
        std::fs::create_dir(run.path()).unwrap();
        let held = RunLock::acquire(&run, "train").unwrap();
        let err = format!("{:#}", RunLock::acquire(&run, "tune").unwrap_err());
        assert!(err.contains(&format!("process {}", std::process::id())) && err.contains("masklab train"), "{err}");
        drop(held);
        let again = RunLock::acquire(&run, "tune").unwrap();
        assert_eq!(again.run(), &run);
        let text = std::fs::read_to_string(run.lock_file()).unwrap();
        assert!(text.contains(&format!("pid = {}", std::process::id())) && text.contains("masklab tune"), "{text}");
    }

    #[test]
    fn taking_the_lock_removes_temporary_files_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let dead = dead_pid();
        let stale = [format!(".last.safetensors.tmp{dead}"), format!(".best.json.tmp{dead}.a1B2c3"), format!("report/.curves.png.tmp{dead}.zzzzzz")];
        // Process 1 (init) always runs.
        let alive = format!(".best.safetensors.tmp{}.q1w2e3", std::process::id());
        let other = ["notes.tmp1", ".hidden", "fold-1/.last.safetensors.tmp1"];
        std::fs::create_dir_all(dir.path().join("report")).unwrap();
        std::fs::create_dir_all(dir.path().join("fold-1")).unwrap();
        for name in stale.iter().chain([&alive]).map(String::as_str).chain(other) {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let _lock = RunLock::acquire(&run, "train").unwrap();
        for name in &stale {
            assert!(!dir.path().join(name).exists(), "{name} was left");
        }
        for name in [alive.as_str()].into_iter().chain(other) {
            assert!(dir.path().join(name).exists(), "{name} was removed");
        }
    }

    #[test]
    fn a_waiting_writer_gets_the_lock_when_the_holder_lets_go_or_gives_up_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let held = RunLock::acquire(&run, "train --fold 1").unwrap();
        let err = format!("{:#}", RunLock::acquire_waiting(&run, "train --fold 2", Duration::from_millis(300)).unwrap_err());
        assert!(err.contains("masklab train --fold 1") && err.contains("waited 0.3 s"), "{err}");
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let start = Instant::now();
        let lock = RunLock::acquire_waiting(&run, "train --fold 2", Duration::from_secs(30)).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(200), "it waited for the holder");
        letting_go.join().unwrap();
        assert!(std::fs::read_to_string(run.lock_file()).unwrap().contains("train --fold 2"));
        drop(lock);
    }

    #[test]
    fn a_sub_run_locked_by_another_writer_keeps_its_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let parent = RunDir::new(dir.path());
        let fold = parent.fold(2);
        std::fs::create_dir_all(fold.path()).unwrap();
        // A writer elsewhere (another machine: its process id means nothing here) is writing fold-2.
        let fold_lock = RunLock::acquire(&fold, "train --fold 2").unwrap();
        let foreign = format!(".last.safetensors.tmp{}.x1y2z3", dead_pid());
        std::fs::write(fold.path().join(&foreign), b"x").unwrap();
        drop(RunLock::acquire(&parent, "train --fold 1").unwrap());
        assert!(fold.path().join(&foreign).exists(), "a locked fold's files are not swept");
        drop(fold_lock);
        drop(RunLock::acquire(&parent, "train --fold 1").unwrap());
        assert!(!fold.path().join(&foreign).exists(), "once nobody holds the fold, its dead writer's file goes");
    }

    #[test]
    fn the_holder_is_described_from_the_lock_file() {
        assert_eq!(describe_holder("pid = 12\ncommand = \"masklab train\"\nsince = 0\n").split(" (").next(), Some("process 12"));
        assert!(describe_holder("pid = 12\ncommand = \"masklab tune\"\n").contains("(masklab tune)"));
        assert!(describe_holder("").contains("another process"));
    }
}
