//! `faces.csv`: the detections of a dataset's photos, kept beside its `train.csv` / `info.csv`
//! (or in a folder of photos) so that nothing is detected twice. One row per face, and one row
//! with empty face columns for a photo without any; each row carries the photo's size in bytes
//! and modification time, and a photo whose file changed is detected again. Written atomically.
//!
//! Columns: `image` (path relative to the file's folder, `/`-separated), `bytes`, `modified_ns`,
//! `width`, `height` (of the photo), `min_face` (the smallest face searched for, pixels), `face`
//! (0, 1, ... or empty), `score`, `x1,y1,x2,y2`, and the landmarks
//! `left_eye_x,left_eye_y,right_eye_x,...,mouth_right_y` in pixels of the photo. Files from before
//! the `min_face` column are read as detected at the default 20 px, which they were.
use super::boxes::{Face, LANDMARK_NAMES};
use super::boxes::DEFAULT_MIN_FACE;
use crate::util::data_error::{csv_error, csv_line, DataError};
use crate::util::write_atomic;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FACES_FILE: &str = "faces.csv";

/// A photo's file identity: size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub bytes: u64,
    pub modified_ns: u64,
}

impl Stamp {
    pub fn of(path: &Path) -> Result<Stamp, DataError> {
        let meta = std::fs::metadata(path).map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Ok(Stamp { bytes: meta.len(), modified_ns })
    }
}

/// The detections of one photo.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFaces {
    pub stamp: Stamp,
    pub width: u32,
    pub height: u32,
    /// The smallest face the detector searched for, in pixels.
    pub min_face: f64,
    /// Largest first.
    pub faces: Vec<Face>,
}

