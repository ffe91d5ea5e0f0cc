//! The search space: which config keys a sweep varies and over what values.
//!
//! In the sweep file, `[space]` maps dotted config keys to a domain, either quoted
//! (`"optim.lr" = { ... }`) or as TOML's dotted keys (`optim.lr = { ... }`, or `[space.optim]`):
//!
//! ```toml
//! [space]
//! "optim.lr" = { float = [1e-5, 1e-2], log = true }   # log-uniform
//! "augment.mixup" = { float = [0.0, 0.4] }            # uniform
//! "train.epochs" = { int = [8, 30] }                  # integers, both ends included
//! "model.arch" = { choices = ["efficientnet_b0", "resnet50"] }
//! ```
use crate::config::Config;
use anyhow::{anyhow, bail, Context, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One parameter's value (a TOML scalar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// A trial's parameters, by config key.
pub type Params = BTreeMap<String, ParamValue>;

impl ParamValue {
    fn from_toml(value: &toml::Value) -> Option<ParamValue> {
        match value {
            toml::Value::Boolean(b) => Some(ParamValue::Bool(*b)),
            toml::Value::Integer(i) => Some(ParamValue::Int(*i)),
            toml::Value::Float(f) => Some(ParamValue::Float(*f)),
            toml::Value::String(s) => Some(ParamValue::Text(s.clone())),
            _ => None,
        }
    }

    pub fn to_toml(&self) -> toml::Value {
        match self {
            ParamValue::Bool(b) => toml::Value::Boolean(*b),
            ParamValue::Int(i) => toml::Value::Integer(*i),
            ParamValue::Float(f) => toml::Value::Float(*f),
            ParamValue::Text(s) => toml::Value::String(s.clone()),
        }
    }

    /// `key=value` as the config's command-line overrides take it (strings quoted).
    pub fn as_override(&self, key: &str) -> String {
        format!("{key}={}", self.to_toml())
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

/// Where one parameter's values lie.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// One of these values, each as likely.
    Choices(Vec<ParamValue>),
    /// An integer in `low..=high`; with `log`, log-uniform (`low` at least 1).
    Int { low: i64, high: i64, log: bool },
    /// A number in `low..=high`; with `log`, log-uniform (`low` above 0).
    Float { low: f64, high: f64, log: bool },
}

impl Domain {
    pub fn contains(&self, value: &ParamValue) -> bool {
        match (self, value) {
            (Domain::Choices(choices), v) => choices.contains(v),
            (Domain::Int { low, high, .. }, ParamValue::Int(i)) => (low..=high).contains(&i),
            (Domain::Float { low, high, .. }, ParamValue::Float(x)) => (*low..=*high).contains(x),
            _ => false,
        }
    }

    /// A value drawn uniformly (log-uniformly with `log`): the random sampler, and TPE's start.
    pub fn sample_uniform<R: Rng>(&self, rng: &mut R) -> ParamValue {
        match self {
            Domain::Choices(choices) => choices[rng.gen_range(0..choices.len())].clone(),
            Domain::Int { low, high, log: false } => ParamValue::Int(rng.gen_range(*low..=*high)),
            Domain::Int { low, high, log: true } => {
                // Each integer owns [i - 0.5, i + 0.5) on the log scale, as Optuna's log integers.
                let x = rng.gen_range((*low as f64 - 0.5).ln()..(*high as f64 + 0.5).ln());
                ParamValue::Int((x.exp().round() as i64).clamp(*low, *high))
            }
            Domain::Float { low, high, log: false } => ParamValue::Float(rng.gen_range(*low..=*high)),
            Domain::Float { low, high, log: true } => ParamValue::Float(rng.gen_range(low.ln()..=high.ln()).exp().clamp(*low, *high)),
        }
    }

    /// Reads `{ choices = [...] }`, `{ int = [lo, hi], log = bool }` or `{ float = [lo, hi], log = bool }`;
    /// errors name `space.<key>`.
    fn from_toml(key: &str, table: &toml::Table) -> Result<Domain> {
        let at = format!("space.{key}");
        for field in table.keys() {
            if !["choices", "int", "float", "log"].contains(&field.as_str()) {
                bail!("{at}: unknown field `{field}` (a parameter has `choices = [...]`, `int = [low, high]` or `float = [low, high]`, and `log = true` for a log scale)");
            }
        }
        let kinds: Vec<&str> = ["choices", "int", "float"].into_iter().filter(|k| table.contains_key(*k)).collect();
        let log = match table.get("log") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => bail!("{at}.log: expected true or false, got {other}"),
        };
        let kind = match kinds.as_slice() {
            [one] => *one,
            [] => bail!("{at}: no domain: give `choices = [...]`, `int = [low, high]` or `float = [low, high]`"),
            many => bail!("{at}: give one domain, not {}", many.join(" and ")),
        };
        let value = &table[kind];
        let pair = |what: &str| -> Result<(toml::Value, toml::Value)> {
            match value.as_array().map(Vec::as_slice) {
                Some([low, high]) => Ok((low.clone(), high.clone())),
                _ => bail!("{at}.{kind}: expected [low, high] of {what}, got {value}"),
            }
        };
        let domain = match kind {
            "choices" => {
                if log {
                    bail!("{at}: `log` applies to int and float ranges, not to choices");
                }
                let items = value.as_array().ok_or_else(|| anyhow!("{at}.choices: expected a list of values, got {value}"))?;
                if items.is_empty() {
                    bail!("{at}.choices: the list is empty");
                }
                let mut choices = Vec::new();
                for item in items {
                    let v = ParamValue::from_toml(item).ok_or_else(|| anyhow!("{at}.choices: {item} is not a string, number or boolean"))?;
                    if choices.contains(&v) {
                        bail!("{at}.choices: {item} is listed twice");
                    }
                    choices.push(v);
                }
                Domain::Choices(choices)
            }
            "int" => {
                let (low, high) = pair("integers")?;
                let (Some(low), Some(high)) = (low.as_integer(), high.as_integer()) else {
                    bail!("{at}.int: expected [low, high] of integers, got {value}");
                };
                if low >= high {
                    bail!("{at}.int: low {low} must be below high {high} (one value: use choices)");
                }
                if log && low < 1 {
                    bail!("{at}.int: a log scale needs low of at least 1, got {low}");
                }
                Domain::Int { low, high, log }
            }
            _ => {
                let (low, high) = pair("numbers")?;
                let number = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
                let (Some(low), Some(high)) = (number(&low), number(&high)) else {
                    bail!("{at}.float: expected [low, high] of numbers, got {value}");
                };
                if !(low.is_finite() && high.is_finite()) || low >= high {
                    bail!("{at}.float: low {low} must be below high {high}, both finite");
                }
                if log && low <= 0.0 {
                    bail!("{at}.float: a log scale needs low above 0, got {low}");
                }
                Domain::Float { low, high, log }
            }
        };
        Ok(domain)
    }
}

/// The parameters a sweep varies, by config key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SearchSpace {
    pub params: BTreeMap<String, Domain>,
}

