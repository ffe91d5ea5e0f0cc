//! Checkpoint files: named tensors in safetensors format with a JSON metadata string in the
//! header, written atomically (temporary file + rename), so one file is one consistent
//! checkpoint and a crash mid-write leaves the previous one intact. A checkpoint never holds a
//! NaN or an infinity: `save` refuses to write one, and `load_finite`, which everything that
//! uses trained weights reads through, refuses to read one (older versions wrote them).
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use crate::metrics::Evaluation;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Header key holding the checkpoint's JSON metadata.
const META_KEY: &str = "masklab";

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => bail!("cannot store tensors of kind {other:?}"),
    })
}

fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => bail!("unsupported tensor dtype {other:?}"),
    })
}

/// Serialises named tensors (any device) and a JSON metadata value into safetensors bytes.
pub fn to_bytes(tensors: &[(String, Tensor)], meta: &serde_json::Value) -> Result<Vec<u8>> {
    let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel).with_context(|| format!("cannot copy tensor {name}"))?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        raw.push((name.clone(), dtype_of(t.kind())?, shape, bytes));
    }
    let views = raw
        .iter()
        .map(|(name, dtype, shape, bytes)| Ok((name.as_str(), TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let metadata = HashMap::from([(META_KEY.to_string(), meta.to_string())]);
    Ok(safetensors::serialize(views, &Some(metadata))?)
}

/// Writes a checkpoint atomically; refuses tensors that hold a NaN or an infinity.
pub fn save(path: &Path, tensors: &[(String, Tensor)], meta: &serde_json::Value) -> Result<()> {
    let bad = non_finite_tensors(tensors);
    if !bad.is_empty() {
        bail!("refusing to write checkpoint {}: {}", path.display(), describe_non_finite(&bad));
    }
    write_atomic(path, &to_bytes(tensors, meta)?).with_context(|| format!("cannot write checkpoint {}", path.display()))
}

/// Reads a checkpoint's tensors (on the CPU, in file order) and its metadata (null when absent).
pub fn load(path: &Path) -> Result<(Vec<(String, Tensor)>, serde_json::Value)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let meta = match header.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
        Some(s) => serde_json::from_str(s).with_context(|| format!("{}: bad masklab metadata", path.display()))?,
        None => serde_json::Value::Null,
    };
    let st = SafeTensors::deserialize(&bytes).with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype())?)
            .with_context(|| format!("{}: cannot read tensor {name}", path.display()))?;
        out.push((name, t));
    }
    Ok((out, meta))
}

/// What to do about a model checkpoint that holds a NaN or an infinity, for [`load_finite`].
pub const DIVERGED_RUN: &str = "the training run diverged before this checkpoint was written (retrain with a lower optim.lr)";

/// [`load`], refusing a file that holds a NaN or an infinity by name, with `remedy` (what to do
/// about it: [`DIVERGED_RUN`] for a model checkpoint).
pub fn load_finite(path: &Path, remedy: &str) -> Result<(Vec<(String, Tensor)>, serde_json::Value)> {
    let (tensors, meta) = load(path)?;
    let bad = non_finite_tensors(&tensors);
    if !bad.is_empty() {
        bail!("{} cannot be used: {}; {remedy}", path.display(), describe_non_finite(&bad));
    }
    Ok((tensors, meta))
}

/// The names of floating-point tensors that hold a NaN or an infinity, with how many such
/// values each holds, read with one host sync for all of them.
pub fn non_finite_tensors(tensors: &[(String, Tensor)]) -> Vec<(String, i64)> {
    let floats: Vec<&(String, Tensor)> = tensors.iter().filter(|(_, t)| t.is_floating_point()).collect();
    if floats.is_empty() {
        return Vec::new();
    }
    let device = floats[0].1.device();
    let counts: Vec<Tensor> = floats.iter().map(|(_, t)| t.isfinite().logical_not().sum(Kind::Int64).to_device(device)).collect();
    let counts = Vec::<i64>::try_from(Tensor::stack(&counts, 0).to_device(Device::Cpu)).unwrap_or_default();
    floats.iter().zip(counts).filter(|(_, n)| *n > 0).map(|((name, _), n)| (name.clone(), n)).collect()
}

/// "2 tensors hold non-finite values (NaN or infinity): a.weight (3 values), b.bias (1 value)", the first few named.
pub fn describe_non_finite(bad: &[(String, i64)]) -> String {
    const NAMED: usize = 4;
    let mut names: Vec<String> = bad.iter().take(NAMED).map(|(n, k)| format!("{n} ({k} value{})", if *k == 1 { "" } else { "s" })).collect();
    if bad.len() > NAMED {
        names.push(format!("and {} more", bad.len() - NAMED));
    }
    format!("{} tensor{} hold{} non-finite values (NaN or infinity): {}", bad.len(), if bad.len() == 1 { "" } else { "s" }, if bad.len() == 1 { "s" } else { "" }, names.join(", "))
}

