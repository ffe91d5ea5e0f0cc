//! Which samples an epoch visits, and how often: a shuffled permutation, or one rebalanced
//! towards rare classes (oversampling named classes, capping every class, or drawing with
//! inverse-frequency weights). Deterministic in (seed, epoch) so that a resumed run replays
//! the same epochs.
use crate::labels::NUM_CLASSES;
use anyhow::{bail, Context, Result};
use rand::distributions::{Distribution, WeightedIndex};
use rand::seq::{index, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How an epoch's samples are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Every sample once.
    #[default]
    Uniform,
    /// Every sample once, plus extra copies of the named classes up to their target counts.
    Oversample,
    /// Each class capped at `undersample_to` samples.
    Undersample,
    /// `epoch_size` draws with replacement, each class equally likely.
    Weighted,
}

/// The sampler settings (`[sampler]` in the training config).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// uniform | oversample | undersample | weighted.
    pub kind: SamplerKind,
    /// Oversample: 18-way class index (TOML keys are strings: `{ 2 = 800, 8 = 500 }`) -> target count per epoch.
    pub oversample: BTreeMap<String, usize>,
    /// Undersample: cap per class; 0 = the smallest (non-empty) class's count.
    pub undersample_to: usize,
    /// Weighted: draws per epoch; 0 = the dataset size.
    pub epoch_size: usize,
}

impl crate::util::section::Section for SamplerConfig {
    const KEY: &'static str = "sampler";
}

impl SamplerConfig {
    /// The oversample targets by class index; errors name a key that is not a class 0..17.
    pub fn oversample_targets(&self) -> Result<BTreeMap<usize, usize>> {
        self.oversample
            .iter()
            .map(|(key, &target)| match key.trim().parse::<usize>() {
                Ok(class) if class < NUM_CLASSES => Ok((class, target)),
                _ => bail!(
                    "sampler.oversample key `{key}` is not a class index 0..{}",
                    NUM_CLASSES - 1
                ),
            })
            .collect()
    }
}

/// The sample indices of one epoch, shuffled. `classes[i]` is sample i's 18-way class.
/// Deterministic in (seed, epoch). Errors on a bad class key (not 0..17) naming it.
pub fn epoch_indices(cfg: &SamplerConfig, classes: &[usize], epoch: usize, seed: u64) -> Result<Vec<usize>> {
    let targets = cfg.oversample_targets()?;
    if let Some((i, &c)) = classes.iter().enumerate().find(|(_, &c)| c >= NUM_CLASSES) {
        bail!("sample {i} has class {c}, outside 0..{}", NUM_CLASSES - 1);
    }
    // One stream per epoch of the run's seed: epochs differ, and a resumed run replays them.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    let members = class_members(classes);

    let mut indices: Vec<usize> = match cfg.kind {
        SamplerKind::Uniform => (0..classes.len()).collect(),
        SamplerKind::Oversample => {
            let mut indices: Vec<usize> = (0..classes.len()).collect();
            for (&class, &target) in &targets {
                let have = &members[class];
                if have.is_empty() {
                    if target > 0 {
                        tracing::warn!("sampler.oversample: class {class} has no samples to copy");
                    }
                    continue;
                }
                let missing = target.saturating_sub(have.len());
                // Whole extra copies of the class first, then a random subset for the remainder,
                // so that no sample is repeated more than one time more than any other.
                for _ in 0..missing / have.len() {
                    indices.extend_from_slice(have);
                }
                let remainder = missing % have.len();
                indices.extend(index::sample(&mut rng, have.len(), remainder).into_iter().map(|k| have[k]));
            }
            indices
        }
        SamplerKind::Undersample => {
            let cap = if cfg.undersample_to > 0 {
                cfg.undersample_to
            } else {
                members.iter().map(Vec::len).filter(|&n| n > 0).min().unwrap_or(0)
            };
            let mut indices = Vec::new();
            for have in &members {
                if have.len() <= cap {
                    indices.extend_from_slice(have);
                } else {
                    indices.extend(index::sample(&mut rng, have.len(), cap).into_iter().map(|k| have[k]));
                }
            }
            indices
        }
        SamplerKind::Weighted => {
            let draws = if cfg.epoch_size > 0 { cfg.epoch_size } else { classes.len() };
            if classes.is_empty() {
                return Ok(Vec::new());
            }
            // Each sample weighs 1/count(class), so every present class is equally likely.
            let weights: Vec<f64> = classes.iter().map(|&c| 1.0 / members[c].len() as f64).collect();
            let dist = WeightedIndex::new(&weights).context("sampler weights")?;
            return Ok((0..draws).map(|_| dist.sample(&mut rng)).collect());
        }
    };
    indices.shuffle(&mut rng);
    Ok(indices)
}

