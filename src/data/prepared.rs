//! A dataset made ready for a run: the images of the training layout read as the config says
//! (relabel list, age bounds, bad-file policy), split by person into training and validation
//! (or k-fold), with the preprocessing and the loader that decodes them. Also the eval layout
//! with its answer key as a labelled set, for `masklab eval --split eval`.
use crate::data::settings::{DataConfig, FaceCrop};
use crate::data::dataset::{read_eval, read_train, Sample, TrainSet};
use crate::image::decode::Preprocess;
use crate::data::loader::{Loader, OnBadImage};
use crate::data::split::{kfold_assign, train_val_split};
use crate::data::face_crop::{sample_faces, SampleFaces};
use crate::data::augment::mask_plan::{SynthPlan, SynthRates};
use crate::data::augment::tight_crop::TightCropPlan;
use crate::data::augment::SynthMaskStyle;
use crate::labels::{Class, NUM_CLASSES};
use crate::util::data_error::{csv_error, csv_line};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// What reading and splitting a dataset takes from the config: the `[data]` section, the seed of
/// the split (and of synthetic masks), the share of unmasked photos painted with a mask
/// (`augment.synth_mask`) and of photos seen tightly cropped (`augment.tight_crop`).
#[derive(Clone, Debug, PartialEq)]
pub struct PrepareSettings {
    pub data: DataConfig,
    pub seed: u64,
    pub synth_mask: f64,
    /// `augment.synth_mask_style`: rendered or painted masks.
    pub synth_mask_style: SynthMaskStyle,
    /// `augment.synth_mask_on_masked`: the share of correctly masked photos given a rendered mask over theirs.
    pub synth_mask_on_masked: f64,
    /// `augment.tight_crop`: the share of training samples seen as tightly cropped faces.
    pub tight_crop: f64,
}

/// Everything the data side of a run needs: samples, the split, and preprocessing.
pub struct Prepared {
    pub set: TrainSet,
    pub samples: Vec<Sample>,
    /// The 18-way class of each sample.
    pub classes: Vec<usize>,
    pub train_idx: Vec<usize>,
    pub val_idx: Vec<usize>,
    pub prep: Preprocess,
    /// With `data.face_crop = "mtcnn"`: each sample's face and crop region.
    pub faces: Option<SampleFaces>,
}

impl Prepared {
    /// The classes of the training split, in its order (what the sampler draws from).
    pub fn train_classes(&self) -> Vec<usize> {
        self.train_idx.iter().map(|&i| self.classes[i]).collect()
    }

    /// Images per 18-way class among `idx`.
    pub fn class_counts(&self, idx: &[usize]) -> Vec<u64> {
        idx.iter().fold(vec![0u64; NUM_CLASSES], |mut n, &i| {
            n[self.classes[i]] += 1;
            n
        })
    }

    /// The decoding loader over every sample, as the settings ask (cache, prefetch, bad images).
    pub fn loader(&self, cfg: &PrepareSettings) -> Loader {
        let on_bad = if cfg.data.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
        let mut loader = Loader::new(self.samples.iter().map(|s| s.path.clone()).collect(), self.prep, cfg.data.cache_mib, cfg.data.prefetch, on_bad);
        let crop_to_faces = cfg.data.face_crop == FaceCrop::Mtcnn;
        if let (Some(f), true) = (&self.faces, crop_to_faces) {
            loader = loader.with_regions(f.regions.clone());
        }
        if let Some(plan) = self.synth_plan(cfg) {
            loader = loader.with_synth(plan);
        }
        if let Some(plan) = self.tight_crop_plan(cfg) {
            loader = loader.with_tight_crop(plan);
        }
        loader
    }

    /// With `augment.tight_crop > 0`: which training samples may be seen tightly cropped (their
    /// face boxes in the model input). Only the training batches of an epoch are cropped.
    pub fn tight_crop_plan(&self, cfg: &PrepareSettings) -> Option<TightCropPlan> {
        let faces = self.faces.as_ref().filter(|_| cfg.tight_crop > 0.0)?;
        let mut plan = TightCropPlan::new(cfg.tight_crop, cfg.seed, &self.classes, faces, cfg.data.face_crop == FaceCrop::Mtcnn, &self.prep);
        self.keep_training_samples(&mut plan.boxes);
        Some(plan)
    }

    /// With `augment.synth_mask` or `augment.synth_mask_on_masked` above 0: which samples may get
    /// a synthetic mask (their landmarks in the model input). Only the training batches of an
    /// epoch are painted.
    pub fn synth_plan(&self, cfg: &PrepareSettings) -> Option<SynthPlan> {
        let rates = SynthRates { unmasked: cfg.synth_mask, masked: cfg.synth_mask_on_masked };
        let faces = self.faces.as_ref().filter(|_| rates.unmasked > 0.0 || rates.masked > 0.0)?;
        let mut plan = SynthPlan::new(rates, cfg.seed, cfg.synth_mask_style, &self.classes, faces, cfg.data.face_crop == FaceCrop::Mtcnn, &self.prep);
        self.keep_training_samples(&mut plan.faces);
        Some(plan)
    }

