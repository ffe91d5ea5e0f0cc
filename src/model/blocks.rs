//! Building blocks shared by the torchvision-style backbones: convolutions and batch norms
//! initialised the way torchvision initialises them, `Conv2dNormActivation`,
//! `SqueezeExcitation`, stochastic depth, channel rounding and the pooled-feature head.
//!
//! Every block registers its tensors under the same path segments as the torchvision module it
//! mirrors, so that a torchvision state dict can be loaded by name.
use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

/// torchvision's convolution init for ResNet, VGG and EfficientNet:
/// `kaiming_normal_(mode="fan_out", nonlinearity="relu")` (gain sqrt(2); for a depthwise conv the
/// fan-out is `out_channels * k * k`, exactly as PyTorch computes it, not divided by groups).
pub const KAIMING_NORMAL_FAN_OUT: Init =
    Init::Kaiming { dist: NormalOrUniform::Normal, fan: FanInOut::FanOut, non_linearity: NonLinearity::ReLU };

/// torchvision's DenseNet convolution init: plain `kaiming_normal_` (fan_in, gain sqrt(2)).
pub const KAIMING_NORMAL_FAN_IN: Init =
    Init::Kaiming { dist: NormalOrUniform::Normal, fan: FanInOut::FanIn, non_linearity: NonLinearity::ReLU };

/// Batch-norm hyper-parameters. PyTorch's defaults (eps 1e-5, momentum 0.1) are what
/// torchvision uses for ResNet, VGG, DenseNet and EfficientNet-B0..B4 (B5+ and V2 differ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormConfig {
    pub eps: f64,
    pub momentum: f64,
}

pub const TORCH_BATCH_NORM: NormConfig = NormConfig { eps: 1e-5, momentum: 0.1 };

impl NormConfig {
    /// The same batch norm with `momentum` instead of the architecture's own, when one is given
    /// (`model.bn_momentum`: how fast the running statistics follow the data during training).
    pub fn with_momentum(self, momentum: Option<f64>) -> NormConfig {
        NormConfig { momentum: momentum.unwrap_or(self.momentum), ..self }
    }
}

/// TensorFlow's batch norm (eps 1e-3, decay 0.99 = PyTorch momentum 0.01): what the
/// EfficientNet-Lite weights were trained with (and what `efficientnet_pytorch` builds).
pub const TF_BATCH_NORM: NormConfig = NormConfig { eps: 1e-3, momentum: 0.01 };

/// A BatchNorm2d with torchvision's init (weight 1, bias 0). tch registers `weight`, `bias`,
/// `running_mean` and `running_var` (no `num_batches_tracked`: PyTorch only reads that counter
/// when momentum is None, which no backbone here uses).
pub fn batch_norm(p: nn::Path, channels: i64, norm: NormConfig) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        eps: norm.eps,
        momentum: norm.momentum,
        ws_init: Init::Const(1.0),
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(p, channels, config)
}

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// PyTorch's symmetric `kernel / 2` on every side (torchvision's models).
    Symmetric,
    /// TensorFlow's "SAME": output side `ceil(input / stride)`, the odd pixel of padding on the
    /// bottom/right, computed from the actual input size. Equal to `Symmetric` at stride 1 (odd
    /// kernels); at stride 2 on an even side it pads only the bottom/right. The EfficientNet-Lite
    /// weights (converted from TensorFlow) expect it.
    TfSame,
    /// No padding: the patchifying convolutions of ConvNeXt, Swin and ViT (kernel = stride).
    Zero,
}

/// Geometry of a square 2-D convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub stride: i64,
    pub groups: i64,
    pub bias: bool,
    pub padding: Padding,
}

impl ConvSpec {
    pub fn new(in_channels: i64, out_channels: i64, kernel: i64) -> Self {
        ConvSpec { in_channels, out_channels, kernel, stride: 1, groups: 1, bias: false, padding: Padding::Symmetric }
    }