/// `image`'s path below `base`, `/`-separated (the whole path when it is not below `base`).
pub fn relative_key(base: &Path, image: &Path) -> String {
    let rel = image.strip_prefix(base).unwrap_or(image);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A dataset's `faces.csv`.
#[derive(Clone, Debug)]
pub struct FacesCache {
    pub path: PathBuf,
    /// By image path relative to the file's folder.
    pub images: BTreeMap<String, ImageFaces>,
}

/// Columns after `height`: `min_face` in today's files, none in files written before it existed.
fn columns_with(min_face: bool) -> Vec<String> {
    let mut c: Vec<String> = ["image", "bytes", "modified_ns", "width", "height"].iter().map(|s| s.to_string()).collect();
    if min_face {
        c.push("min_face".into());
    }
    c.extend(["face", "score", "x1", "y1", "x2", "y2"].iter().map(|s| s.to_string()));
    for name in LANDMARK_NAMES {
        c.push(format!("{name}_x"));
        c.push(format!("{name}_y"));
    }
    c
}

fn columns() -> Vec<String> {
    columns_with(true)
}

impl FacesCache {
    pub fn empty(path: &Path) -> FacesCache {
        FacesCache { path: path.to_path_buf(), images: BTreeMap::new() }
    }

    /// The folder image paths are relative to.
    pub fn base(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The key of a photo: its path relative to the file's folder, `/`-separated.
    pub fn key(&self, image: &Path) -> String {
        relative_key(self.base(), image)
    }

    pub fn get(&self, image: &Path) -> Option<&ImageFaces> {
        self.images.get(&self.key(image))
    }

    /// The entry of a photo if its file is unchanged since it was detected.
    pub fn fresh(&self, image: &Path, stamp: Stamp) -> Option<&ImageFaces> {
        self.get(image).filter(|e| e.stamp == stamp)
    }

    /// The entry of a photo if its file is unchanged and it was searched for faces down to
    /// `min_face` pixels (a detection that looked for other sizes is done again).
    pub fn fresh_for(&self, image: &Path, stamp: Stamp, min_face: f64) -> Option<&ImageFaces> {
        self.fresh(image, stamp).filter(|e| e.min_face == min_face)
    }

    /// Reads `path`; a missing file is an empty cache. A malformed row is an error naming the line.
    pub fn read(path: &Path) -> Result<FacesCache, DataError> {
        if !path.exists() {
            return Ok(FacesCache::empty(path));
        }
        let text = std::fs::read(path).map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
        FacesCache::parse(&text, path)
    }

    /// The cache `path` holds as `text`. Every value is checked as it is read: sizes of a photo
    /// masklab decodes, finite numbers, a score in 0..1, each box non-empty and on its photo (a
    /// detector's box may reach past the edge, by less than the photo's own size), landmarks near
    /// it; anything else is an error naming the line, never a value that reaches a crop.
    pub fn parse(text: &[u8], path: &Path) -> Result<FacesCache, DataError> {
        let mut cache = FacesCache::empty(path);
        let mut reader = csv::ReaderBuilder::new().from_reader(text);
        let headers = reader.headers().map_err(|e| csv_error(path, text, e))?.clone();
        let has = |want: &[String]| headers.iter().eq(want.iter().map(String::as_str));
        let with_min_face = has(&columns_with(true));
        let want = columns_with(with_min_face);
        if !has(&want) {
            let want = columns();
            return Err(DataError::row(path, 1, format!("not a masklab faces file (expected columns {}); delete it to detect again", want.join(","))));
        }
        // Where the face columns start.
        let f = if with_min_face { 6 } else { 5 };
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(path, text, e))?;
            let line = csv_line(text, &record);
            let bad = |msg: String| DataError::row(path, line, format!("{msg}; delete the file to detect again"));
            let int = |i: usize| record[i].parse::<u64>().map_err(|_| bad(format!("column {} must be an integer, got `{}`", want[i], &record[i])));
            let float = |i: usize| match record[i].parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(bad(format!("column {} must be a finite number, got `{}`", want[i], &record[i]))),
            };
            let stamp = Stamp { bytes: int(1)?, modified_ns: int(2)? };
            let (width, height) = (int(3)?, int(4)?);
            let side = 1..=crate::image::decode::MAX_SIDE as u64;
            if !side.contains(&width) || !side.contains(&height) {
                return Err(bad(format!("a photo of {width}x{height} pixels (masklab reads 1 to {} a side)", side.end())));
            }
            let (width, height) = (width as u32, height as u32);
            let min_face = match with_min_face {
                true => match record[5].parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 1.0 => v,
                    _ => return Err(bad(format!("column min_face must be a number of pixels (1 or more), got `{}`", &record[5]))),
                },
                false => DEFAULT_MIN_FACE,
            };
            let entry = cache.images.entry(record[0].to_string()).or_insert(ImageFaces { stamp, width, height, min_face, faces: Vec::new() });
            if entry.stamp != stamp || (entry.width, entry.height) != (width, height) || entry.min_face != min_face {
                return Err(bad(format!("{} is listed with two different files", &record[0])));
            }
            if record[f].is_empty() {
                continue;
            }
            let mut landmarks = [[0.0f32; 2]; 5];
            for (j, p) in landmarks.iter_mut().enumerate() {
                *p = [float(f + 6 + 2 * j)?, float(f + 7 + 2 * j)?];
            }
            let face = Face { bbox: [float(f + 2)?, float(f + 3)?, float(f + 4)?, float(f + 5)?], score: float(f + 1)?, landmarks };
            check_face(&face, width, height).map_err(bad)?;
            entry.faces.push(face);
        }
        Ok(cache)
    }

    /// Writes the file atomically.
    pub fn write(&self) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(columns())?;
        for (image, e) in &self.images {
            let head = [image.clone(), e.stamp.bytes.to_string(), e.stamp.modified_ns.to_string(), e.width.to_string(), e.height.to_string(), e.min_face.to_string()];
            if e.faces.is_empty() {
                let mut row = head.to_vec();
                row.resize(columns().len(), String::new());
                w.write_record(&row)?;
            }
            for (k, f) in e.faces.iter().enumerate() {
                let mut row = head.to_vec();
                row.push(k.to_string());
                row.push(format!("{:.6}", f.score));
                row.extend(f.bbox.iter().map(|v| format!("{v:.3}")));
                row.extend(f.landmarks.iter().flatten().map(|v| format!("{v:.3}")));
                w.write_record(&row)?;
            }
        }
        let bytes = w.into_inner().context("cannot write faces CSV")?;
        write_atomic(&self.path, &bytes)
    }
}

/// How far past a photo's edges, in photo sizes, a face read from a file may reach.
const REACH: f32 = 4.0;

