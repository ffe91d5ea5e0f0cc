//! The observer a sweep adds to each trial's run: after every epoch it records the objective in
//! the study and asks the pruner; when the pruner says stop, it answers the trainer with
//! `EpochVerdict::Stop`, and the run ends after that epoch like any other (last checkpoint,
//! report, trackers). The trainer knows nothing of sweeps: only the answer.
use super::spec::Objective;
use super::study::{Claim, Study};
use super::pruner::Judgement;
use crate::metrics::Evaluation;
use crate::run_dir::metrics_log::EpochLine;
use crate::train::observer::{EpochVerdict, RunStart, TrainObserver};
use anyhow::{bail, Result};
use std::cell::RefCell;
use std::rc::Rc;

/// Why the pruner stopped a trial, shared with the worker that runs it.
pub type PrunedBy = Rc<RefCell<Option<String>>>;

pub struct TrialObserver {
    study: Rc<Study>,
    claim: Rc<Claim>,
    objective: Objective,
    epochs: usize,
    pruned: PrunedBy,
}

impl TrialObserver {
    pub fn new(study: Rc<Study>, claim: Rc<Claim>, objective: Objective, pruned: PrunedBy) -> TrialObserver {
        TrialObserver { study, claim, objective, epochs: 0, pruned }
    }
}

impl TrainObserver for TrialObserver {
    fn start(&mut self, run: &RunStart) -> Result<()> {
        self.epochs = run.epochs;
        Ok(())
    }

    fn epoch(&mut self, line: &EpochLine, _eval: Option<&Evaluation>, _improved: bool) -> Result<EpochVerdict> {
        let Some(val) = &line.val else {
            bail!("{}: epoch {} has no validation scores: a sweep needs a validation split (data.val_ratio > 0)", self.claim.name(), line.epoch);
        };
        let value = self.objective.value_of(val);
        let judgement = self.study.report_epoch(&self.claim, line.epoch, value)?;
        let name = self.claim.name();
        match judgement {
            Judgement::Continue => {
                eprintln!("{name} epoch {}/{}: {} {value:.4}", line.epoch, self.epochs, self.objective.metric);
                Ok(EpochVerdict::Continue)
            }
            Judgement::Stop(why) => {
                eprintln!("{name} epoch {}/{}: {} {value:.4}: pruned ({why})", line.epoch, self.epochs, self.objective.metric);
                *self.pruned.borrow_mut() = Some(why.clone());
                Ok(EpochVerdict::Stop(format!("pruned by the sweep: {why}")))
            }
        }
    }
}
