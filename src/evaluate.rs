//! Evaluation of trained models on labelled images: loss, accuracy, macro F1 (overall and per
//! task) and the 18x18 confusion matrix, its text rendering, and `masklab eval` on a run.
use crate::device::DeviceChoice;
use crate::data::loader::Loader;
use crate::data::prepared::{labelled_eval_set, prepare, PrepareSettings, Prepared};
use crate::run_dir::heldout::{score_intervals, HeldOutRow};
use crate::metrics::bootstrap::{Resampling, ScoreInterval};
use crate::labels::{AgeBounds, Class, NUM_CLASSES};
use crate::metrics::{scores, Confusion, Evaluation};
use crate::model::net::{check_finite_outputs, infer, Net, RunOptions};
use crate::model::settings::Amp;
use crate::model::task_layout::{Head, Layout};
use crate::model::trained::load_trained;
use crate::run_dir::metrics_log::History;
use crate::run_dir::{RunDir, BEST, LAST};
use crate::model::loss::{head_losses, Loss};
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::Tensor;

/// An evaluation with the per-image probabilities behind it.
pub struct Evaluated {
    pub eval: Evaluation,
    /// `[N, 18]` on the CPU, row i for sample `kept[i]`.
    pub probs: Tensor,
    /// Indices of the samples that were read (all of `order` unless bad images were skipped).
    pub kept: Vec<usize>,
}

impl Evaluated {
    /// One labelled row per evaluated image; `fold` is the k-fold fold it was held out in (0: none).
    pub fn rows(&self, prepared: &Prepared, fold: usize) -> Result<Vec<HeldOutRow>> {
        let values = Vec::<f32>::try_from(self.probs.contiguous().view([-1])).context("probabilities")?;
        Ok(self
            .kept
            .iter()
            .enumerate()
            .map(|(r, &i)| {
                let mut probs = [0f32; NUM_CLASSES];
                probs.copy_from_slice(&values[r * NUM_CLASSES..(r + 1) * NUM_CLASSES]);
                HeldOutRow { path: prepared.samples[i].path.display().to_string(), person: prepared.person_name(i), fold, truth: prepared.classes[i], probs }
            })
            .collect())
    }
}

/// Runs the models over `order` and scores their 18-way predictions against `classes`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    nets: &[Net],
    losses: &[Vec<(Head, Loss)>],
    layout: Layout,
    loader: &Loader,
    classes: &[usize],
    order: Vec<usize>,
    batch_size: usize,
    run: &RunOptions,
) -> Result<Evaluated> {
    let (probs, outputs, kept) = infer(nets, layout, loader, order, batch_size, run)?;
    score_outputs(losses, classes, probs, &outputs, kept, run)
}

/// Scores what [`infer`] returned (probabilities, each model's raw outputs, the samples read):
/// also for outputs gathered from several processes that each inferred a share of the items.
pub fn score_outputs(losses: &[Vec<(Head, Loss)>], classes: &[usize], probs: Tensor, outputs: &[Tensor], kept: Vec<usize>, run: &RunOptions) -> Result<Evaluated> {
    check_finite_outputs(&probs)?;
    let truth = Tensor::from_slice(&kept.iter().map(|&i| classes[i] as i64).collect::<Vec<_>>());
    let mut loss = 0.0;
    let mut conf = Confusion::new(NUM_CLASSES);
    if !kept.is_empty() {
        for (net_heads, out) in losses.iter().zip(outputs) {
            for (head, l) in net_heads {
                let logits = head.slice(out).to_device(run.device);
                let target = head.task.target(&truth).to_device(run.device);
                loss += tch::no_grad(|| l.forward(&logits, &target).double_value(&[]));
            }
        }
        conf.add_tensors(&truth, &probs.argmax(1, false));
    }
    let confusion = (0..NUM_CLASSES).map(|r| conf.counts[r * NUM_CLASSES..(r + 1) * NUM_CLASSES].to_vec()).collect();
    Ok(Evaluated { eval: Evaluation { loss, scores: scores(&conf), images: kept.len(), confusion, intervals: None }, probs, kept })
}

/// Which images `masklab eval` scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    /// The run's person-level validation split.
    Val,
    /// Every training image.
    All,
    /// `DATA/eval/` scored against `DATA/eval/answers.csv`.
    Eval,
}

/// What `masklab eval` takes from the run's config besides its models: how the run read and
/// split its data, and how it ran validation batches (its `[train]` settings).
#[derive(Clone, Debug)]
pub struct EvalSettings {
    pub prepare: PrepareSettings,
    /// Torch CPU threads (0: libtorch's default).
    pub threads: usize,
    pub eval_batch: usize,
    pub amp: Amp,
    pub channels_last: bool,
    /// How the scores' 95% intervals are drawn (None: no intervals).
    pub intervals: Option<Resampling>,
}

