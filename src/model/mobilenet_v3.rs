//! MobileNetV3-Large with torchvision's module tree: `features.0` stem (Hardswish),
//! `features.{1..15}` inverted residuals (`block.{i}`: optional expansion, depthwise, optional
//! squeeze-excitation with ReLU and a hard sigmoid, projection), `features.16` 1x1 conv to 960,
//! then `classifier.0` Linear 960->1280, Hardswish, dropout, `classifier.3`; batch norm eps 1e-3,
//! momentum 0.01. Also the `mobilenet_v3` family: its torchvision and timm weights and the map of
//! timm's names.
use super::blocks::{
    classifier_dropout, global_average_pool, linear_zero_bias, make_divisible, Activation, ConvNormActivation, ConvSpec,
    Gate, NormConfig, SqueezeExcitation,
};
use super::family::{Family, FamilyInfo, Pretrained, TimmModel, tv, Variant};
use super::inverted_residual::{timm_inverted_residual, timm_mobilenet, MobileBlockPlan, MOBILENET_LINEAR_INIT};
use crate::weights::mapping::{renamed, Convention, Mapped, NameMap};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// torchvision's classifier dropout for MobileNetV3.
const DEFAULT_DROPOUT: f64 = 0.2;

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
    fn new(p: nn::Path, r: &V3Row, norm: NormConfig) -> Self {
        let V3Row(input, kernel, expanded, output, se, hardswish, stride) = *r;
        let activation = if hardswish { Activation::Hardswish } else { Activation::Relu };
        let block = &p / "block";
        let mut index = 0;
        let expand = (expanded != input).then(|| {
            index += 1;
            ConvNormActivation::new(&block / 0, ConvSpec::new(input, expanded, 1), norm, activation)
        });
        let depthwise = ConvNormActivation::new(
            &block / index,
            ConvSpec::new(expanded, expanded, kernel).stride(stride).groups(expanded),
            norm,
            activation,
        );
        index += 1;
        let squeeze_excitation = se.then(|| {
            let squeeze = make_divisible((expanded / 4) as f64, 8);
            index += 1;
            SqueezeExcitation::with(&block / (index - 1), expanded, squeeze, Activation::Relu, Gate::Hardsigmoid)
        });
        let project = ConvNormActivation::new(&block / index, ConvSpec::new(expanded, output, 1), norm, Activation::Identity);
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
    /// `bn_momentum` replaces torchvision's batch-norm momentum (0.01) when given.
    pub fn large(p: &nn::Path, num_classes: i64, dropout: f64, bn_momentum: Option<f64>) -> Self {
        let norm = V3_NORM.with_momentum(bn_momentum);
        let features = p / "features";
        let stem = ConvNormActivation::new(&features / 0, ConvSpec::new(3, 16, 3).stride(2), norm, Activation::Hardswish);
        let blocks: Vec<V3Block> = V3_LARGE.iter().enumerate().map(|(i, r)| V3Block::new(&features / (i + 1), r, norm)).collect();
        let last_in = V3_LARGE[V3_LARGE.len() - 1].3;
        let last_out = 6 * last_in;
        let last_conv = ConvNormActivation::new(
            &features / (blocks.len() + 1),
            ConvSpec::new(last_in, last_out, 1),
            norm,
            Activation::Hardswish,
        );
        let classifier = p / "classifier";
        let fc1 = linear_zero_bias(&classifier / 0, last_out, V3_LAST_CHANNEL, MOBILENET_LINEAR_INIT);
        let fc2 = linear_zero_bias(&classifier / 3, V3_LAST_CHANNEL, num_classes, MOBILENET_LINEAR_INIT);
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
        let hidden = global_average_pool(&x, train).apply(&self.fc1).hardswish_();
        classifier_dropout(hidden, self.dropout, train).apply(&self.fc2)
    }
}

