//! `masklab bench`.
use crate::bench::{BenchOptions, DetectBenchOptions};
use crate::device::DeviceArg;
use crate::faces::args::DetectorArgs;
use crate::serve::load::LoadOptions;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    /// train (forward, loss, backward, AdamW), infer (forward), detect (face detection of
    /// --image), or serve (HTTP load on --url).
    #[arg(value_enum)]
    mode: BenchMode,
    #[command(flatten)]
    load: LoadOptions,
    #[arg(long, default_value = "efficientnet_b0")]
    backbone: String,
    #[arg(long, default_value_t = 224)]
    size: i64,
    #[arg(long, default_value_t = 32)]
    batch: i64,
    #[command(flatten)]
    device: DeviceArg,
    /// Mixed precision: fp16 autocast on CUDA, bf16 on a CPU with native bfloat16.
    #[arg(long)]
    amp: bool,
    /// Channels-last memory format of the input and the convolution weights (CUDA and CPU).
    #[arg(long)]
    channels_last: bool,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// detect: the photo to detect faces in.
    #[arg(long, required_if_eq("mode", "detect"))]
    image: Option<PathBuf>,
    /// detect: the photo's size after resizing, WIDTHxHEIGHT.
    #[arg(long, default_value = "384x512", value_parser = crate::util::parse::image_size)]
    photo_size: (u32, u32),
    /// detect: the detector.
    #[command(flatten)]
    detector: DetectorArgs,
    /// detect: copies of the photo detected in one call for the batched time.
    #[arg(long, default_value_t = 8)]
    detect_batch: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchMode {
    Train,
    Infer,
    Detect,
    Serve,
}

pub fn run(a: BenchArgs) -> Result<()> {
    match a.mode {
        BenchMode::Serve => {
            if a.load.images.is_empty() {
                bail!("bench serve needs --images FILE|DIR ...");
            }
            let results = crate::serve::load::run(&a.load)?;
            for r in &results {
                println!("{}", serde_json::to_string(r)?);
            }
            eprint!("{}", crate::serve::load::render(&results));
        }
        BenchMode::Detect => {
            let Some(image) = a.image else { bail!("bench detect needs --image PHOTO") };
            let o = DetectBenchOptions {
                image,
                photo: a.photo_size,
                weights: a.detector.weights_dir(),
                min_face: a.detector.min_face.get(),
                batch: a.detect_batch,
                backbone: a.backbone,
                size: a.size,
                classifier_batch: a.batch,
                warmup: a.warmup,
                steps: a.steps.max(1),
            };
            for r in crate::bench::run_detect(&o, a.device.device)? {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        BenchMode::Train | BenchMode::Infer => {
            let o = BenchOptions {
                train: a.mode == BenchMode::Train,
                backbone: a.backbone,
                size: a.size,
                batch: a.batch,
                device: a.device.device,
                amp: a.amp,
                channels_last: a.channels_last,
                warmup: a.warmup,
                steps: a.steps.max(1),
            };
            println!("{}", serde_json::to_string(&crate::bench::run(&o)?)?);
        }
    }
    Ok(())
}
