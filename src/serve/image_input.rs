//! From the bytes of an upload to the classifier's inputs: format and size checked from the
//! header before any pixel is decoded, decoded upright (`image::decode`, the code that reads
//! files for training and `predict`), the faces located, and each face resized once per input
//! pipeline of the ensemble.
//!
//! Where the faces are is one step of its own ([`FaceLocator`]): every image as one face, the
//! whole image (`whole_image: true` in the answer), or the faces MTCNN finds (a photo without a
//! face falls back to the whole image, flagged). Each face is then framed for each model as its
//! training framed faces ([`face_views`], `data::framing`).
use crate::data::framing::{face_inputs, FramedInput, WholeInputs};
use crate::image::decode::{check_dimensions, decode_inputs_bytes, decode_upright, peek_header, Preprocess, RgbImage};
use crate::faces::bounded::detect_photo;
use crate::faces::mtcnn::{Mtcnn, TooManyCandidates};
use image::ImageFormat;
use std::sync::{Arc, Mutex};

/// Why an upload is not an image the service can classify.
#[derive(Debug, PartialEq)]
pub enum InputError {
    /// Not a JPEG or PNG at all (415).
    NotAnImage(String),
    /// More pixels than `--max-pixels`, seen in the header (413).
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// Larger than any image masklab reads (`image::decode::check_dimensions`), seen in the header (413).
    TooLarge(String),
    /// More face candidates than the detector examines (`faces::mtcnn::TooManyCandidates`, 413).
    TooComplex(String),
    /// A JPEG or PNG that cannot be decoded (422).
    Undecodable(String),
    /// The face detector failed (500).
    Detection(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::NotAnImage(what) => write!(f, "not a JPEG or PNG image ({what})"),
            InputError::TooManyPixels { width, height, max } => {
                write!(f, "image of {width}x{height} = {} pixels is larger than the limit of {max} pixels", *width as u64 * *height as u64)
            }
            InputError::TooLarge(msg) | InputError::TooComplex(msg) | InputError::Undecodable(msg) => write!(f, "{msg}"),
            InputError::Detection(msg) => write!(f, "face detection: {msg}"),
        }
    }
}

/// What the bytes look like, for the error message of a non-image.
fn describe(bytes: &[u8]) -> String {
    match image::guess_format(bytes) {
        Ok(f) => format!("{f:?} is not read; send JPEG or PNG"),
        Err(_) if bytes.is_empty() => "the body is empty".into(),
        Err(_) if bytes.iter().take(512).all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) => "the body is text".into(),
        Err(_) => format!("unknown format starting with {}", bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")),
    }
}

/// Decodes an upload: JPEG or PNG, at most `max_pixels` pixels, EXIF orientation applied.
pub fn decode_upload(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, InputError> {
    check_upload(bytes, max_pixels)?;
    decode_upright(bytes).map_err(InputError::Undecodable)
}

/// An upload classified whole (no face detector): its upright size and the model input of each
/// pipeline, made as `predict` makes them from a file (a JPEG decoded at the DCT scale each input
/// needs, without the full-size pixels). Checked as [`decode_upload`] checks.
pub fn decode_upload_inputs(bytes: &[u8], max_pixels: u64, pipelines: &[Preprocess]) -> Result<(u32, u32, Vec<RgbImage>), InputError> {
    check_upload(bytes, max_pixels)?;
    decode_inputs_bytes(bytes, pipelines).map_err(InputError::Undecodable)
}

/// Format and size from the header, before any pixel is decoded.
fn check_upload(bytes: &[u8], max_pixels: u64) -> Result<(), InputError> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg | ImageFormat::Png) => {}
        _ => return Err(InputError::NotAnImage(describe(bytes))),
    }
    let (_, width, height) = peek_header(bytes).map_err(InputError::Undecodable)?;
    if width as u64 * height as u64 > max_pixels {
        return Err(InputError::TooManyPixels { width, height, max: max_pixels });
    }
    check_dimensions(width as u64, height as u64).map_err(InputError::TooLarge)
}

