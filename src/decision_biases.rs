//! Deciding for macro F1: argmax of the probabilities maximises accuracy, not macro F1, which
//! rewards getting rare classes (old men) right. `masklab tune RUN` fits one additive bias per
//! class (or per task head: 3 mask + 2 gender + 3 age) on the log-probabilities of held-out
//! predictions (a k-fold run's out-of-fold rows, else the run's validation rows) by coordinate
//! ascent on macro F1, and stores them in `RUN/tune.json`; `predict` applies them.
//!
//! A change is kept only when it raises the F1 of the rows being fitted, so tuning never lowers
//! it there. What it is worth on unseen data is measured by cross-fitting: fit on all groups but
//! one (k-fold folds, or person groups), decide the left-out group, and score those decisions.
//! `predict` applies the biases only when that held-out F1 rose; otherwise tune.json records
//! them (and why they are not used) and predict keeps the argmax, unless `tune --force` asked
//! for them anyway.
use crate::face_heads::fit::{fit_for_run, FitRequest};
use crate::face_heads::{FaceHeadsReport, HeadForm};
use crate::labels::{MIN_PROB, NUM_CLASSES};
use crate::metrics::Scores;
use crate::run_dir::heldout::{read_rows, score_pairs, score_rows, HeldOutRow};
use crate::run_dir::{checkpoint, RunDir, RunLock, BEST};
use crate::util::argmax::argmax;
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TuneBy {
    /// One bias per 18-way class.
    Class,
    /// One bias per task class: 3 mask + 2 gender + 3 age, added up per 18-way class.
    Task,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Biases {
    pub by: TuneBy,
    /// 18 values (by class) or 8 (mask 0..3, gender 3..5, age 5..8).
    pub values: Vec<f64>,
}

impl Biases {
    pub fn zero(by: TuneBy) -> Biases {
        Biases { by, values: vec![0.0; by.parameters()] }
    }

    /// The bias added to each 18-way class's log-probability.
    pub fn offsets(&self) -> [f64; NUM_CLASSES] {
        let mut o = [0.0; NUM_CLASSES];
        for (c, v) in o.iter_mut().enumerate() {
            *v = match self.by {
                TuneBy::Class => self.values[c],
                TuneBy::Task => self.values[c / 6] + self.values[3 + (c / 3) % 2] + self.values[5 + c % 3],
            };
        }
        o
    }

    /// The decision for one image.
    pub fn decide(&self, probs: &[f32; NUM_CLASSES]) -> usize {
        decide(&log_probs(probs), &self.offsets())
    }

    /// `[N, 18]` probabilities -> the renormalised `softmax(log p + bias)`, whose argmax is the decision.
    pub fn adjust(&self, probs: &Tensor) -> Tensor {
        let offsets = Tensor::from_slice(&self.offsets().map(|v| v as f32)).to_device(probs.device()).view([1, -1]);
        (probs.clamp_min(MIN_PROB).log() + offsets).softmax(1, tch::Kind::Float)
    }
}

impl TuneBy {
    fn parameters(self) -> usize {
        match self {
            TuneBy::Class => NUM_CLASSES,
            TuneBy::Task => 8,
        }
    }
}

fn log_probs(p: &[f32; NUM_CLASSES]) -> [f64; NUM_CLASSES] {
    p.map(|v| (v as f64).max(MIN_PROB).ln())
}

fn decide(log_p: &[f64; NUM_CLASSES], offsets: &[f64; NUM_CLASSES]) -> usize {
    let scores: Vec<f32> = log_p.iter().zip(offsets).map(|(l, o)| (l + o) as f32).collect();
    argmax(&scores)
}

/// Macro F1 of the decisions under `offsets`.
fn f1_with(log_ps: &[[f64; NUM_CLASSES]], truths: &[usize], offsets: &[f64; NUM_CLASSES]) -> f64 {
    let mut tp = [0u32; NUM_CLASSES];
    let mut predicted = [0u32; NUM_CLASSES];
    let mut actual = [0u32; NUM_CLASSES];
    for (lp, &t) in log_ps.iter().zip(truths) {
        let d = decide(lp, offsets);
        predicted[d] += 1;
        actual[t] += 1;
        if d == t {
            tp[d] += 1;
        }
    }
    // The same macro F1 as metrics::Confusion: classes absent from both sides do not count.
    let (mut sum, mut n) = (0.0, 0);
    for c in 0..NUM_CLASSES {
        if predicted[c] + actual[c] > 0 {
            sum += 2.0 * tp[c] as f64 / (predicted[c] + actual[c]) as f64;
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// How the search runs: each round tries every parameter at every grid value, others fixed.
#[derive(Clone, Copy, Debug)]
pub struct Search {
    pub rounds: usize,
    /// Biases tried: -range..=range in steps of `step`.
    pub range: f64,
    pub step: f64,
}

impl Default for Search {
    fn default() -> Self {
        Search { rounds: 3, range: 3.0, step: 0.1 }
    }
}

/// Fits biases on `rows` by coordinate ascent from zero; a value is taken only if it raises the F1.
pub fn fit(rows: &[HeldOutRow], by: TuneBy, search: &Search) -> Biases {
    let log_ps: Vec<[f64; NUM_CLASSES]> = rows.iter().map(|r| log_probs(&r.probs)).collect();
    let truths: Vec<usize> = rows.iter().map(|r| r.truth).collect();
    let mut b = Biases::zero(by);
    let mut best = f1_with(&log_ps, &truths, &b.offsets());
    // Smallest changes first: of values that do equally well, the first (closest to zero) stays.
    let steps = (search.range / search.step).round() as i64;
    let mut grid: Vec<f64> = (-steps..=steps).map(|i| i as f64 * search.step).collect();
    grid.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    for _ in 0..search.rounds {
        let mut improved = false;
        for j in 0..b.values.len() {
            let mut best_value = b.values[j];
            for &v in &grid {
                b.values[j] = v;
                let f = f1_with(&log_ps, &truths, &b.offsets());
                if f > best + 1e-12 {
                    best = f;
                    best_value = v;
                    improved = true;
                }
            }
            b.values[j] = best_value;
        }
        if !improved {
            break;
        }
    }
    b
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneReport {
    pub by: TuneBy,
    /// Where the rows came from (`oof_predictions.csv` or `val_predictions.csv`).
    pub source: String,
    pub images: usize,
    /// On the rows the stored biases were fitted on.
    pub fitted_before: Scores,
    pub fitted_after: Scores,
    /// Cross-fitted: each group decided by biases fitted on the other groups.
    pub held_out_groups: usize,
    pub held_out_before: Scores,
    pub held_out_after: Scores,
    pub biases: Biases,
    /// The user asked for the biases whatever the held-out estimate says (`tune --force`).
    #[serde(default)]
    pub forced: bool,
    /// Whether predict applies the biases: the held-out F1 rose, or `forced` (for people and
    /// other tools; masklab decides again from the scores when it reads the file).
    #[serde(default)]
    pub applied: bool,
    /// The face heads (`tune --face-heads`) the rows were fused with before the biases were
    /// fitted: predict and serve fuse with them, then apply the biases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_heads: Option<FaceHeadsReport>,
}

impl TuneReport {
    /// Whether the biases are worth applying: their cross-fitted (held-out) macro F1 is higher
    /// than the argmax's, or the user insisted.
    pub fn applies(&self) -> bool {
        self.forced || self.held_out_after.f1 > self.held_out_before.f1 + 1e-12
    }
}

/// Groups for cross-fitting: the k-fold folds when the rows carry them, else `groups` person
/// groups (people dealt round-robin in name order, so one person's rows stay together).
fn groups_of(rows: &[HeldOutRow], groups: usize) -> Vec<usize> {
    if rows.iter().all(|r| r.fold > 0) {
        return rows.iter().map(|r| r.fold).collect();
    }
    let mut people: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        let n = people.len();
        people.entry(r.person.as_str()).or_insert(n);
    }
    let order: BTreeMap<&str, usize> = people.keys().enumerate().map(|(i, p)| (*p, i % groups.max(2))).collect();
    rows.iter().map(|r| order[r.person.as_str()]).collect()
}

/// Fits on all rows, and cross-fits by group to report what the biases do on unseen rows.
pub fn tune_rows(rows: &[HeldOutRow], by: TuneBy, search: &Search, source: &str, groups: usize) -> Result<TuneReport> {
    if rows.is_empty() {
        bail!("{source}: no predictions to tune on");
    }
    let biases = fit(rows, by, search);
    let group = groups_of(rows, groups);
    let mut ids: Vec<usize> = group.clone();
    ids.sort_unstable();
    ids.dedup();
    let mut held_out_decisions = vec![0usize; rows.len()];
    for g in &ids {
        let train: Vec<HeldOutRow> = rows.iter().zip(&group).filter(|(_, h)| *h != g).map(|(r, _)| r.clone()).collect();
        let fitted = if train.is_empty() { Biases::zero(by) } else { fit(&train, by, search) };
        for (i, (r, h)) in rows.iter().zip(&group).enumerate() {
            if h == g {
                held_out_decisions[i] = fitted.decide(&r.probs);
            }
        }
    }
    let before = score_rows(rows, |r| r.predicted());
    let mut report = TuneReport {
        by,
        source: source.to_string(),
        images: rows.len(),
        fitted_before: before,
        fitted_after: score_rows(rows, |r| biases.decide(&r.probs)),
        held_out_groups: ids.len(),
        held_out_before: before,
        held_out_after: score_pairs(rows.iter().zip(&held_out_decisions).map(|(r, d)| (r.truth, *d))),
        biases,
        forced: false,
        applied: false,
        face_heads: None,
    };
    report.applied = report.applies();
    Ok(report)
}

/// `masklab tune RUN`: fits on the run's out-of-fold (k-fold) or validation predictions and
/// writes `RUN/tune.json` (holding the run's lock). `force`: apply the biases in predict even
/// when the held-out F1 does not rise. With `face_heads`, first fits the run's face heads
/// (`RUN/face_heads.safetensors`) and fits the biases on the fused rows. A run whose checkpoint
/// holds non-finite values is refused.
pub fn tune_run(run: &RunDir, by: TuneBy, search: &Search, groups: usize, force: bool, face_heads: Option<&FitRequest>) -> Result<TuneReport> {
    let path = if run.is_kfold() { run.oof_predictions() } else { run.val_predictions() };
    if !path.is_file() {
        bail!("{} not found: tune needs a trained run with a validation split (or a finished k-fold run)", path.display());
    }
    let _lock = RunLock::acquire(run, "tune")?;
    for member in run.member_runs()? {
        let best = member.checkpoint(BEST);
        if best.is_file() {
            checkpoint::load_finite(&best, checkpoint::DIVERGED_RUN)?;
        }
    }
    let rows = read_rows(&path)?;
    let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let fitted = face_heads.map(|req| fit_for_run(run, &rows, req)).transpose()?;
    let rows = fitted.as_ref().map_or(rows, |f| f.fused_rows.clone());
    let mut report = tune_rows(&rows, by, search, &source, groups)?;
    report.forced = force;
    report.applied = report.applies();
    if let Some(f) = fitted {
        // The heads first: tune.json names them only once they are on disk.
        f.heads.save(&run.face_heads_file())?;
        report.face_heads = Some(f.report);
    }
    write_atomic(&run.tune_file(), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

/// `RUN/tune.json`, if the run was tuned.
pub fn load_tuning(run: &RunDir) -> Result<Option<TuneReport>> {
    let path = run.tune_file();
    if !path.is_file() {
        return Ok(None);
    }
    let report: TuneReport = serde_json::from_slice(&std::fs::read(&path)?).with_context(|| format!("{} is not a tune result", path.display()))?;
    if report.biases.values.len() != report.biases.by.parameters() {
        bail!("{}: {} biases for tuning by {:?}", path.display(), report.biases.values.len(), report.biases.by);
    }
    if report.biases.values.iter().any(|v| !v.is_finite()) {
        bail!("{}: the biases are not all finite numbers", path.display());
    }
    Ok(Some(report))
}

/// The biases stored in `RUN/tune.json` that predict applies: None when the run was not tuned,
/// or when its biases did not raise the held-out F1 and were not forced.
pub fn load_biases(run: &RunDir) -> Result<Option<Biases>> {
    Ok(load_tuning(run)?.as_ref().and_then(TuneReport::applied_biases))
}

impl TuneReport {
    /// The biases predict applies ([`TuneReport::applies`]), or None.
    pub fn applied_biases(&self) -> Option<Biases> {
        self.applies().then(|| self.biases.clone())
    }

    /// Why the biases are not applied, for predict to say (None when they are).
    pub fn not_applied_reason(&self) -> Option<String> {
        (!self.applies()).then(|| {
            format!(
                "its tune.json biases do not raise the held-out macro F1 ({:.4} -> {:.4}), so they are not applied (argmax); `masklab tune --force` applies them anyway",
                self.held_out_before.f1, self.held_out_after.f1
            )
        })
    }
}

pub fn render(r: &TuneReport) -> String {
    let line = |name: &str, s: &Scores| {
        format!("  {name:<28} f1 {:.4}  accuracy {:.4}  (mask {:.4} gender {:.4} age {:.4})\n", s.f1, s.accuracy, s.f1_mask, s.f1_gender, s.f1_age)
    };
    let mut s = format!("tuned by {:?} on {} ({} images)\n", r.by, r.source, r.images).to_lowercase();
    if let Some(h) = &r.face_heads {
        let form = match h.heads {
            HeadForm::Linear { l2 } => format!("linear heads (L2 {} and {})", l2[0], l2[1]),
            HeadForm::Neighbours { k } => format!("neighbour heads (k {} and {})", k[0], k[1]),
        };
        s.push_str(&format!(
            "face heads on {} features (margin {}), {form} over {} training photos with a face: validation f1 {:.4} -> {:.4} fused \
             (weights: gender {}, age {}; heads alone on the {} of {} validation photos with a face: gender {:.4}, age {:.4}); the rows below are fused\n",
            h.reading.network, h.reading.margin, h.train_photos, h.val_f1_run, h.val_f1_fused, h.weights.gender, h.weights.age,
            h.val_with_face, h.val_photos, h.val_f1_heads[0], h.val_f1_heads[1]
        ));
    }
    s.push_str(&line("fitted rows, argmax", &r.fitted_before));
    s.push_str(&line("fitted rows, tuned", &r.fitted_after));
    s.push_str(&format!("held out ({} groups, each decided by biases fitted on the others):\n", r.held_out_groups));
    s.push_str(&line("held out, argmax", &r.held_out_before));
    s.push_str(&line("held out, tuned", &r.held_out_after));
    s.push_str(&format!("  biases: {}\n", r.biases.values.iter().map(|v| format!("{v:+.1}")).collect::<Vec<_>>().join(" ")));
    let (before, after) = (r.held_out_before.f1, r.held_out_after.f1);
    s.push_str(&if r.held_out_after.f1 > r.held_out_before.f1 + 1e-12 {
        format!("predict applies them: the held-out F1 rises ({before:.4} -> {after:.4})\n")
    } else if r.forced {
        format!("predict applies them as asked (--force), although the held-out F1 does not rise ({before:.4} -> {after:.4})\n")
    } else {
        format!("predict does NOT apply them: the held-out F1 does not rise ({before:.4} -> {after:.4}); it keeps the argmax (tune --force applies them anyway)\n")
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Rows whose probabilities under-rate the rare classes 2 and 5, as a model trained on
    /// imbalanced data does; people p0..p(n/7).
    fn skewed_rows(n: usize, seed: u64) -> Vec<HeldOutRow> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let truth = if i % 9 == 0 { [2, 5][i % 2] } else { [0, 1, 3, 4, 6][i % 5] };
                let mut logits = [0f64; NUM_CLASSES];
                for (c, l) in logits.iter_mut().enumerate() {
                    *l = rng.gen_range(-1.0..1.0) + if c == truth { 1.5 } else { 0.0 } - if c == 2 || c == 5 { 1.2 } else { 0.0 };
                }
                let z: f64 = logits.iter().map(|l| l.exp()).sum();
                HeldOutRow { path: format!("{i}.jpg"), person: format!("p{}", i / 7), fold: 0, truth, probs: logits.map(|l| (l.exp() / z) as f32) }
            })
            .collect()
    }

    #[test]
    fn tuning_never_lowers_the_fitted_f1_and_lifts_rare_classes() {
        for seed in 0..4 {
            let rows = skewed_rows(400, seed);
            for by in [TuneBy::Class, TuneBy::Task] {
                let b = fit(&rows, by, &Search::default());
                let before = score_rows(&rows, |r| r.predicted()).f1;
                let after = score_rows(&rows, |r| b.decide(&r.probs)).f1;
                assert!(after >= before, "{by:?} seed {seed}: {before} -> {after}");
                if by == TuneBy::Class {
                    assert!(after > before + 0.02, "class biases should help under-rated classes: {before} -> {after}");
                    assert!(b.values[2] > 0.0 && b.values[5] > 0.0, "{:?}", b.values);
                }
            }
        }
    }

    #[test]
    fn zero_biases_decide_as_argmax_and_adjust_keeps_distributions() {
        let rows = skewed_rows(50, 9);
        let z = Biases::zero(TuneBy::Task);
        assert!(rows.iter().all(|r| z.decide(&r.probs) == r.predicted()));
        let mut b = Biases::zero(TuneBy::Class);
        b.values[2] = 1.0;
        let p = Tensor::from_slice(&rows[0].probs).view([1, -1]);
        let adjusted = b.adjust(&p);
        let v = Vec::<f32>::try_from(adjusted.view([-1])).unwrap();
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // exp(1) times the odds of class 2 against class 0.
        let ratio = (v[2] / v[0]) / (rows[0].probs[2] / rows[0].probs[0]);
        assert!((ratio - std::f32::consts::E).abs() < 1e-3, "{ratio}");
        assert_eq!(argmax(&v), b.decide(&rows[0].probs));
    }

    #[test]
    fn biases_apply_only_when_the_held_out_f1_rises_or_when_forced() {
        let rows = skewed_rows(350, 3);
        let r = tune_rows(&rows, TuneBy::Class, &Search::default(), "test", 5).unwrap();
        assert!(r.held_out_after.f1 > r.held_out_before.f1, "under-rated classes: held out {} -> {}", r.held_out_before.f1, r.held_out_after.f1);
        assert!(r.applies() && r.applied);
        let flat = TuneReport { held_out_after: r.held_out_before, ..r.clone() };
        assert!(!flat.applies());
        let worse = TuneReport { held_out_after: Scores { f1: r.held_out_before.f1 - 0.05, ..r.held_out_before }, ..r.clone() };
        assert!(!worse.applies() && render(&worse).contains("does NOT apply"), "{}", render(&worse));
        let forced = TuneReport { forced: true, ..worse };
        assert!(forced.applies() && render(&forced).contains("--force"));

        // Stored and read back through the run folder: predict gets biases only when they apply.
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        for (report, applied) in [(&r, true), (&flat, false), (&forced, true)] {
            write_atomic(&run.tune_file(), serde_json::to_string(report).unwrap().as_bytes()).unwrap();
            assert_eq!(load_biases(&run).unwrap().is_some(), applied);
            assert_eq!(load_tuning(&run).unwrap().unwrap().not_applied_reason().is_none(), applied);
        }
        // A tune.json from before `forced` existed is decided by its scores alone.
        let mut old = serde_json::to_value(&flat).unwrap();
        old.as_object_mut().unwrap().retain(|k, _| k != "forced" && k != "applied");
        write_atomic(&run.tune_file(), old.to_string().as_bytes()).unwrap();
        assert!(load_biases(&run).unwrap().is_none());
    }

    #[test]
    fn task_biases_add_up_per_class() {
        let b = Biases { by: TuneBy::Task, values: vec![1.0, 2.0, 3.0, 10.0, 20.0, 100.0, 200.0, 300.0] };
        let o = b.offsets();
        // class 0 = Wear/Male/young: mask 0, gender 0, age 0; class 17 = NotWear/Female/old.
        assert_eq!(o[0], 1.0 + 10.0 + 100.0);
        assert_eq!(o[17], 3.0 + 20.0 + 300.0);
        assert_eq!(o[8], 2.0 + 10.0 + 300.0); // 8 = mask 1, gender 0, age 2
    }

    #[test]
    fn held_out_groups_keep_people_together_and_report_honestly() {
        let rows = skewed_rows(350, 3);
        let r = tune_rows(&rows, TuneBy::Class, &Search::default(), "test", 5).unwrap();
        assert_eq!(r.held_out_groups, 5);
        let g = groups_of(&rows, 5);
        for (a, b) in rows.iter().zip(&g) {
            for (c, d) in rows.iter().zip(&g) {
                if a.person == c.person {
                    assert_eq!(b, d);
                }
            }
        }
        assert!(r.fitted_after.f1 >= r.fitted_before.f1);
        assert_eq!(r.held_out_before, r.fitted_before);
        // Rows with folds are grouped by fold.
        let folded: Vec<HeldOutRow> = rows.iter().enumerate().map(|(i, r)| HeldOutRow { fold: 1 + i % 3, ..r.clone() }).collect();
        assert_eq!(tune_rows(&folded, TuneBy::Task, &Search::default(), "t", 5).unwrap().held_out_groups, 3);
    }
}
