//! Files written so that readers see the old content or the new, never half of it, and the
//! temporary files a killed writer leaves behind, named so the next writer can clean them up.
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes a file so that readers see either the old or the new content, never a half-written one:
/// write a temporary file beside it, sync it, then rename it over the target. On any error the
/// temporary file is removed (a full disk stays no fuller than before). A writer killed mid-write
/// leaves its temporary file, named by [`temp_file_owner`]'s pattern; whoever next locks the run
/// folder removes it (run_dir::lock).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // The file gets the permissions `std::fs::write` would give it (0o666 less the umask), or
    // keeps those of the file it replaces: tempfile's own 0o600 would hide a team's submissions,
    // checkpoints and reports from everyone but their writer.
    let permissions = std::fs::metadata(path).map(|m| m.permissions()).unwrap_or_else(|_| default_file_permissions());
    // NamedTempFile deletes itself when dropped before `persist`: every early return cleans up.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}{TEMP_MARK}{}.", std::process::id()))
        .rand_bytes(6)
        .permissions(permissions)
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.as_file().sync_all().with_context(|| format!("cannot sync {}", tmp.path().display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("cannot rename a temporary file to {}", path.display()))?;
    Ok(())
}

/// A new file's permissions before the umask: read and write for all, as `open(2)` callers such
/// as `std::fs::write` ask.
fn default_file_permissions() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o666)
}

/// Between the target's name and the writer's process id in a temporary file's name.
const TEMP_MARK: &str = ".tmp";

/// The process id of the writer that made `file_name` if it is one of [`write_atomic`]'s
/// temporary files (`.<name>.tmp<pid>.<random>`, or `.<name>.tmp<pid>` as older versions named them).
pub fn temp_file_owner(file_name: &str) -> Option<u32> {
    if !file_name.starts_with('.') {
        return None;
    }
    let at = file_name.rfind(TEMP_MARK)?;
    let rest = &file_name[at + TEMP_MARK.len()..];
    let (pid, random) = rest.split_once('.').unwrap_or((rest, ""));
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this id is running (on other systems than Unix: assumed so).
pub fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
        // Signal 0 checks existence; EPERM means it exists under another user.
        // SAFETY: kill with signal 0 sends nothing and touches no memory.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_get_the_permissions_a_plain_write_gives_or_keep_the_old_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let plain = dir.path().join("plain.csv");
        std::fs::write(&plain, b"a").unwrap();
        let atomic = dir.path().join("atomic.csv");
        write_atomic(&atomic, b"a").unwrap();
        assert_eq!(mode(&atomic), mode(&plain), "a new file is not made private");
        std::fs::set_permissions(&atomic, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&atomic, b"b").unwrap();
        assert_eq!(mode(&atomic), 0o640, "a replaced file keeps its permissions");
    }

    #[test]
    fn temporary_files_name_their_writer() {
        assert_eq!(temp_file_owner(".last.safetensors.tmp4242"), Some(4242));
        assert_eq!(temp_file_owner(".last.safetensors.tmp4242.aB3xY9"), Some(4242));
        assert_eq!(temp_file_owner(".a.tmp.b.tmp17.zzzzzz"), Some(17));
        for not_temp in ["last.safetensors", ".last.safetensors", ".x.tmp", ".x.tmpabc", "x.tmp12", ".x.tmp12.a-b"] {
            assert_eq!(temp_file_owner(not_temp), None, "{not_temp}");
        }
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A write that fails half-way (here: the file size limit, as a full disk does) leaves
    /// neither the temporary file nor a changed target. Runs in a child process, since the
    /// limit applies to the whole process.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_removes_its_temporary_file() {
        if std::env::var_os("MASKLAB_FSIZE_CHILD").is_some() {
            let dir = std::path::PathBuf::from(std::env::var_os("MASKLAB_FSIZE_CHILD").unwrap());
            // SAFETY: plain libc calls on this (child) process's own limits and signal mask.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit { rlim_cur: 4096, rlim_max: 4096 };
                assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
            }
            let err = write_atomic(&dir.join("big.bin"), &vec![7u8; 1 << 20]).unwrap_err();
            eprintln!("expected error: {err:#}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.bin"), b"old").unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "util::atomic_file::tests::a_failed_write_removes_its_temporary_file", "--nocapture", "--test-threads=1"])
            .env("MASKLAB_FSIZE_CHILD", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.contains("expected error"), "child: {stderr}");
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["big.bin".to_string()], "a temporary file was left behind");
        assert_eq!(std::fs::read(dir.path().join("big.bin")).unwrap(), b"old");
    }
}