/// The version of [`CheckpointMeta`] this build writes. Files of this project written before
/// the field existed are version 1 (the same fields).
pub const META_VERSION: u32 = 1;

/// A training checkpoint's metadata (in the safetensors header, and beside it as best.json /
/// last.json): which checkpoint, its epoch and validation scores, the run's resolved config, and
/// for `last` the counters a resumed run continues from. Read back strictly: a missing or an
/// unknown field is an error naming the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    #[serde(default = "first_version")]
    pub version: u32,
    pub kind: CheckpointKind,
    pub epoch: usize,
    /// The task layout (`best` checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// The epoch's validation evaluation (null without a validation split).
    pub metrics: Option<Evaluation>,
    /// The run's resolved config, as its config.toml holds it.
    pub config: toml::Table,
    /// Where training stands (`last` checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TrainState>,
    /// The ranks of a data-parallel run and their weights' fingerprints (`last` checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaFingerprints>,
}

fn first_version() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// The weights of the best epoch so far.
    Best,
    /// The weights, optimiser and EMA state after the last finished epoch.
    Last,
}

/// The counters a resumed run continues from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// The last finished epoch and the optimiser steps done by then.
    pub epoch: usize,
    pub step: usize,
    /// The best monitored score so far (the lowest finite value before the first validation)
    /// and its epoch.
    pub best: f64,
    pub best_epoch: usize,
    /// Epochs since the last new best (early stopping).
    pub bad_epochs: usize,
    /// The fp16 loss scale.
    pub loss_scale: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaFingerprints {
    pub world_size: usize,
    pub weight_fingerprints: Vec<f64>,
}

impl CheckpointMeta {
    /// Reads metadata as JSON, strictly; `source` names the file in errors.
    pub fn from_json(value: serde_json::Value, source: &Path) -> Result<CheckpointMeta> {
        // An absent `metrics` would read as null: it must be there (null or scores).
        if value.get("metrics").is_none() {
            bail!("{}: checkpoint metadata has no `metrics` field", source.display());
        }
        let meta: CheckpointMeta = serde_path_to_error::deserialize(value)
            .map_err(|e| anyhow::anyhow!("{}: bad checkpoint metadata at `{}`: {}", source.display(), e.path(), e.inner()))?;
        if meta.version > META_VERSION {
            bail!("{}: checkpoint metadata version {} is newer than this masklab reads ({META_VERSION})", source.display(), meta.version);
        }
        match meta.kind {
            CheckpointKind::Last if meta.state.is_none() => bail!("{}: a last checkpoint without its training state (`state`)", source.display()),
            CheckpointKind::Best if meta.layout.is_none() => bail!("{}: a best checkpoint without its `layout`", source.display()),
            _ => Ok(meta),
        }
    }

    /// The metadata written beside a checkpoint (best.json, last.json).
    pub fn read_side_file(path: &Path) -> Result<CheckpointMeta> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
        CheckpointMeta::from_json(value, path)
    }
}

/// Writes a training checkpoint (atomically; refusing NaN and infinity) and its metadata beside it.
pub fn save_run_checkpoint(path: &Path, side_file: &Path, tensors: &[(String, Tensor)], meta: &CheckpointMeta) -> Result<()> {
    let value = serde_json::to_value(meta)?;
    save(path, tensors, &value)?;
    write_atomic(side_file, serde_json::to_string_pretty(&value)?.as_bytes())
}

