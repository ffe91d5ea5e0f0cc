//! Every face framed the way the model learned faces.
//!
//! A model sees what its training inputs showed: a face crop (`data.face_crop = "mtcnn"`: the box
//! grown by `data.face_margin`, made square) or a window of a whole photo (`data.crop`), in which
//! the face sat at some size and place. [`measure`] reads that size and place from the training
//! set's `faces.csv` at training time (recorded as `framing.json`, `run_dir::framing`), and
//! [`Framing::view`] gives any face of any photo the region of that photo that frames it the same
//! way: for a whole-photo model, a region around the face as large, and with the face as placed,
//! as in the training windows (reaching beyond the photo for a tight crop, whose edges then
//! repeat); for a face-crop model, its crop.
//!
//! A photo whose only face already sits as training faces did (its size and centre inside the
//! 1st to 99th percentiles of the training faces', the window's aspect within 2%) is read as it
//! is, exactly as `predict` reads a file: so a photo framed like the training photos (the
//! competition's own) gets the answer the submission gives it.
//!
//! A whole-photo run that recorded no framing (its dataset had no faces.csv, or an older masklab
//! trained it) has its faces cropped as a face-crop run with its `data.face_margin` would, and
//! says so.
use crate::data::face_crop::{face_region, faces_file_of};
use crate::data::settings::{DataConfig, FaceCrop};
use crate::faces::boxes::{primary_face, BoxF};
use crate::faces::cache::{FacesCache, Stamp};
use crate::image::decode::{decode_inputs_bytes, Crop, Preprocess, RgbImage};
use crate::image::region::resize_beyond;
use crate::run_dir::framing::{Spread, TrainingFraming, FRAMING_VERSION};
use crate::run_dir::RunDir;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;

/// The fewest measured faces a framing is recorded from: fewer say little about the training set.
pub const MIN_MEASURED_FACES: usize = 10;

/// How far a photo's window aspect may differ from the training windows' and still be read as it is.
const ASPECT_TOLERANCE: f32 = 0.02;

/// Where `face` sits in the window `(left, top, width, height)`: size over the window's width,
/// centre as shares of its width and height.
fn placement(face: &BoxF, window: (u32, u32, u32, u32)) -> (f32, f32, f32) {
    let (l, t, w, h) = (window.0 as f32, window.1 as f32, window.2.max(1) as f32, window.3.max(1) as f32);
    let size = ((face[2] - face[0]).max(0.0) * (face[3] - face[1]).max(0.0)).sqrt() / w;
    (size, ((face[0] + face[2]) / 2.0 - l) / w, ((face[1] + face[3]) / 2.0 - t) / h)
}

/// The framing of the training photos `paths` as `crop` reads them: each photo's largest face
/// from the `faces.csv` above it (photos missing from it, changed since, or without a face are
/// left out). None when fewer than [`MIN_MEASURED_FACES`] faces were measured (or there is no
/// faces.csv); an unreadable faces.csv is an error naming it.
pub fn measure(paths: &[PathBuf], crop: &Crop) -> Result<Option<TrainingFraming>> {
    let mut files: HashMap<PathBuf, Option<PathBuf>> = HashMap::new();
    let mut caches: HashMap<PathBuf, FacesCache> = HashMap::new();
    let (mut sizes, mut xs, mut ys, mut aspects) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in paths {
        let Some(file) = faces_file_of(p, &mut files) else { continue };
        if !caches.contains_key(&file) {
            caches.insert(file.clone(), FacesCache::read(&file)?);
        }
        let Some(entry) = caches[&file].get(p) else { continue };
        if Stamp::of(p).ok() != Some(entry.stamp) {
            continue;
        }
        let Some(face) = primary_face(&entry.faces) else { continue };
        let window = crop.window(entry.width, entry.height);
        let (size, x, y) = placement(&face.bbox, window);
        if !(size.is_finite() && size > 0.0 && x.is_finite() && y.is_finite()) {
            continue;
        }
        sizes.push(size);
        xs.push(x);
        ys.push(y);
        aspects.push(window.3 as f32 / window.2.max(1) as f32);
    }
    if sizes.len() < MIN_MEASURED_FACES {
        return Ok(None);
    }
    let spread = |v: &[f32]| Spread::of(v).expect("measured faces");
    Ok(Some(TrainingFraming {
        version: FRAMING_VERSION,
        faces: sizes.len() as u64,
        photos: paths.len() as u64,
        size: spread(&sizes),
        centre_x: spread(&xs),
        centre_y: spread(&ys),
        window_aspect: spread(&aspects).median,
    }))
}

/// How a model's inputs framed faces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Framing {
    /// `data.face_crop = "mtcnn"`: the face box grown by `margin` on every side, made square.
    FaceCrop { margin: f32 },
    /// Windows of whole photos, the faces in them as measured.
    Photo(TrainingFraming),
    /// Windows of whole photos, the faces' place unknown: faces are cropped as `FaceCrop` with
    /// the run's `data.face_margin`.
    Unmeasured { margin: f32 },
}

