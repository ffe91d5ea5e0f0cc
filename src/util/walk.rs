//! The one walk over a folder tree that every command listing folders uses (`faces`, `predict
//! --faces`, `bench serve --images`, the MLflow artifacts of a run). Links are followed, so a
//! folder of photos may link to others; a folder reached a second time (a link back to a folder
//! above it, or two links to one folder: the same device and inode) is not entered again and is
//! reported, and a walk deeper than its bound is an error naming the folder, never a walk that
//! never ends.
use crate::util::data_error::DataError;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// How deep a walk of photos goes below its root by default: far more than any dataset's layout
/// needs (the competition's is two), far less than a loop of links would reach.
pub const MAX_DEPTH: usize = 32;

/// What a walk found: the files kept, in path order, and the folders it did not enter again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Walked {
    pub files: Vec<PathBuf>,
    /// One line per folder reached a second time, for the caller to report.
    pub repeated: Vec<String>,
}

/// Lists the files under `root` (links followed) for which `keep` is true, at most `max_depth`
/// folders below it; names starting with `.` (hidden files, atomic writes' temporary files) are
/// left out, and so are their folders. A folder reached again through a link is not entered a
/// second time ([`Walked::repeated`]); a folder deeper than `max_depth` or one that cannot be
/// listed is an error naming it.
pub fn walk_files(root: &Path, max_depth: usize, keep: impl Fn(&Path) -> bool) -> Result<Walked, DataError> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut walked = Walked::default();
    let root_id = folder_id(root).map_err(|e| DataError::file(root, format!("cannot list: {e}")))?;
    seen.insert(root_id);
    // walkdir stops at a link back to a folder above (an error with `loop_ancestor`); folders
    // reached twice otherwise are skipped by the inode set in `filter_entry`.
    let repeated = std::cell::RefCell::new(Vec::new());
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .max_depth(max_depth + 1)
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 {
                return true;
            }
            if e.file_name().to_string_lossy().starts_with('.') {
                return false;
            }
            if !e.file_type().is_dir() {
                return true;
            }
            match folder_id(e.path()) {
                Ok(id) if !seen.insert(id) => {
                    repeated.borrow_mut().push(format!("{}: the same folder as one listed before (a link): not listed again", e.path().display()));
                    false
                }
                _ => true,
            }
        });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                if let Some(ancestor) = e.loop_ancestor() {
                    repeated.borrow_mut().push(format!("{}: a link back to {} (a loop): not followed", path.display(), ancestor.display()));
                    continue;
                }
                return Err(DataError::file(&path, format!("cannot list: {}", e.io_error().map(|io| io.to_string()).unwrap_or_else(|| e.to_string()))));
            }
        };
        if entry.file_type().is_dir() {
            if entry.depth() > max_depth {
                return Err(DataError::file(
                    entry.path(),
                    format!("more than {max_depth} folders below {}: folders are searched at most {max_depth} deep", root.display()),
                ));
            }
            continue;
        }
        if entry.file_type().is_file() && keep(entry.path()) {
            walked.files.push(entry.into_path());
        }
    }
    walked.repeated = repeated.into_inner();
    Ok(walked)
}

/// The device and inode of a folder (what tells two names of one folder apart from two folders).
#[cfg(unix)]
fn folder_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Elsewhere, the canonical path stands for the folder (hashed into the same shape).
#[cfg(not(unix))]
fn folder_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::canonicalize(path)?.hash(&mut h);
    Ok((0, h.finish()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(root: &Path, w: &Walked) -> Vec<String> {
        w.files.iter().map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn files_are_listed_in_order_without_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::create_dir_all(root.join(".hidden")).unwrap();
        for f in ["a.jpg", "b/x.png", "b/c/y.jpg", ".hidden/z.jpg", "b/.tmp.jpg", "b/notes.txt"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let w = walk_files(root, MAX_DEPTH, |p| p.extension().is_some_and(|e| e != "txt")).unwrap();
        assert_eq!(names(root, &w), vec!["a.jpg", "b/c/y.jpg", "b/x.png"]);
        assert!(w.repeated.is_empty());
    }

    /// `a/up -> ..` and `b/up -> ..`: each photo once, the loops reported, and the walk ends.
    #[test]
    fn links_back_up_are_not_followed_and_each_folder_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("a/p.jpg"), b"x").unwrap();
        std::fs::write(root.join("b/q.jpg"), b"x").unwrap();
        symlink("..", root.join("a/up")).unwrap();
        symlink("..", root.join("b/up")).unwrap();
        symlink("../a", root.join("b/also_a")).unwrap();
        let w = walk_files(root, MAX_DEPTH, |_| true).unwrap();
        assert_eq!(names(root, &w), vec!["a/p.jpg", "b/q.jpg"]);
        assert_eq!(w.repeated.len(), 3, "{:?}", w.repeated);
        assert!(w.repeated.iter().any(|r| r.contains("a/up") && r.contains("loop")), "{:?}", w.repeated);
        assert!(w.repeated.iter().any(|r| r.contains("b/also_a") && r.contains("same folder")), "{:?}", w.repeated);
    }

    #[test]
    fn a_walk_deeper_than_its_bound_is_an_error_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("1/2/3/4");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("p.jpg"), b"x").unwrap();
        assert_eq!(walk_files(dir.path(), 4, |_| true).unwrap().files.len(), 1);
        let err = walk_files(dir.path(), 3, |_| true).unwrap_err().to_string();
        assert!(err.contains("1/2/3/4") && err.contains("at most 3 deep"), "{err}");
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = walk_files(&dir.path().join("nope"), MAX_DEPTH, |_| true).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("cannot list"), "{err}");
    }
}
