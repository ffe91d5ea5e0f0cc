//! The masklab command line.
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use masklab::data::layout::{read_train, ReadOptions};
use masklab::labels::AgeBounds;
use std::path::PathBuf;

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
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MASKLAB_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
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
    }
    Ok(())
}