/// What of a photo becomes a face's model input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum View {
    /// The photo as `predict` reads a file (`data.crop`'s window, resized).
    Whole,
    /// This region (pixels; it may reach beyond the photo), resized.
    Region(BoxF),
}

impl Framing {
    /// The framing of a trained run: its face crop, else its recorded framing.
    pub fn of_run(run: &RunDir, data: &DataConfig) -> Result<Framing> {
        let margin = data.margin()?;
        if data.face_crop == FaceCrop::Mtcnn {
            return Ok(Framing::FaceCrop { margin });
        }
        let measured = run.framing().with_context(|| format!("run {}", run.path().display()))?;
        Ok(measured.map_or(Framing::Unmeasured { margin }, Framing::Photo))
    }

    /// The view of the face `face` in a `width` x `height` photo holding `faces` faces, for a
    /// model whose files are read through `crop`.
    pub fn view(&self, face: &BoxF, faces: usize, width: u32, height: u32, crop: &Crop) -> View {
        match self {
            Framing::FaceCrop { margin } | Framing::Unmeasured { margin } => View::Region(face_region(face, *margin, width, height)),
            Framing::Photo(f) => {
                let window = crop.window(width, height);
                let (size, x, y) = placement(face, window);
                let aspect = window.3 as f32 / window.2.max(1) as f32;
                let as_trained = faces == 1
                    && f.size.contains(size)
                    && f.centre_x.contains(x)
                    && f.centre_y.contains(y)
                    && (aspect / f.window_aspect - 1.0).abs() <= ASPECT_TOLERANCE;
                if as_trained {
                    return View::Whole;
                }
                let side = ((face[2] - face[0]).max(1.0) * (face[3] - face[1]).max(1.0)).sqrt() / f.size.median;
                let (w, h) = (side, side * f.window_aspect);
                let (cx, cy) = ((face[0] + face[2]) / 2.0, (face[1] + face[3]) / 2.0);
                let (x1, y1) = (cx - f.centre_x.median * w, cy - f.centre_y.median * h);
                View::Region([x1, y1, x1 + w, y1 + h])
            }
        }
    }

    /// For people: `faces framed as in training (face 0.42 ...)`, ...
    pub fn describe(&self) -> String {
        match self {
            Framing::FaceCrop { margin } => format!("face crops (the face box grown by {margin} per side, made square)"),
            Framing::Photo(f) => format!("whole photos: each face framed as in training ({})", f.render()),
            Framing::Unmeasured { margin } => format!(
                "whole photos, but the run recorded no framing (its dataset had no faces.csv when it trained: run `masklab faces DATA` before training to record it); each face is cropped with data.face_margin = {margin} instead"
            ),
        }
    }
}

/// One input pipeline of an ensemble: how a file becomes a model's input, and how a face of a
/// photo is framed for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FramedInput {
    pub prep: Preprocess,
    pub framing: Framing,
}

/// The whole-photo input of each pipeline made from the photo's bytes exactly as `predict` makes
/// it from the file (a JPEG decoded at the DCT scale each input needs, `decode_inputs_bytes`),
/// made once, and only if some face's view is the whole photo. The full-size decode that faces
/// are cut from would give slightly other pixels, and so other answers than the submission's.
pub struct WholeInputs<'a> {
    bytes: &'a [u8],
    preps: Vec<Preprocess>,
    made: std::cell::OnceCell<Result<Vec<RgbImage>, String>>,
}

