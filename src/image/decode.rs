//! Decoding: JPEG/PNG file -> u8 RGB, upright, optional centre crop, resize to the model's input size.
//! Format is detected from the bytes, not the extension (the competition has mislabelled files).
//!
//! Every image masklab reads goes through one decoder per format: the EXIF orientation is applied
//! (a phone photo stored sideways with orientation 6 is read standing up), and a damaged file is
//! an error: cut short ([`super::check`]), corrupt JPEG data (any libjpeg-turbo warning, or
//! zune-jpeg in strict mode for CMYK), bad PNG CRCs or zlib data, or a header claiming more than
//! [`MAX_SIDE`] / [`MAX_PIXELS`].
//!
//! A JPEG is decoded at the size it is needed: when the region a model input is cut from keeps at
//! least the input's pixels at 1/2, 1/4 or 1/8 of the photo's size, libjpeg-turbo decodes it
//! straight at that scale (an inverse DCT of 4x4, 2x2 or 1x1 per 8x8 block, no full-size pixels),
//! then the region is cropped and resized as at full size ([`decode_region_bytes`]).
use crate::util::data_error::DataError;
use super::check::{jpeg_is_whole, png_is_whole};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A centred crop taken before resizing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Crop {
    None,
    /// `W` x `H` pixels (clamped to the image), e.g. the team's CenterCrop(380) on 384x512 photos.
    Pixels { width: u32, height: u32 },
    /// A square whose side is this fraction of the image's shorter side (380/384 = 0.9896).
    Fraction(f32),
}

impl Crop {
    /// The crop box `(left, top, width, height)` inside a `w` x `h` image.
    pub fn window(&self, w: u32, h: u32) -> (u32, u32, u32, u32) {
        let (cw, ch) = match *self {
            Crop::None => (w, h),
            Crop::Pixels { width, height } => (width.min(w), height.min(h)),
            Crop::Fraction(f) => {
                let side = ((w.min(h) as f32 * f).round() as u32).clamp(1, w.min(h));
                (side, side)
            }
        };
        ((w - cw) / 2, (h - ch) / 2, cw, ch)
    }
}

impl FromStr for Crop {
    type Err = String;
    /// `none`, `380` (a square), `380x400`, or a fraction in (0, 1] such as `0.99`.
    fn from_str(s: &str) -> Result<Crop, String> {
        let s = s.trim().to_ascii_lowercase();
        let bad = || format!("crop must be `none`, pixels (`380` or `380x400`) or a fraction in (0,1] such as `0.99`, got `{s}`");
        if s.is_empty() || s == "none" {
            return Ok(Crop::None);
        }
        if let Some((w, h)) = s.split_once('x') {
            let (w, h) = (w.parse::<u32>().map_err(|_| bad())?, h.parse::<u32>().map_err(|_| bad())?);
            if w == 0 || h == 0 {
                return Err(bad());
            }
            return Ok(Crop::Pixels { width: w, height: h });
        }
        if s.contains('.') {
            let f = s.parse::<f32>().map_err(|_| bad())?;
            if !(f > 0.0 && f <= 1.0) {
                return Err(bad());
            }
            return Ok(Crop::Fraction(f));
        }
        let n = s.parse::<u32>().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        Ok(Crop::Pixels { width: n, height: n })
    }
}

/// Reads a crop setting written as text (`"0.99"`, `"380x400"`) or as a TOML number (`0.99`,
/// `380`), into its text form. A float keeps its decimal point, so `1.0` stays a fraction.
pub fn crop_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct CropVisitor;
    impl serde::de::Visitor<'_> for CropVisitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a crop: \"none\", pixels (380 or \"380x400\") or a fraction such as 0.99")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(format!("{v:?}"))
        }
    }
    d.deserialize_any(CropVisitor)
}

impl fmt::Display for Crop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crop::None => write!(f, "none"),
            Crop::Pixels { width, height } if width == height => write!(f, "{width}"),
            Crop::Pixels { width, height } => write!(f, "{width}x{height}"),
            Crop::Fraction(x) => write!(f, "{x}"),
        }
    }
}

/// How a file becomes a model input: centre crop, then resize to `width` x `height`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    pub crop: Crop,
    pub width: u32,
    pub height: u32,
}

/// A decoded image: `height * width * 3` bytes, row-major RGB.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// The widest or tallest image decoded (a photo from any phone fits; a forged header does not).
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels an image may have (100 MP: 300 MB as RGB).
pub const MAX_PIXELS: u64 = 100_000_000;

/// The reductions libjpeg-turbo decodes at, largest first: 1/8, 1/4, 1/2 of each side.
pub(super) const DCT_REDUCTIONS: [u32; 3] = [8, 4, 2];

/// A progressive JPEG with more scans than this is refused: each scan passes over the whole
/// image again, so a small file of thousands of scans would take minutes to decode.
const MAX_JPEG_SCANS: u32 = 500;

/// An image decoded upright, maybe shrunk in the DCT.
pub(super) struct Decoded {
    /// Upright pixels: `full_width / reduction` x `full_height / reduction`, each side rounded up.
    pub(super) image: RgbImage,
    /// 1 (full size), 2, 4 or 8.
    pub(super) reduction: u32,
    /// The upright size of the image as stored.
    pub(super) full_width: u32,
    pub(super) full_height: u32,
}

/// Decodes a whole JPEG or PNG into RGB as a person sees it: the EXIF orientation applied.
/// A truncated or corrupt file is an error.
pub fn decode_upright(bytes: &[u8]) -> Result<RgbImage, String> {
    Ok(decode_reduced(bytes, |_, _| 1)?.image)
}

