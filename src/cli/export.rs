//! `masklab export`.
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// Run folder written by `masklab train` (its best checkpoint, else its last).
    run: PathBuf,
    /// File to write; a layout of several models writes OUT's name with `.<model>` before the extension.
    #[arg(long)]
    out: PathBuf,
    /// Tensor names: torchvision (`torchvision.models.<arch>(num_classes=N).load_state_dict` loads them).
    #[arg(long, value_enum, default_value = "torchvision")]
    format: crate::model::export::ExportFormat,
}

pub fn run(a: ExportArgs) -> Result<()> {
    for e in crate::model::export::export(&a.run, &a.out, a.format)? {
        println!("{} -> {} ({}, {} classes)", e.model, e.path.display(), e.backbone, e.num_classes);
    }
    Ok(())
}
