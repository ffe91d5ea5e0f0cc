//! What a data-parallel trainer exchanges between ranks, built on [`ProcessGroup`]'s collectives:
//! gradients averaged (one all-reduce per flat dtype buffer), weights and buffers broadcast from
//! rank 0, skip decisions agreed, and validation rows of different counts gathered.
use super::{ProcessGroup, ReduceOp};
use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

/// Averages gradients across ranks in place: one all-reduce per buffer, as DDP does per bucket.
/// Pass the optimiser's flat gradient buffers (one per dtype: `Optimizer::grad_buffers`); every
/// rank must pass buffers of the same sizes and dtypes in the same order.
pub fn average_gradients(pg: &ProcessGroup, buffers: &mut [Tensor]) -> Result<()> {
    for buffer in buffers {
        pg.all_reduce_(buffer, ReduceOp::Avg)?;
    }
    Ok(())
}

/// Overwrites `tensors` on every rank with rank `root`'s values: the initial weights and, before
/// validation and checkpoints, BatchNorm's running statistics. Tensors of one dtype and device go
/// in one broadcast through a flat buffer. Autograd does not record the copy.
pub fn broadcast_tensors(pg: &ProcessGroup, tensors: &[Tensor], root: usize) -> Result<()> {
    let mut groups: Vec<((Kind, Device), Vec<&Tensor>)> = Vec::new();
    for tensor in tensors.iter().filter(|t| t.numel() > 0) {
        let key = (tensor.kind(), tensor.device());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(tensor),
            None => groups.push((key, vec![tensor])),
        }
    }
    tch::no_grad(|| -> Result<()> {
        for (_, members) in groups {
            let pieces: Vec<Tensor> = members.iter().map(|t| t.detach().reshape([-1])).collect();
            let mut flat = Tensor::cat(&pieces, 0);
            pg.broadcast_(&mut flat, root)?;
            let mut offset = 0i64;
            for tensor in members {
                let numel = tensor.numel() as i64;
                let mut target = tensor.shallow_clone();
                target.copy_(&flat.narrow(0, offset, numel).view(tensor.size().as_slice()));
                offset += numel;
            }
        }
        Ok(())
    })
}

/// Whether `flag` is true on any rank, on every rank: e.g. an fp16 step whose gradients
/// overflowed on some rank is skipped by all (their weights must stay identical).
pub fn any_rank(pg: &ProcessGroup, flag: bool) -> Result<bool> {
    let mut value = Tensor::from_slice(&[flag as i32]).to_device(pg.device());
    pg.all_reduce_(&mut value, ReduceOp::Max)?;
    Ok(value.int64_value(&[0]) != 0)
}

/// Every rank's `rows` (a tensor of any rank >= 1; the counts along dim 0 may differ between
/// ranks, the other dims and the dtype may not), concatenated in rank order, on every rank.
/// Two all-gathers: the counts, then the rows padded to the largest count.
pub fn all_gather_rows(pg: &ProcessGroup, rows: &Tensor) -> Result<Tensor> {
    let shape = rows.size();
    ensure!(!shape.is_empty(), "all_gather_rows needs a tensor with a row dimension, got a scalar");
    let rows = rows.to_device(pg.device()).contiguous();
    let count = Tensor::from_slice(&[shape[0]]).to_device(pg.device());
    let counts: Vec<i64> = pg.all_gather(&count)?.iter().map(|c| c.int64_value(&[0])).collect();
    let longest = counts.iter().copied().max().unwrap_or(0);
    let mut padded_shape = shape.clone();
    padded_shape[0] = longest;
    if longest == 0 {
        return Ok(Tensor::zeros(padded_shape.as_slice(), (rows.kind(), pg.device())));
    }
    let padded = if shape[0] == longest {
        rows
    } else {
        let padded = Tensor::zeros(padded_shape.as_slice(), (rows.kind(), pg.device()));
        padded.narrow(0, 0, shape[0]).copy_(&rows);
        padded
    };
    let gathered = pg.all_gather(&padded)?;
    let parts: Vec<Tensor> = gathered.iter().zip(&counts).map(|(part, &n)| part.narrow(0, 0, n)).collect();
    Ok(Tensor::cat(&parts, 0))
}

