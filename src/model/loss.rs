//! Classification losses for one head: cross entropy, two focal variants, soft F1 and one-hot BCE,
//! with optional label smoothing and per-class weights.
use anyhow::{bail, ensure, Result};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use crate::model::task_layout::{Head, Layout};
use anyhow::Context;
use tch::{Device, Kind, Reduction, Tensor};

/// libtorch's default `ignore_index`; no target uses it, so nothing is ignored.
const NO_IGNORED_CLASS: i64 = -100;
/// Keeps soft-F1 ratios finite when a class has no predicted or true mass in the batch.
const SOFT_F1_EPS: f64 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// `torch.nn.functional.cross_entropy`.
    CrossEntropy,
    /// `mean((1 - pt)^gamma * ce)` with `pt = exp(-ce)` per sample.
    Focal,
    /// The competition's focal loss: `nll_loss((1 - p)^gamma * log_softmax)`.
    FocalSoftmax,
    /// `1 - mean F1` of softmax probabilities against one-hot targets.
    SoftF1,
    /// Binary cross entropy with logits against one-hot targets.
    Bce,
}

/// Per-class loss weights: `"none"`, `"auto"` (inverse training frequency) or a list of numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassWeights {
    None,
    Auto,
    Given(Vec<f64>),
}

impl Serialize for ClassWeights {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ClassWeights::None => serializer.serialize_str("none"),
            ClassWeights::Auto => serializer.serialize_str("auto"),
            ClassWeights::Given(weights) => weights.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ClassWeights {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ClassWeightsVisitor;
        impl<'de> Visitor<'de> for ClassWeightsVisitor {
            type Value = ClassWeights;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"none\", \"auto\" or a list of per-class weights")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> std::result::Result<ClassWeights, E> {
                match name {
                    "none" => Ok(ClassWeights::None),
                    "auto" => Ok(ClassWeights::Auto),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<ClassWeights, A::Error> {
                let mut weights = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(weight) = seq.next_element::<f64>()? {
                    weights.push(weight);
                }
                Ok(ClassWeights::Given(weights))
            }
        }
        deserializer.deserialize_any(ClassWeightsVisitor)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Which loss to train with.
    pub kind: LossKind,
    /// Mass moved from the true class to all classes uniformly (not used by `focal_softmax`).
    pub label_smoothing: f64,
    /// Focusing exponent of the focal losses.
    pub gamma: f64,
    /// Per-class weights: "none", "auto" or a list with one entry per class of the head.
    pub class_weights: ClassWeights,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { kind: LossKind::CrossEntropy, label_smoothing: 0.0, gamma: 2.0, class_weights: ClassWeights::None }
    }
}

impl crate::util::section::Section for LossConfig {
    const KEY: &'static str = "loss";
}

/// Each model's heads with their configured losses, for the models of `layout` given as
/// (name, loss settings). `auto` class weights come from `train_class_counts`: the training
/// split's images per 18-way class, so that validation, `masklab eval` and training weigh the
/// classes alike.
pub fn head_losses(models: &[(&str, &LossConfig)], layout: Layout, train_class_counts: &[u64], device: Device) -> Result<Vec<Vec<(Head, Loss)>>> {
    ensure!(train_class_counts.len() == crate::labels::NUM_CLASSES, "class counts: expected 18, got {}", train_class_counts.len());
    models
        .iter()
        .enumerate()
        .map(|(k, (name, settings))| {
            layout
                .heads()
                .into_iter()
                .filter(|h| h.model == k)
                .map(|head| {
                    let mut counts = vec![0; head.task.classes() as usize];
                    for (class, &n) in train_class_counts.iter().enumerate() {
                        let target = head.task.target(&Tensor::from_slice(&[class as i64])).int64_value(&[0]);
                        counts[target as usize] += n as usize;
                    }
                    let loss = Loss::new(settings, head.task.classes(), &counts, device).with_context(|| format!("model `{name}`"))?;
                    Ok((head, loss))
                })
                .collect()
        })
        .collect()
}

/// A configured loss for one head, with its class weights already on the device.
#[derive(Debug)]
pub struct Loss {
    kind: LossKind,
    label_smoothing: f64,
    gamma: f64,
    num_classes: i64,
    /// The class weights on the device, and their values for reporting.
    weights: Option<Tensor>,
    weight_values: Option<Vec<f64>>,
}

impl Loss {
    /// `class_counts`: training-set count per class of this head (for `auto` weights: inverse frequency, normalised to mean 1).
    pub fn new(cfg: &LossConfig, num_classes: i64, class_counts: &[usize], device: Device) -> Result<Loss> {
        ensure!(num_classes >= 2, "a classification head needs at least 2 classes, got {num_classes}");
        ensure!(
            (0.0..1.0).contains(&cfg.label_smoothing),
            "loss.label_smoothing must be in [0, 1), got {}",
            cfg.label_smoothing
        );
        ensure!(cfg.gamma.is_finite() && cfg.gamma >= 0.0, "loss.gamma must be >= 0, got {}", cfg.gamma);
        if cfg.kind == LossKind::FocalSoftmax && cfg.label_smoothing > 0.0 {
            // The competition's formula has no smoothing term; inventing one would silently change it.
            bail!("loss.label_smoothing is not supported by loss.kind = \"focal_softmax\"; set it to 0 or use \"focal\"");
        }
        let weights = match &cfg.class_weights {
            ClassWeights::None => None,
            ClassWeights::Auto => Some(inverse_frequency_weights(num_classes, class_counts)?),
            ClassWeights::Given(given) => {
                ensure!(
                    given.len() as i64 == num_classes,
                    "loss.class_weights has {} entries but the head has {num_classes} classes",
                    given.len()
                );
                ensure!(
                    given.iter().all(|w| w.is_finite() && *w >= 0.0) && given.iter().any(|&w| w > 0.0),
                    "loss.class_weights must be finite, >= 0 and not all 0, got {given:?}"
                );
                Some(given.clone())
            }
        };
        Ok(Loss {
            kind: cfg.kind,
            label_smoothing: cfg.label_smoothing,
            gamma: cfg.gamma,
            num_classes,
            weights: weights.as_ref().map(|w| Tensor::from_slice(w).to_kind(Kind::Float).to_device(device)),
            weight_values: weights,
        })
    }

