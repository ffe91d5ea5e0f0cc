//! `masklab serve`: an HTTP API and a web page that classify the faces in a photo.
//!
//! ```text
//! request (tokio) ─► body, limits ─► admit N images into the queue (503 when full)
//!     ─► decoding threads: header check, decode upright, locate faces, resize per pipeline
//!     ─► queue ─► device thread (owns the ensemble): dynamic batch, forward, votes, biases
//!     ─► oneshot answer ─► JSON per image, per face
//! ```
//! The models are loaded and run through `predict::ensemble`, the inference path `predict` uses,
//! so the service's probabilities for an image are `predict --probs`'s.
pub mod answer;
pub mod api;
pub mod batcher;
pub mod body;
pub mod classifier;
pub mod image_input;
pub mod load;
pub mod metrics;
pub mod server;

use crate::device::DeviceChoice;
use crate::faces::args::FaceDetectorArgs;
use crate::model::net::Tta;
use anyhow::{bail, Context, Result};
use api::{AppState, Limits};
use batcher::BatchPolicy;
use classifier::{device_name, Classifier, ClassifierOptions};
use image_input::FaceLocator;
use metrics::Metrics;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `masklab serve`'s settings, as its command line writes them.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeOptions {
    /// Run folders (their best checkpoint), k-fold runs (their folds) or checkpoint files; several make an ensemble.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// auto, cpu, cuda, cuda:N, or several (cuda:0,cuda:1): one inference thread per device.
    #[arg(long = "device", value_delimiter = ',', default_value = "auto")]
    pub devices: Vec<DeviceChoice>,
    /// Test-time augmentation, as for predict: none, flip, crops, flip,crops.
    #[arg(long, default_value = "none")]
    pub tta: Tta,
    /// Ensemble weights, one per run, e.g. 2,1.
    #[arg(long, value_delimiter = ',')]
    pub weights: Option<Vec<f64>>,
    /// Decide by plain argmax even for runs tuned with `masklab tune` (their tune.json).
    #[arg(long)]
    pub no_tune: bool,
    /// Most faces in one inference batch.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Longest wait for more images to fill a batch, while admitted images are still being decoded.
    #[arg(long = "max-wait-ms", value_name = "MS", default_value = "5", value_parser = crate::util::parse::millis)]
    pub max_wait: Duration,
    /// Most images in the service at once (decoding, queued or running); beyond it, 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Largest request body (413): bytes, or with a unit (KiB, MiB, KB, MB).
    #[arg(long, default_value = "16MiB", value_parser = crate::util::parse::bytes)]
    pub max_body: u64,
    /// Most bytes of request bodies buffered at once, over all connections (503 beyond it).
    #[arg(long, default_value = "256MiB", value_parser = crate::util::parse::bytes)]
    pub max_body_total: u64,
    /// Most pixels in one image, read from its header before decoding (413).
    #[arg(long, default_value_t = 50_000_000)]
    pub max_pixels: u64,
    /// Most images in one multipart request (413).
    #[arg(long, default_value_t = 16)]
    pub max_images: usize,
    /// Longest time from request to response, body upload included (504).
    #[arg(long = "timeout-ms", value_name = "MS", default_value = "30000", value_parser = crate::util::parse::millis)]
    pub timeout: Duration,
    /// Most open connections; one more is answered 503 and closed.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Longest time a connection may take to send a request's headers, and to stay idle between requests.
    #[arg(long = "header-timeout-s", value_name = "S", default_value = "30", value_parser = crate::util::parse::seconds_at_least_one)]
    pub header_timeout: Duration,
    /// Torch CPU threads (0: half the cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Image decoding threads (0: the cores the torch threads leave).
    #[arg(long, default_value_t = 0)]
    pub decode_threads: usize,
    /// Answer per face found by MTCNN, and fail to start without its weights (per face is the
    /// default whenever the weights are in --face-weights' folder).
    #[arg(long, conflicts_with = "whole_image")]
    pub faces: bool,
    /// Answer for each whole photo, not per face, even where the detector's weights are present.
    #[arg(long)]
    pub whole_image: bool,
    #[command(flatten)]
    pub detector: FaceDetectorArgs,
}

