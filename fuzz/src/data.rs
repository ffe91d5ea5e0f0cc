//! `masklab::data`'s parsers (paths are relative to this file's folder).
#[path = "../../src/data/dataset.rs"]
pub mod dataset;
#[path = "../../src/data/relabel.rs"]
pub mod relabel;