/// Decodes a JPEG or PNG upright, asking `reduction_for(upright width, upright height)` (read
/// from the header, before any pixel is decoded) how much smaller to decode it: 1, 2, 4 or 8.
/// Only JPEGs other than CMYK shrink in the DCT; the rest are decoded at full size, which
/// `Decoded::reduction` says.
pub(super) fn decode_reduced(bytes: &[u8], reduction_for: impl FnOnce(u32, u32) -> u32) -> Result<Decoded, String> {
    let format = image::guess_format(bytes).map_err(|_| "not a JPEG or PNG image".to_string())?;
    let (mut img, orientation, reduction, (stored_width, stored_height)) = match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, reduction_for)?,
        ImageFormat::Png => {
            let (img, orientation) = decode_png(bytes)?;
            let size = (img.width(), img.height());
            (img, orientation, 1, size)
        }
        other => return Err(format!("unsupported image format {other:?} (JPEG and PNG are read)")),
    };
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    let (full_width, full_height) = upright_size(stored_width, stored_height, orientation);
    Ok(Decoded { image: RgbImage { width, height, data: rgb.into_raw() }, reduction, full_width, full_height })
}

/// Width and height once `orientation` is applied (a quarter turn swaps them).
fn upright_size(width: u32, height: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    }
}

/// The DCT reduction for a model input cut from a `window_width` x `window_height` region of a
/// photo: the largest of 1/8, 1/4, 1/2 that leaves the region at least the input's pixels on
/// both sides (so the resize still only shrinks), or 1 (full size) when none does.
fn dct_reduction(window_width: f64, window_height: f64, target_width: u32, target_height: u32) -> u32 {
    DCT_REDUCTIONS
        .into_iter()
        .find(|&r| window_width / r as f64 >= target_width as f64 && window_height / r as f64 >= target_height as f64)
        .unwrap_or(1)
}

/// The one image-size policy of every command (train, eval, predict, faces, serve, eda): checked
/// from the header, before any pixel is decoded, with this one message (the caller names the file).
pub fn check_dimensions(w: u64, h: u64) -> Result<(), String> {
    if w == 0 || h == 0 || w > MAX_SIDE as u64 || h > MAX_SIDE as u64 || w * h > MAX_PIXELS {
        return Err(format!("image of {w}x{h} pixels refused (at most {MAX_SIDE} a side and {MAX_PIXELS} pixels)"));
    }
    Ok(())
}

/// What [`decode_jpeg`] gives.
type JpegPixels = (DynamicImage, Orientation, u32, (u32, u32));

/// A JPEG's pixels (stored orientation), its EXIF orientation, the reduction it was decoded at
/// and its stored size. The headers are read first (zune-jpeg: size limits, EXIF, colour space), then
/// libjpeg-turbo decodes the pixels at the reduction asked for; CMYK and YCCK files, which
/// libjpeg-turbo does not turn into RGB, go through zune-jpeg in strict mode at full size.
fn decode_jpeg(bytes: &[u8], reduction_for: impl FnOnce(u32, u32) -> u32) -> Result<JpegPixels, String> {
    use zune_core::colorspace::ColorSpace;
    jpeg_is_whole(bytes)?;
    let mut decoder = zune_decoder(bytes);
    decoder.decode_headers().map_err(|e| format!("corrupt JPEG: {e}"))?;
    let (w, h) = decoder.dimensions().ok_or("corrupt JPEG: no dimensions")?;
    check_dimensions(w as u64, h as u64)?;
    let (w, h) = (w as u32, h as u32);
    let orientation = decoder.exif().and_then(|exif| Orientation::from_exif_chunk(exif)).unwrap_or(Orientation::NoTransforms);
    if matches!(decoder.input_colorspace(), Some(ColorSpace::CMYK | ColorSpace::YCCK)) {
        decoder.set_options(decoder.options().jpeg_set_out_colorspace(ColorSpace::RGB));
        let pixels = decoder.decode().map_err(|e| format!("corrupt JPEG: {e}"))?;
        let img = image::RgbImage::from_raw(w, h, pixels).ok_or("corrupt JPEG: fewer pixels than its size")?;
        return Ok((DynamicImage::ImageRgb8(img), orientation, 1, (w, h)));
    }
    let (upright_w, upright_h) = upright_size(w, h, orientation);
    let reduction = reduction_for(upright_w, upright_h);
    let img = decode_jpeg_pixels(bytes, reduction).map_err(|e| format!("corrupt JPEG: {e}"))?;
    Ok((DynamicImage::ImageRgb8(img), orientation, reduction, (w, h)))
}

/// zune-jpeg in strict mode (the image crate runs it leniently, which paints the rest of a cut
/// or corrupt file grey without an error). Its own size limits are JPEG's (65535 a side), so that
/// [`check_dimensions`] refuses a large image with masklab's message, not zune-jpeg's.
fn zune_decoder(bytes: &[u8]) -> zune_jpeg::JpegDecoder<zune_core::bytestream::ZCursor<&[u8]>> {
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(u16::MAX as usize)
        .set_max_height(u16::MAX as usize);
    zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(bytes), options)
}

/// libjpeg-turbo's RGB pixels of a greyscale, YCbCr or RGB JPEG, each side shrunk by
/// `1/reduction` (1, 2, 4 or 8; rounded up). Any warning (corrupt data, a premature end) is an
/// error: TurboJPEG reports it after decoding what it could.
fn decode_jpeg_pixels(bytes: &[u8], reduction: u32) -> Result<image::RgbImage, turbojpeg::Error> {
    let mut decompressor = turbojpeg::Decompressor::new()?;
    decompressor.set_scan_limit(MAX_JPEG_SCANS)?;
    let factor = turbojpeg::ScalingFactor::new(1, reduction as usize);
    decompressor.set_scaling_factor(factor)?;
    let header = decompressor.read_header(bytes)?;
    let (width, height) = (factor.scale(header.width), factor.scale(header.height));
    let mut pixels = vec![0u8; width * height * 3];
    let output = turbojpeg::Image { pixels: pixels.as_mut_slice(), width, pitch: width * 3, height, format: turbojpeg::PixelFormat::RGB };
    decompressor.decompress(bytes, output)?;
    // The sizes came from the header libjpeg-turbo read, within MAX_SIDE: they fit in u32.
    Ok(image::RgbImage::from_raw(width as u32, height as u32, pixels).expect("a buffer of width x height x 3 bytes"))
}

