//! timm's tensor names -> torchvision's, for the families added after the first eleven
//! (`mapping.rs` holds the table of every convention and dispatches here).
//!
//! | family | timm | torchvision |
//! |---|---|---|
//! | convnext | `stem.{0,1}`, `stages.i.downsample.{0,1}`, `stages.i.blocks.j.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}`, `head.{norm,fc}` | `features.0.{0,1}`, `features.2i.{0,1}`, `features.(2i+1).j.{block.0,block.2,block.3,block.5,layer_scale}` (gamma [C] -> [C,1,1]), `classifier.{0,2}` |
//! | efficientnet_v2 | `conv_stem`/`bn1`, `blocks.s.l` (`conv`/`bn1`; `conv_exp`/`bn1`, `conv_pwl`/`bn2`; MBConv as EfficientNet), `conv_head`/`bn2`, `classifier` | `features.0`, `features.(s+1).l.block.i`, `features.H`, `classifier.1` |
//! | mobilenet_v2 | `conv_stem`/`bn1`, `blocks.s.l` (`conv_dw`,`bn1`,`conv_pw`,`bn2`; or `conv_pw`,`bn1`,`conv_dw`,`bn2`,`conv_pwl`,`bn3`), `conv_head`/`bn2`, `classifier` | `features.0`, `features.N.conv.{0,1,2,3}` (N counts blocks), `features.18`, `classifier.1` |
//! | mobilenet_v3 | as V2 plus `se.conv_reduce`/`conv_expand`; `blocks.6.0.conv`/`bn1`; `conv_head` (a 1x1 conv with bias) | `features.N.block.i` (`fc1`/`fc2`), `features.16`, `classifier.0` (reshaped to a Linear), `classifier.3` |
//! | regnet | `stem.{conv,bn}`, `sS.bB.{conv1,conv2,conv3}.{conv,bn}`, `se.fc1/fc2`, `downsample.{conv,bn}`, `head.fc` | `stem.{0,1}`, `trunk_output.blockS.blockS-(B-1).f.{a,b,c}.{0,1}`, `f.se`, `proj.{0,1}`, `fc` |
//! | swin | `patch_embed.{proj,norm}`, `layers.i.blocks.j.{norm1,attn.*,norm2,mlp.fc1,mlp.fc2}`, `layers.i.downsample.{norm,reduction}` (at the start of stage i since timm 0.9; at the end of stage i in older files), `norm`, `head.fc` | `features.0.{0,2}`, `features.(2i+1).j.{..,mlp.0,mlp.3}`, `features.2i` (or `2i+2`), `norm`, `head` |
//! | vit | `cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`, `head` | `class_token`, `encoder.pos_embedding`, `conv_proj`, `encoder.layers.encoder_layer_i.{ln_1,self_attention.in_proj_*,self_attention.out_proj,ln_2,mlp.0,mlp.3}`, `encoder.ln`, `heads.head` |
use crate::model::efficientnet::BlockPlan;
use crate::model::efficientnet_v2::{BlockKind, V2BlockPlan};
use crate::model::mobilenet::MobileBlockPlan;

/// A mapped name and, when the tensor must change shape, the shape (`-1` infers one dimension).
pub type Mapped = (Option<String>, Option<Vec<i64>>);

fn renamed(name: String) -> Mapped {
    (Some(name), None)
}

/// Splits `a.b.rest` into ("a", "b", "rest").
fn two(name: &str) -> Option<(&str, &str, &str)> {
    let (a, rest) = name.split_once('.')?;
    let (b, rest) = rest.split_once('.')?;
    Some((a, b, rest))
}

