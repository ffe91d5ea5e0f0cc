//! One trial of a sweep as the study file records it: its parameters, where it stands, the
//! objective's value after each epoch and at the end, and when it ran. Plain data that the
//! samplers and pruners read and the study writes.
use super::space::Params;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a trial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    /// Claimed by a worker; if that worker died, the next worker runs it again (resuming).
    Running,
    /// Ran to its end; `value` holds the objective.
    Complete,
    /// Stopped early by the pruner at its last recorded epoch.
    Pruned,
    /// Its run failed (the error is in `note`); not run again.
    Failed,
}

impl std::fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrialStatus::Running => "running",
            TrialStatus::Complete => "complete",
            TrialStatus::Pruned => "pruned",
            TrialStatus::Failed => "failed",
        })
    }
}

/// The objective measured after one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochValue {
    /// 1-based.
    pub epoch: usize,
    /// Not a number when training diverged (written as null).
    #[serde(serialize_with = "nan_as_null", deserialize_with = "null_as_nan")]
    pub value: f64,
    /// When it was recorded (Unix seconds).
    pub at: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// 0-based, in the order trials were started; the run folder is `trial-NNN`.
    pub number: usize,
    pub params: Params,
    pub status: TrialStatus,
    /// The objective after each epoch, in epoch order.
    pub epochs: Vec<EpochValue>,
    /// The objective at the end (complete trials).
    pub value: Option<f64>,
    /// How many times a worker started it (more than 1: it was resumed after its worker died).
    pub attempts: usize,
    /// The worker of the latest attempt: "host:pid".
    pub worker: String,
    /// When the first attempt started and when the trial ended (Unix seconds).
    pub started: f64,
    pub finished: Option<f64>,
    /// Why it was pruned, or how it failed.
    pub note: Option<String>,
}

impl Trial {
    /// The trial's run folder name, `trial-007`.
    pub fn name(&self) -> String {
        trial_name(self.number)
    }

    /// The objective recorded after `epoch`.
    pub fn value_at(&self, epoch: usize) -> Option<f64> {
        self.epochs.iter().find(|e| e.epoch == epoch).map(|e| e.value)
    }

    pub fn last_epoch(&self) -> Option<&EpochValue> {
        self.epochs.last()
    }
}

/// `trial-007`: trial numbers padded to three digits (longer past 999), so that folders sort.
pub fn trial_name(number: usize) -> String {
    format!("trial-{number:03}")
}

fn nan_as_null<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

fn null_as_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