fn decode_png(bytes: &[u8]) -> Result<(DynamicImage, Orientation), String> {
    png_is_whole(bytes)?;
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), ImageFormat::Png);
    // No side limits here: check_dimensions refuses a large image, with its own message, before
    // anything is decoded. The allocation limit stays: 16-bit RGBA at the largest size allowed,
    // and the decoder's own buffers.
    let mut limits = image::Limits::no_limits();
    limits.max_alloc = Some(MAX_PIXELS * 8 + (64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| format!("corrupt PNG: {e}"))?;
    let (w, h) = decoder.dimensions();
    check_dimensions(w as u64, h as u64)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(|e| format!("corrupt PNG: {e}"))?;
    Ok((img, orientation))
}

/// Decodes a JPEG or PNG (upright) and crops and resizes it as `prep` says.
pub fn decode_bytes(bytes: &[u8], prep: &Preprocess) -> Result<RgbImage, String> {
    decode_region_bytes(bytes, None, prep)
}

/// Decodes a JPEG or PNG (upright) and crops `region` (see [`resize_region`]; none: `prep`'s
/// centre crop) resized to `prep`'s size. A JPEG whose region keeps at least the input's pixels
/// at 1/2, 1/4 or 1/8 scale is decoded at the smallest such scale, the region scaled with it;
/// otherwise the image is decoded whole and the result is [`resize_region`]'s on it.
pub fn decode_region_bytes(bytes: &[u8], region: Option<[f32; 4]>, prep: &Preprocess) -> Result<RgbImage, String> {
    let decoded = decode_reduced(bytes, |width, height| reduction_for_input(width, height, region, prep))?;
    input_of(&decoded, region, prep)
}

/// The DCT reduction a model input of `prep` cut from `region` (none: `prep`'s centre crop) of a
/// `width` x `height` upright photo allows.
fn reduction_for_input(width: u32, height: u32, region: Option<[f32; 4]>, prep: &Preprocess) -> u32 {
    let (_, _, crop_width, crop_height) = crop_box(width, height, region, prep);
    dct_reduction(crop_width, crop_height, prep.width, prep.height)
}

/// The model input of `prep` cut from `region` (in the full photo's pixels) of a decoded photo:
/// the region scaled with the photo's reduction, cropped and resized.
fn input_of(decoded: &Decoded, region: Option<[f32; 4]>, prep: &Preprocess) -> Result<RgbImage, String> {
    if decoded.reduction == 1 {
        return resize_region(&decoded.image, region, prep);
    }
    // The box in the reduced image: pixel i there stands for pixels i*r .. (i+1)*r of the photo.
    let (left, top, width, height) = crop_box(decoded.full_width, decoded.full_height, region, prep);
    let r = decoded.reduction as f64;
    let scaled = [left / r, top / r, (left + width) / r, (top + height) / r].map(|v| v as f32);
    resize_region(&decoded.image, Some(scaled), prep)
}

/// A whole photo's model inputs for several input pipelines (an ensemble's), each equal to
/// [`decode_bytes`]`(bytes, prep)`, and the photo's upright size. The photo is decoded once per
/// DCT reduction the pipelines need (once in all for one pipeline, or a PNG), not once per pipeline.
pub fn decode_inputs_bytes(bytes: &[u8], preps: &[Preprocess]) -> Result<(u32, u32, Vec<RgbImage>), String> {
    let mut wanted = Vec::with_capacity(preps.len());
    let first = decode_reduced(bytes, |width, height| {
        wanted = preps.iter().map(|p| reduction_for_input(width, height, None, p)).collect();
        wanted.iter().copied().min().unwrap_or(1)
    })?;
    if wanted.len() != preps.len() {
        // Not asked: a format that does not shrink in the DCT (PNG, CMYK JPEG) came back whole,
        // and every input is made from it, as decode_bytes makes it.
        wanted = vec![1; preps.len()];
    }
    let mut decodes = vec![first];
    let mut inputs = Vec::with_capacity(preps.len());
    for (prep, &reduction) in preps.iter().zip(&wanted) {
        let index = match decodes.iter().position(|d| d.reduction == reduction) {
            Some(i) => i,
            None => {
                decodes.push(decode_reduced(bytes, |_, _| reduction)?);
                decodes.len() - 1
            }
        };
        inputs.push(input_of(&decodes[index], None, prep)?);
    }
    Ok((decodes[0].full_width, decodes[0].full_height, inputs))
}

/// The format and the stored width and height of an image in memory, from its header alone (no
/// pixel decoding: what a size limit checks before a decompression bomb is unpacked).
pub fn peek_header(bytes: &[u8]) -> Result<(ImageFormat, u32, u32), String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| format!("cannot read image: {e}"))?;
    let format = reader.format().ok_or("not an image format masklab reads (JPEG, PNG)")?;
    let (w, h) = reader.into_dimensions().map_err(|e| format!("cannot decode image header: {e}"))?;
    Ok((format, w, h))
}

/// Crops and resizes an RGB image (bilinear, antialiased when shrinking, as torchvision's Resize).
pub fn resize_rgb(src: &RgbImage, prep: &Preprocess) -> Result<RgbImage, String> {
    resize_region(src, None, prep)
}

