//! MobileNetV2 and MobileNetV3-Large with torchvision's module trees.
//!
//! V2: `features.0` stem, `features.{1..17}` inverted residuals (`conv.{i}`: optional 1x1
//! expansion, 3x3 depthwise, then a bare 1x1 conv and its BatchNorm), `features.18` 1x1 head,
//! `classifier.1`; ReLU6, PyTorch batch norm.
//! V3-Large: `features.0` stem (Hardswish), `features.{1..15}` inverted residuals (`block.{i}`:
//! optional expansion, depthwise, optional squeeze-excitation with ReLU and a hard sigmoid,
//! projection), `features.16` 1x1 conv to 960, then `classifier.0` Linear 960->1280, Hardswish,
//! dropout, `classifier.3`; batch norm eps 1e-3, momentum 0.01.
use super::blocks::{
    batch_norm, classifier_dropout, conv2d, global_average_pool, linear_zero_bias, make_divisible, Activation,
    ConvNormActivation, ConvSpec, Gate, NormConfig, SqueezeExcitation, KAIMING_NORMAL_FAN_OUT, TORCH_BATCH_NORM,
};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

/// Both MobileNets start their Linears at normal(0, 0.01) with a zero bias.
const LINEAR_INIT: Init = Init::Randn { mean: 0.0, stdev: 0.01 };
pub const DEFAULT_DROPOUT: f64 = 0.2;

/// MobileNetV2's (t, c, n, s): expansion, output channels, repeats, first stride.
const V2_SETTING: [(i64, i64, i64, i64); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
const V2_STEM: i64 = 32;
const V2_HEAD: i64 = 1280;

/// One inverted residual in plan form: where it is and which optional layers it has, for the
/// timm name mapping (`blocks.S.L` -> `features.N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MobileBlockPlan {
    /// Index into `features`.
    pub feature: usize,
    /// timm's stage and layer.
    pub stage: usize,
    pub layer: usize,
    pub expand: bool,
    pub squeeze_excitation: bool,
}

/// torchvision's MobileNetV2 `InvertedResidual`.
#[derive(Debug)]
struct V2Block {
    expand: Option<ConvNormActivation>,
    depthwise: ConvNormActivation,
    project: nn::Conv2D,
    project_norm: nn::BatchNorm,
    use_residual: bool,
}

impl V2Block {
    fn new(p: nn::Path, input: i64, output: i64, stride: i64, expand_ratio: i64) -> Self {
        let conv = &p / "conv";
        let hidden = input * expand_ratio;
        let mut index = 0;
        let expand = (expand_ratio != 1).then(|| {
            index += 1;
            ConvNormActivation::new(&conv / 0, ConvSpec::new(input, hidden, 1), TORCH_BATCH_NORM, Activation::Relu6)
        });
        let depthwise = ConvNormActivation::new(
            &conv / index,
            ConvSpec::new(hidden, hidden, 3).stride(stride).groups(hidden),
            TORCH_BATCH_NORM,
            Activation::Relu6,
        );
        let project = conv2d(&conv / (index + 1), ConvSpec::new(hidden, output, 1), KAIMING_NORMAL_FAN_OUT);
        let project_norm = batch_norm(&conv / (index + 2), output, TORCH_BATCH_NORM);
        V2Block { expand, depthwise, project, project_norm, use_residual: stride == 1 && input == output }
    }
}

impl ModuleT for V2Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let hidden = match &self.expand {
            Some(e) => e.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let mut out = self.depthwise.forward_t(&hidden, train).apply(&self.project).apply_t(&self.project_norm, train);
        if self.use_residual {
            out += xs;
        }
        out
    }
}

/// The V2 blocks in forward order (timm groups them in stages of the setting's rows).
pub fn v2_plan() -> Vec<MobileBlockPlan> {
    let mut plan = Vec::new();
    for (stage, &(t, _, n, _)) in V2_SETTING.iter().enumerate() {
        for layer in 0..n as usize {
            plan.push(MobileBlockPlan { feature: plan.len() + 1, stage, layer, expand: t != 1, squeeze_excitation: false });
        }
    }
    plan
}

#[derive(Debug)]
pub struct MobileNetV2 {
    stem: ConvNormActivation,
    blocks: Vec<V2Block>,
    head: ConvNormActivation,
    dropout: f64,
    classifier: nn::Linear,
}

