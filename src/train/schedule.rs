//! Learning-rate schedules, evaluated per optimiser step so that warmup and cosine are smooth
//! within an epoch.
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step,
    /// Multiply by `gamma` at each epoch of `milestones`.
    Multistep,
    /// Half a cosine from the base rate down to `min_lr` (CosineAnnealingLR).
    Cosine,
    /// A straight line from the base rate down to `min_lr`.
    Linear,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Shape of the schedule after warmup.
    pub kind: ScheduleKind,
    /// Epochs (fractions allowed) of linear warmup from 0 to the base rate.
    pub warmup_epochs: f64,
    /// `step`: epochs between two decays.
    pub step_size: usize,
    /// `step`/`multistep`: factor applied at each decay.
    pub gamma: f64,
    /// `multistep`: epochs (counted from the start of training) at which the rate decays.
    pub milestones: Vec<usize>,
    /// `cosine`/`linear`: the rate reached at the last step.
    pub min_lr: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            kind: ScheduleKind::Cosine,
            warmup_epochs: 0.0,
            step_size: 10,
            gamma: 0.1,
            milestones: Vec::new(),
            min_lr: 0.0,
        }
    }
}

impl crate::util::section::Section for ScheduleConfig {
    const KEY: &'static str = "schedule";
}

impl ScheduleConfig {
    /// Rejects settings that `lr_at` could only interpret by guessing.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0,
            "schedule.warmup_epochs must be >= 0, got {}",
            self.warmup_epochs
        );
        ensure!(
            self.kind != ScheduleKind::Step || self.step_size > 0,
            "schedule.step_size must be at least 1 epoch for the step schedule"
        );
        ensure!(self.gamma.is_finite() && self.gamma > 0.0, "schedule.gamma must be > 0, got {}", self.gamma);
        ensure!(self.min_lr.is_finite() && self.min_lr >= 0.0, "schedule.min_lr must be >= 0, got {}", self.min_lr);
        Ok(())
    }
}

