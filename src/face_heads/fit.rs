//! Fitting a run's face heads (`masklab tune RUN --face-heads NETWORK`): gender and age heads on
//! FaceRes features of the run's training people (nearest neighbours or linear), fusion weights
//! on its validation rows.
//!
//! Nothing here sees a validation person's label while fitting the heads: they learn from the
//! training split only (the validation people are the run's, read from its held-out rows); each
//! head's `k` (or L2 penalty) and the two fusion weights are then chosen by validation macro F1,
//! as the decision biases are afterwards. The softmax regression is written here (full-batch
//! Adam on standardised features, a cosine-decayed rate): a dozen lines where a solver crate
//! would add a linear-algebra stack for one use; the neighbour vote is one matrix product and a
//! top-k.
use super::features::FaceReader;
use super::{neighbour_votes, unit_rows, FaceHeads, FaceHeadsMeta, FaceHeadsReport, FaceReading, FusionWeights, HeadForm, HeadTensors, TASKS};
use crate::data::face_detection::{find_sets, set_faces, FacesOptions, SetFaces};
use crate::data::settings::DataConfig;
use crate::labels::NUM_CLASSES;
use crate::metrics::Confusion;
use crate::run_dir::heldout::HeldOutRow;
use crate::run_dir::metrics_log::History;
use crate::run_dir::RunDir;
use crate::util::argmax::argmax;
use crate::util::section::read;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// L2 penalties tried for each linear head (on the sum of squared weights of standardised features).
const L2_GRID: [f64; 4] = [1e-3, 1e-2, 3e-2, 1e-1];
/// Neighbours tried for each neighbour head (those up to the number of training faces).
const K_GRID: [i64; 4] = [10, 25, 50, 100];
/// Fusion weights tried for each head.
const WEIGHT_GRID: [f64; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
/// Full-batch optimiser steps per head.
const STEPS: i64 = 400;
const LEARNING_RATE: f64 = 0.05;

/// Which heads `tune --face-heads` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadKind {
    /// The votes of the most similar training faces.
    Neighbours,
    /// Softmax regression.
    Linear,
}

/// What `tune --face-heads` needs besides the run.
#[derive(Clone, Debug)]
pub struct FitRequest {
    pub reading: FaceReading,
    pub kind: HeadKind,
    /// The dataset the run trained on (default: the one its metrics.jsonl names).
    pub data: Option<PathBuf>,
    /// How missing faces are detected into the training set's faces.csv.
    pub faces: FacesOptions,
    /// Faces per FaceRes step.
    pub batch: usize,
}

/// The heads, what they did on validation, and the validation rows fused (to fit biases on).
pub struct Fitted {
    pub heads: FaceHeads,
    pub report: FaceHeadsReport,
    pub fused_rows: Vec<HeldOutRow>,
}

/// A photo's key across path spellings: its person folder and file name.
fn photo_key(path: &Path) -> Option<(String, String)> {
    let file = path.file_name()?.to_string_lossy().into_owned();
    let folder = path.parent()?.file_name()?.to_string_lossy().into_owned();
    Some((folder, file))
}

/// The dataset folder: as given, or as the run's metrics.jsonl recorded it.
fn data_folder(run: &RunDir, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = given {
        return Ok(d.to_path_buf());
    }
    let history = History::read(&run.metrics_file())?;
    history.start.data.ok_or_else(|| anyhow!("{}: names no dataset; give it with --data DATA", run.metrics_file().display()))
}

