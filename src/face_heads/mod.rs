//! A second opinion on gender and age from a face-trained network, stored in a run.
//!
//! ImageNet features know little about faces; FaceRes (trained on VGGFace2 faces) knows them
//! well. `masklab tune RUN --face-heads faceres-deep` fits two linear heads (softmax regression:
//! gender, age band) on FaceRes's pooled features of the largest face of each training photo of
//! the run's training people, chooses on the run's validation rows how much each head's
//! log-probabilities add to the run's ([`FusionWeights`]), then fits the decision biases on the
//! fused rows. `predict`, `predict --faces` and `serve` read each face's features and fuse before
//! the biases; a photo where no face was found keeps the run's own probabilities.
//!
//! Fusion, per image with a face: `softmax(log p + w_gender * log g[gender(c)] + w_age * log
//! a[age(c)])` over the 18 classes `c`, each probability floored at [`MIN_PROB`] as the decision
//! biases floor theirs.
pub mod features;
pub mod fit;

use crate::labels::NUM_CLASSES;
use crate::run_dir::{checkpoint, RunDir};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Probabilities below this count as this (as `decision_biases` floors them).
const MIN_PROB: f64 = 1e-7;

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

/// What the heads file records beside its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceHeadsMeta {
    pub reading: FaceReading,
    pub weights: FusionWeights,
}

/// The stored heads, ready to fuse.
#[derive(Debug)]
pub struct FaceHeads {
    pub meta: FaceHeadsMeta,
    /// Feature standardisation: `(x - mean) / std`, `[1024]` each.
    mean: Tensor,
    std: Tensor,
    /// `[1024, 2]` and `[2]`, `[1024, 3]` and `[3]`.
    gender: (Tensor, Tensor),
    age: (Tensor, Tensor),
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

/// Each class's gender (0 male, 1 female) and age band (0..3), as `[18]` index tensors.
fn task_index() -> (Tensor, Tensor) {
    let classes: Vec<i64> = (0..NUM_CLASSES as i64).collect();
    let gender: Vec<i64> = classes.iter().map(|c| (c / 3) % 2).collect();
    let age: Vec<i64> = classes.iter().map(|c| c % 3).collect();
    (Tensor::from_slice(&gender), Tensor::from_slice(&age))
}

impl FaceHeads {
    pub fn new(meta: FaceHeadsMeta, mean: Tensor, std: Tensor, gender: (Tensor, Tensor), age: (Tensor, Tensor)) -> FaceHeads {
        FaceHeads { meta, mean, std, gender, age }
    }

    /// `[N, 2]` gender and `[N, 3]` age-band probabilities of `[N, 1024]` features.
    pub fn task_probs(&self, features: &Tensor) -> (Tensor, Tensor) {
        let x = (features.to_kind(Kind::Float) - &self.mean) / &self.std;
        let head = |(w, b): &(Tensor, Tensor)| (x.matmul(w) + b).softmax(1, Kind::Float);
        (head(&self.gender), head(&self.age))
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

    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors = [
            ("mean", &self.mean),
            ("std", &self.std),
            ("gender.weight", &self.gender.0),
            ("gender.bias", &self.gender.1),
            ("age.weight", &self.age.0),
            ("age.bias", &self.age.1),
        ]
        .map(|(n, t)| (n.to_string(), t.shallow_clone()));
        checkpoint::save(path, &tensors, &serde_json::to_value(&self.meta)?)
    }

    /// Reads a heads file, checking every tensor's shape and that the values are finite.
    pub fn load(path: &Path) -> Result<FaceHeads> {
        let (tensors, meta) = checkpoint::load_finite(path)?;
        let meta: FaceHeadsMeta = serde_json::from_value(meta).with_context(|| format!("{}: not a face-heads file (no reading and weights in its metadata)", path.display()))?;
        let mut by_name: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        let features = crate::model::faceres::FEATURES;
        let mut take = |name: &str, shape: &[i64]| -> Result<Tensor> {
            let t = by_name.remove(name).ok_or_else(|| anyhow::anyhow!("{}: no tensor {name}", path.display()))?;
            if t.size() != shape {
                bail!("{}: {name} is {:?}, expected {shape:?}", path.display(), t.size());
            }
            Ok(t.to_kind(Kind::Float))
        };
        let heads = FaceHeads {
            mean: take("mean", &[features])?,
            std: take("std", &[features])?,
            gender: (take("gender.weight", &[features, 2])?, take("gender.bias", &[2])?),
            age: (take("age.weight", &[features, 3])?, take("age.bias", &[3])?),
            meta,
        };
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
    /// The L2 penalty chosen for each head on the validation rows.
    pub l2: [f64; 2],
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
    if heads.meta.reading != report.reading || heads.meta.weights != report.weights {
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
            FaceHeadsMeta { reading: FaceReading { network: "faceres-deep".into(), margin: 0.1 }, weights },
            Tensor::randn([f], opts),
            Tensor::rand([f], opts) + 0.5,
            (Tensor::randn([f, 2], opts) * 0.05, Tensor::randn([2], opts)),
            (Tensor::randn([f, 3], opts) * 0.05, Tensor::randn([3], opts)),
        )
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
        assert!(back.gender.0.allclose(&h.gender.0, 0.0, 0.0, false) && back.age.1.allclose(&h.age.1, 0.0, 0.0, false));
        let mut bad = heads(FusionWeights { gender: 1.0, age: 3.0 });
        bad.age.0 = Tensor::zeros([5, 3], (Kind::Float, Device::Cpu));
        bad.save(&path).unwrap();
        let err = format!("{:#}", FaceHeads::load(&path).unwrap_err());
        assert!(err.contains("heads.safetensors") && err.contains("age.weight"), "{err}");
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(format!("{:#}", FaceHeads::load(&path).unwrap_err()).contains("heads.safetensors"));
    }
}