/// Learning rate at optimiser step `step` (0-based), linear warmup from 0 over warmup steps, then the schedule over the remaining steps.
///
/// Warmup gives `base_lr * step / warmup_steps`, so that it ends exactly where the schedule
/// starts (`base_lr`). `cosine` and `linear` run over the post-warmup steps (T_max = all of
/// them) and stay at `min_lr` past the end. `step` and `multistep` count epochs from the start
/// of training (`step / steps_per_epoch`), so that milestones mean the epochs one reads in logs.
pub fn lr_at(cfg: &ScheduleConfig, base_lr: f64, step: usize, steps_per_epoch: usize, epochs: usize) -> f64 {
    let total_steps = steps_per_epoch * epochs;
    let warmup_steps = ((cfg.warmup_epochs * steps_per_epoch as f64).round() as usize).min(total_steps);
    if step < warmup_steps {
        return base_lr * step as f64 / warmup_steps as f64;
    }
    let epoch = step / steps_per_epoch.max(1);
    // Fraction of the post-warmup run already done, in [0, 1].
    let progress = {
        let span = total_steps.saturating_sub(warmup_steps);
        if span == 0 {
            1.0
        } else {
            ((step - warmup_steps) as f64 / span as f64).min(1.0)
        }
    };
    match cfg.kind {
        ScheduleKind::Constant => base_lr,
        // `validate` rejects step_size 0; max(1) only keeps a skipped validation from dividing by 0.
        ScheduleKind::Step => base_lr * cfg.gamma.powi((epoch / cfg.step_size.max(1)) as i32),
        ScheduleKind::Multistep => {
            let passed = cfg.milestones.iter().filter(|&&m| m <= epoch).count();
            base_lr * cfg.gamma.powi(passed as i32)
        }
        ScheduleKind::Cosine => cfg.min_lr + (base_lr - cfg.min_lr) * (1.0 + (PI * progress).cos()) / 2.0,
        ScheduleKind::Linear => base_lr + (cfg.min_lr - base_lr) * progress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn cfg(kind: ScheduleKind) -> ScheduleConfig {
        ScheduleConfig { kind, ..Default::default() }
    }

    #[test]
    fn warmup_then_cosine() {
        // 4 steps/epoch, 3 epochs = 12 steps; 1 warmup epoch = 4 steps; cosine over the other 8.
        let c = ScheduleConfig { warmup_epochs: 1.0, min_lr: 0.1, ..cfg(ScheduleKind::Cosine) };
        let lr = |s| lr_at(&c, 1.0, s, 4, 3);
        assert!(close(lr(0), 0.0) && close(lr(1), 0.25) && close(lr(3), 0.75));
        assert!(close(lr(4), 1.0));
        // Step 6: progress 2/8, cos(pi/4) = sqrt(2)/2 -> 0.1 + 0.9 * (1 + 0.70710678...) / 2.
        assert!(close(lr(6), 0.1 + 0.9 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0));
        // Step 8: halfway -> (1 + 0.1) / 2.
        assert!(close(lr(8), 0.55));
        assert!(close(lr(12), 0.1) && close(lr(40), 0.1));
    }

    #[test]
    fn cosine_without_warmup_matches_cosine_annealing() {
        // CosineAnnealingLR(T_max=10, eta_min=0): step 5 -> 0.5, step 10 -> 0.
        let c = cfg(ScheduleKind::Cosine);
        assert!(close(lr_at(&c, 0.2, 0, 5, 2), 0.2));
        assert!(close(lr_at(&c, 0.2, 5, 5, 2), 0.1));
        assert!(close(lr_at(&c, 0.2, 10, 5, 2), 0.0));
    }

    #[test]
    fn step_and_multistep_count_epochs() {
        let step = ScheduleConfig { step_size: 2, gamma: 0.5, ..cfg(ScheduleKind::Step) };
        // 10 steps per epoch: epochs 0-1 -> 1, epochs 2-3 -> 0.5, epoch 4 -> 0.25.
        assert!(close(lr_at(&step, 1.0, 19, 10, 6), 1.0));
        assert!(close(lr_at(&step, 1.0, 20, 10, 6), 0.5));
        assert!(close(lr_at(&step, 1.0, 45, 10, 6), 0.25));
        let multi = ScheduleConfig { milestones: vec![1, 3], gamma: 0.1, ..cfg(ScheduleKind::Multistep) };
        assert!(close(lr_at(&multi, 2.0, 9, 10, 5), 2.0));
        assert!(close(lr_at(&multi, 2.0, 10, 10, 5), 0.2));
        assert!(close(lr_at(&multi, 2.0, 35, 10, 5), 0.02));
    }

    #[test]
    fn linear_and_constant() {
        // 2 warmup steps of 10; linear over the 8 left from 1.0 to 0.2: step 6 is 4/8 of the way -> 0.6.
        let lin = ScheduleConfig { warmup_epochs: 1.0, min_lr: 0.2, ..cfg(ScheduleKind::Linear) };
        assert!(close(lr_at(&lin, 1.0, 1, 2, 5), 0.5));
        assert!(close(lr_at(&lin, 1.0, 2, 2, 5), 1.0));
        assert!(close(lr_at(&lin, 1.0, 6, 2, 5), 0.6));
        assert!(close(lr_at(&lin, 1.0, 10, 2, 5), 0.2));
        assert!(close(lr_at(&cfg(ScheduleKind::Constant), 0.3, 7, 2, 5), 0.3));
    }

    #[test]
    fn config_parses_and_validates() {
        let c: ScheduleConfig = toml::from_str("kind = \"multistep\"\nmilestones = [5, 8]").unwrap();
        assert_eq!(c.kind, ScheduleKind::Multistep);
        assert_eq!(c.gamma, 0.1);
        assert!(toml::from_str::<ScheduleConfig>("kind = \"cosine\"\nwarmup = 1").is_err());
        let bad = ScheduleConfig { step_size: 0, ..cfg(ScheduleKind::Step) };
        assert!(bad.validate().unwrap_err().to_string().contains("schedule.step_size"));
        assert!(ScheduleConfig::default().validate().is_ok());
    }
}