pub static FAMILY: Family<()> = Family {
    info: FamilyInfo { name: "mobilenet_v3", head: "classifier.3.", stem: "features.0.0.weight", in_torchvision: true, computed_buffers: &[] },
    build: |_, p, o| Box::new(MobileNetV3::large(p, o.num_classes, o.dropout, o.bn_momentum)),
    name_maps,
    variants: &[Variant::new("mobilenet_v3_large", 224, 5_483_032, ()).dropout(DEFAULT_DROPOUT).pretrained(
        Pretrained::torchvision(&[tv("IMAGENET1K_V2", "mobilenet_v3_large-5c1a4163.pth"), tv("IMAGENET1K_V1", "mobilenet_v3_large-8738ca79.pth")])
            .timm(&[TimmModel {
                model: "mobilenetv3_large_100",
                tags: &["ra_in1k", "miil_in21k_ft_in1k", "ra4_e3600_r224_in1k"],
                caveat: Some("trained with batch-norm eps 1e-5 where torchvision's MobileNetV3 uses 1e-3: a small shift that fine-tuning absorbs"),
            }]),
    )],
};

/// timm's names: as MobileNetV2's plus `se.conv_reduce`/`conv_expand`; `blocks.6.0.conv`/`bn1`;
/// `conv_head` (a 1x1 conv with bias) -> `features.N.block.i` (`fc1`/`fc2`), `features.16`,
/// `classifier.0` (reshaped to a Linear), `classifier.3`.
fn name_maps(_: &(), _names: &[&str]) -> Vec<NameMap> {
    let plan = v3_plan();
    vec![NameMap { convention: Convention::TIMM, prefixes: &["blocks.", "conv_stem."], rename: Box::new(move |name| timm_name(name, &plan)) }]
}

fn timm_name(name: &str, plan: &[MobileBlockPlan]) -> Mapped {
    let head_feature = plan.len() + 1;
    timm_mobilenet(
        name,
        plan,
        |p, sub, rest| match p {
            Some(p) => timm_inverted_residual(&format!("features.{}.block", p.feature), p.expand, p.squeeze_excitation, sub, rest).map(renamed),
            // timm's last stage is the 1x1 conv torchvision calls features.16.
            None => match sub {
                "conv" => Some(renamed(format!("features.{head_feature}.0.{rest}"))),
                "bn1" => Some(renamed(format!("features.{head_feature}.1.{rest}"))),
                _ => None,
            },
        },
        |first, rest| match first {
            // conv_head is the 960 -> 1280 Linear stored as a 1x1 conv.
            "conv_head" => {
                let reshape = (rest == "weight").then(|| vec![V3_LAST_CHANNEL, -1]);
                Some((Some(format!("classifier.0.{rest}")), reshape))
            }
            "classifier" => Some(renamed(format!("classifier.3.{rest}"))),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    fn name(m: Mapped) -> String {
        m.0.unwrap_or_default()
    }

    #[test]
    fn plans_cover_every_block_with_torchvision_indices() {
        let v3 = v3_plan();
        assert_eq!(v3.len(), 15);
        assert_eq!((v3[3].feature, v3[3].stage, v3[3].layer, v3[3].squeeze_excitation), (4, 2, 0, true));
        assert!(!v3[0].expand && v3[1].expand);
        let vs = VarStore::new(Device::Cpu);
        let _m = MobileNetV3::large(&vs.root(), 1000, 0.2, None);
        let vars = vs.variables();
        // From torchvision 0.26's mobilenet_v3_large().state_dict().
        assert_eq!(vars["features.4.block.2.fc1.weight"].size(), [24, 72, 1, 1]);
        assert_eq!(vars["features.1.block.1.0.weight"].size(), [16, 16, 1, 1]);
        assert_eq!(vars["features.16.0.weight"].size(), [960, 160, 1, 1]);
        assert_eq!(vars["classifier.0.weight"].size(), [1280, 960]);
    }

    #[test]
    fn timm_names_map_to_torchvision() {
        let v3 = v3_plan();
        assert_eq!(name(timm_name("blocks.2.0.se.conv_reduce.weight", &v3)), "features.4.block.2.fc1.weight");
        assert_eq!(name(timm_name("blocks.0.0.conv_pw.weight", &v3)), "features.1.block.1.0.weight");
        assert_eq!(name(timm_name("blocks.6.0.bn1.weight", &v3)), "features.16.1.weight");
        assert_eq!(timm_name("conv_head.weight", &v3).1, Some(vec![1280, -1]));
        assert_eq!(timm_name("blocks.9.0.x", &v3).0, None);
    }
}
