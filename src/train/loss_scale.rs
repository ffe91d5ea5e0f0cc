//! Dynamic loss scaling for fp16 training, as torch.cuda.amp.GradScaler does it: the loss is
//! multiplied by a large factor before backward so that small fp16 gradients do not flush to
//! zero; the gradients are divided by it again before the step. A step whose gradients
//! overflowed is skipped and the factor halved; after a run of good steps it doubles.
use crate::train::optim::Optimizer;
use tch::Tensor;

#[derive(Clone, Debug)]
pub struct LossScaler {
    enabled: bool,
    scale: f64,
    good_steps: usize,
}

impl LossScaler {
    /// GradScaler's defaults.
    pub const INITIAL_SCALE: f64 = 65536.0;
    const GROWTH_INTERVAL: usize = 2000;

    /// `enabled` only for fp16 autocast; `scale` continues a resumed run's factor.
    pub fn new(enabled: bool, scale: f64) -> LossScaler {
        LossScaler { enabled, scale, good_steps: 0 }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// What to call backward on.
    pub fn scaled(&self, loss: &Tensor) -> Tensor {
        if self.enabled {
            loss * self.scale
        } else {
            loss.shallow_clone()
        }
    }

    /// Divides the optimiser's gradients by the scale; false when they overflowed, in which
    /// case the step must be skipped and the scale has been halved.
    pub fn unscale(&mut self, optimizer: &mut Optimizer) -> bool {
        self.unscale_agreed(optimizer, Ok).unwrap_or(false)
    }

    /// [`LossScaler::unscale`] where `any_overflow` turns this process's overflow into whether
    /// any data-parallel rank overflowed, so that every rank skips the same steps and keeps the
    /// same scale.
    pub fn unscale_agreed(&mut self, optimizer: &mut Optimizer, any_overflow: impl FnOnce(bool) -> anyhow::Result<bool>) -> anyhow::Result<bool> {
        if !self.enabled {
            return Ok(true);
        }
        let overflow = !optimizer.unscale_grads(1.0 / self.scale);
        if !any_overflow(overflow)? {
            return Ok(true);
        }
        self.scale /= 2.0;
        self.good_steps = 0;
        tracing::info!("fp16 overflow: loss scale -> {}", self.scale);
        Ok(false)
    }

    /// Counts a finished training step; the scale doubles after a run of them.
    pub fn step_done(&mut self) {
        if !self.enabled {
            return;
        }
        self.good_steps += 1;
        if self.good_steps >= Self::GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_a_run_of_good_steps() {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().add("w", Tensor::from_slice(&[1.0f32, 2.0]), true);
        let mut opt = Optimizer::new(&vs, &Default::default()).unwrap();
        let mut s = LossScaler::new(true, 8.0);
        opt.zero_grad();
        s.scaled(&(&w * 3.0).sum(tch::Kind::Float)).backward();
        assert!(s.unscale(&mut opt), "finite gradients pass");
        assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), vec![3.0, 3.0], "divided back by the scale");
        opt.zero_grad();
        (&w * f64::INFINITY).sum(tch::Kind::Float).backward();
        assert!(!s.unscale(&mut opt), "an overflow skips the step");
        assert_eq!(s.scale(), 4.0);
        for _ in 0..LossScaler::GROWTH_INTERVAL {
            s.step_done();
        }
        assert_eq!(s.scale(), 8.0);
        let off = LossScaler::new(false, 8.0);
        assert_eq!(off.scaled(&Tensor::from(2.0f32)).double_value(&[]), 2.0, "fp32 training is not scaled");
    }
}
