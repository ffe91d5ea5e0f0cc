//! Confident learning on held-out probabilities, as Python's `cleanlab.filter.find_label_issues`
//! (cleanlab 2.x) does it with its defaults (`filter_by="prune_by_noise_rate"`, the calibrated
//! confident joint, `min_examples_per_class=1`, `frac_noise=1`):
//!
//! 1. per-class thresholds: the mean probability of class k over the rows labelled k (the class's
//!    mean self-confidence);
//! 2. each row's confident class: the one class whose probability reaches its threshold, or the
//!    row's argmax when several do (none when no class reaches it);
//! 3. the confident joint C[given][confident], its diagonal at least 1, calibrated so that each
//!    row sums to the count of its given label and the whole to the number of rows, rounded
//!    keeping row totals;
//! 4. for each off-diagonal (given i, true j), the C[i][j] rows labelled i with the largest
//!    margin p[j] - p[i] are issues (leaving at least one row of each given label);
//! 5. rows whose given label is their argmax are never issues.
//!
//! The module knows nothing about masks or people: rows are a label and K probabilities.

use crate::util::argmax::argmax;

/// A class no row is labelled with can never be a row's confident class (cleanlab: BIG_VALUE).
const ABSENT_CLASS_THRESHOLD: f64 = 2.0;
/// Probabilities within this of a threshold count as reaching it (cleanlab's tolerance).
const THRESHOLD_TOLERANCE: f64 = 1e-6;

#[derive(Clone, Debug, PartialEq)]
pub struct ConfidentLearning {
    /// Per-class thresholds (mean self-confidence).
    pub thresholds: Vec<f64>,
    /// Each row's confident class, if any class reaches its threshold.
    pub confident: Vec<Option<usize>>,
    /// The calibrated confident joint, C[given][true], in whole rows, summing to the number of rows.
    pub joint: Vec<Vec<f64>>,
    /// Whether each row is a label issue.
    pub issue: Vec<bool>,
}

/// Confident learning over rows of `labels[i]` and `probs[i]` (K probabilities each, K = the
/// length of every row). Panics when a label is out of range or rows differ in length: callers
/// check their input.
pub fn find_label_issues(labels: &[usize], probs: &[Vec<f64>]) -> ConfidentLearning {
    assert_eq!(labels.len(), probs.len(), "one label per row of probabilities");
    let k = probs.first().map(Vec::len).unwrap_or(0);
    let n = labels.len();
    let mut sums = vec![0.0; k];
    let mut counts = vec![0usize; k];
    for (&y, p) in labels.iter().zip(probs) {
        assert!(y < k && p.len() == k, "label {y} of {k} classes, row of {} probabilities", p.len());
        sums[y] += p[y];
        counts[y] += 1;
    }
    let thresholds: Vec<f64> =
        (0..k).map(|c| if counts[c] > 0 { (sums[c] / counts[c] as f64).max(1e-6) } else { ABSENT_CLASS_THRESHOLD }).collect();

    let confident: Vec<Option<usize>> = probs
        .iter()
        .map(|p| {
            let reached: Vec<usize> = (0..k).filter(|&c| p[c] >= thresholds[c] - THRESHOLD_TOLERANCE).collect();
            match reached.as_slice() {
                [] => None,
                [one] => Some(*one),
                _ => Some(argmax(p)),
            }
        })
        .collect();

    let mut counted = vec![vec![0.0f64; k]; k];
    for (&y, c) in labels.iter().zip(&confident) {
        if let Some(c) = c {
            counted[y][*c] += 1.0;
        }
    }
    for (c, row) in counted.iter_mut().enumerate() {
        row[c] = row[c].max(1.0);
    }
    // Calibrate: each given label's row sums to its count, then the whole to n.
    for (i, row) in counted.iter_mut().enumerate() {
        let total: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v *= counts[i] as f64 / total);
    }
    let total: f64 = counted.iter().flatten().sum();
    if total > 0.0 {
        counted.iter_mut().flatten().for_each(|v| *v *= n as f64 / total);
    }
    let joint: Vec<Vec<f64>> = counted.iter().map(|row| round_preserving_sum(row)).collect();

    let mut issue = vec![false; n];
    for i in 0..k {
        let rows: Vec<usize> = (0..n).filter(|&r| labels[r] == i).collect();
        for j in (0..k).filter(|&j| j != i) {
            // Never prune a class below one remaining example (cleanlab's min_examples_per_class).
            let remove = (joint[i][j] as usize).min(rows.len().saturating_sub(1));
            if remove == 0 {
                continue;
            }
            let mut by_margin = rows.clone();
            by_margin.sort_by(|&a, &b| (probs[b][j] - probs[b][i]).total_cmp(&(probs[a][j] - probs[a][i])).then(a.cmp(&b)));
            for &r in by_margin.iter().take(remove) {
                issue[r] = true;
            }
        }
    }
    for (r, p) in probs.iter().enumerate() {
        let label = labels[r];
        if p.iter().all(|&v| p[label] + THRESHOLD_TOLERANCE >= v) {
            issue[r] = false;
        }
    }
    ConfidentLearning { thresholds, confident, joint, issue }
}