    pub fn padding(self, padding: Padding) -> Self {
        ConvSpec { padding, ..self }
    }

    /// True when the padding must be added in `forward` (it depends on the input size).
    fn pads_dynamically(&self) -> bool {
        self.padding == Padding::TfSame && self.stride > 1
    }

    pub fn stride(self, stride: i64) -> Self {
        ConvSpec { stride, ..self }
    }

    pub fn groups(self, groups: i64) -> Self {
        ConvSpec { groups, ..self }
    }

    pub fn bias(self, bias: bool) -> Self {
        ConvSpec { bias, ..self }
    }
}

/// A Conv2d with the given weight init; a bias, when present, starts at zero (as torchvision
/// sets it for every family here).
pub fn conv2d(p: nn::Path, spec: ConvSpec, weight_init: Init) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride: spec.stride,
        padding: conv_padding(&spec),
        groups: spec.groups,
        bias: spec.bias,
        ws_init: weight_init,
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, spec.in_channels, spec.out_channels, spec.kernel, config)
}

/// A Linear initialised like PyTorch's `nn.Linear` default: weight and bias uniform in
/// +-1/sqrt(in_features) (tch's own default weight init uses a larger, ReLU-gain bound).
pub fn torch_default_linear(p: nn::Path, in_features: i64, out_features: i64) -> nn::Linear {
    let bound = 1.0 / (in_features as f64).sqrt();
    let config = nn::LinearConfig {
        ws_init: Init::Uniform { lo: -bound, up: bound },
        bs_init: Some(Init::Uniform { lo: -bound, up: bound }),
        bias: true,
    };
    nn::linear(p, in_features, out_features, config)
}

/// A Linear with explicit weight init and a zero bias.
pub fn linear_zero_bias(p: nn::Path, in_features: i64, out_features: i64, weight_init: Init) -> nn::Linear {
    let config = nn::LinearConfig { ws_init: weight_init, bs_init: Some(Init::Const(0.0)), bias: true };
    nn::linear(p, in_features, out_features, config)
}

/// The activation that closes a `Conv2dNormActivation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    /// libtorch's fused SiLU kernel (x * sigmoid(x) in one pass).
    Silu,
    /// min(max(x, 0), 6), EfficientNet-Lite's and MobileNetV2's activation.
    Relu6,
    /// x * relu6(x + 3) / 6, MobileNetV3's activation.
    Hardswish,
}

impl Activation {
    /// Applies the activation in place, as torchvision does (`inplace=True`): the input is
    /// always a fresh batch-norm (or folded convolution) output that nothing else reads, and
    /// neither backward needs its own output, so overwriting it saves an allocation per layer.
    pub fn apply_in_place(self, mut xs: Tensor) -> Tensor {
        match self {
            Activation::Identity => xs,
            Activation::Relu => xs.relu_(),
            Activation::Silu => xs.silu_(),
            Activation::Relu6 => xs.relu6_(),
            Activation::Hardswish => xs.hardswish_(),
        }
    }
}

/// A convolution and the BatchNorm that follows it, under their own paths (torchvision's
/// `convN`/`bnN`, `0`/`1` of a `Conv2dNormActivation`, ...).
///
/// In training the two run as written: the batch's statistics normalise it and update the
/// running ones. In evaluation BatchNorm is an affine map per channel, so it is folded into the
/// convolution: the kernel scaled by `gamma / sqrt(var + eps)`, the shift `beta - mean * scale`
/// (plus the conv's own bias, scaled) added as the conv's bias. That removes a full pass over
/// each activation (a tenth of a CPU predict). The fold is recomputed at every call from the
/// current variables (a few small ops on the weights), so it can never go stale while a model
/// trains and is validated between epochs, and gradients still flow through it.
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    norm: nn::BatchNorm,
    stride: i64,
    padding: i64,
    groups: i64,
    eps: f64,
}