pub fn convnext(name: &str) -> Mapped {
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

/// `conv` or `bn` inside a Conv2dNormActivation at `prefix`.
fn cna(prefix: &str, which: usize, rest: &str) -> String {
    format!("{prefix}.{which}.{rest}")
}

/// timm's InvertedResidual / DepthwiseSeparable layers inside an EfficientNet MBConv `block`.
pub fn efficientnet_block(p: &BlockPlan, sub: &str, rest: &str) -> Option<String> {
    inverted_residual(&format!("features.{}.{}.block", p.stage, p.layer), p.expand, p.squeeze_excitation, sub, rest)
}

/// timm's InvertedResidual (`conv_pw`, `bn1`, `conv_dw`, `bn2`, `se`, `conv_pwl`, `bn3`) or
/// DepthwiseSeparable (`conv_dw`, `bn1`, `se`, `conv_pw`, `bn2`) layers -> `base.{i}` of a
/// torchvision block made of Conv2dNormActivations (EfficientNet's MBConv, MobileNetV3's).
fn inverted_residual(base: &str, expand: bool, squeeze_excitation: bool, sub: &str, rest: &str) -> Option<String> {
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

pub fn efficientnet_v2(name: &str, blocks: &[V2BlockPlan], head: usize) -> Mapped {
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
                let at = |i: usize| format!("features.{}.{}.block.{i}", p.stage, p.layer);
                match (p.kind, p.expand, sub) {
                    // ConvBnAct (ratio 1) and EdgeResidual (fused expansion, then a 1x1 projection).
                    (BlockKind::Fused, false, "conv") | (BlockKind::Fused, true, "conv_exp") => cna(&at(0), 0, rest),
                    (BlockKind::Fused, _, "bn1") => cna(&at(0), 1, rest),
                    (BlockKind::Fused, true, "conv_pwl") => cna(&at(1), 0, rest),
                    (BlockKind::Fused, true, "bn2") => cna(&at(1), 1, rest),
                    (BlockKind::MbConv, expand, _) => {
                        let plan = BlockPlan { stage: p.stage, layer: p.layer, expand, squeeze_excitation: true };
                        efficientnet_block(&plan, sub, rest)?
                    }
                    _ => return None,
                }
            }
            _ => return None,
        })
    };
    (map(), None)
}

/// Which MobileNet: V2 names its block layers `conv.{i}` with a bare projection conv and
/// BatchNorm; V3 names them `block.{i}`, each a Conv2dNormActivation, with squeeze-excitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MobileNet {
    V2,
    V3,
}

pub fn mobilenet(name: &str, version: MobileNet, plan: &[MobileBlockPlan]) -> Mapped {
    let head_feature = plan.len() + 1;
    let map = || -> Option<Mapped> {
        let (first, rest) = name.split_once('.')?;
        Some(match (version, first) {
            (_, "conv_stem") => renamed(format!("features.0.0.{rest}")),
            (_, "bn1") => renamed(format!("features.0.1.{rest}")),
            (MobileNet::V2, "conv_head") => renamed(format!("features.{head_feature}.0.{rest}")),
            (MobileNet::V2, "bn2") => renamed(format!("features.{head_feature}.1.{rest}")),
            (MobileNet::V2, "classifier") => renamed(format!("classifier.1.{rest}")),
            // V3's conv_head is the 960 -> 1280 Linear stored as a 1x1 conv.
            (MobileNet::V3, "conv_head") => {
                let reshape = (rest == "weight").then(|| vec![1280, -1]);
                (Some(format!("classifier.0.{rest}")), reshape)
            }
            (MobileNet::V3, "classifier") => renamed(format!("classifier.3.{rest}")),
            (_, "blocks") => {
                let (stage, layer, rest) = two(rest)?;
                let (stage, layer): (usize, usize) = (stage.parse().ok()?, layer.parse().ok()?);
                let (sub, rest) = rest.split_once('.')?;
                let Some(p) = plan.iter().find(|p| p.stage == stage && p.layer == layer) else {
                    // V3's last timm stage is the 1x1 conv torchvision calls features.16.
                    return match (version, sub) {
                        (MobileNet::V3, "conv") => Some(renamed(format!("features.{head_feature}.0.{rest}"))),
                        (MobileNet::V3, "bn1") => Some(renamed(format!("features.{head_feature}.1.{rest}"))),
                        _ => None,
                    };
                };
                renamed(match version {
                    MobileNet::V2 => mobilenet_v2_block(p, sub, rest)?,
                    MobileNet::V3 => {
                        inverted_residual(&format!("features.{}.block", p.feature), p.expand, p.squeeze_excitation, sub, rest)?
                    }
                })
            }
            _ => return None,
        })
    };
    map().unwrap_or((None, None))
}

