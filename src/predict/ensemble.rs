//! The one inference path from trained runs to 18-way probabilities, shared by `predict` and
//! `serve`: which models a run argument names (a run's best checkpoint, a k-fold run's folds, or
//! one checkpoint file), each model's own preprocessing and test-time augmentation, the equal-weight
//! soft vote of a run's models, the run's face heads (`tune --face-heads`), its tuned decision
//! biases, and the weighted soft vote of several runs.
use crate::data::settings::{DataConfig, FaceCrop};
use crate::data::face_crop::sample_faces;
use crate::data::framing::{FramedInput, Framing};
use crate::image::decode::Preprocess;
use crate::data::loader::{Loader, OnBadImage};
use crate::decision_biases::{load_tuning, Biases, TuneReport};
use crate::face_heads::{self, FaceEvidence, FaceHeads, FaceReading};
use crate::labels::NUM_CLASSES;
use crate::model::net::{check_finite_outputs, forward_batch, infer, Net, RunOptions, Tta};
use crate::model::settings::ModelConfig;
use crate::model::task_layout::Layout;
use crate::model::trained::load_trained;
use crate::train::settings::TrainConfig;
use crate::util::section::read;
use crate::run_dir::{RunDir, BEST};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// How the models are loaded and run.
#[derive(Clone, Copy, Debug)]
pub struct InferenceOptions {
    pub device: Device,
    pub tta: Tta,
    /// Apply each run's tuning (`RUN/tune.json`): its decision biases, and the face heads they
    /// were fitted after.
    pub use_biases: bool,
    /// Images per step (0: each run's train.eval_batch_size).
    pub batch_size: usize,
}

/// One trained model (a run's checkpoint: every model of its layout), ready to run.
pub struct TrainedModel {
    pub run: RunDir,
    /// The checkpoint's name (`best`, `last`, ...).
    pub which: String,
    pub layout: Layout,
    /// The run's `model.backbone` (its layout's models may override it).
    pub backbone: String,
    /// The run's `[data]` and `[train]` sections: how its inputs are made and its batches run.
    pub data: DataConfig,
    pub train: TrainConfig,
    nets: Vec<Net>,
    /// How an image file becomes this model's input.
    pub prep: Preprocess,
    /// How a face of a photo is framed for it (`predict --faces`, `serve`).
    pub framing: Framing,
    run_opts: RunOptions,
    batch_size: usize,
}

impl TrainedModel {
    pub fn load(run: &RunDir, which: &str, o: &InferenceOptions) -> Result<TrainedModel> {
        let context = || format!("run {}", run.path().display());
        let trained = load_trained(run, which, o.device).with_context(context)?;
        let train: TrainConfig = read(&trained.config).with_context(context)?;
        let backbone = read::<ModelConfig>(&trained.config).with_context(context)?.backbone;
        let prep = trained.data.preprocess().with_context(context)?;
        let framing = Framing::of_run(run, &trained.data)?;
        let run_opts = RunOptions::new(train.amp, train.channels_last, o.device, o.tta);
        run_opts.prepare_weights(&trained.nets);
        let batch_size = if o.batch_size > 0 { o.batch_size } else { train.eval_batch() };
        Ok(TrainedModel { run: run.clone(), which: which.to_string(), layout: trained.layout, backbone, data: trained.data, train, nets: trained.nets, prep, framing, run_opts, batch_size })
    }

    /// The model's input pipeline.
    pub fn input(&self) -> FramedInput {
        FramedInput { prep: self.prep, framing: self.framing }
    }

    /// The checkpoint file the weights came from.
    pub fn checkpoint_file(&self) -> PathBuf {
        self.run.checkpoint(&self.which)
    }

    /// `[B, 18]` probabilities (CPU) of images already decoded with `self.prep` (uint8 NHWC).
    pub fn probs(&self, images_u8: &Tensor) -> Tensor {
        forward_batch(&self.nets, self.layout, images_u8, &self.run_opts).0.to_device(Device::Cpu)
    }

