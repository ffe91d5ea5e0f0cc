//! `masklab::util`'s input errors, panic catching and skip warnings (paths are relative to this
//! file's folder).
#[path = "../../src/util/data_error.rs"]
pub mod data_error;
#[path = "../../src/util/panic.rs"]
pub mod panic;
#[path = "../../src/util/skips.rs"]
pub mod skips;
