//! RegNetY-1.6GF with torchvision's module tree: `stem.{0,1}`, then
//! `trunk_output.block{s}.block{s}-{i}` residual bottlenecks (`proj.{0,1}` shortcut when the shape
//! changes; `f.a` 1x1, `f.b` grouped 3x3, `f.se` squeeze-excitation, `f.c` 1x1), `fc`.
//!
//! The stage widths and depths are what torchvision's `BlockParams.from_init_params(depth=27,
//! w_0=48, w_a=20.71, w_m=2.65, group_width=24, se_ratio=0.25)` computes (in float32, which is
//! why they are tabled here rather than recomputed).
//!
//! Also the `regnet` family: its torchvision and timm weights and the map of timm's names.
use super::blocks::{
    classifier_dropout, global_average_pool, linear_zero_bias, Activation, ConvNormActivation, ConvSpec, Gate,
    SqueezeExcitation, NormConfig, TORCH_BATCH_NORM,
};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;
use super::family::{timm, tv, Family, FamilyInfo, Pretrained, Variant};
use crate::weights::mapping::{Convention, Mapped, NameMap};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegNetConfig {
    pub stem: i64,
    pub widths: [i64; 4],
    pub depths: [i64; 4],
    pub group_width: i64,
    pub se_ratio: f64,
}

pub const Y_1_6GF: RegNetConfig =
    RegNetConfig { stem: 32, widths: [48, 120, 336, 888], depths: [2, 6, 17, 2], group_width: 24, se_ratio: 0.25 };

/// torchvision's `ResBottleneckBlock` (bottleneck multiplier 1).
#[derive(Debug)]
struct Bottleneck {
    proj: Option<ConvNormActivation>,
    a: ConvNormActivation,
    b: ConvNormActivation,
    se: Option<SqueezeExcitation>,
    c: ConvNormActivation,
}

impl Bottleneck {
    fn new(p: nn::Path, width_in: i64, width_out: i64, stride: i64, cfg: &RegNetConfig, norm: NormConfig) -> Self {
        let proj = (width_in != width_out || stride != 1).then(|| {
            ConvNormActivation::new(&p / "proj", ConvSpec::new(width_in, width_out, 1).stride(stride), norm, Activation::Identity)
        });
        let f = &p / "f";
        let groups = width_out / cfg.group_width;
        let a = ConvNormActivation::new(&f / "a", ConvSpec::new(width_in, width_out, 1), norm, Activation::Relu);
        let b = ConvNormActivation::new(
            &f / "b",
            ConvSpec::new(width_out, width_out, 3).stride(stride).groups(groups),
            norm,
            Activation::Relu,
        );
        // Squeezed relative to the block's input width, as torchvision does.
        let se = (cfg.se_ratio > 0.0).then(|| {
            let squeeze = (cfg.se_ratio * width_in as f64).round() as i64;
            SqueezeExcitation::with(&f / "se", width_out, squeeze, Activation::Relu, Gate::Sigmoid)
        });
        let c = ConvNormActivation::new(&f / "c", ConvSpec::new(width_out, width_out, 1), norm, Activation::Identity);
        Bottleneck { proj, a, b, se, c }
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let hidden = self.b.forward_t(&self.a.forward_t(xs, train), train);
        let hidden = match &self.se {
            Some(se) => se.forward_t(&hidden, train),
            None => hidden,
        };
        let mut out = self.c.forward_t(&hidden, train);
        match &self.proj {
            Some(proj) => out += proj.forward_t(xs, train),
            None => out += xs,
        }
        out.relu_()
    }
}

#[derive(Debug)]
pub struct RegNet {
    stem: ConvNormActivation,
    blocks: Vec<Bottleneck>,
    dropout: f64,
    fc: nn::Linear,
}