    /// `[N, 18]` probabilities (CPU) of image files, and which of them could be read: the rows of
    /// unreadable images are zero. Images are decoded in parallel ahead of the device, never all
    /// held in memory.
    pub fn probs_of_files(&self, paths: &[PathBuf], on_bad: OnBadImage) -> Result<(Tensor, Vec<bool>)> {
        let n = paths.len();
        let mut loader = Loader::new(paths.to_vec(), self.prep, 0, self.data.prefetch, on_bad);
        if self.data.face_crop == FaceCrop::Mtcnn {
            let faces = sample_faces(paths, None, self.data.margin()?, on_bad == OnBadImage::Skip)
                .with_context(|| format!("run {} crops to faces (data.face_crop = \"mtcnn\")", self.run.path().display()))?;
            eprintln!("{}: face crops: {}", self.run.path().display(), faces.counts.render());
            loader = loader.with_regions(faces.regions);
        }
        let (probs, _, kept) = infer(&self.nets, self.layout, &loader, (0..n).collect(), self.batch_size, &self.run_opts)?;
        check_finite_outputs(&probs).with_context(|| format!("{}", self.checkpoint_file().display()))?;
        let mut full = Tensor::zeros([n as i64, NUM_CLASSES as i64], (Kind::Float, Device::Cpu));
        let mut read = vec![false; n];
        for &i in &kept {
            read[i] = true;
        }
        if !kept.is_empty() {
            let idx = Tensor::from_slice(&kept.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let _ = full.index_copy_(0, &idx, &probs);
        }
        Ok((full, read))
    }
}

/// What one run argument names: its models, its decision biases, its weight in the vote.
pub struct EnsembleMember {
    /// The argument as given (a run folder, a k-fold run folder or a checkpoint file).
    pub source: PathBuf,
    pub models: Vec<TrainedModel>,
    pub biases: Option<Biases>,
    /// Why the run's tune.json is not applied (its held-out F1 did not rise), to tell the user.
    pub biases_refused: Option<String>,
    /// The second opinion on gender and age its tune.json names, fused before the biases.
    pub face_heads: Option<FaceHeads>,
    pub weight: f64,
}

/// Every model of every run argument.
pub struct Ensemble {
    pub members: Vec<EnsembleMember>,
}

impl Ensemble {
    /// Loads the models the arguments name; `weights`: one per argument (default: equal).
    pub fn load(sources: &[PathBuf], weights: Option<&[f64]>, o: &InferenceOptions) -> Result<Ensemble> {
        if sources.is_empty() {
            bail!("at least one run is needed");
        }
        let weights = match weights {
            Some(w) if w.len() != sources.len() => bail!("--weights has {} values for {} runs", w.len(), sources.len()),
            Some(w) if w.iter().any(|v| !v.is_finite() || *v < 0.0) || w.iter().sum::<f64>() <= 0.0 => {
                bail!("--weights must be non-negative with a positive sum, got {w:?}")
            }
            Some(w) => w.to_vec(),
            None => vec![1.0; sources.len()],
        };
        let mut members = Vec::with_capacity(sources.len());
        for (source, weight) in sources.iter().zip(weights) {
            let (run, models) = models_of(source)?;
            let models = models.iter().map(|(r, which)| TrainedModel::load(r, which, o)).collect::<Result<Vec<_>>>()?;
            // tune.json, read once: its biases, why they are not applied, and its face heads.
            let tuning = if o.use_biases { load_tuning(&run)? } else { None };
            let biases = tuning.as_ref().and_then(TuneReport::applied_biases);
            let biases_refused = tuning.as_ref().and_then(TuneReport::not_applied_reason);
            let face_heads = face_heads::load_for_run(&run, tuning.as_ref().and_then(|t| t.face_heads.as_ref()))?;
            members.push(EnsembleMember { source: source.clone(), models, biases, biases_refused, face_heads, weight });
        }
        Ok(Ensemble { members })
    }

    pub fn models(&self) -> impl Iterator<Item = &TrainedModel> {
        self.members.iter().flat_map(|m| m.models.iter())
    }

    /// The face readings the runs' face heads need (none when no run has them), each once.
    pub fn face_readings(&self) -> Vec<FaceReading> {
        let mut out: Vec<FaceReading> = Vec::new();
        for h in self.members.iter().filter_map(|m| m.face_heads.as_ref()) {
            if !out.contains(&h.meta.reading) {
                out.push(h.meta.reading.clone());
            }
        }
        out
    }

    /// The ensemble's `[N, 18]` probabilities from each model's, given in `models()` order: the
    /// equal-weight vote within a run, its face heads' opinion of each image's face (`faces`:
    /// the features of every reading [`Ensemble::face_readings`] lists), its decision biases,
    /// then the weighted vote of the runs.
    pub fn combine(&self, model_probs: &[Tensor], faces: &FaceEvidence) -> Result<Tensor> {
        let mut next = model_probs.iter();
        let mut run_probs = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let own: Vec<Tensor> = next.by_ref().take(m.models.len()).map(|t| t.shallow_clone()).collect();
            let mut p = soft_vote(&own, &vec![1.0; own.len()]);
            if let Some(h) = &m.face_heads {
                let reading = &h.meta.reading;
                let f = faces.get(&reading.key()).ok_or_else(|| anyhow::anyhow!("{}: no {} face features to fuse its face heads with", m.source.display(), reading.network))?;
                if f.len() as i64 != p.size()[0] {
                    bail!("{} images but face features of {}", p.size()[0], f.len());
                }
                p = h.fuse(&p, f);
            }
            if let Some(b) = &m.biases {
                p = b.adjust(&p);
            }
            run_probs.push(p);
        }
        Ok(soft_vote(&run_probs, &self.members.iter().map(|m| m.weight).collect::<Vec<_>>()))
    }

