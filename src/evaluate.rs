//! Evaluation of trained models on labelled images: loss, accuracy, macro F1 (overall and per
//! task) and the 18x18 confusion matrix, and its text rendering.
use crate::config::Config;
use crate::data::layout::{read_eval, Sample};
use crate::labels::{AgeBounds, Class, NUM_CLASSES};
use crate::data::loader::Loader;
use crate::metrics::{scores, Confusion, Scores};
use crate::model::layout::{Head, Layout};
use crate::model::net::{infer, Net, RunOptions};
use crate::predictions::PredictionRow;
use crate::train::loss::Loss;
use crate::train::trainer::Prepared;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Tensor};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    pub loss: f64,
    #[serde(flatten)]
    pub scores: Scores,
    pub images: usize,
    /// Rows are true classes, columns predicted classes.
    pub confusion: Vec<Vec<u64>>,
}

/// Each model's heads with their configured losses; `auto` class weights count `train_idx`.
pub fn head_losses(nets: &[Net], layout: Layout, classes: &[usize], train_idx: &[usize], device: Device) -> Result<Vec<Vec<(Head, Loss)>>> {
    let all = Tensor::from_slice(&train_idx.iter().map(|&i| classes[i] as i64).collect::<Vec<_>>());
    nets.iter()
        .enumerate()
        .map(|(k, net)| {
            layout
                .heads()
                .into_iter()
                .filter(|h| h.model == k)
                .map(|head| {
                    let mut counts = vec![0; head.task.classes() as usize];
                    for c in Vec::<i64>::try_from(head.task.target(&all)).unwrap_or_default() {
                        counts[c as usize] += 1;
                    }
                    let loss = Loss::new(&net.settings.loss, head.task.classes(), &counts, device)
                        .with_context(|| format!("model `{}`", net.name))?;
                    Ok((head, loss))
                })
                .collect()
        })
        .collect()
}

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
    pub fn rows(&self, prepared: &Prepared, fold: usize) -> Result<Vec<PredictionRow>> {
        let values = Vec::<f32>::try_from(self.probs.contiguous().view([-1])).context("probabilities")?;
        Ok(self
            .kept
            .iter()
            .enumerate()
            .map(|(r, &i)| {
                let s = &prepared.samples[i];
                let mut probs = [0f32; NUM_CLASSES];
                probs.copy_from_slice(&values[r * NUM_CLASSES..(r + 1) * NUM_CLASSES]);
                let person = prepared.set.people.get(s.person).map(|p| p.folder.clone()).unwrap_or_else(|| s.person.to_string());
                PredictionRow { path: s.path.display().to_string(), person, fold, truth: prepared.classes[i], probs }
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
    let truth = Tensor::from_slice(&kept.iter().map(|&i| classes[i] as i64).collect::<Vec<_>>());
    let mut loss = 0.0;
    let mut conf = Confusion::new(NUM_CLASSES);
    if !kept.is_empty() {
        for (net_heads, out) in losses.iter().zip(&outputs) {
            for (head, l) in net_heads {
                let logits = head.slice(out).to_device(run.device);
                let target = head.task.target(&truth).to_device(run.device);
                loss += tch::no_grad(|| l.forward(&logits, &target).double_value(&[]));
            }
        }
        conf.add_tensors(&truth, &probs.argmax(1, false));
    }
    let confusion = (0..NUM_CLASSES).map(|r| conf.counts[r * NUM_CLASSES..(r + 1) * NUM_CLASSES].to_vec()).collect();
    Ok(Evaluated { eval: Evaluation { loss, scores: scores(&conf), images: kept.len(), confusion }, probs, kept })
}

/// The eval layout as a labelled set: `DATA/eval/info.csv` images with `DATA/eval/answers.csv` classes.
pub fn labelled_eval_set(data: &Path, cfg: &Config) -> Result<Prepared> {
    let dir = data.join("eval");
    let eval = read_eval(&dir, cfg.data.skip_bad)?;
    let key_path = dir.join("answers.csv");
    let mut reader = csv::Reader::from_path(&key_path).with_context(|| format!("cannot read {} (the answer key)", key_path.display()))?;
    let mut key = std::collections::HashMap::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.with_context(|| format!("{}:{}", key_path.display(), i + 2))?;
        let class: usize = r.get(1).unwrap_or("").trim().parse().map_err(|_| anyhow!("{}:{}: ans must be 0..17", key_path.display(), i + 2))?;
        if class >= NUM_CLASSES {
            bail!("{}:{}: ans must be 0..17, got {class}", key_path.display(), i + 2);
        }
        key.insert(r.get(0).unwrap_or("").to_string(), class);
    }
    let mut samples = Vec::with_capacity(eval.image_ids.len());
    for (id, path) in eval.image_ids.iter().zip(&eval.paths) {
        let class = *key.get(id).ok_or_else(|| anyhow!("{}: no answer for {id}", key_path.display()))?;
        samples.push(Sample { path: path.clone(), person: samples.len(), class: Class::decode(class).expect("checked") });
    }
    let set = crate::data::layout::TrainSet {
        root: data.to_path_buf(),
        people: Vec::new(),
        skipped_files: Vec::new(),
        relabel_file: None,
        relabeled: 0,
        problems: eval.problems,
    };
    Ok(Prepared {
        classes: samples.iter().map(|s| s.class.encode()).collect(),
        train_idx: Vec::new(),
        val_idx: (0..samples.len()).collect(),
        samples,
        set,
        prep: cfg.data.preprocess()?,
    })
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
