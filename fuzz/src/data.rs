//! `masklab::data`'s parsers (paths are relative to this file's folder).
#[path = "../../src/data/decode.rs"]
pub mod decode;
#[path = "../../src/data/error.rs"]
pub mod error;
#[path = "../../src/data/image_check.rs"]
pub mod image_check;
#[path = "../../src/data/dataset.rs"]
pub mod dataset;
#[path = "../../src/data/relabel.rs"]
pub mod relabel;
