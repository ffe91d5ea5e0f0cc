//! One configuration type, read from TOML and overridden from the command line as `key=value`.
//!
//! Every key has a default (`configs/default.toml` lists them all with a comment). A key that
//! does not exist is an error naming it and the nearest valid key. Models of a layout can
//! override any `model`, `loss`, `optim`, `schedule` or `augment` key for themselves under
//! `models.<model name>.<section>.<key>`, e.g. `models.age.optim.lr = 1e-4`.
use crate::data::augment::AugmentConfig;
use crate::data::sampler::SamplerConfig;
use crate::data::settings::DataConfig;
use crate::metrics::bootstrap::IntervalConfig;
use crate::model::loss::LossConfig;
use crate::model::settings::{ModelConfig, PER_MODEL_SECTIONS};
use crate::report::settings::ReportConfig;
use crate::tracking::settings::TrackingConfig;
use crate::train::optim::OptimConfig;
use crate::train::schedule::ScheduleConfig;
use crate::run_dir::RunDir;
use crate::train::settings::{RunSettings, TrainConfig};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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
    pub intervals: IntervalConfig,
    pub report: ReportConfig,
    pub tracking: TrackingConfig,
    /// Per-model overrides: `models.<model name>.<section>.<key>`.
    pub models: BTreeMap<String, toml::Table>,
}

/// The five sections a model of a layout may override for itself, as the config checks them
/// (the training code reads them through `train::settings::ModelSections`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSections {
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    pub augment: AugmentConfig,
}


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

    /// The config of the run in `run` (its config.toml); a folder without one is not a run.
    pub fn of_run(run: &RunDir) -> Result<Config> {
        Config::load(Some(&run.config_file()), &[]).with_context(|| format!("{} is not a masklab run", run.path().display()))
    }

    /// The resolved config as a table of sections: what config.toml holds, and what every module
    /// below the config reads its own sections from.
    pub fn table(&self) -> Result<toml::Table> {
        Ok(toml::Table::try_from(self)?)
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// What a training run reads of this config.
    pub fn run_settings(&self) -> Result<RunSettings> {
        RunSettings::from_config(self.table()?)
    }

    /// The keys (`section.key = mine vs theirs`) on which this config and `other` differ,
    /// leaving out those named in `ignore`.
    pub fn differences(&self, other: &Config, ignore: &[&str]) -> Result<Vec<String>> {
        Ok(crate::util::section::differences(&self.table()?, &other.table()?, ignore))
    }

    fn validate(&self) -> Result<()> {
        self.data.bounds()?;
        self.data.preprocess()?;
        self.tracking.validate()?;
        self.intervals.validate()?;
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
    pub fn model_settings(&self, name: &str) -> Result<ModelSections> {
        let base = ModelSections {
            model: self.model.clone(),
            loss: self.loss.clone(),
            optim: self.optim.clone(),
            schedule: self.schedule.clone(),
            augment: self.augment.clone(),
        };
        let Some(over) = self.models.get(name) else { return Ok(base) };
        let mut tree = toml::Table::try_from(&base)?;
        merge(&mut tree, over);
        let settings: ModelSections = from_tree(tree, &format!("models.{name}."), &|_| String::new())?;
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
    fn every_preset_loads_and_the_real_photo_preset_is_the_measured_recipe() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension() == Some("toml".as_ref()) {
                Config::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            }
        }
        // README's real-photo measurements ran cpu-quick with these overrides.
        let overrides = ["augment.synth_mask=1.0", "augment.synth_mask_copies=true", "augment.synth_mask_on_masked=0.8", "augment.tight_crop=0.5", "augment.blur=0.3"].map(String::from);
        let measured = Config::load(Some(&dir.join("cpu-quick.toml")), &overrides).unwrap();
        assert_eq!(Config::load(Some(&dir.join("cpu-real-photos.toml")), &[]).unwrap(), measured);
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
