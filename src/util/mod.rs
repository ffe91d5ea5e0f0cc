//! Helpers every part of masklab shares: argmax, atomic file writes, input errors with file and line,
//! the allocator's settings, panics caught as errors, skip warnings, folder walks, output folders, command-line values,
//! run provenance and config sections.
pub mod argmax;
pub mod data_error;
pub mod malloc;
pub mod openmp;
pub mod out_folder;
pub mod panic;
pub mod parse;
pub mod provenance;
pub mod section;
pub mod skips;
pub mod walk;

mod atomic_file;
pub use atomic_file::{process_alive, temp_file_owner, write_atomic};
