//! Confusion matrices and the competition's scores (macro F1 over the 18 classes, and per task).
//!
//! F1 follows `shared/bench/score.py`: per class `2tp / (2tp + fp + fn)`, averaged over the
//! classes that occur in the truth or in the predictions (a class absent from both is skipped,
//! so a small evaluation split is not penalised for classes it cannot contain).
use serde::{Deserialize, Serialize};

pub mod bootstrap;

/// An `n x n` count matrix: row = true class, column = predicted class (row-major).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Number of classes.
    pub n: usize,
    /// `counts[truth * n + pred]`.
    pub counts: Vec<u64>,
}

/// Per-class figures of a confusion matrix.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    /// tp / (tp + fp); 0 when the class was never predicted.
    pub precision: f64,
    /// tp / (tp + fn); 0 when the class never occurs in the truth.
    pub recall: f64,
    /// 2tp / (2tp + fp + fn); 0 when the class is absent from both sides.
    pub f1: f64,
    /// Number of samples whose true class is this one.
    pub support: u64,
}

/// The scores the competition and its three sub-tasks are judged by.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Macro F1 over the 18 classes (the competition's metric).
    pub f1: f64,
    /// Fraction of samples whose 18-way class is right.
    pub accuracy: f64,
    /// Macro F1 of the 3-way mask state (`class / 6`).
    pub f1_mask: f64,
    /// Macro F1 of the 2-way gender (`(class / 3) % 2`).
    pub f1_gender: f64,
    /// Macro F1 of the 3-way age band (`class % 3`).
    pub f1_age: f64,
}

/// One evaluation of a model on labelled images: the summed head losses, the scores and the
/// 18x18 confusion matrix (stored in best.json and printed by `masklab eval`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    pub loss: f64,
    #[serde(flatten)]
    pub scores: Scores,
    pub images: usize,
    /// Rows are true classes, columns predicted classes.
    pub confusion: Vec<Vec<u64>>,
    /// 95% intervals of the scores by a bootstrap over people, when they were drawn (absent in
    /// evaluations from before intervals, and with `intervals.resamples = 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<bootstrap::ScoreIntervals>,
}

impl Confusion {
    pub fn new(n: usize) -> Confusion {
        Confusion { n, counts: vec![0; n * n] }
    }

    /// Counts one sample. Classes out of range are a caller bug (labels are validated on load).
    pub fn add(&mut self, truth: usize, pred: usize) {
        assert!(
            truth < self.n && pred < self.n,
            "confusion of {} classes cannot count truth {truth}, prediction {pred}",
            self.n
        );
        self.counts[truth * self.n + pred] += 1;
    }

    /// Counts a batch of int64 class indices `[N]` (any device; they are copied to the host).
    pub fn add_tensors(&mut self, truth: &tch::Tensor, pred: &tch::Tensor) {
        // One host copy per batch is cheap next to the forward pass, and keeps range checks exact.
        let truth = host_classes(truth, "truth");
        let pred = host_classes(pred, "prediction");
        assert_eq!(
            truth.len(),
            pred.len(),
            "confusion: {} true classes but {} predictions",
            truth.len(),
            pred.len()
        );
        for (&t, &p) in truth.iter().zip(&pred) {
            assert!(t >= 0 && p >= 0, "confusion: negative class (truth {t}, prediction {p})");
            self.add(t as usize, p as usize);
        }
    }

    pub fn merge(&mut self, other: &Confusion) {
        assert_eq!(self.n, other.n, "cannot merge confusions of {} and {} classes", self.n, other.n);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Fraction of samples on the diagonal; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let correct: u64 = (0..self.n).map(|c| self.counts[c * self.n + c]).sum();
        correct as f64 / total as f64
    }

    /// Macro F1 over classes; a class absent from both truth and predictions is skipped (as ../shared/bench/score.py does).
    /// 0 for an empty matrix (score.py would divide by zero there).
    pub fn macro_f1(&self) -> f64 {
        let f1s: Vec<f64> = (0..self.n)
            .filter_map(|c| {
                let (tp, fp, fn_) = self.tp_fp_fn(c);
                (tp + fp + fn_ > 0).then(|| 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64)
            })
            .collect();
        if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        }
    }

    pub fn per_class(&self) -> Vec<ClassStats> {
        let ratio = |num: u64, den: u64| if den == 0 { 0.0 } else { num as f64 / den as f64 };
        (0..self.n)
            .map(|c| {
                let (tp, fp, fn_) = self.tp_fp_fn(c);
                ClassStats {
                    precision: ratio(tp, tp + fp),
                    recall: ratio(tp, tp + fn_),
                    f1: ratio(2 * tp, 2 * tp + fp + fn_),
                    support: tp + fn_,
                }
            })
            .collect()
    }

    /// The confusion of a derived task: `map(class) -> task class` with `n` task classes.
    pub fn reduce(&self, n: usize, map: impl Fn(usize) -> usize) -> Confusion {
        let mut reduced = Confusion::new(n);
        for truth in 0..self.n {
            for pred in 0..self.n {
                let count = self.counts[truth * self.n + pred];
                if count > 0 {
                    let (t, p) = (map(truth), map(pred));
                    assert!(t < n && p < n, "reduce: class map leaves the {n} task classes ({truth}->{t}, {pred}->{p})");
                    reduced.counts[t * n + p] += count;
                }
            }
        }
        reduced
    }

    /// Each row divided by its sum (the recall view of the matrix); rows without samples stay 0.
    pub fn row_normalised(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.n * self.n];
        for (row_out, row) in out.chunks_mut(self.n.max(1)).zip(self.counts.chunks(self.n.max(1))) {
            let sum: u64 = row.iter().sum();
            if sum > 0 {
                for (o, &c) in row_out.iter_mut().zip(row) {
                    *o = c as f64 / sum as f64;
                }
            }
        }
        out
    }

    fn tp_fp_fn(&self, class: usize) -> (u64, u64, u64) {
        let tp = self.counts[class * self.n + class];
        let row: u64 = self.counts[class * self.n..(class + 1) * self.n].iter().sum();
        let col: u64 = (0..self.n).map(|t| self.counts[t * self.n + class]).sum();
        (tp, col - tp, row - tp)
    }
}

