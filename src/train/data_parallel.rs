//! What the trainer does differently when it is one of several data-parallel processes, with the
//! semantics of PyTorch's DDP (README, "Distributed training"): one [`Replicas`] per trainer, a
//! no-op for a plain run. It shards each epoch's order and the validation split, averages
//! gradients, makes every rank agree on whether a step applies, takes weights and BatchNorm
//! statistics from rank 0, gathers validation outputs, and checks that the ranks' weights are
//! still identical before a checkpoint.
//!
//! Also gradient accumulation's micro-batches ([`micro_batch_order`]), which split a step's
//! images as that many ranks would.
use crate::dist::shard::{shard_padded, shard_unpadded};
use crate::dist::sync::{all_gather_indexed_rows, any_rank, average_gradients, broadcast_tensors};
use crate::dist::{Dist, ReduceOp};
use crate::train::optim::Optimizer;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// This process's place among the replicas of a run (None: it trains alone).
#[derive(Clone, Default)]
pub struct Replicas {
    dist: Option<Rc<Dist>>,
    /// Time spent in gradient all-reduces since the last [`Replicas::take_allreduce_time`].
    allreduce: Duration,
}

impl Replicas {
    /// A run of one rank (`--nproc 1`, torchrun with one process) still goes through the
    /// collectives, as DDP does: the cost of its all-reduce is then measurable on one device.
    pub fn new(dist: Option<Rc<Dist>>) -> Replicas {
        Replicas { dist, allreduce: Duration::ZERO }
    }

    pub fn is_distributed(&self) -> bool {
        self.dist.is_some()
    }

    pub fn rank(&self) -> usize {
        self.dist.as_ref().map_or(0, |d| d.pg.rank())
    }

    pub fn world_size(&self) -> usize {
        self.dist.as_ref().map_or(1, |d| d.pg.world_size())
    }

    /// Rank 0 (or a plain run): the one process that writes the run folder.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// The device this rank trains on: its own GPU of a CUDA run (`LOCAL_RANK`), else `configured`.
    pub fn device(&self, configured: tch::Device) -> tch::Device {
        self.dist.as_ref().map_or(configured, |d| d.pg.device())
    }

    /// This rank's share of an epoch's training order (DistributedSampler's padded shard).
    pub fn train_shard(&self, order: Vec<usize>) -> Vec<usize> {
        match &self.dist {
            Some(d) => shard_padded(&order, d.pg.rank(), d.pg.world_size()),
            None => order,
        }
    }

    /// How many items a rank trains on per epoch when the order holds `n`.
    pub fn train_shard_len(&self, n: usize) -> usize {
        n.div_ceil(self.world_size())
    }

    /// Overwrites `tensors` with rank 0's values.
    pub fn broadcast_from_main(&self, tensors: &[Tensor]) -> Result<()> {
        match &self.dist {
            Some(d) => broadcast_tensors(&d.pg, tensors, 0).context("cannot take rank 0's weights"),
            None => Ok(()),
        }
    }

    /// Averages the optimiser's gradients over the ranks: one all-reduce per flat dtype buffer.
    pub fn average_gradients(&mut self, optimizer: &mut Optimizer) -> Result<()> {
        let Some(d) = &self.dist else { return Ok(()) };
        let started = Instant::now();
        average_gradients(&d.pg, &mut optimizer.grad_buffers()).context("cannot average the gradients across ranks")?;
        self.allreduce += started.elapsed();
        Ok(())
    }

    /// The all-reduce time since the last call (None for a plain run).
    pub fn take_allreduce_time(&mut self) -> Option<f64> {
        self.dist.as_ref()?;
        Some(std::mem::take(&mut self.allreduce).as_secs_f64())
    }

    /// Whether `flag` holds on any rank (e.g. an fp16 overflow: every rank then skips the step).
    pub fn any(&self, flag: bool) -> Result<bool> {
        match &self.dist {
            Some(d) => any_rank(&d.pg, flag).context("the ranks cannot agree on a flag (all-reduce)"),
            None => Ok(flag),
        }
    }

    /// A 0-dim bool tensor that is true where it is true on every rank (the non-finite step gate).
    pub fn all_true(&self, flag: &Tensor) -> Result<Tensor> {
        let Some(d) = &self.dist else { return Ok(flag.shallow_clone()) };
        let mut value = flag.to_kind(Kind::Float).reshape([1]).to_device(d.pg.device());
        d.pg.all_reduce_(&mut value, ReduceOp::Min).context("cannot agree on the step's finiteness")?;
        Ok(value.reshape(Vec::<i64>::new()).to_device(flag.device()).gt(0.5))
    }

    /// The sums of `values` (0-dim float tensors) over the ranks, e.g. the logged loss.
    pub fn sum(&self, values: &[&Tensor]) -> Result<Vec<f64>> {
        let Some(d) = &self.dist else { return Ok(values.iter().map(|v| v.double_value(&[])).collect()) };
        let stacked: Vec<Tensor> = values.iter().map(|v| v.to_kind(Kind::Double).reshape([1]).to_device(d.pg.device())).collect();
        let mut flat = Tensor::cat(&stacked, 0);
        d.pg.all_reduce_(&mut flat, ReduceOp::Sum).context("cannot sum the ranks' losses")?;
        Ok(Vec::<f64>::try_from(&flat.to_device(tch::Device::Cpu))?)
    }

    /// The validation items this rank scores: an unpadded share of `order`.
    pub fn val_shard(&self, order: &[usize]) -> Vec<usize> {
        match &self.dist {
            Some(d) => shard_unpadded(order, d.pg.rank(), d.pg.world_size()),
            None => order.to_vec(),
        }
    }

