//! masklab's input parsers, compiled from the main crate's own source files (no copies): the
//! dataset CSVs, faces.csv, the held-out predictions files, image decoding, and the checkpoint
//! readers. None of them uses libtorch, so the fuzz build does not need it. Each module keeps its
//! path in the main crate.
#![allow(dead_code)]

#[path = "../../src/labels.rs"]
pub mod labels;

pub mod data;
pub mod faces;
pub mod image;
pub mod run_dir;
pub mod util;
pub mod weights;
