//! torch.save files (zip and legacy): any bytes are tensors that lie inside their storages, or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::weights::raw;

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let Ok(c) = raw::read(data) else { return };
    for t in &c.tensors {
        let storage = &c.storages[t.storage];
        assert_eq!(t.shape.len(), t.stride.len());
        if t.shape.iter().all(|&n| n > 0) {
            let last: i64 = t.offset + t.shape.iter().zip(&t.stride).map(|(n, s)| (n - 1) * s).sum::<i64>();
            assert!((last as usize) < storage.numel(), "{t:?} outside {} elements", storage.numel());
        }
    }
}
