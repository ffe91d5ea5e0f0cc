//! DenseNet-121 (DenseNet-BC, growth 32, blocks 6/12/24/16) with torchvision's module tree:
//! `features.conv0/norm0`, `features.denseblock{b}.denselayer{l}.norm1/conv1/norm2/conv2`,
//! `features.transition{t}.norm/conv`, `features.norm5`, `classifier`.
//! Also the `densenet` family: its torchvision and timm weights, and the renaming of torchvision's
//! pre-0.3 names.
use super::blocks::{
    batch_norm, classifier_dropout, conv2d, global_average_pool, linear_zero_bias, ConvBn, ConvSpec, NormConfig,
    KAIMING_NORMAL_FAN_IN, TORCH_BATCH_NORM,
};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;
use super::family::{timm, tv, Family, FamilyInfo, Pretrained, Variant};
use crate::weights::mapping::{renamed, Convention, NameMap};

const GROWTH_RATE: i64 = 32;
const BLOCK_CONFIG: [i64; 4] = [6, 12, 24, 16];
const NUM_INIT_FEATURES: i64 = 64;
/// Bottleneck width multiplier: each layer's 1x1 conv produces `BN_SIZE * GROWTH_RATE` maps.
const BN_SIZE: i64 = 4;

/// norm1 -> relu -> conv1 (1x1) -> norm2 -> relu -> conv2 (3x3), producing `GROWTH_RATE` maps.
#[derive(Debug)]
struct DenseLayer {
    norm1: nn::BatchNorm,
    conv1: nn::Conv2D,
    norm2: nn::BatchNorm,
    conv2: nn::Conv2D,
}

impl DenseLayer {
    fn new(p: nn::Path, in_channels: i64, norm: NormConfig) -> Self {
        let bottleneck = BN_SIZE * GROWTH_RATE;
        DenseLayer {
            norm1: batch_norm(&p / "norm1", in_channels, norm),
            conv1: conv2d(&p / "conv1", ConvSpec::new(in_channels, bottleneck, 1), KAIMING_NORMAL_FAN_IN),
            norm2: batch_norm(&p / "norm2", bottleneck, norm),
            conv2: conv2d(&p / "conv2", ConvSpec::new(bottleneck, GROWTH_RATE, 3), KAIMING_NORMAL_FAN_IN),
        }
    }

    /// Takes every earlier feature map of the block; they are concatenated here, as in
    /// torchvision's non-memory-efficient path.
    fn forward_t(&self, previous: &[Tensor], train: bool) -> Tensor {
        let concatenated = Tensor::cat(previous, 1);
        // The ReLUs run in place on fresh batch-norm outputs (torchvision's inplace=True).
        let bottleneck = concatenated.apply_t(&self.norm1, train).relu_().apply(&self.conv1);
        bottleneck.apply_t(&self.norm2, train).relu_().apply(&self.conv2)
    }
}

#[derive(Debug)]
struct Transition {
    norm: nn::BatchNorm,
    conv: nn::Conv2D,
}

#[derive(Debug)]
pub struct DenseNet {
    /// `conv0` and `norm0` (the only conv followed by its BatchNorm: the dense layers and
    /// transitions normalise before they convolve).
    stem: ConvBn,
    /// Dense blocks, each followed by its transition except the last.
    blocks: Vec<(Vec<DenseLayer>, Option<Transition>)>,
    norm5: nn::BatchNorm,
    dropout: f64,
    classifier: nn::Linear,
}

impl DenseNet {
    /// `dropout` is an addition of this crate (torchvision applies none before the classifier;
    /// its per-layer `drop_rate` defaults to 0 and is not exposed): when positive, dropout is
    /// applied to the pooled features. It adds no parameters. `bn_momentum` replaces PyTorch's
    /// batch-norm momentum when given.
    pub fn densenet121(p: &nn::Path, num_classes: i64, dropout: f64, bn_momentum: Option<f64>) -> Self {
        let norm = TORCH_BATCH_NORM.with_momentum(bn_momentum);
        let features = p / "features";
        let stem = ConvBn::new(
            &features / "conv0",
            &features / "norm0",
            ConvSpec::new(3, NUM_INIT_FEATURES, 7).stride(2),
            KAIMING_NORMAL_FAN_IN,
            norm,
        );
        let mut channels = NUM_INIT_FEATURES;
        let mut blocks = Vec::with_capacity(BLOCK_CONFIG.len());
        for (b, &num_layers) in BLOCK_CONFIG.iter().enumerate() {
            let block_path = &features / format!("denseblock{}", b + 1);
            let layers = (0..num_layers)
                .map(|l| {
                    DenseLayer::new(&block_path / format!("denselayer{}", l + 1), channels + l * GROWTH_RATE, norm)
                })
                .collect();
            channels += num_layers * GROWTH_RATE;
            let transition = (b + 1 < BLOCK_CONFIG.len()).then(|| {
                let path = &features / format!("transition{}", b + 1);
                let transition = Transition {
                    norm: batch_norm(&path / "norm", channels, norm),
                    conv: conv2d(&path / "conv", ConvSpec::new(channels, channels / 2, 1), KAIMING_NORMAL_FAN_IN),
                };
                channels /= 2;
                transition
            });
            blocks.push((layers, transition));
        }
        let norm5 = batch_norm(&features / "norm5", channels, norm);
        // torchvision leaves the Linear weight at PyTorch's default and zeroes the bias.
        let bound = 1.0 / (channels as f64).sqrt();
        let classifier =
            linear_zero_bias(p / "classifier", channels, num_classes, Init::Uniform { lo: -bound, up: bound });
        DenseNet { stem, blocks, norm5, dropout, classifier }
    }
}

