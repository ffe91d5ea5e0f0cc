//! The `[train]` section of the config: epochs, batches, device, precision, seed, logging, the
//! monitored score and early stopping, threads, non-finite steps, distributed settings.
use crate::data::augment::AugmentConfig;
use crate::data::prepared::PrepareSettings;
use crate::data::sampler::SamplerConfig;
use crate::data::settings::DataConfig;
use crate::device::DeviceChoice;
use crate::evaluate::EvalSettings;
use crate::metrics::bootstrap::IntervalConfig;
use crate::metrics::Evaluation;
use crate::model::settings::{model_table, read_model_section, Amp, ModelConfig, NetSettings};
use crate::model::task_layout::Layout;
use crate::train::optim::OptimConfig;
use crate::train::schedule::ScheduleConfig;
use crate::util::section::{read, to_value, Section};
use anyhow::Result;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per forward/backward pass (per rank in a distributed run).
    pub batch_size: usize,
    /// Gradient accumulation: micro-batches of `batch_size` per optimiser step (1 = none). One
    /// step then sees `accumulate x batch_size` images (x the world size when distributed).
    pub accumulate: usize,
    /// Images per step in validation and prediction (0 = twice batch_size).
    pub eval_batch_size: usize,
    /// "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    pub device: DeviceChoice,
    /// Mixed precision: "none", "fp16" (CUDA; autocast with dynamic loss scaling; ignored on CPU) or "bf16" (CUDA, and CPUs with AVX512_BF16/AMX; no loss scaling; float32 with a warning on other CPUs).
    pub amp: Amp,
    /// Channels-last memory format for the model's inputs (faster convolutions with tensor cores on CUDA, and in oneDNN on CPU).
    pub channels_last: bool,
    /// Let cuDNN pick the fastest convolution algorithms (inputs have a fixed size).
    pub cudnn_benchmark: bool,
    /// Seed for splits, sampling, augmentation and initialisation; a CPU run is reproducible.
    pub seed: u64,
    /// Write a metrics.jsonl line every N optimiser steps (0 = per epoch only).
    pub log_every: usize,
    /// Metric that picks the best checkpoint and drives early stopping: f1, f1_mask, f1_gender, f1_age, accuracy, loss.
    pub monitor: Monitor,
    /// Stop after this many epochs without improvement of `monitor` (0 = never).
    pub patience: usize,
    /// Torch CPU threads for the model (0 = libtorch's default).
    pub threads: usize,
    /// Steps whose loss or gradients are not finite are skipped; this many in a row stop training
    /// with an error (fp16 loss-scale overflows do not count).
    pub max_nonfinite_steps: usize,
    /// Distributed runs (torchrun, srun, --nproc): c10d backend, auto (NCCL on CUDA, Gloo on CPU), nccl or gloo.
    pub dist_backend: crate::dist::BackendChoice,
    /// Distributed runs: seconds the rendezvous or a collective waits for the other ranks before failing.
    pub dist_timeout: u64,
    /// PreciseBN: before each validation (and so before each checkpoint) every BatchNorm's running statistics are re-estimated as the mean over this many training batches, without random augmentation (0 = off: the running averages of training, see model.bn_momentum).
    pub precise_bn: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            accumulate: 1,
            eval_batch_size: 0,
            device: DeviceChoice::Auto,
            amp: Amp::None,
            channels_last: false,
            cudnn_benchmark: true,
            seed: 42,
            log_every: 50,
            monitor: Monitor::F1,
            patience: 0,
            threads: 0,
            max_nonfinite_steps: 10,
            dist_backend: crate::dist::BackendChoice::Auto,
            dist_timeout: 600,
            precise_bn: 0,
        }
    }
}

impl Section for TrainConfig {
    const KEY: &'static str = "train";
}

impl TrainConfig {
    /// Images per step in validation and prediction.
    pub fn eval_batch(&self) -> usize {
        if self.eval_batch_size > 0 {
            self.eval_batch_size
        } else {
            2 * self.batch_size
        }
    }
}


/// The validation score that picks the best checkpoint and drives early stopping (`train.monitor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    #[default]
    F1,
    F1Mask,
    F1Gender,
    F1Age,
    Accuracy,
    Loss,
}

impl Monitor {
    /// The monitored value of an evaluation, oriented so that higher is better (loss is negated).
    pub fn score(self, e: &Evaluation) -> f64 {
        match self {
            Monitor::Loss => -e.loss,
            Monitor::Accuracy => e.scores.accuracy,
            Monitor::F1Mask => e.scores.f1_mask,
            Monitor::F1Gender => e.scores.f1_gender,
            Monitor::F1Age => e.scores.f1_age,
            Monitor::F1 => e.scores.f1,
        }
    }
}