/// A face to classify: its box `[x1, y1, x2, y2]` in pixels of the upright image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaceRegion {
    pub bbox: [f32; 4],
    /// No detector placed this box: it is the whole image.
    pub whole_image: bool,
    /// The detector's score and five landmarks (detected faces only).
    pub score: Option<f32>,
    pub landmarks: Option<[[f32; 2]; 5]>,
}

impl FaceRegion {
    pub fn whole(image: &RgbImage) -> FaceRegion {
        FaceRegion::whole_of(image.width, image.height)
    }

    /// The whole of a `width` x `height` image.
    pub fn whole_of(width: u32, height: u32) -> FaceRegion {
        FaceRegion { bbox: [0.0, 0.0, width as f32, height as f32], whole_image: true, score: None, landmarks: None }
    }
}

/// Where the faces of an image are.
#[derive(Clone, Default)]
pub enum FaceLocator {
    /// Every image is one face: the whole image, as the models were trained (centred portraits).
    #[default]
    WholeImage,
    /// The faces MTCNN finds; no face: the whole image. One detector, taken in turn by the
    /// decoding threads, working on each photo at a bounded size (`faces::bounded`), so that no
    /// upload holds it for longer than a photo of that size.
    Mtcnn { detector: Arc<Mutex<Mtcnn>> },
}

impl std::fmt::Debug for FaceLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaceLocator::WholeImage => write!(f, "WholeImage"),
            FaceLocator::Mtcnn { .. } => write!(f, "Mtcnn"),
        }
    }
}

impl FaceLocator {
    pub fn locate(&self, image: &RgbImage) -> Result<Vec<FaceRegion>, InputError> {
        match self {
            FaceLocator::WholeImage => Ok(vec![FaceRegion::whole(image)]),
            FaceLocator::Mtcnn { detector } => {
                let faces = {
                    let detector = detector.lock().map_err(|_| InputError::Detection("the face detector failed earlier".into()))?;
                    detect_photo(&detector, image).map_err(|e| match e.downcast_ref::<TooManyCandidates>() {
                        Some(t) => InputError::TooComplex(t.to_string()),
                        None => InputError::Detection(format!("{e:#}")),
                    })?
                };
                if faces.is_empty() {
                    return Ok(vec![FaceRegion::whole(image)]);
                }
                Ok(faces.iter().map(|f| FaceRegion { bbox: f.bbox, whole_image: false, score: Some(f.score), landmarks: Some(f.landmarks) }).collect())
            }
        }
    }
}

/// A face's model inputs, one per pipeline; `faces`: how many faces the photo holds. The whole
/// image (and a face framed as the training photos were) is exactly `predict`'s input for the
/// upload's bytes as a file (`whole`); a detected face is
/// framed as each pipeline's training framed faces (a face crop's square, or the region that
/// places the face as the training photos placed theirs; see `data::framing`).
pub fn face_views(image: &RgbImage, face: &FaceRegion, faces: usize, pipelines: &[FramedInput], whole: &WholeInputs) -> Result<Vec<RgbImage>, String> {
    face_inputs(image, (!face.whole_image).then_some(&face.bbox), faces, pipelines, whole)
}

