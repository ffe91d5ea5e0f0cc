//! train.csv: any bytes are people or an error naming the file and line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::data::dataset::parse_train_csv;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses between stopping at the first bad row and --skip-bad.
    let Some((&mode, text)) = data.split_first() else { return };
    if let Err(e) = parse_train_csv(text, Path::new("train.csv"), mode & 1 == 1) {
        assert!(e.to_string().starts_with("train.csv"));
    }
});
