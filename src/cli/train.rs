//! `masklab train`.
use crate::app::train::{train, TrainEnd, TrainRequest};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct TrainArgs {
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
    nproc: Option<crate::dist::launch::Nproc>,
    /// Let --nproc start more workers than this machine has cores and GPUs.
    #[arg(long, requires = "nproc")]
    oversubscribe: bool,
    /// Train fold I (1..=data.folds) of the k-fold run --out RUN (or --resume RUN) as a job of
    /// its own, into RUN/fold-I. Jobs of different folds may run at once (a Slurm array, or one
    /// per GPU); the one that finishes the last fold writes RUN/oof_predictions.csv and cv.json.
    #[arg(long, value_name = "I")]
    fold: Option<usize>,
    /// Config overrides such as model.backbone=resnet34 train.epochs=3 data.size=128.
    overrides: Vec<String>,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let request = TrainRequest {
        progress: !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        data: a.data,
        config: a.config,
        out: a.out,
        resume: a.resume,
        overrides: a.overrides,
        nproc: a.nproc,
        oversubscribe: a.oversubscribe,
        fold: a.fold,
    };
    match train(&request)? {
        TrainEnd::Run(summary) => match &summary.best {
            Some(e) => {
                println!(
                    "run {}: best epoch {} f1 {:.4} accuracy {:.4} (mask {:.4} gender {:.4} age {:.4})",
                    summary.run.display(), summary.best_epoch, e.scores.f1, e.scores.accuracy, e.scores.f1_mask, e.scores.f1_gender, e.scores.f1_age
                );
                if let Some(i) = &e.intervals {
                    println!(
                        "  95% CI: f1 {} (mask {} gender {} age {}); {}",
                        i.f1.bracket(), i.f1_mask.bracket(), i.f1_gender.bracket(), i.f1_age.bracket(), i.method()
                    );
                }
            }
            None => println!("run {}: {} epochs (no validation split)", summary.run.display(), summary.epochs_run),
        },
        TrainEnd::KFold { run, cv } => {
            print!("{}", crate::train::kfold::render(&cv));
            println!("run {}: {} folds; out-of-fold predictions in {}", run.path().display(), cv.folds, run.oof_predictions().display());
        }
        TrainEnd::FoldDone { run, fold, remaining } => {
            let left: Vec<String> = remaining.iter().map(|f| f.to_string()).collect();
            let left = if left.len() == 1 { format!("fold {} is", left[0]) } else { format!("folds {} are", left.join(", ")) };
            println!("run {}: fold {fold} finished; {left} still to finish", run.path().display());
        }
        TrainEnd::Launched | TrainEnd::OtherRank => {}
    }
    Ok(())
}
