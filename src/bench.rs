//! `masklab bench`: step time and images/s of a backbone on synthetic input, training
//! (forward + cross entropy + backward + AdamW step) or inference, printed as one JSON line in
//! the format `scripts/bench_torch.py` prints for PyTorch, so the two can be set side by side.
use crate::model::net::to_channels_last;
use crate::model::registry::{build_backbone, BackboneOptions};
use crate::train::optim::{OptimConfig, Optimizer};
use crate::config::DeviceChoice;
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
    let amp = o.amp && device.is_cuda();
    let channels_last = o.channels_last && device.is_cuda();
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let net = build_backbone(&o.backbone, &vs.root(), &BackboneOptions { num_classes: 18, dropout: None, stochastic_depth: None })?;
    let mut x = Tensor::randn([o.batch, 3, o.size, o.size], (Kind::Float, device));
    if channels_last {
        x = to_channels_last(&x);
    }
    let y = Tensor::randint(18, [o.batch], (Kind::Int64, device));
    let mut opt = Optimizer::new(&vs, &OptimConfig::default())?;
    let mut times = Vec::with_capacity(o.steps);
    for i in 0..o.warmup + o.steps {
        sync(device);
        let t = Instant::now();
        if o.train {
            let out = tch::autocast(amp, || net.forward_t(&x, true));
            let loss = out.to_kind(Kind::Float).cross_entropy_for_logits(&y);
            opt.zero_grad();
            if amp {
                // What fp16 training does each step: scale, backward, unscale and check.
                (&loss * 1024.0).backward();
                opt.unscale_grads(1.0 / 1024.0);
            } else {
                loss.backward();
            }
            opt.step(1e-4);
        } else {
            let _ = tch::no_grad(|| tch::autocast(amp, || net.forward_t(&x, false)));
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
