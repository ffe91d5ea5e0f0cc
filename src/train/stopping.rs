//! Which epoch's checkpoint is best, and when to stop early: two small rules over the monitored
//! validation score (oriented so that higher is better; see `config::Monitor`).
use serde::{Deserialize, Serialize};

/// Best-checkpoint selection: the epoch with the highest monitored score so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    /// The best score so far (-inf before the first epoch).
    pub best: f64,
    /// Its epoch (0 before the first epoch).
    pub best_epoch: usize,
}

impl Default for BestCheckpoint {
    fn default() -> Self {
        BestCheckpoint { best: f64::NEG_INFINITY, best_epoch: 0 }
    }
}

impl BestCheckpoint {
    /// Records an epoch's score; true when it is a new best (strictly higher).
    pub fn record(&mut self, epoch: usize, score: f64) -> bool {
        if score > self.best {
            self.best = score;
            self.best_epoch = epoch;
            true
        } else {
            false
        }
    }
}

/// Early stopping: stop after `patience` epochs in a row without a new best (0 = never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs since the last new best.
    pub bad_epochs: usize,
    /// From the config, not the checkpoint.
    #[serde(skip)]
    pub patience: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize) -> EarlyStopping {
        EarlyStopping { bad_epochs: 0, patience }
    }

    pub fn record(&mut self, improved: bool) {
        self.bad_epochs = if improved { 0 } else { self.bad_epochs + 1 };
    }

    pub fn should_stop(&self) -> bool {
        self.patience > 0 && self.bad_epochs >= self.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_counts_epochs_without_a_new_best() {
        let mut best = BestCheckpoint::default();
        let mut stop = EarlyStopping::new(2);
        // f1 per epoch: 0.2, 0.5, 0.5 (no gain), 0.4, 0.6, 0.1, 0.1
        let verdicts: Vec<(bool, bool)> = [0.2, 0.5, 0.5, 0.4, 0.6, 0.1, 0.1]
            .iter()
            .enumerate()
            .map(|(i, &f1)| {
                let improved = best.record(i + 1, f1);
                stop.record(improved);
                (improved, stop.should_stop())
            })
            .collect();
        assert_eq!(
            verdicts,
            vec![(true, false), (true, false), (false, false), (false, true), (true, false), (false, false), (false, true)]
        );
        assert_eq!((best.best, best.best_epoch), (0.6, 5));
        assert!(!EarlyStopping { patience: 0, ..stop }.should_stop(), "patience 0 never stops");
        // Loss is monitored as its negative, so a falling loss is an improvement.
        let mut l = BestCheckpoint::default();
        assert!(l.record(1, -0.9) && l.record(2, -0.5) && !l.record(3, -0.7));
    }
}
