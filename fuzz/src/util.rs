//! `masklab::util`'s argmax, atomic writes, input errors, panic catching and skip warnings (paths are
//! relative to this file's folder).
#[path = "../../src/util/argmax.rs"]
pub mod argmax;
#[path = "../../src/util/atomic_file.rs"]
mod atomic_file;
pub use atomic_file::write_atomic;
#[path = "../../src/util/data_error.rs"]
pub mod data_error;
#[path = "../../src/util/panic.rs"]
pub mod panic;
#[path = "../../src/util/skips.rs"]
pub mod skips;
