//! masklab: train, evaluate and serve face-attribute (mask x gender x age) classifiers.
//!
//! How the modules depend on each other (each imports only what is below it):
//! `main.rs` (CLI) -> serve (HTTP), report, tracking, console (observers of training) -> train (trainer,
//! k-fold) -> evaluate, predict (the inference path), decision_biases, audit -> model, data, weights ->
//! run_dir (the run folder), heldout, config -> labels, metrics, util.
pub mod audit;
pub mod bench;
pub mod config;
pub mod console;
pub mod data;
pub mod decision_biases;
pub mod demo;
pub mod dist;
pub mod eda;
pub mod faces;
pub mod evaluate;
pub mod heldout;
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
