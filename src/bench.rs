//! `masklab bench`: step time and images/s of a backbone on synthetic input, training
//! (forward + cross entropy + backward + AdamW step) or inference, printed as one JSON line in
//! the format `scripts/bench_torch.py` prints for PyTorch, so the two can be set side by side.
use crate::model::net::{to_channels_last, weights_to_channels_last};
use crate::model::precision::{cpu_has_native_bf16, Autocast, Requested};
use crate::model::registry::{build_backbone, BackboneOptions};
use crate::train::optim::{OptimConfig, Optimizer};
use crate::device::DeviceChoice;
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub train: bool,
    pub backbone: String,
    pub size: i64,
    pub batch: i64,
    pub device: DeviceChoice,
    pub amp: bool,
    pub channels_last: bool,
    pub warmup: usize,
    pub steps: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub mode: &'static str,
    pub backbone: String,
    pub size: i64,
    pub batch: i64,
    pub device: String,
    pub amp: bool,
    pub channels_last: bool,
    pub step_ms: f64,
    pub images_per_s: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

pub fn run(o: &BenchOptions) -> Result<BenchResult> {
    let device = o.device.resolve()?;
    // --amp: fp16 on CUDA, bf16 on a CPU with native bfloat16 (float32 with a warning otherwise).
    let requested = match (o.amp, device.is_cuda()) {
        (false, _) => Requested::None,
        (true, true) => Requested::Fp16,
        (true, false) => Requested::Bf16,
    };
    let (autocast, warning) = Autocast::choose(requested, device, cpu_has_native_bf16());
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    let amp = autocast != Autocast::Off;
    let channels_last = o.channels_last;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let net = build_backbone(&o.backbone, &vs.root(), &BackboneOptions::new(18))?;
    let mut x = Tensor::randn([o.batch, 3, o.size, o.size], (Kind::Float, device));
    if channels_last {
        x = to_channels_last(&x);
        // Weights too, as training and prediction lay them out (RunOptions::prepare_weights).
        weights_to_channels_last(&vs);
    }
    let y = Tensor::randint(18, [o.batch], (Kind::Int64, device));
    let mut opt = Optimizer::new(&vs, &OptimConfig::default())?;
    let mut times = Vec::with_capacity(o.steps);
    for i in 0..o.warmup + o.steps {
        sync(device);
        let t = Instant::now();
        if o.train {
            let out = autocast.run(device, || net.forward_t(&x, true));
            let loss = out.to_kind(Kind::Float).cross_entropy_for_logits(&y);
            opt.zero_grad();
            if autocast.scales_loss() {
                // What fp16 training does each step: scale, backward, unscale and check.
                (&loss * 1024.0).backward();
                opt.unscale_grads(1.0 / 1024.0);
            } else {
                loss.backward();
            }
            opt.step(1e-4);
        } else {
            let _ = tch::no_grad(|| autocast.run(device, || net.forward_t(&x, false)));
        }
        sync(device);
        if i >= o.warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    Ok(BenchResult {
        implementation: "masklab",
        mode: if o.train { "train" } else { "infer" },
        backbone: o.backbone.clone(),
        size: o.size,
        batch: o.batch,
        device: if device.is_cuda() { "cuda".into() } else { "cpu".into() },
        amp,
        channels_last,
        step_ms: (median * 1000.0).round() / 1000.0,
        images_per_s: (o.batch as f64 / median * 1e3 * 10.0).round() / 10.0,
    })
}

/// `masklab bench detect`: face detection of one photo against the classifier's time per image.
#[derive(Clone, Debug)]
pub struct DetectBenchOptions {
    /// The photo, resized to `photo` (width, height) first.
    pub image: std::path::PathBuf,
    pub photo: (u32, u32),
    /// Folder of the MTCNN weights.
    pub weights: std::path::PathBuf,
    /// The smallest face searched for, in pixels.
    pub min_face: f64,
    /// Photos per detection call in the batched measurement (copies of the photo).
    pub batch: usize,
    /// The classifier compared with: backbone, input size, batch.
    pub backbone: String,
    pub size: i64,
    pub classifier_batch: i64,
    pub warmup: usize,
    pub steps: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct DetectBenchResult {
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub mode: &'static str,
    pub device: String,
    pub photo: String,
    /// The smallest face searched for, in pixels.
    pub min_face: f64,
    pub faces: usize,
    /// Median time to detect the faces of one photo.
    pub detect_ms: f64,
    /// Median time per photo when `batch` photos are detected in one call.
    pub batch: usize,
    pub detect_batch_ms_per_image: f64,
    pub backbone: String,
    pub size: i64,
    pub classifier_batch: i64,
    /// The classifier's inference time per image at `classifier_batch`.
    pub classifier_ms_per_image: f64,
    /// detect_ms / classifier_ms_per_image.
    pub detect_to_classifier: f64,
}

fn median_ms(device: Device, warmup: usize, steps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps.max(1) {
        sync(device);
        let t = Instant::now();
        f()?;
        sync(device);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

/// One result per device: `auto` measures the CPU, and CUDA too when it is available.
pub fn run_detect(o: &DetectBenchOptions, device: DeviceChoice) -> Result<Vec<DetectBenchResult>> {
    use crate::image::decode::{resize_rgb, Crop, Preprocess};
    use crate::faces::mtcnn::Mtcnn;
    let devices = match device {
        DeviceChoice::Auto if tch::Cuda::is_available() => vec![Device::Cpu, Device::Cuda(0)],
        DeviceChoice::Auto => vec![Device::Cpu],
        d => vec![d.resolve()?],
    };
    let photo = crate::data::face_detection::decode_photo(&o.image)?;
    let (w, h) = o.photo;
    let photo = resize_rgb(&photo, &Preprocess { crop: Crop::None, width: w, height: h }).map_err(|e| anyhow::anyhow!("{}: {e}", o.image.display()))?;
    let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
    let mut out = Vec::new();
    for device in devices {
        let detector = Mtcnn::load(&o.weights, device)?.with_min_face(o.min_face)?;
        let mut faces = 0;
        let one = median_ms(device, o.warmup, o.steps, || {
            faces = detector.detect(&photo)?.len();
            Ok(())
        })?;
        let copies: Vec<&crate::image::decode::RgbImage> = vec![&photo; o.batch.max(1)];
        let batched = median_ms(device, o.warmup.min(2), o.steps.div_ceil(4).max(1), || detector.detect_batch(&copies).map(|_| ()))? / copies.len() as f64;
        let name = if device.is_cuda() { "cuda" } else { "cpu" };
        let classifier = run(&BenchOptions {
            train: false,
            backbone: o.backbone.clone(),
            size: o.size,
            batch: o.classifier_batch,
            device: if device.is_cuda() { DeviceChoice::Cuda(0) } else { DeviceChoice::Cpu },
            amp: false,
            channels_last: false,
            warmup: o.warmup,
            steps: o.steps,
        })?;
        let per_image = classifier.step_ms / o.classifier_batch as f64;
        out.push(DetectBenchResult {
            implementation: "masklab",
            mode: "detect",
            device: name.into(),
            photo: format!("{w}x{h}"),
            min_face: o.min_face,
            faces,
            detect_ms: r3(one),
            batch: copies.len(),
            detect_batch_ms_per_image: r3(batched),
            backbone: o.backbone.clone(),
            size: o.size,
            classifier_batch: o.classifier_batch,
            classifier_ms_per_image: r3(per_image),
            detect_to_classifier: r3(one / per_image),
        });
    }
    Ok(out)
}