impl std::fmt::Display for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let name = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&name)
    }
}

/// What one model of a layout trains with: how it is built and run (`NetSettings`), its
/// optimiser and its learning-rate schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    pub name: String,
    pub net: NetSettings,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
}

impl ModelSettings {
    /// Model `name`'s settings in a resolved config table.
    pub fn of_model(config: &toml::Table, name: &str) -> Result<ModelSettings> {
        let table = model_table(config, name);
        Ok(ModelSettings {
            name: name.to_string(),
            net: NetSettings::of_model(config, name)?,
            optim: read_model_section(&table, name)?,
            schedule: read_model_section(&table, name)?,
        })
    }
}

/// Everything a training run reads from the config, section by section, and the resolved config
/// itself (written to the run's config.toml, recorded in its checkpoints, shown by its report
/// and sent to the trackers). Built from the config layer's resolved table.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub data: DataConfig,
    /// `augment.synth_mask` of the shared `[augment]` section: the share of unmasked training
    /// photos painted with a mask (the data side paints them, for every model).
    pub synth_mask: f64,
    /// `augment.synth_mask_style`.
    pub synth_mask_style: crate::data::augment::SynthMaskStyle,
    /// `augment.synth_mask_on_masked`: the share of correctly masked training photos given a
    /// rendered mask over theirs.
    pub synth_mask_on_masked: f64,
    /// `augment.synth_mask_copies`: masks painted on copies of the unmasked training photos.
    pub synth_mask_copies: bool,
    /// `augment.tight_crop`: the share of training samples seen as tightly cropped faces (the
    /// data side crops them, for every model).
    pub tight_crop: f64,
    pub layout: Layout,
    /// The models of the layout, in its order.
    pub models: Vec<ModelSettings>,
    pub sampler: SamplerConfig,
    pub train: TrainConfig,
    /// How the best epoch's 95% intervals are drawn (`[intervals]`).
    pub intervals: IntervalConfig,
    /// The resolved config these settings were read from.
    pub config: toml::Table,
}

impl RunSettings {
    pub fn from_config(config: toml::Table) -> Result<RunSettings> {
        let model: ModelConfig = read(&config)?;
        let models = model.layout.models().iter().map(|(name, _)| ModelSettings::of_model(&config, name)).collect::<Result<_>>()?;
        let augment: AugmentConfig = read(&config)?;
        Ok(RunSettings {
            data: read(&config)?,
            synth_mask: augment.synth_mask,
            synth_mask_style: augment.synth_mask_style,
            synth_mask_on_masked: augment.synth_mask_on_masked,
            synth_mask_copies: augment.synth_mask_copies,
            tight_crop: augment.tight_crop,
            layout: model.layout,
            models,
            sampler: read(&config)?,
            train: read(&config)?,
            intervals: read(&config)?,
            config,
        })
    }

    /// The settings of fold `fold` of a k-fold run (`data.fold`; 0 = the k-fold run itself).
    pub fn for_fold(&self, fold: usize) -> Result<RunSettings> {
        let mut data = self.data.clone();
        data.fold = fold;
        let mut config = self.config.clone();
        config.insert(DataConfig::KEY.to_string(), to_value(&data)?);
        RunSettings::from_config(config)
    }

    /// The shared `optim.lr` (a model of the layout may override it).
    pub fn optim_lr(&self) -> f64 {
        read::<OptimConfig>(&self.config).map(|o| o.lr).unwrap_or_default()
    }

    /// What `masklab eval` runs the trained models with.
    pub fn eval_settings(&self) -> EvalSettings {
        EvalSettings {
            prepare: self.prepare_settings(),
            threads: self.train.threads,
            eval_batch: self.train.eval_batch(),
            amp: self.train.amp,
            channels_last: self.train.channels_last,
            intervals: self.intervals.resampling(),
        }
    }

    /// What reading and splitting the dataset needs.
    pub fn prepare_settings(&self) -> PrepareSettings {
        PrepareSettings { data: self.data.clone(), seed: self.train.seed, synth_mask: self.synth_mask, synth_mask_style: self.synth_mask_style,
            synth_mask_on_masked: self.synth_mask_on_masked, synth_mask_copies: self.synth_mask_copies, tight_crop: self.tight_crop }
    }
}
