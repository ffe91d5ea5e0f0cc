//! `data.face_crop = "mtcnn"`: the region of its photo each sample is cropped to before resizing.
//!
//! The boxes come from the dataset's `faces.csv` (`masklab faces DATA` writes it); training,
//! evaluation and prediction never run the detector themselves, so a run is as fast as before and
//! every run of one dataset crops the same way. A photo missing from the file (or changed since it
//! was detected) is an error that says to run `masklab faces` again, not a silent centre crop.
//!
//! Per sample: the photo's own largest face; for a training person's masked photo without one, the
//! box of the person's unmasked photo ([`crate::data::face_assign::train_face_boxes`]); otherwise none, and
//! the caller falls back to the centre crop (`data.crop`). The box is grown by `data.face_margin`
//! of its width and height on every side (hair, ears and chin help tell gender and age) and made
//! square around its centre (the model's input is square: no stretching), shifted to stay inside
//! the photo.
use crate::data::face_assign::{detected_box, train_face_boxes, FaceBox, FaceSource};
use crate::faces::boxes::BoxF;
use crate::faces::cache::{FacesCache, Stamp, FACES_FILE};
use crate::data::dataset::TrainSet;
use anyhow::{bail, Result};
use crate::run_dir::metrics_log::FaceCropCounts;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The face of every sample, and the region its photo is cropped to.
#[derive(Clone, Debug, Default)]
pub struct SampleFaces {
    pub boxes: Vec<Option<FaceBox>>,
    /// The padded, square crop region (pixels of the upright photo); None: centre crop.
    pub regions: Vec<Option<BoxF>>,
    /// The photo's size (as in faces.csv), where it has a box.
    pub sizes: Vec<Option<(u32, u32)>>,
    pub counts: FaceCropCounts,
}

/// `b` grown by `margin` of its width and height on every side, then made square (the longer
/// side) around its centre, shifted to lie inside a `width` x `height` photo (and shrunk only when
/// the photo is narrower than the square).
pub fn face_region(b: &BoxF, margin: f32, width: u32, height: u32) -> BoxF {
    let (w, h) = ((b[2] - b[0]).max(1.0), (b[3] - b[1]).max(1.0));
    let side = (w.max(h) * (1.0 + 2.0 * margin)).min(width as f32).min(height as f32).max(1.0);
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let place = |c: f32, limit: f32| (c - side / 2.0).clamp(0.0, (limit - side).max(0.0));
    let (x1, y1) = (place(cx, width as f32), place(cy, height as f32));
    [x1, y1, x1 + side, y1 + side]
}

/// Finds the `faces.csv` that covers `image`: in its folder or the nearest folder above (`found`
/// remembers the answer per folder).
pub fn faces_file_of(image: &Path, found: &mut HashMap<PathBuf, Option<PathBuf>>) -> Option<PathBuf> {
    let dir = image.parent()?.to_path_buf();
    if let Some(f) = found.get(&dir) {
        return f.clone();
    }
    let file = dir.ancestors().map(|d| d.join(FACES_FILE)).find(|f| f.is_file());
    found.insert(dir, file.clone());
    file
}

/// The faces of `paths` from the `faces.csv` files above them. `train`: the training set the
/// paths come from, for the reuse rule (None for eval or prediction photos). `skip_bad`: a photo
/// missing from its faces.csv (`masklab faces --skip-bad` leaves unreadable photos out) gets the
/// centre crop, counted, instead of an error.
pub fn sample_faces(paths: &[PathBuf], train: Option<&TrainSet>, margin: f32, skip_bad: bool) -> Result<SampleFaces> {
    let mut files: HashMap<PathBuf, Option<PathBuf>> = HashMap::new();
    let mut caches: HashMap<PathBuf, FacesCache> = HashMap::new();
    let mut cache_of = Vec::with_capacity(paths.len());
    for p in paths {
        let Some(file) = faces_file_of(p, &mut files) else {
            bail!(
                "{}: no {FACES_FILE} in its folder or above. data.face_crop = \"mtcnn\", augment.synth_mask, augment.synth_mask_on_masked and augment.tight_crop use the faces that `masklab faces DATA` detects and caches: run it on the dataset (or folder) first",
                p.display()
            );
        };
        if !caches.contains_key(&file) {
            caches.insert(file.clone(), FacesCache::read(&file)?);
        }
        let cache = &caches[&file];
        let stale = match cache.get(p) {
            None => Some("is not in"),
            Some(e) if Stamp::of(p).ok() != Some(e.stamp) => Some("changed since it was detected into"),
            Some(_) => None,
        };
        if let Some(why) = stale.filter(|_| !skip_bad) {
            bail!("{}: {why} {}; run `masklab faces {}` again (it detects only new and changed photos)", p.display(), file.display(), file.parent().unwrap_or(Path::new(".")).display());
        }
        cache_of.push(file);
    }
    // The reuse rule, keyed by photo path.
    let mut reused: HashMap<&Path, FaceBox> = HashMap::new();
    let train_boxes;
    if let Some(set) = train {
        if let Some(file) = cache_of.first() {
            train_boxes = train_face_boxes(set, &caches[file]);
            for (person, boxes) in set.people.iter().zip(&train_boxes) {
                for (img, b) in person.images.iter().zip(boxes) {
                    if let Some(b) = b {
                        reused.insert(img.path.as_path(), *b);
                    }
                }
            }
        }
    }
    let mut out = SampleFaces::default();
    for (p, file) in paths.iter().zip(&cache_of) {
        let entry = caches[file].get(p);
        let b = detected_box(entry).or_else(|| reused.get(p.as_path()).copied());
        let (width, height) = entry.map(|e| (e.width, e.height)).unwrap_or((0, 0));
        match b.map(|b| b.source) {
            Some(FaceSource::Detected) => out.counts.detected += 1,
            Some(FaceSource::ReusedFromNormal) => out.counts.reused_from_normal += 1,
            None => out.counts.centre_crop += 1,
        }
        out.regions.push(b.map(|b| face_region(&b.bbox, margin, width, height)));
        out.sizes.push(b.map(|_| (width, height)));
        out.boxes.push(b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_face_region_is_a_padded_square_inside_the_photo() {
        // A 20x40 face at (40,30): margin 0.25 makes a 60-pixel square around its centre (50,50).
        assert_eq!(face_region(&[40.0, 30.0, 60.0, 70.0], 0.25, 200, 200), [20.0, 20.0, 80.0, 80.0]);
        // Near the left and top edges: shifted inside, not clipped.
        assert_eq!(face_region(&[0.0, 0.0, 20.0, 20.0], 0.5, 200, 200), [0.0, 0.0, 40.0, 40.0]);
        // Near the right and bottom edges.
        assert_eq!(face_region(&[180.0, 90.0, 200.0, 100.0], 0.0, 200, 100), [180.0, 80.0, 200.0, 100.0]);
        // Larger than the photo's shorter side: as large as it can be.
        assert_eq!(face_region(&[0.0, 0.0, 100.0, 100.0], 1.0, 120, 80), [10.0, 0.0, 90.0, 80.0]);
    }
}
