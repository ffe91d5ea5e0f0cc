//! ViT-B/16 with torchvision's module tree: `conv_proj` (16x16 patchify conv), `class_token`,
//! `encoder.pos_embedding`, `encoder.layers.encoder_layer_{i}` (`ln_1`, `self_attention`
//! with `in_proj_weight`/`in_proj_bias`/`out_proj`, `ln_2`, `mlp.{0,3}`), `encoder.ln`,
//! `heads.head`. LayerNorm eps 1e-6, exact GELU.
//!
//! torchvision fixes the input at 224 px (a 14x14 patch grid); here the position embedding is
//! stored for that grid (so torchvision's weights load as they are) and resampled bicubically
//! (with antialiasing, as timm's `resample_abs_pos_embed`) to the grid of any other input size,
//! so that `data.size` can differ from 224. At 224 the model is torchvision's exactly.
//!
//! Also the `vit` family: its torchvision and timm weights (torchvision's 384 px SWAG end-to-end
//! weights left out) and the map of timm's names.
use super::blocks::{classifier_dropout, fill_trunc_normal, layer_norm};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;
use super::family::{timm, tv, Family, FamilyInfo, Pretrained, Variant};
use crate::weights::mapping::{Convention, Mapped, NameMap};

const EPS: f64 = 1e-6;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitConfig {
    pub image_size: i64,
    pub patch: i64,
    pub layers: i64,
    pub heads: i64,
    pub hidden: i64,
    pub mlp: i64,
}

pub const VIT_B_16: VitConfig = VitConfig { image_size: 224, patch: 16, layers: 12, heads: 12, hidden: 768, mlp: 3072 };

