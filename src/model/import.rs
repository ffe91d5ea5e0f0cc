//! Loads a checkpoint into a registered backbone (`model.pretrained`, `weights inspect`, `weights
//! fetch`): its tensors renamed by the backbone family's name maps (`weights::mapping`), then
//! loaded by `weights::import` with the family's classifier head and computed buffers.
use super::registry::find;
use crate::weights::import::{load_mapped, ImportReport, Target};
use crate::weights::mapping::{self, Convention};
use crate::weights::torchfile::{self, Checkpoint};
use anyhow::{anyhow, Result};
use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;

/// A checkpoint's tensors under masklab's names for `backbone`, and the convention it used.
/// BatchNorm counters are dropped; names that do not map are kept as they are (they then show
/// up as unexpected when loading).
pub fn to_masklab(backbone: &str, tensors: Vec<(String, Tensor)>) -> Result<(Vec<(String, Tensor)>, Convention)> {
    let b = find(backbone).ok_or_else(|| anyhow!("unknown backbone {backbone:?}"))?;
    Ok(mapping::to_masklab(tensors, |names| b.name_maps(names)))
}

/// Loads `path` into `vs`, whose root holds backbone `backbone` (masklab's names).
pub fn load_into(vs: &VarStore, backbone: &str, path: &Path, strict: bool) -> Result<ImportReport> {
    let checkpoint = torchfile::read(path)?;
    load_checkpoint_into(vs, backbone, path, &checkpoint, strict)
}

/// As `load_into`, from a checkpoint already read from `path`.
pub fn load_checkpoint_into(
    vs: &VarStore,
    backbone: &str,
    path: &Path,
    checkpoint: &Checkpoint,
    strict: bool,
) -> Result<ImportReport> {
    let family = find(backbone).ok_or_else(|| anyhow!("unknown backbone {backbone:?}"))?.family();
    let tensors = checkpoint.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let (tensors, convention) = to_masklab(backbone, tensors)?;
    let target = Target { vs, backbone, head: family.head, computed_buffers: family.computed_buffers };
    load_mapped(&target, path, checkpoint, tensors, convention, strict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

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
        assert_eq!(c, Convention::EFFICIENTNET_PYTORCH);
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
        assert_eq!(c, Convention::TIMM);
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
        assert_eq!((names, c), (vec!["conv1.weight".to_string(), "fc.bias".to_string()], Convention::TORCHVISION));
        let (names, _) = names_after("densenet121", &["features.denseblock1.denselayer1.norm.1.weight", "features.norm5.bias"]);
        assert_eq!(names, ["features.denseblock1.denselayer1.norm1.weight", "features.norm5.bias"]);
        let t = Tensor::zeros([4096, 512, 7, 7], (Kind::Float, Device::Cpu));
        let (mapped, c) = to_masklab("vgg19_bn", vec![("pre_logits.fc1.weight".into(), t), ("head.fc.bias".into(), Tensor::zeros([5], (Kind::Float, Device::Cpu)))]).unwrap();
        assert_eq!(c, Convention::TIMM);
        assert_eq!(mapped[0].0, "classifier.0.weight");
        assert_eq!(mapped[0].1.size(), [4096, 25088]);
        assert_eq!(mapped[1].0, "classifier.6.bias");
    }
}
