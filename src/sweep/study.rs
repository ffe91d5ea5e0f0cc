//! A sweep's shared state, `SWEEP/study.json`: the spec it was started with and every trial
//! (parameters, status, the objective after each epoch and at the end, timing). Any number of
//! worker processes, on this machine or on others sharing the folder (a Slurm array), run
//! trials from one study:
//!
//! - Every change is read-modify-write under the sweep folder's lock (`run_dir::lock`, held for
//!   milliseconds) and written atomically (`util::write_atomic`), so writers never lose each
//!   other's changes, and a writer killed mid-write leaves the previous whole file (its
//!   temporary file is removed by the next writer).
//! - A worker claims a trial by locking `SWEEP/.claims/trial-NNN` (the same kind of lock) and
//!   holds that lock for as long as it works on the trial. The kernel releases it when the worker
//!   ends in any way, so a trial still marked running whose claim is free has lost its worker:
//!   the next worker takes it over, as a resumed attempt (its run folder `SWEEP/trial-NNN` has the
//!   checkpoint to go on from). That is how a killed sweep resumes where it stopped.
//! - The budget: `trials` counts trials started (whatever became of them); `seconds` counts from
//!   when each process opened the study, after which it starts nothing (trials under way finish).
use super::pruner::{pruner_for, Judgement, Pruner};
use super::sampler::{sampler_for, Sampler};
use super::space::Params;
use super::spec::{Direction, SweepSpec};
use super::trial::{trial_name, EpochValue, Trial, TrialStatus};
use crate::run_dir::{RunDir, RunLock};
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The study file's name in the sweep folder.
pub const STUDY_FILE: &str = "study.json";
/// Where the trials' claim locks live (one folder per trial).
const CLAIMS_DIR: &str = ".claims";
const STUDY_VERSION: u32 = 1;
/// How long a worker waits for another to finish its update of the study file (milliseconds,
/// normally; a minute covers a slow shared file system), and after how long it says so.
const PATIENCE: Duration = Duration::from_secs(60);
const QUIET_WAIT: Duration = Duration::from_secs(2);

/// What `study.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyState {
    pub version: u32,
    /// The spec the sweep was started with (its budget: the latest one a worker opened it with).
    pub spec: SweepSpec,
    /// When the sweep was started (Unix seconds).
    pub created: f64,
    pub trials: Vec<Trial>,
}

impl StudyState {
    /// The trials' parameter keys, in the space's order.
    pub fn param_keys(&self) -> Vec<String> {
        self.spec.space.params.keys().cloned().collect()
    }

    /// The trials by status, for summaries.
    pub fn count(&self, status: TrialStatus) -> usize {
        self.trials.iter().filter(|t| t.status == status).count()
    }

    /// The complete trials, best first (by the objective's direction).
    pub fn ranked(&self) -> Vec<&Trial> {
        let direction = self.spec.objective.direction;
        let mut complete: Vec<&Trial> = self.trials.iter().filter(|t| t.status == TrialStatus::Complete && t.value.is_some_and(|v| !v.is_nan())).collect();
        complete.sort_by(|a, b| direction.oriented(b.value.unwrap_or(f64::NAN)).total_cmp(&direction.oriented(a.value.unwrap_or(f64::NAN))).then(a.number.cmp(&b.number)));
        complete
    }
    /// The complete trial with the best value (the first of equals).
    pub fn best(&self) -> Option<&Trial> {
        let direction = self.spec.objective.direction;
        self.trials
            .iter()
            .filter(|t| t.status == TrialStatus::Complete)
            .filter_map(|t| t.value.filter(|v| !v.is_nan()).map(|v| (t, direction.oriented(v))))
            .fold(None, |best: Option<(&Trial, f64)>, (t, v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((t, v)),
            })
            .map(|(t, _)| t)
    }
}

/// How a trial ended, as its worker tells it (a pruned trial ended when the pruner said so).
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Ran to its end with this objective value.
    Complete(f64),
    /// Its run failed with this error.
    Failed(String),
}

/// A trial this worker runs, held until dropped (or the worker ends).
#[derive(Debug)]
pub struct Claim {
    pub number: usize,
    pub params: Params,
    /// Whether an earlier attempt ran (its worker died): the run folder may hold a checkpoint to resume.
    pub resume: bool,
    /// 1 for the first attempt.
    pub attempt: usize,
    run: RunDir,
    _lock: RunLock,
}

