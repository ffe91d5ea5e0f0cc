//! The page of one training run: summary, learning curves, confusion matrices, per-class
//! precision/recall/F1, class distribution of the splits, the worst validation mistakes and the
//! resolved config.
use super::html::{cards, data_uri, escape, facts, table, Card, Page};
use super::mistakes::{worst, Mistake};
use super::plots::{confusion_png, grouped_bars_png, line_chart_png, BarGroup, LineChart, Series, PALETTE};
use plotters::chart::SeriesLabelPosition;
use super::run::{config_values, RunRecord};
use crate::labels::{AgeBounds, Class, Gender, Mask, NUM_CLASSES};
use crate::metrics::Confusion;
use anyhow::Result;
use std::fmt::Write;

/// The figures and page of a run; figure files go to `figure_dir` beside the page.
pub fn run_page(run: &RunRecord, worst_count: usize, figure_dir: &str) -> Result<Page> {
    let bounds = run.bounds();
    let mut page = Page::new(&format!("Run report: {}", run.name()), &run.dir.display().to_string(), figure_dir);
    summary(&mut page, run);
    curves(&mut page, run)?;
    match &run.best {
        Some(best) => {
            let conf = confusion_of(&best.eval.confusion);
            confusions(&mut page, &conf, &bounds, &format!("validation, best epoch {}", best.epoch))?;
            per_class(&mut page, &conf, &bounds, "validation at the best epoch")?;
        }
        None => {
            page.section("confusion", "Confusion matrices");
            page.html("<p class=\"note\">No best checkpoint with a validation evaluation yet (no validation split, or no epoch finished).</p>");
        }
    }
    distribution(&mut page, run, &bounds)?;
    mistakes_section(&mut page, run, &bounds, worst_count)?;
    synth_section(&mut page, run);
    config_section(&mut page, &run.config_text);
    Ok(page)
}

pub fn confusion_of(rows: &[Vec<u64>]) -> Confusion {
    let n = rows.len();
    Confusion { n, counts: rows.iter().flatten().copied().collect() }
}

fn rows_of(conf: &Confusion) -> Vec<Vec<u64>> {
    conf.counts.chunks(conf.n.max(1)).map(|r| r.to_vec()).collect()
}

pub fn class_labels(bounds: &AgeBounds) -> Vec<String> {
    Class::all().map(|c| c.label(bounds)).collect()
}

