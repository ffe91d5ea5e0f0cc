//! The sweep file: what to vary (`[space]`, see `space`), how much to spend (`[budget]`), what
//! to optimise (`[objective]`), how to choose each trial's parameters (`[sampler]`) and when to
//! stop a poor trial early (`[pruner]`).
//!
//! ```toml
//! [space]
//! "optim.lr" = { float = [1e-5, 1e-2], log = true }
//!
//! [budget]
//! trials = 40          # trials started, failed and pruned ones included
//! seconds = 36000      # no trial starts after this long (per sweep process)
//!
//! [objective]
//! metric = "f1"        # an epoch's validation score: f1, f1_mask, f1_gender, f1_age, accuracy, loss
//! direction = "maximize"   # may be left out: scores are maximised, the loss minimised
//!
//! [sampler]
//! kind = "tpe"         # or "random"
//! seed = 0
//! startup_trials = 10  # random trials before TPE takes over (Optuna's n_startup_trials)
//! candidates = 24      # draws from the good trials' density that TPE ranks (Optuna's n_ei_candidates)
//!
//! [pruner]
//! kind = "asha"        # or "none"
//! min_epochs = 1       # the first rung (Optuna's min_resource, Ray's grace_period)
//! reduction_factor = 4 # rungs at min_epochs x 4^k; the top 1/4 at a rung go on
//! ```
use super::space::SearchSpace;
use crate::train::settings::Monitor;
use crate::run_dir::metrics_log::ValScores;
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A whole sweep file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    pub space: SearchSpace,
    pub budget: Budget,
    pub objective: Objective,
    pub sampler: SamplerSpec,
    pub pruner: PrunerSpec,
}

/// How much a sweep may spend: at least one of the two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Trials started in all, whatever became of them.
    pub trials: Option<usize>,
    /// Seconds after which a sweep process starts no more trials (each process counts from its
    /// own start, as Optuna's timeout: a resumed sweep gets this long again).
    pub seconds: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Maximize,
    Minimize,
}

impl Direction {
    /// `value` turned so that higher is better.
    pub fn oriented(self, value: f64) -> f64 {
        match self {
            Direction::Maximize => value,
            Direction::Minimize => -value,
        }
    }
}

/// What a sweep optimises: a validation score of each epoch (the trial's value is its best epoch's).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub metric: Monitor,
    pub direction: Direction,
}

