//! `masklab::run_dir`: the held-out predictions file (paths are relative to this file's folder).
#[path = "../../src/run_dir/predictions_csv.rs"]
pub mod predictions_csv;
