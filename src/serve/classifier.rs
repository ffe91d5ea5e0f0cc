//! The classifier behind the service: one thread per device owns its copy of the ensemble
//! (loaded through `predict::ensemble`, the inference path `predict` uses), warms it up, and
//! answers batches from the queue with gradients off.
use super::batcher::{serve_batches, BatchPolicy, Inbox, Queue};
use super::metrics::Metrics;
use crate::data::framing::FramedInput;
use crate::face_heads::features::{read_evidence, FaceReader};
use crate::face_heads::FaceReading;
use crate::model::faceres::INPUT_SIZE;
use crate::image::decode::RgbImage;
use crate::labels::{AgeBounds, NUM_CLASSES};
use crate::model::net::Tta;
use crate::image::batch::batch_u8;
use crate::predict::ensemble::{Ensemble, InferenceOptions};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use tch::{Device, Tensor};

/// One image's faces, each as one view per input pipeline of the ensemble, and each as FaceRes
/// reads it for every reading of the runs' face heads (None: no detected face, the whole image).
pub struct ClassifyInput {
    pub faces: Vec<Vec<RgbImage>>,
    pub face_crops: Vec<Vec<Option<RgbImage>>>,
}

/// The 18-way probabilities of each face, or why the batch failed.
pub type ClassifyOutput = Result<Vec<[f32; NUM_CLASSES]>, String>;

pub type ClassifyQueue = Queue<ClassifyInput, ClassifyOutput>;