impl SearchSpace {
    /// Reads the `[space]` table: a table holding `choices`, `int` or `float` is a parameter;
    /// any other table is a level of a dotted key.
    pub fn from_toml(space: &toml::Table) -> Result<SearchSpace> {
        let mut params = BTreeMap::new();
        collect(space, "", &mut params)?;
        if params.is_empty() {
            bail!("space: no parameters (e.g. \"optim.lr\" = {{ float = [1e-5, 1e-2], log = true }})");
        }
        Ok(SearchSpace { params })
    }

    /// Whether every key is a config key and every choice and both ends of every range a value
    /// it takes, each on top of the base config `base` (the defaults when None).
    pub fn check_against_config(&self, base: Option<&Path>) -> Result<()> {
        for (key, domain) in &self.params {
            let values = match domain {
                Domain::Choices(choices) => choices.clone(),
                Domain::Int { low, high, .. } => vec![ParamValue::Int(*low), ParamValue::Int(*high)],
                Domain::Float { low, high, .. } => vec![ParamValue::Float(*low), ParamValue::Float(*high)],
            };
            for value in values {
                Config::load(base, &[value.as_override(key)]).with_context(|| format!("space.{key} = {value} is not a value of the config"))?;
            }
        }
        Ok(())
    }

    /// Whether `params` gives every parameter a value of its domain, and nothing else.
    pub fn admits(&self, params: &Params) -> bool {
        params.len() == self.params.len() && self.params.iter().all(|(k, d)| params.get(k).is_some_and(|v| d.contains(v)))
    }
}

fn collect(table: &toml::Table, prefix: &str, out: &mut BTreeMap<String, Domain>) -> Result<()> {
    for (name, value) in table {
        let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        let toml::Value::Table(inner) = value else {
            bail!("space.{key}: expected a domain such as {{ float = [0.0, 1.0] }}, got {value}");
        };
        if ["choices", "int", "float", "log"].iter().any(|k| inner.contains_key(*k)) {
            out.insert(key.clone(), Domain::from_toml(&key, inner)?);
        } else if inner.is_empty() {
            bail!("space.{key}: no domain: give `choices = [...]`, `int = [low, high]` or `float = [low, high]`");
        } else {
            collect(inner, &key, out)?;
        }
    }
    Ok(())
}
