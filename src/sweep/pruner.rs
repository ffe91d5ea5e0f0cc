//! When a sweep stops a poor trial early, behind one small trait: never, or by asynchronous
//! successive halving (ASHA).
//!
//! ASHA as Optuna's `SuccessiveHalvingPruner`: rungs at epochs `min_epochs * eta^k` (k = 0, 1,
//! ...); when a trial records a rung's epoch, it goes on only if its value there is among the
//! top `max(1, floor(n / eta))` of the n trials that have recorded that epoch so far (itself
//! included), whatever became of them since; otherwise it stops. The first trials at a rung, with
//! fewer than eta competitors, must be the best so far to go on (Optuna's rule: trials are not
//! paused to wait for company). A value that is not a number stops the trial at once. Nothing is
//! decided between rungs, and a rung once passed is not judged again.
use super::spec::{Direction, PrunerKind, PrunerSpec};
use super::trial::Trial;

/// What a pruner says after a trial recorded an epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum Judgement {
    Continue,
    /// Stop now, for this reason.
    Stop(String),
}

pub trait Pruner {
    /// Whether `trial`, which has just recorded `epoch`, should stop, judged against the study's
    /// trials (`trial` may be among them; it counts once).
    fn judge(&self, trial: &Trial, epoch: usize, trials: &[Trial], direction: Direction) -> Judgement;
}

/// The pruner a sweep file asks for.
pub fn pruner_for(spec: &PrunerSpec) -> Box<dyn Pruner + Send + Sync> {
    match spec.kind {
        PrunerKind::Asha => Box::new(Asha { min_epochs: spec.min_epochs, reduction_factor: spec.reduction_factor }),
        PrunerKind::None => Box::new(NoPruner),
    }
}

/// Every trial runs to its end.
pub struct NoPruner;

impl Pruner for NoPruner {
    fn judge(&self, _trial: &Trial, _epoch: usize, _trials: &[Trial], _direction: Direction) -> Judgement {
        Judgement::Continue
    }
}

pub struct Asha {
    /// The first rung's epoch (at least 1).
    pub min_epochs: usize,
    /// eta (at least 2).
    pub reduction_factor: usize,
}

impl Asha {
    /// Whether `epoch` is a rung: `min_epochs * eta^k`.
    pub fn is_rung(&self, epoch: usize) -> bool {
        let mut rung = self.min_epochs.max(1);
        while rung < epoch {
            rung = rung.saturating_mul(self.reduction_factor.max(2));
        }
        rung == epoch
    }
}

