//! `masklab export`: a run's trained weights under torchvision's names, so that
//! `torchvision.models.<arch>(num_classes=N).load_state_dict(safetensors.torch.load_file(F))`
//! works with strict loading. masklab's tensors already carry torchvision's names; export adds
//! the BatchNorm counters (`num_batches_tracked`) that tch does not keep.
//!
//! One file per model of the layout, with the head of that model (N above):
//! `single` 18 (the class, `mask*6 + gender*3 + age`), `multi` 8 (mask 3 | gender 2 | age 3),
//! `two` 6 (`mask*2 + gender`) and 3 (age), `three` 3 (mask), 2 (gender), 3 (age).
use super::registry::find;
use super::task_layout::Layout;
use super::trained::load_trained;
use crate::run_dir::{checkpoint, RunDir, BEST, LAST};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Export formats (`masklab export --format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// torchvision's state-dict names in a safetensors file.
    Torchvision,
}

/// One exported file.
pub struct Exported {
    pub model: String,
    pub backbone: String,
    pub num_classes: i64,
    pub path: PathBuf,
}

/// Where a model's file goes: `out` itself for one-model layouts, else `out` with the model's
/// name before the extension (`model.safetensors` -> `model.age.safetensors`).
pub fn output_path(out: &Path, layout: Layout, model: &str) -> PathBuf {
    if layout.models().len() == 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = out.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "safetensors".into());
    out.with_file_name(format!("{stem}.{model}.{ext}"))
}

/// A state dict in torchvision's form: masklab's tensors plus one `num_batches_tracked` per
/// BatchNorm (int64 scalar 0: PyTorch reads it only when a BatchNorm's momentum is None, which
/// no torchvision backbone uses).
pub fn torchvision_state_dict(variables: impl IntoIterator<Item = (String, Tensor)>) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for (name, t) in variables {
        if let Some(prefix) = name.strip_suffix(".running_mean") {
            out.push((format!("{prefix}.num_batches_tracked"), Tensor::from(0i64).to_kind(Kind::Int64)));
        }
        out.push((name, t.to_device(Device::Cpu)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Exports the best checkpoint of `run` (the last when the run kept no best).
pub fn export(run: &Path, out: &Path, format: ExportFormat) -> Result<Vec<Exported>> {
    let ExportFormat::Torchvision = format;
    let run = RunDir::new(run);
    let which = if run.checkpoint(BEST).exists() { BEST } else { LAST };
    let trained = load_trained(&run, which, Device::Cpu).with_context(|| format!("run {}", run.path().display()))?;
    let (layout, nets) = (trained.layout, trained.nets);
    let mut written = Vec::new();
    for (net, (name, num_classes)) in nets.iter().zip(layout.models()) {
        let backbone = net.settings.model.backbone.clone();
        let tensors = torchvision_state_dict(net.vs.variables());
        let torchvision_call = if find(&backbone).is_some_and(|b| !b.family().in_torchvision) {
            serde_json::Value::Null // e.g. EfficientNet-Lite
        } else {
            serde_json::Value::String(format!("torchvision.models.{backbone}(num_classes={num_classes})"))
        };
        let meta = serde_json::json!({
            "format": "torchvision", "backbone": backbone, "num_classes": num_classes,
            "layout": layout.to_string(), "model": name, "run": run.path().display().to_string(),
            "checkpoint": which, "torchvision": torchvision_call,
        });
        let path = output_path(out, layout, name);
        checkpoint::save(&path, &tensors, &meta)?;
        written.push(Exported { model: name.to_string(), backbone, num_classes, path });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_per_layout() {
        let out = Path::new("dir/model.safetensors");
        assert_eq!(output_path(out, Layout::Single, "class18"), out);
        assert_eq!(output_path(out, Layout::Two, "age"), Path::new("dir/model.age.safetensors"));
        assert_eq!(output_path(Path::new("m"), Layout::Three, "mask"), Path::new("m.mask.safetensors"));
    }

    #[test]
    fn batch_norm_counters_are_added() {
        let t = || Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let sd = torchvision_state_dict(vec![("bn.running_mean".to_string(), t()), ("bn.weight".to_string(), t()), ("fc.bias".to_string(), t())]);
        let names: Vec<&str> = sd.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["bn.num_batches_tracked", "bn.running_mean", "bn.weight", "fc.bias"]);
        assert_eq!(sd[0].1.kind(), Kind::Int64);
        assert_eq!(sd[0].1.dim(), 0);
    }
}
