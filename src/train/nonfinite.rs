//! Divergence detection: a training step whose loss or gradients are not finite (NaN, +-inf)
//! is skipped (the optimiser leaves the weights and its state as they were; see
//! `Optimizer::step_if`), and a run of `train.max_nonfinite_steps` such steps in a row stops
//! training with an error. fp16 steps that the loss scaler skips because its scaled gradients
//! overflowed are the scaler's business (it lowers the scale and goes on) and do not count here.
//!
//! The counting happens on the device: each step folds its 0-dim "bad" flag into a running
//! streak without a host read, so the GPU never waits for the CPU. The trainer reads the counts
//! at its log points, every `max_nonfinite_steps` steps, and at the end of each epoch (one small
//! read each time), so an error comes at most that many steps after the limit was reached; the
//! steps in between are skipped too and change nothing.
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// Counts non-finite steps on the device.
pub struct NonFiniteGuard {
    limit: usize,
    /// The current run of bad steps (0 after a good step).
    streak: Tensor,
    /// The longest run since the last [`NonFiniteGuard::check`].
    longest: Tensor,
    /// Bad steps since the last check.
    bad: Tensor,
    /// Bad steps counted by earlier checks, in this epoch.
    epoch_bad: usize,
}

/// What a check found, for the epoch's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BadSteps {
    /// Steps skipped for a non-finite loss or gradients since the epoch began.
    pub skipped: usize,
}

impl NonFiniteGuard {
    pub fn new(limit: usize, device: Device) -> NonFiniteGuard {
        let zero = || Tensor::zeros([], (Kind::Int64, device));
        NonFiniteGuard { limit: limit.max(1), streak: zero(), longest: zero(), bad: zero(), epoch_bad: 0 }
    }

    /// Steps between two reads of the counts.
    pub fn check_every(&self) -> usize {
        self.limit
    }

    /// Folds one step's flag (a 0-dim bool tensor: true when the step was bad) into the counts.
    pub fn record(&mut self, bad: &Tensor) {
        let bad = bad.to_device(self.streak.device()).to_kind(Kind::Int64);
        self.streak = (&self.streak + 1) * &bad;
        self.longest = self.longest.maximum(&self.streak);
        self.bad += &bad;
    }

    /// Reads the counts (a host sync): an error when `limit` bad steps came in a row, naming
    /// where training stood and what to change.
    pub fn check(&mut self, epoch: usize, step: usize, lr: f64) -> Result<BadSteps> {
        let longest = self.longest.int64_value(&[]) as usize;
        self.epoch_bad += self.bad.int64_value(&[]) as usize;
        // The run still going on counts towards the next window.
        self.longest = self.streak.copy();
        let _ = self.bad.zero_();
        if longest >= self.limit {
            bail!(
                "training diverged: {longest} optimiser steps in a row had a non-finite loss or gradients (epoch {epoch}, by step {step}, \
                 learning rate {lr:.3e}); each was skipped and no checkpoint holds their weights. Lower optim.lr, set optim.grad_clip, \
                 or allow more such steps with train.max_nonfinite_steps (now {})",
                self.limit
            );
        }
        Ok(BadSteps { skipped: self.epoch_bad })
    }

    /// Starts the per-epoch count afresh (the streak carries over: it counts steps in a row).
    pub fn begin_epoch(&mut self) {
        self.epoch_bad = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(bad: bool) -> Tensor {
        Tensor::from(bad)
    }

    #[test]
    fn a_run_of_bad_steps_stops_training_and_isolated_ones_do_not() {
        let mut g = NonFiniteGuard::new(3, Device::Cpu);
        for bad in [true, true, false, true, false, true, true] {
            g.record(&flag(bad));
        }
        assert_eq!(g.check(1, 7, 0.1).unwrap(), BadSteps { skipped: 5 });
        // The ongoing run of two continues into the next window: one more bad step is three in a row.
        g.record(&flag(true));
        let err = g.check(1, 8, 0.1).unwrap_err().to_string();
        assert!(err.contains("3 optimiser steps in a row") && err.contains("train.max_nonfinite_steps"), "{err}");
        let mut g = NonFiniteGuard::new(3, Device::Cpu);
        g.record(&flag(true));
        g.begin_epoch();
        g.record(&flag(false));
        assert_eq!(g.check(2, 2, 0.1).unwrap(), BadSteps { skipped: 1 }, "counted in the window it happened in");
    }
}