/// The pixels inside `bbox` (rounded outwards, clipped to the image).
pub fn crop(image: &RgbImage, bbox: &[f32; 4]) -> Result<RgbImage, String> {
    let clip = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
    let (x1, y1) = (clip(bbox[0].floor(), image.width), clip(bbox[1].floor(), image.height));
    let (x2, y2) = (clip(bbox[2].ceil(), image.width), clip(bbox[3].ceil(), image.height));
    if x2 <= x1 || y2 <= y1 {
        return Err(format!("empty face box {bbox:?} in a {}x{} image", image.width, image.height));
    }
    let (w, h) = (x2 - x1, y2 - y1);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in y1..y2 {
        let row = ((y * image.width + x1) * 3) as usize;
        data.extend_from_slice(&image.data[row..row + (w * 3) as usize]);
    }
    Ok(RgbImage { width: w, height: h, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::framing::Framing;
    use crate::image::decode::{decode_bytes, resize_region, Crop};

    fn png(img: &image::RgbImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
        bytes
    }

    #[test]
    fn uploads_are_sorted_into_not_an_image_too_large_and_undecodable() {
        let img = image::RgbImage::from_fn(30, 20, |x, y| image::Rgb([x as u8 * 8, y as u8 * 12, 7]));
        let bytes = png(&img);
        let ok = decode_upload(&bytes, 600).unwrap();
        assert_eq!((ok.width, ok.height), (30, 20));
        assert_eq!(decode_upload(&bytes, 599).unwrap_err(), InputError::TooManyPixels { width: 30, height: 20, max: 599 });
        assert!(matches!(decode_upload(b"{\"json\": true}", 600), Err(InputError::NotAnImage(m)) if m.contains("text")));
        assert!(matches!(decode_upload(b"GIF89a\x01\x00\x01\x00", 600), Err(InputError::NotAnImage(m)) if m.contains("Gif")));
        assert!(matches!(decode_upload(&bytes[..40], 600), Err(InputError::Undecodable(_))));
        let prep = Preprocess { crop: crate::image::decode::Crop::None, width: 8, height: 8 };
        assert_eq!(decode_upload_inputs(&bytes, 599, &[prep]).unwrap_err(), InputError::TooManyPixels { width: 30, height: 20, max: 599 });
        assert!(matches!(decode_upload_inputs(b"{\"json\": true}", 600, &[prep]), Err(InputError::NotAnImage(_))));
        assert!(matches!(decode_upload_inputs(&bytes[..40], 600, &[prep]), Err(InputError::Undecodable(_))));
    }

    #[test]
    fn whole_image_views_are_what_predict_reads_and_crops_cut_the_box() {
        let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 99]));
        let bytes = png(&img);
        let prep = Preprocess { crop: Crop::Fraction(0.9), width: 16, height: 16 };
        // A face-crop run's pipeline, margin 0.2: a 10-px box makes a 14-px square.
        let pipeline = FramedInput { prep, framing: Framing::FaceCrop { margin: 0.2 } };
        let upright = decode_upload(&bytes, 10_000).unwrap();
        let faces = FaceLocator::WholeImage.locate(&upright).unwrap();
        assert_eq!(faces, vec![FaceRegion { bbox: [0.0, 0.0, 40.0, 30.0], whole_image: true, score: None, landmarks: None }]);
        let views = face_views(&upright, &faces[0], 1, &[pipeline], &WholeInputs::new(&bytes, &[pipeline])).unwrap();
        assert_eq!(views[0], decode_bytes(&bytes, &prep).unwrap(), "the file path and the upload path agree");
        let (width, height, inputs) = decode_upload_inputs(&bytes, 10_000, &[prep]).unwrap();
        assert_eq!((width, height, &inputs[0]), (40, 30, &views[0]), "decoded straight to the inputs, the same pixels");
        assert_eq!(FaceRegion::whole_of(width, height), faces[0]);

        let cut = crop(&upright, &[10.2, 5.0, 19.5, 9.0]).unwrap();
        assert_eq!((cut.width, cut.height), (10, 4));
        assert_eq!(&cut.data[..3], &[60, 40, 99], "starts at pixel (10, 5)");
        assert!(crop(&upright, &[50.0, 0.0, 60.0, 10.0]).is_err());

        // A detected face is classified from its square region, as face-cropped training reads it.
        let face = FaceRegion { bbox: [10.0, 5.0, 20.0, 15.0], whole_image: false, score: Some(0.99), landmarks: None };
        let views = face_views(&upright, &face, 1, &[pipeline], &WholeInputs::new(&bytes, &[pipeline])).unwrap();
        assert_eq!(views[0], resize_region(&upright, Some([8.0, 3.0, 22.0, 17.0]), &prep).unwrap());
    }
}
