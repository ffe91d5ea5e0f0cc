//! Tensor names of other libraries -> masklab's (torchvision's) names, per backbone family.
//!
//! | family | convention | mapping |
//! |---|---|---|
//! | all | torchvision | as they are |
//! | all | `nn.DataParallel` | a `module.` prefix on every name is dropped |
//! | all | PyTorch BatchNorm | `*.num_batches_tracked` is dropped (tch has no such buffer) |
//! | efficientnet, efficientnet_lite | `efficientnet_pytorch` / EfficientNet-Lite (`_conv_stem`, `_blocks.N`) | `_conv_stem`/`_bn0` -> `features.0.{0,1}`; `_blocks.N` -> `features.S.L.block` (the N-th block in forward order); in a block `_expand_conv`/`_bn0` -> `.0`, `_depthwise_conv`/`_bn1` -> next, `_se_reduce`/`_se_expand` -> next `.fc1`/`.fc2`, `_project_conv`/`_bn2` -> last; `_conv_head`/`_bn1` -> `features.H.{0,1}`; `_fc` -> `classifier.1` |
//! | efficientnet, efficientnet_lite | timm (`conv_stem`, `blocks.S.L`) | `conv_stem`/`bn1` -> `features.0`; `blocks.S.L` -> `features.(S+1).L.block` with `conv_pw`/`bn1` (expansion), `conv_dw`/`bn1` or `bn2`, `se.conv_reduce`/`se.conv_expand`, `conv_pwl`/`bn3` (or `conv_pw`/`bn2` in blocks without expansion); `conv_head`/`bn2` -> `features.H`; `classifier` -> `classifier.1` |
//! | resnet, resnext | timm | timm uses torchvision's names |
//! | vgg | timm (`pre_logits`, `head.fc`) | `pre_logits.fc1` (a 7x7 conv) -> `classifier.0` (reshaped to a Linear), `pre_logits.fc2` -> `classifier.3`, `head.fc` -> `classifier.6` |
//! | densenet | torchvision before 0.3 | `denselayerN.norm.1` -> `denselayerN.norm1` (and `conv.1`, `norm.2`, `conv.2`) |
//! | convnext, efficientnet_v2, mobilenet_v2, mobilenet_v3, regnet, swin, vit | timm | see `timm_names.rs` |
//!
//! The names map, but the architectures are masklab's: `efficientnet_pytorch`'s B0-B4 use
//! TensorFlow padding and batch-norm eps, so their weights load onto torchvision's B0-B4 with a
//! small shift in activations that fine-tuning absorbs; timm's `tf_efficientnet_lite*` match
//! masklab's Lite exactly, timm's own `efficientnet_lite*` weights were trained with PyTorch padding.
use super::timm_names::{self, MobileNet};
use crate::model::efficientnet::{block_plan, BlockPlan};
use crate::model::registry::{backbone_info, efficientnet_scaling, efficientnet_v2_config};
use crate::model::{efficientnet_v2, mobilenet};
use anyhow::{anyhow, Result};
use tch::Tensor;

/// Whose names a checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    Torchvision,
    EfficientNetPytorch,
    Timm,
}

impl std::fmt::Display for Convention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Convention::Torchvision => "torchvision",
            Convention::EfficientNetPytorch => "efficientnet_pytorch",
            Convention::Timm => "timm",
        })
    }
}

/// The convention of a set of names, for a backbone family.
pub fn detect(family: &str, names: &[&str]) -> Convention {
    let any = |prefixes: &[&str]| names.iter().any(|n| prefixes.iter().any(|p| n.starts_with(p)));
    match family {
        "efficientnet" | "efficientnet_lite" if any(&["_blocks.", "_conv_stem."]) => Convention::EfficientNetPytorch,
        "efficientnet" | "efficientnet_lite" if any(&["blocks.", "conv_stem."]) => Convention::Timm,
        "vgg" if any(&["pre_logits.", "head.fc."]) => Convention::Timm,
        "convnext" if any(&["stem.", "stages."]) => Convention::Timm,
        "efficientnet_v2" | "mobilenet_v2" | "mobilenet_v3" if any(&["blocks.", "conv_stem."]) => Convention::Timm,
        "regnet" if any(&["s1.", "stem.conv."]) => Convention::Timm,
        "swin" if any(&["layers.", "patch_embed."]) => Convention::Timm,
        "vit" if any(&["blocks.", "patch_embed.", "cls_token"]) => Convention::Timm,
        _ => Convention::Torchvision,
    }
}