    /// Every rank's validation outputs, in the order of `order` (the whole split), from this
    /// rank's `probs` and per-model `outputs` (rows for the samples `kept`).
    pub fn gather_validation(&self, order: &[usize], probs: Tensor, outputs: Vec<Tensor>, kept: Vec<usize>) -> Result<(Tensor, Vec<Tensor>, Vec<usize>)> {
        let Some(d) = &self.dist else { return Ok((probs, outputs, kept)) };
        let position: HashMap<usize, i64> = order.iter().enumerate().map(|(p, &i)| (i, p as i64)).collect();
        let positions: Vec<i64> = kept.iter().map(|i| position[i]).collect();
        let positions = Tensor::from_slice(&positions);
        let (all_probs, sorted) = all_gather_indexed_rows(&d.pg, &probs, &positions).context("cannot gather the validation outputs")?;
        let mut all_outputs = Vec::with_capacity(outputs.len());
        for output in &outputs {
            all_outputs.push(all_gather_indexed_rows(&d.pg, output, &positions).context("cannot gather the validation outputs")?.0.to_device(tch::Device::Cpu));
        }
        let kept: Vec<usize> = Vec::<i64>::try_from(&sorted.to_device(tch::Device::Cpu))?.into_iter().map(|p| order[p as usize]).collect();
        Ok((all_probs.to_device(tch::Device::Cpu), all_outputs, kept))
    }

    /// Every rank's fingerprint of `tensors` (a plain run: its own); an error when they differ,
    /// which would mean the replicas drifted apart (they must hold identical weights).
    pub fn check_identical(&self, tensors: &[Tensor]) -> Result<Vec<f64>> {
        let fingerprint = fingerprint(tensors);
        let Some(d) = &self.dist else { return Ok(vec![fingerprint]) };
        let mine = Tensor::from_slice(&[fingerprint]).to_device(d.pg.device());
        let all: Vec<f64> = d.pg.all_gather(&mine).context("cannot compare the ranks' weights")?.iter().map(|t| t.double_value(&[0])).collect();
        if all.iter().any(|f| f.to_bits() != all[0].to_bits()) {
            bail!("the ranks' weights differ (fingerprints {all:?}): the replicas drifted apart; no checkpoint was written");
        }
        Ok(all)
    }
}

/// A number that changes when any value of `tensors` does (position-weighted sums and sums of squares).
fn fingerprint(tensors: &[Tensor]) -> f64 {
    tch::no_grad(|| {
        tensors
            .iter()
            .enumerate()
            .filter(|(_, t)| t.numel() > 0)
            .map(|(i, t)| {
                let t = t.to_kind(Kind::Double).reshape([-1]);
                let ramp = Tensor::linspace(1.0, 2.0, t.numel() as i64, (Kind::Double, t.device()));
                (&t * ramp).sum(Kind::Double).double_value(&[]) * (i as f64 + 1.0) + t.square().sum(Kind::Double).double_value(&[])
            })
            .sum()
    })
}

/// Gradient accumulation over `micro_batches` micro-batches of `batch_size`: `order` rearranged so
/// that consecutive batches of `batch_size` are the micro-batches of one step after another.
/// Each step takes the next `micro_batches x batch_size` items (a shorter tail is dropped), and
/// micro-batch j of a step holds its items j, j + micro_batches, ...: the split that as many
/// ranks would make of the same step (see `dist::shard::shard_padded`), so that accumulating N
/// micro-batches trains the same as N data-parallel ranks.
pub fn micro_batch_order(order: &[usize], batch_size: usize, micro_batches: usize) -> Vec<usize> {
    if micro_batches <= 1 {
        return order.to_vec();
    }
    let step = batch_size * micro_batches;
    order.chunks_exact(step).flat_map(|chunk| (0..micro_batches).flat_map(move |j| chunk.iter().skip(j).step_by(micro_batches).copied())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_split_a_step_as_ranks_would() {
        let order: Vec<usize> = (10..23).collect();
        // Steps of 2 x 3 items: [10..16), [16..22); item 22 is dropped.
        let micro = micro_batch_order(&order, 3, 2);
        assert_eq!(micro, vec![10, 12, 14, 11, 13, 15, 16, 18, 20, 17, 19, 21]);
        // What ranks 0 and 1 train in their first step of 3, from the same order.
        assert_eq!(&shard_padded(&order[..12], 0, 2)[..3], &micro[..3]);
        assert_eq!(&shard_padded(&order[..12], 1, 2)[..3], &micro[3..6]);
        assert_eq!(micro_batch_order(&order, 3, 1), order);
    }

    #[test]
    fn a_plain_run_is_its_own_replica() {
        let mut r = Replicas::new(None);
        assert!(r.is_main() && !r.is_distributed());
        assert_eq!((r.rank(), r.world_size(), r.train_shard_len(7)), (0, 1, 7));
        assert_eq!(r.train_shard(vec![3, 1, 2]), vec![3, 1, 2]);
        assert!(r.any(true).unwrap() && !r.any(false).unwrap());
        assert_eq!(r.take_allreduce_time(), None);
        let sums = r.sum(&[&Tensor::from(2.5f32)]).unwrap();
        assert_eq!(sums, vec![2.5]);
        let a = [Tensor::from_slice(&[1.0f32, 2.0])];
        assert_eq!(r.check_identical(&a).unwrap().len(), 1);
        assert_ne!(fingerprint(&a), fingerprint(&[Tensor::from_slice(&[2.0f32, 1.0]), Tensor::from_slice(&[0.0f32])]));
    }
}