/// What the models are: what a client needs to know which answer came from what.
#[derive(Clone, Debug, Serialize)]
pub struct ModelIdentity {
    /// The first 16 hex digits of a SHA-256 over every checkpoint's hash, weight and the settings.
    pub id: String,
    pub runs: Vec<RunIdentity>,
    /// Test-time augmentation: none, flip, crops, flip,crops.
    pub tta: String,
    /// Where the age bands start, `[middle, old]`.
    pub age_bounds: [u32; 2],
    pub devices: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunIdentity {
    /// The run argument as given.
    pub run: String,
    pub weight: f64,
    /// Whether its tuned decision biases (tune.json) are applied.
    pub tuned: bool,
    /// The face network its face heads read (`tune --face-heads`), when it has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_heads: Option<String>,
    pub checkpoints: Vec<CheckpointIdentity>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckpointIdentity {
    pub file: String,
    pub sha256: String,
    pub backbone: String,
    pub layout: String,
    /// Input width and height in pixels.
    pub input: [u32; 2],
}

/// What the request path needs to know about the loaded models.
pub struct ModelInfo {
    /// Each face is resized once per pipeline, in this order.
    pub pipelines: Vec<FramedInput>,
    /// Each detected face is also framed once per reading of the runs' face heads, in this order.
    pub face_readings: Vec<FaceReading>,
    pub bounds: AgeBounds,
    pub identity: ModelIdentity,
}

#[derive(Clone, Debug)]
pub struct ClassifierOptions {
    pub runs: Vec<PathBuf>,
    pub weights: Option<Vec<f64>>,
    pub tta: Tta,
    pub use_biases: bool,
    pub devices: Vec<Device>,
    pub policy: BatchPolicy,
    /// Torch CPU threads (0: libtorch's default).
    pub threads: usize,
}

/// What a device thread reports once its ensemble is loaded and warmed up.
struct Loaded {
    pipelines: Vec<FramedInput>,
    face_readings: Vec<FaceReading>,
    bounds: AgeBounds,
    runs: Vec<LoadedRun>,
}

/// A run argument as loaded: what the service's identity names and hashes.
struct LoadedRun {
    source: String,
    weight: f64,
    tuned: bool,
    /// The face network and heads file, with face heads.
    face_heads: Option<(String, PathBuf)>,
    /// (file, backbone, layout, input size) per checkpoint.
    checkpoints: Vec<(PathBuf, String, String, [u32; 2])>,
}

/// The device threads and what they have loaded.
pub struct Classifier {
    pub queue: ClassifyQueue,
    info: OnceLock<ModelInfo>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Classifier {
    /// Starts one thread per device, each loading its own ensemble; returns at once. `loaded`
    /// hears, once, whether every device is ready (see [`Classifier::finish_loading`]).
    pub fn start(o: &ClassifierOptions, queue_capacity: usize, metrics: Arc<Metrics>) -> (Arc<Classifier>, std::sync::mpsc::Receiver<Result<()>>) {
        let (queue, inbox) = Queue::new(queue_capacity);
        let classifier = Arc::new(Classifier { queue, info: OnceLock::new(), workers: Mutex::new(Vec::new()) });
        let (report_tx, report_rx) = std::sync::mpsc::channel::<Result<Loaded>>();
        if o.threads > 0 {
            tch::set_num_threads(o.threads as i32);
        }
        let mut handles = Vec::new();
        for &device in &o.devices {
            let (o, inbox, report, metrics) = (o.clone(), inbox.clone(), report_tx.clone(), metrics.clone());
            let name = format!("masklab-infer-{}", device_name(device));
            let handle = std::thread::Builder::new().name(name).spawn(move || device_thread(&o, device, inbox, report, &metrics));
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let _ = report_tx.send(Err(anyhow::anyhow!("cannot start the inference thread: {e}")));
                }
            }
        }
        drop(report_tx);
        *classifier.workers.lock().expect("workers lock") = handles;
        // The loading outcome: every device loaded and warmed, then the identity hashed.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (c, o) = (classifier.clone(), o.clone());
        std::thread::spawn(move || {
            let outcome = (|| -> Result<()> {
                let mut first: Option<Loaded> = None;
                for _ in 0..o.devices.len() {
                    let loaded = report_rx.recv().context("an inference thread stopped while loading")??;
                    first.get_or_insert(loaded);
                }
                let loaded = first.context("no device to run on")?;
                let identity = identify(&loaded, &o)?;
                let _ = c.info.set(ModelInfo { pipelines: loaded.pipelines, face_readings: loaded.face_readings, bounds: loaded.bounds, identity });
                Ok(())
            })();
            let _ = done_tx.send(outcome);
        });
        (classifier, done_rx)
    }

    /// The loaded models, once every device is ready.
    pub fn info(&self) -> Option<&ModelInfo> {
        self.info.get()
    }

    /// Closes the queue and waits for the device threads to answer what was queued.
    pub fn stop(&self) {
        self.queue.close();
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *self.workers.lock().expect("workers lock"));
        for h in handles {
            let _ = h.join();
        }
    }
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn device_thread(o: &ClassifierOptions, device: Device, inbox: Inbox<ClassifyInput, ClassifyOutput>, report: std::sync::mpsc::Sender<Result<Loaded>>, metrics: &Metrics) {
    // Inference only: no autograd graph on this thread, ever.
    let _no_grad = tch::no_grad_guard();
    let (ensemble, readers) = match load(o, device) {
        Ok((ensemble, readers, loaded)) => {
            let _ = report.send(Ok(loaded));
            (ensemble, readers)
        }
        Err(e) => {
            let _ = report.send(Err(e.context(format!("loading the models on {}", device_name(device)))));
            return;
        }
    };
    let pipelines = ensemble.pipelines();
    serve_batches(inbox, o.policy, |batch| classify(&ensemble, &pipelines, &readers, batch), |faces, took| metrics.batch(faces, took));
}

fn load(o: &ClassifierOptions, device: Device) -> Result<(Ensemble, Vec<FaceReader>, Loaded)> {
    let options = InferenceOptions { device, tta: o.tta, use_biases: o.use_biases, batch_size: o.policy.max_batch };
    let ensemble = Ensemble::load(&o.runs, o.weights.as_deref(), &options)?;
    let mut bounds: Option<(AgeBounds, String)> = None;
    let mut runs = Vec::new();
    for m in &ensemble.members {
        let mut checkpoints = Vec::new();
        for model in &m.models {
            let b = model.data.bounds()?;
            match &bounds {
                Some((first, name)) if *first != b => bail!(
                    "{} bands ages at [{}, {}] but {name} at [{}, {}]: an ensemble's votes must mean the same classes",
                    model.run.path().display(), b.middle, b.old, first.middle, first.old
                ),
                Some(_) => {}
                None => bounds = Some((b, model.run.path().display().to_string())),
            }
            checkpoints.push((model.checkpoint_file(), model.backbone.clone(), model.layout.to_string(), [model.prep.width, model.prep.height]));
        }
        let face_heads = m.face_heads.as_ref().map(|h| (h.meta.reading.network.clone(), m.models[0].run.face_heads_file()));
        runs.push(LoadedRun { source: m.source.display().to_string(), weight: m.weight, tuned: m.biases.is_some(), face_heads, checkpoints });
    }
    let pipelines = ensemble.pipelines();
    let face_readings = ensemble.face_readings();
    let readers = face_readings.iter().map(|r| FaceReader::open(r, device)).collect::<Result<Vec<_>>>()?;
    // Warm-up: the first batches pay for allocations (and cuDNN's choices on CUDA).
    let mut warm: Vec<i64> = vec![1];
    if device.is_cuda() && o.policy.max_batch > 1 {
        warm.push(o.policy.max_batch as i64);
    }
    for n in warm {
        let inputs: Vec<Tensor> = pipelines.iter().map(|p| Tensor::zeros([n, p.prep.height as i64, p.prep.width as i64, 3], (tch::Kind::Uint8, tch::Device::Cpu))).collect();
        let crops: Vec<Option<RgbImage>> = (0..n).map(|_| Some(RgbImage { width: INPUT_SIZE as u32, height: INPUT_SIZE as u32, data: vec![0; (INPUT_SIZE * INPUT_SIZE * 3) as usize] })).collect();
        let faces = read_evidence(&readers, &vec![crops.as_slice(); readers.len()])?;
        let _ = ensemble.probs_of_decoded(&inputs, &faces).context("warming up the models")?;
    }
    Ok((ensemble, readers, Loaded { pipelines, face_readings, bounds: bounds.context("no model loaded")?.0, runs }))
}

/// One batch of images (each with its faces) -> each image's faces' probabilities. A failure
/// (even a panic inside libtorch) fails this batch's requests, never the thread.
fn classify(ensemble: &Ensemble, pipelines: &[FramedInput], readers: &[FaceReader], batch: Vec<ClassifyInput>) -> Vec<ClassifyOutput> {
    let counts: Vec<usize> = batch.iter().map(|b| b.faces.len()).collect();
    let run = || -> Result<Vec<[f32; NUM_CLASSES]>> {
        let inputs: Vec<Tensor> = (0..pipelines.len())
            .map(|p| batch_u8(&batch.iter().flat_map(|b| b.faces.iter().map(|views| &views[p])).collect::<Vec<_>>()))
            .collect::<Result<_>>()?;
        // Each reading's crops of every face of the batch.
        let crops: Vec<Vec<Option<RgbImage>>> = (0..readers.len()).map(|k| batch.iter().flat_map(|b| b.face_crops.iter().map(|c| c[k].clone())).collect()).collect();
        let faces = read_evidence(readers, &crops.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        let probs = ensemble.probs_of_decoded(&inputs, &faces)?;
        let flat = Vec::<f32>::try_from(probs.contiguous().view([-1]))?;
        Ok(flat.chunks(NUM_CLASSES).map(|c| c.try_into().expect("18 probabilities per row")).collect())
    };
    let faces = if counts.iter().sum::<usize>() == 0 {
        Ok(Vec::new())
    } else {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(r) => r.map_err(|e| format!("{e:#}")),
            Err(panic) => Err(format!("inference failed: {}", panic_message(&panic))),
        }
    };
    match faces {
        Ok(rows) => {
            let mut rows = rows.into_iter();
            counts.iter().map(|&n| Ok(rows.by_ref().take(n).collect())).collect()
        }
        Err(e) => {
            tracing::error!(error = %e, "inference batch failed");
            counts.iter().map(|_| Err(e.clone())).collect()
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "a panic".into())
}

/// Hashes every checkpoint and names the whole ensemble.
fn identify(loaded: &Loaded, o: &ClassifierOptions) -> Result<ModelIdentity> {
    let mut all = Sha256::new();
    let mut runs = Vec::new();
    for r in &loaded.runs {
        let mut cps = Vec::new();
        for (file, backbone, layout, input) in &r.checkpoints {
            let sha256 = sha256_file(file)?;
            all.update(format!("{sha256} {} {};", r.weight, r.tuned));
            cps.push(CheckpointIdentity { file: file.display().to_string(), sha256, backbone: backbone.clone(), layout: layout.clone(), input: *input });
        }
        if let Some((network, file)) = &r.face_heads {
            all.update(format!("face heads {network} {};", sha256_file(file)?));
        }
        runs.push(RunIdentity { run: r.source.clone(), weight: r.weight, tuned: r.tuned, face_heads: r.face_heads.as_ref().map(|(n, _)| n.clone()), checkpoints: cps });
    }
    let tta = match (o.tta.flip, o.tta.crops) {
        (false, false) => "none",
        (true, false) => "flip",
        (false, true) => "crops",
        (true, true) => "flip,crops",
    };
    all.update(format!("tta={tta}"));
    let id: String = all.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(ModelIdentity {
        id,
        runs,
        tta: tta.to_string(),
        age_bounds: [loaded.bounds.middle, loaded.bounds.old],
        devices: o.devices.iter().map(|d| device_name(*d)).collect(),
    })
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