fn summary(page: &mut Page, run: &RunRecord) {
    let cfg = &run.settings;
    let values = config_values(&cfg.config);
    let v = |k: &str| values.get(k).cloned().unwrap_or_default();
    let last_epoch = run.epochs.last().map(|e| e.epoch).unwrap_or(0);
    if let Some(best) = &run.best {
        let s = &best.eval.scores;
        let i = best.eval.intervals.as_ref();
        page.html(&cards(&[
            Card::new("macro F1 (18 classes)", format!("{:.4}", s.f1)).with_interval(i.map(|i| &i.f1)),
            Card::new("accuracy", format!("{:.4}", s.accuracy)),
            Card::new("mask F1", format!("{:.4}", s.f1_mask)).with_interval(i.map(|i| &i.f1_mask)),
            Card::new("gender F1", format!("{:.4}", s.f1_gender)).with_interval(i.map(|i| &i.f1_gender)),
            Card::new("age F1", format!("{:.4}", s.f1_age)).with_interval(i.map(|i| &i.f1_age)),
            Card::new("best epoch", format!("{} of {last_epoch}", best.epoch)),
        ]));
        if let Some(i) = i {
            page.html(&format!("<p class=\"sub\">{}: a person's photos are resampled together, so the interval is that of a new set of people.</p>", escape(&i.method())));
        }
    }
    let stopped = match (run.early_stop, &run.stop_reason) {
        (Some(e), Some(reason)) => format!("{last_epoch} of {} (stopped after epoch {e}: {reason})", cfg.train.epochs),
        (Some(e), None) => format!("{last_epoch} of {} (early stop after epoch {e}: no better {} for {} epochs)", cfg.train.epochs, cfg.train.monitor, cfg.train.patience),
        (None, _) if last_epoch < cfg.train.epochs => format!("{last_epoch} of {} (not finished)", cfg.train.epochs),
        (None, _) => format!("{last_epoch} of {}", cfg.train.epochs),
    };
    let seconds: f64 = run.epochs.iter().map(|e| e.seconds).sum();
    let opt = |k: Option<u64>| k.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let mut rows = vec![
        ("dataset", run.start.data.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "-".into())),
        ("model", format!("{} ({} layout), input {} px, crop {}", v("model.backbone"), cfg.layout, cfg.data.size, cfg.data.crop)),
        ("optimiser", format!("{} lr {} weight decay {}, schedule {} (warmup {} epochs)", v("optim.kind"), v("optim.lr"), v("optim.weight_decay"), v("schedule.kind"), v("schedule.warmup_epochs"))),
        ("loss", format!("{} (label smoothing {}, class weights {})", v("loss.kind"), v("loss.label_smoothing"), v("loss.class_weights"))),
        ("sampler", v("sampler.kind")),
        ("batch size", cfg.train.batch_size.to_string()),
        ("epochs", stopped),
        ("best checkpoint by", cfg.train.monitor.to_string()),
        ("images", format!("{} train, {} validation ({} people; validation share {})", opt(run.start.train_images), opt(run.start.val_images), opt(run.start.people), cfg.data.val_ratio)),
        ("device", run.start.device.clone().unwrap_or_else(|| "-".into())),
        ("training time", format!("{:.0} s ({:.1} s per epoch)", seconds, seconds / run.epochs.len().max(1) as f64)),
        ("seed", cfg.train.seed.to_string()),
    ];
    if let Some(f) = &run.start.face_crop {
        rows.insert(2, ("face crop", format!("MTCNN boxes (margin {}): {}", cfg.data.face_margin, f.render())));
    }
    if cfg.data.folds >= 2 {
        rows.insert(1, ("k-fold", format!("fold {} of {}", cfg.data.fold, cfg.data.folds)));
    }
    if let Some(best) = &run.best {
        rows.push(("validation loss at the best epoch", format!("{:.4} ({} images)", best.eval.loss, best.eval.images)));
    }
    rows.extend(provenance_rows(run));
    page.section("summary", "Summary");
    page.html(&facts(&rows));
}

/// Who started the run and from what, and who resumed it.
fn provenance_rows(run: &RunRecord) -> Vec<(&'static str, String)> {
    let told = |p: &crate::util::provenance::Provenance| format!("{}, {} in {}: {}", p.summary(), p.at, p.working_dir, p.command);
    let mut rows = vec![(
        "started by",
        run.start.provenance.as_ref().map(told).unwrap_or_else(|| "- (not recorded: a run from before masklab recorded who ran it)".into()),
    )];
    for r in &run.resumes {
        rows.push(("resumed by", format!("after epoch {}: {}", r.epoch, r.provenance.as_ref().map(told).unwrap_or_else(|| "-".into()))));
    }
    rows
}