/// A checkpoint's tensors under masklab's names for `backbone`, and the convention it used.
/// BatchNorm counters are dropped; names that do not map are kept as they are (they then show
/// up as unexpected when loading).
pub fn to_masklab(backbone: &str, tensors: Vec<(String, Tensor)>) -> Result<(Vec<(String, Tensor)>, Convention)> {
    let info = backbone_info(backbone).ok_or_else(|| anyhow!("unknown backbone {backbone:?}"))?;
    let strip_module = !tensors.is_empty() && tensors.iter().all(|(n, _)| n.starts_with("module."));
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| (if strip_module { n["module.".len()..].to_string() } else { n }, t))
        .collect();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let convention = detect(info.family, &names);
    let plan = efficientnet_scaling(backbone).map(block_plan);
    let v2_plan = efficientnet_v2_config(backbone).map(efficientnet_v2::block_plan);
    let mobile_plan = match info.family {
        "mobilenet_v2" => Some((MobileNet::V2, mobilenet::v2_plan())),
        "mobilenet_v3" => Some((MobileNet::V3, mobilenet::v3_plan())),
        _ => None,
    };
    let old_swin = names.contains(&"layers.0.downsample.reduction.weight");
    let mapped = tensors
        .into_iter()
        .map(|(name, t)| {
            let (new_name, reshape): timm_names::Mapped = match (convention, info.family) {
                (Convention::EfficientNetPytorch, _) => match &plan {
                    Some((blocks, head)) => (map_efficientnet_pytorch(&name, blocks, *head), None),
                    None => (None, None),
                },
                (Convention::Timm, "efficientnet" | "efficientnet_lite") => match &plan {
                    Some((blocks, head)) => (map_timm_efficientnet(&name, blocks, *head), None),
                    None => (None, None),
                },
                (Convention::Timm, "efficientnet_v2") => match &v2_plan {
                    Some((blocks, head)) => timm_names::efficientnet_v2(&name, blocks, *head),
                    None => (None, None),
                },
                (Convention::Timm, "mobilenet_v2" | "mobilenet_v3") => match &mobile_plan {
                    Some((version, blocks)) => timm_names::mobilenet(&name, *version, blocks),
                    None => (None, None),
                },
                (Convention::Timm, "vgg") => map_timm_vgg(&name),
                (Convention::Timm, "convnext") => timm_names::convnext(&name),
                (Convention::Timm, "regnet") => timm_names::regnet(&name),
                (Convention::Timm, "swin") => timm_names::swin(&name, old_swin),
                (Convention::Timm, "vit") => timm_names::vit(&name),
                (_, "densenet") => (Some(legacy_densenet(&name)), None),
                _ => (Some(name.clone()), None),
            };
            let t = match reshape {
                Some(shape) => t.reshape(shape.as_slice()),
                None => t,
            };
            (new_name.unwrap_or(name), t)
        })
        .collect();
    Ok((mapped, convention))
}

/// `features.S.L.block.I.rest` of the block at `plan`, for a sub-layer index and the rest.
fn block_name(p: &BlockPlan, index: usize, rest: &str) -> String {
    format!("features.{}.{}.block.{index}.{rest}", p.stage, p.layer)
}

/// Indices inside a torchvision MBConv `block`: (expansion, depthwise, SE, projection).
fn block_indices(p: &BlockPlan) -> (usize, usize, usize, usize) {
    let dw = p.expand as usize;
    let se = dw + 1;
    let project = se + p.squeeze_excitation as usize;
    (0, dw, se, project)
}

/// `bn.rest` -> `index.1.rest` (BatchNorm) or `conv.weight` -> `index.0.weight` (Conv).
fn conv_or_norm(p: &BlockPlan, index: usize, which: usize, rest: &str) -> String {
    block_name(p, index, &format!("{which}.{rest}"))
}

