//! Loads a checkpoint's tensors, already under masklab's names, into a backbone's variables, and
//! says what it did: tensors loaded, missing, unexpected, and shape mismatches. The classifier's
//! last layer is replaced (kept at its fresh initialisation) when its shape differs, e.g. 1000
//! ImageNet classes against the 18 of a `single` model. Anything else missing or mismatched is an
//! error unless `strict` is false (`model.pretrained_strict = false`). Which backbone, and how
//! the names were mapped, is `src/model/import.rs`'s business.
use super::mapping::Convention;
use super::torchfile::Checkpoint;
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

#[derive(Clone, Debug, Serialize)]
pub struct Mismatch {
    pub name: String,
    pub file: Vec<i64>,
    pub model: Vec<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    pub file: PathBuf,
    /// What `model.pretrained` named (the file, or e.g. "torchvision IMAGENET1K_V1 (resnet34-b627a593.pth)").
    pub source: String,
    pub backbone: String,
    pub format: String,
    /// Where the state dict was in the file: "" (top level), "state_dict" or "model".
    pub location: String,
    pub convention: String,
    pub loaded: Vec<String>,
    /// Model tensors the file does not have (kept at their initialisation).
    pub missing: Vec<String>,
    /// File tensors the model does not have (ignored).
    pub unexpected: Vec<String>,
    /// Same name, different shape (kept at their initialisation).
    pub mismatched: Vec<Mismatch>,
    /// True when the classifier's last layer kept its initialisation (missing or another shape).
    pub head_replaced: bool,
}

impl ImportReport {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        let file = self.file.display().to_string();
        let named = if self.source == file { file } else { format!("{} = {file}", self.source) };
        format!(
            "{}: {} ({}, {} names): {} tensors loaded, {} missing, {} unexpected, {} shape mismatches{}",
            self.backbone,
            named,
            self.format,
            self.convention,
            self.loaded.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len(),
            if self.head_replaced { "; classifier head replaced" } else { "" }
        )
    }
}

/// The backbone the tensors go into.
pub struct Target<'a> {
    pub vs: &'a VarStore,
    pub backbone: &'a str,
    /// Name prefix of the classifier's last layer.
    pub head: &'a str,
    /// Name ends of buffers the backbone computes from its configuration rather than learns
    /// (Swin's `relative_position_index`): a file need not hold them (timm does not save them).
    pub computed_buffers: &'a [&'a str],
}

/// Loads `tensors` (`checkpoint`'s, read from `path`, under masklab's names by `convention`) into `target`.
pub fn load_mapped(
    target: &Target,
    path: &Path,
    checkpoint: &Checkpoint,
    tensors: Vec<(String, Tensor)>,
    convention: Convention,
    strict: bool,
) -> Result<ImportReport> {
    let (vs, backbone) = (target.vs, target.backbone);
    let mut vars = vs.variables();
    let mut report = ImportReport {
        file: path.to_path_buf(),
        source: path.display().to_string(),
        backbone: backbone.to_string(),
        format: checkpoint.format.to_string(),
        location: checkpoint.location.clone(),
        convention: convention.to_string(),
        loaded: Vec::new(),
        missing: Vec::new(),
        unexpected: Vec::new(),
        mismatched: Vec::new(),
        head_replaced: false,
    };
    let mut found = std::collections::HashSet::new();
    tch::no_grad(|| {
        for (name, t) in &tensors {
            match vars.get_mut(name) {
                None => report.unexpected.push(name.clone()),
                Some(var) => {
                    found.insert(name.clone());
                    if var.size() != t.size() {
                        report.mismatched.push(Mismatch { name: name.clone(), file: t.size(), model: var.size() });
                    } else {
                        // copy_ converts the dtype (fp16/bf16/fp64 files load into fp32 variables).
                        var.copy_(t);
                        report.loaded.push(name.clone());
                    }
                }
            }
        }
    });
    let computed = |k: &str| target.computed_buffers.iter().any(|suffix| k.ends_with(suffix));
    let mut missing: Vec<String> = vars.keys().filter(|k| !found.contains(*k) && !computed(k)).cloned().collect();
    missing.sort();
    report.missing = missing;
    let is_head = |n: &str| n.starts_with(target.head);
    report.head_replaced =
        report.missing.iter().any(|n| is_head(n)) || report.mismatched.iter().any(|m| is_head(&m.name));
    if strict {
        let missing_body: Vec<&String> = report.missing.iter().filter(|n| !is_head(n)).collect();
        let mismatched_body: Vec<&Mismatch> = report.mismatched.iter().filter(|m| !is_head(&m.name)).collect();
        if !missing_body.is_empty() || !mismatched_body.is_empty() {
            let show = |v: Vec<String>| {
                let n = v.len();
                let mut s = v.into_iter().take(8).collect::<Vec<_>>().join(", ");
                if n > 8 {
                    s.push_str(&format!(", ... ({n} in all)"));
                }
                s
            };
            bail!(
                "{} does not fit backbone {backbone} ({} names): {} tensors missing outside the classifier head [{}], \
                 {} with another shape [{}]; {} file tensors unused [{}]. Check model.backbone, or set \
                 model.pretrained_strict = false to load what fits",
                path.display(),
                convention,
                missing_body.len(),
                show(missing_body.into_iter().cloned().collect()),
                mismatched_body.len(),
                show(mismatched_body.iter().map(|m| format!("{} {:?} vs {:?}", m.name, m.file, m.model)).collect()),
                report.unexpected.len(),
                show(report.unexpected.clone()),
            );
        }
    }
    Ok(report)
}
