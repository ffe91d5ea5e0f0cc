//! How sure a score is: 95% intervals by a bootstrap over people, and comparisons of two
//! prediction sets.
//!
//! A person's photos are not independent (one face, one camera, often one mistake repeated), so
//! the unit of resampling is the person, not the photo: a resample draws as many people as the
//! set holds, with replacement, and takes every photo of each person drawn (a person drawn
//! twice counts twice). Each resample is scored exactly as [`super::scores`] scores the whole
//! set: macro F1 over the 18 classes and the mask, gender and age F1.
//!
//! The interval is the percentile bootstrap: the 2.5th and 97.5th percentiles of the resampled
//! scores (linear interpolation between order statistics, numpy's default), around the score of
//! the whole set (the estimate, not the resamples' mean). Draws come from ChaCha8 seeded by
//! `seed`, so the same predictions, resamples and seed give the same interval.
//!
//! Cost: each person's confusion counts are taken once (a few non-zero cells per person); a
//! resample adds up the cells of the people drawn and scores the summed 18x18 matrix, so it
//! costs people x cells-per-person additions plus one scoring, whatever the number of photos.
//!
//! Comparing two prediction sets (runs A and B): when both hold exactly the same people (one
//! validation split, or the out-of-fold predictions of two k-fold runs), the comparison is
//! paired: each resample draws one set of people and scores both runs on it, so the difference
//! B - A is measured on the same people. Otherwise each run is resampled on its own (unpaired),
//! which is wider, and [`Comparison::pairing`] says so. A difference is called only when its
//! interval excludes 0 (see [`Verdict`]); `b_better` is how often B beat A across resamples.
use super::{scores, Confusion, Scores};
use crate::labels::NUM_CLASSES;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Resamples unless told otherwise: enough for stable 2.5/97.5 percentiles.
pub const DEFAULT_RESAMPLES: usize = 1000;
/// The seed unless told otherwise.
pub const DEFAULT_SEED: u64 = 0;
/// The intervals' coverage, and the percentiles that bound them.
pub const LEVEL: f64 = 0.95;
const LOW_QUANTILE: f64 = 0.025;
const HIGH_QUANTILE: f64 = 0.975;

/// How many resamples, drawn from which seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resampling {
    pub resamples: usize,
    pub seed: u64,
}

impl Default for Resampling {
    fn default() -> Self {
        Resampling { resamples: DEFAULT_RESAMPLES, seed: DEFAULT_SEED }
    }
}

/// The config's `[intervals]` section: how the 95% intervals shown beside every score (eval,
/// training's best epoch, cv.json, reports, compare) are drawn. The default costs 15-50 ms per
/// interval set on a validation split of a few hundred people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntervalConfig {
    /// Bootstrap resamples over people (0: no intervals; at least 2 otherwise).
    pub resamples: usize,
    /// The seed of the resamples' draws (the same predictions and seed give the same interval).
    pub bootstrap_seed: u64,
}

impl Default for IntervalConfig {
    fn default() -> Self {
        IntervalConfig { resamples: DEFAULT_RESAMPLES, bootstrap_seed: DEFAULT_SEED }
    }
}

impl IntervalConfig {
    /// The resampling to draw intervals with; None when intervals are off (`resamples = 0`).
    pub fn resampling(&self) -> Option<Resampling> {
        (self.resamples > 0).then_some(Resampling { resamples: self.resamples, seed: self.bootstrap_seed })
    }

    pub fn validate(&self) -> Result<()> {
        if self.resamples == 1 {
            bail!("intervals.resamples must be 0 (no intervals) or at least 2 (1000 is usual), got 1");
        }
        Ok(())
    }
}

impl crate::util::section::Section for IntervalConfig {
    const KEY: &'static str = "intervals";
}

/// `--resamples` and `--bootstrap-seed`, as the commands that show intervals of finished runs
/// take them (eval, compare): each overrides the run's `[intervals]` key of the same name.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct IntervalArgs {
    /// Bootstrap resamples over people for the 95% intervals (0: none; default: the run's
    /// intervals.resamples, 1000; about 15-50 ms per set of intervals).
    #[arg(long)]
    pub resamples: Option<usize>,
    /// Seed of the bootstrap's draws (default: the run's intervals.bootstrap_seed, 0).
    #[arg(long)]
    pub bootstrap_seed: Option<u64>,
}

impl IntervalArgs {
    /// `base` with the flags given laid over it.
    pub fn over(&self, base: IntervalConfig) -> Result<IntervalConfig> {
        let out = IntervalConfig { resamples: self.resamples.unwrap_or(base.resamples), bootstrap_seed: self.bootstrap_seed.unwrap_or(base.bootstrap_seed) };
        out.validate().map_err(|_| anyhow::anyhow!("--resamples must be 0 (no intervals) or at least 2 (1000 is usual), got 1"))?;
        Ok(out)
    }
}

