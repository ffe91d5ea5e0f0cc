//! `masklab mask-faces`.
use crate::data::augment::mask_render::WearStyle;
use crate::data::face_detection::FacesOptions;
use crate::data::mask_faces::{mask_faces, preview, MaskFacesOptions, MASKS_FILE};
use crate::device::DeviceArg;
use crate::faces::args::DetectorArgs;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
#[command(group = clap::ArgGroup::new("output").required(true).args(["out", "preview"]))]
pub struct MaskFacesArgs {
    /// A folder of photos of unmasked faces (searched recursively); faces from its faces.csv,
    /// detected first where missing.
    input: PathBuf,
    /// Folder to write the masked copies and masks.csv into (new or empty, unless --force).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Instead of copies, a PNG strip: each photo's largest face, then a mask worn in each wear.
    #[arg(long, value_name = "FILE.png")]
    preview: Option<PathBuf>,
    /// The wears, taken in turn: worn, nose_out, mouth_nose_out, on_chin.
    #[arg(long, value_delimiter = ',', default_value = "worn,nose_out,mouth_nose_out,on_chin")]
    styles: Vec<WearStyle>,
    /// Seed of the masks' designs and of how each is worn.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Masked copies of each photo (the wears continue in turn).
    #[arg(long, default_value_t = 1, requires = "out")]
    per_photo: usize,
    /// Write into a non-empty --out (files of the same name are replaced).
    #[arg(long, requires = "out")]
    force: bool,
    /// With --preview: rows of the strip, the photos taken in turn (default: one per photo).
    #[arg(long, requires = "preview")]
    rows: Option<usize>,
    /// With --preview: pixels a side of each square.
    #[arg(long, default_value_t = 128, requires = "preview")]
    cell: u32,
    /// Report unreadable photos and go on.
    #[arg(long)]
    skip_bad: bool,
    #[command(flatten)]
    detector: DetectorArgs,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(a: MaskFacesArgs) -> Result<()> {
    let o = MaskFacesOptions {
        input: a.input.clone(),
        wears: a.styles.clone(),
        seed: a.seed,
        detector: FacesOptions {
            weights: a.detector.weights_dir(),
            device: a.device.device.resolve()?,
            batch: 16,
            skip_bad: a.skip_bad,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            min_face: a.detector.min_face.get(),
        },
    };
    if let Some(file) = &a.preview {
        let cells = preview(&o, file, a.rows, a.cell)?;
        for c in &cells {
            if let Err(e) = &c.outcome {
                eprintln!("row {}, {}: not painted: {e}", c.row + 1, a.styles[c.column - 1].slug());
            }
        }
        let painted = cells.iter().filter(|c| c.outcome.is_ok()).count();
        eprintln!("wrote {}: {painted} of {} masks painted", file.display(), cells.len());
        return Ok(());
    }
    let out = a.out.expect("clap requires --out or --preview");
    let s = mask_faces(&o, &out, a.per_photo, a.force)?;
    for k in &s.skipped {
        eprintln!("skipped: {k}");
    }
    for r in &s.refused {
        eprintln!("left out: {r}");
    }
    eprintln!(
        "wrote {} masked copies ({} faces) of {} photos into {} (listed in {MASKS_FILE}) in {:.1}s; {} photos without a face",
        s.copies,
        s.faces,
        s.photos,
        out.display(),
        s.seconds,
        s.without_face
    );
    Ok(())
}