impl Pruner for Asha {
    fn judge(&self, trial: &Trial, epoch: usize, trials: &[Trial], direction: Direction) -> Judgement {
        if !self.is_rung(epoch) {
            return Judgement::Continue;
        }
        let Some(value) = trial.value_at(epoch) else {
            return Judgement::Continue;
        };
        if value.is_nan() {
            return Judgement::Stop(format!("epoch {epoch}: the objective is not a number"));
        }
        // Higher is better from here on.
        let mut competing: Vec<f64> = trials
            .iter()
            .filter(|t| t.number != trial.number)
            .filter_map(|t| t.value_at(epoch))
            .filter(|v| !v.is_nan())
            .map(|v| direction.oriented(v))
            .collect();
        competing.push(direction.oriented(value));
        competing.sort_by(|a, b| b.total_cmp(a));
        let promoted = (competing.len() / self.reduction_factor).max(1);
        let bar = competing[promoted - 1];
        if direction.oriented(value) >= bar {
            Judgement::Continue
        } else {
            Judgement::Stop(format!(
                "epoch {epoch}: {value:.4} is not in the top {promoted} of the {} trials at this rung (needed {:.4})",
                competing.len(),
                direction.oriented(bar)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::space::Params;
    use crate::sweep::trial::{EpochValue, TrialStatus};

    fn trial(number: usize, values: &[f64]) -> Trial {
        Trial {
            number,
            params: Params::new(),
            status: TrialStatus::Running,
            epochs: values.iter().enumerate().map(|(i, &value)| EpochValue { epoch: i + 1, value, at: 0.0 }).collect(),
            value: None,
            attempts: 1,
            worker: "test:1".into(),
            started: 0.0,
            finished: None,
            note: None,
        }
    }

    fn stops(j: Judgement) -> bool {
        matches!(j, Judgement::Stop(_))
    }

    #[test]
    fn rungs_are_min_epochs_times_powers_of_eta() {
        let asha = Asha { min_epochs: 2, reduction_factor: 3 };
        let rungs: Vec<usize> = (1..=60).filter(|&e| asha.is_rung(e)).collect();
        assert_eq!(rungs, vec![2, 6, 18, 54]);
        let optuna = Asha { min_epochs: 1, reduction_factor: 4 };
        assert_eq!((1..=70).filter(|&e| optuna.is_rung(e)).collect::<Vec<_>>(), vec![1, 4, 16, 64]);
    }

    #[test]
    fn asha_keeps_the_top_share_at_each_rung_and_judges_only_at_rungs() {
        let asha = Asha { min_epochs: 1, reduction_factor: 2 };
        let up = Direction::Maximize;
        // Alone at a rung: goes on. Second and worse (fewer than eta before it): stops; better: goes on.
        let first = trial(0, &[0.5]);
        assert_eq!(asha.judge(&first, 1, std::slice::from_ref(&first), up), Judgement::Continue);
        assert!(stops(asha.judge(&trial(1, &[0.4]), 1, std::slice::from_ref(&first), up)));
        assert_eq!(asha.judge(&trial(1, &[0.6]), 1, std::slice::from_ref(&first), up), Judgement::Continue);
        // Eight trials have recorded epoch 2 (rung 2); a ninth: top floor(9/2) = 4 go on.
        let others: Vec<Trial> = (0..8).map(|i| trial(i, &[0.1, 0.1 * i as f64])).collect();
        // Oriented values at epoch 2 are 0.0..0.7; the 4th best is 0.4.
        assert_eq!(asha.judge(&trial(8, &[0.1, 0.45]), 2, &others, up), Judgement::Continue);
        assert_eq!(asha.judge(&trial(8, &[0.1, 0.4]), 2, &others, up), Judgement::Continue, "a tie with the bar goes on");
        let Judgement::Stop(why) = asha.judge(&trial(8, &[0.1, 0.35]), 2, &others, up) else { panic!("0.35 is 5th of 9") };
        assert!(why.contains("epoch 2") && why.contains("top 4 of the 9 trials") && why.contains("needed 0.4000"), "{why}");
        // Epoch 3 is no rung: nothing is decided however poor.
        assert_eq!(asha.judge(&trial(8, &[0.1, 0.9, 0.0]), 3, &others, up), Judgement::Continue);
        // The trial itself among the trials counts once (the study passes all of them).
        let mut with_self = others.clone();
        with_self.push(trial(8, &[0.1, 0.35]));
        assert!(stops(asha.judge(&with_self[8], 2, &with_self, up)));
        // Not a number: stops at a rung.
        assert!(stops(asha.judge(&trial(9, &[f64::NAN]), 1, &others, up)));
    }

    #[test]
    fn asha_minimising_keeps_the_lowest() {
        let asha = Asha { min_epochs: 1, reduction_factor: 4 };
        let losses: Vec<Trial> = (0..7).map(|i| trial(i, &[1.0 + i as f64])).collect();
        // 8 at the rung: top 2 go on; losses 1 and 2 are the best two.
        assert_eq!(asha.judge(&trial(7, &[1.5]), 1, &losses, Direction::Minimize), Judgement::Continue);
        assert!(stops(asha.judge(&trial(7, &[2.5]), 1, &losses, Direction::Minimize)));
        assert_eq!(NoPruner.judge(&trial(7, &[99.0]), 1, &losses, Direction::Minimize), Judgement::Continue);
    }
}
