//! `masklab predict RUN... PHOTOS --faces --out faces.csv`: every face of a folder of arbitrary
//! photos (group photos, webcam frames), one row each with its box and the ensemble's answer.
//!
//! The faces come from the folder's `faces.csv` cache, brought up to date first exactly as
//! `masklab faces PHOTOS` does (only new and changed photos are detected). Each face is framed for
//! each model as that model's training framed faces (`data::framing`: a face crop's square, or the
//! region of the photo that places the face as the training photos placed theirs); a photo
//! without a face gets one row for the whole image (`face` empty), as the service flags it. With
//! `largest_only`, one row per photo: its largest face (a folder of single-face photos framed
//! unlike the training photos). The same ensemble, TTA, votes, face heads (each face read by
//! FaceRes) and decision biases as `predict`.
use crate::data::face_detection::{find_sets, set_faces, FacesOptions, SetFaces};
use crate::data::framing::{face_inputs, WholeInputs};
use crate::image::decode::read_upright_keeping_bytes;
use crate::device::DeviceChoice;
use crate::face_heads::features::{read_evidence, FaceReader};
use crate::data::dataset::ReadOptions;
use crate::image::decode::RgbImage;
use crate::labels::{Class, NUM_CLASSES};
use crate::model::net::Tta;
use crate::image::batch::batch_u8;
use crate::predict::ensemble::{Ensemble, InferenceOptions};
use crate::util::argmax::argmax;
use crate::util::write_atomic;
use anyhow::{anyhow, Context, Result};
use rayon::prelude::*;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct FacePredictOptions {
    pub runs: Vec<PathBuf>,
    /// A folder of photos (searched recursively), or an eval folder holding info.csv.
    pub photos: PathBuf,
    pub out: PathBuf,
    pub tta: Tta,
    pub weights: Option<Vec<f64>>,
    pub no_tune: bool,
    pub device: DeviceChoice,
    /// Faces per classifier step (0: the first run's train.eval_batch_size).
    pub batch_size: usize,
    /// MTCNN's weight folder (needed only when some photo is not in faces.csv yet).
    pub face_weights: PathBuf,
    /// The smallest face searched for, in pixels.
    pub min_face: f64,
    /// Report unreadable photos and go on.
    pub skip_bad: bool,
    /// One row per photo: its largest face (or the whole photo when it has none).
    pub largest_only: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FacePredictSummary {
    pub images: usize,
    pub faces: usize,
    /// Photos without a face, answered for the whole image.
    pub without_face: usize,
    pub skipped: Vec<String>,
    pub seconds: f64,
}

/// One row to classify: a photo's face (or the whole photo).
struct Item {
    image: String,
    face: Option<usize>,
    bbox: [f32; 4],
    score: Option<f32>,
}

pub fn predict_faces(o: &FacePredictOptions) -> Result<FacePredictSummary> {
    let start = std::time::Instant::now();
    let device = o.device.resolve()?;
    let options = InferenceOptions { device, tta: o.tta, use_biases: !o.no_tune, batch_size: o.batch_size };
    let ensemble = Ensemble::load(&o.runs, o.weights.as_deref(), &options)?;
    let first = ensemble.models().next().ok_or_else(|| anyhow!("no model loaded"))?;
    let bounds = first.data.bounds()?;
    let step = if o.batch_size > 0 { o.batch_size } else { first.train.eval_batch() };
    let pipelines = ensemble.pipelines();
    for m in ensemble.models() {
        eprintln!("{}: {}", m.run.path().display(), m.framing.describe());
    }
    // The runs' face heads read each face as FaceRes does.
    let readers = ensemble.face_readings().iter().map(|r| FaceReader::open(r, device)).collect::<Result<Vec<_>>>()?;

    let read = ReadOptions { skip_bad: o.skip_bad, ..Default::default() };
    let faces_options = FacesOptions { weights: o.face_weights.clone(), device, batch: 16, skip_bad: o.skip_bad, progress: false, min_face: o.min_face };
    let mut summary = FacePredictSummary { images: 0, faces: 0, without_face: 0, skipped: Vec::new(), seconds: 0.0 };
    let mut csv = csv::Writer::from_writer(Vec::new());
    let header = ["image", "face", "x1", "y1", "x2", "y2", "score", "label", "class"].map(String::from);
    csv.write_record(header.into_iter().chain((0..NUM_CLASSES).map(|c| format!("p{c}"))))?;
    for set in find_sets(&o.photos, &read)? {
        let SetFaces { cache, photos, skipped } = set_faces(&set, &faces_options)?;
        summary.skipped.extend(skipped);
        for chunk in photos.chunks(step.max(1)) {
            let decoded: Vec<Result<(Vec<u8>, RgbImage), _>> = chunk.par_iter().map(|p| read_upright_keeping_bytes(p)).collect();
            let mut items = Vec::new();
            let mut views: Vec<Vec<RgbImage>> = vec![Vec::new(); pipelines.len()];
            let mut face_crops: Vec<Vec<Option<RgbImage>>> = vec![Vec::new(); readers.len()];
            for (path, img) in chunk.iter().zip(decoded) {
                let (bytes, img) = img?;
                // A view of the whole photo is predict's input for this file, exactly.
                let whole = WholeInputs::new(&bytes, &pipelines);
                let entry = cache.get(path).expect("listed above");
                let key = cache.key(path);
                summary.images += 1;
                if entry.faces.is_empty() {
                    summary.without_face += 1;
                    items.push(Item { image: key, face: None, bbox: [0.0, 0.0, img.width as f32, img.height as f32], score: None });
                    let inputs = face_inputs(&img, None, 0, &pipelines, &whole).map_err(|e| anyhow!("{}: {e}", path.display()))?;
                    for (v, input) in views.iter_mut().zip(inputs) {
                        v.push(input);
                    }
                    for c in face_crops.iter_mut() {
                        c.push(None);
                    }
                    continue;
                }
                let largest = (0..entry.faces.len()).max_by(|&a, &b| entry.faces[a].area().total_cmp(&entry.faces[b].area()));
                for (k, f) in entry.faces.iter().enumerate().filter(|(k, _)| !o.largest_only || Some(*k) == largest) {
                    summary.faces += 1;
                    items.push(Item { image: key.clone(), face: Some(k), bbox: f.bbox, score: Some(f.score) });
                    let inputs = face_inputs(&img, Some(&f.bbox), entry.faces.len(), &pipelines, &whole).map_err(|e| anyhow!("{}: {e}", path.display()))?;
                    for (v, input) in views.iter_mut().zip(inputs) {
                        v.push(input);
                    }
                    for (c, reader) in face_crops.iter_mut().zip(&readers) {
                        c.push(Some(reader.crop(&img, &f.bbox).map_err(|e| anyhow!("{}: {e}", path.display()))?));
                    }
                }
            }
            if items.is_empty() {
                continue;
            }
            // Faces of one chunk of photos may exceed `step`: classify them `step` at a time.
            for start in (0..items.len()).step_by(step.max(1)) {
                let end = (start + step.max(1)).min(items.len());
                let inputs = views.iter().map(|v| batch_u8(&v[start..end].iter().collect::<Vec<_>>())).collect::<Result<Vec<_>>>()?;
                let faces = read_evidence(&readers, &face_crops.iter().map(|c| &c[start..end]).collect::<Vec<_>>())?;
                let probs = tch::no_grad(|| ensemble.probs_of_decoded(&inputs, &faces))?;
                let values = Vec::<f32>::try_from(probs.contiguous().view([-1])).context("probabilities")?;
                for (i, item) in items[start..end].iter().enumerate() {
                    let p = &values[i * NUM_CLASSES..(i + 1) * NUM_CLASSES];
                    // The first of equal probabilities, as the submission's tensor argmax decides.
                    let class = argmax(p);
                    let label = Class::decode(class).expect("class in range").label(&bounds);
                    let mut row = vec![item.image.clone(), item.face.map(|k| k.to_string()).unwrap_or_default()];
                    row.extend(item.bbox.iter().map(|v| format!("{v:.1}")));
                    row.push(item.score.map(|s| format!("{s:.4}")).unwrap_or_default());
                    row.push(label);
                    row.push(class.to_string());
                    row.extend(p.iter().map(|v| v.to_string()));
                    csv.write_record(&row)?;
                }
            }
        }
    }
    write_atomic(&o.out, &csv.into_inner().context("faces CSV")?)?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