/// Rounds half to even, then moves the entries furthest from their rounded value by one until
/// the integers sum to the rounded sum of the floats (cleanlab's `round_preserving_sum`).
fn round_preserving_sum(floats: &[f64]) -> Vec<f64> {
    let mut ints: Vec<f64> = floats.iter().map(|v| v.round_ties_even()).collect();
    let target = floats.iter().sum::<f64>().round_ties_even();
    let mut sum: f64 = ints.iter().sum();
    while (sum - target).abs() > 1e-6 {
        let step = if target > sum { 1.0 } else { -1.0 };
        let changes = ((target - sum).abs().round() as usize).min(floats.len());
        // Up: the most rounded down first; down: the most rounded up first (ties as numpy's
        // ascending argsort, reversed for up).
        let mut order: Vec<usize> = (0..floats.len()).collect();
        order.sort_by(|&a, &b| (floats[a] - ints[a]).total_cmp(&(floats[b] - ints[b])));
        if step > 0.0 {
            order.reverse();
        }
        for &i in order.iter().take(changes) {
            ints[i] += step;
        }
        sum = ints.iter().sum();
    }
    ints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_mean_self_confidence_and_confident_classes_use_them() {
        let labels = [0, 0, 1, 1, 1];
        let probs = vec![vec![0.9, 0.1], vec![0.7, 0.3], vec![0.2, 0.8], vec![0.4, 0.6], vec![0.85, 0.15]];
        let cl = find_label_issues(&labels, &probs);
        assert!((cl.thresholds[0] - 0.8).abs() < 1e-12);
        assert!((cl.thresholds[1] - (0.8 + 0.6 + 0.15) / 3.0).abs() < 1e-12);
        // Row 1 (0.7 / 0.3) reaches neither threshold; row 3 (0.4 / 0.6) reaches class 1's (0.517).
        assert_eq!(cl.confident, vec![Some(0), None, Some(1), Some(1), Some(0)]);
        // The row labelled 1 that is confidently 0 is the one issue.
        assert_eq!(cl.issue, vec![false, false, false, false, true]);
        let total: f64 = cl.joint.iter().flatten().sum();
        assert!((total - 5.0).abs() < 1e-9);
    }

    #[test]
    fn only_the_largest_margins_are_pruned_and_agreeing_rows_never() {
        // Ten rows labelled 0; two are confidently class 1. Of a third with some class-1
        // probability, the argmax is still its label: not an issue.
        let mut labels = vec![0; 10];
        let mut probs: Vec<Vec<f64>> = (0..10).map(|_| vec![0.95, 0.05]).collect();
        probs[3] = vec![0.1, 0.9];
        probs[7] = vec![0.05, 0.95];
        probs[5] = vec![0.55, 0.45];
        labels.extend([1; 5]);
        probs.extend((0..5).map(|_| vec![0.1, 0.9]));
        let cl = find_label_issues(&labels, &probs);
        let issues: Vec<usize> = (0..labels.len()).filter(|&r| cl.issue[r]).collect();
        assert_eq!(issues, vec![3, 7]);
    }

    #[test]
    fn rounding_keeps_the_total() {
        // numpy: [0, 2, 2], [1, 2, 1], [0, 1, 1] (checked against cleanlab.internal.util).
        assert_eq!(round_preserving_sum(&[0.5, 1.5, 2.5]), vec![0.0, 2.0, 2.0]);
        assert_eq!(round_preserving_sum(&[1.4, 1.4, 1.2]), vec![1.0, 2.0, 1.0]);
        assert_eq!(round_preserving_sum(&[0.6, 0.6, 0.8]), vec![0.0, 1.0, 1.0]);
    }

    #[test]
    fn an_absent_class_is_never_confident() {
        let cl = find_label_issues(&[0, 0], &[vec![0.4, 0.0, 0.6], vec![0.9, 0.0, 0.1]]);
        assert_eq!(cl.thresholds[1], ABSENT_CLASS_THRESHOLD);
        assert_eq!(cl.confident[0], None, "class 0's threshold is 0.65 and class 2 has no rows");
        assert!(cl.issue.iter().all(|i| !i));
    }
}
