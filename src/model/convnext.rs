//! ConvNeXt-T/S with torchvision's module tree: `features.0` stem (4x4 patchify conv + LayerNorm2d),
//! `features.{1,3,5,7}.{j}` blocks (`block.0` 7x7 depthwise conv, `block.2` LayerNorm,
//! `block.3`/`block.5` Linear, `layer_scale`), `features.{2,4,6}` downsampling (LayerNorm2d +
//! 2x2 conv), `classifier.0` LayerNorm2d and `classifier.2` Linear. LayerNorm eps 1e-6, exact GELU,
//! layer scale starting at 1e-6, stochastic depth growing linearly to its maximum over the blocks.
//! Also the `convnext` family: its torchvision and timm weights and the map of timm's names.
use super::blocks::{
    classifier_dropout, conv2d_trunc_normal, global_average_pool, layer_norm, layer_norm_2d, linear_trunc_normal,
    stochastic_depth, ConvSpec, Padding,
};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;
use super::family::{timm, tv, Family, FamilyInfo, Pretrained, Variant};
use crate::weights::mapping::{renamed, Convention, Mapped, NameMap};

const EPS: f64 = 1e-6;
const LAYER_SCALE: f64 = 1e-6;
const INIT_STD: f64 = 0.02;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvNextConfig {
    pub dims: [i64; 4],
    pub depths: [i64; 4],
    /// torchvision's default `stochastic_depth_prob` of the variant.
    pub stochastic_depth: f64,
}

pub const TINY: ConvNextConfig = ConvNextConfig { dims: [96, 192, 384, 768], depths: [3, 3, 9, 3], stochastic_depth: 0.1 };
pub const SMALL: ConvNextConfig = ConvNextConfig { dims: [96, 192, 384, 768], depths: [3, 3, 27, 3], stochastic_depth: 0.4 };

/// torchvision's `CNBlock`.
#[derive(Debug)]
struct Block {
    depthwise: nn::Conv2D,
    norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    layer_scale: Tensor,
    stochastic_depth_prob: f64,
}

impl Block {
    fn new(p: nn::Path, dim: i64, stochastic_depth_prob: f64) -> Self {
        let block = &p / "block";
        let depthwise = conv2d_trunc_normal(&block / 0, ConvSpec::new(dim, dim, 7).groups(dim).bias(true), INIT_STD);
        let norm = layer_norm(&block / 2, dim, EPS);
        let fc1 = linear_trunc_normal(&block / 3, dim, 4 * dim, INIT_STD, true);
        let fc2 = linear_trunc_normal(&block / 5, 4 * dim, dim, INIT_STD, true);
        let layer_scale = p.var("layer_scale", &[dim, 1, 1], Init::Const(LAYER_SCALE));
        Block { depthwise, norm, fc1, fc2, layer_scale, stochastic_depth_prob }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let branch = xs
            .apply(&self.depthwise)
            .permute([0, 2, 3, 1])
            .apply(&self.norm)
            .apply(&self.fc1)
            .gelu("none")
            .apply(&self.fc2)
            .permute([0, 3, 1, 2]);
        let scaled = &self.layer_scale * branch;
        let mut out = stochastic_depth(&scaled, self.stochastic_depth_prob, train);
        out += xs;
        out
    }
}

#[derive(Debug)]
struct Downsample {
    norm: nn::LayerNorm,
    conv: nn::Conv2D,
}

#[derive(Debug)]
pub struct ConvNext {
    stem_conv: nn::Conv2D,
    stem_norm: nn::LayerNorm,
    stages: Vec<(Vec<Block>, Option<Downsample>)>,
    head_norm: nn::LayerNorm,
    dropout: f64,
    classifier: nn::Linear,
}

impl ConvNext {
    pub fn new(p: &nn::Path, cfg: ConvNextConfig, num_classes: i64, dropout: f64, stochastic_depth: f64) -> Self {
        let features = p / "features";
        let patchify = |input: i64, output: i64, k: i64| ConvSpec::new(input, output, k).stride(k).bias(true).padding(Padding::Zero);
        let stem_conv = conv2d_trunc_normal(&features / 0 / 0, patchify(3, cfg.dims[0], 4), INIT_STD);
        let stem_norm = layer_norm(&features / 0 / 1, cfg.dims[0], EPS);
        let total: i64 = cfg.depths.iter().sum();
        let mut block_id = 0;
        let mut stages = Vec::new();
        for (i, (&dim, &depth)) in cfg.dims.iter().zip(&cfg.depths).enumerate() {
            let stage_path = &features / (2 * i + 1);
            let mut blocks = Vec::new();
            for j in 0..depth {
                let drop = stochastic_depth * block_id as f64 / (total - 1) as f64;
                blocks.push(Block::new(&stage_path / j, dim, drop));
                block_id += 1;
            }
            let downsample = (i + 1 < cfg.dims.len()).then(|| {
                let d = &features / (2 * i + 2);
                Downsample {
                    norm: layer_norm(&d / 0, dim, EPS),
                    conv: conv2d_trunc_normal(&d / 1, patchify(dim, cfg.dims[i + 1], 2), INIT_STD),
                }
            });
            stages.push((blocks, downsample));
        }
        let last = cfg.dims[3];
        let head_norm = layer_norm(p / "classifier" / 0, last, EPS);
        let classifier = linear_trunc_normal(p / "classifier" / 2, last, num_classes, INIT_STD, true);
        ConvNext { stem_conv, stem_norm, stages, head_norm, dropout, classifier }
    }
}