impl Objective {
    /// The objective's value in an epoch's validation scores.
    pub fn value_of(&self, scores: &ValScores) -> f64 {
        match self.metric {
            Monitor::F1 => scores.f1,
            Monitor::F1Mask => scores.f1_mask,
            Monitor::F1Gender => scores.f1_gender,
            Monitor::F1Age => scores.f1_age,
            Monitor::Accuracy => scores.accuracy,
            Monitor::Loss => scores.loss,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    Random,
    Tpe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerSpec {
    pub kind: SamplerKind,
    pub seed: u64,
    /// TPE: trials drawn at random (until this many are complete or pruned) before TPE takes over.
    pub startup_trials: usize,
    /// TPE: candidates drawn from the good trials' density, of which the one most likelier under
    /// the good than under the poor trials is taken.
    pub candidates: usize,
}

impl Default for SamplerSpec {
    /// Optuna's TPESampler defaults.
    fn default() -> Self {
        SamplerSpec { kind: SamplerKind::Tpe, seed: 0, startup_trials: 10, candidates: 24 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrunerKind {
    /// Asynchronous successive halving.
    Asha,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrunerSpec {
    pub kind: PrunerKind,
    /// The first rung's epoch.
    pub min_epochs: usize,
    /// Rungs at `min_epochs * reduction_factor^k`; the top `1 / reduction_factor` go on.
    pub reduction_factor: usize,
}

impl Default for PrunerSpec {
    /// Optuna's SuccessiveHalvingPruner defaults (reduction factor 4, min_early_stopping_rate 0),
    /// with the first rung at epoch 1 (Ray Tune's ASHA grace period).
    fn default() -> Self {
        PrunerSpec { kind: PrunerKind::Asha, min_epochs: 1, reduction_factor: 4 }
    }
}

/// The `[objective]` table as written: the direction may be left out.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ObjectiveText {
    metric: Monitor,
    direction: Option<Direction>,
}

const SECTIONS: [&str; 5] = ["space", "budget", "objective", "sampler", "pruner"];

impl SweepSpec {
    pub fn load(path: &Path) -> Result<SweepSpec> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the sweep file {}", path.display()))?;
        SweepSpec::parse(&text).with_context(|| format!("sweep file {}", path.display()))
    }

    /// Reads a sweep file's text; errors name the key (TOML syntax errors, the line).
    pub fn parse(text: &str) -> Result<SweepSpec> {
        let table: toml::Table = text.parse().map_err(|e| anyhow!("{e}"))?;
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                bail!("unknown section [{key}] (a sweep file has {})", SECTIONS.map(|s| format!("[{s}]")).join(", "));
            }
        }
        let space = match table.get("space") {
            Some(toml::Value::Table(space)) => SearchSpace::from_toml(space)?,
            Some(other) => bail!("space: expected a table of parameters, got {other}"),
            None => bail!("no [space]: name the config keys to vary, e.g. \"optim.lr\" = {{ float = [1e-5, 1e-2], log = true }}"),
        };
        let budget: Budget = section(&table, "budget")?;
        if budget.trials.is_none() && budget.seconds.is_none() {
            bail!("budget: give trials, seconds or both (e.g. [budget] trials = 40)");
        }
        if budget.trials == Some(0) {
            bail!("budget.trials: must be at least 1");
        }
        if let Some(s) = budget.seconds {
            if !(s.is_finite() && s > 0.0) {
                bail!("budget.seconds: must be a positive number of seconds, got {s}");
            }
        }
        let objective: ObjectiveText = section(&table, "objective")?;
        let natural = if objective.metric == Monitor::Loss { Direction::Minimize } else { Direction::Maximize };
        if let Some(direction) = objective.direction {
            if direction != natural {
                bail!(
                    "objective.direction: {} is {}d, not {}d",
                    objective.metric,
                    serde_json::to_value(natural)?.as_str().unwrap_or_default(),
                    serde_json::to_value(direction)?.as_str().unwrap_or_default()
                );
            }
        }
        let sampler: SamplerSpec = section(&table, "sampler")?;
        if sampler.candidates == 0 {
            bail!("sampler.candidates: must be at least 1 (Optuna's default is 24)");
        }
        let pruner: PrunerSpec = section(&table, "pruner")?;
        if pruner.min_epochs == 0 {
            bail!("pruner.min_epochs: must be at least 1 (epochs count from 1)");
        }
        if pruner.reduction_factor < 2 {
            bail!("pruner.reduction_factor: must be at least 2, got {}", pruner.reduction_factor);
        }
        Ok(SweepSpec { space, budget, objective: Objective { metric: objective.metric, direction: natural }, sampler, pruner })
    }

    /// Whether a study started with `other` can go on under this spec: everything but the
    /// budget must match (raising the budget continues a sweep). Names what differs.
    pub fn conflicts_with(&self, other: &SweepSpec) -> Option<String> {
        let mut differs = Vec::new();
        if self.space != other.space {
            differs.push("[space]");
        }
        if self.objective != other.objective {
            differs.push("[objective]");
        }
        if self.sampler != other.sampler {
            differs.push("[sampler]");
        }
        if self.pruner != other.pruner {
            differs.push("[pruner]");
        }
        (!differs.is_empty()).then(|| differs.join(", "))
    }
}

/// A section read by serde, its errors naming `section.key`; absent: the defaults.
fn section<T: DeserializeOwned + Default>(table: &toml::Table, name: &str) -> Result<T> {
    match table.get(name) {
        None => Ok(T::default()),
        Some(value) => serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." || path.is_empty() { name.to_string() } else { format!("{name}.{path}") };
            anyhow!("{at}: {}", e.into_inner())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::space::{Domain, ParamValue};

    const FULL: &str = r#"
[space]
"optim.lr" = { float = [1e-5, 1e-2], log = true }
train.epochs = { int = [4, 12] }
[space.model]
arch = { choices = ["efficientnet_b0", "resnet18"] }

[budget]
trials = 30

[objective]
metric = "loss"

[sampler]
kind = "random"
seed = 5

[pruner]
reduction_factor = 3
"#;

    fn error(text: &str) -> String {
        format!("{:#}", SweepSpec::parse(text).unwrap_err())
    }

    #[test]
    fn a_full_sweep_file_reads_with_dotted_keys_written_any_way() {
        let spec = SweepSpec::parse(FULL).unwrap();
        let keys: Vec<&str> = spec.space.params.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["model.arch", "optim.lr", "train.epochs"]);
        assert_eq!(spec.space.params["optim.lr"], Domain::Float { low: 1e-5, high: 1e-2, log: true });
        assert_eq!(spec.space.params["train.epochs"], Domain::Int { low: 4, high: 12, log: false });
        assert_eq!(spec.space.params["model.arch"], Domain::Choices(vec![ParamValue::Text("efficientnet_b0".into()), ParamValue::Text("resnet18".into())]));
        assert_eq!(spec.budget, Budget { trials: Some(30), seconds: None });
        assert_eq!(spec.objective, Objective { metric: Monitor::Loss, direction: Direction::Minimize });
        assert_eq!(spec.sampler, SamplerSpec { kind: SamplerKind::Random, seed: 5, ..SamplerSpec::default() });
        assert_eq!(spec.pruner, PrunerSpec { kind: PrunerKind::Asha, min_epochs: 1, reduction_factor: 3 });
        // Defaults: TPE and ASHA as Optuna's, F1 maximised.
        let minimal = SweepSpec::parse("[space]\n\"optim.lr\" = { float = [0.001, 0.01] }\n[budget]\nseconds = 60\n").unwrap();
        assert_eq!(minimal.sampler, SamplerSpec { kind: SamplerKind::Tpe, seed: 0, startup_trials: 10, candidates: 24 });
        assert_eq!(minimal.pruner, PrunerSpec { kind: PrunerKind::Asha, min_epochs: 1, reduction_factor: 4 });
        assert_eq!(minimal.objective, Objective { metric: Monitor::F1, direction: Direction::Maximize });
        // The spec survives the study file's JSON.
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<SweepSpec>(&json).unwrap(), spec);
        assert_eq!(spec.conflicts_with(&SweepSpec { budget: Budget { trials: Some(99), seconds: Some(5.0) }, ..spec.clone() }), None);
        assert_eq!(spec.conflicts_with(&minimal).as_deref(), Some("[space], [objective], [sampler], [pruner]"));
    }

    #[test]
    fn mistakes_are_errors_naming_the_key() {
        let budget = "\n[budget]\ntrials = 5\n";
        for (space, expected) in [
            ("x.a = { float = [0.0, 1.0], step = 0.1 }", "space.x.a: unknown field `step`"),
            ("x.a = { log = true }", "space.x.a: no domain"),
            ("x.a = {}", "space.x.a: no domain"),
            ("x.a = 3", "space.x.a: expected a domain"),
            ("x.a = { int = [1, 5], float = [1.0, 2.0] }", "space.x.a: give one domain, not int and float"),
            ("x.a = { float = [0.0, 1.0], log = true }", "space.x.a.float: a log scale needs low above 0"),
            ("x.a = { int = [0, 8], log = true }", "space.x.a.int: a log scale needs low of at least 1"),
            ("x.a = { int = [5, 5] }", "space.x.a.int: low 5 must be below high 5"),
            ("x.a = { int = [1.5, 5] }", "space.x.a.int: expected [low, high] of integers"),
            ("x.a = { float = [1.0] }", "space.x.a.float: expected [low, high] of numbers"),
            ("x.a = { float = [2.0, 1.0] }", "space.x.a.float: low 2 must be below high 1"),
            ("x.a = { float = [0.1, 1.0], log = 1 }", "space.x.a.log: expected true or false"),
            ("x.a = { choices = [] }", "space.x.a.choices: the list is empty"),
            ("x.a = { choices = [1, 2, 1] }", "space.x.a.choices: 1 is listed twice"),
            ("x.a = { choices = [[1, 2]] }", "space.x.a.choices: [1, 2] is not a string, number or boolean"),
            ("x.a = { choices = [1], log = true }", "space.x.a: `log` applies to int and float ranges"),
        ] {
            let err = error(&format!("[space]\n{space}{budget}"));
            assert!(err.contains(expected), "{space}: {err}");
        }
        let space = "[space]\n\"a.b\" = { float = [0.0, 1.0] }\n";
        for (rest, expected) in [
            ("", "budget: give trials, seconds or both"),
            ("[budget]\ntrials = 0\n", "budget.trials: must be at least 1"),
            ("[budget]\nseconds = -1.0\n", "budget.seconds: must be a positive number"),
            ("[budget]\ntrialz = 3\n", "budget.trialz: unknown field `trialz`"),
            ("[budget]\ntrials = \"many\"\n", "budget.trials: invalid type"),
            ("[budget]\ntrials = 3\n[objective]\nmetric = \"f2\"\n", "objective.metric: unknown variant `f2`"),
            ("[budget]\ntrials = 3\n[objective]\nmetric = \"loss\"\ndirection = \"maximize\"\n", "objective.direction: loss is minimized, not maximized"),
            ("[budget]\ntrials = 3\n[sampler]\nkind = \"grid\"\n", "sampler.kind: unknown variant `grid`"),
            ("[budget]\ntrials = 3\n[sampler]\ncandidates = 0\n", "sampler.candidates: must be at least 1"),
            ("[budget]\ntrials = 3\n[pruner]\nreduction_factor = 1\n", "pruner.reduction_factor: must be at least 2"),
            ("[budget]\ntrials = 3\n[pruner]\nmin_epochs = 0\n", "pruner.min_epochs: must be at least 1"),
            ("[budget]\ntrials = 3\n[prunner]\n", "unknown section [prunner]"),
        ] {
            let err = error(&format!("{space}{rest}"));
            assert!(err.contains(expected), "{rest}: {err}");
        }
        assert!(error("[budget]\ntrials = 3\n").contains("no [space]"));
        assert!(error("[space]\n[budget]\ntrials = 3\n").contains("space: no parameters"));
        // TOML syntax errors give the line.
        assert!(error("[space]\nx.a = { float = [0.0, 1.0] \n").contains("line 2"), "{}", error("[space]\nx.a = { float = [0.0, 1.0] \n"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        std::fs::write(&path, "[space]\n").unwrap();
        let err = format!("{:#}", SweepSpec::load(&path).unwrap_err());
        assert!(err.contains("sweep.toml") && err.contains("no parameters"), "{err}");
    }

    #[test]
    fn keys_and_values_are_checked_against_the_config() {
        let ok = SweepSpec::parse("[space]\n\"optim.lr\" = { float = [1e-5, 1e-2], log = true }\n\"train.epochs\" = { int = [1, 9] }\n[budget]\ntrials = 3\n").unwrap();
        ok.space.check_against_config(None).unwrap();
        let typo = SweepSpec::parse("[space]\n\"optim.lrr\" = { float = [1e-5, 1e-2] }\n[budget]\ntrials = 3\n").unwrap();
        let err = format!("{:#}", typo.space.check_against_config(None).unwrap_err());
        assert!(err.contains("space.optim.lrr") && err.contains("optim.lr"), "{err}");
        let bad_value = SweepSpec::parse("[space]\n\"train.epochs\" = { int = [-1, 9] }\n[budget]\ntrials = 3\n").unwrap();
        let err = format!("{:#}", bad_value.space.check_against_config(None).unwrap_err());
        assert!(err.contains("space.train.epochs = -1"), "{err}");
    }

    #[test]
    fn values_become_config_overrides_and_stay_in_their_domain() {
        assert_eq!(ParamValue::Text("resnet18".into()).as_override("model.arch"), "model.arch=\"resnet18\"");
        assert_eq!(ParamValue::Float(0.001).as_override("optim.lr"), "optim.lr=0.001");
        assert_eq!(ParamValue::Int(3).as_override("train.epochs"), "train.epochs=3");
        assert_eq!(ParamValue::Bool(true).as_override("data.no_relabel"), "data.no_relabel=true");
        let int = Domain::Int { low: 1, high: 3, log: false };
        assert!(int.contains(&ParamValue::Int(3)) && !int.contains(&ParamValue::Int(4)) && !int.contains(&ParamValue::Float(2.0)));
        // Float and integer values keep their type through JSON.
        let values = vec![ParamValue::Int(3), ParamValue::Float(3.0), ParamValue::Text("3".into()), ParamValue::Bool(false)];
        assert_eq!(serde_json::from_str::<Vec<ParamValue>>(&serde_json::to_string(&values).unwrap()).unwrap(), values);
    }
}