/// One image's outcome: whose photo it is, the k-fold fold it was held out in (0 outside
/// k-fold), its true class and the predicted one (both 0..17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageOutcome<'a> {
    pub person: &'a str,
    pub fold: usize,
    pub truth: usize,
    pub pred: usize,
}

/// What was resampled: always people here (named in every saved interval so that nobody takes
/// it for a bootstrap over photos).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResampleUnit {
    Person,
}

/// A score with its percentile-bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreInterval {
    /// The score of the whole set.
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// The interval's coverage (0.95).
    pub level: f64,
    pub resamples: usize,
    pub seed: u64,
    pub unit: ResampleUnit,
    /// The number of people resampled.
    pub people: usize,
}

impl ScoreInterval {
    /// `[0.6812, 0.7420]`.
    pub fn bracket(&self) -> String {
        format!("[{:.4}, {:.4}]", self.low, self.high)
    }

    /// `0.7120 [0.6812, 0.7420]`.
    pub fn render(&self) -> String {
        format!("{:.4} {}", self.estimate, self.bracket())
    }
}

/// The intervals of the competition's score and of its three tasks' scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreIntervals {
    pub f1: ScoreInterval,
    pub f1_mask: ScoreInterval,
    pub f1_gender: ScoreInterval,
    pub f1_age: ScoreInterval,
}

impl ScoreIntervals {
    /// How the intervals were drawn, for people: `95% intervals: bootstrap over 40 people, 1000 resamples, seed 0`.
    pub fn method(&self) -> String {
        let f = &self.f1;
        format!("{:.0}% intervals: bootstrap over {} people, {} resamples, seed {}", f.level * 100.0, f.people, f.resamples, f.seed)
    }
}

/// Whether two runs were resampled together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// Both runs hold the same people: each resample scores both on the same people drawn.
    Paired,
    /// The runs hold different people: each run is resampled on its own.
    Unpaired,
}

/// What a difference's interval says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval of B - A lies above 0.
    BBetter,
    /// The interval of B - A lies below 0.
    ABetter,
    /// The interval holds 0 (identical predictions give [0, 0]: never a difference).
    NoClearDifference,
}

impl Verdict {
    fn of(low: f64, high: f64) -> Verdict {
        if low > 0.0 {
            Verdict::BBetter
        } else if high < 0.0 {
            Verdict::ABetter
        } else {
            Verdict::NoClearDifference
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::BBetter => "B is better",
            Verdict::ABetter => "A is better",
            Verdict::NoClearDifference => "no clear difference",
        })
    }
}

/// One score of runs A and B, and the difference B - A with its interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// A's and B's scores on their whole sets.
    pub a: f64,
    pub b: f64,
    /// b - a.
    pub difference: f64,
    pub low: f64,
    pub high: f64,
    /// The fraction of resamples in which B scored strictly higher than A.
    pub b_better: f64,
    pub verdict: Verdict,
}

/// Runs A and B compared on the competition's score and its three tasks' scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub pairing: Pairing,
    pub people_a: usize,
    pub people_b: usize,
    /// People in both sets (all of them when paired).
    pub shared_people: usize,
    pub level: f64,
    pub resamples: usize,
    pub seed: u64,
    pub unit: ResampleUnit,
    pub f1: Difference,
    pub f1_mask: Difference,
    pub f1_gender: Difference,
    pub f1_age: Difference,
}

/// The paired comparison within one fold of two k-fold runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldComparison {
    pub fold: usize,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// The 95% intervals of a prediction set's scores.
pub fn score_intervals(images: &[ImageOutcome], resampling: Resampling) -> Result<ScoreIntervals> {
    check(resampling)?;
    let counts = PeopleCounts::new(images)?;
    let whole = scores(&counts.total());
    let drawn = resample(&[&counts], resampling, 0).pop().expect("one set resampled");
    let interval = |task: Task| {
        let (low, high) = percentile_interval(drawn.iter().map(task.score));
        ScoreInterval {
            estimate: (task.score)(&whole),
            low,
            high,
            level: LEVEL,
            resamples: resampling.resamples,
            seed: resampling.seed,
            unit: ResampleUnit::Person,
            people: counts.len(),
        }
    };
    Ok(ScoreIntervals { f1: interval(TASKS[0]), f1_mask: interval(TASKS[1]), f1_gender: interval(TASKS[2]), f1_age: interval(TASKS[3]) })
}