impl ConvBn {
    pub fn new(conv_path: nn::Path, norm_path: nn::Path, spec: ConvSpec, weight_init: Init, norm: NormConfig) -> Self {
        ConvBn {
            conv: conv2d(conv_path, spec, weight_init),
            norm: batch_norm(norm_path, spec.out_channels, norm),
            stride: spec.stride,
            padding: conv_padding(&spec),
            groups: spec.groups,
            eps: norm.eps,
        }
    }

    /// The convolution's kernel and bias with the BatchNorm's evaluation-mode affine map folded in.
    fn folded(&self) -> (Tensor, Tensor) {
        let norm = &self.norm;
        let inv_std = (&norm.running_var + self.eps).rsqrt();
        let scale = match &norm.ws {
            Some(gamma) => gamma * inv_std,
            None => inv_std,
        };
        let weight = &self.conv.ws * scale.view([-1, 1, 1, 1]);
        let centred = match &self.conv.bs {
            Some(bias) => bias - &norm.running_mean,
            None => -&norm.running_mean,
        };
        let shifted = centred * scale;
        let bias = match &norm.bs {
            Some(beta) => shifted + beta,
            None => shifted,
        };
        (weight, bias)
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            return xs.apply(&self.conv).apply_t(&self.norm, true);
        }
        let (weight, bias) = self.folded();
        xs.conv2d(&weight, Some(&bias), [self.stride, self.stride], [self.padding, self.padding], [1, 1], self.groups)
    }
}

/// The padding `conv2d` gives a convolution of `spec` (what is padded in `forward` is not in it).
fn conv_padding(spec: &ConvSpec) -> i64 {
    if spec.pads_dynamically() || spec.padding == Padding::Zero {
        0
    } else {
        spec.kernel / 2
    }
}

/// torchvision's `Conv2dNormActivation`: conv (no bias) at index 0, BatchNorm at index 1,
/// activation (no parameters) at index 2.
#[derive(Debug)]
pub struct ConvNormActivation {
    conv_norm: ConvBn,
    activation: Activation,
    /// (kernel, stride) when TensorFlow "SAME" padding is added per input size.
    tf_same: Option<(i64, i64)>,
}

impl ConvNormActivation {
    pub fn new(p: nn::Path, spec: ConvSpec, norm: NormConfig, activation: Activation) -> Self {
        let conv_norm = ConvBn::new(&p / 0, &p / 1, spec.bias(false), KAIMING_NORMAL_FAN_OUT, norm);
        let tf_same = spec.pads_dynamically().then_some((spec.kernel, spec.stride));
        ConvNormActivation { conv_norm, activation, tf_same }
    }
}

/// TensorFlow "SAME" padding of `xs` for a square kernel and stride: the total padding of a side
/// makes the output `ceil(side / stride)`; the smaller half goes top/left.
pub fn pad_tf_same(xs: &Tensor, kernel: i64, stride: i64) -> Tensor {
    let size = xs.size();
    let total = |side: i64| {
        let out = (side + stride - 1) / stride;
        ((out - 1) * stride + kernel - side).max(0)
    };
    let (ph, pw) = (total(size[size.len() - 2]), total(size[size.len() - 1]));
    if ph == 0 && pw == 0 {
        return xs.shallow_clone();
    }
    xs.constant_pad_nd([pw / 2, pw - pw / 2, ph / 2, ph - ph / 2])
}

impl ModuleT for ConvNormActivation {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let normed = match self.tf_same {
            Some((kernel, stride)) => self.conv_norm.forward_t(&pad_tf_same(xs, kernel, stride), train),
            None => self.conv_norm.forward_t(xs, train),
        };
        self.activation.apply_in_place(normed)
    }
}

/// The gate of a squeeze-excitation block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    Sigmoid,
    /// relu6(x + 3) / 6 (MobileNetV3).
    Hardsigmoid,
}