fn host_classes(t: &tch::Tensor, what: &str) -> Vec<i64> {
    let flat = t.to_device(tch::Device::Cpu).to_kind(tch::Kind::Int64).reshape([-1]);
    Vec::<i64>::try_from(&flat).unwrap_or_else(|e| panic!("confusion: cannot read the {what} tensor: {e}"))
}

/// From an 18-way confusion: macro F1 over 18, accuracy, and macro F1 of mask (c/6), gender ((c/3)%2), age (c%3).
pub fn scores(conf18: &Confusion) -> Scores {
    assert_eq!(conf18.n, 18, "scores need the 18-way confusion, got {} classes", conf18.n);
    Scores {
        f1: conf18.macro_f1(),
        accuracy: conf18.accuracy(),
        f1_mask: conf18.reduce(3, |c| c / 6).macro_f1(),
        f1_gender: conf18.reduce(2, |c| (c / 3) % 2).macro_f1(),
        f1_age: conf18.reduce(3, |c| c % 3).macro_f1(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// 3 classes, class 2 absent from both sides:
    /// truth 0,0,0,1,1 / pred 0,0,1,1,0 -> tp0=2 fp0=1 fn0=1 -> F1 4/6; tp1=1 fp1=1 fn1=1 -> F1 2/4.
    #[test]
    fn macro_f1_skips_a_class_absent_from_both_sides() {
        let mut conf = Confusion::new(3);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (1, 0)] {
            conf.add(t, p);
        }
        assert!(close(conf.macro_f1(), (4.0 / 6.0 + 2.0 / 4.0) / 2.0));
        assert!(close(conf.accuracy(), 3.0 / 5.0));
        assert_eq!(conf.total(), 5);
        let stats = conf.per_class();
        assert!(close(stats[0].precision, 2.0 / 3.0) && close(stats[0].recall, 2.0 / 3.0));
        assert!(close(stats[1].precision, 0.5) && close(stats[1].recall, 0.5));
        assert_eq!((stats[0].support, stats[1].support, stats[2].support), (3, 2, 0));
        assert_eq!(stats[2].f1, 0.0);
    }

    /// A class only predicted (never true) is not skipped: it counts with F1 0.
    /// truth 0,0 / pred 0,1 -> class 0: tp1 fn1 -> 2/3; class 1: fp1 -> 0; mean 1/3.
    #[test]
    fn a_class_only_predicted_counts_as_zero() {
        let mut conf = Confusion::new(2);
        conf.add(0, 0);
        conf.add(0, 1);
        assert!(close(conf.macro_f1(), 1.0 / 3.0));
        assert_eq!(Confusion::new(4).macro_f1(), 0.0);
    }

    #[test]
    fn tensors_merge_reduce_and_normalise() {
        let mut a = Confusion::new(18);
        let truth = tch::Tensor::from_slice(&[0i64, 7, 17, 17]);
        let pred = tch::Tensor::from_slice(&[0i64, 6, 17, 5]);
        a.add_tensors(&truth, &pred);
        let mut b = Confusion::new(18);
        b.add(7, 7);
        a.merge(&b);
        assert_eq!(a.total(), 5);
        assert_eq!(a.counts[7 * 18 + 6], 1);
        assert_eq!(a.counts[17 * 18 + 5], 1);
        // Gender (c/3)%2: 0,5,6,7 -> 0,1,0,0 and 17 -> 1, so the pairs 0->0, 7->6, 17->17, 17->5, 7->7
        // become 0->0, 0->0, 1->1, 1->1, 0->0.
        let gender = a.reduce(2, |c| (c / 3) % 2);
        assert_eq!(gender.counts, vec![3, 0, 0, 2]);
        // Age c%3: 0->0, 7->6 is 1->0, 17->17 is 2->2, 17->5 is 2->2, 7->7 is 1->1.
        assert_eq!(a.reduce(3, |c| c % 3).counts, vec![1, 0, 0, 1, 1, 0, 0, 0, 2]);
        let rows = a.row_normalised();
        assert!(close(rows[17 * 18 + 17], 0.5) && close(rows[17 * 18 + 5], 0.5));
        assert!(rows[3 * 18..4 * 18].iter().all(|&v| v == 0.0));
    }

    /// Hand-worked 18-way case.
    /// Samples (truth -> pred): 0->0, 0->0, 1->1, 6->0, 6->6, 12->13, 13->13.
    /// 18-way: class 0 tp2 fp1 -> 4/5; class 1 tp1 -> 1; class 6 tp1 fn1 -> 2/3;
    ///   class 12 fn1 -> 0; class 13 tp1 fp1 -> 2/3; mean over these 5 = (0.8+1+2/3+0+2/3)/5.
    /// mask (c/6): truth 0,0,0,1,1,2,2 / pred 0,0,0,0,1,2,2 -> m0 tp3 fp1 -> 6/7; m1 tp1 fn1 -> 2/3; m2 -> 1.
    /// gender ((c/3)%2): 0,1,6,12 are male(0), 13 is (4)%2=0 too -> all 0: single class, F1 1.
    /// age (c%3): truth 0,0,1,0,0,0,1 / pred 0,0,1,0,0,1,1 -> a0 tp4 fn1 -> 8/9; a1 tp2 fp1 -> 4/5.
    #[test]
    fn scores_of_a_hand_worked_case() {
        let mut conf = Confusion::new(18);
        for (t, p) in [(0, 0), (0, 0), (1, 1), (6, 0), (6, 6), (12, 13), (13, 13)] {
            conf.add(t, p);
        }
        let s = scores(&conf);
        assert!(close(s.f1, (0.8 + 1.0 + 2.0 / 3.0 + 0.0 + 2.0 / 3.0) / 5.0), "{s:?}");
        assert!(close(s.accuracy, 5.0 / 7.0));
        assert!(close(s.f1_mask, (6.0 / 7.0 + 2.0 / 3.0 + 1.0) / 3.0));
        assert!(close(s.f1_gender, 1.0));
        assert!(close(s.f1_age, (8.0 / 9.0 + 0.8) / 2.0));
    }

    /// score.py's own algorithm, transliterated: tp/fp/fn accumulated pair by pair.
    fn score_py_macro_f1(pairs: &[(usize, usize)], n: usize) -> f64 {
        let (mut tp, mut fp, mut fn_) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
        for &(t, p) in pairs {
            if t == p {
                tp[t] += 1;
            } else {
                fn_[t] += 1;
                fp[p] += 1;
            }
        }
        let f1s: Vec<f64> = (0..n)
            .filter(|&c| tp[c] + fp[c] + fn_[c] > 0)
            .map(|c| 2.0 * tp[c] as f64 / (2 * tp[c] + fp[c] + fn_[c]) as f64)
            .collect();
        f1s.iter().sum::<f64>() / f1s.len() as f64
    }

    /// Agreement with score.py on pseudo-random pairs (a fixed LCG so the case is reproducible),
    /// including the numbers score.py itself printed for these pairs (rounded to 4 places).
    #[test]
    fn agrees_with_score_py() {
        let mut state: u64 = 12345;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        // Classes 0..15 only, so that 15..17 are absent from both sides and must be skipped.
        let pairs: Vec<(usize, usize)> = (0..200)
            .map(|_| {
                let t = next() % 15;
                let p = if next() % 3 == 0 { next() % 15 } else { t };
                (t, p)
            })
            .collect();
        let mut conf = Confusion::new(18);
        for &(t, p) in &pairs {
            conf.add(t, p);
        }
        let s = scores(&conf);
        assert!(close(s.f1, score_py_macro_f1(&pairs, 18)));
        let task = |f: fn(usize) -> usize| pairs.iter().map(|&(t, p)| (f(t), f(p))).collect::<Vec<_>>();
        assert!(close(s.f1_mask, score_py_macro_f1(&task(|c| c / 6), 3)));
        assert!(close(s.f1_gender, score_py_macro_f1(&task(|c| (c / 3) % 2), 2)));
        assert!(close(s.f1_age, score_py_macro_f1(&task(|c| c % 3), 3)));
        let round4 = |v: f64| (v * 1e4).round() / 1e4;
        assert_eq!(
            [round4(s.f1), round4(s.accuracy), round4(s.f1_mask), round4(s.f1_gender), round4(s.f1_age)],
            SCORE_PY_PRINTED
        );
    }

    /// `score.py` output for the pairs of `agrees_with_score_py` (f1, accuracy, f1_mask, f1_gender, f1_age).
    const SCORE_PY_PRINTED: [f64; 5] = [0.6443, 0.655, 0.7597, 0.8077, 0.7235];
}