/// A training checkpoint's tensors (refusing NaN and infinity) and its metadata, read strictly.
pub fn load_run_checkpoint(path: &Path) -> Result<(Vec<(String, Tensor)>, CheckpointMeta)> {
    let (tensors, meta) = load_finite(path, DIVERGED_RUN)?;
    Ok((tensors, CheckpointMeta::from_json(meta, path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_keeps_names_values_kinds_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 4.0]).view([2, 2]);
        let b = Tensor::from_slice(&[7i64]);
        let c = Tensor::from_slice(&[0.5f32, 0.25]).to_kind(Kind::BFloat16);
        let meta = serde_json::json!({"epoch": 3, "f1": 0.5});
        save(&path, &[("m.a".into(), a.shallow_clone()), ("step".into(), b), ("h".into(), c)], &meta).unwrap();
        let (tensors, m) = load(&path).unwrap();
        assert_eq!(m, meta);
        let get = |n: &str| tensors.iter().find(|(k, _)| k == n).unwrap().1.shallow_clone();
        assert_eq!(get("m.a").size(), vec![2, 2]);
        assert!(get("m.a").equal(&a));
        assert_eq!(get("step").int64_value(&[0]), 7);
        assert_eq!(get("h").kind(), Kind::BFloat16);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("bad.safetensors"), "{err}");
    }

    #[test]
    fn non_finite_tensors_are_named_with_their_counts() {
        let t = vec![
            ("a".to_string(), Tensor::from_slice(&[1.0f32, f32::NAN, f32::INFINITY])),
            ("b".to_string(), Tensor::from_slice(&[1.0f64, 2.0])),
            ("steps".to_string(), Tensor::from_slice(&[3i64])),
            ("c".to_string(), Tensor::from_slice(&[f32::NEG_INFINITY]).to_kind(Kind::Half)),
        ];
        assert_eq!(non_finite_tensors(&t), vec![("a".to_string(), 2), ("c".to_string(), 1)]);
        assert!(non_finite_tensors(&t[1..3]).is_empty());
    }

    #[test]
    fn non_finite_checkpoints_are_neither_written_nor_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.safetensors");
        let nan = vec![("w".to_string(), Tensor::from_slice(&[1.0f32, f32::NAN]))];
        let err = format!("{:#}", save(&path, &nan, &serde_json::Value::Null).unwrap_err());
        assert!(err.contains("best.safetensors") && err.contains("w (1 value)"), "{err}");
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
        // Written by an older version: readable with `load`, refused by `load_finite`, by name.
        write_atomic(&path, &to_bytes(&nan, &serde_json::Value::Null).unwrap()).unwrap();
        assert!(load(&path).is_ok());
        let err = format!("{:#}", load_finite(&path, DIVERGED_RUN).unwrap_err());
        assert!(err.contains("best.safetensors") && err.contains("diverged"), "{err}");
    }

    /// best.json and last.json as this project wrote them before the metadata had a type
    /// (the demo run of scripts/demo.sh, 2026-12-05).
    fn fixture(kind: &str) -> (std::path::PathBuf, serde_json::Value) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/checkpoint_meta_before_version_{kind}.json"));
        let value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        (path, value)
    }

    #[test]
    fn metadata_written_before_its_type_still_loads_from_side_files_and_checkpoints() {
        let (path, _) = fixture("last");
        let last = CheckpointMeta::read_side_file(&path).unwrap();
        assert_eq!((last.kind, last.version, last.epoch), (CheckpointKind::Last, 1, 8));
        let state = last.state.unwrap();
        assert_eq!((state.epoch, state.step, state.best_epoch, state.bad_epochs), (8, 80, 8, 0));
        assert!(last.metrics.is_some() && last.config.contains_key("train"));
        let (path, value) = fixture("best");
        let best = CheckpointMeta::read_side_file(&path).unwrap();
        assert_eq!((best.kind, best.layout.as_deref(), best.epoch), (CheckpointKind::Best, Some("single"), 8));
        // The same metadata in a checkpoint's header, and written back by today's type.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("best.safetensors");
        save(&file, &[("m.w".into(), Tensor::from_slice(&[1.0f32]))], &value).unwrap();
        let (tensors, meta) = load_run_checkpoint(&file).unwrap();
        assert_eq!((tensors.len(), meta.epoch), (1, 8));
        save_run_checkpoint(&file, &dir.path().join("best.json"), &tensors, &meta).unwrap();
        let again = CheckpointMeta::read_side_file(&dir.path().join("best.json")).unwrap();
        assert_eq!((again.version, again.epoch, again.layout), (META_VERSION, 8, Some("single".to_string())));
    }

    #[test]
    fn a_missing_or_foreign_field_is_an_error_naming_the_file_never_a_zero() {
        let (path, value) = fixture("last");
        for (change, expected) in [("epoch", "epoch"), ("state", "state"), ("metrics", "metrics"), ("config", "config")] {
            let mut v = value.clone();
            v.as_object_mut().unwrap().remove(change);
            let err = format!("{:#}", CheckpointMeta::from_json(v, &path).unwrap_err());
            assert!(err.contains("checkpoint_meta_before_version_last.json") && err.contains(expected), "{change}: {err}");
        }
        let mut v = value.clone();
        v["epochs"] = serde_json::json!(3);
        let err = format!("{:#}", CheckpointMeta::from_json(v, &path).unwrap_err());
        assert!(err.contains("epochs") && err.contains("last.json"), "{err}");
        let mut v = value.clone();
        v["state"]["step"] = serde_json::json!("eighty");
        let err = format!("{:#}", CheckpointMeta::from_json(v, &path).unwrap_err());
        assert!(err.contains("state.step"), "{err}");
        let mut v = value;
        v["version"] = serde_json::json!(META_VERSION + 1);
        assert!(format!("{:#}", CheckpointMeta::from_json(v, &path).unwrap_err()).contains("newer"));
    }
}