/// torchvision's `SqueezeExcitation`: global average pool -> `fc1` (1x1 conv, bias) ->
/// activation -> `fc2` (1x1 conv, bias) -> gate, and the input is rescaled channel-wise.
/// EfficientNet squeezes with SiLU and gates with a sigmoid; MobileNetV3 uses ReLU and a hard
/// sigmoid; RegNet ReLU and a sigmoid.
#[derive(Debug)]
pub struct SqueezeExcitation {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
    activation: Activation,
    gate: Gate,
}

impl SqueezeExcitation {
    /// EfficientNet's: SiLU, sigmoid.
    pub fn new(p: nn::Path, channels: i64, squeeze_channels: i64) -> Self {
        Self::with(p, channels, squeeze_channels, Activation::Silu, Gate::Sigmoid)
    }

    pub fn with(p: nn::Path, channels: i64, squeeze_channels: i64, activation: Activation, gate: Gate) -> Self {
        let fc1 = conv2d(&p / "fc1", ConvSpec::new(channels, squeeze_channels, 1).bias(true), KAIMING_NORMAL_FAN_OUT);
        let fc2 = conv2d(&p / "fc2", ConvSpec::new(squeeze_channels, channels, 1).bias(true), KAIMING_NORMAL_FAN_OUT);
        SqueezeExcitation { fc1, fc2, activation, gate }
    }
}

impl ModuleT for SqueezeExcitation {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let squeezed = spatial_mean(xs, train).apply(&self.fc1);
        let excited = self.activation.apply_in_place(squeezed).apply(&self.fc2);
        let scale = match self.gate {
            Gate::Sigmoid => excited.sigmoid(),
            Gate::Hardsigmoid => excited.hardsigmoid(),
        };
        // The full-size tensor goes first so that its memory format (e.g. channels-last)
        // decides the layout of the product.
        xs * scale
    }
}

/// torchvision's `stochastic_depth(mode="row")`: in training, each sample's residual branch is
/// zeroed with probability `p` and the survivors are scaled by 1/(1-p); otherwise the identity.
pub fn stochastic_depth(xs: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return xs.shallow_clone();
    }
    let survival_rate = 1.0 - p;
    let mut mask_shape = vec![1i64; xs.dim()];
    mask_shape[0] = xs.size()[0];
    let mut noise = Tensor::empty(mask_shape.as_slice(), (xs.kind(), xs.device()));
    let mut noise = noise.bernoulli_float_(survival_rate);
    if survival_rate > 0.0 {
        let _ = noise.g_div_scalar_(survival_rate);
    }
    xs * noise
}

/// Dropout before a classifier's last Linear; skipped entirely (no kernel launch) when it
/// cannot change anything.
pub fn classifier_dropout(xs: Tensor, p: f64, train: bool) -> Tensor {
    if train && p > 0.0 {
        xs.dropout(p, true)
    } else {
        xs
    }
}

/// `AdaptiveAvgPool2d(1)` followed by `torch.flatten(x, 1)`: [N, C, H, W] -> [N, C].
/// The pooled tensor has unit spatial dims, so the flatten is a view in any memory format.
pub fn global_average_pool(xs: &Tensor, train: bool) -> Tensor {
    spatial_mean(xs, train).flatten(1, -1)
}

/// The mean over height and width, `[N, C, H, W] -> [N, C, 1, 1]` (`AdaptiveAvgPool2d(1)`).
///
/// In evaluation, on a channels-last tensor, it is taken as an average pool whose window is the
/// whole image: libtorch's adaptive pool (a `mean`) of a channels-last bfloat16 tensor first
/// copies it to float32, which made EfficientNet's squeeze-excitation cost more than its SiLUs
/// (CPU predict profile); the pooling kernel reads the channels-last layout in place and
/// accumulates in float32. Training keeps the adaptive pool, whose backward libtorch knows best.
pub fn spatial_mean(xs: &Tensor, train: bool) -> Tensor {
    if train || !is_channels_last(xs) {
        return xs.adaptive_avg_pool2d([1, 1]);
    }
    let size = xs.size();
    let window = [size[2], size[3]];
    xs.avg_pool2d(window, window, [0, 0], false, true, None)
}