impl ModuleT for ConvNext {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = layer_norm_2d(&xs.apply(&self.stem_conv), &self.stem_norm);
        for (blocks, downsample) in &self.stages {
            for block in blocks {
                x = block.forward_t(&x, train);
            }
            if let Some(d) = downsample {
                x = layer_norm_2d(&x, &d.norm).apply(&d.conv);
            }
        }
        // LayerNorm2d of the pooled [N, C, 1, 1] map is a LayerNorm of the [N, C] vector.
        let pooled = global_average_pool(&x, train).apply(&self.head_norm);
        classifier_dropout(pooled, self.dropout, train).apply(&self.classifier)
    }
}

pub static FAMILY: Family<ConvNextConfig> = Family {
    info: FamilyInfo { name: "convnext", head: "classifier.2.", stem: "features.0.0.weight", in_torchvision: true, computed_buffers: &[] },
    build: |cfg, p, o| Box::new(ConvNext::new(p, *cfg, o.num_classes, o.dropout, o.stochastic_depth)),
    name_maps: |_, _| vec![NameMap { convention: Convention::TIMM, prefixes: &["stem.", "stages."], rename: Box::new(timm_name) }],
    variants: &[
        Variant::new("convnext_tiny", 224, 28_589_128, TINY).stochastic_depth(TINY.stochastic_depth).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "convnext_tiny-983f1562.pth")])
                .timm(&[timm("convnext_tiny", &["fb_in1k", "fb_in22k_ft_in1k", "in12k_ft_in1k"])]),
        ),
        Variant::new("convnext_small", 224, 50_223_688, SMALL).stochastic_depth(SMALL.stochastic_depth).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "convnext_small-0c510722.pth")])
                .timm(&[timm("convnext_small", &["fb_in1k", "fb_in22k_ft_in1k", "in12k_ft_in1k"])]),
        ),
    ],
};

/// timm's names: `stem.{0,1}`, `stages.i.downsample.{0,1}`,
/// `stages.i.blocks.j.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}`, `head.{norm,fc}` -> `features.0.{0,1}`,
/// `features.2i.{0,1}`, `features.(2i+1).j.{block.0,block.2,block.3,block.5,layer_scale}` (gamma
/// [C] -> [C,1,1]), `classifier.{0,2}`.
fn timm_name(name: &str) -> Mapped {
    let map = || -> Option<Mapped> {
        if let Some(rest) = name.strip_prefix("stem.") {
            return Some(renamed(format!("features.0.{rest}")));
        }
        if let Some(rest) = name.strip_prefix("head.norm.") {
            return Some(renamed(format!("classifier.0.{rest}")));
        }
        if let Some(rest) = name.strip_prefix("head.fc.") {
            return Some(renamed(format!("classifier.2.{rest}")));
        }
        let rest = name.strip_prefix("stages.")?;
        let (stage, rest) = rest.split_once('.')?;
        let stage: usize = stage.parse().ok()?;
        if let Some(rest) = rest.strip_prefix("downsample.") {
            return Some(renamed(format!("features.{}.{rest}", 2 * stage)));
        }
        let (block, rest) = rest.strip_prefix("blocks.")?.split_once('.')?;
        let base = format!("features.{}.{block}", 2 * stage + 1);
        if rest == "gamma" {
            return Some((Some(format!("{base}.layer_scale")), Some(vec![-1, 1, 1])));
        }
        let (layer, rest) = rest.split_once('.')?;
        let index = match layer {
            "conv_dw" => "block.0",
            "norm" => "block.2",
            "mlp" => {
                let (fc, rest) = rest.split_once('.')?;
                let index = match fc {
                    "fc1" => 3,
                    "fc2" => 5,
                    _ => return None,
                };
                return Some(renamed(format!("{base}.block.{index}.{rest}")));
            }
            _ => return None,
        };
        Some(renamed(format!("{base}.{index}.{rest}")))
    };
    map().unwrap_or((None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(m: Mapped) -> String {
        m.0.unwrap_or_default()
    }

    #[test]
    fn timm_names_map_to_torchvision() {
        assert_eq!(name(timm_name("stages.2.blocks.4.mlp.fc2.bias")), "features.5.4.block.5.bias");
        assert_eq!(timm_name("stages.1.blocks.0.gamma"), (Some("features.3.0.layer_scale".into()), Some(vec![-1, 1, 1])));
        assert_eq!(name(timm_name("stages.1.downsample.1.weight")), "features.2.1.weight");
        assert_eq!(name(timm_name("head.norm.bias")), "classifier.0.bias");
    }
}