    /// Clears the entries of `per_sample` (one per sample) outside the training split: validation
    /// samples stay as they are, whatever the epoch.
    fn keep_training_samples<T>(&self, per_sample: &mut [Option<T>]) {
        let train: std::collections::HashSet<usize> = self.train_idx.iter().copied().collect();
        for (i, entry) in per_sample.iter_mut().enumerate() {
            if !train.contains(&i) {
                *entry = None;
            }
        }
    }

    /// The person folder a sample belongs to (its index for sets without people).
    pub fn person_name(&self, sample: usize) -> String {
        let s = &self.samples[sample];
        self.set.people.get(s.person).map(|p| p.folder.clone()).unwrap_or_else(|| s.person.to_string())
    }
}

/// Reads the dataset as the settings say and splits it by person.
pub fn prepare(data: &Path, cfg: &PrepareSettings) -> Result<Prepared> {
    let set = read_train(data, &cfg.data.read_options())?;
    for p in &set.problems {
        crate::util::skips::warn_skipped(p);
    }
    let bounds = cfg.data.bounds()?;
    let samples = set.samples(&bounds);
    if samples.is_empty() {
        bail!("{}: no training images found", data.display());
    }
    let strata = set.strata(&bounds);
    let is_val: Vec<bool> = if cfg.data.folds >= 2 {
        if cfg.data.fold == 0 {
            bail!("data.folds = {} trains every fold through kfold::train_folds; a single run needs data.fold in 1..={}", cfg.data.folds, cfg.data.folds);
        }
        kfold_assign(&strata, cfg.data.folds, cfg.seed).into_iter().map(|f| f + 1 == cfg.data.fold).collect()
    } else {
        train_val_split(&strata, cfg.data.val_ratio, cfg.seed)
    };
    let (mut train_idx, mut val_idx) = (Vec::new(), Vec::new());
    for (i, s) in samples.iter().enumerate() {
        if is_val[s.person] {
            val_idx.push(i)
        } else {
            train_idx.push(i)
        }
    }
    let prep = cfg.data.preprocess()?;
    let classes = samples.iter().map(|s| s.class.encode()).collect();
    let faces = faces_of(&samples, Some(&set), cfg)?;
    Ok(Prepared { set, samples, classes, train_idx, val_idx, prep, faces })
}

/// The faces of the samples when the config crops to faces (`train`: for the reuse rule).
fn faces_of(samples: &[Sample], train: Option<&TrainSet>, cfg: &PrepareSettings) -> Result<Option<SampleFaces>> {
    if cfg.data.face_crop == FaceCrop::None && cfg.synth_mask <= 0.0 && cfg.synth_mask_on_masked <= 0.0 && cfg.tight_crop <= 0.0 {
        return Ok(None);
    }
    let paths: Vec<PathBuf> = samples.iter().map(|s| s.path.clone()).collect();
    let faces = sample_faces(&paths, train, cfg.data.margin()?, cfg.data.skip_bad)?;
    tracing::info!("face crops: {}", faces.counts.render());
    Ok(Some(faces))
}

/// The eval layout as a labelled set: `DATA/eval/info.csv` images with `DATA/eval/answers.csv`
/// classes, all of them in the validation role (nothing to train on).
pub fn labelled_eval_set(data: &Path, cfg: &PrepareSettings) -> Result<Prepared> {
    let dir = data.join("eval");
    let eval = read_eval(&dir, cfg.data.skip_bad)?;
    let key_path = dir.join("answers.csv");
    let text = std::fs::read(&key_path).with_context(|| format!("cannot read {} (the answer key)", key_path.display()))?;
    let mut reader = csv::Reader::from_reader(&text[..]);
    let mut key = std::collections::HashMap::new();
    for r in reader.records() {
        let r = r.map_err(|e| csv_error(&key_path, &text, e))?;
        let line = csv_line(&text, &r);
        let class: usize = r.get(1).unwrap_or("").trim().parse().map_err(|_| anyhow!("{}:{line}: ans must be 0..17", key_path.display()))?;
        if class >= NUM_CLASSES {
            bail!("{}:{line}: ans must be 0..17, got {class}", key_path.display());
        }
        key.insert(r.get(0).unwrap_or("").to_string(), class);
    }
    let mut samples = Vec::with_capacity(eval.image_ids.len());
    for (id, path) in eval.image_ids.iter().zip(&eval.paths) {
        let class = *key.get(id).ok_or_else(|| anyhow!("{}: no answer for {id}", key_path.display()))?;
        samples.push(Sample { path: path.clone(), person: samples.len(), class: Class::decode(class).expect("checked") });
    }
    let set = TrainSet { root: data.to_path_buf(), people: Vec::new(), skipped_files: Vec::new(), relabel_file: None, relabeled: 0, problems: eval.problems };
    // Nothing is painted on a labelled eval set: only a face crop needs its faces.
    let faces = if cfg.data.face_crop == FaceCrop::Mtcnn { faces_of(&samples, None, cfg)? } else { None };
    Ok(Prepared {
        faces,
        classes: samples.iter().map(|s| s.class.encode()).collect(),
        train_idx: Vec::new(),
        val_idx: (0..samples.len()).collect(),
        samples,
        set,
        prep: cfg.data.preprocess()?,
    })
}