/// Fits the heads for `run` whose held-out rows are `rows` (its validation rows).
pub fn fit_for_run(run: &RunDir, rows: &[HeldOutRow], req: &FitRequest) -> Result<Fitted> {
    if run.is_kfold() {
        bail!("{}: --face-heads fits on one validation split; for a k-fold run, tune each fold's run folder instead", run.path().display());
    }
    let data = data_folder(run, req.data.as_deref())?;
    let config = read::<DataConfig>(&run.config_table()?).with_context(|| format!("{}", run.config_file().display()))?;
    let bounds = config.bounds()?;
    let sets = find_sets(&data, &config.read_options())?;
    let set = sets.into_iter().find(|s| s.kind == "train").ok_or_else(|| anyhow!("{}: no train/train.csv: --face-heads fits on the run's training set", data.display()))?;
    let train = set.train.clone().expect("a train set holds its TrainSet");
    let SetFaces { cache, photos, skipped } = set_faces(&set, &req.faces)?;
    for s in &skipped {
        crate::util::skips::warn_skipped(s);
    }

    // The run's validation people are its held-out rows' people; everyone else trained it.
    let val_people: BTreeSet<&str> = rows.iter().map(|r| r.person.as_str()).collect();
    let in_cache: BTreeSet<&PathBuf> = photos.iter().collect();
    let samples = train.samples(&bounds);
    let by_key: HashMap<(String, String), &PathBuf> = samples.iter().filter_map(|s| Some((photo_key(&s.path)?, &s.path))).collect();
    let train_samples: Vec<_> = samples.iter().filter(|s| !val_people.contains(train.people[s.person].folder.as_str()) && in_cache.contains(&s.path)).collect();
    if train_samples.is_empty() {
        bail!("{}: no training photo of the run's training people is in {}", data.display(), set.cache_path.display());
    }
    let mut val_paths = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let key = photo_key(Path::new(&r.path));
        let path = key.as_ref().and_then(|k| by_key.get(k)).ok_or_else(|| anyhow!("{}: validation row {} ({}) is not a photo of {}", run.val_predictions().display(), i + 2, r.path, data.display()))?;
        val_paths.push((*path).clone());
    }

    let started = std::time::Instant::now();
    let reader = FaceReader::open(&req.reading, req.faces.device)?;
    let train_paths: Vec<PathBuf> = train_samples.iter().map(|s| s.path.clone()).collect();
    let (train_faces, skipped) = reader.largest_faces(&train_paths, &cache, req.batch, req.faces.skip_bad)?;
    let (val_faces, more) = reader.largest_faces(&val_paths, &cache, req.batch, req.faces.skip_bad)?;
    for s in skipped.iter().chain(&more) {
        crate::util::skips::warn_skipped(s);
    }
    eprintln!("read {} training and {} validation photos with {} in {:.0}s", train_paths.len(), val_paths.len(), req.reading.network, started.elapsed().as_secs_f64());

    let with_face: Vec<usize> = (0..train_faces.len()).filter(|&i| train_faces.found[i]).collect();
    if with_face.len() < 10 {
        bail!("only {} training photos of {} have a face in {}: too few to fit heads on", with_face.len(), data.display(), set.cache_path.display());
    }
    let x = train_faces.select(&with_face).features;
    let classes: Vec<usize> = with_face.iter().map(|&i| train_samples[i].class.encode()).collect();
    let mean = x.mean_dim(0, false, Kind::Float);
    let std = x.std_dim(0, false, false) + 1e-6;
    let x = (&x - &mean) / &std;
    let val_seen: Vec<usize> = (0..val_faces.len()).filter(|&i| val_faces.found[i]).collect();
    let val_x = (val_faces.select(&val_seen).features - &mean) / &std;
    let val_truth: Vec<usize> = val_seen.iter().map(|&i| rows[i].truth).collect();

    let (form, tensors, val_f1_heads) = match req.kind {
        HeadKind::Linear => fit_linear(&x, &classes, &val_x, &val_truth)?,
        HeadKind::Neighbours => fit_neighbours(&x, &classes, &val_x, &val_truth)?,
    };

    let reading = req.reading.clone();
    let mut heads = FaceHeads::new(FaceHeadsMeta { reading: reading.clone(), weights: FusionWeights { gender: 0.0, age: 0.0 }, heads: form }, mean, std, tensors)?;
    let val_probs = Tensor::from_slice(&rows.iter().flat_map(|r| r.probs).collect::<Vec<f32>>()).view([rows.len() as i64, NUM_CLASSES as i64]);
    let truths: Vec<usize> = rows.iter().map(|r| r.truth).collect();
    let mut scored = Vec::new();
    for g in WEIGHT_GRID {
        for a in WEIGHT_GRID {
            let w = FusionWeights { gender: g, age: a };
            scored.push((w, macro_f1(NUM_CLASSES, &truths, &decisions(&heads.fuse_with(&val_probs, &val_faces, w))?)));
        }
    }
    // The first of equal scores: the smallest weights that reach the best F1.
    let (weights, fused_f1) = scored.iter().fold(scored[0], |best, s| if s.1 > best.1 { *s } else { best });
    heads.meta.weights = weights;
    let fused = Vec::<f32>::try_from(heads.fuse(&val_probs, &val_faces).contiguous().view([-1]))?;
    let fused_rows = rows
        .iter()
        .enumerate()
        .map(|(i, r)| HeldOutRow { probs: fused[i * NUM_CLASSES..(i + 1) * NUM_CLASSES].try_into().expect("18 values"), ..r.clone() })
        .collect();
    let report = FaceHeadsReport {
        reading,
        weights,
        heads: form,
        train_photos: with_face.len(),
        val_photos: rows.len(),
        val_with_face: val_seen.len(),
        val_f1_heads,
        val_f1_run: scored[0].1,
        val_f1_fused: fused_f1,
    };
    Ok(Fitted { heads, report, fused_rows })
}