/// Xavier-uniform bound of a [fan_out, fan_in] matrix.
fn xavier(fan_in: i64, fan_out: i64) -> Init {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// torchvision's `EncoderBlock` (pre-norm attention and MLP, each with a residual).
#[derive(Debug)]
struct EncoderBlock {
    ln_1: nn::LayerNorm,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    ln_2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

impl EncoderBlock {
    fn new(p: nn::Path, cfg: &VitConfig) -> Self {
        let d = cfg.hidden;
        let attn = &p / "self_attention";
        let mlp = &p / "mlp";
        // nn.MultiheadAttention: xavier-uniform in_proj, zero biases, default-initialised out_proj weight.
        let bound = 1.0 / (d as f64).sqrt();
        let out_proj = nn::linear(
            &attn / "out_proj",
            d,
            d,
            nn::LinearConfig { ws_init: Init::Uniform { lo: -bound, up: bound }, bs_init: Some(Init::Const(0.0)), bias: true },
        );
        // MLPBlock: xavier-uniform weights, normal(std 1e-6) biases.
        let mlp_linear = |path: nn::Path, i: i64, o: i64| {
            nn::linear(path, i, o, nn::LinearConfig { ws_init: xavier(i, o), bs_init: Some(Init::Randn { mean: 0.0, stdev: 1e-6 }), bias: true })
        };
        EncoderBlock {
            ln_1: layer_norm(&p / "ln_1", d, EPS),
            in_proj_weight: attn.var("in_proj_weight", &[3 * d, d], xavier(d, 3 * d)),
            in_proj_bias: attn.var("in_proj_bias", &[3 * d], Init::Const(0.0)),
            out_proj,
            ln_2: layer_norm(&p / "ln_2", d, EPS),
            fc1: mlp_linear(&mlp / 0, d, cfg.mlp),
            fc2: mlp_linear(&mlp / 3, cfg.mlp, d),
            heads: cfg.heads,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let size = xs.size();
        let (n, l, d) = (size[0], size[1], size[2]);
        let qkv = xs
            .apply(&self.ln_1)
            .linear(&self.in_proj_weight, Some(&self.in_proj_bias))
            .reshape([n, l, 3, self.heads, d / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let attended =
            Tensor::scaled_dot_product_attention(&qkv.get(0), &qkv.get(1), &qkv.get(2), None::<Tensor>, 0.0, false, None, false);
        let x = attended.transpose(1, 2).reshape([n, l, d]).apply(&self.out_proj) + xs;
        let y = x.apply(&self.ln_2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        x + y
    }
}

#[derive(Debug)]
pub struct VisionTransformer {
    conv_proj: nn::Conv2D,
    class_token: Tensor,
    pos_embedding: Tensor,
    layers: Vec<EncoderBlock>,
    ln: nn::LayerNorm,
    dropout: f64,
    head: nn::Linear,
    grid: i64,
}

impl VisionTransformer {
    pub fn new(p: &nn::Path, cfg: VitConfig, num_classes: i64, dropout: f64) -> Self {
        let d = cfg.hidden;
        let fan_in = 3 * cfg.patch * cfg.patch;
        let mut conv_proj = nn::conv2d(
            p / "conv_proj",
            3,
            d,
            cfg.patch,
            nn::ConvConfig { stride: cfg.patch, padding: 0, bias: true, ws_init: Init::Const(0.0), bs_init: Init::Const(0.0), ..Default::default() },
        );
        fill_trunc_normal(&mut conv_proj.ws, (1.0 / fan_in as f64).sqrt());
        let grid = cfg.image_size / cfg.patch;
        let encoder = p / "encoder";
        let layers_path = &encoder / "layers";
        let layers = (0..cfg.layers).map(|i| EncoderBlock::new(&layers_path / format!("encoder_layer_{i}"), &cfg)).collect();
        VisionTransformer {
            conv_proj,
            class_token: p.var("class_token", &[1, 1, d], Init::Const(0.0)),
            pos_embedding: encoder.var("pos_embedding", &[1, grid * grid + 1, d], Init::Randn { mean: 0.0, stdev: 0.02 }),
            layers,
            ln: layer_norm(&encoder / "ln", d, EPS),
            dropout,
            head: nn::linear(
                p / "heads" / "head",
                d,
                num_classes,
                nn::LinearConfig { ws_init: Init::Const(0.0), bs_init: Some(Init::Const(0.0)), bias: true },
            ),
            grid,
        }
    }

    /// The position embedding for a grid of `h` x `w` patches (the class token's row unchanged).
    fn position_embedding(&self, h: i64, w: i64) -> Tensor {
        if (h, w) == (self.grid, self.grid) {
            return self.pos_embedding.shallow_clone();
        }
        let d = self.pos_embedding.size()[2];
        let class_row = self.pos_embedding.narrow(1, 0, 1);
        let grid = self
            .pos_embedding
            .narrow(1, 1, self.grid * self.grid)
            .reshape([1, self.grid, self.grid, d])
            .permute([0, 3, 1, 2])
            .internal_upsample_bicubic2d_aa([h, w], false, None, None)
            .permute([0, 2, 3, 1])
            .reshape([1, h * w, d]);
        Tensor::cat(&[class_row, grid], 1)
    }
}

impl ModuleT for VisionTransformer {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let patches = xs.apply(&self.conv_proj);
        let size = patches.size();
        let (n, d, h, w) = (size[0], size[1], size[2], size[3]);
        let tokens = patches.reshape([n, d, h * w]).permute([0, 2, 1]);
        let class_tokens = self.class_token.expand([n, -1, -1], false);
        let mut x = Tensor::cat(&[class_tokens, tokens], 1) + self.position_embedding(h, w);
        for layer in &self.layers {
            x = layer.forward(&x);
        }
        let class_out = x.apply(&self.ln).select(1, 0);
        classifier_dropout(class_out, self.dropout, train).apply(&self.head)
    }
}

pub static FAMILY: Family<VitConfig> = Family {
    info: FamilyInfo { name: "vit", head: "heads.head.", stem: "conv_proj.weight", in_torchvision: true, computed_buffers: &[] },
    build: |cfg, p, o| Box::new(VisionTransformer::new(p, *cfg, o.num_classes, o.dropout)),
    name_maps: |_, _| vec![NameMap { convention: Convention::TIMM, prefixes: &["blocks.", "patch_embed.", "cls_token"], rename: Box::new(timm_name) }],
    variants: &[Variant::new("vit_b_16", 224, 86_567_656, VIT_B_16).pretrained(
        Pretrained::torchvision(&[tv("IMAGENET1K_V1", "vit_b_16-c867db91.pth"), tv("IMAGENET1K_SWAG_LINEAR_V1", "vit_b_16_lc_swag-4e70ced5.pth")])
            .left_out(&[("IMAGENET1K_SWAG_E2E_V1", "a 384 px model whose position embedding does not fit vit_b_16 at 224 px")])
            .timm(&[timm("vit_base_patch16_224", &["augreg2_in21k_ft_in1k", "augreg_in21k_ft_in1k", "orig_in21k_ft_in1k", "augreg_in1k"])]),
    )],
};

/// timm's names: `cls_token`, `pos_embed`, `patch_embed.proj`,
/// `blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`, `head` -> `class_token`,
/// `encoder.pos_embedding`, `conv_proj`,
/// `encoder.layers.encoder_layer_i.{ln_1,self_attention.in_proj_*,self_attention.out_proj,ln_2,mlp.0,mlp.3}`,
/// `encoder.ln`, `heads.head`.
fn timm_name(name: &str) -> Mapped {
    let map = || -> Option<String> {
        match name {
            "cls_token" => return Some("class_token".into()),
            "pos_embed" => return Some("encoder.pos_embedding".into()),
            _ => {}
        }
        if let Some(rest) = name.strip_prefix("patch_embed.proj.") {
            return Some(format!("conv_proj.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("norm.") {
            return Some(format!("encoder.ln.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("head.") {
            return Some(format!("heads.head.{rest}"));
        }
        let (block, rest) = name.strip_prefix("blocks.")?.split_once('.')?;
        let base = format!("encoder.layers.encoder_layer_{block}");
        let target = match rest {
            "attn.qkv.weight" => "self_attention.in_proj_weight".to_string(),
            "attn.qkv.bias" => "self_attention.in_proj_bias".to_string(),
            _ => {
                let (layer, r) = rest.split_once('.')?;
                match layer {
                    "norm1" => format!("ln_1.{r}"),
                    "norm2" => format!("ln_2.{r}"),
                    "attn" => format!("self_attention.out_proj.{}", r.strip_prefix("proj.")?),
                    "mlp" => {
                        let (fc, r) = r.split_once('.')?;
                        match fc {
                            "fc1" => format!("mlp.0.{r}"),
                            "fc2" => format!("mlp.3.{r}"),
                            _ => return None,
                        }
                    }
                    _ => return None,
                }
            }
        };
        Some(format!("{base}.{target}"))
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
        assert_eq!(name(timm_name("blocks.11.attn.qkv.bias")), "encoder.layers.encoder_layer_11.self_attention.in_proj_bias");
        assert_eq!(name(timm_name("blocks.0.attn.proj.weight")), "encoder.layers.encoder_layer_0.self_attention.out_proj.weight");
        assert_eq!(name(timm_name("pos_embed")), "encoder.pos_embedding");
    }
}
