//! `masklab predict`: the submission. Reads `EVAL/info.csv` and `EVAL/images/`, runs one or
//! more trained runs (a soft-vote ensemble with optional weights, each with optional
//! horizontal-flip TTA), and writes `ImageID,ans` for every row of info.csv in its order.
pub mod attributes;
pub mod ensemble;
pub mod faces;

use crate::data::face_detection::{eval_face_set, set_faces, FacesOptions, SetFaces};
use crate::device::DeviceChoice;
use crate::face_heads::features::FaceReader;
use crate::face_heads::{FaceEvidence, FaceReading};
use crate::faces::args::FaceDetectorArgs;
use crate::data::dataset::{read_eval, EvalSet};
use crate::data::loader::OnBadImage;
use crate::labels::NUM_CLASSES;
use crate::model::net::Tta;
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use ensemble::{Ensemble, InferenceOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// Run folders, k-fold run folders, or checkpoint files inside run folders.
    pub runs: Vec<PathBuf>,
    pub eval_dir: PathBuf,
    pub out: PathBuf,
    /// Test-time augmentation: mirror images and/or five crops, averaged.
    pub tta: Tta,
    /// One weight per run (default: equal).
    pub weights: Option<Vec<f64>>,
    /// Also write the 18 ensemble probabilities per image here.
    pub probs: Option<PathBuf>,
    /// An unreadable image is reported and gets the most frequent predicted class, instead of an error.
    pub skip_bad: bool,
    /// With `skip_bad`: the most images that may be skipped before predict fails instead.
    pub max_skipped: SkipLimit,
    /// Ignore the runs' tuned decision biases (`RUN/tune.json`).
    pub no_tune: bool,
    pub device: DeviceChoice,
    /// Images per step (0: each run's train.eval_batch_size, by default twice its training batch).
    pub batch_size: usize,
    /// The face detector, for runs with face heads (eval photos not yet in the folder's faces.csv).
    pub detector: FaceDetectorArgs,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PredictSummary {
    pub images: usize,
    pub skipped: Vec<String>,
    pub seconds: f64,
    pub images_per_s: f64,
}

pub fn predict(o: &PredictOptions) -> Result<PredictSummary> {
    let start = Instant::now();
    let options = InferenceOptions { device: o.device.resolve()?, tta: o.tta, use_biases: !o.no_tune, batch_size: o.batch_size };
    let ensemble = Ensemble::load(&o.runs, o.weights.as_deref(), &options)?;
    for m in &ensemble.members {
        if let Some(h) = &m.face_heads {
            let w = h.meta.weights;
            eprintln!("{}: fusing its face heads ({}: gender weight {}, age weight {}; --no-tune to switch off)", m.source.display(), h.meta.reading.network, w.gender, w.age);
        }
        if m.biases.is_some() {
            eprintln!("{}: applying its tuned decision biases (tune.json; --no-tune to switch off)", m.source.display());
        } else if let Some(reason) = &m.biases_refused {
            eprintln!("{}: {reason}", m.source.display());
        }
    }
    let readings = ensemble.face_readings();
    if readings.is_empty() && o.detector.given() {
        bail!("--face-weights and --min-face go with --faces, --largest-face, or runs tuned with --face-heads");
    }
    let eval = read_eval(&o.eval_dir, o.skip_bad)?;
    let n = eval.image_ids.len();
    let on_bad = if o.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
    let faces = eval_faces(o, &readings, &eval)?;
    let (probs, present) = ensemble.probs_of_files(&eval.paths, on_bad, &faces)?;
    let mut answers: Vec<i64> = Vec::<i64>::try_from(probs.argmax(1, false)).context("predictions")?;
    let skipped: Vec<String> = eval.image_ids.iter().zip(&present).filter(|(_, p)| !**p).map(|(id, _)| id.clone()).collect();
    if !skipped.is_empty() {
        o.max_skipped.check(skipped.len(), n, &skipped)?;
        // The most frequent class among the images that were read.
        let mut counts = [0usize; NUM_CLASSES];
        for (a, p) in answers.iter().zip(&present) {
            if *p {
                counts[*a as usize] += 1;
            }
        }
        let fallback = (0..NUM_CLASSES).max_by_key(|&c| counts[c]).unwrap_or(0) as i64;
        for (a, p) in answers.iter_mut().zip(&present) {
            if !*p {
                *a = fallback;
            }
        }
        for id in &skipped {
            eprintln!("warning: {id}: unreadable, predicted the most frequent class {fallback}");
        }
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["ImageID", "ans"])?;
    for (id, a) in eval.image_ids.iter().zip(&answers) {
        csv.write_record([id.as_str(), &a.to_string()])?;
    }
    write_atomic(&o.out, &csv.into_inner().context("submission")?)?;
    if let Some(path) = &o.probs {
        write_probs(path, &eval.image_ids, &probs)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(PredictSummary { images: n, skipped, seconds, images_per_s: n as f64 / seconds.max(1e-9) })
}

/// The largest face's features of each eval photo for every reading the runs' face heads need;
/// the photos' faces come from the eval folder's faces.csv, detected first where missing.
fn eval_faces(o: &PredictOptions, readings: &[FaceReading], eval: &EvalSet) -> Result<FaceEvidence> {
    let mut evidence = FaceEvidence::new();
    if readings.is_empty() {
        return Ok(evidence);
    }
    let device = o.device.resolve()?;
    let set = eval_face_set(&o.eval_dir, eval);
    let paths = &eval.paths;
    let options = FacesOptions { weights: o.detector.weights_dir(), device, batch: 16, skip_bad: o.skip_bad, progress: false, min_face: o.detector.min_face.get() };
    let SetFaces { cache, skipped, .. } = set_faces(&set, &options)?;
    for s in &skipped {
        crate::util::skips::warn_skipped(s);
    }
    for reading in readings {
        let reader = FaceReader::open(reading, device)?;
        let (features, skipped) = reader.largest_faces(paths, &cache, 64, o.skip_bad)?;
        for s in &skipped {
            crate::util::skips::warn_skipped(s);
        }
        let found = features.found.iter().filter(|f| **f).count();
        eprintln!("{}: a face in {found} of {} photos ({}); the others keep the runs' own answers", set.cache_path.display(), paths.len(), reading.network);
        evidence.insert(reading.key(), features);
    }
    Ok(evidence)
}

/// How many unreadable images `predict --skip-bad` tolerates (`--max-skipped`): a count
/// (`3`) or a share of the images (`5%`). Beyond it, a submission would mostly be guesses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SkipLimit {
    Count(usize),
    Percent(f64),
}

impl Default for SkipLimit {
    fn default() -> Self {
        SkipLimit::Percent(5.0)
    }
}

impl std::str::FromStr for SkipLimit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<SkipLimit, String> {
        let s = s.trim();
        let bad = || format!("expected a count (3) or a percentage (5%), got `{s}`");
        match s.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(format!("a percentage must be in 0..100, got {p}%"));
                }
                Ok(SkipLimit::Percent(p))
            }
            None => s.parse().map(SkipLimit::Count).map_err(|_| bad()),
        }
    }
}