/// Runs A and B compared: paired when both sets hold exactly the same people, else unpaired.
pub fn compare(a: &[ImageOutcome], b: &[ImageOutcome], resampling: Resampling) -> Result<Comparison> {
    check(resampling)?;
    let a = PeopleCounts::new(a).context("run A's predictions")?;
    let b = PeopleCounts::new(b).context("run B's predictions")?;
    Ok(compare_counts(&a, &b, resampling, 0))
}

/// The paired comparison of two k-fold runs fold by fold (rows carry their fold). Both runs
/// must hold out the same people in each fold (the same folds): otherwise an error names the
/// first fold that differs.
pub fn compare_per_fold(a: &[ImageOutcome], b: &[ImageOutcome], resampling: Resampling) -> Result<Vec<FoldComparison>> {
    check(resampling)?;
    let (a_folds, b_folds) = (by_fold(a).context("run A's predictions")?, by_fold(b).context("run B's predictions")?);
    let (a_names, b_names): (Vec<usize>, Vec<usize>) = (a_folds.keys().copied().collect(), b_folds.keys().copied().collect());
    if a_names != b_names {
        bail!("the runs have different folds (A: {a_names:?}, B: {b_names:?}): per-fold differences need the same folds");
    }
    let mut out = Vec::new();
    for (fold, a_rows) in &a_folds {
        let a_counts = PeopleCounts::new(a_rows).with_context(|| format!("run A's fold {fold}"))?;
        let b_counts = PeopleCounts::new(&b_folds[fold]).with_context(|| format!("run B's fold {fold}"))?;
        if a_counts.people != b_counts.people {
            bail!(
                "fold {fold} holds out different people in the two runs ({} in A, {} in B, {} in both): per-fold differences need the same folds",
                a_counts.len(),
                b_counts.len(),
                shared(&a_counts, &b_counts)
            );
        }
        // A stream of its own per fold, so that the folds' draws are not the same sequence.
        out.push(FoldComparison { fold: *fold, comparison: compare_counts(&a_counts, &b_counts, resampling, *fold as u64 * 2) });
    }
    Ok(out)
}

/// One of the four scores an interval is given for.
#[derive(Clone, Copy)]
struct Task {
    score: fn(&Scores) -> f64,
}

const TASKS: [Task; 4] = [Task { score: |s| s.f1 }, Task { score: |s| s.f1_mask }, Task { score: |s| s.f1_gender }, Task { score: |s| s.f1_age }];

fn check(resampling: Resampling) -> Result<()> {
    if resampling.resamples < 2 {
        bail!("a bootstrap needs at least 2 resamples (1000 is usual), got {}", resampling.resamples);
    }
    Ok(())
}

fn by_fold<'a>(rows: &[ImageOutcome<'a>]) -> Result<BTreeMap<usize, Vec<ImageOutcome<'a>>>> {
    let mut folds: BTreeMap<usize, Vec<ImageOutcome<'a>>> = BTreeMap::new();
    let mut fold_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        if row.fold == 0 {
            bail!("image {i} (person {}) has no fold (0): per-fold differences need out-of-fold predictions of a k-fold run", row.person);
        }
        let first = *fold_of.entry(row.person).or_insert(row.fold);
        if first != row.fold {
            bail!("image {i}: person {} is held out in folds {first} and {}: the folds overlap", row.person, row.fold);
        }
        folds.entry(row.fold).or_default().push(*row);
    }
    Ok(folds)
}

fn shared(a: &PeopleCounts, b: &PeopleCounts) -> usize {
    let b: BTreeSet<&String> = b.people.iter().collect();
    a.people.iter().filter(|p| b.contains(p)).count()
}

/// `stream`: the ChaCha stream of A's draws (B's unpaired draws use the next one).
fn compare_counts(a: &PeopleCounts, b: &PeopleCounts, resampling: Resampling, stream: u64) -> Comparison {
    let paired = a.people == b.people;
    let (a_drawn, b_drawn) = if paired {
        let mut both = resample(&[a, b], resampling, stream);
        let b_drawn = both.pop().expect("two sets resampled");
        (both.pop().expect("two sets resampled"), b_drawn)
    } else {
        (resample(&[a], resampling, stream).pop().expect("one set"), resample(&[b], resampling, stream + 1).pop().expect("one set"))
    };
    let (a_whole, b_whole) = (scores(&a.total()), scores(&b.total()));
    let difference = |task: Task| {
        let diffs: Vec<f64> = a_drawn.iter().zip(&b_drawn).map(|(x, y)| (task.score)(y) - (task.score)(x)).collect();
        let (low, high) = percentile_interval(diffs.iter().copied());
        let (a, b) = ((task.score)(&a_whole), (task.score)(&b_whole));
        Difference {
            a,
            b,
            difference: b - a,
            low,
            high,
            b_better: diffs.iter().filter(|&&d| d > 0.0).count() as f64 / diffs.len() as f64,
            verdict: Verdict::of(low, high),
        }
    };
    Comparison {
        pairing: if paired { Pairing::Paired } else { Pairing::Unpaired },
        people_a: a.len(),
        people_b: b.len(),
        shared_people: shared(a, b),
        level: LEVEL,
        resamples: resampling.resamples,
        seed: resampling.seed,
        unit: ResampleUnit::Person,
        f1: difference(TASKS[0]),
        f1_mask: difference(TASKS[1]),
        f1_gender: difference(TASKS[2]),
        f1_age: difference(TASKS[3]),
    }
}