impl RegNet {
    /// `bn_momentum` replaces PyTorch's batch-norm momentum when given.
    pub fn new(p: &nn::Path, cfg: RegNetConfig, num_classes: i64, dropout: f64, bn_momentum: Option<f64>) -> Self {
        let norm = TORCH_BATCH_NORM.with_momentum(bn_momentum);
        let stem = ConvNormActivation::new(p / "stem", ConvSpec::new(3, cfg.stem, 3).stride(2), norm, Activation::Relu);
        let trunk = p / "trunk_output";
        let mut blocks = Vec::new();
        let mut width_in = cfg.stem;
        for (s, (&width, &depth)) in cfg.widths.iter().zip(&cfg.depths).enumerate() {
            let stage = &trunk / format!("block{}", s + 1);
            for i in 0..depth {
                let stride = if i == 0 { 2 } else { 1 };
                blocks.push(Bottleneck::new(&stage / format!("block{}-{i}", s + 1), width_in, width, stride, &cfg, norm));
                width_in = width;
            }
        }
        let fc = linear_zero_bias(p / "fc", width_in, num_classes, Init::Randn { mean: 0.0, stdev: 0.01 });
        RegNet { stem, blocks, dropout, fc }
    }
}

impl ModuleT for RegNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_t(xs, train);
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        classifier_dropout(global_average_pool(&x, train), self.dropout, train).apply(&self.fc)
    }
}

pub static FAMILY: Family<RegNetConfig> = Family {
    info: FamilyInfo { name: "regnet", head: "fc.", stem: "stem.0.weight", in_torchvision: true, computed_buffers: &[] },
    build: |cfg, p, o| Box::new(RegNet::new(p, *cfg, o.num_classes, o.dropout, o.bn_momentum)),
    name_maps: |_, _| vec![NameMap { convention: Convention::TIMM, prefixes: &["s1.", "stem.conv."], rename: Box::new(timm_name) }],
    variants: &[Variant::new("regnet_y_1_6gf", 224, 11_202_430, Y_1_6GF).pretrained(
        Pretrained::torchvision(&[tv("IMAGENET1K_V2", "regnet_y_1_6gf-0d7bc02a.pth"), tv("IMAGENET1K_V1", "regnet_y_1_6gf-b11a554e.pth")])
            .timm(&[timm("regnety_016", &["tv2_in1k", "pycls_in1k"])]),
    )],
};

/// timm's names: `stem.{conv,bn}`, `sS.bB.{conv1,conv2,conv3}.{conv,bn}`, `se.fc1/fc2`,
/// `downsample.{conv,bn}`, `head.fc` -> `stem.{0,1}`, `trunk_output.blockS.blockS-(B-1).f.{a,b,c}.{0,1}`,
/// `f.se`, `proj.{0,1}`, `fc`.
fn timm_name(name: &str) -> Mapped {
    let map = || -> Option<String> {
        if let Some(rest) = name.strip_prefix("stem.conv.") {
            return Some(format!("stem.0.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("stem.bn.") {
            return Some(format!("stem.1.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("head.fc.") {
            return Some(format!("fc.{rest}"));
        }
        let (stage, rest) = name.split_once('.')?;
        let (block, rest) = rest.split_once('.')?;
        let stage: usize = stage.strip_prefix('s')?.parse().ok()?;
        let block: usize = block.strip_prefix('b')?.parse().ok()?;
        let base = format!("trunk_output.block{stage}.block{stage}-{}", block.checked_sub(1)?);
        let (layer, rest) = rest.split_once('.')?;
        let conv_or_bn = |target: &str, rest: &str| -> Option<String> {
            let (kind, rest) = rest.split_once('.')?;
            let index = match kind {
                "conv" => 0,
                "bn" => 1,
                _ => return None,
            };
            Some(format!("{base}.{target}.{index}.{rest}"))
        };
        match layer {
            "conv1" => conv_or_bn("f.a", rest),
            "conv2" => conv_or_bn("f.b", rest),
            "conv3" => conv_or_bn("f.c", rest),
            "downsample" => conv_or_bn("proj", rest),
            "se" => Some(format!("{base}.f.se.{rest}")),
            _ => None,
        }
    };
    (map(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(m: Mapped) -> String {
        m.0.unwrap_or_default()
    }

    #[test]
    fn timm_names_map_to_torchvision() {
        assert_eq!(name(timm_name("s3.b17.se.fc2.bias")), "trunk_output.block3.block3-16.f.se.fc2.bias");
        assert_eq!(name(timm_name("s1.b1.downsample.bn.running_var")), "trunk_output.block1.block1-0.proj.1.running_var");
    }
}