/// Whether a 4-D tensor has the strides PyTorch's `channels_last` memory format gives (NHWC
/// memory order). A tensor whose contiguous and channels-last strides coincide (every size 1 but
/// one) counts as not.
pub fn is_channels_last(x: &Tensor) -> bool {
    let size = x.size();
    if size.len() != 4 {
        return false;
    }
    let (c, h, w) = (size[1], size[2], size[3]);
    let channels_last = [h * w * c, 1, w * c, c];
    let contiguous = [c * h * w, h * w, w, 1];
    x.stride() == channels_last && channels_last != contiguous
}

/// A LayerNorm over the last dimension (weight 1, bias 0, as PyTorch initialises it).
pub fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

/// torchvision's `LayerNorm2d`: a LayerNorm over the channels of an [N, C, H, W] tensor.
pub fn layer_norm_2d(xs: &Tensor, norm: &nn::LayerNorm) -> Tensor {
    xs.permute([0, 2, 3, 1]).apply(norm).permute([0, 3, 1, 2])
}

/// Fills `t` like `torch.nn.init.trunc_normal_(t, std=std)`: normal(0, std) cut at -2 and 2
/// (absolute values, PyTorch's defaults), by inverse-CDF sampling as PyTorch does it.
pub fn fill_trunc_normal(t: &mut Tensor, std: f64) {
    let cdf = |x: f64| (1.0 + Tensor::from(x / std::f64::consts::SQRT_2).erf().double_value(&[])) / 2.0;
    let (lo, hi) = (cdf(-2.0 / std), cdf(2.0 / std));
    tch::no_grad(|| {
        let _ = t.uniform_(2.0 * lo - 1.0, 2.0 * hi - 1.0);
        let _ = t.erfinv_();
        let _ = t.g_mul_scalar_(std * std::f64::consts::SQRT_2);
        let _ = t.clamp_(-2.0, 2.0);
    });
}

/// A trainable tensor initialised by `fill_trunc_normal`.
pub fn trunc_normal_var(p: &nn::Path, name: &str, dims: &[i64], std: f64) -> Tensor {
    let mut t = p.var(name, dims, Init::Const(0.0));
    fill_trunc_normal(&mut t, std);
    t
}

/// A Linear with `trunc_normal_(std)` weights and a zero bias (ConvNeXt, Swin).
pub fn linear_trunc_normal(p: nn::Path, in_features: i64, out_features: i64, std: f64, bias: bool) -> nn::Linear {
    let config = nn::LinearConfig { ws_init: Init::Const(0.0), bs_init: Some(Init::Const(0.0)), bias };
    let mut linear = nn::linear(p, in_features, out_features, config);
    fill_trunc_normal(&mut linear.ws, std);
    linear
}

/// A Conv2d with `trunc_normal_(std)` weights and a zero bias (ConvNeXt).
pub fn conv2d_trunc_normal(p: nn::Path, spec: ConvSpec, std: f64) -> nn::Conv2D {
    let mut conv = conv2d(p, spec, Init::Const(0.0));
    fill_trunc_normal(&mut conv.ws, std);
    conv
}

/// A Conv2d initialised like PyTorch's `nn.Conv2d` default: weight and bias uniform in
/// +-1/sqrt(fan_in) (what `kaiming_uniform_(a=sqrt(5))` amounts to).
pub fn conv2d_torch_default(p: nn::Path, spec: ConvSpec) -> nn::Conv2D {
    let fan_in = spec.in_channels / spec.groups * spec.kernel * spec.kernel;
    let bound = 1.0 / (fan_in as f64).sqrt();
    let mut conv = conv2d(p, spec, Init::Uniform { lo: -bound, up: bound });
    if let Some(bias) = conv.bs.as_mut() {
        tch::no_grad(|| {
            let _ = bias.uniform_(-bound, bound);
        });
    }
    conv
}

