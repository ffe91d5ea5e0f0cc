//! eval/info.csv: image ids (never a path out of images/) or an error naming the file and line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::data::dataset::parse_info_csv;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match parse_info_csv(data, Path::new("info.csv")) {
        Ok(rows) => {
            for (_, id) in rows {
                assert!(!id.is_empty() && !id.contains('/') && !id.contains(".."));
            }
        }
        Err(e) => assert!(e.to_string().starts_with("info.csv")),
    }
});
