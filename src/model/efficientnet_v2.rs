//! EfficientNetV2-S/M with torchvision's module tree: `features.0` stem, `features.{stage}.{layer}.block.{i}`
//! (FusedMBConv in the first stages, MBConv with squeeze-excitation after), `features.{last}` head,
//! `classifier.1`. Batch norm eps 1e-3 (torchvision's choice for V2), SiLU, symmetric padding,
//! stochastic depth growing linearly to 0.2 over the blocks. Also the `efficientnet_v2` family:
//! its backbones, their torchvision and timm weights, and the map of timm's names.
use super::blocks::{stochastic_depth, Activation, ConvNormActivation, ConvSpec, NormConfig, Padding};
use super::efficientnet::DEFAULT_STOCHASTIC_DEPTH;
use super::family::{tf_port, tv, Family, FamilyInfo, Pretrained, Variant};
use super::inverted_residual::{
    cna, efficientnet_classifier_init, scale_channels, timm_inverted_residual, two, BlockShape, BlockStyle,
    InvertedResidualNet, MbConv,
};
use crate::weights::mapping::{Convention, Mapped, NameMap};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// torchvision's `partial(nn.BatchNorm2d, eps=1e-03)` (momentum stays PyTorch's 0.1).
const V2_NORM: NormConfig = NormConfig { eps: 1e-3, momentum: 0.1 };
const HEAD_CHANNELS: i64 = 1280;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Expansion and depthwise conv fused into one full conv (`FusedMBConv`).
    Fused,
    /// Expansion, depthwise conv, squeeze-excitation, projection (`MBConv`).
    MbConv,
}

/// One row of torchvision's `_efficientnet_conf` for V2.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageConfig {
    pub kind: BlockKind,
    pub expand_ratio: f64,
    pub kernel: i64,
    pub stride: i64,
    pub input_channels: i64,
    pub out_channels: i64,
    pub num_layers: i64,
}

const fn fused(expand_ratio: f64, kernel: i64, stride: i64, input_channels: i64, out_channels: i64, num_layers: i64) -> StageConfig {
    StageConfig { kind: BlockKind::Fused, expand_ratio, kernel, stride, input_channels, out_channels, num_layers }
}

const fn mbconv(expand_ratio: f64, kernel: i64, stride: i64, input_channels: i64, out_channels: i64, num_layers: i64) -> StageConfig {
    StageConfig { kind: BlockKind::MbConv, expand_ratio, kernel, stride, input_channels, out_channels, num_layers }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct V2Config {
    pub stages: &'static [StageConfig],
    pub dropout: f64,
}

pub const V2_S: V2Config = V2Config {
    stages: &[
        fused(1.0, 3, 1, 24, 24, 2),
        fused(4.0, 3, 2, 24, 48, 4),
        fused(4.0, 3, 2, 48, 64, 4),
        mbconv(4.0, 3, 2, 64, 128, 6),
        mbconv(6.0, 3, 1, 128, 160, 9),
        mbconv(6.0, 3, 2, 160, 256, 15),
    ],
    dropout: 0.2,
};

pub const V2_M: V2Config = V2Config {
    stages: &[
        fused(1.0, 3, 1, 24, 24, 3),
        fused(4.0, 3, 2, 24, 48, 5),
        fused(4.0, 3, 2, 48, 80, 5),
        mbconv(4.0, 3, 2, 80, 160, 7),
        mbconv(6.0, 3, 1, 160, 176, 14),
        mbconv(6.0, 3, 2, 176, 304, 18),
        mbconv(6.0, 3, 1, 304, 512, 5),
    ],
    dropout: 0.3,
};

/// Where one block sits and which layers it has (what maps timm's names onto torchvision's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2BlockPlan {
    /// Index into `features` (1-based: `features.0` is the stem).
    pub stage: usize,
    pub layer: usize,
    pub kind: BlockKind,
    /// A separate expansion layer (MBConv with ratio != 1; FusedMBConv with ratio != 1 has a
    /// fused expansion conv followed by a 1x1 projection).
    pub expand: bool,
}

/// The blocks in forward order and the index of the head in `features`.
pub fn block_plan(cfg: V2Config) -> (Vec<V2BlockPlan>, usize) {
    let mut plan = Vec::new();
    for (i, s) in cfg.stages.iter().enumerate() {
        for layer in 0..s.num_layers {
            let input = if layer == 0 { s.input_channels } else { s.out_channels };
            plan.push(V2BlockPlan {
                stage: i + 1,
                layer: layer as usize,
                kind: s.kind,
                expand: scale_channels(input, s.expand_ratio) != input,
            });
        }
    }
    (plan, cfg.stages.len() + 1)
}

