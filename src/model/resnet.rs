//! ResNet-18/34/50 and ResNeXt-50 32x4d with torchvision's module tree (`conv1`, `bn1`,
//! `layer{1..4}.{i}.conv{j}/bn{j}`, `layer{k}.0.downsample.{0,1}`, `fc`) and init.
//! This is ResNet v1.5: a bottleneck block downsamples in its 3x3 conv, not its first 1x1.
//! Also the `resnet` family: its backbones and their torchvision and timm weights (timm uses
//! torchvision's names).
use super::blocks::{
    classifier_dropout, global_average_pool, torch_default_linear, ConvBn, ConvSpec, NormConfig, KAIMING_NORMAL_FAN_OUT,
    TORCH_BATCH_NORM,
};
use super::family::{timm, tv, Family, FamilyInfo, Pretrained, Variant};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convs (ResNet-18/34), expansion 1.
    Basic,
    /// 1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand (ResNet-50+), expansion 4.
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// What distinguishes one torchvision ResNet variant from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResNetConfig {
    pub block: BlockKind,
    pub layers: [i64; 4],
    pub groups: i64,
    pub width_per_group: i64,
}

pub const RESNET18: ResNetConfig =
    ResNetConfig { block: BlockKind::Basic, layers: [2, 2, 2, 2], groups: 1, width_per_group: 64 };
pub const RESNET34: ResNetConfig =
    ResNetConfig { block: BlockKind::Basic, layers: [3, 4, 6, 3], groups: 1, width_per_group: 64 };
pub const RESNET50: ResNetConfig =
    ResNetConfig { block: BlockKind::Bottleneck, layers: [3, 4, 6, 3], groups: 1, width_per_group: 64 };
pub const RESNEXT50_32X4D: ResNetConfig =
    ResNetConfig { block: BlockKind::Bottleneck, layers: [3, 4, 6, 3], groups: 32, width_per_group: 4 };

/// A BasicBlock or Bottleneck: a chain of conv/bn pairs with ReLU between them, then the
/// (possibly downsampled) shortcut is added and a final ReLU applied.
#[derive(Debug)]
struct ResidualBlock {
    branch: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl ResidualBlock {
    fn new(p: nn::Path, cfg: &ResNetConfig, in_channels: i64, planes: i64, stride: i64, norm: NormConfig) -> Self {
        let out_channels = planes * cfg.block.expansion();
        let specs = match cfg.block {
            BlockKind::Basic => {
                vec![ConvSpec::new(in_channels, planes, 3).stride(stride), ConvSpec::new(planes, planes, 3)]
            }
            BlockKind::Bottleneck => {
                // torchvision: width = int(planes * (base_width / 64.)) * groups.
                let width = planes * cfg.width_per_group / 64 * cfg.groups;
                vec![
                    ConvSpec::new(in_channels, width, 1),
                    ConvSpec::new(width, width, 3).stride(stride).groups(cfg.groups),
                    ConvSpec::new(width, out_channels, 1),
                ]
            }
        };
        let branch = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| ConvBn::new(&p / format!("conv{}", i + 1), &p / format!("bn{}", i + 1), spec, KAIMING_NORMAL_FAN_OUT, norm))
            .collect();
        let downsample = (stride != 1 || in_channels != out_channels).then(|| {
            let path = &p / "downsample";
            ConvBn::new(&path / 0, &path / 1, ConvSpec::new(in_channels, out_channels, 1).stride(stride), KAIMING_NORMAL_FAN_OUT, norm)
        });
        ResidualBlock { branch, downsample }
    }
}

impl ModuleT for ResidualBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.branch.len() - 1;
        let mut out = xs.shallow_clone();
        for (i, layer) in self.branch.iter().enumerate() {
            out = layer.forward_t(&out, train);
            if i < last {
                // In place on a fresh batch-norm (or folded conv) output, as torchvision's ReLU(inplace=True).
                out = out.relu_();
            }
        }
        match &self.downsample {
            Some(downsample) => out += downsample.forward_t(xs, train),
            None => out += xs,
        }
        out.relu_()
    }
}

/// torchvision's `ResNet` (no dilation, no zero-init of the last BN, as its defaults).
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    blocks: Vec<ResidualBlock>,
    dropout: f64,
    fc: nn::Linear,
}

impl ResNet {
    /// `dropout` is an addition of this crate (torchvision's ResNet has none): when positive,
    /// dropout is applied to the pooled features before `fc`. It adds no parameters.
    /// `bn_momentum` replaces PyTorch's batch-norm momentum when given.
    pub fn new(p: &nn::Path, cfg: ResNetConfig, num_classes: i64, dropout: f64, bn_momentum: Option<f64>) -> Self {
        let norm = TORCH_BATCH_NORM.with_momentum(bn_momentum);
        let stem = ConvBn::new(p / "conv1", p / "bn1", ConvSpec::new(3, 64, 7).stride(2), KAIMING_NORMAL_FAN_OUT, norm);
        let mut blocks = Vec::new();
        let mut in_channels = 64;
        for (stage, (&depth, planes)) in cfg.layers.iter().zip([64, 128, 256, 512]).enumerate() {
            let layer_path = p / format!("layer{}", stage + 1);
            for i in 0..depth {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(ResidualBlock::new(&layer_path / i, &cfg, in_channels, planes, stride, norm));
                in_channels = planes * cfg.block.expansion();
            }
        }
        let fc = torch_default_linear(p / "fc", in_channels, num_classes);
        ResNet { stem, blocks, dropout, fc }
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut features = self.stem.forward_t(xs, train).relu_().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in &self.blocks {
            features = block.forward_t(&features, train);
        }
        classifier_dropout(global_average_pool(&features, train), self.dropout, train).apply(&self.fc)
    }
}

