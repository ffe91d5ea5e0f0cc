//! Swin-T (v1) with torchvision's module tree: `features.0.{0,2}` patch embedding (4x4 conv,
//! LayerNorm), `features.{1,3,5,7}.{j}` transformer blocks (`norm1`, `attn.{qkv,proj}`,
//! `attn.relative_position_bias_table`, the `attn.relative_position_index` buffer, `norm2`,
//! `mlp.{0,3}`), `features.{2,4,6}` patch merging (`norm`, `reduction`), `norm`, `head`.
//!
//! Works at any input size as torchvision's does: feature maps are padded to whole 7x7 windows,
//! and a window no smaller than the (padded) map is not shifted. Activations run channels-last
//! ([N, H, W, C]) inside, as in torchvision.
//!
//! Also the `swin` family: its torchvision and timm weights and the map of timm's names.
use super::blocks::{
    classifier_dropout, conv2d_torch_default, layer_norm, linear_trunc_normal, stochastic_depth, trunc_normal_var, ConvSpec,
    Padding,
};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};
use super::family::{timm, tv, Family, FamilyInfo, Pretrained, Variant};
use crate::weights::mapping::{Convention, Mapped, NameMap};

const EPS: f64 = 1e-5;
const INIT_STD: f64 = 0.02;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwinConfig {
    pub patch: i64,
    pub embed_dim: i64,
    pub depths: [i64; 4],
    pub heads: [i64; 4],
    pub window: i64,
    pub stochastic_depth: f64,
}

pub const SWIN_T: SwinConfig =
    SwinConfig { patch: 4, embed_dim: 96, depths: [2, 2, 6, 2], heads: [3, 6, 12, 24], window: 7, stochastic_depth: 0.2 };

/// torchvision's `relative_position_index` of a window: for every (query, key) pair of the
/// window's positions, the row of the bias table for their offset.
pub fn relative_position_index(window: i64) -> Vec<i64> {
    let n = window * window;
    let mut index = Vec::with_capacity((n * n) as usize);
    for i in 0..n {
        for j in 0..n {
            let (dh, dw) = (i / window - j / window, i % window - j % window);
            index.push((dh + window - 1) * (2 * window - 1) + (dw + window - 1));
        }
    }
    index
}

/// Python's `range(len)[start:end]` for the slices torchvision's attention mask is built from.
fn python_slice(len: i64, start: i64, end: Option<i64>) -> std::ops::Range<i64> {
    let clamp = |v: i64| if v < 0 { (len + v).max(0) } else { v.min(len) };
    let (s, e) = (clamp(start), end.map(clamp).unwrap_or(len));
    s..e.max(s)
}

/// The attention mask of shifted windows: -100 between positions that come from different
/// regions of the rolled map, 0 otherwise; [windows, N, N].
fn shift_mask(pad_h: i64, pad_w: i64, window: i64, shift: (i64, i64), device: tch::Device) -> Tensor {
    let mut regions = vec![0f32; (pad_h * pad_w) as usize];
    let slices = |len: i64, s: i64| {
        [python_slice(len, 0, Some(-window)), python_slice(len, -window, Some(-s)), python_slice(len, -s, None)]
    };
    let mut count = 0.0;
    for rows in slices(pad_h, shift.0) {
        for cols in slices(pad_w, shift.1) {
            for r in rows.clone() {
                for c in cols.clone() {
                    regions[(r * pad_w + c) as usize] = count;
                }
            }
            count += 1.0;
        }
    }
    let windows = (pad_h / window) * (pad_w / window);
    let m = Tensor::from_slice(&regions)
        .view([pad_h / window, window, pad_w / window, window])
        .permute([0, 2, 1, 3])
        .reshape([windows, window * window]);
    let diff = m.unsqueeze(1) - m.unsqueeze(2);
    diff.ne(0.0).to_kind(Kind::Float).g_mul_scalar(-100.0).to_device(device)
}

/// torchvision's `ShiftedWindowAttention`.
#[derive(Debug)]
struct WindowAttention {
    qkv: nn::Linear,
    proj: nn::Linear,
    bias_table: Tensor,
    index: Tensor,
    heads: i64,
    window: i64,
    shift: i64,
}

