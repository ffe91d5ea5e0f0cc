//! The worst validation mistakes: wrong predictions ordered by the confidence given to the
//! wrong class, each with a small JPEG thumbnail of its image (embedded in the page).
use crate::image::decode::{read_upright, resize_rgb, Crop, Preprocess};
use crate::run_dir::heldout::HeldOutRow;
use anyhow::{anyhow, Result};
use image::ImageEncoder;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Thumbnail height in pixels.
pub const THUMB_HEIGHT: u32 = 96;

pub struct Mistake<'a> {
    pub row: &'a HeldOutRow,
    pub predicted: usize,
    /// The probability of the predicted (wrong) class.
    pub confidence: f32,
    /// JPEG bytes, or why the image could not be shown.
    pub thumbnail: Result<Vec<u8>, String>,
}

/// The `limit` wrong predictions with the highest confidence, most confident first (ties by path,
/// so the page is the same every time).
pub fn worst<'a>(rows: &'a [HeldOutRow], limit: usize, data_root: Option<&Path>) -> Vec<Mistake<'a>> {
    let mut wrong: Vec<(&HeldOutRow, usize, f32)> =
        rows.iter().map(|r| (r, r.predicted())).filter(|(r, p)| *p != r.truth).map(|(r, p)| (r, p, r.probs[p])).collect();
    wrong.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.path.cmp(&b.0.path)));
    wrong.truncate(limit);
    wrong
        .into_par_iter()
        .map(|(row, predicted, confidence)| {
            let thumbnail = thumbnail(&locate(&row.path, data_root)).map_err(|e| format!("{e:#}"));
            Mistake { row, predicted, confidence, thumbnail }
        })
        .collect()
}

/// The image file of a prediction row. Rows keep the path as training was given it; when that
/// was relative to another working folder, the part from `train/images/` on is found again
/// under the run's dataset folder.
pub fn locate(path: &str, data_root: Option<&Path>) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_file() {
        return p;
    }
    let normalised = path.replace('\\', "/");
    match (data_root, normalised.rfind("train/images/")) {
        (Some(root), Some(at)) => root.join(&normalised[at..]),
        _ => p,
    }
}

/// A JPEG of the image scaled to `THUMB_HEIGHT` pixels high, keeping its aspect ratio.
pub fn thumbnail(path: &Path) -> Result<Vec<u8>> {
    // Decoded once, upright; a cut or corrupt file is an error naming it.
    let full = read_upright(path).map_err(|e| anyhow!("{e}"))?;
    let (w, h) = (full.width, full.height);
    let height = THUMB_HEIGHT.min(h.max(1));
    let width = ((w as f64 * height as f64 / h.max(1) as f64).round() as u32).max(1);
    let img = resize_rgb(&full, &Preprocess { crop: Crop::None, width, height }).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 88).write_image(&img.data, width, height, image::ExtendedColorType::Rgb8)?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::NUM_CLASSES;

    fn row(path: &str, truth: usize, pred: usize, p: f32) -> HeldOutRow {
        let mut probs = [(1.0 - p) / (NUM_CLASSES - 1) as f32; NUM_CLASSES];
        probs[pred] = p;
        HeldOutRow { path: path.into(), person: "x".into(), fold: 0, truth, probs }
    }

    #[test]
    fn the_most_confident_wrong_predictions_come_first_with_thumbnails() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("train/images/000001_male_Asian_45");
        std::fs::create_dir_all(&images).unwrap();
        image::RgbImage::from_pixel(128, 160, image::Rgb([200, 30, 30])).save(images.join("mask1.png")).unwrap();
        let rows = vec![
            row("elsewhere/train/images/000001_male_Asian_45/mask1.png", 0, 7, 0.6),
            row("b.jpg", 3, 3, 0.99),
            row("c.jpg", 5, 2, 0.9),
            row("d.jpg", 5, 4, 0.3),
        ];
        let worst = worst(&rows, 2, Some(dir.path()));
        assert_eq!(worst.iter().map(|m| m.row.path.as_str()).collect::<Vec<_>>(), ["c.jpg", "elsewhere/train/images/000001_male_Asian_45/mask1.png"]);
        assert_eq!(worst[0].predicted, 2);
        assert!(worst[0].thumbnail.as_ref().unwrap_err().contains("c.jpg"), "a missing image says which");
        let jpeg = worst[1].thumbnail.as_ref().expect("found under the dataset folder");
        let img = image::load_from_memory(jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (77, 96));
        let small = dir.path().join("small.png");
        image::RgbImage::from_pixel(32, 40, image::Rgb([0, 0, 0])).save(&small).unwrap();
        let img = image::load_from_memory(&thumbnail(&small).unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), (32, 40), "small images are not enlarged (the page scales them)");
    }
}
