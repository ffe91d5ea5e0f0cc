//! A second opinion on gender and age from a face-trained network, stored in a run.
//!
//! ImageNet features know little about faces; FaceRes (trained on VGGFace2 faces) knows them
//! well. `masklab tune RUN --face-heads faceres-deep` reads FaceRes's pooled features of the
//! largest face of each training photo of the run's training people and builds two heads on them
//! (gender, age band): by default the votes of the most similar training faces
//! ([`HeadForm::Neighbours`]), or softmax regression ([`HeadForm::Linear`]). It then chooses on
//! the run's validation rows how much each head's log-probabilities add to the run's
//! ([`FusionWeights`]) and fits the decision biases on the fused rows. `predict`, `predict
//! --faces` and `serve` read each face's features and fuse before the biases; a photo where no
//! face was found keeps the run's own probabilities.
//!
//! Fusion, per image with a face: `softmax(log p + w_gender * log g[gender(c)] + w_age * log
//! a[age(c)])` over the 18 classes `c`, each probability floored at [`MIN_PROB`] as the decision
//! biases floor theirs.
pub mod features;
pub mod fit;

use crate::labels::{MIN_PROB, NUM_CLASSES};
use crate::run_dir::{checkpoint, RunDir};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// How much each head's log-probabilities weigh beside the run's (0: not at all).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    pub gender: f64,
    pub age: f64,
}

/// Which face reading the heads need: the FaceRes weights and the face framing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceReading {
    /// `faceres` or `faceres-deep`.
    pub network: String,
    /// The MTCNN box grown by this share of its size on every side, then squared.
    pub margin: f32,
}

impl FaceReading {
    /// A key for maps of features by reading (the margin by its bits: two readings are the same
    /// only when the margins are identical).
    pub fn key(&self) -> (String, u32) {
        (self.network.clone(), self.margin.to_bits())
    }
}

/// How the heads read gender and age from a face's features, with what was chosen for each head
/// (gender, age) on the validation rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HeadForm {
    /// Softmax regression on the standardised features, with this L2 penalty.
    Linear { l2: [f64; 2] },
    /// The votes of the `k` training faces most similar to the face (cosine of the standardised
    /// features), each weighing `exp(SHARPNESS * cosine)`. Measured ahead of the linear heads
    /// over four cpu-quick runs on the stand-in (README, Presets): the neighbours agree less
    /// with the run, so fusing them adds more.
    Neighbours { k: [i64; 2] },
}

/// How sharply a neighbour's vote falls with its distance: `exp(SHARPNESS * cosine)`.
pub const SHARPNESS: f64 = 10.0;
/// Added to every class's votes, so that no class has probability 0.
const VOTE_PRIOR: f64 = 1e-3;

/// What the heads file records beside its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceHeadsMeta {
    pub reading: FaceReading,
    pub weights: FusionWeights,
    pub heads: HeadForm,
}

/// The stored heads' tensors.
#[derive(Debug)]
pub enum HeadTensors {
    /// Weights and biases: `[1024, 2]` and `[2]` (gender), `[1024, 3]` and `[3]` (age).
    Linear { gender: (Tensor, Tensor), age: (Tensor, Tensor) },
    /// `bank`: the training faces' standardised features scaled to unit length, `[M, 1024]`;
    /// `classes`: each one's 18-way class, `[M]`; `k`: the neighbours voting (gender, age).
    Neighbours { bank: Tensor, classes: Tensor, k: [i64; 2] },
}

/// The stored heads, ready to fuse.
#[derive(Debug)]
pub struct FaceHeads {
    pub meta: FaceHeadsMeta,
    /// Feature standardisation: `(x - mean) / std`, `[1024]` each.
    mean: Tensor,
    std: Tensor,
    tensors: HeadTensors,
}

/// The features of one batch of images for one reading: `features[i]` is meaningful only where
/// `found[i]` (a face was found in image `i`).
#[derive(Debug)]
pub struct FaceFeatures {
    /// `[N, 1024]` (CPU, float).
    pub features: Tensor,
    pub found: Vec<bool>,
}