/// Crops `region` (`[x1, y1, x2, y2]` in pixels, sub-pixel, clipped to the image: a face box) and
/// resizes it to `prep`'s size; without a region, `prep`'s centre crop.
pub fn resize_region(src: &RgbImage, region: Option<[f32; 4]>, prep: &Preprocess) -> Result<RgbImage, String> {
    let (left, top, cw, ch) = crop_box(src.width, src.height, region, prep);
    if region.is_none() && (cw, ch) == (prep.width as f64, prep.height as f64) && (cw, ch) == (src.width as f64, src.height as f64) {
        return Ok(src.clone());
    }
    let view = ImageRef::new(src.width, src.height, &src.data, PixelType::U8x3).map_err(|e| e.to_string())?;
    let mut dst = Image::new(prep.width, prep.height, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left, top, cw, ch);
    Resizer::new().resize(&view, &mut dst, &options).map_err(|e| format!("cannot resize: {e}"))?;
    Ok(RgbImage { width: prep.width, height: prep.height, data: dst.into_vec() })
}

/// The box `(left, top, width, height)`, in pixels of a `width` x `height` image, that
/// [`resize_region`] resizes: `region` clipped to the image (at least one pixel), or `prep`'s
/// centre crop.
fn crop_box(width: u32, height: u32, region: Option<[f32; 4]>, prep: &Preprocess) -> (f64, f64, f64, f64) {
    match region {
        Some([x1, y1, x2, y2]) => {
            let (w, h) = (width as f64, height as f64);
            let (x1, y1) = ((x1 as f64).clamp(0.0, w - 1.0), (y1 as f64).clamp(0.0, h - 1.0));
            let (x2, y2) = ((x2 as f64).clamp(x1 + 1.0, w), (y2 as f64).clamp(y1 + 1.0, h));
            (x1, y1, x2 - x1, y2 - y1)
        }
        None => {
            let (l, t, w, h) = prep.crop.window(width, height);
            (l as f64, t as f64, w as f64, h as f64)
        }
    }
}

pub fn decode_file(path: &Path, prep: &Preprocess) -> Result<RgbImage, DataError> {
    decode_file_region(path, None, prep)
}

/// A file cropped to `region` (see [`resize_region`]) and resized. A panic while decoding it is
/// its error (`util::panic`): the pools that call this count it as the image it hit.
pub fn decode_file_region(path: &Path, region: Option<[f32; 4]>, prep: &Preprocess) -> Result<RgbImage, DataError> {
    let bytes = read_bytes(path)?;
    crate::util::panic::catch(|| decode_region_bytes(&bytes, region, prep)).and_then(|r| r).map_err(|msg| DataError::file(path, msg))
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::file(path, format!("cannot read image: {e}")))
}

/// A file decoded whole and upright, at its own size.
pub fn read_upright(path: &Path) -> Result<RgbImage, DataError> {
    read_upright_keeping_bytes(path).map(|(_, image)| image)
}

/// [`read_upright`], with the file's bytes (to make other inputs from them without reading again).
pub fn read_upright_keeping_bytes(path: &Path) -> Result<(Vec<u8>, RgbImage), DataError> {
    let bytes = read_bytes(path)?;
    let image = crate::util::panic::catch(|| decode_upright(&bytes)).and_then(|r| r).map_err(|msg| DataError::file(path, msg))?;
    Ok((bytes, image))
}

/// Decodes many files on rayon's threads; results keep the order of `paths`.
pub fn decode_many(paths: &[PathBuf], prep: &Preprocess) -> Vec<Result<RgbImage, DataError>> {
    paths.par_iter().map(|p| decode_file(p, prep)).collect()
}

