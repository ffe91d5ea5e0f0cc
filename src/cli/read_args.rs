//! How a dataset is read (`--relabel`, `--no-relabel`, `--skip-bad`), for `eda` and `faces`.
use crate::data::dataset::ReadOptions;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct ReadArgs {
    /// Relabel list (id,field,true_value) to apply instead of DATA/train/relabel.csv.
    #[arg(long)]
    relabel: Option<PathBuf>,
    /// Do not apply DATA/train/relabel.csv.
    #[arg(long, conflicts_with = "relabel")]
    no_relabel: bool,
    /// Report bad rows, folders and images and go on instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
}

impl From<&ReadArgs> for ReadOptions {
    fn from(a: &ReadArgs) -> ReadOptions {
        ReadOptions { relabel: a.relabel.clone(), no_relabel: a.no_relabel, skip_bad: a.skip_bad }
    }
}