/// torchvision's `_make_divisible` (from the TF MobileNet code): round `value` to the nearest
/// multiple of `divisor` (at least `divisor`), but never more than 10% below `value`.
pub fn make_divisible(value: f64, divisor: i64) -> i64 {
    // `int(v + divisor / 2)` in Python truncates toward zero; values here are positive.
    let rounded = ((value + divisor as f64 / 2.0) as i64) / divisor * divisor;
    let mut new_value = divisor.max(rounded);
    if (new_value as f64) < 0.9 * value {
        new_value += divisor;
    }
    new_value
}

/// Validates a probability for dropout-like options, naming the option in the error.
pub fn check_probability(name: &str, p: f64, allow_one: bool) -> anyhow::Result<f64> {
    let upper_ok = if allow_one { p <= 1.0 } else { p < 1.0 };
    if p.is_finite() && p >= 0.0 && upper_ok {
        Ok(p)
    } else {
        let range = if allow_one { "[0, 1]" } else { "[0, 1)" };
        anyhow::bail!("{name} must be a probability in {range}, got {p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    #[test]
    fn make_divisible_matches_torchvision_rounding() {
        // Values computed with torchvision's `_make_divisible(v, 8)`.
        assert_eq!(make_divisible(32.0 * 1.1, 8), 32);
        assert_eq!(make_divisible(16.0 * 1.4, 8), 24);
        assert_eq!(make_divisible(40.0 * 1.4, 8), 56);
        assert_eq!(make_divisible(112.0 * 1.2, 8), 136);
        assert_eq!(make_divisible(320.0 * 1.1, 8), 352);
        assert_eq!(make_divisible(3.0, 8), 8);
        // 10% rule: 20 would round to 16 (< 0.9 * 20 = 18), so it is bumped to 24.
        assert_eq!(make_divisible(20.0, 16), 32);
    }

    /// A ConvBn whose BatchNorm has non-trivial statistics and affine parameters.
    fn conv_bn_with_statistics(vs: &VarStore, spec: ConvSpec) -> ConvBn {
        let root = vs.root();
        let block = ConvBn::new(&root / "conv", &root / "bn", spec, KAIMING_NORMAL_FAN_OUT, TORCH_BATCH_NORM);
        let c = spec.out_channels;
        let set = |variable: &Tensor, value: Tensor| tch::no_grad(|| variable.shallow_clone().copy_(&value));
        set(&block.norm.running_mean, Tensor::randn([c], (Kind::Float, Device::Cpu)));
        set(&block.norm.running_var, Tensor::rand([c], (Kind::Float, Device::Cpu)) + 0.1);
        set(block.norm.ws.as_ref().unwrap(), Tensor::randn([c], (Kind::Float, Device::Cpu)));
        set(block.norm.bs.as_ref().unwrap(), Tensor::randn([c], (Kind::Float, Device::Cpu)));
        if let Some(bias) = &block.conv.bs {
            set(bias, Tensor::randn([c], (Kind::Float, Device::Cpu)));
        }
        block
    }

    #[test]
    fn folded_batch_norm_evaluates_like_conv_then_batch_norm() {
        tch::manual_seed(3);
        let specs = [
            ConvSpec::new(4, 6, 3),
            ConvSpec::new(6, 6, 3).stride(2).groups(6),
            ConvSpec::new(4, 8, 1).bias(true),
            ConvSpec::new(3, 5, 4).stride(4).padding(Padding::Zero),
        ];
        for spec in specs {
            let vs = VarStore::new(Device::Cpu);
            let block = conv_bn_with_statistics(&vs, spec);
            let xs = Tensor::randn([2, spec.in_channels, 9, 9], (Kind::Float, Device::Cpu));
            let unfolded = xs.apply(&block.conv).apply_t(&block.norm, false);
            let folded = block.forward_t(&xs, false);
            assert_eq!(folded.size(), unfolded.size(), "{spec:?}");
            let gap = (&folded - &unfolded).abs().max().double_value(&[]);
            assert!(gap < 1e-4, "{spec:?}: folded and unfolded differ by {gap}");
        }
    }

    #[test]
    fn folded_batch_norm_follows_the_weights_and_leaves_training_as_it_was() {
        tch::manual_seed(4);
        let spec = ConvSpec::new(3, 4, 3);
        let vs = VarStore::new(Device::Cpu);
        let block = conv_bn_with_statistics(&vs, spec);
        let xs = Tensor::randn([8, 3, 6, 6], (Kind::Float, Device::Cpu));
        // Training normalises by the batch and moves the running statistics, as BatchNorm does.
        let mean_before = block.norm.running_mean.copy();
        let trained = block.forward_t(&xs, true);
        let per_channel_mean = trained.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
        let beta = block.norm.bs.as_ref().unwrap();
        assert!(per_channel_mean.allclose(beta, 1e-4, 1e-4, false));
        assert!(!block.norm.running_mean.allclose(&mean_before, 1e-6, 1e-6, false));
        // Evaluation reads the variables as they are now: nothing is cached from an earlier call.
        let before = block.forward_t(&xs, false);
        tch::no_grad(|| {
            let _ = block.norm.running_var.shallow_clone().g_mul_scalar_(4.0);
        });
        let after = block.forward_t(&xs, false);
        let expected = xs.apply(&block.conv).apply_t(&block.norm, false);
        assert!(after.allclose(&expected, 1e-4, 1e-4, false));
        assert!(!after.allclose(&before, 1e-3, 1e-3, false));
        // Gradients reach the conv's kernel through the fold.
        block.forward_t(&xs, false).sum(Kind::Float).backward();
        assert!(block.conv.ws.grad().defined());
    }

    #[test]
    fn spatial_mean_is_the_adaptive_pool_in_every_layout_and_precision() {
        tch::manual_seed(5);
        let nchw = Tensor::randn([3, 6, 7, 9], (Kind::Float, Device::Cpu));
        let expected = nchw.adaptive_avg_pool2d([1, 1]);
        let nhwc = nchw.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        assert!(is_channels_last(&nhwc) && !is_channels_last(&nchw));
        for (xs, train) in [(&nchw, false), (&nhwc, false), (&nhwc, true)] {
            let pooled = spatial_mean(xs, train);
            assert_eq!(pooled.size(), [3, 6, 1, 1]);
            assert!(pooled.allclose(&expected, 1e-5, 1e-6, false));
        }
        // bfloat16 channels-last (the CPU autocast case) accumulates in float32 like the adaptive pool.
        let bf16 = nhwc.to_kind(Kind::BFloat16);
        let pooled = spatial_mean(&bf16, false).to_kind(Kind::Float);
        let adaptive = bf16.adaptive_avg_pool2d([1, 1]).to_kind(Kind::Float);
        assert!(pooled.allclose(&adaptive, 1e-2, 1e-2, false));
        assert_eq!(global_average_pool(&nhwc, false).size(), [3, 6]);
    }

    #[test]
    fn tf_same_padding_matches_tensorflow_output_sizes_and_offsets() {
        // Stride 2, kernel 3 on an even side: TensorFlow pads 0 before and 1 after.
        let xs = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
        let padded = pad_tf_same(&xs, 3, 2);
        assert_eq!(padded.size(), [1, 1, 5, 5]);
        assert_eq!(padded.double_value(&[0, 0, 0, 0]), 0.0); // top-left is data, not padding
        assert_eq!(padded.double_value(&[0, 0, 4, 4]), 0.0); // bottom-right is padding
        assert_eq!(padded.double_value(&[0, 0, 3, 3]), 15.0);
        // Kernel 5, stride 2 on 7: out 4, total 4 -> 2 and 2; on 14: out 7, total 3 -> 1 and 2.
        assert_eq!(pad_tf_same(&Tensor::zeros([1, 1, 7, 14], (Kind::Float, Device::Cpu)), 5, 2).size(), [1, 1, 11, 17]);
        // Stride 1: symmetric, like PyTorch's kernel / 2.
        assert_eq!(pad_tf_same(&xs, 3, 1).size(), [1, 1, 6, 6]);
        let vs = VarStore::new(Device::Cpu);
        let spec = ConvSpec::new(1, 2, 3).stride(2).padding(Padding::TfSame);
        let layer = ConvNormActivation::new(vs.root() / "c", spec, TF_BATCH_NORM, Activation::Relu6);
        assert_eq!(layer.forward_t(&Tensor::zeros([1, 1, 9, 8], (Kind::Float, Device::Cpu)), false).size(), [1, 2, 5, 4]);
    }

    #[test]
    fn relu6_clamps_to_zero_and_six() {
        let xs = Tensor::from_slice(&[-3.0f32, 0.5, 7.0]);
        let ys = Vec::<f32>::try_from(Activation::Relu6.apply_in_place(xs)).unwrap();
        assert_eq!(ys, [0.0, 0.5, 6.0]);
    }

    #[test]
    fn stochastic_depth_drops_whole_rows_and_rescales_survivors() {
        tch::manual_seed(7);
        let xs = Tensor::ones([64, 2, 3, 3], (Kind::Float, Device::Cpu));
        let out = stochastic_depth(&xs, 0.5, true);
        let per_row = Vec::<f32>::try_from(out.reshape([64, -1]).amax([1], false)).unwrap();
        let row_min = Vec::<f32>::try_from(out.reshape([64, -1]).amin([1], false)).unwrap();
        for (max, min) in per_row.iter().zip(&row_min) {
            // A row is either dropped whole (0) or kept whole and scaled by 1 / (1 - 0.5).
            assert_eq!(max, min);
            assert!(*max == 0.0 || *max == 2.0, "unexpected value {max}");
        }
        let dropped = per_row.iter().filter(|v| **v == 0.0).count();
        assert!(dropped > 0 && dropped < 64, "dropped {dropped} of 64 rows");
        assert!(stochastic_depth(&xs, 0.5, false).equal(&xs));
    }

    #[test]
    fn batch_norm_and_conv_use_torchvision_init() {
        let vs = VarStore::new(Device::Cpu);
        let bn = batch_norm(vs.root() / "bn", 4, TORCH_BATCH_NORM);
        assert!(bn.ws.as_ref().unwrap().equal(&Tensor::ones([4], (Kind::Float, Device::Cpu))));
        assert!(bn.bs.as_ref().unwrap().equal(&Tensor::zeros([4], (Kind::Float, Device::Cpu))));
        let conv = conv2d(vs.root() / "conv", ConvSpec::new(16, 256, 3).bias(true), KAIMING_NORMAL_FAN_OUT);
        // fan_out = 256 * 3 * 3, gain sqrt(2): std = sqrt(2 / 2304) ~ 0.0295.
        let std = conv.ws.std(true).double_value(&[]);
        assert!((std - (2.0f64 / 2304.0).sqrt()).abs() < 0.002, "std {std}");
        assert_eq!(conv.bs.as_ref().unwrap().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn probabilities_are_validated() {
        assert!(check_probability("dropout", 0.2, false).is_ok());
        assert!(check_probability("dropout", 1.0, false).is_err());
        assert!(check_probability("stochastic_depth", 1.0, true).is_ok());
        let err = check_probability("dropout", -0.1, false).unwrap_err().to_string();
        assert!(err.contains("dropout") && err.contains("-0.1"), "{err}");
        assert!(check_probability("dropout", f64::NAN, false).is_err());
    }
}