impl<'a> WholeInputs<'a> {
    pub fn new(bytes: &'a [u8], pipelines: &[FramedInput]) -> WholeInputs<'a> {
        WholeInputs { bytes, preps: pipelines.iter().map(|p| p.prep).collect(), made: std::cell::OnceCell::new() }
    }

    fn get(&self, pipeline: usize) -> Result<RgbImage, String> {
        let made = self.made.get_or_init(|| decode_inputs_bytes(self.bytes, &self.preps).map(|(_, _, inputs)| inputs));
        match made {
            Ok(inputs) => Ok(inputs[pipeline].clone()),
            Err(e) => Err(e.clone()),
        }
    }
}

/// Each pipeline's input for `face` (one of `faces` in `image`; None: the photo has no face and
/// is read whole), framed as the pipeline's training framed faces; whole-photo views come from
/// `whole`, so that they equal `predict`'s input for the same file.
pub fn face_inputs(image: &RgbImage, face: Option<&BoxF>, faces: usize, pipelines: &[FramedInput], whole: &WholeInputs) -> Result<Vec<RgbImage>, String> {
    pipelines
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let view = face.map_or(View::Whole, |f| p.framing.view(f, faces, image.width, image.height, &p.prep.crop));
            match view {
                View::Whole => whole.get(i),
                View::Region(r) => resize_beyond(image, r, &p.prep),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faces::boxes::Face;
    use crate::faces::cache::{ImageFaces, FACES_FILE};

    fn framing() -> TrainingFraming {
        // Training windows: 100x100 squares of 100x130 photos; faces 40 px across, centred at (50, 45) of the window.
        TrainingFraming {
            version: FRAMING_VERSION,
            faces: 50,
            photos: 50,
            size: Spread { median: 0.4, low: 0.36, high: 0.44 },
            centre_x: Spread { median: 0.5, low: 0.46, high: 0.54 },
            centre_y: Spread { median: 0.45, low: 0.41, high: 0.49 },
            window_aspect: 1.0,
        }
    }

    #[test]
    fn a_face_framed_as_in_training_is_read_whole_and_any_other_is_reframed() {
        let f = Framing::Photo(framing());
        let crop = Crop::Fraction(1.0);
        // A 100x130 photo: the window is 100x100 at (0, 15); a 40-px face centred at (50, 60).
        let trained = [30.0, 40.0, 70.0, 80.0];
        assert_eq!(f.view(&trained, 1, 100, 130, &crop), View::Whole);
        // The same face with a second face beside it: framed alone, the region the training window was.
        let View::Region(r) = f.view(&trained, 2, 100, 130, &crop) else { panic!("a face of two is framed") };
        for (got, want) in r.iter().zip([0.0, 15.0, 100.0, 115.0]) {
            assert!((got - want).abs() < 1e-3, "{r:?}");
        }
        // A tight crop: the face fills the photo; the region reaches beyond it, 2.5 times the face.
        let View::Region(r) = f.view(&[0.0, 0.0, 80.0, 80.0], 1, 80, 80, &crop) else { panic!("a tight crop is reframed") };
        assert!((r[2] - r[0] - 200.0).abs() < 1e-3 && (r[3] - r[1] - 200.0).abs() < 1e-3 && r[0] < 0.0 && r[1] < 0.0, "{r:?}");
        // A small face in a large photo: the region around it is 2.5 times its size, the face at (0.5, 0.45).
        let View::Region(r) = f.view(&[400.0, 300.0, 420.0, 320.0], 1, 1000, 800, &crop) else { panic!("a small face is reframed") };
        assert!((r[2] - r[0] - 50.0).abs() < 1e-3 && ((410.0 - r[0]) / 50.0 - 0.5).abs() < 1e-4 && ((310.0 - r[1]) / 50.0 - 0.45).abs() < 1e-4, "{r:?}");
        // A face crop run crops; an unmeasured run crops with its margin.
        let square = face_region(&[400.0, 300.0, 420.0, 320.0], 0.3, 1000, 800);
        assert_eq!(Framing::FaceCrop { margin: 0.3 }.view(&[400.0, 300.0, 420.0, 320.0], 1, 1000, 800, &crop), View::Region(square));
        assert_eq!(Framing::Unmeasured { margin: 0.3 }.view(&[400.0, 300.0, 420.0, 320.0], 1, 1000, 800, &crop), View::Region(square));
    }

    #[test]
    fn the_framing_is_measured_from_faces_csv_in_the_crop_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = FacesCache::empty(&dir.path().join(FACES_FILE));
        let mut paths = Vec::new();
        for i in 0..30u32 {
            let p = dir.path().join(format!("{i}.png"));
            image::RgbImage::new(100, 130).save(&p).unwrap();
            // Faces 36..44 px wide, centred at x = 50, y = 60 (0.45 of the 100x100 window at top 15).
            let s = 36.0 + (i % 9) as f32;
            let face = Face { bbox: [50.0 - s / 2.0, 60.0 - s / 2.0, 50.0 + s / 2.0, 60.0 + s / 2.0], score: 0.99, landmarks: [[50.0, 55.0]; 5] };
            let faces = if i == 29 { vec![] } else { vec![face] };
            let key = cache.key(&p);
            cache.images.insert(key, ImageFaces { stamp: Stamp::of(&p).unwrap(), width: 100, height: 130, min_face: 20.0, faces });
            paths.push(p);
        }
        // A photo missing from the file, and one changed since it was detected: left out.
        let extra = dir.path().join("extra.png");
        image::RgbImage::new(100, 130).save(&extra).unwrap();
        paths.push(extra);
        cache.write().unwrap();
        std::fs::write(&paths[28], b"changed").unwrap();
        let f = measure(&paths, &Crop::Fraction(1.0)).unwrap().expect("measured");
        assert_eq!((f.faces, f.photos), (28, 31));
        assert!((f.size.median - 0.40).abs() < 0.011 && f.size.low >= 0.36 && f.size.high <= 0.44, "{f:?}");
        assert!((f.centre_x.median - 0.5).abs() < 1e-5 && (f.centre_y.median - 0.45).abs() < 1e-5 && f.window_aspect == 1.0, "{f:?}");
        // Too few faces say nothing.
        assert_eq!(measure(&paths[..5], &Crop::Fraction(1.0)).unwrap(), None);
        // No faces.csv at all: nothing measured.
        let other = tempfile::tempdir().unwrap();
        let lone = other.path().join("a.png");
        image::RgbImage::new(10, 10).save(&lone).unwrap();
        assert_eq!(measure(&[lone], &Crop::None).unwrap(), None);
    }
}