impl FaceFeatures {
    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The rows `rows` (in that order).
    pub fn select(&self, rows: &[usize]) -> FaceFeatures {
        let idx = Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>());
        FaceFeatures { features: self.features.index_select(0, &idx), found: rows.iter().map(|&i| self.found[i]).collect() }
    }
}

/// Face features of a batch, by reading: what the ensemble's heads fuse.
pub type FaceEvidence = BTreeMap<(String, u32), FaceFeatures>;

/// A head's task: its number of classes, and the class of the task each 18-way class belongs to.
pub(crate) type Task = (i64, fn(usize) -> usize);

/// The heads' two tasks: gender (0 male, 1 female) and age band (0..3).
pub(crate) const TASKS: [Task; 2] = [(2, |c| (c / 3) % 2), (3, |c| c % 3)];

/// Each class's gender and age band, as `[18]` index tensors.
fn task_index() -> (Tensor, Tensor) {
    let index = |(_, of): Task| Tensor::from_slice(&(0..NUM_CLASSES).map(|c| of(c) as i64).collect::<Vec<_>>());
    (index(TASKS[0]), index(TASKS[1]))
}

/// Standardised features scaled to unit length: what neighbours are compared by.
pub fn unit_rows(standardised: &Tensor) -> Tensor {
    standardised / standardised.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

/// `[N, n]` probabilities from the votes of each row's `k` most similar bank rows: `sims` is
/// `[N, M]` cosines, `labels` the bank rows' `[M]` classes of the task.
pub fn neighbour_votes(sims: &Tensor, labels: &Tensor, n: i64, k: i64) -> Tensor {
    let (top, index) = sims.topk(k, 1, true, true);
    let votes = Tensor::zeros([sims.size()[0], n], (Kind::Float, Device::Cpu)).scatter_add(1, &labels.index_select(0, &index.view([-1])).view_as(&index), &(top * SHARPNESS).exp())
        + VOTE_PRIOR;
    &votes / votes.sum_dim_intlist(1, true, Kind::Float)
}

impl FaceHeads {
    /// Heads from their tensors; `meta.heads` must describe them (the same form, the same `k`).
    pub fn new(meta: FaceHeadsMeta, mean: Tensor, std: Tensor, tensors: HeadTensors) -> Result<FaceHeads> {
        match (&tensors, meta.heads) {
            (HeadTensors::Linear { .. }, HeadForm::Linear { .. }) => {}
            (HeadTensors::Neighbours { bank, k, .. }, HeadForm::Neighbours { k: form_k }) => {
                let rows = bank.size()[0];
                if *k != form_k || k.iter().any(|&k| k < 1 || k > rows) {
                    bail!("neighbour heads: k {form_k:?} recorded, {k:?} held, over {rows} training faces (each k must be 1..={rows})");
                }
            }
            (_, form) => bail!("face heads recorded as {form:?} hold the other kind's tensors"),
        }
        Ok(FaceHeads { meta, mean, std, tensors })
    }

    /// `[N, 2]` gender and `[N, 3]` age-band probabilities of `[N, 1024]` features.
    pub fn task_probs(&self, features: &Tensor) -> (Tensor, Tensor) {
        let x = (features.to_device(Device::Cpu).to_kind(Kind::Float) - &self.mean) / &self.std;
        match &self.tensors {
            HeadTensors::Linear { gender, age } => {
                let head = |(w, b): &(Tensor, Tensor)| (x.matmul(w) + b).softmax(1, Kind::Float);
                (head(gender), head(age))
            }
            HeadTensors::Neighbours { bank, classes, k } => {
                let sims = unit_rows(&x).matmul(&bank.tr());
                let (gender_of, age_of) = task_index();
                (neighbour_votes(&sims, &gender_of.index_select(0, classes), 2, k[0]), neighbour_votes(&sims, &age_of.index_select(0, classes), 3, k[1]))
            }
        }
    }

    /// `[N, 18]` probabilities fused with the heads' reading of `faces` (rows without a face kept).
    pub fn fuse(&self, probs: &Tensor, faces: &FaceFeatures) -> Tensor {
        self.fuse_with(probs, faces, self.meta.weights)
    }

    /// [`FaceHeads::fuse`] with other weights (the weight search).
    pub fn fuse_with(&self, probs: &Tensor, faces: &FaceFeatures, w: FusionWeights) -> Tensor {
        let probs = probs.to_device(Device::Cpu).to_kind(Kind::Float);
        let (gender, age) = self.task_probs(&faces.features);
        let (gi, ai) = task_index();
        let opinion = gender.clamp_min(MIN_PROB).log().index_select(1, &gi) * w.gender + age.clamp_min(MIN_PROB).log().index_select(1, &ai) * w.age;
        let found = Tensor::from_slice(&faces.found.iter().map(|&f| f as u8 as f32).collect::<Vec<_>>()).view([-1, 1]);
        (probs.clamp_min(MIN_PROB).log() + opinion * found).softmax(1, Kind::Float)
    }

    /// Writes the heads; a neighbour bank is stored in half precision (2 KB per training face: 20
    /// MB for a cpu-quick run's 9,833 faces on the full stand-in), which moves a cosine of unit
    /// rows by under 1e-3.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = vec![("mean", self.mean.shallow_clone()), ("std", self.std.shallow_clone())];
        match &self.tensors {
            HeadTensors::Linear { gender, age } => tensors.extend([
                ("gender.weight", gender.0.shallow_clone()),
                ("gender.bias", gender.1.shallow_clone()),
                ("age.weight", age.0.shallow_clone()),
                ("age.bias", age.1.shallow_clone()),
            ]),
            HeadTensors::Neighbours { bank, classes, .. } => tensors.extend([("bank", bank.to_kind(Kind::Half)), ("classes", classes.shallow_clone())]),
        }
        let tensors: Vec<(String, Tensor)> = tensors.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        checkpoint::save(path, &tensors, &serde_json::to_value(&self.meta)?)
    }

    /// Reads a heads file, checking every tensor's shape and that the values are finite.
    pub fn load(path: &Path) -> Result<FaceHeads> {
        let (tensors, meta) = checkpoint::load_finite(path, "fit the heads again with `masklab tune RUN --face-heads NETWORK`")?;
        let meta: FaceHeadsMeta = serde_json::from_value(meta).with_context(|| format!("{}: not a face-heads file (no reading and weights in its metadata)", path.display()))?;
        let mut by_name: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        let features = crate::model::faceres::FEATURES;
        let mut take = |name: &str, shape: &[i64]| -> Result<Tensor> {
            let t = by_name.remove(name).ok_or_else(|| anyhow::anyhow!("{}: no tensor {name}", path.display()))?;
            // -1: any length (the number of training faces).
            if t.size().len() != shape.len() || t.size().iter().zip(shape).any(|(&got, &want)| want >= 0 && got != want) {
                bail!("{}: {name} is {:?}, expected {shape:?}", path.display(), t.size());
            }
            Ok(t)
        };
        let (mean, std) = (take("mean", &[features])?.to_kind(Kind::Float), take("std", &[features])?.to_kind(Kind::Float));
        let tensors = match meta.heads {
            HeadForm::Linear { .. } => HeadTensors::Linear {
                gender: (take("gender.weight", &[features, 2])?.to_kind(Kind::Float), take("gender.bias", &[2])?.to_kind(Kind::Float)),
                age: (take("age.weight", &[features, 3])?.to_kind(Kind::Float), take("age.bias", &[3])?.to_kind(Kind::Float)),
            },
            HeadForm::Neighbours { k } => {
                let bank = take("bank", &[-1, features])?.to_kind(Kind::Float);
                let classes = take("classes", &[bank.size()[0]])?;
                if classes.kind() != Kind::Int64 || Vec::<i64>::try_from(&classes)?.iter().any(|&c| !(0..NUM_CLASSES as i64).contains(&c)) {
                    bail!("{}: classes must be 64-bit class numbers 0..{}", path.display(), NUM_CLASSES - 1);
                }
                HeadTensors::Neighbours { bank, classes, k }
            }
        };
        let heads = FaceHeads::new(meta, mean, std, tensors).with_context(|| format!("{}", path.display()))?;
        if Vec::<f32>::try_from(&heads.std)?.iter().any(|&s| s <= 0.0) {
            bail!("{}: std holds a value that is not positive", path.display());
        }
        if !heads.meta.weights.gender.is_finite() || !heads.meta.weights.age.is_finite() || heads.meta.weights.gender < 0.0 || heads.meta.weights.age < 0.0 {
            bail!("{}: fusion weights must be finite and non-negative, got {:?}", path.display(), heads.meta.weights);
        }
        crate::model::faceres::find_weights(&heads.meta.reading.network)
            .ok_or_else(|| anyhow::anyhow!("{}: unknown network {:?} (faceres, faceres-deep)", path.display(), heads.meta.reading.network))?;
        Ok(heads)
    }
}

