//! What the inverted-residual families (EfficientNet and -Lite, EfficientNetV2, MobileNetV2 and
//! V3) share: torchvision's `MBConv` block, the network around the blocks (stem, blocks, 1x1 head
//! conv, global average pool, dropout, `classifier.1`) with its classifier inits, and how timm
//! names the layers of such blocks.
use super::blocks::{
    classifier_dropout, global_average_pool, linear_zero_bias, make_divisible, stochastic_depth, Activation,
    ConvNormActivation, ConvSpec, NormConfig, Padding, SqueezeExcitation,
};
use crate::weights::mapping::Mapped;
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

pub(crate) fn scale_channels(channels: i64, width_mult: f64) -> i64 {
    make_divisible(channels as f64 * width_mult, 8)
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
pub struct MbConv {
    expand: Option<ConvNormActivation>,
    depthwise: ConvNormActivation,
    squeeze_excitation: Option<SqueezeExcitation>,
    project: ConvNormActivation,
    pub(crate) use_residual: bool,
    pub(crate) stochastic_depth_prob: f64,
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

/// torchvision's EfficientNet and EfficientNetV2 classifier init: uniform(+-1/sqrt(out_features)).
pub(crate) fn efficientnet_classifier_init(num_classes: i64) -> Init {
    let range = 1.0 / (num_classes as f64).sqrt();
    Init::Uniform { lo: -range, up: range }
}

/// Both MobileNets start their Linears at normal(0, 0.01).
pub(crate) const MOBILENET_LINEAR_INIT: Init = Init::Randn { mean: 0.0, stdev: 0.01 };

/// `features` (a stem, the blocks `B`, a 1x1 head conv) -> global average pool -> dropout ->
/// `classifier.1`: torchvision's EfficientNet, EfficientNetV2 and MobileNetV2.
#[derive(Debug)]
pub struct InvertedResidualNet<B> {
    stem: ConvNormActivation,
    pub(crate) blocks: Vec<B>,
    head: ConvNormActivation,
    dropout: f64,
    classifier: nn::Linear,
}

impl<B: ModuleT> InvertedResidualNet<B> {
    /// The classifier is a Linear at `p/classifier/1` from the head's `head_channels` to
    /// `num_classes`, with `init` weights and a zero bias.
    pub(crate) fn assemble(
        p: &nn::Path,
        (stem, blocks, head): (ConvNormActivation, Vec<B>, ConvNormActivation),
        head_channels: i64,
        num_classes: i64,
        dropout: f64,
        init: Init,
    ) -> Self {
        let classifier = linear_zero_bias(p / "classifier" / 1, head_channels, num_classes, init);
        InvertedResidualNet { stem, blocks, head, dropout, classifier }
    }
}

impl<B: ModuleT> ModuleT for InvertedResidualNet<B> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut features = self.stem.forward_t(xs, train);
        for block in &self.blocks {
            features = block.forward_t(&features, train);
        }
        let features = self.head.forward_t(&features, train);
        classifier_dropout(global_average_pool(&features, train), self.dropout, train).apply(&self.classifier)
    }
}

/// Splits `a.b.rest` into ("a", "b", "rest").
pub(crate) fn two(name: &str) -> Option<(&str, &str, &str)> {
    let (a, rest) = name.split_once('.')?;
    let (b, rest) = rest.split_once('.')?;
    Some((a, b, rest))
}

/// `conv` or `bn` inside a Conv2dNormActivation at `prefix`.
pub(crate) fn cna(prefix: &str, which: usize, rest: &str) -> String {
    format!("{prefix}.{which}.{rest}")
}

/// timm's InvertedResidual (`conv_pw`, `bn1`, `conv_dw`, `bn2`, `se`, `conv_pwl`, `bn3`) or
/// DepthwiseSeparable (`conv_dw`, `bn1`, `se`, `conv_pw`, `bn2`) layers -> `base.{i}` of a
/// torchvision block made of Conv2dNormActivations (EfficientNet's MBConv, MobileNetV3's).
pub(crate) fn timm_inverted_residual(base: &str, expand: bool, squeeze_excitation: bool, sub: &str, rest: &str) -> Option<String> {
    let dw = expand as usize;
    let se = dw + 1;
    let project = se + squeeze_excitation as usize;
    let at = |i: usize| format!("{base}.{i}");
    Some(match (expand, sub) {
        (true, "conv_pw") => cna(&at(0), 0, rest),
        (true, "bn1") => cna(&at(0), 1, rest),
        (_, "conv_dw") => cna(&at(dw), 0, rest),
        (true, "bn2") | (false, "bn1") => cna(&at(dw), 1, rest),
        (_, "se") if squeeze_excitation => {
            let (conv, rest) = rest.split_once('.')?;
            let fc = match conv {
                "conv_reduce" => "fc1",
                "conv_expand" => "fc2",
                _ => return None,
            };
            format!("{}.{fc}.{rest}", at(se))
        }
        (true, "conv_pwl") | (false, "conv_pw") => cna(&at(project), 0, rest),
        (true, "bn3") | (false, "bn2") => cna(&at(project), 1, rest),
        _ => return None,
    })
}

/// One MobileNet inverted residual in plan form: where it is and which optional layers it has,
/// for the timm name maps (`blocks.S.L` -> `features.N`).
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

/// timm's MobileNet names: the stem (`conv_stem`, `bn1`) -> `features.0`, a block
/// (`blocks.S.L.<layer>.<rest>`) -> `block(its plan, or None for a stage the plan does not hold,
/// layer, rest)`, anything else -> `other(first part, rest)`.
pub(crate) fn timm_mobilenet(
    name: &str,
    plan: &[MobileBlockPlan],
    block: impl Fn(Option<&MobileBlockPlan>, &str, &str) -> Option<Mapped>,
    other: impl Fn(&str, &str) -> Option<Mapped>,
) -> Mapped {
    let map = || -> Option<Mapped> {
        let (first, rest) = name.split_once('.')?;
        match first {
            "conv_stem" => Some((Some(format!("features.0.0.{rest}")), None)),
            "bn1" => Some((Some(format!("features.0.1.{rest}")), None)),
            "blocks" => {
                let (stage, layer, rest) = two(rest)?;
                let (stage, layer): (usize, usize) = (stage.parse().ok()?, layer.parse().ok()?);
                let (sub, rest) = rest.split_once('.')?;
                block(plan.iter().find(|p| p.stage == stage && p.layer == layer), sub, rest)
            }
            _ => other(first, rest),
        }
    };
    map().unwrap_or((None, None))
}
