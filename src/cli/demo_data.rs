//! `masklab demo-data`.
use crate::demo::{write_demo, DemoOptions};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DemoDataArgs {
    /// Folder to create.
    out: PathBuf,
    /// People in train/.
    #[arg(long, default_value_t = 40)]
    people: usize,
    /// People in eval/ (default: a quarter of --people, at least 4).
    #[arg(long)]
    eval_people: Option<usize>,
    /// Image size, WIDTHxHEIGHT.
    #[arg(long, default_value = "64x80", value_parser = crate::util::parse::image_size)]
    size: (u32, u32),
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write into a folder that is not empty (an existing dataset's files are replaced).
    #[arg(long)]
    force: bool,
}

pub fn run(a: DemoDataArgs) -> Result<()> {
    // Nothing in a folder is demo-data's own: writing over an earlier dataset orphans its people.
    crate::util::out_folder::claim_folder(&a.out, "demo-data", a.force, |_| false)?;
    let opts = DemoOptions {
        train_people: a.people,
        eval_people: a.eval_people.unwrap_or((a.people / 4).max(4)),
        width: a.size.0,
        height: a.size.1,
        seed: a.seed,
    };
    let s = write_demo(&a.out, &opts).with_context(|| format!("cannot write demo data to {}", a.out.display()))?;
    println!(
        "demo data -> {}: train {} people, {} images ({} junk files, {} relabels); eval {} images",
        a.out.display(),
        s.people,
        s.images,
        s.junk_files,
        s.relabels,
        s.eval_images
    );
    Ok(())
}
