//! What gating the optimiser step on a device-side finiteness flag costs (train::nonfinite):
//! the median time of `Optimizer::step` against `grads_finite` + `step_if` over the same
//! parameters, on one flat buffer of N float32 values (ResNet-18: 11.7M, EfficientNet-B0: 5.3M).
//!
//!     cargo run --release --example gated_step_bench -- [PARAMS_MILLIONS] [cpu|cuda]
use masklab::train::optim::{OptimConfig, Optimizer};
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let millions: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(11.7);
    let device = if args.get(2).is_some_and(|d| d == "cuda") { Device::Cuda(0) } else { Device::Cpu };
    let n = (millions * 1e6) as i64;
    let vs = VarStore::new(device);
    // A few tensors of uneven sizes, as a network has.
    let sizes = [n / 2, n / 4, n / 8, n - n / 2 - n / 4 - n / 8];
    let vars: Vec<Tensor> = sizes.iter().enumerate().map(|(i, &s)| vs.root().add(&format!("w{i}"), Tensor::randn([s], (Kind::Float, device)), true)).collect();
    let cfg = OptimConfig::default();
    let mut opt = Optimizer::new(&vs, &cfg).unwrap();
    let backward = || vars.iter().map(|v| (v * v).sum(Kind::Float)).fold(Tensor::zeros([], (Kind::Float, device)), |a, b| a + b).backward();
    let sync = || if device.is_cuda() { tch::Cuda::synchronize(0) };
    let mut time = |gated: bool| {
        let mut t = Vec::new();
        for i in 0..25 {
            opt.zero_grad();
            backward();
            sync();
            let start = Instant::now();
            if gated {
                let ok = opt.grads_finite();
                opt.step_if(1e-3, &ok);
            } else {
                opt.step(1e-3);
            }
            sync();
            if i >= 5 {
                t.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        median(t)
    };
    let (plain, gated) = (time(false), time(true));
    let (plain2, gated2) = (time(false), time(true));
    println!(
        "{{\"params_millions\": {millions}, \"device\": \"{device:?}\", \"step_ms\": {:.2}, \"gated_step_ms\": {:.2}}}",
        plain.min(plain2),
        gated.min(gated2)
    );
}
