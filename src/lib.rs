//! masklab: train, evaluate and serve face-attribute (mask x gender x age) classifiers.
//!
//! The modules stand in layers ([`LAYERS`], bottom to top); each imports only modules of its own
//! layer or below, and no two modules import each other, directly or through others
//! (`tests/architecture.rs` checks both; README shows the same list).
pub mod app;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod config;
pub mod console;
pub mod data;
pub mod decision_biases;
pub mod demo;
pub mod device;
pub mod dist;
pub mod eda;
pub mod evaluate;
pub mod face_heads;
pub mod faces;
pub mod image;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod report;
pub mod run_dir;
pub mod serve;
pub mod sweep;
pub mod tracking;
pub mod train;
pub mod util;
pub mod weights;

/// The layers of the library, bottom to top: the label types, scores and small helpers; the run
/// folder; images, weight files and the distributed engine; the face detector; datasets; models;
/// the engines (training, evaluation, prediction, the label audit, decision biases, face heads,
/// EDA); the outputs and services (the HTTP service, reports, trackers, the console, benchmarks); the config,
/// which assembles the sections every module below it defines; what to run; the command line.
pub const LAYERS: &[&[&str]] = &[
    &["labels", "metrics", "util", "device"],
    &["run_dir"],
    &["image", "weights", "dist"],
    &["faces"],
    &["data", "demo"],
    &["model"],
    &["train", "evaluate", "predict", "audit", "decision_biases", "face_heads", "eda"],
    &["serve", "report", "tracking", "console", "bench"],
    &["config"],
    &["app", "sweep"],
    &["cli"],
];
