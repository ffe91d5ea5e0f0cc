//! `masklab::weights`'s file readers (paths are relative to this file's folder).
#[path = "../../src/weights/pickle.rs"]
pub mod pickle;
#[path = "../../src/weights/raw.rs"]
pub mod raw;
#[path = "../../src/weights/tfjs.rs"]
pub mod tfjs;