    /// The per-class weights in use, if any (for logging what `auto` chose).
    pub fn class_weights(&self) -> Option<&[f64]> {
        self.weight_values.as_deref()
    }

    /// Scalar float32 loss from logits [N,C] (any float dtype; compute in f32) and int64 targets [N].
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Tensor {
        // Softmax and log terms lose too much in f16/bf16; autocast would compute them in f32 too.
        let logits = logits.to_kind(Kind::Float);
        let weights = self.weights.as_ref();
        match self.kind {
            LossKind::CrossEntropy => {
                logits.cross_entropy_loss(target, weights, Reduction::Mean, NO_IGNORED_CLASS, self.label_smoothing)
            }
            LossKind::Focal => {
                let ce = logits.cross_entropy_loss(target, weights, Reduction::None, NO_IGNORED_CLASS, self.label_smoothing);
                let pt: Tensor = (-&ce).exp();
                ((1f64 - pt).pow_tensor_scalar(self.gamma) * ce).mean(Kind::Float)
            }
            LossKind::FocalSoftmax => {
                let log_prob = logits.log_softmax(-1, Kind::Float);
                let modulated = (1f64 - log_prob.exp()).pow_tensor_scalar(self.gamma) * log_prob;
                modulated.g_nll_loss(target, weights, Reduction::Mean, NO_IGNORED_CLASS)
            }
            LossKind::SoftF1 => {
                let truth = self.smoothed_one_hot(target);
                let prob = logits.softmax(-1, Kind::Float);
                let tp = (&truth * &prob).sum_dim_intlist(0, false, Kind::Float);
                let fp = ((1f64 - &truth) * &prob).sum_dim_intlist(0, false, Kind::Float);
                let fn_ = (&truth * (1f64 - &prob)).sum_dim_intlist(0, false, Kind::Float);
                let precision = &tp / (&tp + fp + SOFT_F1_EPS);
                let recall = &tp / (&tp + fn_ + SOFT_F1_EPS);
                let f1 = (2f64 * &precision * &recall / (&precision + &recall + SOFT_F1_EPS))
                    .clamp(SOFT_F1_EPS, 1.0 - SOFT_F1_EPS);
                let mean_f1: Tensor = match weights {
                    Some(w) => (&f1 * w).sum(Kind::Float) / w.sum(Kind::Float),
                    None => f1.mean(Kind::Float),
                };
                1f64 - mean_f1
            }
            LossKind::Bce => {
                let truth = self.smoothed_one_hot(target);
                // A [C] weight broadcasts over [N, C]: each class column is scaled by its weight.
                logits.binary_cross_entropy_with_logits(&truth, weights, None, Reduction::Mean)
            }
        }
    }