impl WindowAttention {
    fn new(p: nn::Path, dim: i64, heads: i64, window: i64, shift: i64) -> Self {
        let qkv = linear_trunc_normal(&p / "qkv", dim, 3 * dim, INIT_STD, true);
        let proj = linear_trunc_normal(&p / "proj", dim, dim, INIT_STD, true);
        let bias_table = trunc_normal_var(&p, "relative_position_bias_table", &[(2 * window - 1) * (2 * window - 1), heads], INIT_STD);
        // A buffer in torchvision's state dict: registered (not trainable) so that it loads and
        // exports under its name.
        let index = p.add("relative_position_index", Tensor::from_slice(&relative_position_index(window)).to_device(p.device()), false);
        WindowAttention { qkv, proj, bias_table, index, heads, window, shift }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, h, w, c) = match xs.size()[..] {
            [b, h, w, c] => (b, h, w, c),
            _ => panic!("window attention expects [N, H, W, C]"),
        };
        let ws = self.window;
        let (pad_b, pad_r) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
        let mut x = xs.constant_pad_nd([0, 0, 0, pad_r, 0, pad_b]);
        let (ph, pw) = (h + pad_b, w + pad_r);
        // A window that covers the whole (padded) map needs no shift.
        let shift = (if ws >= ph { 0 } else { self.shift }, if ws >= pw { 0 } else { self.shift });
        let shifted = shift.0 + shift.1 > 0;
        if shifted {
            x = x.roll([-shift.0, -shift.1], [1, 2]);
        }
        let windows = (ph / ws) * (pw / ws);
        let n = ws * ws;
        let x = x.view([b, ph / ws, ws, pw / ws, ws, c]).permute([0, 1, 3, 2, 4, 5]).reshape([b * windows, n, c]);
        let head_dim = c / self.heads;
        let qkv = x.apply(&self.qkv).reshape([b * windows, n, 3, self.heads, head_dim]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let q = q * (head_dim as f64).powf(-0.5);
        let bias = self.bias_table.index_select(0, &self.index).view([n, n, -1]).permute([2, 0, 1]).unsqueeze(0);
        let mut attn = q.matmul(&k.transpose(-2, -1)) + bias;
        if shifted {
            let mask = shift_mask(ph, pw, ws, shift, attn.device()).to_kind(attn.kind());
            attn = (attn.view([b, windows, self.heads, n, n]) + mask.unsqueeze(1).unsqueeze(0)).view([-1, self.heads, n, n]);
        }
        let attn = attn.softmax(-1, attn.kind());
        let x = attn.matmul(&v).transpose(1, 2).reshape([b * windows, n, c]).apply(&self.proj);
        let mut x = x.view([b, ph / ws, pw / ws, ws, ws, c]).permute([0, 1, 3, 2, 4, 5]).reshape([b, ph, pw, c]);
        if shifted {
            x = x.roll([shift.0, shift.1], [1, 2]);
        }
        x.slice(1, 0, h, 1).slice(2, 0, w, 1).contiguous()
    }
}

/// torchvision's `SwinTransformerBlock`.
#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    attn: WindowAttention,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    stochastic_depth_prob: f64,
}

