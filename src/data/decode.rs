//! Decoding: JPEG/PNG file -> u8 RGB, optional centre crop, resize to the model's input size.
//! Format is detected from the bytes, not the extension (the competition has mislabelled files).
use super::error::DataError;
use fast_image_resize::images::{Image, ImageRef};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat};
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

/// Decodes a whole JPEG or PNG into 8-bit RGB as a person sees it: the EXIF orientation applied
/// (a phone photo stored sideways is read standing up); grey, grey + alpha, RGBA, CMYK and 16-bit
/// images become 8-bit RGB (alpha dropped).
pub fn decode_upright(bytes: &[u8]) -> Result<RgbImage, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| format!("cannot read image: {e}"))?;
    let mut decoder = reader.into_decoder().map_err(|e| format!("cannot decode image: {e}"))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format!("cannot decode image: {e}"))?;
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(RgbImage { width, height, data: rgb.into_raw() })
}

/// Decodes a JPEG or PNG (upright) and crops and resizes it as `prep` says.
pub fn decode_bytes(bytes: &[u8], prep: &Preprocess) -> Result<RgbImage, String> {
    resize_rgb(&decode_upright(bytes)?, prep)
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
    let (left, top, cw, ch) = prep.crop.window(src.width, src.height);
    if (cw, ch) == (prep.width, prep.height) && (cw, ch) == (src.width, src.height) {
        return Ok(src.clone());
    }
    let view = ImageRef::new(src.width, src.height, &src.data, PixelType::U8x3).map_err(|e| e.to_string())?;
    let mut dst = Image::new(prep.width, prep.height, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left as f64, top as f64, cw as f64, ch as f64);
    Resizer::new().resize(&view, &mut dst, &options).map_err(|e| format!("cannot resize: {e}"))?;
    Ok(RgbImage { width: prep.width, height: prep.height, data: dst.into_vec() })
}

pub fn decode_file(path: &Path, prep: &Preprocess) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::file(path, format!("cannot read image: {e}")))?;
    decode_bytes(&bytes, prep).map_err(|msg| DataError::file(path, msg))
}

/// Decodes many files on rayon's threads; results keep the order of `paths`.
pub fn decode_many(paths: &[PathBuf], prep: &Preprocess) -> Vec<Result<RgbImage, DataError>> {
    paths.par_iter().map(|p| decode_file(p, prep)).collect()
}

/// Width and height from the header alone (cheap: no pixel decoding).
pub fn image_size(path: &Path) -> Result<(u32, u32), DataError> {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| DataError::file(path, format!("cannot read image: {e}")))?
        .into_dimensions()
        .map_err(|e| DataError::file(path, format!("cannot decode image: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn gradient(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128]))
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

    /// A JPEG of `img` whose EXIF orientation tag says `orientation` (little-endian TIFF).
    fn jpeg_with_orientation(img: &image::RgbImage, orientation: u8) -> Vec<u8> {
        let exif = vec![b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0, 0, 0, 0, 0];
        let mut bytes = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
        encoder.set_exif_metadata(exif).unwrap();
        encoder.write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8).unwrap();
        bytes
    }

    #[test]
    fn exif_orientation_is_applied() {
        // Left half red, right half blue; orientation 6 = shown rotated 90 degrees clockwise, so
        // the left column becomes the top row: upright it is 20 wide, 40 tall, red on top.
        let img = image::RgbImage::from_fn(40, 20, |x, _| if x < 20 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) });
        let up = decode_upright(&jpeg_with_orientation(&img, 6)).unwrap();
        assert_eq!((up.width, up.height), (20, 40));
        let px = |x: u32, y: u32| &up.data[((y * up.width + x) * 3) as usize..][..3];
        assert!(px(10, 5)[0] > 200 && px(10, 5)[2] < 60, "top is red: {:?}", px(10, 5));
        assert!(px(10, 35)[2] > 200 && px(10, 35)[0] < 60, "bottom is blue: {:?}", px(10, 35));
        // Orientation 1 (or none) leaves it as stored; the header is read without decoding.
        let plain = decode_upright(&jpeg_with_orientation(&img, 1)).unwrap();
        assert_eq!((plain.width, plain.height), (40, 20));
        assert_eq!(peek_header(&jpeg_with_orientation(&img, 6)).unwrap(), (ImageFormat::Jpeg, 40, 20));
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