    /// The distinct input pipelines of the models, in the order they first appear: how an image
    /// is decoded and resized, and a face framed, for [`Ensemble::probs_of_decoded`].
    pub fn pipelines(&self) -> Vec<FramedInput> {
        let mut out: Vec<FramedInput> = Vec::new();
        for m in self.models() {
            let p = m.input();
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// The ensemble's `[B, 18]` probabilities (CPU) of B images that arrived already decoded
    /// (`serve`): `inputs[i]` is their uint8 NHWC batch decoded and resized by `pipelines()[i]`;
    /// `faces`, their faces' features for the runs' face heads. The same models, TTA, votes, face
    /// heads and biases as [`Ensemble::probs_of_files`].
    pub fn probs_of_decoded(&self, inputs: &[Tensor], faces: &FaceEvidence) -> Result<Tensor> {
        let pipelines = self.pipelines();
        if inputs.len() != pipelines.len() {
            bail!("{} input batches for {} input pipelines", inputs.len(), pipelines.len());
        }
        let mut all = Vec::new();
        for model in self.models() {
            let i = pipelines.iter().position(|p| *p == model.input()).expect("every model's pipeline is listed");
            let want = [inputs[i].size()[1], inputs[i].size()[2]];
            if want != [model.prep.height as i64, model.prep.width as i64] {
                bail!("input batch {i} is {}x{}, its pipeline is {}x{}", want[1], want[0], model.prep.width, model.prep.height);
            }
            all.push(model.probs(&inputs[i]));
        }
        self.combine(&all, faces)
    }

    /// The ensemble's `[N, 18]` probabilities of image files, and which images every model read;
    /// `faces`: the files' largest faces' features for the runs' face heads.
    pub fn probs_of_files(&self, paths: &[PathBuf], on_bad: OnBadImage, faces: &FaceEvidence) -> Result<(Tensor, Vec<bool>)> {
        let mut all = Vec::new();
        let mut read = vec![true; paths.len()];
        for model in self.models() {
            let (p, seen) = model.probs_of_files(paths, on_bad)?;
            for (r, s) in read.iter_mut().zip(seen) {
                *r &= s;
            }
            all.push(p);
        }
        Ok((self.combine(&all, faces)?, read))
    }
}

/// Soft vote: the weighted mean of `[N, 18]` probabilities.
pub fn soft_vote(probs: &[Tensor], weights: &[f64]) -> Tensor {
    let total: f64 = weights.iter().sum();
    let mut acc = Tensor::zeros_like(&probs[0]);
    for (p, w) in probs.iter().zip(weights) {
        acc += p * (*w / total);
    }
    acc
}

/// The run folder an argument belongs to, and its models as (run, checkpoint): a run's best
/// checkpoint, each fold's best for a k-fold run, or one checkpoint file of a run
/// (`RUN/last.safetensors`).
fn models_of(arg: &Path) -> Result<(RunDir, Vec<(RunDir, String)>)> {
    if arg.is_file() {
        let which = arg.file_stem().and_then(|s| s.to_str()).filter(|_| arg.extension().is_some_and(|e| e == "safetensors"));
        let (Some(which), Some(run)) = (which, arg.parent()) else {
            bail!("{}: expected a run folder or a checkpoint file RUN/<name>.safetensors", arg.display());
        };
        let run = RunDir::new(if run.as_os_str().is_empty() { Path::new(".") } else { run });
        return Ok((run.clone(), vec![(run, which.to_string())]));
    }
    let run = RunDir::new(arg);
    let members = run.member_runs()?.into_iter().map(|r| (r, BEST.to_string())).collect();
    Ok((run, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_vote_is_the_weighted_mean() {
        let a = Tensor::from_slice(&[0.8f32, 0.2]).view([1, 2]);
        let b = Tensor::from_slice(&[0.2f32, 0.8]).view([1, 2]);
        let v = Vec::<f32>::try_from(soft_vote(&[a, b], &[3.0, 1.0]).view([-1])).unwrap();
        // (3*0.8 + 1*0.2)/4 = 0.65, (3*0.2 + 1*0.8)/4 = 0.35
        assert!((v[0] - 0.65).abs() < 1e-6 && (v[1] - 0.35).abs() < 1e-6, "{v:?}");
    }
}