impl Block {
    fn new(p: nn::Path, dim: i64, heads: i64, window: i64, shift: i64, stochastic_depth_prob: f64) -> Self {
        let mlp = &p / "mlp";
        Block {
            norm1: layer_norm(&p / "norm1", dim, EPS),
            attn: WindowAttention::new(&p / "attn", dim, heads, window, shift),
            norm2: layer_norm(&p / "norm2", dim, EPS),
            fc1: linear_trunc_normal(&mlp / 0, dim, 4 * dim, INIT_STD, true),
            fc2: linear_trunc_normal(&mlp / 3, 4 * dim, dim, INIT_STD, true),
            stochastic_depth_prob,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let attended = self.attn.forward(&xs.apply(&self.norm1));
        let x = xs + stochastic_depth(&attended, self.stochastic_depth_prob, train);
        let mlp = x.apply(&self.norm2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        &x + stochastic_depth(&mlp, self.stochastic_depth_prob, train)
    }
}

/// torchvision's `PatchMerging`: 2x2 neighbourhoods concatenated (in the order (0,0), (1,0),
/// (0,1), (1,1)), normalised, and reduced from 4C to 2C.
#[derive(Debug)]
struct PatchMerging {
    norm: nn::LayerNorm,
    reduction: nn::Linear,
}

impl PatchMerging {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let size = xs.size();
        let (h, w) = (size[1], size[2]);
        let x = xs.constant_pad_nd([0, 0, 0, w % 2, 0, h % 2]);
        let part = |r: i64, c: i64| x.slice(1, r, None, 2).slice(2, c, None, 2);
        Tensor::cat(&[part(0, 0), part(1, 0), part(0, 1), part(1, 1)], -1).apply(&self.norm).apply(&self.reduction)
    }
}

#[derive(Debug)]
pub struct Swin {
    patch_embed: nn::Conv2D,
    patch_norm: nn::LayerNorm,
    stages: Vec<(Vec<Block>, Option<PatchMerging>)>,
    norm: nn::LayerNorm,
    dropout: f64,
    head: nn::Linear,
}

impl Swin {
    pub fn new(p: &nn::Path, cfg: SwinConfig, num_classes: i64, dropout: f64, stochastic_depth: f64) -> Self {
        let features = p / "features";
        let patch_embed = conv2d_torch_default(
            &features / 0 / 0,
            ConvSpec::new(3, cfg.embed_dim, cfg.patch).stride(cfg.patch).bias(true).padding(Padding::Zero),
        );
        let patch_norm = layer_norm(&features / 0 / 2, cfg.embed_dim, EPS);
        let total: i64 = cfg.depths.iter().sum();
        let mut block_id = 0;
        let mut stages = Vec::new();
        let mut dim = cfg.embed_dim;
        for (i, (&depth, &heads)) in cfg.depths.iter().zip(&cfg.heads).enumerate() {
            let stage = &features / (2 * i + 1);
            let mut blocks = Vec::new();
            for j in 0..depth {
                let drop = stochastic_depth * block_id as f64 / (total - 1) as f64;
                let shift = if j % 2 == 0 { 0 } else { cfg.window / 2 };
                blocks.push(Block::new(&stage / j, dim, heads, cfg.window, shift, drop));
                block_id += 1;
            }
            let merging = (i + 1 < cfg.depths.len()).then(|| {
                let m = &features / (2 * i + 2);
                PatchMerging {
                    norm: layer_norm(&m / "norm", 4 * dim, EPS),
                    reduction: linear_trunc_normal(&m / "reduction", 4 * dim, 2 * dim, INIT_STD, false),
                }
            });
            if merging.is_some() {
                dim *= 2;
            }
            stages.push((blocks, merging));
        }
        let norm = layer_norm(p / "norm", dim, EPS);
        let head = linear_trunc_normal(p / "head", dim, num_classes, INIT_STD, true);
        Swin { patch_embed, patch_norm, stages, norm, dropout, head }
    }
}

impl ModuleT for Swin {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.apply(&self.patch_embed).permute([0, 2, 3, 1]).apply(&self.patch_norm);
        for (blocks, merging) in &self.stages {
            for block in blocks {
                x = block.forward_t(&x, train);
            }
            if let Some(m) = merging {
                x = m.forward(&x);
            }
        }
        let pooled = x.apply(&self.norm).mean_dim([1i64, 2].as_slice(), false, Kind::Float);
        classifier_dropout(pooled, self.dropout, train).apply(&self.head)
    }
}

pub static FAMILY: Family<SwinConfig> = Family {
    info: FamilyInfo {
        name: "swin",
        head: "head.",
        stem: "features.0.0.weight",
        in_torchvision: true,
        // Computed from the window size; timm does not save them.
        computed_buffers: &[".relative_position_index"],
    },
    build: |cfg, p, o| Box::new(Swin::new(p, *cfg, o.num_classes, o.dropout, o.stochastic_depth)),
    name_maps,
    variants: &[Variant::new("swin_t", 224, 28_288_354, SWIN_T).stochastic_depth(SWIN_T.stochastic_depth).pretrained(
        Pretrained::torchvision(&[tv("IMAGENET1K_V1", "swin_t-704ceda3.pth")])
            .timm(&[timm("swin_tiny_patch4_window7_224", &["ms_in1k", "ms_in22k_ft_in1k"])]),
    )],
};

