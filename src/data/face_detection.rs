//! `masklab faces DATA|DIR`: detect the faces of every photo of a dataset into its `faces.csv`,
//! reusing the rows of photos that did not change, and count what was found. A dataset is the
//! competition's layout (`DATA` holding `train/train.csv` and/or `eval/info.csv`, or either
//! folder itself) or any folder of photos (searched recursively).
use crate::data::face_assign::{train_face_boxes, FaceSource};
use crate::faces::cache::{FacesCache, ImageFaces, Stamp, FACES_FILE};
use crate::faces::boxes::Face;
use crate::faces::bounded::{detect_shrunk, DETECT_MAX_PIXELS};
use crate::faces::mtcnn::{Mtcnn, TooManyCandidates};
use crate::image::decode::{read_upright, RgbImage};
use crate::image::shrink::{chunks_within, decode_within, header_pixels, Shrunk, PIXELS_IN_FLIGHT};
use crate::util::data_error::DataError;
use crate::util::skips::warn_skipped;
use crate::util::walk::{walk_files, MAX_DEPTH};
use crate::data::dataset::{read_eval, read_train, EvalSet, ReadOptions, TrainSet, IMAGE_EXTENSIONS};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

/// Photos written to the cache between saves, so that a stopped run keeps its work.
const SAVE_EVERY: usize = 512;

/// One dataset whose faces are detected into one file.
pub struct FaceSet {
    /// `train`, `eval` or `folder`.
    pub kind: &'static str,
    pub cache_path: PathBuf,
    pub images: Vec<PathBuf>,
    /// The training set, for the reuse rule.
    pub train: Option<TrainSet>,
    /// Rows and photos reported and skipped under `skip_bad` while reading the layout.
    pub problems: Vec<String>,
}

fn is_photo(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    !name.starts_with('.') && IMAGE_EXTENSIONS.contains(&ext.as_str())
}

/// The photos under `dir` (links followed, loops and repeated folders reported and not walked
/// again, at most `walk::MAX_DEPTH` deep), in path order.
fn list_photos(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let walked = walk_files(dir, MAX_DEPTH, is_photo)?;
    for repeated in &walked.repeated {
        warn_skipped(repeated);
    }
    Ok(walked.files)
}

fn train_set(data: &Path, read: &ReadOptions) -> Result<FaceSet> {
    let set = read_train(data, read)?;
    let images = set.people.iter().flat_map(|p| p.images.iter().map(|i| i.path.clone())).collect();
    Ok(FaceSet { kind: "train", cache_path: data.join("train").join(FACES_FILE), images, problems: set.problems.clone(), train: Some(set) })
}

fn eval_set(dir: &Path, skip_bad: bool) -> Result<FaceSet> {
    Ok(eval_face_set(dir, &read_eval(dir, skip_bad)?))
}

/// The photos of the eval folder `dir` whose info.csv has been read into `eval`.
pub fn eval_face_set(dir: &Path, eval: &EvalSet) -> FaceSet {
    let images = eval.paths.iter().filter(|p| p.is_file()).cloned().collect();
    FaceSet { kind: "eval", cache_path: dir.join(FACES_FILE), images, train: None, problems: eval.problems.clone() }
}

/// The datasets under `path`: `train/` and `eval/` of a competition dataset, a `train` folder
/// (holding `train.csv`), an eval folder (holding `info.csv`), or else every photo of the folder.
pub fn find_sets(path: &Path, read: &ReadOptions) -> Result<Vec<FaceSet>> {
    if !path.is_dir() {
        bail!("{}: not a folder (expected a dataset with train/ or eval/, or a folder of photos)", path.display());
    }
    let mut sets = Vec::new();
    if path.join("train").join("train.csv").is_file() {
        sets.push(train_set(path, read)?);
    }
    if path.join("eval").join("info.csv").is_file() {
        sets.push(eval_set(&path.join("eval"), read.skip_bad)?);
    }
    if sets.is_empty() && path.join("train.csv").is_file() {
        let data = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if path.file_name().is_none_or(|n| n != "train") {
            bail!("{}: a train.csv outside a folder named `train` (the layout is DATA/train/train.csv)", path.display());
        }
        sets.push(train_set(data, read)?);
    }
    if sets.is_empty() && path.join("info.csv").is_file() {
        sets.push(eval_set(path, read.skip_bad)?);
    }
    if sets.is_empty() {
        let images = list_photos(path)?;
        if images.is_empty() {
            bail!("{}: no photos (.jpg, .jpeg, .png) and no train/train.csv or info.csv", path.display());
        }
        sets.push(FaceSet { kind: "folder", cache_path: path.join(FACES_FILE), images, train: None, problems: Vec::new() });
    }
    Ok(sets)
}

