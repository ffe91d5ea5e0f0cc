//! Which items of an epoch each rank trains and validates on.
//!
//! Every rank draws the same epoch order (same seed), then keeps its share of it, so the shares are
//! disjoint and together cover the order, and no rank needs to talk to another to know its share.

/// This rank's share of an epoch's training order, as PyTorch's `DistributedSampler` with
/// `drop_last=False` takes it: the order is padded with its own first items (cycled when the
/// padding is longer than the order) to a multiple of the world size, and rank r takes positions
/// r, r + world, r + 2 world, ... Every rank gets ceil(n / world) items, so every rank runs the
/// same number of steps; at most world - 1 items are seen twice per epoch.
pub fn shard_padded(order: &[usize], rank: usize, world: usize) -> Vec<usize> {
    assert!(world > 0 && rank < world, "rank {rank} is not in a world of {world}");
    if order.is_empty() {
        return Vec::new();
    }
    let per_rank = order.len().div_ceil(world);
    let total = per_rank * world;
    (rank..total).step_by(world).map(|position| order[position % order.len()]).collect()
}

/// This rank's share of a validation or prediction order: positions r, r + world, ... with no
/// padding, so that every item is scored exactly once over all ranks; shares differ in length by
/// at most one (gather them with `sync::all_gather_rows`, which accepts that).
pub fn shard_unpadded(order: &[usize], rank: usize, world: usize) -> Vec<usize> {
    assert!(world > 0 && rank < world, "rank {rank} is not in a world of {world}");
    order.iter().skip(rank).step_by(world).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn padded_shards_match_distributed_sampler() {
        // DistributedSampler(range(10), num_replicas=4, shuffle=False, drop_last=False):
        // indices 0..9 + [0, 1] padding, rank r takes indices[r::4].
        let order: Vec<usize> = (0..10).collect();
        assert_eq!(shard_padded(&order, 0, 4), vec![0, 4, 8]);
        assert_eq!(shard_padded(&order, 1, 4), vec![1, 5, 9]);
        assert_eq!(shard_padded(&order, 2, 4), vec![2, 6, 0]);
        assert_eq!(shard_padded(&order, 3, 4), vec![3, 7, 1]);
    }

    #[test]
    fn padded_shards_have_equal_length_and_cover_a_shuffled_order() {
        let order = vec![7, 3, 9, 0, 4, 8, 1, 6, 2, 5, 11, 10, 12];
        for world in 1..=6 {
            let shards: Vec<Vec<usize>> = (0..world).map(|r| shard_padded(&order, r, world)).collect();
            let len = order.len().div_ceil(world);
            assert!(shards.iter().all(|s| s.len() == len), "world {world}");
            let covered: BTreeSet<usize> = shards.iter().flatten().copied().collect();
            assert_eq!(covered, order.iter().copied().collect(), "world {world}");
            let total: usize = shards.iter().map(Vec::len).sum();
            assert_eq!(total - order.len(), len * world - order.len(), "only the padding repeats");
        }
    }

    #[test]
    fn padding_longer_than_the_order_cycles_it() {
        // DistributedSampler pads [0, 1] for 5 replicas with [0, 1, 0]: five items, one per rank.
        let shards: Vec<Vec<usize>> = (0..5).map(|r| shard_padded(&[0, 1], r, 5)).collect();
        assert_eq!(shards, vec![vec![0], vec![1], vec![0], vec![1], vec![0]]);
        assert!(shard_padded(&[], 1, 2).is_empty());
    }

    #[test]
    fn unpadded_shards_partition_the_order() {
        let order: Vec<usize> = (0..11).rev().collect();
        let shards: Vec<Vec<usize>> = (0..3).map(|r| shard_unpadded(&order, r, 3)).collect();
        assert_eq!(shards[0], vec![10, 7, 4, 1]);
        assert_eq!(shards[2], vec![8, 5, 2]);
        let mut all: Vec<usize> = shards.concat();
        all.sort();
        assert_eq!(all, (0..11).collect::<Vec<_>>());
    }
}
