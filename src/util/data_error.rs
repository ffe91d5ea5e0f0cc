//! Errors about input data: each names the file, and the line where there is one.
use std::path::{Path, PathBuf};

#[derive(thiserror::Error, Debug)]
pub enum DataError {
    #[error("{}:{line}: {msg}", path.display())]
    Row { path: PathBuf, line: u64, msg: String },
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
}

impl DataError {
    pub fn row(path: &Path, line: u64, msg: impl Into<String>) -> DataError {
        DataError::Row { path: path.to_path_buf(), line, msg: msg.into() }
    }

    pub fn file(path: &Path, msg: impl Into<String>) -> DataError {
        DataError::File { path: path.to_path_buf(), msg: msg.into() }
    }
}

/// Line number of a csv record (1-based, header is line 1), or 0 when unknown.
pub(crate) fn csv_line(record: &csv::StringRecord) -> u64 {
    record.position().map(|p| p.line()).unwrap_or(0)
}

/// Turns a csv parse error into a DataError naming the file and line.
pub(crate) fn csv_error(path: &Path, err: csv::Error) -> DataError {
    let line = err.position().map(|p| p.line()).unwrap_or(0);
    DataError::row(path, line, format!("malformed CSV: {err}"))
}

/// What a reader does with a bad file or row: stop (the default), or report it and go on.
#[derive(Clone, Debug, Default)]
pub struct Problems {
    pub skip_bad: bool,
    pub reported: Vec<String>,
}

impl Problems {
    pub fn new(skip_bad: bool) -> Problems {
        Problems { skip_bad, reported: Vec::new() }
    }

    /// Returns the error when bad input must stop us, or records it and returns Ok.
    pub fn bad(&mut self, err: DataError) -> Result<(), DataError> {
        if self.skip_bad {
            tracing::warn!("skipped: {err}");
            self.reported.push(err.to_string());
            Ok(())
        } else {
            Err(err)
        }
    }
}
