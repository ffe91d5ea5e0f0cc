//! The detector's bounds per photo. MTCNN's cost grows with the photo's pixels (P-Net runs over
//! a pyramid of the whole photo) and with the candidates P-Net proposes (each is cropped,
//! compared with the others and run through R-Net and O-Net), so a photo is detected at a working
//! size of at most [`DETECT_MAX_PIXELS`] (decoded there, or shrunk to it) and a photo whose
//! candidates exceed the detector's limit ([`super::mtcnn::TooManyCandidates`]) is refused. The
//! faces are reported in pixels of the photo as it is.
//!
//! At the working size the smallest face found is `min_face` pixels of the working image: in a
//! photo shrunk by k, faces of `min_face / k` photo pixels and up. The 2-megapixel bound keeps a
//! 1080p frame and the competition's 384x512 photos at full size; from a 12-megapixel phone photo
//! (k about 0.4) it finds faces of 50 pixels and up, a fifth of a classifier's input side and
//! already upscaled by it.
use super::boxes::Face;
use super::mtcnn::Mtcnn;
use crate::image::decode::RgbImage;
use crate::image::shrink::{shrink, Shrunk};
use anyhow::Result;

/// The most pixels the detector works on for one photo (2 megapixels).
pub const DETECT_MAX_PIXELS: u64 = 1 << 21;

/// The faces of `photo`, detected at the working size, in the photo's pixels.
pub fn detect_photo(detector: &Mtcnn, photo: &RgbImage) -> Result<Vec<Face>> {
    match shrink(photo, DETECT_MAX_PIXELS).map_err(anyhow::Error::msg)? {
        None => detector.detect(photo),
        Some(small) => Ok(detect_shrunk(detector, &[&small])?.pop().unwrap_or_default()),
    }
}

/// The faces of photos already brought to the working size ([`crate::image::shrink::decode_within`]),
/// in pixels of each full photo.
pub fn detect_shrunk(detector: &Mtcnn, photos: &[&Shrunk]) -> Result<Vec<Vec<Face>>> {
    let images: Vec<&RgbImage> = photos.iter().map(|p| &p.image).collect();
    let found = detector.detect_batch(&images)?;
    Ok(found.into_iter().zip(photos).map(|(faces, p)| faces.iter().map(|f| to_photo(f, p.scale())).collect()).collect())
}

/// A face found in a shrunk image, in pixels of the photo: scaled by the photo's pixels per
/// working pixel across (`sx`) and down (`sy`).
fn to_photo(face: &Face, (sx, sy): (f32, f32)) -> Face {
    let [x1, y1, x2, y2] = face.bbox;
    Face { bbox: [x1 * sx, y1 * sy, x2 * sx, y2 * sy], score: face.score, landmarks: face.landmarks.map(|[x, y]| [x * sx, y * sy]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faces_go_back_to_the_photos_pixels() {
        let face = Face { bbox: [10.0, 20.0, 30.0, 50.0], score: 0.9, landmarks: [[12.0, 25.0]; 5] };
        let back = to_photo(&face, (4.0, 2.0));
        assert_eq!(back.bbox, [40.0, 40.0, 120.0, 100.0]);
        assert_eq!(back.landmarks[0], [48.0, 50.0]);
        assert_eq!(back.score, 0.9);
    }
}
