//! RegNetY-1.6GF with torchvision's module tree: `stem.{0,1}`, then
//! `trunk_output.block{s}.block{s}-{i}` residual bottlenecks (`proj.{0,1}` shortcut when the shape
//! changes; `f.a` 1x1, `f.b` grouped 3x3, `f.se` squeeze-excitation, `f.c` 1x1), `fc`.
//!
//! The stage widths and depths are what torchvision's `BlockParams.from_init_params(depth=27,
//! w_0=48, w_a=20.71, w_m=2.65, group_width=24, se_ratio=0.25)` computes (in float32, which is
//! why they are tabled here rather than recomputed).
use super::blocks::{
    classifier_dropout, global_average_pool, linear_zero_bias, Activation, ConvNormActivation, ConvSpec, Gate,
    SqueezeExcitation, TORCH_BATCH_NORM,
};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

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
    fn new(p: nn::Path, width_in: i64, width_out: i64, stride: i64, cfg: &RegNetConfig) -> Self {
        let norm = TORCH_BATCH_NORM;
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
    pub fn new(p: &nn::Path, cfg: RegNetConfig, num_classes: i64, dropout: f64) -> Self {
        let stem = ConvNormActivation::new(p / "stem", ConvSpec::new(3, cfg.stem, 3).stride(2), TORCH_BATCH_NORM, Activation::Relu);
        let trunk = p / "trunk_output";
        let mut blocks = Vec::new();
        let mut width_in = cfg.stem;
        for (s, (&width, &depth)) in cfg.widths.iter().zip(&cfg.depths).enumerate() {
            let stage = &trunk / format!("block{}", s + 1);
            for i in 0..depth {
                let stride = if i == 0 { 2 } else { 1 };
                blocks.push(Bottleneck::new(&stage / format!("block{}-{i}", s + 1), width_in, width, stride, &cfg));
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
        classifier_dropout(global_average_pool(&x), self.dropout, train).apply(&self.fc)
    }
}
