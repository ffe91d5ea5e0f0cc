//! Person-level splits, stratified by a per-person stratum (gender x age band):
//! a person's seven photos always land on one side. Deterministic for a seed.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// People grouped by stratum, each group shuffled with the seed.
fn shuffled_strata(strata: &[usize], seed: u64) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (person, &s) in strata.iter().enumerate() {
        groups.entry(s).or_default().push(person);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    groups
        .into_values()
        .map(|mut g| {
            g.shuffle(&mut rng);
            g
        })
        .collect()
}

/// For each person, whether they go to validation. Each stratum gives `val_ratio` of its people
/// (rounding carried across strata, so the total is `val_ratio` of everyone to within one person).
pub fn train_val_split(strata: &[usize], val_ratio: f64, seed: u64) -> Vec<bool> {
    let mut is_val = vec![false; strata.len()];
    let ratio = val_ratio.clamp(0.0, 1.0);
    let mut expected = 0.0;
    let mut taken = 0usize;
    for group in shuffled_strata(strata, seed) {
        expected += group.len() as f64 * ratio;
        let n = (expected.round() as usize).saturating_sub(taken).min(group.len());
        for &p in &group[..n] {
            is_val[p] = true;
        }
        taken += n;
    }
    is_val
}

/// For each person, its fold in `0..k`. Strata are dealt round-robin, continuing from one
/// stratum to the next, so every fold gets an even share of each stratum and of people.
pub fn kfold_assign(strata: &[usize], k: usize, seed: u64) -> Vec<usize> {
    assert!(k >= 2, "k-fold needs at least 2 folds");
    let mut fold = vec![0; strata.len()];
    let mut next = 0;
    for group in shuffled_strata(strata, seed) {
        for p in group {
            fold[p] = next % k;
            next += 1;
        }
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strata(n: usize) -> Vec<usize> {
        (0..n).map(|i| (i * 7 + i / 3) % 6).collect()
    }

    #[test]
    fn val_split_is_stratified_deterministic_and_sized() {
        let s = strata(100);
        let a = train_val_split(&s, 0.2, 42);
        assert_eq!(a, train_val_split(&s, 0.2, 42));
        assert_ne!(a, train_val_split(&s, 0.2, 43));
        assert_eq!(a.iter().filter(|v| **v).count(), 20);
        for stratum in 0..6 {
            let members: Vec<usize> = (0..100).filter(|&i| s[i] == stratum).collect();
            let val = members.iter().filter(|&&i| a[i]).count() as f64;
            assert!((val - members.len() as f64 * 0.2).abs() <= 1.0, "stratum {stratum}");
        }
    }

    #[test]
    fn folds_are_balanced_and_cover_everyone() {
        let s = strata(103);
        let f = kfold_assign(&s, 5, 7);
        assert_eq!(f, kfold_assign(&s, 5, 7));
        let mut sizes = [0; 5];
        for &x in &f {
            sizes[x] += 1;
        }
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        for stratum in 0..6 {
            let mut per = [0i32; 5];
            for i in 0..103 {
                if s[i] == stratum {
                    per[f[i]] += 1;
                }
            }
            assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 1, "{per:?}");
        }
    }
}
