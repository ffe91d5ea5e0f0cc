//! Helpers shared by the integration tests: tiny generated datasets and the CLI binary.
#![allow(dead_code)]
use masklab::demo::{write_demo, DemoOptions, DemoSummary};
use std::path::Path;
use std::process::{Command, Output};

pub fn demo(dir: &Path, people: usize, seed: u64) -> DemoSummary {
    let opts = DemoOptions { train_people: people, eval_people: 4, width: 32, height: 40, seed };
    write_demo(dir, &opts).expect("demo data")
}

pub fn masklab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masklab")).args(args).output().expect("run masklab")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
