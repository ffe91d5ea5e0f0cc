//! val_predictions.csv / oof_predictions.csv (what tune, the audit, reports and cv read): any
//! bytes are rows of finite probabilities and classes 0..17, or an error naming the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::run_dir::predictions_csv::parse_rows;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match parse_rows(data, Path::new("oof_predictions.csv")) {
        Ok(rows) => {
            for r in rows {
                assert!(r.truth < 18 && r.predicted() < 18 && r.probs.iter().all(|p| p.is_finite()));
            }
        }
        Err(e) => assert!(format!("{e:#}").starts_with("oof_predictions.csv"), "{e:#}"),
    }
});
