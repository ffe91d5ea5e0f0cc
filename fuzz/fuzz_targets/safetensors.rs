//! safetensors files: any bytes are tensors that fit their data, or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::weights::raw;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = raw::read(data) else { return };
    for t in &c.tensors {
        let numel: i64 = t.shape.iter().product();
        assert_eq!(numel as usize * c.storages[t.storage].dtype.size(), c.storages[t.storage].bytes.len());
    }
});
