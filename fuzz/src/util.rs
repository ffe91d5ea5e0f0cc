//! `masklab::util`'s input errors (paths are relative to this file's folder).
#[path = "../../src/util/data_error.rs"]
pub mod data_error;
