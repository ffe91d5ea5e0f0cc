//! Who ran a command and from what: the user, the machine, masklab's version, the git commit of
//! the project and the command line. Every run records it (its metrics log's start line, and a
//! line per resume), its report shows it and the trackers receive it, so that a team sharing a
//! folder or a tracking server can tell runs apart.
//!
//! The project is the folder the command runs in (the git repository holding it, when there is
//! one): that is where an experiment's configs, scripts and notes live, and it is the working
//! tree that wandb and MLflow take the commit of. The data folder is usually outside any
//! repository, and a config file may be anywhere. The commit is read with `git` when it is
//! installed (a missing `git`, or a folder outside any repository, records no commit); a working
//! tree with uncommitted changes to tracked files is marked dirty.
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// The login name (`$USER`, else `$LOGNAME`, else `uid N`).
    pub user: String,
    pub host: String,
    pub masklab_version: String,
    /// The folder the command ran in.
    pub working_dir: String,
    /// The commit checked out in the working folder's repository (None outside one, or without git).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// Whether tracked files had uncommitted changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    /// The command line, quoted as a POSIX shell reads it.
    pub command: String,
    /// When it was recorded: RFC 3339, UTC.
    pub at: String,
}

impl Provenance {
    /// This process: its user, machine, working folder, command line and the time now.
    pub fn of_this_process() -> Provenance {
        let dir = std::env::current_dir().unwrap_or_default();
        let args: Vec<String> = std::env::args().collect();
        Provenance::of(&dir, &args)
    }

    /// A command line `args` run in `dir`.
    pub fn of(dir: &Path, args: &[String]) -> Provenance {
        let (git_commit, git_dirty) = match git(dir, &["rev-parse", "--verify", "--quiet", "HEAD"]) {
            Some(commit) if !commit.is_empty() => {
                let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
                (Some(commit), dirty)
            }
            _ => (None, None),
        };
        Provenance {
            user: user_name(),
            host: host_name(),
            masklab_version: env!("CARGO_PKG_VERSION").to_string(),
            working_dir: dir.display().to_string(),
            git_commit,
            git_dirty,
            command: shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" ")),
            at: now_rfc3339(),
        }
    }

    /// `alice@node1, masklab 0.1.0, commit 1a2b3c4d5e6f (uncommitted changes)`.
    pub fn summary(&self) -> String {
        let commit = match (&self.git_commit, self.git_dirty) {
            (Some(c), Some(true)) => format!(", commit {} (uncommitted changes)", short(c)),
            (Some(c), _) => format!(", commit {}", short(c)),
            (None, _) => String::new(),
        };
        format!("{}@{}, masklab {}{commit}", self.user, self.host, self.masklab_version)
    }

    /// Every field by name, for trackers and reports (absent ones left out).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("user", self.user.clone()), ("host", self.host.clone()), ("masklab_version", self.masklab_version.clone())];
        out.extend(self.git_commit.clone().map(|c| ("git_commit", c)));
        out.extend(self.git_dirty.map(|d| ("git_dirty", d.to_string())));
        out.extend([("working_dir", self.working_dir.clone()), ("command", self.command.clone()), ("at", self.at.clone())]);
        out
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// `git -C dir ARGS`'s trimmed output, when git runs and succeeds. GIT_OPTIONAL_LOCKS=0: reading
/// the status must not take the index lock of a repository someone is working in.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).env("GIT_OPTIONAL_LOCKS", "0").stdin(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn user_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}

/// This machine's name, to tell runs and sweep workers on several machines apart.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_git(dir: &Path, args: &[&str]) -> bool {
        Command::new("git").arg("-C").arg(dir).args(args).output().map(|o| o.status.success()).unwrap_or(false)
    }

    #[test]
    fn provenance_names_the_command_and_the_commit_of_the_working_folder() {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = ["masklab", "train", "my data", "optim.lr=0.1"].iter().map(|s| s.to_string()).collect();
        let outside = Provenance::of(dir.path(), &args);
        // shlex quotes conservatively (`=` too): what matters is that a shell splits it back the same.
        assert_eq!(outside.command, "masklab train 'my data' 'optim.lr=0.1'");
        assert_eq!(outside.masklab_version, env!("CARGO_PKG_VERSION"));
        assert!(!outside.user.is_empty() && !outside.host.is_empty());
        assert!(outside.at.ends_with('Z') && outside.at.len() == 20, "{}", outside.at);
        assert_eq!(outside.working_dir, dir.path().display().to_string());
        // A temporary folder lies outside any repository (unless git is missing: then no commit either).
        assert_eq!((outside.git_commit.clone(), outside.git_dirty), (None, None));
        assert!(!outside.summary().contains("commit"));
        // Inside a repository: its commit, and whether tracked files changed since.
        if !run_git(dir.path(), &["init", "-q"]) {
            eprintln!("git is not installed: the commit part is not tested");
            return;
        }
        std::fs::write(dir.path().join("notes.txt"), "a").unwrap();
        let ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"];
        assert!(run_git(dir.path(), &["add", "notes.txt"]));
        assert!(run_git(dir.path(), &[&ident[..], &["commit", "-q", "-m", "one"]].concat()));
        let clean = Provenance::of(dir.path(), &args);
        let commit = clean.git_commit.clone().expect("a commit inside a repository");
        assert_eq!(commit.len(), 40);
        assert_eq!(clean.git_dirty, Some(false));
        assert!(clean.summary().contains(&format!("commit {}", &commit[..12])) && !clean.summary().contains("uncommitted"));
        std::fs::write(dir.path().join("notes.txt"), "b").unwrap();
        let dirty = Provenance::of(dir.path(), &args);
        assert_eq!((dirty.git_commit.as_deref(), dirty.git_dirty), (Some(commit.as_str()), Some(true)));
        assert!(dirty.summary().ends_with("(uncommitted changes)"));
        // The fields survive JSON.
        assert_eq!(serde_json::from_str::<Provenance>(&serde_json::to_string(&dirty).unwrap()).unwrap(), dirty);
    }
}
