//! `masklab weights inspect` (what a checkpoint holds and which registered backbone it fits)
//! and `masklab weights convert` (a checkpoint rewritten under masklab's names).
use super::import::{load_checkpoint_into, to_masklab};
use super::registry::{backbone_info, backbone_names, build_backbone, BackboneOptions};
use crate::run_dir::checkpoint;
use crate::weights::import::ImportReport;
use crate::weights::torchfile::{self, Checkpoint};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use tch::nn::VarStore;
use tch::Device;

#[derive(Debug, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
    pub dtype: String,
}

#[derive(Debug, Serialize)]
pub struct BackboneMatch {
    pub backbone: String,
    pub convention: String,
    pub loaded: usize,
    pub missing: usize,
    pub unexpected: usize,
    pub mismatched: usize,
    /// Loads with `model.pretrained_strict = true` (all but the classifier head fits).
    pub fits: bool,
    /// Classes of the file's classifier head, when it has one.
    pub head_classes: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub file: String,
    pub format: String,
    pub location: String,
    pub tensors: Vec<TensorInfo>,
    pub parameters: i64,
    /// Registered backbones whose stem the file has, best fit first.
    pub candidates: Vec<BackboneMatch>,
}

impl Inspection {
    /// The backbone the file fits best, when one fits.
    pub fn best(&self) -> Option<&BackboneMatch> {
        self.candidates.first().filter(|m| m.fits)
    }
}

/// The classes of a file's head for a backbone (rows of its last Linear's weight).
fn head_classes(backbone: &str, mapped: &[(String, tch::Tensor)]) -> Option<i64> {
    let head = backbone_info(backbone)?.head;
    mapped.iter().find(|(n, _)| n == &format!("{head}weight")).map(|(_, t)| t.size()[0])
}

/// Tries a checkpoint against one backbone: builds it (with the file's head size) and loads.
fn try_backbone(backbone: &str, path: &Path, c: &Checkpoint) -> Result<Option<(ImportReport, Option<i64>)>> {
    let info = backbone_info(backbone).ok_or_else(|| anyhow!("unknown backbone {backbone}"))?;
    let tensors = c.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let (mapped, _) = to_masklab(backbone, tensors)?;
    if !mapped.iter().any(|(n, _)| n == info.stem) {
        return Ok(None);
    }
    let classes = head_classes(backbone, &mapped);
    let vs = VarStore::new(Device::Cpu);
    let opts = BackboneOptions::new(classes.unwrap_or(1000).max(1));
    let _model = build_backbone(backbone, &vs.root(), &opts)?;
    Ok(Some((load_checkpoint_into(&vs, backbone, path, c, false)?, classes)))
}

pub fn inspect(path: &Path) -> Result<Inspection> {
    let c = torchfile::read(path)?;
    let tensors: Vec<TensorInfo> = c
        .tensors
        .iter()
        .map(|(n, t)| TensorInfo { name: n.clone(), shape: t.size(), dtype: format!("{:?}", t.kind()) })
        .collect();
    let parameters = c
        .tensors
        .iter()
        .filter(|(n, _)| !(n.ends_with("running_mean") || n.ends_with("running_var") || n.ends_with("num_batches_tracked")))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    let mut candidates = Vec::new();
    for backbone in backbone_names() {
        if let Some((r, head)) = try_backbone(backbone, path, &c)? {
            let head_prefix = backbone_info(backbone).map(|i| i.head).unwrap_or_default();
            let body_missing = r.missing.iter().filter(|n| !n.starts_with(head_prefix)).count();
            let body_mismatched = r.mismatched.iter().filter(|m| !m.name.starts_with(head_prefix)).count();
            candidates.push(BackboneMatch {
                backbone: backbone.to_string(),
                convention: r.convention.clone(),
                loaded: r.loaded.len(),
                missing: r.missing.len(),
                unexpected: r.unexpected.len(),
                mismatched: r.mismatched.len(),
                fits: body_missing == 0 && body_mismatched == 0,
                head_classes: head,
            });
        }
    }
    // Fitting first, then the fewest unused file tensors, then the most loaded.
    candidates.sort_by_key(|m| (!m.fits, m.unexpected + m.missing + m.mismatched, std::cmp::Reverse(m.loaded)));
    Ok(Inspection {
        file: path.display().to_string(),
        format: c.format.to_string(),
        location: c.location.clone(),
        tensors,
        parameters,
        candidates,
    })
}

pub fn render(i: &Inspection) -> String {
    let mut s = format!(
        "{}: {}{}, {} tensors, {} parameters\n",
        i.file,
        i.format,
        if i.location.is_empty() { String::new() } else { format!(" (state dict under `{}`)", i.location) },
        i.tensors.len(),
        i.parameters
    );
    for t in &i.tensors {
        s.push_str(&format!("  {:<60} {:<20} {}\n", t.name, format!("{:?}", t.shape), t.dtype));
    }
    match i.best() {
        Some(m) => s.push_str(&format!(
            "matches backbone {} ({} names): {} tensors load, {} unused{}\n",
            m.backbone,
            m.convention,
            m.loaded,
            m.unexpected,
            match m.head_classes {
                Some(n) => format!(", head of {n} classes"),
                None => ", no classifier head".into(),
            }
        )),
        None => s.push_str("matches no registered backbone\n"),
    }
    for m in i.candidates.iter().skip(usize::from(i.best().is_some())) {
        s.push_str(&format!(
            "  also tried {}: {} load, {} missing, {} unused, {} other shapes\n",
            m.backbone, m.loaded, m.missing, m.unexpected, m.mismatched
        ));
    }
    s
}

/// Writes `src`'s tensors under masklab's names for `backbone` (or the backbone the file fits)
/// into a safetensors file: the model's tensors only (BatchNorm counters and unused tensors are
/// left out), in the file's dtypes. Returns the backbone and the number of tensors written.
pub fn convert(src: &Path, dst: &Path, backbone: Option<&str>) -> Result<(String, usize)> {
    let backbone = match backbone {
        Some(b) => b.to_string(),
        None => {
            let i = inspect(src)?;
            match i.best() {
                Some(m) => m.backbone.clone(),
                None => bail!("{} fits no registered backbone; name one with --backbone", src.display()),
            }
        }
    };
    let c = torchfile::read(src)?;
    let info = backbone_info(&backbone).ok_or_else(|| anyhow!("unknown backbone {backbone:?}; valid: {}", backbone_names().join(", ")))?;
    let (mapped, convention) = to_masklab(&backbone, c.tensors)?;
    let vs = VarStore::new(Device::Cpu);
    let opts = BackboneOptions::new(head_classes(&backbone, &mapped).unwrap_or(1000).max(1));
    let _model = build_backbone(&backbone, &vs.root(), &opts)?;
    let vars = vs.variables();
    let kept: Vec<(String, tch::Tensor)> = mapped.into_iter().filter(|(n, _)| vars.contains_key(n)).collect();
    let fits = |n: &String| kept.iter().any(|(k, t)| k == n && t.size() == vars[n].size());
    let missing: Vec<&String> = vars.keys().filter(|k| !k.starts_with(info.head) && !fits(k)).collect();
    if !missing.is_empty() {
        bail!(
            "{} does not hold backbone {backbone} ({convention} names): {} tensors missing or of another shape, e.g. {}",
            src.display(),
            missing.len(),
            missing.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let meta = serde_json::json!({"backbone": backbone, "source": src.display().to_string(), "source_names": convention.to_string()});
    checkpoint::save(dst, &kept, &meta).with_context(|| format!("cannot write {}", dst.display()))?;
    Ok((backbone, kept.len()))
}
