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
use crate::labels::{Class, Mask, NUM_CLASSES};
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
    /// `augment.synth_mask_copies`: unmasked training photos stay as they are and copies of
    /// them are painted instead.
    pub synth_mask_copies: bool,
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
    /// The copies of unmasked training photos that `augment.synth_mask_copies` paints, after the
    /// dataset's images in `samples` (and in the training split): sample `photos() + k` repeats
    /// sample `copy_of[k]`.
    pub copy_of: Vec<usize>,
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

    /// Appends a copy of each unmasked training photo that has landmarks (what a synthetic mask
    /// needs) to the samples and the training split: `augment.synth_mask_copies` paints the
    /// copies, so the photos themselves stay unmasked. Copies go in the training split's order,
    /// so a run makes the same ones on every machine.
    fn add_mask_copies(&mut self) {
        let Some(faces) = self.faces.as_mut() else { return };
        let originals = self.train_idx.clone();
        for i in originals {
            let unmasked = Class::decode(self.classes[i]).is_some_and(|c| c.mask == Mask::NotWear);
            if !unmasked || !faces.boxes[i].is_some_and(|b| b.landmarks.is_some()) {
                continue;
            }
            self.samples.push(self.samples[i].clone());
            self.classes.push(self.classes[i]);
            faces.boxes.push(faces.boxes[i]);
            faces.regions.push(faces.regions[i]);
            faces.sizes.push(faces.sizes[i]);
            self.train_idx.push(self.samples.len() - 1);
            self.copy_of.push(i);
        }
    }

    /// How many samples are copies made for synthetic masks (`augment.synth_mask_copies`).
    pub fn mask_copies(&self) -> usize {
        self.copy_of.len()
    }

    /// How many samples are the dataset's own images: the first ones, before any copies.
    pub fn photos(&self) -> usize {
        self.samples.len() - self.copy_of.len()
    }

    /// The decoding loader over every sample, as the settings ask (cache, prefetch, bad images).
    pub fn loader(&self, cfg: &PrepareSettings) -> Loader {
        let on_bad = if cfg.data.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
        let mut loader = Loader::new(self.samples.iter().map(|s| s.path.clone()).collect(), self.prep, cfg.data.cache_mib, cfg.data.prefetch, on_bad);
        let crop_to_faces = cfg.data.face_crop == FaceCrop::Mtcnn;
        if let (Some(f), true) = (&self.faces, crop_to_faces) {
            loader = loader.with_regions(f.regions.clone());
        }
        if !self.copy_of.is_empty() {
            // A copy is its photo decoded once: only its paint and crop are its own.
            loader = loader.with_sources((0..self.photos()).chain(self.copy_of.iter().copied()).collect());
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
        if cfg.synth_mask_copies {
            // The photos keep their own look; only their copies (after `photos()`) are painted.
            // Masks over masks (`synth_mask_on_masked`) still go on the masked photos.
            for (face, &masked) in plan.faces.iter_mut().zip(&plan.masked).take(self.photos()) {
                if !masked {
                    *face = None;
                }
            }
        }
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
    let mut prepared = Prepared { set, samples, classes, train_idx, val_idx, prep, faces, copy_of: Vec::new() };
    if cfg.synth_mask_copies {
        prepared.add_mask_copies();
    }
    Ok(prepared)
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
        copy_of: Vec::new(),
        classes: samples.iter().map(|s| s.class.encode()).collect(),
        train_idx: Vec::new(),
        val_idx: (0..samples.len()).collect(),
        samples,
        set,
        prep: cfg.data.preprocess()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::face_assign::{FaceBox, FaceSource};
    use crate::image::decode::Crop;
    use crate::labels::{AgeBand, Gender};

    /// Person 0 trains: a bare photo with landmarks, a masked one, an incorrectly masked one, and
    /// a bare photo whose face has no landmarks (a reused box). Person 1 validates: bare, masked.
    fn two_people() -> Prepared {
        let masks = [Mask::NotWear, Mask::Wear, Mask::Incorrect, Mask::NotWear, Mask::NotWear, Mask::Wear];
        let samples: Vec<Sample> = masks
            .iter()
            .enumerate()
            .map(|(i, &mask)| Sample { path: PathBuf::from(format!("p{}/{i}.jpg", i / 4)), person: i / 4, class: Class { mask, gender: Gender::Male, age: AgeBand::Young } })
            .collect();
        let landmarks = [[20.0, 25.0], [44.0, 25.0], [32.0, 36.0], [23.0, 46.0], [41.0, 46.0]];
        let boxes = (0..samples.len())
            .map(|i| Some(FaceBox { bbox: [8.0, 8.0, 56.0, 60.0], source: FaceSource::Detected, landmarks: (i != 3).then_some(landmarks) }))
            .collect();
        let n = samples.len();
        let faces = SampleFaces { boxes, regions: vec![None; n], sizes: vec![Some((64, 64)); n], counts: Default::default() };
        let set = TrainSet { root: PathBuf::from("."), people: Vec::new(), skipped_files: Vec::new(), relabel_file: None, relabeled: 0, problems: Vec::new() };
        Prepared {
            classes: samples.iter().map(|s| s.class.encode()).collect(),
            samples,
            set,
            train_idx: vec![0, 1, 2, 3],
            val_idx: vec![4, 5],
            prep: Preprocess { crop: Crop::Fraction(1.0), width: 64, height: 64 },
            faces: Some(faces),
            copy_of: Vec::new(),
        }
    }

    fn settings(copies: bool) -> PrepareSettings {
        PrepareSettings { data: DataConfig::default(), seed: 5, synth_mask: 1.0, synth_mask_style: SynthMaskStyle::Rendered, synth_mask_on_masked: 0.5, synth_mask_copies: copies, tight_crop: 0.0 }
    }

    #[test]
    fn mask_copies_are_painted_and_the_photos_stay_bare() {
        let mut p = two_people();
        p.add_mask_copies();
        // Only the bare training photo with landmarks is copied: not the masked ones, not the
        // one without landmarks, nothing of the validation person.
        assert_eq!((p.mask_copies(), p.samples.len(), p.photos()), (1, 7, 6));
        assert_eq!(p.copy_of, vec![0]);
        assert_eq!(p.train_idx, vec![0, 1, 2, 3, 6]);
        assert_eq!(p.val_idx, vec![4, 5]);
        assert_eq!((p.samples[6].path.clone(), p.classes[6]), (p.samples[0].path.clone(), p.classes[0]));
        let plan = p.synth_plan(&settings(true)).expect("a plan");
        let paintable: Vec<bool> = plan.faces.iter().map(Option::is_some).collect();
        // The copy is painted, the bare photo never; masks over masks still go on the masked photo.
        assert_eq!(paintable, vec![false, true, false, false, false, false, true]);
        assert!((0..5).all(|epoch| plan.drawn(epoch, 6)), "at synth_mask = 1 the copy is drawn every epoch");

        // Without copies the bare photo itself is the one painted.
        let p = two_people();
        let plan = p.synth_plan(&settings(false)).expect("a plan");
        assert_eq!(plan.faces.iter().map(Option::is_some).collect::<Vec<_>>(), vec![true, true, false, false, false, false]);
        assert_eq!(p.mask_copies(), 0);
    }
}
