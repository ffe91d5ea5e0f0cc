//! The face detector's command-line settings, declared once for every command that detects
//! faces (`faces`, `bench detect`, `predict --faces`, `serve`).
use super::mtcnn::DEFAULT_MIN_FACE;
use super::weights::default_dir;
use std::path::PathBuf;

/// `--min-face PX`.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct MinFaceArg {
    /// The smallest face searched for, in pixels (MTCNN's min_face_size; default 20): larger is
    /// faster (doubling it quarters the detector's first stage) but misses smaller faces.
    #[arg(long = "min-face", value_name = "PX")]
    pub min_face: Option<f64>,
}

impl MinFaceArg {
    pub fn get(&self) -> f64 {
        self.min_face.unwrap_or(DEFAULT_MIN_FACE)
    }
}

/// The detector of a command whose only weights are the detector's: `--weights DIR`, `--min-face`.
#[derive(clap::Args, Clone, Debug)]
pub struct DetectorArgs {
    /// Folder holding pnet.pt, rnet.pt, onet.pt (default: where `masklab weights fetch mtcnn` puts them).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub min_face: MinFaceArg,
}

impl DetectorArgs {
    pub fn weights_dir(&self) -> PathBuf {
        self.weights.clone().unwrap_or_else(default_dir)
    }
}

/// The detector of a classifier that answers per face, whose own `--weights` weigh its ensemble:
/// `--face-weights DIR`, `--min-face`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FaceDetectorArgs {
    /// Folder holding pnet.pt, rnet.pt, onet.pt (default: where `masklab weights fetch mtcnn` puts them).
    #[arg(long, value_name = "DIR")]
    pub face_weights: Option<PathBuf>,
    #[command(flatten)]
    pub min_face: MinFaceArg,
}

impl FaceDetectorArgs {
    pub fn weights_dir(&self) -> PathBuf {
        self.face_weights.clone().unwrap_or_else(default_dir)
    }

    /// Whether any of these flags was given (they mean nothing to a command not detecting faces).
    pub fn given(&self) -> bool {
        self.face_weights.is_some() || self.min_face.min_face.is_some()
    }
}