fn curves(page: &mut Page, run: &RunRecord) -> Result<()> {
    page.section("curves", "Learning curves");
    if run.epochs.is_empty() {
        page.html("<p class=\"note\">No epoch has finished yet.</p>");
        return Ok(());
    }
    let best_mark = run.best.as_ref().map(|b| (b.epoch as f64, format!("best epoch {}", b.epoch)));
    let epoch_points = |f: &dyn Fn(&crate::run_dir::metrics_log::EpochLine) -> Option<f64>| -> Vec<(f64, f64)> {
        run.epochs.iter().filter_map(|e| f(e).map(|y| (e.epoch as f64, y))).collect()
    };
    let mut loss = vec![
        Series { name: "train loss (epoch mean)".into(), points: epoch_points(&|e| Some(e.train_loss)), markers: true, colour: PALETTE[0] },
        Series { name: "validation loss".into(), points: epoch_points(&|e| e.val.map(|v| v.loss)), markers: true, colour: PALETTE[1] },
    ];
    // A single log interval draws no line; the epoch means say the same.
    if run.steps.len() >= 2 {
        let steps: Vec<(f64, f64)> = run.steps.iter().map(|s| (run.step_epoch(s), s.loss)).collect();
        loss.insert(0, Series { name: "train loss (per log interval)".into(), points: steps, markers: false, colour: RGB_LIGHT_BLUE });
    }
    let loss_png = line_chart_png(&LineChart {
        title: "Loss".into(),
        x_desc: "epoch".into(),
        y_desc: "loss (sum over the heads)".into(),
        series: loss,
        y_range: None,
        mark_x: best_mark.clone(),
        scientific: false,
        legend: SeriesLabelPosition::UpperRight,
    })?;
    let score = |name: &str, colour, f: fn(&crate::run_dir::metrics_log::ValScores) -> f64| Series {
        name: name.into(),
        points: epoch_points(&|e| e.val.as_ref().map(f)),
        markers: true,
        colour,
    };
    let f1_png = line_chart_png(&LineChart {
        title: "Validation scores".into(),
        x_desc: "epoch".into(),
        y_desc: "score".into(),
        series: vec![
            score("macro F1 (18 classes)", PALETTE[3], |v| v.f1),
            score("mask F1", PALETTE[0], |v| v.f1_mask),
            score("gender F1", PALETTE[2], |v| v.f1_gender),
            score("age F1", PALETTE[4], |v| v.f1_age),
            score("accuracy", PALETTE[9], |v| v.accuracy),
        ],
        y_range: Some((0.0, 1.05)),
        mark_x: best_mark,
        scientific: false,
        legend: SeriesLabelPosition::LowerRight,
    })?;
    let mut lr: Vec<(f64, f64)> = run.steps.iter().map(|s| (run.step_epoch(s), s.lr)).chain(run.epochs.iter().map(|e| (e.epoch as f64, e.lr))).collect();
    lr.sort_by(|a, b| a.0.total_cmp(&b.0));
    let lr_png = line_chart_png(&LineChart {
        title: "Learning rate".into(),
        x_desc: "epoch".into(),
        y_desc: "learning rate".into(),
        series: vec![Series {
            name: format!("{} schedule from {} (the layout's first model)", config_values(&run.settings.config).get("schedule.kind").cloned().unwrap_or_default(), run.settings.optim_lr()),
            points: lr,
            markers: true,
            colour: PALETTE[2],
        }],
        y_range: None,
        mark_x: None,
        scientific: true,
        legend: SeriesLabelPosition::UpperRight,
    })?;
    page.begin_row();
    page.figure("loss.png", loss_png, "Training and validation loss per epoch");
    page.figure("scores.png", f1_png, "Validation macro F1 overall and per task, and accuracy");
    page.figure("learning_rate.png", lr_png, "Learning rate over training");
    page.end_row();
    Ok(())
}

const RGB_LIGHT_BLUE: plotters::style::RGBColor = plotters::style::RGBColor(158, 202, 225);

/// The 18x18 matrix and the mask, gender and age matrices derived from it.
pub fn confusions(page: &mut Page, conf: &Confusion, bounds: &AgeBounds, what: &str) -> Result<()> {
    page.section("confusion", "Confusion matrices");
    let labels = class_labels(bounds);
    page.figure("confusion_18.png", confusion_png(&rows_of(conf), &labels, &format!("18 classes ({what})"))?, "Confusion of the 18 classes");
    let mask: Vec<String> = Mask::ALL.iter().map(|m| m.name().to_string()).collect();
    let gender: Vec<String> = Gender::ALL.iter().map(|g| g.name().to_string()).collect();
    let age: Vec<String> = crate::labels::AgeBand::ALL.iter().map(|b| bounds.band_label(*b)).collect();
    page.begin_row();
    page.figure("confusion_mask.png", confusion_png(&rows_of(&conf.reduce(3, |c| c / 6)), &mask, "Mask")?, "Mask state");
    page.figure("confusion_gender.png", confusion_png(&rows_of(&conf.reduce(2, |c| (c / 3) % 2)), &gender, "Gender")?, "Gender");
    page.figure("confusion_age.png", confusion_png(&rows_of(&conf.reduce(3, |c| c % 3)), &age, "Age band")?, "Age band");
    page.end_row();
    Ok(())
}

