//! Warnings about what `--skip-bad` (or `data.skip_bad`) left out: each printed once a process.
//! A dataset is read more than once in one command (a k-fold run checks every fold before the
//! first trains, the trainer reads it again, `faces` lists and then detects), and each reading
//! meets the same bad rows: the person reading the warnings should see each of them once.
use std::collections::HashSet;
use std::sync::Mutex;

static PRINTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Prints `skipped: MESSAGE` as a warning unless this process printed that message already.
/// Returns whether it was printed.
pub fn warn_skipped(message: &str) -> bool {
    let mut printed = PRINTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !printed.get_or_insert_with(HashSet::new).insert(message.to_string()) {
        return false;
    }
    tracing::warn!("skipped: {message}");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_is_printed_once() {
        assert!(warn_skipped("train.csv:4: unit test row"));
        assert!(!warn_skipped("train.csv:4: unit test row"));
        assert!(warn_skipped("train.csv:5: unit test row"));
    }
}