/// `masklab eval`: a run's best (or last) checkpoint on a labelled split of `data`, with the
/// run's own loss settings. `auto` class weights use the run's training split, as in training,
/// so the validation loss equals the one training logged for that checkpoint.
pub fn eval_run(run: &RunDir, settings: &EvalSettings, data: &Path, split: EvalSplit, last: bool, device: DeviceChoice) -> Result<Evaluation> {
    let device = device.resolve()?;
    let trained = load_trained(run, if last { LAST } else { BEST }, device)?;
    let (layout, nets) = (trained.layout, trained.nets);
    let cfg = &settings.prepare;
    if settings.threads > 0 {
        tch::set_num_threads(settings.threads as i32); // as the run validated
    }
    let prepared = match split {
        EvalSplit::Eval => labelled_eval_set(data, cfg)?,
        EvalSplit::Val | EvalSplit::All => prepare(data, cfg)?,
    };
    let order = match split {
        EvalSplit::Val => prepared.val_idx.clone(),
        // Every photo once: not the copies a run with `augment.synth_mask_copies` trains on.
        EvalSplit::All | EvalSplit::Eval => (0..prepared.photos()).collect(),
    };
    if order.is_empty() {
        bail!("no images to evaluate in the {} split of {}", split_name(split), data.display());
    }
    let train_counts = training_class_counts(run, cfg, data)?;
    let losses = head_losses(&nets.iter().map(Net::loss_settings).collect::<Vec<_>>(), layout, &train_counts, device)?;
    let run_opts = RunOptions::new(settings.amp, settings.channels_last, device, Default::default());
    run_opts.prepare_weights(&nets);
    let loader = prepared.loader(cfg);
    let which = run.checkpoint(if last { LAST } else { BEST });
    let evaluated = evaluate(&nets, &losses, layout, &loader, &prepared.classes, order, settings.eval_batch, &run_opts).with_context(|| format!("{}", which.display()))?;
    let mut eval = evaluated.eval.clone();
    if let Some(resampling) = settings.intervals {
        eval.intervals = Some(score_intervals(&evaluated.rows(&prepared, 0)?, resampling)?);
    }
    Ok(eval)
}

fn split_name(split: EvalSplit) -> &'static str {
    match split {
        EvalSplit::Val => "val",
        EvalSplit::All => "all",
        EvalSplit::Eval => "eval",
    }
}

/// The run's training images per class: from its metrics log, else (runs that predate that
/// record) from the training split of `data` as the run's config draws it.
fn training_class_counts(run: &RunDir, cfg: &PrepareSettings, data: &Path) -> Result<Vec<u64>> {
    let logged = History::read(&run.metrics_file()).ok().and_then(|h| h.start.train_classes).filter(|c| c.len() == NUM_CLASSES);
    match logged {
        Some(counts) => Ok(counts),
        None => {
            let prepared = prepare(data, cfg).with_context(|| format!("{}: the run logged no class counts; reading its training split", run.path().display()))?;
            Ok(prepared.class_counts(&prepared.train_idx))
        }
    }
}

/// The evaluation as a human reads it: scores, then the confusion matrix with class labels.
pub fn render_evaluation(e: &Evaluation, bounds: &AgeBounds) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let sc = &e.scores;
    let _ = writeln!(s, "images    {}", e.images);
    let _ = writeln!(s, "loss      {:.4}", e.loss);
    let _ = writeln!(s, "accuracy  {:.4}", sc.accuracy);
    let _ = writeln!(s, "macro F1  {:.4}  (mask {:.4}, gender {:.4}, age {:.4})", sc.f1, sc.f1_mask, sc.f1_gender, sc.f1_age);
    if let Some(i) = &e.intervals {
        let b = |x: &ScoreInterval| x.bracket();
        let _ = writeln!(s, "95% CI    {}  (mask {}, gender {}, age {})", b(&i.f1), b(&i.f1_mask), b(&i.f1_gender), b(&i.f1_age));
        let _ = writeln!(s, "          {}", i.method());
    }
    let _ = writeln!(s, "\nconfusion (rows: true class, columns: predicted class)");
    let _ = write!(s, "{:>26}", "");
    for c in 0..NUM_CLASSES {
        let _ = write!(s, "{c:>5}");
    }
    s.push('\n');
    for (r, row) in e.confusion.iter().enumerate() {
        let label = Class::decode(r).map(|c| c.label(bounds)).unwrap_or_default();
        let _ = write!(s, "{r:>2} {label:<23}");
        for v in row {
            let _ = write!(s, "{v:>5}");
        }
        s.push('\n');
    }
    s
}