fn map_efficientnet_pytorch(name: &str, blocks: &[BlockPlan], head: usize) -> Option<String> {
    let (first, rest) = name.split_once('.')?;
    Some(match first {
        "_conv_stem" => format!("features.0.0.{rest}"),
        "_bn0" => format!("features.0.1.{rest}"),
        "_conv_head" => format!("features.{head}.0.{rest}"),
        "_bn1" => format!("features.{head}.1.{rest}"),
        "_fc" => format!("classifier.1.{rest}"),
        "_blocks" => {
            let (index, rest) = rest.split_once('.')?;
            let p = blocks.get(index.parse::<usize>().ok()?)?;
            let (layer, rest) = rest.split_once('.')?;
            let (expand, dw, se, project) = block_indices(p);
            match layer {
                "_expand_conv" if p.expand => conv_or_norm(p, expand, 0, rest),
                "_bn0" if p.expand => conv_or_norm(p, expand, 1, rest),
                "_depthwise_conv" => conv_or_norm(p, dw, 0, rest),
                "_bn1" => conv_or_norm(p, dw, 1, rest),
                "_se_reduce" if p.squeeze_excitation => block_name(p, se, &format!("fc1.{rest}")),
                "_se_expand" if p.squeeze_excitation => block_name(p, se, &format!("fc2.{rest}")),
                "_project_conv" => conv_or_norm(p, project, 0, rest),
                "_bn2" => conv_or_norm(p, project, 1, rest),
                _ => return None,
            }
        }
        _ => return None,
    })
}

fn map_timm_efficientnet(name: &str, blocks: &[BlockPlan], head: usize) -> Option<String> {
    let (first, rest) = name.split_once('.')?;
    Some(match first {
        "conv_stem" => format!("features.0.0.{rest}"),
        "bn1" => format!("features.0.1.{rest}"),
        "conv_head" => format!("features.{head}.0.{rest}"),
        "bn2" => format!("features.{head}.1.{rest}"),
        "classifier" => format!("classifier.1.{rest}"),
        "blocks" => {
            let (stage, rest) = rest.split_once('.')?;
            let (layer, rest) = rest.split_once('.')?;
            let (stage, layer): (usize, usize) = (stage.parse().ok()?, layer.parse().ok()?);
            let p = blocks.iter().find(|p| p.stage == stage + 1 && p.layer == layer)?;
            let (sub, rest) = rest.split_once('.')?;
            timm_names::efficientnet_block(p, sub, rest)?
        }
        _ => return None,
    })
}

/// timm's VGG: the first two classifier Linears are stored as convolutions (7x7 and 1x1).
/// Returns the name and, for weights, the row count to reshape to.
fn map_timm_vgg(name: &str) -> timm_names::Mapped {
    let map = |from: &str, to: &str| name.strip_prefix(from).map(|rest| format!("{to}{rest}"));
    if let Some(n) = map("pre_logits.fc1.", "classifier.0.").or_else(|| map("pre_logits.fc2.", "classifier.3.")) {
        let reshape = n.ends_with(".weight").then(|| vec![4096, -1]);
        return (Some(n), reshape);
    }
    (map("head.fc.", "classifier.6.").or_else(|| Some(name.to_string())), None)
}

