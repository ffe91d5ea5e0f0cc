//! Folders and dataset files a command writes: never over what is there unless told. A command
//! writing a folder (`demo-data`, `eda --out`, `compare --out`) takes it only when it is missing
//! or empty, or holds nothing but what the same command writes (its own earlier output), unless
//! `--force`; one writing a dataset file (`audit --write-relabel`) refuses an existing file
//! unless `--force`. `train --out` has its own rule (a folder holding a run needs `--resume`).
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Checks that `dir` may be written by `command`: missing, empty, holding only names `own`
/// accepts (files this command writes), or `force`. Creates it.
pub fn claim_folder(dir: &Path, command: &str, force: bool, own: impl Fn(&str) -> bool) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{}: not a folder ({command} writes a folder here)", dir.display());
    }
    if dir.is_dir() && !force {
        let mut foreign = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let name = entry.with_context(|| format!("cannot list {}", dir.display()))?.file_name().to_string_lossy().into_owned();
            if !own(&name) {
                foreign.push(name);
            }
        }
        if !foreign.is_empty() {
            foreign.sort();
            let shown: Vec<&str> = foreign.iter().take(5).map(String::as_str).collect();
            let more = if foreign.len() > shown.len() { format!(" and {} more", foreign.len() - shown.len()) } else { String::new() };
            bail!(
                "{} is not empty (it holds {}{more}): {command} writes only into a new or empty folder; give another folder, or --force to write over it",
                dir.display(),
                shown.join(", ")
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Checks that the file `path` may be written by `command`: missing, or `force`.
pub fn claim_file(path: &Path, command: &str, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{} exists: {command} does not write over it; give another file, or --force to replace it", path.display());
    }
    if path.is_dir() {
        bail!("{}: a folder, not a file", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_taken_when_missing_empty_own_or_forced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        claim_folder(&out, "demo-data", false, |_| false).unwrap();
        assert!(out.is_dir());
        claim_folder(&out, "demo-data", false, |_| false).unwrap();
        std::fs::write(out.join("eda.json"), b"{}").unwrap();
        claim_folder(&out, "eda", false, |n| n == "eda.json").unwrap();
        let err = claim_folder(&out, "demo-data", false, |_| false).unwrap_err().to_string();
        assert!(err.contains("not empty") && err.contains("eda.json") && err.contains("--force"), "{err}");
        claim_folder(&out, "demo-data", true, |_| false).unwrap();
        let file = out.join("eda.json");
        assert!(claim_folder(&file, "eda", true, |_| true).unwrap_err().to_string().contains("not a folder"));
    }

    #[test]
    fn a_file_is_taken_when_missing_or_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relabel.csv");
        claim_file(&path, "audit", false).unwrap();
        std::fs::write(&path, b"id,field,true_value\n").unwrap();
        let err = claim_file(&path, "audit --write-relabel", false).unwrap_err().to_string();
        assert!(err.contains("relabel.csv exists") && err.contains("--force"), "{err}");
        claim_file(&path, "audit", true).unwrap();
    }
}