/// Decodes a photo whole and upright, as every command reads images: format from the bytes, not
/// the name; strict; within masklab's one size limit.
pub fn decode_photo(path: &Path) -> Result<RgbImage, DataError> {
    read_upright(path)
}

/// A photo decoded for the detector: within its working size (`faces::bounded`), the photo's
/// size kept. A panic while decoding is this photo's error.
fn decode_for_detection(path: &Path) -> Result<Shrunk, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::file(path, format!("cannot read image: {e}")))?;
    crate::util::panic::catch(|| decode_within(&bytes, DETECT_MAX_PIXELS)).and_then(|r| r).map_err(|msg| DataError::file(path, msg))
}

#[derive(Clone, Debug)]
pub struct FacesOptions {
    /// Folder of `pnet.pt`, `rnet.pt`, `onet.pt`.
    pub weights: PathBuf,
    pub device: Device,
    /// Photos decoded and detected together (photos of equal size share the networks' passes).
    pub batch: usize,
    /// Report skipped photos and go on (they are not cached, so a later run tries again).
    pub skip_bad: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// The smallest face searched for, in pixels (`Mtcnn::with_min_face`); photos detected
    /// with another size are detected again.
    pub min_face: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FacesSummary {
    pub kind: String,
    pub file: PathBuf,
    pub images: usize,
    /// Photos whose rows were reused from the file.
    pub cached: usize,
    pub detected: usize,
    pub one_face: usize,
    pub several_faces: usize,
    pub no_face: usize,
    /// Training photos without a face that take their person's unmasked box.
    pub reused_from_normal: Option<usize>,
    /// Training photos with no box at all (left to the centre crop).
    pub without_box: Option<usize>,
    /// Unreadable photos and bad rows reported and skipped (`--skip-bad`).
    pub skipped: Vec<String>,
    pub seconds: f64,
}

impl FacesSummary {
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {} images ({} from the cache, {} detected in {:.1}s): {} with one face, {} with several, {} with none",
            self.file.display(),
            self.images,
            self.cached,
            self.detected,
            self.seconds,
            self.one_face,
            self.several_faces,
            self.no_face
        );
        if let (Some(r), Some(n)) = (self.reused_from_normal, self.without_box) {
            s.push_str(&format!("; {r} masked photos take the padded box of their person's unmasked photo, {n} have no box"));
        }
        if !self.skipped.is_empty() {
            s.push_str(&format!("; {} skipped (unreadable or bad rows)", self.skipped.len()));
        }
        s
    }
}