impl ModuleT for DenseNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut features = self.stem.forward_t(xs, train).relu_().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for (layers, transition) in &self.blocks {
            let mut maps = Vec::with_capacity(layers.len() + 1);
            maps.push(features);
            for layer in layers {
                let new_maps = layer.forward_t(&maps, train);
                maps.push(new_maps);
            }
            features = Tensor::cat(&maps, 1);
            if let Some(t) = transition {
                features = features.apply_t(&t.norm, train).relu_().apply(&t.conv).avg_pool2d(
                    [2, 2],
                    [2, 2],
                    [0, 0],
                    false,
                    true,
                    None,
                );
            }
        }
        let features = features.apply_t(&self.norm5, train).relu_();
        classifier_dropout(global_average_pool(&features, train), self.dropout, train).apply(&self.classifier)
    }
}

pub static FAMILY: Family<()> = Family {
    info: FamilyInfo { name: "densenet", head: "classifier.", stem: "features.conv0.weight", in_torchvision: true, computed_buffers: &[] },
    build: |_, p, o| Box::new(DenseNet::densenet121(p, o.num_classes, o.dropout, o.bn_momentum)),
    name_maps,
    variants: &[Variant::new("densenet121", 224, 7_978_856, ()).pretrained(
        Pretrained::torchvision(&[tv("IMAGENET1K_V1", "densenet121-a639ec97.pth")]).timm(&[timm("densenet121", &["tv_in1k", "ra_in1k"])]),
    )],
};

/// Files of torchvision before 0.3 (and timm's, which use today's torchvision names) need only
/// the old layer names renamed: `denselayerN.norm.1` -> `denselayerN.norm1` (and `conv.1`,
/// `norm.2`, `conv.2`).
fn name_maps(_: &(), _names: &[&str]) -> Vec<NameMap> {
    vec![NameMap { convention: Convention::TORCHVISION, prefixes: &[], rename: Box::new(|name| renamed(legacy_name(name))) }]
}

/// torchvision's pre-0.3 DenseNet names (`denselayer1.norm.1.weight`) -> current ones.
fn legacy_name(name: &str) -> String {
    if !name.contains("denselayer") {
        return name.to_string();
    }
    let mut n = name.to_string();
    for layer in ["norm", "relu", "conv"] {
        for i in ["1", "2"] {
            n = n.replace(&format!(".{layer}.{i}."), &format!(".{layer}{i}."));
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn densenet121_names_match_torchvision() {
        let vs = VarStore::new(Device::Cpu);
        let _model = DenseNet::densenet121(&vs.root(), 1000, 0.0, None);
        let variables = vs.variables();
        // Reference shapes from torchvision 0.26's densenet121().state_dict().
        let expected: &[(&str, &[i64])] = &[
            ("features.conv0.weight", &[64, 3, 7, 7]),
            ("features.norm0.running_mean", &[64]),
            ("features.denseblock1.denselayer1.norm1.weight", &[64]),
            ("features.denseblock1.denselayer1.conv1.weight", &[128, 64, 1, 1]),
            ("features.denseblock1.denselayer1.norm2.running_var", &[128]),
            ("features.denseblock1.denselayer1.conv2.weight", &[32, 128, 3, 3]),
            ("features.transition1.norm.running_mean", &[256]),
            ("features.transition1.conv.weight", &[128, 256, 1, 1]),
            ("features.denseblock3.denselayer24.conv1.weight", &[128, 992, 1, 1]),
            ("features.transition3.conv.weight", &[512, 1024, 1, 1]),
            ("features.denseblock4.denselayer16.norm1.bias", &[992]),
            ("features.norm5.running_var", &[1024]),
            ("classifier.weight", &[1000, 1024]),
            ("classifier.bias", &[1000]),
        ];
        for (name, shape) in expected {
            let actual = variables.get(*name).unwrap_or_else(|| panic!("missing {name}")).size();
            assert_eq!(actual, shape.to_vec(), "{name}");
        }
        assert!(!variables.contains_key("features.transition4.conv.weight"));
        // 727 state-dict entries - 121 num_batches_tracked.
        assert_eq!(vs.len(), 606);
    }
}