/// The setting of `grid` whose head decides `truth` (classes of an `n`-way task) best by macro
/// F1 (the first of equals), with that F1 and what `head` kept of it; `head` gives a setting's
/// `[N, n]` probabilities of the validation faces and what to keep.
fn best_setting<S: Copy, T>(grid: impl IntoIterator<Item = S>, n: i64, truth: &[usize], mut head: impl FnMut(S) -> Result<(Tensor, T)>) -> Result<(f64, S, T)> {
    let mut best: Option<(f64, S, T)> = None;
    for setting in grid {
        let (probs, kept) = head(setting)?;
        let f1 = macro_f1(n as usize, truth, &decisions(&probs)?);
        if best.as_ref().is_none_or(|(f, _, _)| f1 > *f) {
            best = Some((f1, setting, kept));
        }
    }
    best.ok_or_else(|| anyhow!("no setting to choose a face head from"))
}

/// Each training face's (`classes`) and validation face's (`val_truth`) class of the task `of`.
fn task_labels(of: fn(usize) -> usize, classes: &[usize], val_truth: &[usize]) -> (Tensor, Vec<usize>) {
    (Tensor::from_slice(&classes.iter().map(|&c| of(c) as i64).collect::<Vec<_>>()), val_truth.iter().map(|&c| of(c)).collect())
}

/// Linear heads on standardised `x` (training faces of `classes`), each head's L2 penalty chosen
/// by macro F1 on `val_x` (validation faces of `val_truth`).
fn fit_linear(x: &Tensor, classes: &[usize], val_x: &Tensor, val_truth: &[usize]) -> Result<(HeadForm, HeadTensors, [f64; 2])> {
    let [gender, age] = TASKS.map(|(n, of)| {
        let (y, truth) = task_labels(of, classes, val_truth);
        best_setting(L2_GRID, n, &truth, |l2| {
            let (w, b) = fit_softmax(x, &y, n, l2)?;
            Ok(((val_x.matmul(&w) + &b).softmax(1, Kind::Float), (w, b)))
        })
    });
    let ((gender_f1, gender_l2, gender), (age_f1, age_l2, age)) = (gender?, age?);
    Ok((HeadForm::Linear { l2: [gender_l2, age_l2] }, HeadTensors::Linear { gender, age }, [gender_f1, age_f1]))
}

