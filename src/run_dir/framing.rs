//! `framing.json`: where the faces sat in the inputs a run trained on, measured at training time
//! from the training set's `faces.csv`, so that `predict` and `serve` can frame a face of any
//! photo the way the model learned faces without the dataset at hand.
//!
//! Each training photo's largest detected face is measured in the window of the photo the model
//! saw (`data.crop`'s centre crop, before the resize): its size (the geometric mean of the box's
//! width and height) over the window's width, and its centre as shares of the window's width and
//! height. The file keeps the median of each with its 1st and 99th percentiles, the window's
//! aspect, and how many faces were measured.
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The version this masklab writes; a file of another version is refused by name.
pub const FRAMING_VERSION: u32 = 1;

/// A measured quantity: its median and the range that holds all but the extreme 1% on each side.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    pub median: f32,
    /// The 1st percentile.
    pub low: f32,
    /// The 99th percentile.
    pub high: f32,
}

impl Spread {
    /// The spread of `values` (None for none); NaNs are not expected and sort last.
    pub fn of(values: &[f32]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f32::total_cmp);
        let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        Some(Spread { median: at(0.5), low: at(0.01), high: at(0.99) })
    }

    pub fn contains(&self, v: f32) -> bool {
        (self.low..=self.high).contains(&v)
    }

    fn is_valid(&self) -> bool {
        [self.median, self.low, self.high].iter().all(|v| v.is_finite()) && self.low <= self.median && self.median <= self.high
    }
}

/// Where the faces sat in the windows of the training photos.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingFraming {
    pub version: u32,
    /// Training photos measured (their largest face detected and up to date in faces.csv).
    pub faces: u64,
    /// Training photos in all.
    pub photos: u64,
    /// The face's size (`sqrt(box width * box height)`) over the window's width.
    pub size: Spread,
    /// The box centre's distance from the window's left edge over the window's width.
    pub centre_x: Spread,
    /// The box centre's distance from the window's top edge over the window's height.
    pub centre_y: Spread,
    /// The window's height over its width (the median; competition photos share one size).
    pub window_aspect: f32,
}

impl TrainingFraming {
    /// Reads `path`; a file that is not JSON of this version, or holds numbers no framing has,
    /// is an error naming it.
    pub fn read(path: &Path) -> Result<TrainingFraming> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let f: TrainingFraming = serde_json::from_slice(&bytes).with_context(|| format!("{} is not a masklab framing file", path.display()))?;
        if f.version != FRAMING_VERSION {
            bail!("{}: framing version {} (this masklab reads version {FRAMING_VERSION})", path.display(), f.version);
        }
        let positive = f.size.low > 0.0 && f.window_aspect.is_finite() && f.window_aspect > 0.0;
        if !(f.size.is_valid() && f.centre_x.is_valid() && f.centre_y.is_valid() && positive && f.faces > 0 && f.faces <= f.photos) {
            bail!("{}: the framing's numbers are out of range (sizes and the aspect must be positive, each median between its percentiles)", path.display());
        }
        Ok(f)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// One line for a person: `face 0.42 (0.35-0.51) of the window's width, centre at (0.50, 0.47), from 980 of 1000 photos`.
    pub fn render(&self) -> String {
        format!(
            "face {:.2} ({:.2}-{:.2}) of the window's width, centre at ({:.2}, {:.2}), from {} of {} training photos",
            self.size.median, self.size.low, self.size.high, self.centre_x.median, self.centre_y.median, self.faces, self.photos
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TrainingFraming {
        let s = |m: f32| Spread { median: m, low: m - 0.1, high: m + 0.1 };
        TrainingFraming { version: FRAMING_VERSION, faces: 90, photos: 100, size: s(0.4), centre_x: s(0.5), centre_y: s(0.45), window_aspect: 1.33 }
    }

    #[test]
    fn spreads_are_medians_and_percentiles() {
        let v: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        assert_eq!(Spread::of(&v), Some(Spread { median: 50.0, low: 1.0, high: 99.0 }));
        assert_eq!(Spread::of(&[3.0]), Some(Spread { median: 3.0, low: 3.0, high: 3.0 }));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn the_file_round_trips_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("framing.json");
        sample().write(&path).unwrap();
        assert_eq!(TrainingFraming::read(&path).unwrap(), sample());

        let mut bad = sample();
        bad.size.low = 0.0;
        bad.write(&path).unwrap();
        let e = format!("{:#}", TrainingFraming::read(&path).unwrap_err());
        assert!(e.contains("framing.json") && e.contains("out of range"), "{e}");
        let mut other = sample();
        other.version = 9;
        other.write(&path).unwrap();
        assert!(format!("{:#}", TrainingFraming::read(&path).unwrap_err()).contains("version 9"));
        std::fs::write(&path, b"{\"faces\": 1}").unwrap();
        assert!(format!("{:#}", TrainingFraming::read(&path).unwrap_err()).contains("not a masklab framing file"));
    }
}