/// Precision, recall and F1 per class as bars and as a table with each class's main confusion.
pub fn per_class(page: &mut Page, conf: &Confusion, bounds: &AgeBounds, what: &str) -> Result<()> {
    page.section("per-class", "Per-class precision, recall and F1");
    let labels = class_labels(bounds);
    let stats = conf.per_class();
    let categories: Vec<String> = labels.iter().zip(&stats).map(|(l, s)| format!("{l} (n={})", s.support)).collect();
    let n = conf.n;
    // A class neither present nor predicted has no scores: its bars stay empty and unlabelled.
    let absent: Vec<bool> = (0..n).map(|c| (0..n).all(|o| conf.counts[c * n + o] == 0 && conf.counts[o * n + c] == 0)).collect();
    let group = |name: &str, colour, f: fn(&crate::metrics::ClassStats) -> f64| {
        let values: Vec<f64> = stats.iter().map(f).collect();
        let texts = values.iter().zip(&absent).map(|(v, &a)| if a { String::new() } else { format!("{v:.2}") }).collect();
        BarGroup { name: name.into(), texts, values, colour }
    };
    let png = grouped_bars_png(
        &format!("Per-class scores ({what})"),
        &categories,
        &[group("precision", PALETTE[0], |s| s.precision), group("recall", PALETTE[1], |s| s.recall), group("F1", PALETTE[2], |s| s.f1)],
        "score",
        1.0,
    )?;
    page.begin_row();
    page.figure("per_class.png", png, "Precision, recall and F1 per class (n: true images of the class)");
    let rows: Vec<Vec<String>> = stats
        .iter()
        .enumerate()
        .map(|(c, s)| {
            let row = &conf.counts[c * n..(c + 1) * n];
            let confused = (0..n).filter(|&p| p != c && row[p] > 0).max_by_key(|&p| (row[p], std::cmp::Reverse(p)));
            let score = |v: f64| if absent[c] { "-".to_string() } else { format!("{v:.3}") };
            vec![
                c.to_string(),
                labels[c].clone(),
                s.support.to_string(),
                score(s.precision),
                score(s.recall),
                score(s.f1),
                confused.map(|p| format!("{} ({})", labels[p], row[p])).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    page.html(&table(&["class", "label", "true images", "precision", "recall", "F1", "most often taken for"], &rows));
    page.end_row();
    Ok(())
}

fn distribution(page: &mut Page, run: &RunRecord, bounds: &AgeBounds) -> Result<()> {
    page.section("distribution", "Class distribution");
    let val = run.start.val_classes.clone().or_else(|| run.best.as_ref().map(|b| b.eval.confusion.iter().map(|r| r.iter().sum()).collect()));
    let mut groups = Vec::new();
    for (name, counts, colour) in [("train", run.start.train_classes.clone(), PALETTE[0]), ("validation", val, PALETTE[1])] {
        let Some(counts) = counts else { continue };
        let total: u64 = counts.iter().sum::<u64>().max(1);
        groups.push(BarGroup {
            name: format!("{name} ({} images)", counts.iter().sum::<u64>()),
            values: counts.iter().map(|&c| c as f64 * 100.0 / total as f64).collect(),
            texts: counts.iter().map(|c| c.to_string()).collect(),
            colour,
        });
    }
    if run.start.train_classes.is_none() {
        page.html("<p class=\"note\">This run's metrics.jsonl predates per-class counts of the training split; only the validation split is shown.</p>");
    }
    if groups.is_empty() {
        page.html("<p class=\"note\">No class counts recorded for this run.</p>");
        return Ok(());
    }
    let x_max = groups.iter().flat_map(|g| g.values.iter().copied()).fold(1.0, f64::max);
    let png = grouped_bars_png("Images per class in each split", &class_labels(bounds), &groups, "share of the split's images (%); numbers: images", x_max)?;
    page.figure("class_distribution.png", png, "Class distribution of the training and validation splits");
    Ok(())
}

fn mistakes_section(page: &mut Page, run: &RunRecord, bounds: &AgeBounds, count: usize) -> Result<()> {
    page.section("mistakes", "Worst validation mistakes");
    let Some(rows) = run.val_predictions()? else {
        page.html("<p class=\"note\">No val_predictions.csv in this run (no validation split, or a run from before it was written).</p>");
        return Ok(());
    };
    let found = worst(&rows, count, run.start.data.as_deref());
    let wrong = rows.iter().filter(|r| r.predicted() != r.truth).count();
    page.text(&format!(
        "{wrong} of {} validation images are wrong at the best epoch; the {} below got the highest probability for a wrong class.",
        rows.len(),
        found.len()
    ));
    page.html(&mistakes_grid(&found, &class_labels(bounds)));
    Ok(())
}

pub fn mistakes_grid(found: &[Mistake], labels: &[String]) -> String {
    let mut s = String::from("<div class=\"mistakes\">\n");
    for m in found {
        let file = std::path::Path::new(&m.row.path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let image = match &m.thumbnail {
            Ok(jpeg) => format!("<img src=\"{}\" alt=\"{}\">", data_uri("image/jpeg", jpeg), escape(&m.row.path)),
            Err(e) => format!("<div class=\"note\">image not shown: {}</div>", escape(e)),
        };
        let _ = writeln!(
            s,
            "<div class=\"mistake\" title=\"{}\">{image}<div class=\"t\">true: {}</div><div class=\"p\">predicted: {} ({:.0}%)</div><div>p(true class) {:.1}%</div><div>{} / {}</div></div>",
            escape(&m.row.path),
            escape(&labels[m.row.truth.min(NUM_CLASSES - 1)]),
            escape(&labels[m.predicted]),
            m.confidence * 100.0,
            m.row.probs[m.row.truth] * 100.0,
            escape(&m.row.person),
            escape(&file),
        );
    }
    s.push_str("</div>\n");
    s
}

/// What `augment.synth_mask` (and `synth_mask_on_masked`) painted: a row of training samples as
/// the model saw them.
fn synth_section(page: &mut Page, run: &RunRecord) {
    let cfg = run.settings.prepare_settings();
    if cfg.synth_mask <= 0.0 && cfg.synth_mask_on_masked <= 0.0 {
        return;
    }
    page.section("synthetic-masks", "Synthetic masks");
    // The start line counts masked samples within synth_mask_eligible.
    let over = run.start.synth_mask_on_masked_eligible;
    if cfg.synth_mask > 0.0 {
        let unmasked = run.start.synth_mask_eligible.map(|n| n.saturating_sub(over.unwrap_or(0)));
        let eligible = match run.start.synth_mask_copies {
            Some(copies) => format!(" (augment.synth_mask_copies: {copies} copies of the unmasked training photos with landmarks, each epoch beside the photos, which stay unmasked)"),
            None => unmasked.map(|n| format!(" ({n} training samples eligible: unmasked, with landmarks)")).unwrap_or_default(),
        };
        let how = match cfg.synth_mask_style {
            crate::data::augment::SynthMaskStyle::Rendered => "a rendered mask (augment.synth_mask_style = \"rendered\")",
            crate::data::augment::SynthMaskStyle::Painted => "a painted mask (augment.synth_mask_style = \"painted\")",
        };
        page.text(&format!("augment.synth_mask = {}: each epoch, an eligible training sample gets {how} with this probability{eligible}.", cfg.synth_mask));
    }
    if cfg.synth_mask_on_masked > 0.0 {
        let eligible = over.map(|n| format!(" ({n} eligible)")).unwrap_or_default();
        page.text(&format!("augment.synth_mask_on_masked = {}: each epoch, a training sample of a correctly masked photo with landmarks gets a worn rendered mask over its own with this probability{eligible}, its label unchanged.", cfg.synth_mask_on_masked));
    }
    page.text("Samples painted in epoch 1, as the model saw them:");
    let Some(data) = run.start.data.as_deref() else {
        page.html("<p class=\"note\">The run logged no dataset folder.</p>");
        return;
    };
    match crate::data::augment::mask_examples::painted_examples(data, &cfg, 8) {
        Ok(examples) if !examples.is_empty() => {
            let mut s = String::from("<div class=\"mistakes\">\n");
            for e in &examples {
                let _ = writeln!(s, "<div class=\"mistake\" title=\"{}\"><img src=\"{}\" alt=\"painted\"><div>{}</div></div>", escape(&e.path), data_uri("image/jpeg", &e.jpeg), escape(&e.wear));
            }
            s.push_str("</div>\n");
            page.html(&s);
        }
        Ok(_) => page.html("<p class=\"note\">No sample was painted in epoch 1.</p>"),
        Err(e) => page.html(&format!("<p class=\"note\">Examples not shown: {}</p>", escape(&format!("{e:#}")))),
    }
}

pub fn config_section(page: &mut Page, config_text: &str) {
    page.section("config", "Resolved config");
    page.html(&format!("<details open><summary>config.toml</summary><pre>{}</pre></details>", escape(config_text)));
}
