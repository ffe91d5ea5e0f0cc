//! relabel.csv: corrections or an error naming the file and line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::data::relabel::parse_relabels;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_relabels(data, Path::new("relabel.csv")) {
        assert!(e.to_string().starts_with("relabel.csv"));
    }
});
