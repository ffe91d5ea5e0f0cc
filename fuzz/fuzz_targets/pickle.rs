//! The pickle reader: any bytes are a value within the depth limit, or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::weights::pickle;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, used)) = pickle::read(data) {
        assert!(used <= data.len());
    }
});