fn mobilenet_v2_block(p: &MobileBlockPlan, sub: &str, rest: &str) -> Option<String> {
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

pub fn regnet(name: &str) -> Mapped {
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
        let (stage, block, rest) = two(name)?;
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

/// timm's Swin. `old_layout`: a pre-0.9 file, whose patch merging closes stage i (then it is
/// torchvision's `features.(2i+2)`) instead of opening it (`features.2i`).
pub fn swin(name: &str, old_layout: bool) -> Mapped {
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

pub fn vit(name: &str) -> Mapped {
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
    use crate::model::mobilenet::{v2_plan, v3_plan};

    fn name(m: Mapped) -> String {
        m.0.unwrap_or_default()
    }

    #[test]
    fn timm_names_of_each_family() {
        assert_eq!(name(convnext("stages.2.blocks.4.mlp.fc2.bias")), "features.5.4.block.5.bias");
        assert_eq!(convnext("stages.1.blocks.0.gamma"), (Some("features.3.0.layer_scale".into()), Some(vec![-1, 1, 1])));
        assert_eq!(name(convnext("stages.1.downsample.1.weight")), "features.2.1.weight");
        assert_eq!(name(convnext("head.norm.bias")), "classifier.0.bias");
        assert_eq!(name(regnet("s3.b17.se.fc2.bias")), "trunk_output.block3.block3-16.f.se.fc2.bias");
        assert_eq!(name(regnet("s1.b1.downsample.bn.running_var")), "trunk_output.block1.block1-0.proj.1.running_var");
        assert_eq!(name(swin("layers.2.downsample.reduction.weight", false)), "features.4.reduction.weight");
        assert_eq!(name(swin("layers.2.downsample.reduction.weight", true)), "features.6.reduction.weight");
        assert_eq!(name(swin("layers.3.blocks.1.mlp.fc2.weight", false)), "features.7.1.mlp.3.weight");
        assert_eq!(name(swin("layers.0.blocks.1.attn.relative_position_bias_table", false)), "features.1.1.attn.relative_position_bias_table");
        assert_eq!(name(vit("blocks.11.attn.qkv.bias")), "encoder.layers.encoder_layer_11.self_attention.in_proj_bias");
        assert_eq!(name(vit("blocks.0.attn.proj.weight")), "encoder.layers.encoder_layer_0.self_attention.out_proj.weight");
        assert_eq!(name(vit("pos_embed")), "encoder.pos_embedding");
        let v2 = v2_plan();
        assert_eq!(name(mobilenet("blocks.0.0.conv_pw.weight", MobileNet::V2, &v2)), "features.1.conv.1.weight");
        assert_eq!(name(mobilenet("blocks.1.1.bn3.bias", MobileNet::V2, &v2)), "features.3.conv.3.bias");
        assert_eq!(name(mobilenet("conv_head.weight", MobileNet::V2, &v2)), "features.18.0.weight");
        let v3 = v3_plan();
        assert_eq!(name(mobilenet("blocks.2.0.se.conv_reduce.weight", MobileNet::V3, &v3)), "features.4.block.2.fc1.weight");
        assert_eq!(name(mobilenet("blocks.0.0.conv_pw.weight", MobileNet::V3, &v3)), "features.1.block.1.0.weight");
        assert_eq!(name(mobilenet("blocks.6.0.bn1.weight", MobileNet::V3, &v3)), "features.16.1.weight");
        assert_eq!(mobilenet("conv_head.weight", MobileNet::V3, &v3).1, Some(vec![1280, -1]));
        assert_eq!(mobilenet("blocks.9.0.x", MobileNet::V3, &v3).0, None);
    }
}