/// Detects the faces of `set` into `cache_path` (default the set's own file) and counts them.
/// The detector is loaded only when some photo is not in the file yet.
pub fn detect_set(set: &FaceSet, cache_path: Option<&Path>, opts: &FacesOptions) -> Result<FacesSummary> {
    let start = std::time::Instant::now();
    let path = cache_path.unwrap_or(&set.cache_path);
    let old = FacesCache::read(path)?;
    let mut cache = FacesCache::empty(path);
    let mut todo: Vec<(PathBuf, Stamp)> = Vec::new();
    let mut skipped = Vec::new();
    for image in &set.images {
        let stamp = match Stamp::of(image) {
            Ok(s) => s,
            Err(e) if opts.skip_bad => {
                skipped.push(e.to_string());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match old.fresh_for(image, stamp, opts.min_face) {
            Some(entry) => {
                cache.images.insert(cache.key(image), entry.clone());
            }
            None => todo.push((image.clone(), stamp)),
        }
    }
    let cached = cache.images.len();
    if !todo.is_empty() {
        let detector = Mtcnn::load(&opts.weights, opts.device)?.with_min_face(opts.min_face)?;
        let bar = if opts.progress { indicatif::ProgressBar::new(todo.len() as u64) } else { indicatif::ProgressBar::hidden() };
        let mut since_save = 0;
        // Decoded pixels in flight stay within PIXELS_IN_FLIGHT (from the headers), whatever the
        // photos' sizes; each photo is kept only at the detector's working size.
        let pixels: Vec<u64> = todo.par_iter().map(|(p, _)| header_pixels(p).unwrap_or(0)).collect();
        for range in chunks_within(&pixels, PIXELS_IN_FLIGHT, opts.batch) {
            let chunk = &todo[range];
            let decoded: Vec<Result<Shrunk, DataError>> = chunk.par_iter().map(|(p, _)| decode_for_detection(p)).collect();
            let mut ok = Vec::new();
            for ((image, stamp), d) in chunk.iter().zip(decoded) {
                match d {
                    Ok(img) => ok.push((image, *stamp, img)),
                    Err(e) if opts.skip_bad => skipped.push(e.to_string()),
                    Err(e) => return Err(e.into()),
                }
            }
            for ((image, stamp, img), faces) in detect_chunk(&detector, ok, opts.skip_bad, &mut skipped)? {
                cache.images.insert(
                    cache.key(image),
                    ImageFaces { stamp, width: img.full_width, height: img.full_height, min_face: opts.min_face, faces },
                );
            }
            since_save += chunk.len();
            if since_save >= SAVE_EVERY {
                cache.write().with_context(|| format!("cannot write {}", path.display()))?;
                since_save = 0;
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }
    if !todo.is_empty() || cache.images.len() != old.images.len() || !path.exists() {
        cache.write().with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut s = FacesSummary {
        kind: set.kind.to_string(),
        file: path.to_path_buf(),
        images: cache.images.len(),
        cached,
        detected: cache.images.len() - cached,
        skipped,
        ..Default::default()
    };
    for e in cache.images.values() {
        match e.faces.len() {
            0 => s.no_face += 1,
            1 => s.one_face += 1,
            _ => s.several_faces += 1,
        }
    }
    if let Some(train) = &set.train {
        let boxes: Vec<_> = train_face_boxes(train, &cache).into_iter().flatten().collect();
        s.reused_from_normal = Some(boxes.iter().filter(|b| matches!(b, Some(b) if b.source == FaceSource::ReusedFromNormal)).count());
        s.without_box = Some(boxes.iter().filter(|b| b.is_none()).count());
    }
    s.skipped.extend(set.problems.iter().cloned());
    s.seconds = start.elapsed().as_secs_f64();
    Ok(s)
}

/// A photo decoded for detection: its path, its file's stamp, its working-size image.
type Decoded<'a> = (&'a PathBuf, Stamp, Shrunk);

/// The faces of a chunk of decoded photos. A photo the detector refuses (more candidates than it
/// examines) fails the command naming it, or under `skip_bad` is reported and left out; the
/// others of its chunk are detected again without it.
fn detect_chunk<'a>(detector: &Mtcnn, mut photos: Vec<Decoded<'a>>, skip_bad: bool, skipped: &mut Vec<String>) -> Result<Vec<(Decoded<'a>, Vec<Face>)>> {
    loop {
        let shrunk: Vec<&Shrunk> = photos.iter().map(|(_, _, s)| s).collect();
        match detect_shrunk(detector, &shrunk) {
            Ok(found) => return Ok(photos.into_iter().zip(found).collect()),
            Err(e) => match e.downcast_ref::<TooManyCandidates>() {
                Some(t) if t.image < photos.len() => {
                    let refused = DataError::file(photos[t.image].0, t.to_string());
                    if !skip_bad {
                        return Err(refused.into());
                    }
                    skipped.push(refused.to_string());
                    photos.remove(t.image);
                }
                _ => return Err(e),
            },
        }
    }
}

/// A set's photos with their faces, as the commands that work per face read them.
pub struct SetFaces {
    /// The set's faces.csv, up to date.
    pub cache: FacesCache,
    /// The set's photos that the file holds (unreadable ones were skipped and are not), in order.
    pub photos: Vec<PathBuf>,
    /// Photos reported and skipped while detecting (`skip_bad`).
    pub skipped: Vec<String>,
}

/// Brings `set`'s faces.csv up to date (only new and changed photos are detected), then reads it
/// back with the photos it holds.
pub fn set_faces(set: &FaceSet, opts: &FacesOptions) -> Result<SetFaces> {
    let detected = detect_set(set, None, opts)?;
    let cache = FacesCache::read(&set.cache_path)?;
    let photos = set.images.iter().filter(|p| cache.get(p).is_some()).cloned().collect();
    Ok(SetFaces { cache, photos, skipped: detected.skipped })
}

/// `masklab faces PATH [--out FILE]`: every dataset under `path`.
pub fn run(path: &Path, out: Option<&Path>, read: &ReadOptions, opts: &FacesOptions) -> Result<Vec<FacesSummary>> {
    let sets = find_sets(path, read)?;
    if out.is_some() && sets.len() > 1 {
        bail!("{} holds {} datasets ({}): --out names one file; run `masklab faces` on each folder", path.display(), sets.len(),
            sets.iter().map(|s| s.kind).collect::<Vec<_>>().join(" and "));
    }
    sets.iter().map(|set| detect_set(set, out, opts)).collect()
}