/// timm's names: `patch_embed.{proj,norm}`, `layers.i.blocks.j.{norm1,attn.*,norm2,mlp.fc1,mlp.fc2}`,
/// `layers.i.downsample.{norm,reduction}` (at the start of stage i since timm 0.9; at the end of
/// stage i in older files), `norm`, `head.fc` -> `features.0.{0,2}`,
/// `features.(2i+1).j.{..,mlp.0,mlp.3}`, `features.2i` (or `2i+2`), `norm`, `head`.
fn name_maps(_: &SwinConfig, names: &[&str]) -> Vec<NameMap> {
    let old_layout = names.contains(&"layers.0.downsample.reduction.weight");
    vec![NameMap {
        convention: Convention::TIMM,
        prefixes: &["layers.", "patch_embed."],
        rename: Box::new(move |name| timm_name(name, old_layout)),
    }]
}

/// timm's Swin. `old_layout`: a pre-0.9 file, whose patch merging closes stage i (then it is
/// torchvision's `features.(2i+2)`) instead of opening it (`features.2i`).
fn timm_name(name: &str, old_layout: bool) -> Mapped {
    let map = || -> Option<String> {
        if let Some(rest) = name.strip_prefix("patch_embed.proj.") {
            return Some(format!("features.0.0.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("patch_embed.norm.") {
            return Some(format!("features.0.2.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("head.fc.") {
            return Some(format!("head.{rest}"));
        }
        if name.starts_with("norm.") || name.starts_with("head.") {
            return Some(name.to_string());
        }
        let rest = name.strip_prefix("layers.")?;
        let (stage, rest) = rest.split_once('.')?;
        let stage: usize = stage.parse().ok()?;
        if let Some(rest) = rest.strip_prefix("downsample.") {
            let index = if old_layout { 2 * stage + 2 } else { 2 * stage };
            return Some(format!("features.{index}.{rest}"));
        }
        let (block, rest) = rest.strip_prefix("blocks.")?.split_once('.')?;
        let rest = match rest.split_once('.') {
            Some(("mlp", r)) => {
                let (fc, r) = r.split_once('.')?;
                match fc {
                    "fc1" => format!("mlp.0.{r}"),
                    "fc2" => format!("mlp.3.{r}"),
                    _ => return None,
                }
            }
            _ => rest.to_string(),
        };
        Some(format!("features.{}.{block}.{rest}", 2 * stage + 1))
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
        assert_eq!(name(timm_name("layers.2.downsample.reduction.weight", false)), "features.4.reduction.weight");
        assert_eq!(name(timm_name("layers.2.downsample.reduction.weight", true)), "features.6.reduction.weight");
        assert_eq!(name(timm_name("layers.3.blocks.1.mlp.fc2.weight", false)), "features.7.1.mlp.3.weight");
        assert_eq!(name(timm_name("layers.0.blocks.1.attn.relative_position_bias_table", false)), "features.1.1.attn.relative_position_bias_table");
    }

    #[test]
    fn relative_position_index_matches_torchvision() {
        let index = relative_position_index(7);
        assert_eq!(index.len(), 49 * 49);
        // torchvision: index[0] pairs (0,0) with itself -> offset (6, 6) -> 6 * 13 + 6 = 84;
        // (0,0) with (6,6): offset (-6,-6) -> 0; (6,6) with (0,0): 12 * 13 + 12 = 168.
        assert_eq!((index[0], index[48], index[48 * 49]), (84, 0, 168));
    }

    #[test]
    fn python_slices_and_mask_regions() {
        assert_eq!(python_slice(21, 0, Some(-7)), 0..14);
        assert_eq!(python_slice(21, -7, Some(-3)), 14..18);
        assert_eq!(python_slice(21, -3, None), 18..21);
        // A zero shift makes `[-0:]` the whole range, as in Python.
        assert_eq!(python_slice(21, 0, None), 0..21);
        let mask = shift_mask(14, 14, 7, (3, 3), tch::Device::Cpu);
        assert_eq!(mask.size(), [4, 49, 49]);
        // The top-left window holds one region: no masking inside it.
        assert_eq!(mask.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert!(mask.get(3).min().double_value(&[]) == -100.0);
    }
}