/// Width and height as a person sees the image (after its EXIF orientation). The whole file is
/// decoded (a JPEG at 1/8 scale, which still reads all its data): a header alone says nothing of
/// a file cut short or corrupt further on.
pub fn image_size(path: &Path) -> Result<(u32, u32), DataError> {
    let decoded = decode_reduced(&read_bytes(path)?, |_, _| 8).map_err(|msg| DataError::file(path, msg))?;
    Ok((decoded.full_width, decoded.full_height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn gradient(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128]))
    }

    #[test]
    fn a_region_crop_takes_that_part_of_the_image() {
        // Left half red, right half blue; the region is the right half's middle.
        let src = RgbImage {
            width: 40,
            height: 20,
            data: (0..20 * 40).flat_map(|i| if i % 40 < 20 { [255, 0, 0] } else { [0, 0, 255] }).collect(),
        };
        let prep = Preprocess { crop: Crop::Fraction(0.5), width: 8, height: 8 };
        let out = resize_region(&src, Some([22.0, 2.0, 38.0, 18.0]), &prep).unwrap();
        assert_eq!((out.width, out.height), (8, 8));
        assert!(out.data.chunks(3).all(|p| p == [0, 0, 255]), "{:?}", &out.data[..12]);
        // A region reaching outside is clipped; without one the centre crop straddles both halves.
        let out = resize_region(&src, Some([-5.0, -5.0, 10.0, 10.0]), &prep).unwrap();
        assert!(out.data.chunks(3).all(|p| p == [255, 0, 0]));
        let centre = resize_region(&src, None, &prep).unwrap();
        assert_eq!(&centre.data[..3], &[255, 0, 0]);
        assert_eq!(&centre.data[centre.data.len() - 3..], &[0, 0, 255]);
    }

    #[test]
    fn crop_parses_and_windows() {
        assert_eq!("none".parse::<Crop>().unwrap(), Crop::None);
        assert_eq!("380".parse::<Crop>().unwrap(), Crop::Pixels { width: 380, height: 380 });
        assert_eq!("30x40".parse::<Crop>().unwrap(), Crop::Pixels { width: 30, height: 40 });
        assert_eq!("0.5".parse::<Crop>().unwrap(), Crop::Fraction(0.5));
        assert!("1.5".parse::<Crop>().is_err());
        assert!("abc".parse::<Crop>().is_err());
        assert_eq!(Crop::Pixels { width: 380, height: 380 }.window(384, 512), (2, 66, 380, 380));
        assert_eq!(Crop::Fraction(0.5).window(40, 60), (10, 20, 20, 20));
        assert_eq!(Crop::Pixels { width: 1000, height: 1000 }.window(40, 60), (0, 0, 40, 60));
    }

    #[test]
    fn decodes_jpeg_and_png_with_crop_and_resize() {
        let dir = tempfile::tempdir().unwrap();
        let img = gradient(48, 64);
        let png = dir.path().join("a.png");
        img.save(&png).unwrap();
        let jpg = dir.path().join("b.jpeg");
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
            .write_image(img.as_raw(), 48, 64, image::ExtendedColorType::Rgb8)
            .unwrap();
        std::fs::write(&jpg, &bytes).unwrap();
        // A JPEG named .png decodes too: the format comes from the bytes.
        let lying = dir.path().join("c.png");
        std::fs::write(&lying, &bytes).unwrap();

        let prep = Preprocess { crop: Crop::Fraction(0.5), width: 16, height: 16 };
        let out = decode_many(&[png.clone(), jpg, lying], &prep);
        for r in &out {
            let r = r.as_ref().unwrap();
            assert_eq!((r.width, r.height, r.data.len()), (16, 16, 16 * 16 * 3));
        }
        // Centre crop of a 48x64 gradient: a 24x24 square at (12,20); red spans 12..36 of 48.
        let png_out = out[0].as_ref().unwrap();
        let red_left = png_out.data[(8 * 16) * 3] as i32;
        let red_right = png_out.data[(8 * 16 + 15) * 3] as i32;
        assert!((red_left - 12 * 255 / 48).abs() <= 8, "{red_left}");
        assert!((red_right - 35 * 255 / 48).abs() <= 8, "{red_right}");
        // JPEG is lossy but close to the PNG.
        let jpg_out = out[1].as_ref().unwrap();
        let diff: i64 = png_out.data.iter().zip(&jpg_out.data).map(|(a, b)| (*a as i64 - *b as i64).abs()).sum();
        assert!(diff / (png_out.data.len() as i64) < 6);
        assert_eq!(image_size(&png).unwrap(), (48, 64));
    }

    fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    #[test]
    fn a_cut_file_is_an_error_naming_it_at_every_fraction() {
        let dir = tempfile::tempdir().unwrap();
        let prep = Preprocess { crop: Crop::None, width: 16, height: 16 };
        // A photo-like gradient large enough for many JPEG blocks and PNG rows.
        let img = gradient(192, 256);
        for (format, ext) in [(image::ImageFormat::Jpeg, "jpg"), (image::ImageFormat::Png, "png")] {
            let bytes = encode(&img, format);
            let whole = dir.path().join(format!("whole.{ext}"));
            std::fs::write(&whole, &bytes).unwrap();
            decode_file(&whole, &prep).unwrap();
            for percent in [30, 50, 70, 90, 95, 99] {
                let path = dir.path().join(format!("cut{percent}.{ext}"));
                std::fs::write(&path, &bytes[..bytes.len() * percent / 100]).unwrap();
                let err = decode_file(&path, &prep).expect_err(&format!("{ext} cut at {percent}% decoded")).to_string();
                assert!(err.contains(&format!("cut{percent}.{ext}")) && err.contains("truncated"), "{err}");
                // EDA's sizes and the report's thumbnails read the same way.
                assert!(image_size(&path).is_err(), "{ext} {percent}%");
                assert!(read_upright(&path).is_err());
            }
            // All but the last byte.
            let path = dir.path().join(format!("last.{ext}"));
            std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
            assert!(decode_file(&path, &prep).is_err(), "{ext} without its last byte");
        }
    }

    #[test]
    fn corrupt_jpeg_data_is_an_error() {
        let bytes = encode(&gradient(192, 256), image::ImageFormat::Jpeg);
        // Overwrite a stretch of the scan data (well after the headers) with marker-like bytes.
        let mut bad = bytes.clone();
        let at = bytes.len() / 2;
        for b in &mut bad[at..at + 64] {
            *b = 0xFF;
        }
        let prep = Preprocess { crop: Crop::None, width: 16, height: 16 };
        assert!(decode_bytes(&bad, &prep).is_err());
    }

    #[test]
    fn a_forged_huge_header_is_refused_before_allocating() {
        // A 1x1 PNG whose IHDR claims 100000 x 100000 pixels.
        let mut png = encode(&gradient(1, 1), image::ImageFormat::Png);
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let prep = Preprocess { crop: Crop::None, width: 8, height: 8 };
        assert!(decode_bytes(&png, &prep).is_err());
    }

    /// One size policy and one message for JPEG and PNG alike, whichever decoder reads them
    /// (zune-jpeg's own limit text never reaches a user).
    #[test]
    fn an_image_too_wide_is_refused_with_one_message_in_every_format() {
        let wide = image::RgbImage::from_pixel(20_000, 20, image::Rgb([90, 20, 20]));
        let prep = Preprocess { crop: Crop::None, width: 8, height: 8 };
        for format in [image::ImageFormat::Jpeg, image::ImageFormat::Png] {
            let bytes = encode(&wide, format);
            for err in [decode_bytes(&bytes, &prep).unwrap_err(), decode_upright(&bytes).unwrap_err()] {
                assert_eq!(err, "image of 20000x20 pixels refused (at most 16384 a side and 100000000 pixels)", "{format:?}");
            }
        }
    }

    /// A JPEG with an EXIF APP1 segment holding only an Orientation tag (IFD0, tag 0x0112).
    fn jpeg_with_orientation(img: &image::RgbImage, orientation: u16, little_endian: bool) -> Vec<u8> {
        let jpeg = encode(img, image::ImageFormat::Jpeg);
        let u16b = |v: u16| if little_endian { v.to_le_bytes() } else { v.to_be_bytes() };
        let u32b = |v: u32| if little_endian { v.to_le_bytes() } else { v.to_be_bytes() };
        let mut tiff: Vec<u8> = if little_endian { b"II".to_vec() } else { b"MM".to_vec() };
        tiff.extend(u16b(42));
        tiff.extend(u32b(8)); // IFD0 right after the header
        tiff.extend(u16b(1)); // one entry
        tiff.extend(u16b(0x0112)); // Orientation
        tiff.extend(u16b(3)); // SHORT
        tiff.extend(u32b(1)); // one value
        tiff.extend(u16b(orientation));
        tiff.extend([0, 0]); // the value field's padding
        tiff.extend(u32b(0)); // no next IFD
        let mut segment = b"Exif\0\0".to_vec();
        segment.extend(tiff);
        let mut out = jpeg[..2].to_vec(); // SOI
        out.extend([0xFF, 0xE1]);
        out.extend(((segment.len() + 2) as u16).to_be_bytes());
        out.extend(segment);
        out.extend(&jpeg[2..]);
        out
    }

    /// The colour at the centre of each quadrant: top-left, top-right, bottom-left, bottom-right.
    fn quadrants(img: &RgbImage) -> [[u8; 3]; 4] {
        let at = |x: u32, y: u32| {
            let i = ((y * img.width + x) * 3) as usize;
            [img.data[i], img.data[i + 1], img.data[i + 2]]
        };
        let (w, h) = (img.width, img.height);
        [at(w / 4, h / 4), at(3 * w / 4, h / 4), at(w / 4, 3 * h / 4), at(3 * w / 4, 3 * h / 4)]
    }

    fn close(a: [u8; 3], b: [u8; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (*x as i32 - y as i32).abs() < 40)
    }

    #[test]
    fn exif_orientation_puts_pixels_where_a_person_sees_them() {
        const RED: [u8; 3] = [255, 0, 0];
        const GREEN: [u8; 3] = [0, 255, 0];
        const BLUE: [u8; 3] = [0, 0, 255];
        const WHITE: [u8; 3] = [255, 255, 255];
        // Stored 64 wide, 32 high: red | green over blue | white.
        let stored = image::RgbImage::from_fn(64, 32, |x, y| {
            image::Rgb(match (x < 32, y < 16) {
                (true, true) => RED,
                (false, true) => GREEN,
                (true, false) => BLUE,
                (false, false) => WHITE,
            })
        });
        // (orientation, displayed size, displayed quadrants TL, TR, BL, BR). 3: turned 180
        // degrees; 6: turned 90 degrees clockwise to display; 8: 90 degrees counter-clockwise.
        let cases = [
            (1, (64, 32), [RED, GREEN, BLUE, WHITE]),
            (3, (64, 32), [WHITE, BLUE, GREEN, RED]),
            (6, (32, 64), [BLUE, RED, WHITE, GREEN]),
            (8, (32, 64), [GREEN, WHITE, RED, BLUE]),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (orientation, size, expect) in cases {
            for little_endian in [false, true] {
                let bytes = jpeg_with_orientation(&stored, orientation, little_endian);
                let img = decode_upright(&bytes).unwrap();
                assert_eq!((img.width, img.height), size, "orientation {orientation}");
                let got = quadrants(&img);
                for (g, e) in got.iter().zip(expect) {
                    assert!(close(*g, e), "orientation {orientation}: quadrants {got:?}, want {expect:?}");
                }
                // EDA's sizes and the model's input (a square resize keeps the quadrants) agree.
                let path = dir.path().join(format!("o{orientation}.jpg"));
                std::fs::write(&path, &bytes).unwrap();
                assert_eq!(image_size(&path).unwrap(), size);
                let input = decode_file(&path, &Preprocess { crop: Crop::None, width: 16, height: 16 }).unwrap();
                let got = quadrants(&input);
                for (g, e) in got.iter().zip(expect) {
                    assert!(close(*g, e), "resized, orientation {orientation}: {got:?}, want {expect:?}");
                }
            }
        }
    }

    #[test]
    fn the_header_is_read_without_decoding() {
        let bytes = jpeg_with_orientation(&gradient(40, 20), 6, true);
        assert_eq!(peek_header(&bytes).unwrap(), (ImageFormat::Jpeg, 40, 20));
        assert!(peek_header(b"plain text, not an image").is_err());
    }

    #[test]
    fn grey_alpha_and_16_bit_pngs_become_rgb() {
        let encode = |img: DynamicImage| {
            let mut bytes = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
            bytes
        };
        let grey = encode(DynamicImage::ImageLuma8(image::GrayImage::from_pixel(6, 4, image::Luma([90]))));
        let rgba = encode(DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(6, 4, image::Rgba([10, 20, 30, 128]))));
        let deep = encode(DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(6, 4, image::Rgb([65535u16, 0, 32896]))));
        for (bytes, want) in [(grey, [90, 90, 90]), (rgba, [10, 20, 30]), (deep, [255, 0, 128])] {
            let img = decode_upright(&bytes).unwrap();
            assert_eq!((img.width, img.height, img.data.len()), (6, 4, 72));
            assert_eq!(&img.data[..3], &want);
        }
    }

    #[test]
    fn cmyk_jpeg_becomes_its_rgb_colours() {
        let img = gradient(32, 24);
        let mut cmyk = Vec::new();
        for p in img.pixels() {
            let [r, g, b] = p.0.map(|v| v as f32 / 255.0);
            let k = 1.0 - r.max(g).max(b);
            let c = |v: f32| if k >= 1.0 { 0 } else { ((1.0 - v - k) / (1.0 - k) * 255.0).round() as u8 };
            cmyk.extend([c(r), c(g), c(b), (k * 255.0).round() as u8]);
        }
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 100).encode(&cmyk, 32, 24, jpeg_encoder::ColorType::Cmyk).unwrap();
        let out = decode_upright(&bytes).unwrap();
        assert_eq!((out.width, out.height), (32, 24));
        let diff: i64 = out.data.iter().zip(img.as_raw()).map(|(a, b)| (*a as i64 - *b as i64).abs()).sum();
        assert!(diff / (out.data.len() as i64) < 12, "mean difference {}", diff / out.data.len() as i64);
    }

    /// A photo-like 384x512 JPEG: smooth shading, edges and fine texture (noise from a fixed
    /// linear congruential sequence), so that detail lost by a reduced decode would show.
    fn photo_jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut state = 12345u32;
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let noise = (state >> 24) as i32 % 24 - 12;
            let disc = ((x as i32 - 190).pow(2) + (y as i32 - 240).pow(2) < 120 * 120) as i32 * 90;
            let stripes = if (x / 12) % 2 == 0 { 40 } else { 0 };
            let v = |base: i32| (base + noise).clamp(0, 255) as u8;
            image::Rgb([v((x * 200 / width) as i32 + disc / 2), v((y * 200 / height) as i32 + stripes), v(60 + disc)])
        });
        encode(&img, image::ImageFormat::Jpeg)
    }

    fn mean_abs_difference(a: &RgbImage, b: &RgbImage) -> f64 {
        assert_eq!((a.width, a.height), (b.width, b.height));
        a.data.iter().zip(&b.data).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.data.len() as f64
    }

    /// The full-size way: decode the whole photo, then crop and resize.
    fn full_path(bytes: &[u8], region: Option<[f32; 4]>, prep: &Preprocess) -> RgbImage {
        resize_region(&decode_upright(bytes).unwrap(), region, prep).unwrap()
    }

    #[test]
    fn the_dct_reduction_is_the_largest_that_keeps_the_inputs_pixels() {
        // The team's crop of a 384x512 photo: a 380 px square.
        assert_eq!(dct_reduction(380.0, 380.0, 96, 96), 2, "380/4 = 95 < 96");
        assert_eq!(dct_reduction(380.0, 380.0, 95, 95), 4);
        assert_eq!(dct_reduction(380.0, 380.0, 47, 47), 8);
        assert_eq!(dct_reduction(380.0, 380.0, 48, 48), 4, "380/8 = 47.5 < 48");
        assert_eq!(dct_reduction(380.0, 380.0, 190, 190), 2);
        assert_eq!(dct_reduction(380.0, 380.0, 191, 191), 1, "more than half the crop: full size");
        assert_eq!(dct_reduction(380.0, 380.0, 380, 380), 1);
        // Both sides count: the whole photo to 96x128 is a quarter, to 96x129 a half.
        assert_eq!(dct_reduction(384.0, 512.0, 96, 128), 4);
        assert_eq!(dct_reduction(384.0, 512.0, 96, 129), 2);
        assert_eq!(dct_reduction(384.0, 512.0, 97, 128), 2);
    }

    #[test]
    fn jpegs_are_decoded_reduced_exactly_when_the_crop_allows_and_pngs_never() {
        let jpeg = photo_jpeg(384, 512);
        let png = encode(&image::RgbImage::from_pixel(384, 512, image::Rgb([1, 2, 3])), image::ImageFormat::Png);
        let reduction_for = |bytes: &[u8], prep: Preprocess| {
            let d = decode_reduced(bytes, |w, h| {
                let (_, _, cw, ch) = crop_box(w, h, None, &prep);
                dct_reduction(cw, ch, prep.width, prep.height)
            })
            .unwrap();
            assert_eq!((d.full_width, d.full_height), (384, 512));
            let side = |full: u32| full.div_ceil(d.reduction);
            assert_eq!((d.image.width, d.image.height), (side(384), side(512)), "decoded at 1/{}", d.reduction);
            d.reduction
        };
        let square = |crop: Crop, side: u32| Preprocess { crop, width: side, height: side };
        assert_eq!(reduction_for(&jpeg, square(Crop::Fraction(0.9896), 96)), 2);
        assert_eq!(reduction_for(&jpeg, square(Crop::Fraction(0.9896), 128)), 2);
        assert_eq!(reduction_for(&jpeg, square(Crop::Fraction(0.9896), 224)), 1);
        assert_eq!(reduction_for(&jpeg, square(Crop::Pixels { width: 380, height: 380 }, 380)), 1);
        assert_eq!(reduction_for(&jpeg, square(Crop::None, 64)), 4);
        assert_eq!(reduction_for(&jpeg, square(Crop::None, 48)), 8);
        assert_eq!(reduction_for(&jpeg, Preprocess { crop: Crop::None, width: 96, height: 128 }), 4);
        assert_eq!(reduction_for(&png, square(Crop::None, 48)), 1, "PNG has no DCT");
        // A side that is no multiple of 8 rounds up, as libjpeg-turbo does.
        let odd = decode_reduced(&photo_jpeg(101, 67), |_, _| 8).unwrap();
        assert_eq!((odd.image.width, odd.image.height, odd.full_width, odd.full_height), (13, 9, 101, 67));
    }

    #[test]
    fn a_reduced_decode_gives_nearly_the_full_decodes_pixels() {
        let bytes = photo_jpeg(384, 512);
        // (input, region, reduction taken, bound on the mean absolute difference in grey levels).
        // Measured: 0.4 to 0.8, and 1.8 where the 1/4 decode is the input itself (96x128) and
        // the full path's antialiasing filter differs most from the DCT's block average. The
        // same box shifted by 4 photo pixels costs 2.3 to 8.
        let cases = [
            (Preprocess { crop: Crop::Fraction(0.9896), width: 96, height: 96 }, None, 2, 1.0),
            (Preprocess { crop: Crop::Fraction(0.9896), width: 64, height: 64 }, None, 4, 1.0),
            (Preprocess { crop: Crop::None, width: 96, height: 128 }, None, 4, 2.5),
            (Preprocess { crop: Crop::None, width: 40, height: 40 }, None, 8, 1.0),
            // A face box (sub-pixel, as MTCNN gives it) of 250 px to 96: half size.
            (Preprocess { crop: Crop::None, width: 96, height: 96 }, Some([61.3, 97.8, 311.3, 347.8]), 2, 1.5),
        ];
        for (prep, region, reduction, bound) in cases {
            let (_, _, crop_width, crop_height) = crop_box(384, 512, region, &prep);
            assert_eq!(dct_reduction(crop_width, crop_height, prep.width, prep.height), reduction);
            let reduced = decode_region_bytes(&bytes, region, &prep).unwrap();
            let full = full_path(&bytes, region, &prep);
            let diff = mean_abs_difference(&reduced, &full);
            assert!(diff < bound, "{prep:?} {region:?}: mean difference {diff:.2} at 1/{reduction}");
        }
        // Where no reduction applies, the pixels are exactly the full path's.
        let prep = Preprocess { crop: Crop::Fraction(0.9896), width: 200, height: 200 };
        assert_eq!(decode_region_bytes(&bytes, None, &prep).unwrap(), full_path(&bytes, None, &prep));
    }

    #[test]
    fn an_ensembles_inputs_equal_each_pipelines_own_decode() {
        let jpeg = photo_jpeg(384, 512);
        let png = encode(&gradient(384, 512), image::ImageFormat::Png);
        // Reductions 2, 4, 2 again (from the same decode), and 1.
        let preps = [
            Preprocess { crop: Crop::Fraction(0.9896), width: 96, height: 96 },
            Preprocess { crop: Crop::Fraction(0.9896), width: 64, height: 64 },
            Preprocess { crop: Crop::None, width: 128, height: 160 },
            Preprocess { crop: Crop::Fraction(0.9896), width: 300, height: 300 },
        ];
        for bytes in [&jpeg, &png] {
            let (width, height, inputs) = decode_inputs_bytes(bytes, &preps).unwrap();
            assert_eq!((width, height), (384, 512));
            assert_eq!(inputs.len(), preps.len());
            for (input, prep) in inputs.iter().zip(&preps) {
                assert_eq!(*input, decode_bytes(bytes, prep).unwrap(), "{prep:?}");
            }
        }
        assert!(decode_inputs_bytes(&jpeg[..jpeg.len() / 2], &preps).is_err());
        assert_eq!(decode_inputs_bytes(&jpeg, &[]).unwrap().2, Vec::<RgbImage>::new());
    }

    #[test]
    fn a_reduced_decode_keeps_the_exif_orientation_and_the_region() {
        // Stored 512 wide, 384 high with orientation 6: upright it is 384x512, as the photos.
        let stored = image::RgbImage::from_fn(512, 384, |x, y| image::Rgb([(x / 2) as u8, (y * 2 / 3) as u8, ((x + y) % 200) as u8]));
        let bytes = jpeg_with_orientation(&stored, 6, true);
        let prep = Preprocess { crop: Crop::None, width: 48, height: 48 };
        for region in [None, Some([20.0, 300.0, 220.0, 500.0])] {
            let d = decode_reduced(&bytes, |w, h| {
                let (_, _, cw, ch) = crop_box(w, h, region, &prep);
                dct_reduction(cw, ch, prep.width, prep.height)
            })
            .unwrap();
            assert_eq!((d.full_width, d.full_height), (384, 512));
            assert!(d.reduction > 1, "{region:?}");
            let diff = mean_abs_difference(&decode_region_bytes(&bytes, region, &prep).unwrap(), &full_path(&bytes, region, &prep));
            assert!(diff < 1.0, "{region:?}: mean difference {diff:.2} (measured 0.4 and 0.5)");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sideways.jpg");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(image_size(&path).unwrap(), (384, 512), "the size is the photo's, not the reduced decode's");
    }

    #[test]
    fn greyscale_jpeg_becomes_rgb_at_every_reduction() {
        let grey = image::GrayImage::from_fn(64, 48, |x, _| image::Luma([(x * 4) as u8]));
        let mut bytes = Vec::new();
        DynamicImage::ImageLuma8(grey).write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Jpeg).unwrap();
        for reduction in [1, 2, 4, 8] {
            let d = decode_reduced(&bytes, |_, _| reduction).unwrap();
            assert_eq!((d.image.width, d.image.height, d.reduction), (64 / reduction, 48 / reduction, reduction));
            assert!(d.image.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]), "grey stays grey at 1/{reduction}");
        }
    }

    #[test]
    fn a_cut_or_corrupt_jpeg_is_an_error_at_every_reduction() {
        let bytes = photo_jpeg(192, 256);
        let mut corrupt = bytes.clone();
        let at = bytes.len() / 2;
        corrupt[at..at + 64].fill(0xFF);
        let cut = &bytes[..bytes.len() * 7 / 10];
        for reduction in [1, 2, 4, 8] {
            assert!(decode_reduced(&bytes, |_, _| reduction).is_ok());
            let err = decode_reduced(&corrupt, |_, _| reduction).err().expect("corrupt data decoded");
            assert!(err.contains("corrupt JPEG"), "{err}");
            assert!(decode_reduced(cut, |_, _| reduction).err().expect("cut file decoded").contains("truncated"));
        }
    }

    #[test]
    fn corrupt_image_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("broken.jpg");
        std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
        let prep = Preprocess { crop: Crop::None, width: 8, height: 8 };
        let err = decode_file(&bad, &prep).unwrap_err().to_string();
        assert!(err.contains("broken.jpg"), "{err}");
        let missing = decode_file(&dir.path().join("nope.png"), &prep).unwrap_err().to_string();
        assert!(missing.contains("nope.png"), "{missing}");
    }
}
