//! A region of a photo that may reach beyond the photo's edges, resized to a model's input.
//!
//! Framing a face the way training photos framed theirs asks for more of the photo than there is
//! when the face fills a tight crop or sits at an edge. The part beyond the photo repeats the
//! photo's edge pixels outwards (a photo continued by its own border, rather than black bars
//! that no training photo had).
use super::decode::{resize_region, Crop, Preprocess, RgbImage};

/// `region` `[x1, y1, x2, y2]` of `src` (pixels; it may reach beyond the photo) resized to
/// `prep`'s size (`prep.crop` is not applied: the region is the crop). A region inside the photo
/// is exactly [`resize_region`]'s; a region outside the photo altogether is an error.
pub fn resize_beyond(src: &RgbImage, region: [f32; 4], prep: &Preprocess) -> Result<RgbImage, String> {
    let [x1, y1, x2, y2] = region;
    let (w, h) = (src.width as f32, src.height as f32);
    if region.iter().any(|v| !v.is_finite()) || x2 <= x1 || y2 <= y1 {
        return Err(format!("no region to frame: {region:?}"));
    }
    if x1 >= 0.0 && y1 >= 0.0 && x2 <= w && y2 <= h {
        return resize_region(src, Some(region), prep);
    }
    let (ix1, iy1, ix2, iy2) = (x1.max(0.0), y1.max(0.0), x2.min(w), y2.min(h));
    if ix2 <= ix1 || iy2 <= iy1 {
        return Err(format!("the region {region:?} lies outside the {}x{} photo", src.width, src.height));
    }
    // Where the photo's part lands in the output, whole pixels (at least one).
    let (sx, sy) = (prep.width as f32 / (x2 - x1), prep.height as f32 / (y2 - y1));
    let place = |v: f32, scale: f32, size: u32| ((v * scale).round() as i64).clamp(0, size as i64) as u32;
    let (ox1, oy1) = (place(ix1 - x1, sx, prep.width).min(prep.width - 1), place(iy1 - y1, sy, prep.height).min(prep.height - 1));
    let (ox2, oy2) = (place(ix2 - x1, sx, prep.width).max(ox1 + 1), place(iy2 - y1, sy, prep.height).max(oy1 + 1));
    let inner = resize_region(src, Some([ix1, iy1, ix2, iy2]), &Preprocess { crop: Crop::None, width: ox2 - ox1, height: oy2 - oy1 })?;
    let mut data = Vec::with_capacity((prep.width * prep.height * 3) as usize);
    for y in 0..prep.height {
        let row = y.clamp(oy1, oy2 - 1) - oy1;
        for x in 0..prep.width {
            let col = x.clamp(ox1, ox2 - 1) - ox1;
            let at = ((row * inner.width + col) * 3) as usize;
            data.extend_from_slice(&inner.data[at..at + 3]);
        }
    }
    Ok(RgbImage { width: prep.width, height: prep.height, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(width: u32, height: u32) -> RgbImage {
        let data = (0..height).flat_map(|y| (0..width).flat_map(move |x| [(x * 9 % 256) as u8, (y * 7 % 256) as u8, 100])).collect();
        RgbImage { width, height, data }
    }

    fn pixel(img: &RgbImage, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * img.width + x) * 3) as usize;
        [img.data[i], img.data[i + 1], img.data[i + 2]]
    }

    #[test]
    fn inside_the_photo_it_is_the_plain_region_resize() {
        let src = photo(40, 30);
        let prep = Preprocess { crop: Crop::Fraction(0.5), width: 16, height: 16 };
        assert_eq!(resize_beyond(&src, [4.0, 2.0, 36.0, 28.0], &prep).unwrap(), resize_region(&src, Some([4.0, 2.0, 36.0, 28.0]), &prep).unwrap());
    }

    #[test]
    fn beyond_the_photo_its_edges_repeat() {
        // The 20x20 photo in the middle of a 40x40 region: output pixels 10..30 hold it (halved),
        // the rest repeats its border.
        let src = photo(20, 20);
        let prep = Preprocess { crop: Crop::None, width: 20, height: 20 };
        let out = resize_beyond(&src, [-10.0, -10.0, 30.0, 30.0], &prep).unwrap();
        let half = resize_region(&src, None, &Preprocess { crop: Crop::None, width: 10, height: 10 }).unwrap();
        for y in 0..20 {
            for x in 0..20 {
                let (ix, iy) = (x.clamp(5, 14) - 5, y.clamp(5, 14) - 5);
                assert_eq!(pixel(&out, x, y), pixel(&half, ix, iy), "({x}, {y})");
            }
        }
        // Off one side only: the left quarter repeats the photo's first column.
        let out = resize_beyond(&src, [-5.0, 0.0, 15.0, 20.0], &prep).unwrap();
        assert_eq!(pixel(&out, 0, 7), pixel(&out, 4, 7));
        assert_eq!(pixel(&out, 5, 7), pixel(&src, 0, 7));
        assert!(resize_beyond(&src, [30.0, 0.0, 50.0, 20.0], &prep).unwrap_err().contains("outside"));
        assert!(resize_beyond(&src, [5.0, 5.0, 5.0, 9.0], &prep).is_err());
    }
}