/// How the service finds faces: MTCNN whenever its weights are in `--face-weights`' folder
/// (required with `--faces`, when a served run trained on face crops, or has face heads that
/// read faces: `tune --face-heads`), else the whole image;
/// `--whole-image` asks for the whole image. The detector runs on `device`. Each face is then
/// framed for each model as its training framed faces (printed per run).
fn face_locator(o: &ServeOptions, device: tch::Device) -> Result<FaceLocator> {
    let mut face_crop_run = None;
    let mut face_heads_run = None;
    let mut framings = Vec::new();
    for run in &o.runs {
        let dir = if run.is_file() { run.parent().unwrap_or(std::path::Path::new(".")).to_path_buf() } else { run.clone() };
        // A run the classifier cannot load is reported by its loading, with the reason.
        let Ok(members) = crate::run_dir::RunDir::new(&dir).member_runs() else { continue };
        for member in members.iter().take(1) {
            let Ok(table) = member.config_table() else { continue };
            let data: crate::data::settings::DataConfig = crate::util::section::read(&table)?;
            if data.face_crop == crate::data::settings::FaceCrop::Mtcnn {
                face_crop_run.get_or_insert_with(|| run.clone());
            }
            if !o.no_tune && crate::decision_biases::load_tuning(member).ok().flatten().is_some_and(|t| t.face_heads.is_some()) {
                face_heads_run.get_or_insert_with(|| run.clone());
            }
            framings.push((run.clone(), crate::data::framing::Framing::of_run(member, &data)?));
        }
    }
    let weights = o.detector.weights_dir();
    if o.whole_image {
        if let Some(run) = face_crop_run {
            bail!("{} trained on face crops (data.face_crop = \"mtcnn\"): --whole-image would show it whole photos; leave --whole-image out", run.display());
        }
        if let Some(run) = &face_heads_run {
            eprintln!("masklab serve: {}: its face heads read detected faces only; with --whole-image they are not used", run.display());
        }
        return Ok(FaceLocator::WholeImage);
    }
    let required = o.faces || face_crop_run.is_some() || face_heads_run.is_some();
    if !required && crate::faces::mtcnn::weight_paths(&weights).is_err() {
        eprintln!(
            "masklab serve: answering for whole photos (no MTCNN weights in {}; `masklab weights fetch mtcnn` puts them there for an answer per face)",
            weights.display()
        );
        return Ok(FaceLocator::WholeImage);
    }
    let detector = crate::faces::mtcnn::Mtcnn::load(&weights, device)
        .context("--faces (or a run trained on face crops, or tuned with --face-heads) needs MTCNN's weights")?
        .with_min_face(o.detector.min_face.get())?;
    eprintln!("masklab serve: answering per face (MTCNN on {}, faces of {} px and more; --whole-image for whole photos)", device_name(device), o.detector.min_face.get());
    for (run, framing) in &framings {
        eprintln!("masklab serve: {}: {}", run.display(), framing.describe());
    }
    Ok(FaceLocator::Mtcnn { detector: Arc::new(std::sync::Mutex::new(detector)) })
}

