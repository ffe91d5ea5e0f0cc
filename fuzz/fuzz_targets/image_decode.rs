//! Image decoding: any bytes are an upright RGB image within the size limits, or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::image::decode::{decode_bytes, decode_upright, Crop, Preprocess, MAX_PIXELS};
use masklab_fuzz::image::check::{jpeg_is_whole, png_is_whole};

fuzz_target!(|data: &[u8]| {
    let _ = jpeg_is_whole(data);
    let _ = png_is_whole(data);
    if let Ok(img) = decode_upright(data) {
        assert_eq!(img.data.len() as u64, img.width as u64 * img.height as u64 * 3);
        assert!(img.width as u64 * img.height as u64 <= MAX_PIXELS);
        let prep = Preprocess { crop: Crop::Fraction(0.9), width: 16, height: 16 };
        let out = decode_bytes(data, &prep).expect("decoded once, decodes again");
        assert_eq!(out.data.len(), 16 * 16 * 3);
    }
});