/// Each person's confusion counts, kept sparse: person `i`'s non-zero cells (`truth * 18 + pred`)
/// and their counts are `cells[starts[i]..starts[i + 1]]`. People are in name order, so two sets
/// of the same people list them alike.
struct PeopleCounts {
    people: Vec<String>,
    starts: Vec<usize>,
    cells: Vec<(u16, u32)>,
}

impl PeopleCounts {
    fn new(images: &[ImageOutcome]) -> Result<PeopleCounts> {
        if images.is_empty() {
            bail!("no images to resample");
        }
        let mut by_person: BTreeMap<&str, BTreeMap<u16, u32>> = BTreeMap::new();
        for (i, image) in images.iter().enumerate() {
            if image.truth >= NUM_CLASSES || image.pred >= NUM_CLASSES {
                bail!(
                    "image {i} (person {}): class out of range (truth {}, prediction {}; classes are 0..{})",
                    image.person,
                    image.truth,
                    image.pred,
                    NUM_CLASSES - 1
                );
            }
            let cell = (image.truth * NUM_CLASSES + image.pred) as u16;
            *by_person.entry(image.person).or_default().entry(cell).or_default() += 1;
        }
        let mut counts = PeopleCounts { people: Vec::with_capacity(by_person.len()), starts: vec![0], cells: Vec::new() };
        for (person, cells) in by_person {
            counts.people.push(person.to_string());
            counts.cells.extend(cells);
            counts.starts.push(counts.cells.len());
        }
        Ok(counts)
    }

    fn len(&self) -> usize {
        self.people.len()
    }

    fn add_person(&self, person: usize, counts: &mut [u64]) {
        for &(cell, n) in &self.cells[self.starts[person]..self.starts[person + 1]] {
            counts[cell as usize] += n as u64;
        }
    }

    fn total(&self) -> Confusion {
        let mut conf = Confusion::new(NUM_CLASSES);
        for person in 0..self.len() {
            self.add_person(person, &mut conf.counts);
        }
        conf
    }
}

/// The scores of each resample, for each of `sets` (which list the same people): every set is
/// scored on the same people drawn, so the draws are paired across sets. Draws come from
/// ChaCha8 seeded by `resampling.seed`, on stream `stream`.
fn resample(sets: &[&PeopleCounts], resampling: Resampling, stream: u64) -> Vec<Vec<Scores>> {
    let people = sets[0].len();
    debug_assert!(sets.iter().all(|s| s.people == sets[0].people), "paired sets list the same people");
    let mut rng = ChaCha8Rng::seed_from_u64(resampling.seed);
    rng.set_stream(stream);
    let mut drawn = vec![0usize; people];
    let mut out: Vec<Vec<Scores>> = sets.iter().map(|_| Vec::with_capacity(resampling.resamples)).collect();
    let mut conf = Confusion::new(NUM_CLASSES);
    for _ in 0..resampling.resamples {
        for d in drawn.iter_mut() {
            *d = rng.gen_range(0..people);
        }
        for (set, scored) in sets.iter().zip(out.iter_mut()) {
            conf.counts.fill(0);
            for &person in &drawn {
                set.add_person(person, &mut conf.counts);
            }
            scored.push(scores(&conf));
        }
    }
    out
}

/// The (2.5, 97.5) percentiles of `values` (at least one).
fn percentile_interval(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    (percentile(&sorted, LOW_QUANTILE), percentile(&sorted, HIGH_QUANTILE))
}

/// The `q` quantile of sorted values, interpolating linearly between the order statistics
/// around rank `(n - 1) q` (numpy's default method).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (sorted.len() - 1) as f64 * q;
    let below = rank.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (rank - below as f64) * (sorted[above] - sorted[below])
}

#[cfg(test)]
mod tests;