/// The sample indices of each class, in dataset order.
fn class_members(classes: &[usize]) -> Vec<Vec<usize>> {
    let mut members = vec![Vec::new(); NUM_CLASSES];
    for (i, &c) in classes.iter().enumerate() {
        members[c].push(i);
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class 0: 10 samples, class 2: 3, class 8: 5, class 17: 1, interleaved.
    fn dataset() -> Vec<usize> {
        let mut classes = Vec::new();
        classes.extend([0; 10]);
        classes.extend([2; 3]);
        classes.extend([8; 5]);
        classes.push(17);
        // Interleave so that class members are not contiguous.
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        classes.shuffle(&mut rng);
        classes
    }

    fn class_counts(indices: &[usize], classes: &[usize]) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &i in indices {
            counts[classes[i]] += 1;
        }
        counts
    }

    fn times_seen(indices: &[usize], n: usize) -> Vec<usize> {
        let mut seen = vec![0; n];
        for &i in indices {
            seen[i] += 1;
        }
        seen
    }

    fn config(kind: SamplerKind) -> SamplerConfig {
        SamplerConfig { kind, ..Default::default() }
    }

    #[test]
    fn uniform_is_a_shuffled_permutation() {
        let classes = dataset();
        let indices = epoch_indices(&config(SamplerKind::Uniform), &classes, 0, 7).unwrap();
        let mut sorted = indices.clone();
        sorted.sort();
        assert_eq!(sorted, (0..classes.len()).collect::<Vec<_>>());
        assert_ne!(indices, sorted, "not shuffled");
    }

    #[test]
    fn oversample_tops_up_named_classes_with_whole_copies_first() {
        let classes = dataset();
        let toml = "kind = \"oversample\"\noversample = { 2 = 8, 8 = 3, 17 = 4 }";
        let cfg: SamplerConfig = toml::from_str(toml).unwrap();
        let indices = epoch_indices(&cfg, &classes, 3, 7).unwrap();
        let counts = class_counts(&indices, &classes);
        // 2: 3 -> 8; 8 already has 5 >= 3, unchanged; 17: 1 -> 4; 0 not named.
        assert_eq!((counts[0], counts[2], counts[8], counts[17]), (10, 8, 5, 4));
        assert_eq!(indices.len(), 10 + 8 + 5 + 4);
        let seen = times_seen(&indices, classes.len());
        for (i, &c) in classes.iter().enumerate() {
            match c {
                // 5 extra for 3 samples: one whole copy (each twice) and 2 of 3 a third time.
                2 => assert!((2..=3).contains(&seen[i]), "sample {i} seen {}", seen[i]),
                17 => assert_eq!(seen[i], 4),
                _ => assert_eq!(seen[i], 1),
            }
        }
        let thrice = classes.iter().enumerate().filter(|&(i, &c)| c == 2 && seen[i] == 3).count();
        assert_eq!(thrice, 2);
    }

    #[test]
    fn undersample_caps_each_class() {
        let classes = dataset();
        let cfg = SamplerConfig { kind: SamplerKind::Undersample, undersample_to: 4, ..Default::default() };
        let indices = epoch_indices(&cfg, &classes, 0, 7).unwrap();
        let counts = class_counts(&indices, &classes);
        assert_eq!((counts[0], counts[2], counts[8], counts[17]), (4, 3, 4, 1));
        assert!(times_seen(&indices, classes.len()).iter().all(|&k| k <= 1));
        // A different epoch keeps a different subset of the big class.
        let other = epoch_indices(&cfg, &classes, 1, 7).unwrap();
        let kept = |idx: &[usize]| {
            let mut v: Vec<usize> = idx.iter().copied().filter(|&i| classes[i] == 0).collect();
            v.sort();
            v
        };
        assert_ne!(kept(&indices), kept(&other));
        // 0 caps at the smallest class (class 17, one sample).
        let smallest = SamplerConfig { undersample_to: 0, ..cfg };
        let counts = class_counts(&epoch_indices(&smallest, &classes, 0, 7).unwrap(), &classes);
        assert_eq!((counts[0], counts[2], counts[8], counts[17]), (1, 1, 1, 1));
    }

    #[test]
    fn weighted_draws_classes_about_equally() {
        let classes = dataset();
        let cfg = SamplerConfig { kind: SamplerKind::Weighted, epoch_size: 8000, ..Default::default() };
        let indices = epoch_indices(&cfg, &classes, 0, 7).unwrap();
        assert_eq!(indices.len(), 8000);
        let counts = class_counts(&indices, &classes);
        // Four classes, 2000 expected each; binomial sd is about 39.
        for c in [0, 2, 8, 17] {
            assert!((1800..=2200).contains(&counts[c]), "class {c}: {}", counts[c]);
        }
        let default_size = epoch_indices(&config(SamplerKind::Weighted), &classes, 0, 7).unwrap();
        assert_eq!(default_size.len(), classes.len());
    }

    #[test]
    fn same_seed_and_epoch_give_the_same_epoch() {
        let classes = dataset();
        let cfg: SamplerConfig = toml::from_str("kind = \"oversample\"\noversample = { 2 = 8 }").unwrap();
        let a = epoch_indices(&cfg, &classes, 2, 5).unwrap();
        assert_eq!(a, epoch_indices(&cfg, &classes, 2, 5).unwrap());
        assert_ne!(a, epoch_indices(&cfg, &classes, 3, 5).unwrap());
        assert_ne!(a, epoch_indices(&cfg, &classes, 2, 6).unwrap());
    }

    #[test]
    fn bad_class_keys_and_classes_are_errors_naming_them() {
        let classes = dataset();
        for key in ["18", "x", "-1"] {
            let cfg: SamplerConfig = toml::from_str(&format!("kind = \"oversample\"\noversample = {{ \"{key}\" = 5 }}")).unwrap();
            let err = epoch_indices(&cfg, &classes, 0, 0).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
        let err = epoch_indices(&config(SamplerKind::Uniform), &[0, 18], 0, 0).unwrap_err().to_string();
        assert!(err.contains("sample 1 has class 18"), "{err}");
        assert!(toml::from_str::<SamplerConfig>("kind = \"balanced\"").is_err());
        assert!(toml::from_str::<SamplerConfig>("epochsize = 3").is_err());
    }
}
