//! Helpers shared by the integration tests: tiny generated datasets and the CLI binary.
#![allow(dead_code)]
pub mod weight_server;
use masklab::demo::{write_demo, DemoOptions, DemoSummary};
use std::path::Path;
use std::process::{Command, Output};

pub fn demo(dir: &Path, people: usize, seed: u64) -> DemoSummary {
    let opts = DemoOptions { train_people: people, eval_people: 4, width: 32, height: 40, seed };
    write_demo(dir, &opts).expect("demo data")
}

/// The rows of a `predict --probs` CSV: each image's id and its 18 probabilities.
pub fn read_probs(path: &Path) -> Vec<(String, Vec<f64>)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut it = l.split(',');
            let id = it.next().unwrap().to_string();
            (id, it.map(|v| v.parse::<f64>().unwrap()).collect())
        })
        .collect()
}

pub fn masklab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masklab")).args(args).output().expect("run masklab")
}

/// `masklab ARGS` with extra environment variables.
pub fn masklab_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_masklab"));
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run masklab")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tiny, fast training recipe for CLI tests: ResNet-18 at 32 px, batch 16, 2 epochs, two
/// threads on the CPU, a quarter of the people held out; `extra` overrides any of it.
pub fn tiny_recipe(extra: &[&str]) -> Vec<String> {
    [
        "model.backbone=resnet18",
        "data.size=32",
        "train.batch_size=16",
        "train.epochs=2",
        "train.log_every=2",
        "train.threads=2",
        "train.device=cpu",
        "data.val_ratio=0.25",
        "optim.lr=0.003",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

/// `masklab train DATA --out RUN --quiet` with [`tiny_recipe`].
pub fn train_tiny(data: &Path, run: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = ["train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"].iter().map(|s| s.to_string()).collect();
    args.extend(tiny_recipe(extra));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    masklab(&refs)
}

pub mod serve;
pub mod faces;