/// torchvision's pre-0.3 DenseNet names (`denselayer1.norm.1.weight`) -> current ones.
fn legacy_densenet(name: &str) -> String {
    if !name.contains("denselayer") {
        return name.to_string();
    }
    let mut n = name.to_string();
    for layer in ["norm", "relu", "conv"] {
        for i in ["1", "2"] {
            n = n.replace(&format!(".{layer}.{i}."), &format!(".{layer}{i}."));
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn names_after(backbone: &str, names: &[&str]) -> (Vec<String>, Convention) {
        let tensors = names.iter().map(|n| (n.to_string(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))).collect();
        let (mapped, c) = to_masklab(backbone, tensors).unwrap();
        (mapped.into_iter().map(|(n, _)| n).collect(), c)
    }

    #[test]
    fn efficientnet_pytorch_lite_names_map_to_torchvision_style() {
        let (names, c) = names_after(
            "efficientnet_lite0",
            &[
                "_conv_stem.weight",
                "_bn0.running_mean",
                "_bn0.num_batches_tracked",
                "_blocks.0._depthwise_conv.weight",
                "_blocks.0._bn2.bias",
                "_blocks.1._expand_conv.weight",
                "_blocks.1._bn1.weight",
                "_blocks.15._project_conv.weight",
                "_conv_head.weight",
                "_bn1.running_var",
                "_fc.weight",
                "_blocks.99._bn0.weight",
            ],
        );
        assert_eq!(c, Convention::EfficientNetPytorch);
        assert_eq!(
            names,
            [
                "features.0.0.weight",
                "features.0.1.running_mean",
                "features.1.0.block.0.0.weight",
                "features.1.0.block.1.1.bias",
                "features.2.0.block.0.0.weight",
                "features.2.0.block.1.1.weight",
                "features.7.0.block.2.0.weight",
                "features.8.0.weight",
                "features.8.1.running_var",
                "classifier.1.weight",
                "_blocks.99._bn0.weight",
            ]
        );
        // With squeeze-excitation (B0): SE sits after the depthwise conv, projection after it.
        let (names, _) = names_after("efficientnet_b0", &["_blocks.1._se_expand.bias", "_blocks.1._project_conv.weight", "module._x"]);
        assert_eq!(names, ["features.2.0.block.2.fc2.bias", "features.2.0.block.3.0.weight", "module._x"]);
    }

    #[test]
    fn timm_efficientnet_and_module_prefix() {
        let (names, c) = names_after(
            "efficientnet_b0",
            &[
                "module.conv_stem.weight",
                "module.blocks.0.0.conv_dw.weight",
                "module.blocks.0.0.bn1.running_mean",
                "module.blocks.0.0.se.conv_reduce.weight",
                "module.blocks.0.0.conv_pw.weight",
                "module.blocks.1.1.conv_pw.weight",
                "module.blocks.1.1.bn2.weight",
                "module.blocks.1.1.conv_pwl.weight",
                "module.blocks.1.1.bn3.bias",
                "module.bn2.weight",
                "module.classifier.bias",
            ],
        );
        assert_eq!(c, Convention::Timm);
        assert_eq!(
            names,
            [
                "features.0.0.weight",
                "features.1.0.block.0.0.weight",
                "features.1.0.block.0.1.running_mean",
                "features.1.0.block.1.fc1.weight",
                "features.1.0.block.2.0.weight",
                "features.2.1.block.0.0.weight",
                "features.2.1.block.1.1.weight",
                "features.2.1.block.3.0.weight",
                "features.2.1.block.3.1.bias",
                "features.8.1.weight",
                "classifier.1.bias",
            ]
        );
    }

    #[test]
    fn torchvision_names_stay_and_legacy_densenet_and_timm_vgg_are_renamed() {
        let (names, c) = names_after("resnet18", &["conv1.weight", "layer1.0.bn1.num_batches_tracked", "fc.bias"]);
        assert_eq!((names, c), (vec!["conv1.weight".to_string(), "fc.bias".to_string()], Convention::Torchvision));
        let (names, _) = names_after("densenet121", &["features.denseblock1.denselayer1.norm.1.weight", "features.norm5.bias"]);
        assert_eq!(names, ["features.denseblock1.denselayer1.norm1.weight", "features.norm5.bias"]);
        let t = Tensor::zeros([4096, 512, 7, 7], (Kind::Float, Device::Cpu));
        let (mapped, c) = to_masklab("vgg19_bn", vec![("pre_logits.fc1.weight".into(), t), ("head.fc.bias".into(), Tensor::zeros([5], (Kind::Float, Device::Cpu)))]).unwrap();
        assert_eq!(c, Convention::Timm);
        assert_eq!(mapped[0].0, "classifier.0.weight");
        assert_eq!(mapped[0].1.size(), [4096, 25088]);
        assert_eq!(mapped[1].0, "classifier.6.bias");
    }
}