    /// One-hot targets `[N, C]` in f32 with label smoothing: `(1 - eps) * onehot + eps / C`.
    fn smoothed_one_hot(&self, target: &Tensor) -> Tensor {
        let one_hot = target.one_hot(self.num_classes).to_kind(Kind::Float);
        if self.label_smoothing > 0.0 {
            one_hot * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes as f64
        } else {
            one_hot
        }
    }
}

/// Inverse class frequency normalised to mean 1 over the classes that occur. A class absent from
/// the training set never is a target, but smoothing and BCE still touch it: it gets the neutral 1.
fn inverse_frequency_weights(num_classes: i64, class_counts: &[usize]) -> Result<Vec<f64>> {
    ensure!(
        class_counts.len() as i64 == num_classes,
        "loss.class_weights = \"auto\" needs one training count per class: got {} counts for {num_classes} classes",
        class_counts.len()
    );
    let inverse: Vec<Option<f64>> = class_counts.iter().map(|&c| (c > 0).then(|| 1.0 / c as f64)).collect();
    let present: Vec<f64> = inverse.iter().flatten().copied().collect();
    ensure!(!present.is_empty(), "loss.class_weights = \"auto\": every class count is 0");
    let mean = present.iter().sum::<f64>() / present.len() as f64;
    Ok(inverse.iter().map(|w| w.map_or(1.0, |w| w / mean)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [[f64; 3]; 3] = [[1.0, 2.0, 3.0], [1.0, 0.0, -1.0], [0.5, 0.5, 2.0]];
    const TARGETS: [i64; 3] = [2, 0, 1];

    fn logits() -> Tensor {
        Tensor::from_slice(&LOGITS.concat()).view([3, 3]).to_kind(Kind::Float)
    }

    fn targets() -> Tensor {
        Tensor::from_slice(&TARGETS)
    }

    fn log_softmax(row: &[f64; 3]) -> [f64; 3] {
        let log_sum = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        row.map(|v| v - log_sum)
    }

    fn loss(kind: LossKind, label_smoothing: f64, class_weights: ClassWeights) -> Loss {
        let cfg = LossConfig { kind, label_smoothing, gamma: 2.0, class_weights };
        Loss::new(&cfg, 3, &[], Device::Cpu).unwrap()
    }

    fn value(loss: &Loss) -> f64 {
        let out = loss.forward(&logits(), &targets());
        assert_eq!((out.kind(), out.size()), (Kind::Float, vec![]));
        out.double_value(&[])
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-5
    }

    /// Per-sample `(1-eps) * w_y * -logp_y + eps/C * sum_c w_c * -logp_c`, as PyTorch defines it.
    fn ce_terms(eps: f64, w: [f64; 3]) -> Vec<f64> {
        LOGITS
            .iter()
            .zip(TARGETS)
            .map(|(row, y)| {
                let lp = log_softmax(row);
                let smooth: f64 = (0..3).map(|c| -w[c] * lp[c]).sum();
                (1.0 - eps) * -w[y as usize] * lp[y as usize] + eps / 3.0 * smooth
            })
            .collect()
    }

    #[test]
    fn cross_entropy_with_smoothing_and_weights_matches_pytorch_formula() {
        let w = [1.0, 2.0, 0.5];
        let terms = ce_terms(0.1, w);
        // Mean reduction with weights divides by the summed weights of the targets.
        let expected = terms.iter().sum::<f64>() / TARGETS.iter().map(|&y| w[y as usize]).sum::<f64>();
        assert!(close(value(&loss(LossKind::CrossEntropy, 0.1, ClassWeights::Given(w.to_vec()))), expected));
        let plain = ce_terms(0.0, [1.0; 3]).iter().sum::<f64>() / 3.0;
        assert!(close(value(&loss(LossKind::CrossEntropy, 0.0, ClassWeights::None)), plain));
    }

    #[test]
    fn focal_modulates_cross_entropy() {
        let expected = ce_terms(0.1, [1.0; 3]).iter().map(|ce| (1.0 - (-ce).exp()).powi(2) * ce).sum::<f64>() / 3.0;
        assert!(close(value(&loss(LossKind::Focal, 0.1, ClassWeights::None)), expected));
    }

    #[test]
    fn focal_softmax_is_the_competition_formula() {
        let w = [1.0, 2.0, 0.5];
        let (mut num, mut den) = (0.0, 0.0);
        for (row, y) in LOGITS.iter().zip(TARGETS) {
            let lp = log_softmax(row)[y as usize];
            num += -w[y as usize] * (1.0 - lp.exp()).powi(2) * lp;
            den += w[y as usize];
        }
        assert!(close(value(&loss(LossKind::FocalSoftmax, 0.0, ClassWeights::Given(w.to_vec()))), num / den));
        let with_smoothing = LossConfig { kind: LossKind::FocalSoftmax, label_smoothing: 0.1, ..Default::default() };
        assert!(Loss::new(&with_smoothing, 3, &[], Device::Cpu).is_err());
    }

    #[test]
    fn soft_f1_by_hand() {
        let probs: Vec<[f64; 3]> = LOGITS.iter().map(|r| log_softmax(r).map(f64::exp)).collect();
        let eps = 1e-7;
        let mut f1_sum = 0.0;
        for c in 0..3 {
            let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
            for (p, &y) in probs.iter().zip(&TARGETS) {
                let t = if y as usize == c { 1.0 } else { 0.0 };
                tp += t * p[c];
                fp += (1.0 - t) * p[c];
                fn_ += t * (1.0 - p[c]);
            }
            let (prec, rec) = (tp / (tp + fp + eps), tp / (tp + fn_ + eps));
            f1_sum += (2.0 * prec * rec / (prec + rec + eps)).clamp(eps, 1.0 - eps);
        }
        assert!(close(value(&loss(LossKind::SoftF1, 0.0, ClassWeights::None)), 1.0 - f1_sum / 3.0));
    }

    #[test]
    fn bce_on_smoothed_one_hot() {
        let eps = 0.2;
        let mut total = 0.0;
        for (row, y) in LOGITS.iter().zip(TARGETS) {
            for c in 0..3 {
                let t = if c == y as usize { 1.0 - eps + eps / 3.0 } else { eps / 3.0 };
                let p: f64 = 1.0 / (1.0 + (-row[c]).exp());
                total += -(t * p.ln() + (1.0 - t) * (1.0 - p).ln());
            }
        }
        assert!(close(value(&loss(LossKind::Bce, eps, ClassWeights::None)), total / 9.0));
    }

    #[test]
    fn half_precision_logits_give_f32_loss_and_gradients_flow() {
        let l = loss(LossKind::Focal, 0.0, ClassWeights::None);
        let half = logits().to_kind(Kind::Half);
        let out = l.forward(&half, &targets());
        assert_eq!(out.kind(), Kind::Float);
        let leaf = logits().set_requires_grad(true);
        l.forward(&leaf, &targets()).backward();
        assert!(leaf.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn auto_weights_are_inverse_frequency_with_mean_one() {
        let cfg = LossConfig { class_weights: ClassWeights::Auto, ..Default::default() };
        // 1/10 and 1/30 have mean 1/15 -> 1.5 and 0.5; the absent class gets 1.
        let l = Loss::new(&cfg, 3, &[10, 30, 0], Device::Cpu).unwrap();
        let w = l.class_weights().unwrap();
        assert!(close(w[0], 1.5) && close(w[1], 0.5) && close(w[2], 1.0), "{w:?}");
        assert!(Loss::new(&cfg, 3, &[10, 30], Device::Cpu).is_err());
        assert!(Loss::new(&cfg, 2, &[0, 0], Device::Cpu).is_err());
    }

    #[test]
    fn config_errors_name_the_key() {
        let cfg = LossConfig { class_weights: ClassWeights::Given(vec![1.0, 2.0]), ..Default::default() };
        let err = Loss::new(&cfg, 3, &[], Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("loss.class_weights"), "{err}");
        let cfg = LossConfig { label_smoothing: 1.0, ..Default::default() };
        assert!(Loss::new(&cfg, 3, &[], Device::Cpu).unwrap_err().to_string().contains("loss.label_smoothing"));
    }

    #[test]
    fn class_weights_serde_forms() {
        let parse = |s: &str| toml::from_str::<LossConfig>(s);
        assert_eq!(parse("class_weights = \"auto\"").unwrap().class_weights, ClassWeights::Auto);
        assert_eq!(parse("class_weights = \"none\"").unwrap().class_weights, ClassWeights::None);
        assert_eq!(parse("class_weights = [1, 2.5]").unwrap().class_weights, ClassWeights::Given(vec![1.0, 2.5]));
        assert!(parse("class_weights = \"inverse\"").is_err());
        assert!(parse("kind = \"focal_softmax\"\nsmoothing = 0.1").is_err());
        let cfg = LossConfig { kind: LossKind::SoftF1, class_weights: ClassWeights::Given(vec![0.5, 2.0]), ..Default::default() };
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<LossConfig>(&text).unwrap(), cfg);
        assert_eq!(serde_json::to_string(&ClassWeights::Auto).unwrap(), "\"auto\"");
    }
}
