//! `faces.csv`: the detections of a dataset's photos, kept beside its `train.csv` / `info.csv`
//! (or in a folder of photos) so that nothing is detected twice. One row per face, and one row
//! with empty face columns for a photo without any; each row carries the photo's size in bytes
//! and modification time, and a photo whose file changed is detected again. Written atomically.
//!
//! Columns: `image` (path relative to the file's folder, `/`-separated), `bytes`, `modified_ns`,
//! `width`, `height` (of the photo), `face` (0, 1, ... or empty), `score`, `x1,y1,x2,y2`, and the
//! landmarks `left_eye_x,left_eye_y,right_eye_x,...,mouth_right_y` in pixels of the photo.
use super::boxes::{Face, LANDMARK_NAMES};
use crate::data::error::{csv_error, csv_line, DataError};
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
    /// Largest first.
    pub faces: Vec<Face>,
}

/// A dataset's `faces.csv`.
#[derive(Clone, Debug)]
pub struct FacesCache {
    pub path: PathBuf,
    /// By image path relative to the file's folder.
    pub images: BTreeMap<String, ImageFaces>,
}

fn columns() -> Vec<String> {
    let mut c: Vec<String> = ["image", "bytes", "modified_ns", "width", "height", "face", "score", "x1", "y1", "x2", "y2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for name in LANDMARK_NAMES {
        c.push(format!("{name}_x"));
        c.push(format!("{name}_y"));
    }
    c
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
        let rel = image.strip_prefix(self.base()).unwrap_or(image);
        rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    }

    pub fn get(&self, image: &Path) -> Option<&ImageFaces> {
        self.images.get(&self.key(image))
    }

    /// The entry of a photo if its file is unchanged since it was detected.
    pub fn fresh(&self, image: &Path, stamp: Stamp) -> Option<&ImageFaces> {
        self.get(image).filter(|e| e.stamp == stamp)
    }

    /// Reads `path`; a missing file is an empty cache. A malformed row is an error naming the line.
    pub fn read(path: &Path) -> Result<FacesCache, DataError> {
        let mut cache = FacesCache::empty(path);
        if !path.exists() {
            return Ok(cache);
        }
        let mut reader = csv::ReaderBuilder::new().from_path(path).map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let want = columns();
        if headers.iter().collect::<Vec<_>>() != want.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(DataError::row(path, 1, format!("not a masklab faces file (expected columns {}); delete it to detect again", want.join(","))));
        }
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(path, e))?;
            let line = csv_line(&record);
            let bad = |msg: String| DataError::row(path, line, format!("{msg}; delete the file to detect again"));
            let int = |i: usize| record[i].parse::<u64>().map_err(|_| bad(format!("column {} must be an integer, got `{}`", want[i], &record[i])));
            let float = |i: usize| record[i].parse::<f32>().map_err(|_| bad(format!("column {} must be a number, got `{}`", want[i], &record[i])));
            let stamp = Stamp { bytes: int(1)?, modified_ns: int(2)? };
            let (width, height) = (int(3)? as u32, int(4)? as u32);
            let entry = cache.images.entry(record[0].to_string()).or_insert(ImageFaces { stamp, width, height, faces: Vec::new() });
            if entry.stamp != stamp || (entry.width, entry.height) != (width, height) {
                return Err(bad(format!("{} is listed with two different files", &record[0])));
            }
            if record[5].is_empty() {
                continue;
            }
            let mut landmarks = [[0.0f32; 2]; 5];
            for (j, p) in landmarks.iter_mut().enumerate() {
                *p = [float(11 + 2 * j)?, float(12 + 2 * j)?];
            }
            entry.faces.push(Face { bbox: [float(7)?, float(8)?, float(9)?, float(10)?], score: float(6)?, landmarks });
        }
        Ok(cache)
    }

    /// Writes the file atomically.
    pub fn write(&self) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(columns())?;
        for (image, e) in &self.images {
            let head = [image.clone(), e.stamp.bytes.to_string(), e.stamp.modified_ns.to_string(), e.width.to_string(), e.height.to_string()];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_reads_back_what_it_wrote_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FACES_FILE);
        let mut cache = FacesCache::empty(&path);
        let face = Face { bbox: [1.5, 2.25, 30.0, 40.125], score: 0.987654, landmarks: [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0], [11.0, 12.0], [13.0, 14.0]] };
        let stamp = Stamp { bytes: 10, modified_ns: 20 };
        cache.images.insert("images/a/mask1.jpg".into(), ImageFaces { stamp, width: 64, height: 80, faces: vec![face, face] });
        cache.images.insert("images/a/normal.jpg".into(), ImageFaces { stamp, width: 64, height: 80, faces: vec![] });
        cache.write().unwrap();
        let back = FacesCache::read(&path).unwrap();
        assert_eq!(back.images, cache.images);
        assert_eq!(back.key(&dir.path().join("images/a/normal.jpg")), "images/a/normal.jpg");
        assert!(back.fresh(&dir.path().join("images/a/normal.jpg"), stamp).is_some());
        assert!(back.fresh(&dir.path().join("images/a/normal.jpg"), Stamp { bytes: 11, modified_ns: 20 }).is_none());

        let text = std::fs::read_to_string(&path).unwrap();
        let broken = text.replacen("0.987654", "high", 1);
        std::fs::write(&path, broken).unwrap();
        let err = FacesCache::read(&path).unwrap_err().to_string();
        assert!(err.contains("faces.csv:2") && err.contains("score"), "{err}");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        assert!(FacesCache::read(&path).unwrap_err().to_string().contains("not a masklab faces file"));
        assert!(FacesCache::read(&dir.path().join("none.csv")).unwrap().images.is_empty());
    }
}