impl std::fmt::Display for SkipLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            SkipLimit::Count(n) => write!(f, "{n}"),
            SkipLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl SkipLimit {
    /// The most images of `total` that may be skipped.
    pub fn allowed(self, total: usize) -> usize {
        match self {
            SkipLimit::Count(n) => n,
            SkipLimit::Percent(p) => (p / 100.0 * total as f64).floor() as usize,
        }
    }

    /// An error naming the first skipped images when more than allowed were skipped, or all of them.
    fn check(self, skipped: usize, total: usize, ids: &[String]) -> Result<()> {
        let named = ids.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = if ids.len() > 5 { format!(" and {} more", ids.len() - 5) } else { String::new() };
        if skipped >= total {
            bail!("none of the {total} images could be read ({named}{more}): no submission written");
        }
        if skipped > self.allowed(total) {
            bail!(
                "{skipped} of {total} images could not be read ({named}{more}), more than --max-skipped {self} allows: no submission written;                  fix the images, or raise --max-skipped if guessing their class is acceptable"
            );
        }
        Ok(())
    }
}

/// `ImageID,p0,...,p17`, for ensembling later.
fn write_probs(path: &Path, ids: &[String], probs: &Tensor) -> Result<()> {
    let values = Vec::<f32>::try_from(probs.contiguous().view([-1]))?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(std::iter::once("ImageID".to_string()).chain((0..NUM_CLASSES).map(|c| format!("p{c}"))))?;
    for (i, id) in ids.iter().enumerate() {
        csv.write_record(std::iter::once(id.clone()).chain(values[i * NUM_CLASSES..(i + 1) * NUM_CLASSES].iter().map(|v| v.to_string())))?;
    }
    write_atomic(path, &csv.into_inner().context("probabilities")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skip_limit_is_a_count_or_a_share() {
        assert_eq!("5%".parse::<SkipLimit>().unwrap(), SkipLimit::Percent(5.0));
        assert_eq!(" 3 ".parse::<SkipLimit>().unwrap(), SkipLimit::Count(3));
        assert!("abc".parse::<SkipLimit>().is_err() && "120%".parse::<SkipLimit>().is_err() && "-1".parse::<SkipLimit>().is_err());
        assert_eq!(SkipLimit::default().allowed(100), 5);
        assert_eq!(SkipLimit::default().allowed(19), 0, "5% of 19 images: not one");
        let ids: Vec<String> = (0..7).map(|i| format!("img{i}.jpg")).collect();
        assert!(SkipLimit::Count(2).check(2, 100, &ids[..2]).is_ok());
        let err = SkipLimit::Count(2).check(7, 100, &ids).unwrap_err().to_string();
        assert!(err.contains("7 of 100") && err.contains("img0.jpg") && err.contains("and 2 more") && err.contains("--max-skipped 2"), "{err}");
        let err = SkipLimit::Percent(100.0).check(7, 7, &ids).unwrap_err().to_string();
        assert!(err.contains("none of the 7 images"), "{err}");
    }
}