impl MobileNetV2 {
    pub fn new(p: &nn::Path, num_classes: i64, dropout: f64) -> Self {
        let features = p / "features";
        let stem = ConvNormActivation::new(&features / 0, ConvSpec::new(3, V2_STEM, 3).stride(2), TORCH_BATCH_NORM, Activation::Relu6);
        let mut blocks = Vec::new();
        let mut input = V2_STEM;
        for &(t, c, n, s) in &V2_SETTING {
            let output = make_divisible(c as f64, 8);
            for i in 0..n {
                blocks.push(V2Block::new(&features / (blocks.len() + 1), input, output, if i == 0 { s } else { 1 }, t));
                input = output;
            }
        }
        let head = ConvNormActivation::new(
            &features / (blocks.len() + 1),
            ConvSpec::new(input, V2_HEAD, 1),
            TORCH_BATCH_NORM,
            Activation::Relu6,
        );
        let classifier = linear_zero_bias(p / "classifier" / 1, V2_HEAD, num_classes, LINEAR_INIT);
        MobileNetV2 { stem, blocks, head, dropout, classifier }
    }
}

impl ModuleT for MobileNetV2 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_t(xs, train);
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        let x = self.head.forward_t(&x, train);
        classifier_dropout(global_average_pool(&x), self.dropout, train).apply(&self.classifier)
    }
}

/// torchvision's `partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)` for MobileNetV3.
const V3_NORM: NormConfig = NormConfig { eps: 1e-3, momentum: 0.01 };
const V3_LAST_CHANNEL: i64 = 1280;

/// One row of MobileNetV3-Large's `bneck_conf`: input, kernel, expanded, output, SE, hardswish, stride.
struct V3Row(i64, i64, i64, i64, bool, bool, i64);

const V3_LARGE: [V3Row; 15] = [
    V3Row(16, 3, 16, 16, false, false, 1),
    V3Row(16, 3, 64, 24, false, false, 2),
    V3Row(24, 3, 72, 24, false, false, 1),
    V3Row(24, 5, 72, 40, true, false, 2),
    V3Row(40, 5, 120, 40, true, false, 1),
    V3Row(40, 5, 120, 40, true, false, 1),
    V3Row(40, 3, 240, 80, false, true, 2),
    V3Row(80, 3, 200, 80, false, true, 1),
    V3Row(80, 3, 184, 80, false, true, 1),
    V3Row(80, 3, 184, 80, false, true, 1),
    V3Row(80, 3, 480, 112, true, true, 1),
    V3Row(112, 3, 672, 112, true, true, 1),
    V3Row(112, 5, 672, 160, true, true, 2),
    V3Row(160, 5, 960, 160, true, true, 1),
    V3Row(160, 5, 960, 160, true, true, 1),
];

/// timm's stage lengths of `mobilenetv3_large_100` over the same 15 blocks (then its stage 6 is
/// the 1x1 conv that torchvision calls `features.16`).
const V3_TIMM_STAGES: [usize; 6] = [1, 2, 3, 4, 2, 3];

pub fn v3_plan() -> Vec<MobileBlockPlan> {
    let mut plan = Vec::new();
    let mut rows = V3_LARGE.iter();
    for (stage, &n) in V3_TIMM_STAGES.iter().enumerate() {
        for layer in 0..n {
            let r = rows.next().expect("timm's stages cover the 15 blocks");
            plan.push(MobileBlockPlan { feature: plan.len() + 1, stage, layer, expand: r.2 != r.0, squeeze_excitation: r.4 });
        }
    }
    plan
}

/// torchvision's MobileNetV3 `InvertedResidual`.
#[derive(Debug)]
struct V3Block {
    expand: Option<ConvNormActivation>,
    depthwise: ConvNormActivation,
    squeeze_excitation: Option<SqueezeExcitation>,
    project: ConvNormActivation,
    use_residual: bool,
}

