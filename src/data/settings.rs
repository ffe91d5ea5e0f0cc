//! The `[data]` section of the config: input size and crop, validation split and folds, age
//! bounds, relabelling, bad input, decoding and caching, face crops.
use crate::data::dataset::ReadOptions;
use crate::image::decode::{Crop, Preprocess};
use crate::labels::AgeBounds;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Model input side in pixels (images are resized to size x size).
    pub size: u32,
    /// Centre crop before resizing: "none", pixels ("380" or "380x400"), or a fraction of the shorter side ("0.99").
    /// A TOML number is taken too (`crop = 0.9`, `crop = 380`).
    #[serde(deserialize_with = "crate::image::decode::crop_text")]
    pub crop: String,
    /// Share of people held out for validation (person-level, stratified by gender x age band).
    pub val_ratio: f64,
    /// k-fold cross-validation: train one model per fold, each validated on its held-out fold (0 = one train/val split by val_ratio).
    pub folds: usize,
    /// With folds = k: train only this fold (1..k) as a plain run; 0 = all folds in turn.
    pub fold: usize,
    /// Age band bounds: where Middle and Old start ([30, 59] moves the old boundary to 59).
    pub age_bounds: [u32; 2],
    /// Relabel list to apply instead of DATA/train/relabel.csv ("" = that file when present).
    pub relabel: String,
    /// Apply no relabel list at all.
    pub no_relabel: bool,
    /// Report bad rows, folders and images and go on instead of stopping.
    pub skip_bad: bool,
    /// Memory for decoded, resized images kept across epochs, in MiB (0 = decode every epoch).
    pub cache_mib: usize,
    /// Batches decoded ahead of the device.
    pub prefetch: usize,
    /// CPU threads for decoding (0 = all cores).
    pub workers: usize,
    /// Crop each photo to its face: "none" (the centre crop above) or "mtcnn" (the box in the dataset's faces.csv, made by `masklab faces DATA`; photos without a face keep the centre crop).
    pub face_crop: FaceCrop,
    /// With face_crop = "mtcnn": the face box grows by this share of its width and height on every side, then becomes a square.
    pub face_margin: f32,
}

/// Which region of a photo becomes the model's input (`data.face_crop`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaceCrop {
    /// The centre crop (`data.crop`).
    #[default]
    None,
    /// The face MTCNN found (`faces.csv`), padded by `data.face_margin`.
    Mtcnn,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            size: 128,
            crop: "0.9896".into(),
            val_ratio: 0.2,
            folds: 0,
            fold: 0,
            age_bounds: [30, 60],
            relabel: String::new(),
            no_relabel: false,
            skip_bad: false,
            cache_mib: 4096,
            prefetch: 4,
            workers: 0,
            face_crop: FaceCrop::None,
            face_margin: 0.3,
        }
    }
}

impl crate::util::section::Section for DataConfig {
    const KEY: &'static str = "data";
}

impl DataConfig {
    /// How to read the training set: the run's relabel list (or none), and whether bad rows
    /// are skipped.
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            relabel: (!self.relabel.is_empty()).then(|| PathBuf::from(&self.relabel)),
            no_relabel: self.no_relabel,
            skip_bad: self.skip_bad,
        }
    }

    /// The face box margin, checked.
    pub fn margin(&self) -> Result<f32> {
        if !(self.face_margin.is_finite() && (0.0..=2.0).contains(&self.face_margin)) {
            bail!("data.face_margin must be between 0 and 2 (a share of the face box per side), got {}", self.face_margin);
        }
        Ok(self.face_margin)
    }

    pub fn bounds(&self) -> Result<AgeBounds> {
        AgeBounds::new(self.age_bounds[0], self.age_bounds[1]).map_err(|e| anyhow!("data.age_bounds: {e}"))
    }

    /// How a file becomes this model's input: the centre crop, then size x size.
    pub fn preprocess(&self) -> Result<Preprocess> {
        let crop: Crop = self.crop.parse().map_err(|e| anyhow!("data.crop: {e}"))?;
        Ok(Preprocess { crop, width: self.size, height: self.size })
    }
}