/// Whether a face read from a file can be a detection on a `width` x `height` photo.
fn check_face(face: &Face, width: u32, height: u32) -> Result<(), String> {
    let (w, h) = (width as f32, height as f32);
    if !(0.0..=1.0).contains(&face.score) {
        return Err(format!("score {} is not a probability", face.score));
    }
    let [x1, y1, x2, y2] = face.bbox;
    if !(x1 < x2 && y1 < y2) {
        return Err(format!("box {:?} is empty", face.bbox));
    }
    // On the photo: overlapping it, and reaching past its edges by at most REACH photo sizes
    // (MTCNN's box regression reaches past a small photo's edges: a 72x89 box on a 43x64 photo
    // is a real detection; anything much further is not).
    let on_photo = x1 < w && y1 < h && x2 > 0.0 && y2 > 0.0 && x1 >= -REACH * w && y1 >= -REACH * h && x2 <= (1.0 + REACH) * w && y2 <= (1.0 + REACH) * h;
    if !on_photo {
        return Err(format!("box {:?} is not on the {width}x{height} photo", face.bbox));
    }
    if let Some(p) = face.landmarks.iter().find(|[x, y]| !(-REACH * w..=(1.0 + REACH) * w).contains(x) || !(-REACH * h..=(1.0 + REACH) * h).contains(y)) {
        return Err(format!("landmark {p:?} is far outside the {width}x{height} photo"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box MTCNN really wrote (real photo, 43x64): larger than the photo, reaching past two of
    /// its edges by more than the photo's size. It reads back.
    #[test]
    fn a_box_regressed_past_a_small_photos_edges_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FACES_FILE);
        let mut cache = FacesCache::empty(&path);
        let face = Face { bbox: [-43.835, -20.52, 28.856, 68.466], score: 0.93, landmarks: [[-10.0, 15.0], [12.0, 14.0], [2.0, 28.0], [-8.0, 42.0], [10.0, 41.0]] };
        let stamp = Stamp { bytes: 10, modified_ns: 20 };
        cache.images.insert("small.jpg".into(), ImageFaces { stamp, width: 43, height: 64, min_face: 20.0, faces: vec![face] });
        cache.write().unwrap();
        assert_eq!(FacesCache::read(&path).unwrap().images, cache.images);
    }

    #[test]
    fn a_cache_reads_back_what_it_wrote_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FACES_FILE);
        let mut cache = FacesCache::empty(&path);
        let face = Face { bbox: [1.5, 2.25, 30.0, 40.125], score: 0.987654, landmarks: [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0], [11.0, 12.0], [13.0, 14.0]] };
        let stamp = Stamp { bytes: 10, modified_ns: 20 };
        cache.images.insert("images/a/mask1.jpg".into(), ImageFaces { stamp, width: 64, height: 80, min_face: 20.0, faces: vec![face, face] });
        cache.images.insert("images/a/normal.jpg".into(), ImageFaces { stamp, width: 64, height: 80, min_face: 40.0, faces: vec![] });
        cache.write().unwrap();
        let back = FacesCache::read(&path).unwrap();
        assert_eq!(back.images, cache.images);
        assert_eq!(back.key(&dir.path().join("images/a/normal.jpg")), "images/a/normal.jpg");
        assert!(back.fresh(&dir.path().join("images/a/normal.jpg"), stamp).is_some());
        assert!(back.fresh(&dir.path().join("images/a/normal.jpg"), Stamp { bytes: 11, modified_ns: 20 }).is_none());
        assert!(back.fresh_for(&dir.path().join("images/a/normal.jpg"), stamp, 40.0).is_some());
        assert!(back.fresh_for(&dir.path().join("images/a/normal.jpg"), stamp, 20.0).is_none(), "searched for other sizes");
        let text = std::fs::read_to_string(&path).unwrap();

        // A file from before the min_face column: read as detected at the default size.
        let old: String = text
            .lines()
            .map(|l| {
                let mut cells: Vec<&str> = l.split(',').collect();
                cells.remove(5);
                cells.join(",") + "\n"
            })
            .collect();
        assert!(old.starts_with(&columns_with(false).join(",")));
        std::fs::write(&path, old).unwrap();
        let back = FacesCache::read(&path).unwrap();
        assert_eq!(back.images["images/a/mask1.jpg"], cache.images["images/a/mask1.jpg"]);
        assert_eq!(back.images["images/a/normal.jpg"].min_face, DEFAULT_MIN_FACE);
        cache.write().unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let broken = text.replacen("0.987654", "high", 1);
        std::fs::write(&path, broken).unwrap();
        let err = FacesCache::read(&path).unwrap_err().to_string();
        assert!(err.contains("faces.csv:2") && err.contains("score"), "{err}");
        // Values no detector gives are refused where they are read, naming the line.
        for (from, to, what) in [
            ("0.987654", "NaN", "finite"),
            ("1.500", "inf", "finite"),
            ("0.987654", "1.5", "probability"),
            ("30.000", "1.000", "empty"),
            ("40.125", "900.0", "not on the 64x80 photo"),
            ("5.000", "-500.0", "landmark"),
            (",64,80,", ",0,80,", "0x80"),
            (",64,80,", ",99999,80,", "99999x80"),
        ] {
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
            let err = FacesCache::read(&path).unwrap_err().to_string();
            assert!(err.contains("faces.csv:2") && err.contains(what), "{from} -> {to}: {err}");
        }
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        assert!(FacesCache::read(&path).unwrap_err().to_string().contains("not a masklab faces file"));
        assert!(FacesCache::read(&dir.path().join("none.csv")).unwrap().images.is_empty());
    }
}