impl Claim {
    /// The trial's run folder, `SWEEP/trial-NNN`.
    pub fn run(&self) -> &RunDir {
        &self.run
    }

    pub fn name(&self) -> String {
        trial_name(self.number)
    }
}

/// One worker's handle on a sweep folder.
pub struct Study {
    dir: RunDir,
    spec: SweepSpec,
    sampler: Box<dyn Sampler + Send + Sync>,
    pruner: Box<dyn Pruner + Send + Sync>,
    /// Past this, the worker starts no trial (`budget.seconds`).
    deadline: Option<Instant>,
    worker: String,
}

impl Study {
    /// Opens the sweep in `dir`, starting it (creating the folder and the study file) on first
    /// use. A sweep started with another space, objective, sampler or pruner is refused; a new
    /// budget replaces the old one (raising it continues a finished sweep).
    pub fn open(dir: &Path, spec: SweepSpec) -> Result<Study> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the sweep folder {}", dir.display()))?;
        let study = Study {
            dir: RunDir::new(dir),
            sampler: sampler_for(&spec.sampler),
            pruner: pruner_for(&spec.pruner),
            deadline: spec.budget.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s)),
            worker: format!("{}:{}", host_name(), std::process::id()),
            spec,
        };
        let _lock = study.lock()?;
        let state = match study.read()? {
            Some(mut state) => {
                if let Some(differs) = study.spec.conflicts_with(&state.spec) {
                    bail!(
                        "{} was started with another {differs}: use the sweep file it was started with, or another folder",
                        study.file().display()
                    );
                }
                state.spec.budget = study.spec.budget;
                state
            }
            None => StudyState { version: STUDY_VERSION, spec: study.spec.clone(), created: now(), trials: Vec::new() },
        };
        study.write(&state)?;
        Ok(study)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The spec this worker opened the study with (its budget may differ from another worker's).
    pub fn spec(&self) -> &SweepSpec {
        &self.spec
    }

    pub fn objective(&self) -> super::spec::Objective {
        self.spec.objective
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join(STUDY_FILE)
    }

    /// The run folder of trial `number`.
    pub fn trial_run(&self, number: usize) -> RunDir {
        RunDir::new(self.dir.path().join(trial_name(number)))
    }

    /// The study as last written (no lock: the file is replaced whole).
    pub fn state(&self) -> Result<StudyState> {
        self.read()?.with_context(|| format!("{} is missing", self.file().display()))
    }

    /// The next trial for this worker: a trial whose worker died (resumed), else a new one with
    /// parameters from the sampler; None when the budget is spent (or this worker's time is up).
    pub fn next_trial(&self) -> Result<Option<Claim>> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        self.update(|state| {
            for trial in state.trials.iter_mut().filter(|t| t.status == TrialStatus::Running) {
                if let Ok(lock) = self.try_claim(trial.number)? {
                    trial.attempts += 1;
                    trial.worker = self.worker.clone();
                    return Ok(Some(self.claim(trial, lock)));
                }
            }
            if self.spec.budget.trials.is_some_and(|n| state.trials.len() >= n) {
                return Ok(None);
            }
            let number = state.trials.len();
            let params = self.sampler.suggest(&self.spec.space, &state.trials, self.direction(), number)?;
            debug_assert!(self.spec.space.admits(&params), "the sampler keeps to the space: {params:?}");
            let Ok(lock) = self.try_claim(number)? else {
                bail!("{} is claimed by another worker, yet the study has no such trial", trial_name(number));
            };
            state.trials.push(Trial {
                number,
                params,
                status: TrialStatus::Running,
                epochs: Vec::new(),
                value: None,
                attempts: 1,
                worker: self.worker.clone(),
                started: now(),
                finished: None,
                note: None,
            });
            Ok(Some(self.claim(&state.trials[number], lock)))
        })
    }

    /// Records the objective after `epoch` (replacing what an earlier attempt recorded from
    /// that epoch on) and asks the pruner; on `Stop` the trial is marked pruned and over (drop
    /// the claim; do not `finish` it).
    pub fn report_epoch(&self, claim: &Claim, epoch: usize, value: f64) -> Result<Judgement> {
        self.update(|state| {
            let trial = self.claimed_trial(state, claim)?;
            trial.epochs.retain(|e| e.epoch < epoch);
            trial.epochs.push(EpochValue { epoch, value, at: now() });
            let trial = trial.clone();
            let judgement = self.pruner.judge(&trial, epoch, &state.trials, self.direction());
            if let Judgement::Stop(why) = &judgement {
                let stored = self.claimed_trial(state, claim)?;
                stored.status = TrialStatus::Pruned;
                stored.finished = Some(now());
                stored.note = Some(why.clone());
            }
            Ok(judgement)
        })
    }

    /// Records how a running trial ended and lets go of it. A complete trial whose value is not
    /// a number is recorded as failed.
    pub fn finish(&self, claim: Claim, outcome: Outcome) -> Result<()> {
        self.update(|state| {
            let trial = self.claimed_trial(state, &claim)?;
            match outcome {
                Outcome::Complete(value) if value.is_nan() => {
                    trial.status = TrialStatus::Failed;
                    trial.note = Some("the objective is not a number".to_string());
                }
                Outcome::Complete(value) => {
                    trial.status = TrialStatus::Complete;
                    trial.value = Some(value);
                }
                Outcome::Failed(error) => {
                    trial.status = TrialStatus::Failed;
                    trial.note = Some(error);
                }
            }
            trial.finished = Some(now());
            Ok(())
        })
    }

    fn direction(&self) -> Direction {
        self.spec.objective.direction
    }

    /// The claim's trial, which must still be running under this claim.
    fn claimed_trial<'s>(&self, state: &'s mut StudyState, claim: &Claim) -> Result<&'s mut Trial> {
        let file = self.file();
        let trial = state.trials.get_mut(claim.number).with_context(|| format!("{}: no {}", file.display(), claim.name()))?;
        if trial.status != TrialStatus::Running {
            bail!("{}: {} is {}, not running", file.display(), claim.name(), trial.status);
        }
        if trial.attempts != claim.attempt {
            bail!("{}: {} was taken over by {} (attempt {})", file.display(), claim.name(), trial.worker, trial.attempts);
        }
        Ok(trial)
    }

    fn claim(&self, trial: &Trial, lock: RunLock) -> Claim {
        Claim {
            number: trial.number,
            params: trial.params.clone(),
            resume: trial.attempts > 1,
            attempt: trial.attempts,
            run: self.trial_run(trial.number),
            _lock: lock,
        }
    }

    /// The claim lock of trial `number`, or (inner Err) who holds it.
    fn try_claim(&self, number: usize) -> Result<std::result::Result<RunLock, String>> {
        let dir = RunDir::new(self.dir.path().join(CLAIMS_DIR).join(trial_name(number)));
        std::fs::create_dir_all(dir.path()).with_context(|| format!("cannot create {}", dir.path().display()))?;
        RunLock::try_acquire(&dir, &format!("sweep, {}", trial_name(number)))
    }

    /// The study's lock. Workers wait for each other's updates all the time, for milliseconds:
    /// unlike `RunLock::acquire_waiting`, this waits quietly unless the wait grows long.
    fn lock(&self) -> Result<RunLock> {
        let start = Instant::now();
        let mut said = false;
        loop {
            match RunLock::try_acquire(&self.dir, "sweep")? {
                Ok(lock) => return Ok(lock),
                Err(holder) if start.elapsed() >= PATIENCE => {
                    bail!("{} is being written by {holder}; waited {} s for it", self.file().display(), PATIENCE.as_secs())
                }
                Err(holder) => {
                    if !said && start.elapsed() >= QUIET_WAIT {
                        eprintln!("{}: waiting for {holder} to finish writing it", self.file().display());
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Read, change and write the study under its lock; nothing is written when `change` fails.
    fn update<T>(&self, change: impl FnOnce(&mut StudyState) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let out = change(&mut state)?;
        self.write(&state)?;
        Ok(out)
    }

    fn read(&self) -> Result<Option<StudyState>> {
        let path = self.file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let state: StudyState = serde_json::from_str(&text).with_context(|| format!("{} is not a sweep's study file", path.display()))?;
        if state.version != STUDY_VERSION {
            bail!("{}: study file version {} (this masklab reads version {STUDY_VERSION})", path.display(), state.version);
        }
        Ok(Some(state))
    }

    fn write(&self, state: &StudyState) -> Result<()> {
        write_atomic(&self.file(), &serde_json::to_vec_pretty(state)?)
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// This machine's name, to tell workers on several machines apart.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests;