impl V3Block {
    fn new(p: nn::Path, r: &V3Row) -> Self {
        let V3Row(input, kernel, expanded, output, se, hardswish, stride) = *r;
        let activation = if hardswish { Activation::Hardswish } else { Activation::Relu };
        let block = &p / "block";
        let mut index = 0;
        let expand = (expanded != input).then(|| {
            index += 1;
            ConvNormActivation::new(&block / 0, ConvSpec::new(input, expanded, 1), V3_NORM, activation)
        });
        let depthwise = ConvNormActivation::new(
            &block / index,
            ConvSpec::new(expanded, expanded, kernel).stride(stride).groups(expanded),
            V3_NORM,
            activation,
        );
        index += 1;
        let squeeze_excitation = se.then(|| {
            let squeeze = make_divisible((expanded / 4) as f64, 8);
            index += 1;
            SqueezeExcitation::with(&block / (index - 1), expanded, squeeze, Activation::Relu, Gate::Hardsigmoid)
        });
        let project = ConvNormActivation::new(&block / index, ConvSpec::new(expanded, output, 1), V3_NORM, Activation::Identity);
        V3Block { expand, depthwise, squeeze_excitation, project, use_residual: stride == 1 && input == output }
    }
}

impl ModuleT for V3Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let hidden = match &self.expand {
            Some(e) => e.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let hidden = self.depthwise.forward_t(&hidden, train);
        let hidden = match &self.squeeze_excitation {
            Some(se) => se.forward_t(&hidden, train),
            None => hidden,
        };
        let mut out = self.project.forward_t(&hidden, train);
        if self.use_residual {
            out += xs;
        }
        out
    }
}

#[derive(Debug)]
pub struct MobileNetV3 {
    stem: ConvNormActivation,
    blocks: Vec<V3Block>,
    last_conv: ConvNormActivation,
    fc1: nn::Linear,
    dropout: f64,
    fc2: nn::Linear,
}

impl MobileNetV3 {
    pub fn large(p: &nn::Path, num_classes: i64, dropout: f64) -> Self {
        let features = p / "features";
        let stem = ConvNormActivation::new(&features / 0, ConvSpec::new(3, 16, 3).stride(2), V3_NORM, Activation::Hardswish);
        let blocks: Vec<V3Block> = V3_LARGE.iter().enumerate().map(|(i, r)| V3Block::new(&features / (i + 1), r)).collect();
        let last_in = V3_LARGE[V3_LARGE.len() - 1].3;
        let last_out = 6 * last_in;
        let last_conv = ConvNormActivation::new(
            &features / (blocks.len() + 1),
            ConvSpec::new(last_in, last_out, 1),
            V3_NORM,
            Activation::Hardswish,
        );
        let classifier = p / "classifier";
        let fc1 = linear_zero_bias(&classifier / 0, last_out, V3_LAST_CHANNEL, LINEAR_INIT);
        let fc2 = linear_zero_bias(&classifier / 3, V3_LAST_CHANNEL, num_classes, LINEAR_INIT);
        MobileNetV3 { stem, blocks, last_conv, fc1, dropout, fc2 }
    }
}

impl ModuleT for MobileNetV3 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_t(xs, train);
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        let x = self.last_conv.forward_t(&x, train);
        let hidden = global_average_pool(&x).apply(&self.fc1).hardswish_();
        classifier_dropout(hidden, self.dropout, train).apply(&self.fc2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn plans_cover_every_block_with_torchvision_indices() {
        let v2 = v2_plan();
        assert_eq!(v2.len(), 17);
        assert_eq!((v2[0].feature, v2[0].expand, v2[16].feature, v2[16].stage), (1, false, 17, 6));
        let v3 = v3_plan();
        assert_eq!(v3.len(), 15);
        assert_eq!((v3[3].feature, v3[3].stage, v3[3].layer, v3[3].squeeze_excitation), (4, 2, 0, true));
        assert!(!v3[0].expand && v3[1].expand);
        let vs = VarStore::new(Device::Cpu);
        let _m = MobileNetV3::large(&vs.root(), 1000, 0.2);
        let vars = vs.variables();
        // From torchvision 0.26's mobilenet_v3_large().state_dict().
        assert_eq!(vars["features.4.block.2.fc1.weight"].size(), [24, 72, 1, 1]);
        assert_eq!(vars["features.1.block.1.0.weight"].size(), [16, 16, 1, 1]);
        assert_eq!(vars["features.16.0.weight"].size(), [960, 160, 1, 1]);
        assert_eq!(vars["classifier.0.weight"].size(), [1280, 960]);
    }
}
