//! Images made small for work that needs only so many pixels (the face detector's working size):
//! at most a given number of pixels, the aspect kept, a JPEG decoded straight at 1/2, 1/4 or 1/8
//! of its size where that still leaves enough, so that neither the full-size pixels nor the work
//! on them grow with the photo.
use super::decode::{decode_reduced, resize_rgb, Crop, Preprocess, RgbImage, DCT_REDUCTIONS};

/// An image at most a bound's pixels, and the upright size of the photo it stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Shrunk {
    pub image: RgbImage,
    pub full_width: u32,
    pub full_height: u32,
}

impl Shrunk {
    /// Photo pixels per pixel of the shrunk image, across and down (1 when not shrunk).
    pub fn scale(&self) -> (f32, f32) {
        (self.full_width as f32 / self.image.width as f32, self.full_height as f32 / self.image.height as f32)
    }
}

/// The size of a `width` x `height` image brought within `max_pixels` (itself when it fits),
/// the aspect kept, each side at least 1.
pub fn fit_within(width: u32, height: u32, max_pixels: u64) -> (u32, u32) {
    let pixels = width as u64 * height as u64;
    if pixels <= max_pixels {
        return (width, height);
    }
    let k = (max_pixels as f64 / pixels as f64).sqrt();
    let side = |v: u32| ((v as f64 * k).floor() as u32).max(1);
    let (w, h) = (side(width), side(height));
    // A side held at 1 leaves the other to give up what it could not.
    let cap = |v: u32, other: u32| v.min(u32::try_from(max_pixels / other as u64).unwrap_or(u32::MAX).max(1));
    (cap(w, h), cap(h, w))
}

/// `image` within `max_pixels`; None when it fits already.
pub fn shrink(image: &RgbImage, max_pixels: u64) -> Result<Option<Shrunk>, String> {
    let (width, height) = fit_within(image.width, image.height, max_pixels);
    if (width, height) == (image.width, image.height) {
        return Ok(None);
    }
    let small = resize_rgb(image, &Preprocess { crop: Crop::None, width, height })?;
    Ok(Some(Shrunk { image: small, full_width: image.width, full_height: image.height }))
}

/// Decodes a JPEG or PNG upright (strict, as [`super::decode::decode_upright`]) to at most
/// `max_pixels`: a JPEG at the smallest DCT scale that keeps at least that many, then resized.
pub fn decode_within(bytes: &[u8], max_pixels: u64) -> Result<Shrunk, String> {
    let decoded = decode_reduced(bytes, |width, height| {
        let (w, h) = fit_within(width, height, max_pixels);
        DCT_REDUCTIONS.into_iter().find(|&r| width / r >= w && height / r >= h).unwrap_or(1)
    })?;
    let (full_width, full_height) = (decoded.full_width, decoded.full_height);
    let (width, height) = fit_within(full_width, full_height, max_pixels);
    let image = if (decoded.image.width, decoded.image.height) == (width, height) {
        decoded.image
    } else {
        resize_rgb(&decoded.image, &Preprocess { crop: Crop::None, width, height })?
    };
    Ok(Shrunk { image, full_width, full_height })
}

/// The most pixels (as their headers state them) a command decodes at once, over all its
/// decoding threads: one photo of the largest size masklab reads, or several smaller ones.
pub const PIXELS_IN_FLIGHT: u64 = super::decode::MAX_PIXELS;

/// The pixels an image file's header states (None when it cannot be read: decoding reports why).
pub fn header_pixels(path: &std::path::Path) -> Option<u64> {
    let (w, h) = image::ImageReader::open(path).ok()?.with_guessed_format().ok()?.into_dimensions().ok()?;
    Some(w as u64 * h as u64)
}

/// Consecutive runs of items, each of at most `max_count` items and at most `budget` pixels
/// together (an item larger than the budget alone), covering all of them in order: what a
/// command decodes at once so that its decoded pixels stay within the budget whatever the photos.
pub fn chunks_within(pixels: &[u64], budget: u64, max_count: usize) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut sum) = (0, 0u64);
    for (i, &p) in pixels.iter().enumerate() {
        if i > start && (i - start >= max_count.max(1) || sum.saturating_add(p) > budget) {
            chunks.push(start..i);
            (start, sum) = (i, 0);
        }
        sum = sum.saturating_add(p);
    }
    if start < pixels.len() {
        chunks.push(start..pixels.len());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::decode_upright;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 90]));
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
        bytes
    }

    #[test]
    fn chunks_hold_at_most_the_budget_or_one_large_item() {
        assert_eq!(chunks_within(&[10, 10, 10, 10, 10], 100, 2), vec![0..2, 2..4, 4..5]);
        assert_eq!(chunks_within(&[40, 40, 40, 500, 10], 100, 16), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(chunks_within(&[], 100, 16), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(chunks_within(&[0, 0, 0], 100, 0), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn sizes_fit_within_the_bound_and_keep_the_aspect() {
        assert_eq!(fit_within(384, 512, 1 << 21), (384, 512));
        let (w, h) = fit_within(7000, 7000, 1 << 21);
        assert!(w as u64 * h as u64 <= 1 << 21 && w == h && w > 1400, "{w}x{h}");
        let (w, h) = fit_within(16000, 2000, 1 << 21);
        assert!(w as u64 * h as u64 <= 1 << 21 && (w as f64 / h as f64 - 8.0).abs() < 0.01, "{w}x{h}");
        assert_eq!(fit_within(100_000, 1, 1000), (1000, 1));
    }

    /// A large JPEG comes out within the bound, close to the full decode shrunk, with the photo's
    /// size to map positions back.
    #[test]
    fn a_large_jpeg_is_decoded_within_the_bound() {
        let bytes = jpeg(1600, 1200);
        let small = decode_within(&bytes, 120_000).unwrap();
        assert_eq!((small.full_width, small.full_height), (1600, 1200));
        assert!(small.image.width as u64 * small.image.height as u64 <= 120_000);
        assert_eq!((small.image.width, small.image.height), (400, 300));
        assert_eq!(small.scale(), (4.0, 4.0));
        let full = shrink(&decode_upright(&bytes).unwrap(), 120_000).unwrap().unwrap();
        let diff: f64 = small.image.data.iter().zip(&full.image.data).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / full.image.data.len() as f64;
        assert!(diff < 3.0, "mean difference {diff}");
        let fits = decode_within(&jpeg(64, 48), 120_000).unwrap();
        assert_eq!((fits.image.width, fits.image.height, fits.scale()), (64, 48, (1.0, 1.0)));
        assert_eq!(shrink(&fits.image, 120_000).unwrap(), None);
    }
}
