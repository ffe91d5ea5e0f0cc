//! `masklab::image`: decoding (paths are relative to this file's folder).
#[path = "../../src/image/check.rs"]
pub mod check;
#[path = "../../src/image/decode.rs"]
pub mod decode;