/// What `tune --face-heads` found, recorded in the run's tune.json; its presence there is what
/// makes predict and serve fuse (a plain `tune` afterwards drops it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceHeadsReport {
    pub reading: FaceReading,
    pub weights: FusionWeights,
    /// The heads' form and what was chosen for each on the validation rows.
    pub heads: HeadForm,
    /// Training photos (of the run's training people) with a face, the heads were fitted on.
    pub train_photos: usize,
    pub val_photos: usize,
    pub val_with_face: usize,
    /// Validation macro F1 of each head alone on the validation photos with a face (gender, age).
    pub val_f1_heads: [f64; 2],
    /// Validation 18-way macro F1 (argmax) of the run alone, and fused.
    pub val_f1_run: f64,
    pub val_f1_fused: f64,
}

/// The run's heads when its tune.json names them.
pub fn load_for_run(run: &RunDir, report: Option<&FaceHeadsReport>) -> Result<Option<FaceHeads>> {
    let Some(report) = report else { return Ok(None) };
    let path = run.face_heads_file();
    if !path.is_file() {
        bail!("{}: its tune.json names face heads, but {} is missing; run `masklab tune {} --face-heads {}` again", run.path().display(), path.display(), run.path().display(), report.reading.network);
    }
    let heads = FaceHeads::load(&path)?;
    if heads.meta.reading != report.reading || heads.meta.weights != report.weights || heads.meta.heads != report.heads {
        bail!("{}: does not match the run's tune.json (written by another tune); run `masklab tune {} --face-heads {}` again", path.display(), run.path().display(), report.reading.network);
    }
    Ok(Some(heads))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(weights: FusionWeights) -> FaceHeads {
        tch::manual_seed(3);
        let f = crate::model::faceres::FEATURES;
        let opts = (Kind::Float, Device::Cpu);
        FaceHeads::new(
            FaceHeadsMeta { reading: FaceReading { network: "faceres-deep".into(), margin: 0.1 }, weights, heads: HeadForm::Linear { l2: [0.01, 0.1] } },
            Tensor::randn([f], opts),
            Tensor::rand([f], opts) + 0.5,
            HeadTensors::Linear { gender: (Tensor::randn([f, 2], opts) * 0.05, Tensor::randn([2], opts)), age: (Tensor::randn([f, 3], opts) * 0.05, Tensor::randn([3], opts)) },
        )
        .unwrap()
    }

    /// Neighbour heads over `m` random training faces.
    fn neighbour_heads(m: i64, k: [i64; 2]) -> FaceHeads {
        tch::manual_seed(4);
        let f = crate::model::faceres::FEATURES;
        let opts = (Kind::Float, Device::Cpu);
        let bank = unit_rows(&Tensor::randn([m, f], opts)).to_kind(Kind::Half).to_kind(Kind::Float);
        let classes = Tensor::randint(NUM_CLASSES as i64, [m], (Kind::Int64, Device::Cpu));
        let meta = FaceHeadsMeta { reading: FaceReading { network: "faceres".into(), margin: 0.1 }, weights: FusionWeights { gender: 1.0, age: 2.0 }, heads: HeadForm::Neighbours { k } };
        FaceHeads::new(meta, Tensor::zeros([f], opts), Tensor::ones([f], opts), HeadTensors::Neighbours { bank, classes, k }).unwrap()
    }

    #[test]
    fn weight_zero_and_photos_without_a_face_keep_the_runs_probabilities() {
        let probs = Tensor::rand([4, NUM_CLASSES as i64], (Kind::Float, Device::Cpu)) + 0.01;
        let probs = &probs / probs.sum_dim_intlist(1, true, Kind::Float);
        let faces = FaceFeatures { features: Tensor::randn([4, crate::model::faceres::FEATURES], (Kind::Float, Device::Cpu)), found: vec![true, false, true, true] };
        let zero = heads(FusionWeights { gender: 0.0, age: 0.0 });
        assert!(zero.fuse(&probs, &faces).allclose(&probs, 1e-5, 1e-6, false));
        let fused = heads(FusionWeights { gender: 2.0, age: 1.0 }).fuse(&probs, &faces);
        assert!(fused.get(1).allclose(&probs.get(1), 1e-5, 1e-6, false), "row 1 has no face");
        assert!(!fused.get(0).allclose(&probs.get(0), 1e-3, 1e-3, false), "row 0 has a face");
        let sums = Vec::<f32>::try_from(fused.sum_dim_intlist(1, false, Kind::Float)).unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }

    #[test]
    fn the_fused_log_probabilities_add_each_heads_opinion_of_the_class_tasks() {
        let h = heads(FusionWeights { gender: 1.5, age: 0.5 });
        let features = Tensor::randn([1, crate::model::faceres::FEATURES], (Kind::Float, Device::Cpu));
        let uniform = Tensor::full([1, NUM_CLASSES as i64], 1.0 / NUM_CLASSES as f64, (Kind::Float, Device::Cpu));
        let fused = Vec::<f32>::try_from(h.fuse(&uniform, &FaceFeatures { features: features.shallow_clone(), found: vec![true] }).view([-1])).unwrap();
        let (g, a) = h.task_probs(&features);
        let (g, a) = (Vec::<f32>::try_from(g.view([-1])).unwrap(), Vec::<f32>::try_from(a.view([-1])).unwrap());
        let score = |c: usize| 1.5 * (g[(c / 3) % 2] as f64).ln() + 0.5 * (a[c % 3] as f64).ln();
        let total: f64 = (0..NUM_CLASSES).map(|c| score(c).exp()).sum();
        for (c, v) in fused.iter().enumerate() {
            assert!((*v as f64 - score(c).exp() / total).abs() < 1e-5, "class {c}");
        }
    }

    #[test]
    fn heads_survive_a_round_trip_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        let h = heads(FusionWeights { gender: 1.0, age: 3.0 });
        h.save(&path).unwrap();
        let back = FaceHeads::load(&path).unwrap();
        assert_eq!(back.meta, h.meta);
        let features = Tensor::randn([3, crate::model::faceres::FEATURES], (Kind::Float, Device::Cpu));
        let (same, again) = (h.task_probs(&features), back.task_probs(&features));
        assert!(same.0.allclose(&again.0, 0.0, 0.0, false) && same.1.allclose(&again.1, 0.0, 0.0, false));
        let mut bad = heads(FusionWeights { gender: 1.0, age: 3.0 });
        if let HeadTensors::Linear { age, .. } = &mut bad.tensors {
            age.0 = Tensor::zeros([5, 3], (Kind::Float, Device::Cpu));
        }
        bad.save(&path).unwrap();
        let err = format!("{:#}", FaceHeads::load(&path).unwrap_err());
        assert!(err.contains("heads.safetensors") && err.contains("age.weight"), "{err}");
        // A NaN in the heads is refused with what to do about it (fit them again), not a training hint.
        // (The writer refuses non-finite tensors, so the file is written from its raw bytes.)
        h.save(&path).unwrap();
        let (mut tensors, meta) = checkpoint::load(&path).unwrap();
        for (name, t) in tensors.iter_mut() {
            if name == "mean" {
                *t = t.full_like(f64::NAN);
            }
        }
        std::fs::write(&path, checkpoint::to_bytes(&tensors, &meta).unwrap()).unwrap();
        let err = format!("{:#}", FaceHeads::load(&path).unwrap_err());
        assert!(err.contains("heads.safetensors") && err.contains("mean") && err.contains("--face-heads") && !err.contains("optim.lr"), "{err}");
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(format!("{:#}", FaceHeads::load(&path).unwrap_err()).contains("heads.safetensors"));
    }

    #[test]
    fn each_neighbour_votes_by_its_similarity_and_the_k_nearest_decide() {
        // Three training faces: a man, then two women; a face most like the man, then the women.
        let labels = Tensor::from_slice(&[0i64, 1, 1]);
        let sims = Tensor::from_slice(&[0.9f32, 0.5, 0.1]).view([1, 3]);
        let one = Vec::<f32>::try_from(neighbour_votes(&sims, &labels, 2, 1).view([-1])).unwrap();
        assert!(one[0] > 0.99, "the nearest alone: {one:?}");
        let all = Vec::<f32>::try_from(neighbour_votes(&sims, &labels, 2, 3).view([-1])).unwrap();
        let (w0, w1, w2) = ((0.9 * SHARPNESS).exp(), (0.5 * SHARPNESS).exp(), (0.1 * SHARPNESS).exp());
        let want = (w0 + VOTE_PRIOR) / (w0 + w1 + w2 + 2.0 * VOTE_PRIOR);
        assert!((all[0] as f64 - want).abs() < 1e-5, "{all:?} vs {want}");
        assert!((all[0] + all[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn neighbour_heads_read_a_training_face_as_its_own_class_and_survive_a_round_trip() {
        let h = neighbour_heads(40, [1, 1]);
        let HeadTensors::Neighbours { bank, classes, .. } = &h.tensors else { unreachable!() };
        // A training face itself (mean 0, std 1: its features are its bank row).
        let (g, a) = h.task_probs(&bank.narrow(0, 0, 5));
        let classes = Vec::<i64>::try_from(classes.narrow(0, 0, 5)).unwrap();
        let (g, a) = (Vec::<f32>::try_from(g.argmax(1, false).to_kind(Kind::Float)).unwrap(), Vec::<f32>::try_from(a.argmax(1, false).to_kind(Kind::Float)).unwrap());
        for i in 0..5 {
            assert_eq!(g[i] as i64, (classes[i] / 3) % 2);
            assert_eq!(a[i] as i64, classes[i] % 3);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        let h = neighbour_heads(40, [7, 12]);
        h.save(&path).unwrap();
        let back = FaceHeads::load(&path).unwrap();
        assert_eq!(back.meta, h.meta);
        let features = Tensor::randn([4, crate::model::faceres::FEATURES], (Kind::Float, Device::Cpu));
        assert!(h.task_probs(&features).1.allclose(&back.task_probs(&features).1, 0.0, 0.0, false), "the bank is stored as it was fitted");
        // More neighbours than training faces, or a form that does not match the tensors: refused.
        let mut bad = neighbour_heads(40, [7, 12]);
        bad.meta.heads = HeadForm::Neighbours { k: [7, 41] };
        if let HeadTensors::Neighbours { k, .. } = &mut bad.tensors {
            *k = [7, 41];
        }
        bad.save(&path).unwrap();
        let err = format!("{:#}", FaceHeads::load(&path).unwrap_err());
        assert!(err.contains("heads.safetensors") && err.contains("41"), "{err}");
        bad.meta.heads = HeadForm::Linear { l2: [0.1, 0.1] };
        bad.save(&path).unwrap();
        let err = format!("{:#}", FaceHeads::load(&path).unwrap_err());
        assert!(err.contains("heads.safetensors") && err.contains("gender.weight"), "{err}");
    }
}