/// Neighbour heads over the training faces `x` (standardised) of `classes`, each head's `k` chosen
/// by macro F1 on `val_x` (validation faces of `val_truth`).
fn fit_neighbours(x: &Tensor, classes: &[usize], val_x: &Tensor, val_truth: &[usize]) -> Result<(HeadForm, HeadTensors, [f64; 2])> {
    // Rounded as the heads file stores it, so that fitting and predicting see the same bank.
    let bank = unit_rows(x).to_kind(Kind::Half).to_kind(Kind::Float);
    let sims = unit_rows(val_x).matmul(&bank.tr());
    let rows = bank.size()[0];
    let grid: BTreeSet<i64> = K_GRID.iter().map(|&k| k.min(rows)).collect();
    let [gender, age] = TASKS.map(|(n, of)| {
        let (labels, truth) = task_labels(of, classes, val_truth);
        best_setting(grid.iter().copied(), n, &truth, |k| Ok((neighbour_votes(&sims, &labels, n, k), ())))
    });
    let ((gender_f1, gender_k, ()), (age_f1, age_k, ())) = (gender?, age?);
    let k = [gender_k, age_k];
    let classes = Tensor::from_slice(&classes.iter().map(|&c| c as i64).collect::<Vec<_>>());
    Ok((HeadForm::Neighbours { k }, HeadTensors::Neighbours { bank, classes, k }, [gender_f1, age_f1]))
}

/// Softmax regression of `y` (`[N]` class indices) on standardised `x` (`[N, D]`) with an L2
/// penalty on the weights: full-batch Adam, the rate decayed to zero on a cosine. Deterministic.
fn fit_softmax(x: &Tensor, y: &Tensor, classes: i64, l2: f64) -> Result<(Tensor, Tensor)> {
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs.root().zeros("weight", &[x.size()[1], classes]);
    let b = vs.root().zeros("bias", &[classes]);
    let mut opt = nn::Adam::default().build(&vs, LEARNING_RATE)?;
    for step in 0..STEPS {
        opt.set_lr(LEARNING_RATE * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / STEPS as f64).cos()));
        let loss = (x.matmul(&w) + &b).cross_entropy_for_logits(y) + w.square().sum(Kind::Float) * l2;
        opt.backward_step(&loss);
    }
    let loss = f64::try_from((x.matmul(&w) + &b).cross_entropy_for_logits(y))?;
    if !loss.is_finite() {
        bail!("fitting a face head diverged (loss {loss})");
    }
    Ok((w.detach().copy(), b.detach().copy()))
}

/// The argmax of each row (the first of equals, as the submission decides).
fn decisions(probs: &Tensor) -> Result<Vec<usize>> {
    let n = probs.size()[1] as usize;
    let values = Vec::<f32>::try_from(probs.contiguous().view([-1]))?;
    Ok(values.chunks_exact(n.max(1)).map(argmax).collect())
}

fn macro_f1(n: usize, truth: &[usize], pred: &[usize]) -> f64 {
    let mut c = Confusion::new(n);
    for (&t, &p) in truth.iter().zip(pred) {
        c.add(t, p);
    }
    c.macro_f1()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_regression_separates_what_is_separable_and_the_penalty_shrinks_it() {
        tch::manual_seed(0);
        let x = Tensor::randn([200, 8], (Kind::Float, Device::Cpu));
        // Class = the sign of feature 3.
        let y = x.select(1, 3).gt(0.0).to_kind(Kind::Int64);
        let (w, b) = fit_softmax(&x, &y, 2, 1e-3).unwrap();
        let pred = decisions(&(x.matmul(&w) + &b).softmax(1, Kind::Float)).unwrap();
        let truth: Vec<usize> = Vec::<i64>::try_from(&y).unwrap().iter().map(|&v| v as usize).collect();
        assert!(macro_f1(2, &truth, &pred) > 0.97);
        let (strong, _) = fit_softmax(&x, &y, 2, 1.0).unwrap();
        assert!(f64::try_from(strong.square().sum(Kind::Float)).unwrap() < f64::try_from(w.square().sum(Kind::Float)).unwrap());
    }

    #[test]
    fn a_photo_is_known_by_its_folder_and_file_across_spellings() {
        assert_eq!(photo_key(Path::new("/d/train/images/000001_male_Asian_45/mask1.jpg")), photo_key(Path::new("data/train/images/000001_male_Asian_45/mask1.jpg")));
        assert_ne!(photo_key(Path::new("a/p1/mask1.jpg")), photo_key(Path::new("a/p2/mask1.jpg")));
    }
}