/// torchvision's `FusedMBConv`: a full k x k conv that expands (and strides), then a 1x1
/// projection; with expansion ratio 1 the k x k conv goes straight to the output width.
#[derive(Debug)]
pub struct FusedMbConv {
    layers: Vec<ConvNormActivation>,
    use_residual: bool,
    stochastic_depth_prob: f64,
}

impl FusedMbConv {
    fn new(p: nn::Path, shape: BlockShape, stochastic_depth_prob: f64, norm: NormConfig) -> Self {
        let block = &p / "block";
        let expanded = scale_channels(shape.input_channels, shape.expand_ratio);
        let spatial = |out: i64| ConvSpec::new(shape.input_channels, out, shape.kernel).stride(shape.stride);
        let layers = if expanded != shape.input_channels {
            vec![
                ConvNormActivation::new(&block / 0, spatial(expanded), norm, Activation::Silu),
                ConvNormActivation::new(&block / 1, ConvSpec::new(expanded, shape.out_channels, 1), norm, Activation::Identity),
            ]
        } else {
            vec![ConvNormActivation::new(&block / 0, spatial(shape.out_channels), norm, Activation::Silu)]
        };
        FusedMbConv {
            layers,
            use_residual: shape.stride == 1 && shape.input_channels == shape.out_channels,
            stochastic_depth_prob,
        }
    }
}

impl ModuleT for FusedMbConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut branch = xs.shallow_clone();
        for layer in &self.layers {
            branch = layer.forward_t(&branch, train);
        }
        if self.use_residual {
            let mut out = stochastic_depth(&branch, self.stochastic_depth_prob, train);
            out += xs;
            out
        } else {
            branch
        }
    }
}

/// A block of EfficientNetV2: fused in the first stages, MBConv after.
#[derive(Debug)]
pub enum V2Block {
    Fused(FusedMbConv),
    MbConv(MbConv),
}

impl ModuleT for V2Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            V2Block::Fused(b) => b.forward_t(xs, train),
            V2Block::MbConv(b) => b.forward_t(xs, train),
        }
    }
}

/// EfficientNetV2 as torchvision builds it.
pub type EfficientNetV2 = InvertedResidualNet<V2Block>;

impl EfficientNetV2 {
    /// `stochastic_depth` is the last block's drop probability; block `i` of `n` drops with
    /// `stochastic_depth * i / n`. `bn_momentum` replaces torchvision's batch-norm momentum when given.
    pub fn new(p: &nn::Path, cfg: V2Config, num_classes: i64, dropout: f64, stochastic_depth: f64, bn_momentum: Option<f64>) -> Self {
        let norm = V2_NORM.with_momentum(bn_momentum);
        let features = p / "features";
        let stem = ConvNormActivation::new(
            &features / 0,
            ConvSpec::new(3, cfg.stages[0].input_channels, 3).stride(2),
            norm,
            Activation::Silu,
        );
        let style = BlockStyle { norm, activation: Activation::Silu, padding: Padding::Symmetric, squeeze_excitation: true };
        let total: i64 = cfg.stages.iter().map(|s| s.num_layers).sum();
        let mut blocks = Vec::with_capacity(total as usize);
        let mut block_id = 0;
        for (i, s) in cfg.stages.iter().enumerate() {
            let stage_path = &features / (i + 1);
            for layer in 0..s.num_layers {
                let (input_channels, stride) = if layer == 0 { (s.input_channels, s.stride) } else { (s.out_channels, 1) };
                let shape = BlockShape { input_channels, out_channels: s.out_channels, expand_ratio: s.expand_ratio, kernel: s.kernel, stride };
                let drop = stochastic_depth * block_id as f64 / total as f64;
                blocks.push(match s.kind {
                    BlockKind::Fused => V2Block::Fused(FusedMbConv::new(&stage_path / layer, shape, drop, norm)),
                    BlockKind::MbConv => V2Block::MbConv(MbConv::new(&stage_path / layer, shape, drop, style)),
                });
                block_id += 1;
            }
        }
        let last = cfg.stages[cfg.stages.len() - 1].out_channels;
        let head = ConvNormActivation::new(
            &features / (cfg.stages.len() + 1),
            ConvSpec::new(last, HEAD_CHANNELS, 1),
            norm,
            Activation::Silu,
        );
        let init = efficientnet_classifier_init(num_classes);
        InvertedResidualNet::assemble(p, (stem, blocks, head), HEAD_CHANNELS, num_classes, dropout, init)
    }
}

