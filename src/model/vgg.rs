//! VGG-19 with batch norm, with torchvision's module tree: `features.{i}` numbered as in its
//! nn.Sequential (conv, bn, relu per conv layer; one index per max pool) and
//! `classifier.{0,3,6}` Linear layers with dropout at indices 2 and 5.
//! Also the `vgg` family: its torchvision and timm weights and the map of timm's names.
use super::blocks::{
    classifier_dropout, linear_zero_bias, ConvBn, ConvSpec, KAIMING_NORMAL_FAN_OUT, TORCH_BATCH_NORM,
};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;
use super::family::{timm, tv, Family, FamilyInfo, Pretrained, Variant};
use crate::weights::mapping::{Convention, Mapped, NameMap};

/// torchvision's default classifier dropout for VGG.
pub const DEFAULT_DROPOUT: f64 = 0.5;

/// Configuration "E" (19 weight layers) as stages of (conv count, channels); every stage ends
/// with a 2x2 max pool.
const VGG19_STAGES: [(usize, i64); 5] = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)];

/// torchvision pools the features to 7x7 whatever the input size, so the first Linear is
/// always 512 * 7 * 7 wide.
const POOLED_SIZE: i64 = 7;
const HIDDEN: i64 = 4096;

#[derive(Debug)]
pub struct Vgg {
    /// Each a 3x3 conv (with bias) and its BatchNorm; ReLU follows.
    stages: Vec<Vec<ConvBn>>,
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
    dropout: f64,
}

impl Vgg {
    /// VGG-19-BN. `dropout` is the probability of both classifier dropouts (torchvision: 0.5).
    /// `bn_momentum` replaces PyTorch's batch-norm momentum when given.
    pub fn vgg19_bn(p: &nn::Path, num_classes: i64, dropout: f64, bn_momentum: Option<f64>) -> Self {
        let norm_config = TORCH_BATCH_NORM.with_momentum(bn_momentum);
        let features = p / "features";
        // Position in torchvision's flat `features` Sequential: conv, bn and relu take one
        // index each, and each max pool one more.
        let mut index = 0;
        let mut in_channels = 3;
        let mut stages = Vec::with_capacity(VGG19_STAGES.len());
        for (convs, out_channels) in VGG19_STAGES {
            let mut stage = Vec::with_capacity(convs);
            for _ in 0..convs {
                // torchvision's VGG convs keep their bias even though a BatchNorm follows.
                stage.push(ConvBn::new(
                    &features / index,
                    &features / (index + 1),
                    ConvSpec::new(in_channels, out_channels, 3).bias(true),
                    KAIMING_NORMAL_FAN_OUT,
                    norm_config,
                ));
                in_channels = out_channels;
                index += 3;
            }
            stages.push(stage);
            index += 1;
        }
        let classifier = p / "classifier";
        let normal = Init::Randn { mean: 0.0, stdev: 0.01 };
        let fc1 = linear_zero_bias(&classifier / 0, in_channels * POOLED_SIZE * POOLED_SIZE, HIDDEN, normal);
        let fc2 = linear_zero_bias(&classifier / 3, HIDDEN, HIDDEN, normal);
        let fc3 = linear_zero_bias(&classifier / 6, HIDDEN, num_classes, normal);
        Vgg { stages, fc1, fc2, fc3, dropout }
    }
}

impl ModuleT for Vgg {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut hidden = xs.shallow_clone();
        for stage in &self.stages {
            for layer in stage {
                hidden = layer.forward_t(&hidden, train).relu_();
            }
            hidden = hidden.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        // flatten (not view): with channels-last features this copies into the NCHW order that
        // the first Linear's weights (and torchvision's checkpoints) assume.
        let flat = hidden.adaptive_avg_pool2d([POOLED_SIZE, POOLED_SIZE]).flatten(1, -1);
        let hidden = classifier_dropout(flat.apply(&self.fc1).relu_(), self.dropout, train);
        let hidden = classifier_dropout(hidden.apply(&self.fc2).relu_(), self.dropout, train);
        hidden.apply(&self.fc3)
    }
}

pub static FAMILY: Family<()> = Family {
    info: FamilyInfo { name: "vgg", head: "classifier.6.", stem: "features.0.weight", in_torchvision: true, computed_buffers: &[] },
    build: |_, p, o| Box::new(Vgg::vgg19_bn(p, o.num_classes, o.dropout, o.bn_momentum)),
    name_maps,
    variants: &[Variant::new("vgg19_bn", 224, 143_678_248, ())
        .dropout(DEFAULT_DROPOUT)
        .pretrained(Pretrained::torchvision(&[tv("IMAGENET1K_V1", "vgg19_bn-c79401a0.pth")]).timm(&[timm("vgg19_bn", &["tv_in1k"])]))],
};

/// timm's names (`pre_logits`, `head.fc`): `pre_logits.fc1` (a 7x7 conv) -> `classifier.0`
/// (reshaped to a Linear), `pre_logits.fc2` -> `classifier.3`, `head.fc` -> `classifier.6`.
fn name_maps(_: &(), _names: &[&str]) -> Vec<NameMap> {
    vec![NameMap { convention: Convention::TIMM, prefixes: &["pre_logits.", "head.fc."], rename: Box::new(timm_name) }]
}

/// timm's VGG: the first two classifier Linears are stored as convolutions (7x7 and 1x1).
/// Returns the name and, for weights, the row count to reshape to.
fn timm_name(name: &str) -> Mapped {
    let map = |from: &str, to: &str| name.strip_prefix(from).map(|rest| format!("{to}{rest}"));
    if let Some(n) = map("pre_logits.fc1.", "classifier.0.").or_else(|| map("pre_logits.fc2.", "classifier.3.")) {
        let reshape = n.ends_with(".weight").then(|| vec![HIDDEN, -1]);
        return (Some(n), reshape);
    }
    (map("head.fc.", "classifier.6.").or_else(|| Some(name.to_string())), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn vgg19_bn_names_match_torchvision() {
        let vs = VarStore::new(Device::Cpu);
        let _model = Vgg::vgg19_bn(&vs.root(), 1000, DEFAULT_DROPOUT, None);
        let variables = vs.variables();
        // Reference shapes from torchvision 0.26's vgg19_bn().state_dict().
        let expected: &[(&str, &[i64])] = &[
            ("features.0.weight", &[64, 3, 3, 3]),
            ("features.0.bias", &[64]),
            ("features.1.running_mean", &[64]),
            ("features.7.weight", &[128, 64, 3, 3]),
            ("features.49.weight", &[512, 512, 3, 3]),
            ("features.50.running_var", &[512]),
            ("classifier.0.weight", &[4096, 25088]),
            ("classifier.3.weight", &[4096, 4096]),
            ("classifier.6.weight", &[1000, 4096]),
            ("classifier.6.bias", &[1000]),
        ];
        for (name, shape) in expected {
            let actual = variables.get(*name).unwrap_or_else(|| panic!("missing {name}")).size();
            assert_eq!(actual, shape.to_vec(), "{name}");
        }
        // Max pools sit at 6, 13, 26, 39 and 52: nothing is registered there.
        for pool in [6, 13, 26, 39, 52] {
            assert!(variables.keys().all(|k| !k.starts_with(&format!("features.{pool}."))), "pool {pool}");
        }
        // 118 state-dict entries - 16 num_batches_tracked.
        assert_eq!(vs.len(), 102);
    }
}