pub static FAMILY: Family<ResNetConfig> = Family {
    info: FamilyInfo { name: "resnet", head: "fc.", stem: "conv1.weight", in_torchvision: true, computed_buffers: &[] },
    build: |cfg, p, o| Box::new(ResNet::new(p, *cfg, o.num_classes, o.dropout, o.bn_momentum)),
    // timm uses torchvision's names.
    name_maps: |_, _| Vec::new(),
    variants: &[
        Variant::new("resnet18", 224, 11_689_512, RESNET18).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "resnet18-f37072fd.pth")])
                .timm(&[timm("resnet18", &["tv_in1k", "a1_in1k", "a2_in1k", "a3_in1k", "fb_ssl_yfcc100m_ft_in1k", "fb_swsl_ig1b_ft_in1k"])]),
        ),
        Variant::new("resnet34", 224, 21_797_672, RESNET34).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V1", "resnet34-b627a593.pth")])
                .timm(&[timm("resnet34", &["tv_in1k", "a1_in1k", "a2_in1k", "a3_in1k", "bt_in1k", "ra4_e3600_r224_in1k"])]),
        ),
        Variant::new("resnet50", 224, 25_557_032, RESNET50).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V2", "resnet50-11ad3fa6.pth"), tv("IMAGENET1K_V1", "resnet50-0676ba61.pth")])
                .timm(&[timm("resnet50", &["tv_in1k", "tv2_in1k", "a1_in1k", "a1h_in1k", "ram_in1k", "fb_swsl_ig1b_ft_in1k"])]),
        ),
        Variant::new("resnext50_32x4d", 224, 25_028_904, RESNEXT50_32X4D).pretrained(
            Pretrained::torchvision(&[tv("IMAGENET1K_V2", "resnext50_32x4d-1a0047aa.pth"), tv("IMAGENET1K_V1", "resnext50_32x4d-7cdf4587.pth")])
                .timm(&[timm("resnext50_32x4d", &["tv_in1k", "tv2_in1k", "a1h_in1k", "ra_in1k", "fb_swsl_ig1b_ft_in1k"])]),
        ),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    fn shapes(cfg: ResNetConfig, names: &[(&str, &[i64])], expected_len: usize) {
        let vs = VarStore::new(Device::Cpu);
        let _model = ResNet::new(&vs.root(), cfg, 1000, 0.0, None);
        let variables = vs.variables();
        for (name, shape) in names {
            let actual = variables.get(*name).unwrap_or_else(|| panic!("missing {name}")).size();
            assert_eq!(actual, shape.to_vec(), "{name}");
        }
        assert_eq!(vs.len(), expected_len);
    }

    // Reference shapes and counts from torchvision 0.26's state_dict() (whose length includes one
    // num_batches_tracked per BatchNorm, which tch does not register).
    #[test]
    fn resnet18_names_match_torchvision() {
        let names: &[(&str, &[i64])] = &[
            ("conv1.weight", &[64, 3, 7, 7]),
            ("bn1.running_mean", &[64]),
            ("layer1.1.conv2.weight", &[64, 64, 3, 3]),
            ("layer2.0.conv1.weight", &[128, 64, 3, 3]),
            ("layer2.0.downsample.0.weight", &[128, 64, 1, 1]),
            ("layer4.1.bn2.running_var", &[512]),
            ("fc.weight", &[1000, 512]),
            ("fc.bias", &[1000]),
        ];
        // 122 state-dict entries - 20 num_batches_tracked.
        shapes(RESNET18, names, 102);
    }

    #[test]
    fn resnet50_is_v1_5_with_stride_on_the_3x3() {
        let names: &[(&str, &[i64])] = &[
            ("layer1.0.downsample.0.weight", &[256, 64, 1, 1]),
            ("layer3.5.conv3.weight", &[1024, 256, 1, 1]),
            ("layer4.2.bn3.running_mean", &[2048]),
            ("fc.weight", &[1000, 2048]),
        ];
        shapes(RESNET50, names, 267);
        let vs = VarStore::new(Device::Cpu);
        let model = ResNet::new(&vs.root(), RESNET50, 10, 0.0, None);
        // layer2.0 halves the resolution; in v1.5 its 1x1 conv1 keeps 16x16 and the 3x3 conv2
        // strides to 8x8 (v1 would stride in conv1).
        let block = &model.blocks[3];
        let xs = Tensor::zeros([1, 256, 16, 16], (tch::Kind::Float, Device::Cpu));
        let after_conv1 = block.branch[0].forward_t(&xs, false);
        let after_conv2 = block.branch[1].forward_t(&after_conv1, false);
        assert_eq!(after_conv1.size(), [1, 128, 16, 16]);
        assert_eq!(after_conv2.size(), [1, 128, 8, 8]);
    }

    #[test]
    fn resnext50_uses_grouped_wide_bottlenecks() {
        let names: &[(&str, &[i64])] = &[
            // width = int(64 * 4 / 64) * 32 = 128 in layer1; the 3x3 has 32 groups.
            ("layer1.0.conv1.weight", &[128, 64, 1, 1]),
            ("layer1.0.conv2.weight", &[128, 4, 3, 3]),
            ("layer4.0.conv2.weight", &[1024, 32, 3, 3]),
            ("layer4.0.downsample.1.running_var", &[2048]),
        ];
        shapes(RESNEXT50_32X4D, names, 267);
    }
}