/// Validation results sharded over ranks, gathered on every rank and put back in item order:
/// `rows` (e.g. f32 probabilities, one row per item) and `indices` (i64, the items' positions in
/// the split) from each rank; returns both sorted by index, as one process would have produced.
pub fn all_gather_indexed_rows(pg: &ProcessGroup, rows: &Tensor, indices: &Tensor) -> Result<(Tensor, Tensor)> {
    ensure!(
        rows.size().first() == indices.size().first() && indices.dim() == 1,
        "all_gather_indexed_rows: {} rows but indices of shape {:?}",
        rows.size().first().copied().unwrap_or(0),
        indices.size()
    );
    let all_rows = all_gather_rows(pg, rows)?;
    let all_indices = all_gather_rows(pg, &indices.to_kind(Kind::Int64))?;
    let (sorted, order) = all_indices.sort(0, false);
    Ok((all_rows.index_select(0, &order), sorted))
}

#[cfg(test)]
mod tests {
    use super::super::{Backend, Store};
    use super::*;
    use std::time::Duration;

    /// Runs `body` on `world` ranks, one thread each, over a Gloo group on loopback.
    fn on_ranks<T: Send + 'static>(world: usize, body: fn(&ProcessGroup) -> T) -> Vec<T> {
        let timeout = Duration::from_secs(20);
        let server = Store::host("127.0.0.1", 0, world, timeout).unwrap();
        let port = server.port();
        let threads: Vec<_> = (0..world)
            .map(|rank| {
                std::thread::spawn(move || {
                    let store = Store::connect("127.0.0.1", port, world, timeout).unwrap();
                    let pg = ProcessGroup::new(&store, Backend::Gloo, rank, world, Device::Cpu, timeout).unwrap();
                    body(&pg)
                })
            })
            .collect();
        let results = threads.into_iter().map(|t| t.join().expect("a rank panicked")).collect();
        drop(server);
        results
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(&t.to_kind(Kind::Float).reshape([-1])).unwrap()
    }

    #[test]
    fn gradients_average_per_buffer() {
        let results = on_ranks(2, |pg| {
            let r = pg.rank() as f32;
            let mut buffers = vec![Tensor::from_slice(&[r, 10.0 * r, 1.0]), Tensor::from_slice(&[2.0 * r]).to_kind(Kind::Double)];
            average_gradients(pg, &mut buffers).unwrap();
            (values(&buffers[0]), values(&buffers[1]), buffers[1].kind())
        });
        for (first, second, kind) in results {
            assert_eq!(first, vec![0.5, 5.0, 1.0]);
            assert_eq!(second, vec![1.0]);
            assert_eq!(kind, Kind::Double);
        }
    }

    /// What the trainer will do each step: backward on this rank's half of the batch, average the
    /// optimiser's flat grads, step. Both ranks must end with the weights of one process that
    /// stepped on the mean gradient of both halves.
    #[test]
    fn averaged_steps_keep_ranks_identical_and_equal_to_one_process() {
        use crate::train::optim::{OptimConfig, OptimKind, Optimizer};
        use tch::nn::VarStore;
        fn model() -> (VarStore, Tensor, Tensor) {
            let vs = VarStore::new(Device::Cpu);
            let w = vs.root().add("w", Tensor::from_slice(&[0.5f32, -1.0, 2.0]), true);
            let b = vs.root().add("b", Tensor::from_slice(&[0.25f64]), true);
            (vs, w, b)
        }
        fn half(rank: usize) -> (Tensor, Tensor) {
            let x = Tensor::from_slice(&[1.0f32, 2.0, -1.0, 0.5, -3.0, 1.0]).view([2, 3]) * (rank as f64 + 1.0);
            (x, Tensor::from_slice(&[1.0f32 - rank as f32, 2.0]))
        }
        fn loss(w: &Tensor, b: &Tensor, x: &Tensor, y: &Tensor) -> Tensor {
            let prediction = x.matmul(w) + b.to_kind(Kind::Float);
            (prediction - y).square().mean(Kind::Float)
        }
        let cfg = OptimConfig { kind: OptimKind::Adamw, lr: 0.1, weight_decay: 0.01, ..Default::default() };
        let weights = on_ranks(2, |pg| {
            let cfg = OptimConfig { kind: OptimKind::Adamw, lr: 0.1, weight_decay: 0.01, ..Default::default() };
            let (vs, w, b) = model();
            let mut opt = Optimizer::new(&vs, &cfg).unwrap();
            let (x, y) = half(pg.rank());
            for _ in 0..3 {
                opt.zero_grad();
                loss(&w, &b, &x, &y).backward();
                average_gradients(pg, &mut opt.grad_buffers()).unwrap();
                opt.step(0.1);
            }
            [values(&w), values(&b)].concat()
        });
        assert_eq!(weights[0], weights[1], "both ranks hold identical weights");
        let (vs, w, b) = model();
        let mut opt = Optimizer::new(&vs, &cfg).unwrap();
        for _ in 0..3 {
            opt.zero_grad();
            // The mean of the two halves' mean losses: the gradient both ranks averaged.
            let total = (0..2).map(|r| {
                let (x, y) = half(r);
                loss(&w, &b, &x, &y)
            });
            (total.fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, l| a + l) / 2.0).backward();
            opt.step(0.1);
        }
        let single = [values(&w), values(&b)].concat();
        for (a, b) in weights[0].iter().zip(&single) {
            assert!((a - b).abs() < 1e-6, "distributed {:?} vs one process {single:?}", weights[0]);
        }
    }

    #[test]
    fn broadcast_copies_rank_0s_tensors_of_every_dtype() {
        let results = on_ranks(2, |pg| {
            let r = pg.rank() as f32;
            let weight = Tensor::from_slice(&[r + 1.0, r + 2.0, r + 3.0, r + 4.0]).view([2, 2]).set_requires_grad(true);
            let bias = Tensor::from_slice(&[r * 7.0]);
            let counter = Tensor::from_slice(&[pg.rank() as i64 + 5]);
            broadcast_tensors(pg, &[weight.shallow_clone(), bias.shallow_clone(), counter.shallow_clone()], 0).unwrap();
            (values(&weight), values(&bias), counter.int64_value(&[0]), weight.requires_grad())
        });
        for (weight, bias, counter, requires_grad) in results {
            assert_eq!(weight, vec![1.0, 2.0, 3.0, 4.0]);
            assert_eq!(bias, vec![0.0]);
            assert_eq!(counter, 5);
            assert!(requires_grad);
        }
    }

    #[test]
    fn one_rank_flag_is_everyones() {
        let results = on_ranks(2, |pg| (any_rank(pg, pg.rank() == 1).unwrap(), any_rank(pg, false).unwrap()));
        assert_eq!(results, vec![(true, false), (true, false)]);
    }

    #[test]
    fn rows_of_different_counts_gather_in_rank_order() {
        let results = on_ranks(2, |pg| {
            // Rank 0 scored items 0, 2, 4; rank 1 items 1, 3 (an unpadded shard of 5 items).
            let indices: Vec<i64> = (pg.rank() as i64..5).step_by(2).collect();
            let rows: Vec<f32> = indices.iter().flat_map(|&i| [i as f32, -(i as f32)]).collect();
            let rows = Tensor::from_slice(&rows).view([indices.len() as i64, 2]);
            let indices = Tensor::from_slice(&indices);
            let stacked = all_gather_rows(pg, &rows).unwrap();
            let (sorted_rows, sorted_indices) = all_gather_indexed_rows(pg, &rows, &indices).unwrap();
            let empty = all_gather_rows(pg, &Tensor::zeros([0, 3], (Kind::Float, Device::Cpu))).unwrap();
            (values(&stacked), stacked.size(), values(&sorted_rows), Vec::<i64>::try_from(&sorted_indices).unwrap(), empty.size())
        });
        for (stacked, shape, sorted_rows, sorted_indices, empty) in results {
            assert_eq!(shape, vec![5, 2]);
            assert_eq!(stacked, vec![0.0, -0.0, 2.0, -2.0, 4.0, -4.0, 1.0, -1.0, 3.0, -3.0]);
            assert_eq!(sorted_indices, vec![0, 1, 2, 3, 4]);
            assert_eq!(sorted_rows, vec![0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0]);
            assert_eq!(empty, vec![0, 3]);
        }
    }
}
