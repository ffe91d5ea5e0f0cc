//! faces.csv: any bytes are boxes that overlap their photos or an error naming the file and line,
//! never a panic or a value that would reach a crop unchecked (NaN, an empty box, a box off the photo).
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::faces::cache::FacesCache;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match FacesCache::parse(data, Path::new("faces.csv")) {
        Ok(cache) => {
            for e in cache.images.values() {
                assert!(e.width >= 1 && e.height >= 1 && e.min_face >= 1.0);
                for f in &e.faces {
                    let [x1, y1, x2, y2] = f.bbox;
                    assert!(x1 < x2 && y1 < y2 && x1 < e.width as f32 && y1 < e.height as f32 && x2 > 0.0 && y2 > 0.0);
                    assert!(f.landmarks.iter().flatten().all(|v| v.is_finite()) && (0.0..=1.0).contains(&f.score));
                }
            }
        }
        Err(e) => assert!(e.to_string().starts_with("faces.csv")),
    }
});