impl ServeOptions {
    fn check(&self) -> Result<()> {
        let positive = [
            ("--max-batch", self.max_batch as u64),
            ("--queue", self.queue as u64),
            ("--max-body", self.max_body),
            ("--max-body-total", self.max_body_total),
            ("--max-pixels", self.max_pixels),
            ("--max-images", self.max_images as u64),
            ("--timeout-ms", self.timeout.as_millis() as u64),
            ("--max-connections", self.max_connections as u64),
        ];
        for (flag, v) in positive {
            if v == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if self.max_body > self.max_body_total {
            bail!("--max-body ({}) cannot exceed --max-body-total ({}): such a body could never be read", self.max_body, self.max_body_total);
        }
        if self.max_images > self.queue {
            bail!("--max-images ({}) cannot exceed --queue ({}): such a request could never be admitted", self.max_images, self.queue);
        }
        if self.queue > tokio::sync::Semaphore::MAX_PERMITS {
            bail!("--queue is too large");
        }
        Ok(())
    }
}

/// Torch CPU threads and decoding threads (0: chosen). Unset, the cores are shared between them:
/// libtorch's default of one thread per core next to busy decoding threads oversubscribes the
/// cores, and its OpenMP threads then wait on each other (measured on 2 cores: 2 torch threads
/// served 18 images/s where 1 served 114).
pub fn thread_split(torch: usize, decode: usize, cores: usize) -> (usize, usize) {
    let cores = cores.max(1);
    let torch = if torch > 0 { torch } else { (cores / 2).max(1) };
    let decode = if decode > 0 { decode } else { cores.saturating_sub(torch).max(1) };
    (torch, decode)
}

/// Serves until Ctrl-C or SIGTERM; then stops accepting, answers what is queued and returns.
pub fn serve(o: &ServeOptions) -> Result<()> {
    o.check()?;
    let mut devices = Vec::new();
    for d in &o.devices {
        let device = d.resolve()?;
        if !devices.contains(&device) {
            devices.push(device);
        }
    }
    if devices.is_empty() {
        bail!("no device given (--device)");
    }
    let faces = face_locator(o, devices[0])?;
    let (torch_threads, decode_threads) = thread_split(o.threads, o.decode_threads, std::thread::available_parallelism().map_or(1, |n| n.get()));
    let decode_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(decode_threads)
        .thread_name(|i| format!("masklab-decode-{i}"))
        .build()
        .context("cannot start the decoding threads")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("masklab-http").build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&o.addr).await.with_context(|| format!("cannot listen on {}", o.addr))?;
        let local = listener.local_addr()?;
        eprintln!(
            "masklab serve: listening on http://{local} (loading {} run(s) on {}; {torch_threads} torch thread(s), {decode_threads} decoding thread(s))",
            o.runs.len(),
            devices.iter().map(|d| device_name(*d)).collect::<Vec<_>>().join(", ")
        );
        let metrics = Arc::new(Metrics::new());
        let classifier_options = ClassifierOptions {
            runs: o.runs.clone(),
            weights: o.weights.clone(),
            tta: o.tta,
            use_biases: !o.no_tune,
            devices: devices.clone(),
            policy: BatchPolicy { max_batch: o.max_batch, max_wait: o.max_wait },
            threads: torch_threads,
        };
        let (classifier, loading) = Classifier::start(&classifier_options, o.queue, metrics.clone());
        let limits = Limits { max_body: o.max_body, max_pixels: o.max_pixels, max_images: o.max_images, timeout: o.timeout };
        let state = Arc::new(AppState {
            classifier: classifier.clone(),
            bodies: body::BodyBudget::new(o.max_body_total),
            decode_pool,
            limits,
            metrics: metrics.clone(),
            faces,
            draining: AtomicBool::new(false),
        });
        let app = api::router(state.clone());

        // Stop on a signal, or when the models cannot be loaded.
        let load_error: Arc<std::sync::Mutex<Option<anyhow::Error>>> = Arc::default();
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
        {
            let (load_error, classifier) = (load_error.clone(), classifier.clone());
            tokio::task::spawn_blocking(move || match loading.recv().unwrap_or_else(|_| Err(anyhow::anyhow!("the loading thread stopped"))) {
                Ok(()) => {
                    let info = classifier.info().expect("loaded");
                    eprintln!("masklab serve: ready, model {} ({} checkpoint(s), tta {})", info.identity.id,
                        info.identity.runs.iter().map(|r| r.checkpoints.len()).sum::<usize>(), info.identity.tta);
                }
                Err(e) => {
                    *load_error.lock().expect("lock") = Some(e);
                    let _ = failed_tx.send(());
                }
            });
        }
        let stop = {
            let state = state.clone();
            async move {
                tokio::select! {
                    _ = server::signal() => eprintln!("masklab serve: shutting down: answering the requests in progress"),
                    Ok(()) = failed_rx => {}
                }
                state.draining.store(true, Ordering::SeqCst);
            }
        };
        let server_limits = server::ServerLimits {
            max_connections: o.max_connections,
            header_timeout: o.header_timeout,
            drain_timeout: o.timeout + Duration::from_secs(5),
        };
        server::run(listener, app, metrics, server_limits, stop).await;
        drop(state);
        tokio::task::spawn_blocking(move || classifier.stop()).await.context("stopping the inference threads")?;
        if let Some(e) = load_error.lock().expect("lock").take() {
            return Err(e);
        }
        eprintln!("masklab serve: stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_shared_between_torch_and_decoding_unless_set() {
        assert_eq!(thread_split(0, 0, 2), (1, 1));
        assert_eq!(thread_split(0, 0, 16), (8, 8));
        assert_eq!(thread_split(0, 0, 1), (1, 1));
        assert_eq!(thread_split(4, 0, 16), (4, 12));
        assert_eq!(thread_split(0, 3, 16), (8, 3));
        assert_eq!(thread_split(2, 2, 2), (2, 2));
    }
}
