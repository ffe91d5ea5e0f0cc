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

/// The line of `text` (1-based) a csv record starting at `position` is on, or 0 when unknown.
/// Counted from the byte offset: the csv crate counts a record's line before it reads the `\n`
/// of a `\r\n` ending, so in a file with Windows line ends it names every record after the
/// first one line too early.
pub(crate) fn line_at(text: &[u8], position: Option<&csv::Position>) -> u64 {
    let Some(position) = position else { return 0 };
    let start = (position.byte() as usize).min(text.len());
    let mut line = 1 + text[..start].iter().filter(|&&b| b == b'\n').count() as u64;
    // The record's own text starts after the line ends the reader stopped before.
    for &b in text[start..].iter().take_while(|&&b| b == b'\r' || b == b'\n') {
        line += (b == b'\n') as u64;
    }
    line
}

/// Line number of a csv record read from `text` (1-based, header is line 1), or 0 when unknown.
pub(crate) fn csv_line(text: &[u8], record: &csv::StringRecord) -> u64 {
    line_at(text, record.position())
}

/// Turns a csv parse error on `text` into a DataError naming the file and line; the csv
/// crate's own line count (off by one after `\r\n`) is left out of the message.
pub(crate) fn csv_error(path: &Path, text: &[u8], err: csv::Error) -> DataError {
    let line = line_at(text, err.position());
    let what = match err.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!("field {} is not UTF-8 text", err.field() + 1),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!("{len} fields where the header has {expected_len}"),
        _ => err.to_string(),
    };
    DataError::row(path, line, format!("malformed CSV: {what}"))
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
            crate::util::skips::warn_skipped(&err.to_string());
            self.reported.push(err.to_string());
            Ok(())
        } else {
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_line(text: &[u8]) -> String {
        let mut reader = csv::ReaderBuilder::new().from_reader(text);
        reader.headers().unwrap();
        let err = reader.records().find_map(|r| r.err()).expect("a bad record");
        csv_error(Path::new("info.csv"), text, err).to_string()
    }

    /// Windows line ends: the csv crate would name line 2 for the third line.
    #[test]
    fn lines_are_named_right_with_unix_and_windows_line_ends() {
        for (text, line) in [
            (&b"ImageID,ans\na.jpg,0\n\xffb.jpg,0\n"[..], 3),
            (b"ImageID,ans\r\na.jpg,0\r\n\xffb.jpg,0\r\n", 3),
            (b"ImageID,ans\r\na.jpg,0\r\nb.jpg,0\r\nc.jpg,0\r\n\xffd.jpg,0\r\n", 5),
            (b"ImageID,ans\n\"a\nb.jpg\",0\n\n\xffc.jpg,0\n", 5),
        ] {
            let err = error_line(text);
            assert!(err.starts_with(&format!("info.csv:{line}: malformed CSV: field 1 is not UTF-8")), "{err}");
        }
        let text = b"ImageID,ans\r\na.jpg,0\r\nb.jpg,0\r\n";
        let lines: Vec<u64> = csv::Reader::from_reader(&text[..]).records().map(|r| csv_line(text, &r.unwrap())).collect();
        assert_eq!(lines, vec![2, 3]);
        assert!(error_line(b"a,b\n1,2\n3\n").contains("info.csv:3: malformed CSV: 1 fields where the header has 2"));
    }
}