pub static FAMILY: Family<V2Config> = Family {
    info: FamilyInfo { name: "efficientnet_v2", head: "classifier.1.", stem: "features.0.0.weight", in_torchvision: true, computed_buffers: &[] },
    build: |cfg, p, o| Box::new(EfficientNetV2::new(p, *cfg, o.num_classes, o.dropout, o.stochastic_depth, o.bn_momentum)),
    name_maps,
    variants: &[
        variant("efficientnet_v2_s", 384, 21_458_488, V2_S).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "efficientnet_v2_s-dd5fe13b.pth")])
                .timm(&[tf_port("tf_efficientnetv2_s", &["in1k", "in21k_ft_in1k"])]),
        ),
        variant("efficientnet_v2_m", 480, 54_139_356, V2_M).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "efficientnet_v2_m-dc08266a.pth")])
                .timm(&[tf_port("tf_efficientnetv2_m", &["in1k", "in21k_ft_in1k"])]),
        ),
    ],
};

/// A row with the configuration's dropout and torchvision's stochastic depth.
const fn variant(name: &'static str, default_size: u32, parameters: u64, cfg: V2Config) -> Variant<V2Config> {
    Variant::new(name, default_size, parameters, cfg).dropout(cfg.dropout).stochastic_depth(DEFAULT_STOCHASTIC_DEPTH)
}

/// timm's names: `conv_stem`/`bn1` -> `features.0`; `blocks.s.l` -> `features.(s+1).l.block.i`
/// (`conv`/`bn1`; `conv_exp`/`bn1`, `conv_pwl`/`bn2`; MBConv as EfficientNet);
/// `conv_head`/`bn2` -> `features.H`; `classifier` -> `classifier.1`.
fn name_maps(cfg: &V2Config, _names: &[&str]) -> Vec<NameMap> {
    let (blocks, head) = block_plan(*cfg);
    vec![NameMap {
        convention: Convention::TIMM,
        prefixes: &["blocks.", "conv_stem."],
        rename: Box::new(move |name| timm_name(name, &blocks, head)),
    }]
}

fn timm_name(name: &str, blocks: &[V2BlockPlan], head: usize) -> Mapped {
    let map = || -> Option<String> {
        let (first, rest) = name.split_once('.')?;
        Some(match first {
            "conv_stem" => format!("features.0.0.{rest}"),
            "bn1" => format!("features.0.1.{rest}"),
            "conv_head" => format!("features.{head}.0.{rest}"),
            "bn2" => format!("features.{head}.1.{rest}"),
            "classifier" => format!("classifier.1.{rest}"),
            "blocks" => {
                let (stage, layer, rest) = two(rest)?;
                let (stage, layer): (usize, usize) = (stage.parse().ok()?, layer.parse().ok()?);
                let p = blocks.iter().find(|p| p.stage == stage + 1 && p.layer == layer)?;
                let (sub, rest) = rest.split_once('.')?;
                let base = format!("features.{}.{}.block", p.stage, p.layer);
                let at = |i: usize| format!("{base}.{i}");
                match (p.kind, p.expand, sub) {
                    // ConvBnAct (ratio 1) and EdgeResidual (fused expansion, then a 1x1 projection).
                    (BlockKind::Fused, false, "conv") | (BlockKind::Fused, true, "conv_exp") => cna(&at(0), 0, rest),
                    (BlockKind::Fused, _, "bn1") => cna(&at(0), 1, rest),
                    (BlockKind::Fused, true, "conv_pwl") => cna(&at(1), 0, rest),
                    (BlockKind::Fused, true, "bn2") => cna(&at(1), 1, rest),
                    (BlockKind::MbConv, expand, _) => timm_inverted_residual(&base, expand, true, sub, rest)?,
                    _ => return None,
                }
            }
            _ => return None,
        })
    };
    (map(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn names_and_shapes_match_torchvision() {
        let vs = VarStore::new(Device::Cpu);
        let _m = EfficientNetV2::new(&vs.root(), V2_S, 1000, 0.2, 0.2, None);
        let vars = vs.variables();
        // Shapes from torchvision 0.26's efficientnet_v2_s().state_dict().
        let expected: &[(&str, &[i64])] = &[
            ("features.0.0.weight", &[24, 3, 3, 3]),
            ("features.1.1.block.0.0.weight", &[24, 24, 3, 3]),
            ("features.2.0.block.0.0.weight", &[96, 24, 3, 3]),
            ("features.2.0.block.1.0.weight", &[48, 96, 1, 1]),
            ("features.4.0.block.2.fc1.weight", &[16, 256, 1, 1]),
            ("features.6.14.block.3.1.running_var", &[256]),
            ("features.7.0.weight", &[1280, 256, 1, 1]),
            ("classifier.1.weight", &[1000, 1280]),
        ];
        for (name, shape) in expected {
            assert_eq!(vars.get(*name).unwrap_or_else(|| panic!("missing {name}")).size(), shape.to_vec(), "{name}");
        }
        let (plan, head) = block_plan(V2_S);
        assert_eq!((plan.len(), head), (40, 7));
        assert!(!plan[0].expand && plan[2].expand && plan[2].kind == BlockKind::Fused);
    }
}
