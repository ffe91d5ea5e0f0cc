//! A preview strip of rendered masks: one row per face, its photo first, then the face with a
//! mask worn in each style; each row gets a mask kind in turn (surgical, cloth, KN95, N95) with
//! colours and print drawn from the seed. A cell that cannot be painted is left dark grey and
//! reported.
use super::{render, DetectedFace, MaskDesign, MaskKind, RenderError, WearStyle};
use crate::image::decode::RgbImage;
use crate::labels::Mask;
use crate::util::write_atomic;
use anyhow::{Context, Result};
use image::ImageEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// A photo and the face to paint in it.
#[derive(Clone, Debug)]
pub struct StripFace {
    pub image: RgbImage,
    pub face: DetectedFace,
}

/// What one painted cell of the strip shows.
#[derive(Clone, Debug, PartialEq)]
pub struct StripCell {
    pub row: usize,
    /// 0 is the photo, 1.. the wear styles in order.
    pub column: usize,
    pub outcome: Result<(MaskKind, Mask), RenderError>,
}

/// The grey of a cell with nothing painted.
const EMPTY: u8 = 48;

/// A square around the face (from the brows to below the chin), `cell` pixels a side.
fn face_cell(image: &RgbImage, face: &DetectedFace, cell: u32) -> RgbImage {
    let b = face.bbox;
    let side = 1.5 * (b[2] - b[0]).max(b[3] - b[1]);
    let centre = [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0 + 0.1 * (b[3] - b[1])];
    let scale = side / cell as f32;
    let mut out = RgbImage { width: cell, height: cell, data: vec![0; (cell * cell * 3) as usize] };
    let (w, h) = (image.width as i64, image.height as i64);
    for y in 0..cell {
        for x in 0..cell {
            // Bilinear, the photo's edge repeated.
            let sx = centre[0] - side / 2.0 + (x as f32 + 0.5) * scale - 0.5;
            let sy = centre[1] - side / 2.0 + (y as f32 + 0.5) * scale - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let i = ((y * cell + x) * 3) as usize;
            if sx < -1.0 || sy < -1.0 || sx > w as f32 || sy > h as f32 {
                continue;
            }
            for c in 0..3 {
                let px = |xx: i64, yy: i64| image.data[((yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)) * 3) as usize + c] as f32;
                let (xi, yi) = (x0 as i64, y0 as i64);
                let top = px(xi, yi) * (1.0 - fx) + px(xi + 1, yi) * fx;
                let bottom = px(xi, yi + 1) * (1.0 - fx) + px(xi + 1, yi + 1) * fx;
                out.data[i + c] = (top * (1.0 - fy) + bottom * fy).round() as u8;
            }
        }
    }
    out
}

/// The strip for `faces` and `wears`, cells `cell` pixels square with a 2-pixel gap, and what
/// each cell shows.
pub fn preview_strip(faces: &[StripFace], wears: &[WearStyle], seed: u64, cell: u32) -> (RgbImage, Vec<StripCell>) {
    let gap = 2u32;
    let cols = 1 + wears.len() as u32;
    let rows = faces.len() as u32;
    let (width, height) = (cols * cell + (cols + 1) * gap, rows * cell + (rows + 1) * gap);
    let mut strip = RgbImage { width, height, data: vec![255; (width * height * 3) as usize] };
    let mut cells = Vec::new();
    for (row, f) in faces.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let design = MaskDesign::random_of(MaskKind::ALL[row % MaskKind::ALL.len()], &mut rng);
        let mut tiles = vec![(face_cell(&f.image, &f.face, cell), None)];
        for &wear in wears {
            let outcome = render(&f.image, &f.face, &design, wear, &mut rng);
            tiles.push(match outcome {
                Ok(r) => (face_cell(&r.image, &f.face, cell), Some(Ok((r.kind, r.label)))),
                Err(e) => (RgbImage { width: cell, height: cell, data: vec![EMPTY; (cell * cell * 3) as usize] }, Some(Err(e))),
            });
        }
        for (column, (tile, outcome)) in tiles.into_iter().enumerate() {
            let (ox, oy) = (gap + column as u32 * (cell + gap), gap + row as u32 * (cell + gap));
            for y in 0..cell {
                let from = (y * cell * 3) as usize;
                let to = (((oy + y) * width + ox) * 3) as usize;
                strip.data[to..to + (cell * 3) as usize].copy_from_slice(&tile.data[from..from + (cell * 3) as usize]);
            }
            if let Some(outcome) = outcome {
                cells.push(StripCell { row, column, outcome });
            }
        }
    }
    (strip, cells)
}

/// Writes `image` as a PNG, atomically.
pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(&image.data, image.width, image.height, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("cannot encode {} as PNG", path.display()))?;
    write_atomic(path, &bytes)
}
