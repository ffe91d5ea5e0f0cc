//! All-reduce cost of a data-parallel step: the flat f32 gradient buffer of a model, averaged over
//! N Gloo ranks on this machine (NCCL with `--device cuda`), as the trainer does once per step.
//!
//!     source scripts/env.sh
//!     cargo run --release --example allreduce_bench -- [--nproc 2] [--runs 15] [--device cpu|cuda] [PARAMS ...]
//!
//! PARAMS are buffer sizes in parameters (default: 5.3e6 = EfficientNet-B0, 12e6 = B3). The
//! launcher starts the ranks; rank 0 prints, per size, the median, min and max over the runs
//! (after 3 warm-up runs), the algorithm bandwidth (bytes / time) and the bus bandwidth of a ring
//! all-reduce (2 (N-1)/N x that), comparable to nccl-tests' busbw.
use anyhow::{bail, Context, Result};
use masklab::dist::launch::{launch, LaunchOptions, WorkerCommand};
use masklab::dist::{BackendChoice, Dist, ReduceOp};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

struct Args {
    nproc: usize,
    runs: usize,
    device: Device,
    sizes: Vec<i64>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { nproc: 2, runs: 15, device: Device::Cpu, sizes: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--nproc" => args.nproc = value("--nproc")?.parse()?,
            "--runs" => args.runs = value("--runs")?.parse()?,
            "--device" => {
                args.device = match value("--device")?.as_str() {
                    "cpu" => Device::Cpu,
                    "cuda" => Device::Cuda(0),
                    other => bail!("--device cpu|cuda, got {other}"),
                }
            }
            size => args.sizes.push(size.parse::<f64>().with_context(|| format!("not a parameter count: {size}"))? as i64),
        }
    }
    if args.sizes.is_empty() {
        args.sizes = vec![5_300_000, 12_000_000];
    }
    if args.runs == 0 || args.nproc == 0 {
        bail!("--runs and --nproc must be positive");
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let Some(dist) = Dist::init(BackendChoice::Auto, args.device, Duration::from_secs(120))? else {
        // Not a rank yet: start the ranks (this same program and command line).
        let command = WorkerCommand {
            program: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
            env: Vec::new(),
        };
        return launch(&command, &LaunchOptions::new(args.nproc));
    };
    let pg = &dist.pg;
    if pg.is_main() {
        println!("{} ranks, {} backend on {:?}, {} timed runs per size", pg.world_size(), pg.backend(), pg.device(), args.runs);
    }
    for &size in &args.sizes {
        let mut buffer = Tensor::ones([size], (Kind::Float, pg.device())) * (pg.rank() as f64 + 1.0);
        let mut times = Vec::with_capacity(args.runs);
        for run in 0..args.runs + 3 {
            pg.barrier()?;
            let start = Instant::now();
            pg.all_reduce_(&mut buffer, ReduceOp::Avg)?;
            if let Device::Cuda(index) = pg.device() {
                tch::Cuda::synchronize(index as i64);
            }
            if run >= 3 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        if pg.is_main() {
            let median = times[times.len() / 2];
            let bytes = size as f64 * 4.0;
            let algbw = bytes / median / 1e9;
            let n = pg.world_size() as f64;
            println!(
                "{:>6.2}M params ({:>5.1} MB): median {:>7.2} ms  min {:>7.2}  max {:>7.2}  algbw {:.2} GB/s  busbw {:.2} GB/s",
                size as f64 / 1e6,
                bytes / 1e6,
                median * 1e3,
                times[0] * 1e3,
                times[times.len() - 1] * 1e3,
                algbw,
                algbw * 2.0 * (n - 1.0) / n
            );
        }
    }
    Ok(())
}
