//! Comparing runs: their key config values and best scores side by side (Markdown for the
//! terminal, HTML for the browser), the config keys in which they differ, and their curves
//! overlaid. A k-fold run takes part with its out-of-fold scores and its folds' mean curves.
use super::html::{table, Page};
use super::plots::{line_chart_png, LineChart, Series, PALETTE};
use super::run::{config_values, folder_name, RunRecord};
use crate::metrics::bootstrap::{self, Comparison as ScoreComparison, Difference, FoldComparison, Pairing, Resampling, ScoreIntervals};
use crate::metrics::Scores;
use crate::run_dir::heldout::{outcomes, read_rows, score_intervals, HeldOutRow};
use crate::run_dir::RunDir;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a comparison needs of one run.
pub struct Compared {
    pub name: String,
    pub dir: PathBuf,
    pub config: BTreeMap<String, String>,
    pub epochs_run: usize,
    /// "7", or "per fold" for a k-fold run.
    pub best_epoch: String,
    pub scores: Option<Scores>,
    pub val_loss: Option<f64>,
    /// Per epoch: (epoch, validation macro F1, validation loss, training loss); NaN where absent.
    pub curve: Vec<(usize, f64, f64, f64)>,
    /// The predictions the run is compared on (None: it wrote none, e.g. no validation split).
    pub held_out: Option<HeldOut>,
    /// 95% intervals of its scores from `held_out`, when drawn.
    pub intervals: Option<ScoreIntervals>,
}

/// The held-out predictions a run is compared on: a k-fold run's out-of-fold predictions (each
/// row with its fold), else the best epoch's validation predictions.
pub struct HeldOut {
    pub rows: Vec<HeldOutRow>,
    pub kfold: bool,
}

/// Run B against run A, on their held-out predictions.
pub struct RunDifference {
    pub a: String,
    pub b: String,
    /// None when either run has no held-out predictions (`note` says which).
    pub comparison: Option<ScoreComparison>,
    /// Two k-fold runs: the paired difference within each fold, or why there is none (their
    /// folds hold out different people).
    pub per_fold: Option<std::result::Result<Vec<FoldComparison>, String>>,
    pub note: Option<String>,
}

/// The page name a comparison writes into its output folder.
pub const COMPARE_FILE: &str = "compare.html";

/// Config keys shown as columns of the main table, with their column names.
const KEY_COLUMNS: [(&str, &str); 7] = [
    ("model.backbone", "backbone"),
    ("model.layout", "layout"),
    ("data.size", "size"),
    ("train.batch_size", "batch"),
    ("optim.kind", "optim"),
    ("optim.lr", "lr"),
    ("loss.kind", "loss"),
];

/// Keys that can differ between identical experiments and say nothing about them.
const IGNORED_KEYS: [&str; 6] = ["train.device", "data.workers", "data.prefetch", "data.cache_mib", "report.enabled", "report.worst"];

pub fn load(dir: &Path) -> Result<Compared> {
    if RunDir::new(dir).is_kfold() {
        return load_kfold(dir);
    }
    let run = RunRecord::load(dir)?;
    let curve = run
        .epochs
        .iter()
        .map(|e| (e.epoch, e.val.map(|v| v.f1).unwrap_or(f64::NAN), e.val.map(|v| v.loss).unwrap_or(f64::NAN), e.train_loss))
        .collect();
    let held_out = run.val_predictions()?.map(|rows| HeldOut { rows, kfold: false });
    Ok(Compared {
        name: run.name(),
        dir: dir.to_path_buf(),
        config: config_values(&run.settings.config),
        epochs_run: run.epochs.len(),
        best_epoch: run.best.as_ref().map(|b| b.epoch.to_string()).unwrap_or_else(|| "-".into()),
        scores: run.best.as_ref().map(|b| b.eval.scores),
        val_loss: run.best.as_ref().map(|b| b.eval.loss),
        curve,
        held_out,
        intervals: None,
    })
}

fn load_kfold(dir: &Path) -> Result<Compared> {
    let run = RunDir::new(dir);
    let cv = run.read_cv().context("has the k-fold run finished?")?;
    let config = run.config_table()?;
    let folds: Vec<RunRecord> = (1..=cv.folds).map(|k| RunRecord::load(run.fold(k).path())).collect::<Result<_>>()?;
    // Mean over the folds that reached each epoch (early stopping may end folds at different epochs).
    let last = folds.iter().filter_map(|f| f.epochs.last().map(|e| e.epoch)).max().unwrap_or(0);
    let mean = |values: Vec<f64>| {
        let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
    };
    let curve = (1..=last)
        .map(|epoch| {
            let at: Vec<_> = folds.iter().filter_map(|f| f.epochs.iter().find(|e| e.epoch == epoch)).collect();
            (
                epoch,
                mean(at.iter().map(|e| e.val.map(|v| v.f1).unwrap_or(f64::NAN)).collect()),
                mean(at.iter().map(|e| e.val.map(|v| v.loss).unwrap_or(f64::NAN)).collect()),
                mean(at.iter().map(|e| e.train_loss).collect()),
            )
        })
        .collect();
    Ok(Compared {
        name: format!("{} ({} folds, out-of-fold)", folder_name(dir), cv.folds),
        dir: dir.to_path_buf(),
        config: config_values(&config),
        epochs_run: last,
        best_epoch: "per fold".into(),
        scores: Some(cv.oof),
        val_loss: None,
        curve,
        held_out: Some(HeldOut { rows: read_rows(&run.oof_predictions())?, kfold: true }),
        intervals: None,
    })
}

/// Each run after the first against the first (B - A): paired on the people both hold out when
/// they hold out the same people (one validation split, or the out-of-fold people of two k-fold
/// runs), else unpaired; two k-fold runs with the same folds also fold by fold.
pub fn differences(runs: &[Compared], resampling: Resampling) -> Result<Vec<RunDifference>> {
    let Some((a, rest)) = runs.split_first() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for b in rest {
        let mut d = RunDifference { a: a.name.clone(), b: b.name.clone(), comparison: None, per_fold: None, note: None };
        match (&a.held_out, &b.held_out) {
            (Some(ha), Some(hb)) => {
                let (oa, ob) = (outcomes(&ha.rows), outcomes(&hb.rows));
                d.comparison = Some(bootstrap::compare(&oa, &ob, resampling).with_context(|| format!("{} against {}", b.name, a.name))?);
                if ha.kfold && hb.kfold {
                    d.per_fold = Some(bootstrap::compare_per_fold(&oa, &ob, resampling).map_err(|e| format!("{e:#}")));
                }
            }
            (ha, hb) => {
                let missing: Vec<&str> = [(ha.is_none(), a.name.as_str()), (hb.is_none(), b.name.as_str())].iter().filter(|(m, _)| *m).map(|(_, n)| *n).collect();
                d.note = Some(format!("no held-out predictions in {} (no validation split?): no difference drawn", missing.join(" and ")));
            }
        }
        out.push(d);
    }
    Ok(out)
}

fn signed(d: &Difference) -> String {
    format!("{:+.4} [{:+.4}, {:+.4}]", d.difference, d.low, d.high)
}

fn pairing_text(c: &ScoreComparison) -> String {
    match c.pairing {
        Pairing::Paired => format!("paired: the same {} people", c.people_a),
        Pairing::Unpaired => format!("unpaired: different people ({} and {}, {} in both)", c.people_a, c.people_b, c.shared_people),
    }
}

/// The differences as tables: overall (one row per run B), and per fold for k-fold pairs.
/// Returns (header, rows) of the overall table and, per pair with folds, its title and table.
#[allow(clippy::type_complexity)]
fn difference_tables(diffs: &[RunDifference]) -> ((Vec<&'static str>, Vec<Vec<String>>), Vec<(String, Vec<&'static str>, Vec<Vec<String>>)>) {
    let header = vec!["B", "pairing", "macro F1 B - A [95%]", "P(B better)", "mask F1", "gender F1", "age F1", "macro F1 verdict"];
    let mut rows = Vec::new();
    let mut folds = Vec::new();
    for d in diffs {
        match &d.comparison {
            Some(c) => rows.push(vec![
                d.b.clone(),
                pairing_text(c),
                signed(&c.f1),
                format!("{:.3}", c.f1.b_better),
                signed(&c.f1_mask),
                signed(&c.f1_gender),
                signed(&c.f1_age),
                c.f1.verdict.to_string(),
            ]),
            None => rows.push(vec![d.b.clone(), d.note.clone().unwrap_or_default(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into()]),
        }
        match &d.per_fold {
            Some(Ok(per_fold)) => {
                let fold_rows = per_fold
                    .iter()
                    .map(|f| {
                        let c = &f.comparison;
                        vec![f.fold.to_string(), c.people_a.to_string(), signed(&c.f1), format!("{:.3}", c.f1.b_better), signed(&c.f1_mask), signed(&c.f1_gender), signed(&c.f1_age), c.f1.verdict.to_string()]
                    })
                    .collect();
                folds.push((
                    format!("Per fold, {} - {} (paired within each fold):", d.b, d.a),
                    vec!["fold", "people", "macro F1 B - A [95%]", "P(B better)", "mask F1", "gender F1", "age F1", "macro F1 verdict"],
                    fold_rows,
                ));
            }
            Some(Err(why)) => folds.push((format!("No per-fold differences of {} and {}: {why}", d.b, d.a), Vec::new(), Vec::new())),
            None => {}
        }
    }
    ((header, rows), folds)
}

/// What the difference tables mean, for people.
fn differences_intro(a: &str, resampling: Resampling) -> String {
    format!(
        "Differences from {a} (B - A) with 95% intervals by a bootstrap over people ({} resamples, seed {}); \
         P(B better): the share of resamples in which B scored higher. Runs that hold out the same people are \
         compared paired (each resample draws one set of people and scores both); others unpaired (each run \
         resampled on its own: wider). A verdict is given only when the interval excludes 0.",
        resampling.resamples, resampling.seed
    )
}

/// The differences in Markdown.
pub fn differences_markdown(diffs: &[RunDifference], resampling: Resampling) -> String {
    let Some(first) = diffs.first() else { return String::new() };
    let ((header, rows), folds) = difference_tables(diffs);
    let mut md = format!("{}\n\n", differences_intro(&first.a, resampling));
    md.push_str(&markdown_table(&header, &rows));
    for (title, header, rows) in folds {
        md.push_str(&format!("\n{title}\n"));
        if !rows.is_empty() {
            md.push('\n');
            md.push_str(&markdown_table(&header, &rows));
        }
    }
    md
}

/// The differences as a section of a page.
pub fn differences_html(page: &mut Page, diffs: &[RunDifference], resampling: Resampling) {
    let Some(first) = diffs.first() else { return };
    let ((header, rows), folds) = difference_tables(diffs);
    page.text(&differences_intro(&first.a, resampling));
    page.html(&table(&header, &rows));
    for (title, header, rows) in folds {
        page.text(&title);
        if !rows.is_empty() {
            page.html(&table(&header, &rows));
        }
    }
}

/// The main table's header and rows (one per run), as text cells.
fn score_table(runs: &[Compared]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut header = vec!["run"];
    header.extend(KEY_COLUMNS.iter().map(|(_, h)| *h));
    header.extend(["epochs", "best epoch", "val loss", "macro F1", "macro F1 95% CI", "accuracy", "mask F1", "gender F1", "age F1"]);
    let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let rows = runs
        .iter()
        .map(|r| {
            let mut row = vec![r.name.clone()];
            row.extend(KEY_COLUMNS.iter().map(|(k, _)| r.config.get(*k).cloned().unwrap_or_default()));
            let s = r.scores;
            row.extend([
                r.epochs_run.to_string(),
                r.best_epoch.clone(),
                f(r.val_loss),
                f(s.map(|s| s.f1)),
                r.intervals.map(|i| i.f1.bracket()).unwrap_or_else(|| "-".into()),
                f(s.map(|s| s.accuracy)),
                f(s.map(|s| s.f1_mask)),
                f(s.map(|s| s.f1_gender)),
                f(s.map(|s| s.f1_age)),
            ]);
            row
        })
        .collect();
    (header, rows)
}

/// Config keys (other than the main table's) whose values are not the same in every run.
fn differing_keys(runs: &[Compared]) -> Vec<(String, Vec<String>)> {
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    keys.into_iter()
        .filter(|k| !KEY_COLUMNS.iter().any(|(c, _)| c == k) && !IGNORED_KEYS.contains(&k.as_str()))
        .filter_map(|k| {
            let values: Vec<String> = runs.iter().map(|r| r.config.get(k).cloned().unwrap_or_else(|| "-".into())).collect();
            values.iter().any(|v| v != &values[0]).then(|| (k.clone(), values))
        })
        .collect()
}

fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = format!("| {} |\n|{}|\n", header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "), vec!["---"; header.len()].join("|"));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")));
    }
    out
}

/// Names that tell runs apart: folder names, or the paths when two folders share a name.
fn unique_names(runs: &mut [Compared]) {
    let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    for r in runs.iter_mut() {
        if names.iter().filter(|n| **n == r.name).count() > 1 {
            r.name = r.dir.display().to_string();
        }
    }
}

pub struct Comparison {
    pub markdown: String,
    pub page: PathBuf,
    /// Each run after the first against the first, with the resampling that drew them (None
    /// without intervals).
    pub differences: Option<(Vec<RunDifference>, Resampling)>,
}

/// Compares the runs: returns the Markdown and writes `out/compare.html` with its charts beside
/// it. With `resampling`, each run's scores get 95% intervals and every run after the first is
/// compared with the first (`differences`).
pub fn compare(dirs: &[PathBuf], out: &Path, resampling: Option<Resampling>) -> Result<Comparison> {
    if dirs.len() < 2 {
        bail!("compare needs at least two runs");
    }
    let mut runs: Vec<Compared> = dirs.iter().map(|d| load(d)).collect::<Result<_>>()?;
    unique_names(&mut runs);
    let run_diffs = match resampling {
        Some(r) => {
            for run in runs.iter_mut() {
                if let Some(h) = &run.held_out {
                    run.intervals = Some(score_intervals(&h.rows, r).with_context(|| format!("the intervals of {}", run.dir.display()))?);
                }
            }
            Some((differences(&runs, r)?, r))
        }
        None => None,
    };
    let (header, rows) = score_table(&runs);
    let diffs = differing_keys(&runs);
    let mut diff_header = vec!["config key"];
    diff_header.extend(runs.iter().map(|r| r.name.as_str()));
    let diff_rows: Vec<Vec<String>> = diffs.iter().map(|(k, v)| std::iter::once(k.clone()).chain(v.iter().cloned()).collect()).collect();

    let mut markdown = markdown_table(&header, &rows);
    if let Some((diffs, r)) = &run_diffs {
        markdown.push('\n');
        markdown.push_str(&differences_markdown(diffs, *r));
    }
    if !diff_rows.is_empty() {
        markdown.push_str("\nOther config keys that differ:\n\n");
        markdown.push_str(&markdown_table(&diff_header, &diff_rows));
    }

    let mut page = Page::new(&format!("masklab comparison of {} runs", runs.len()), &runs.iter().map(|r| r.dir.display().to_string()).collect::<Vec<_>>().join(", "), "");
    page.section("table", "Key config values and best validation scores");
    page.html(&table(&header, &rows));
    if let Some((diffs, r)) = &run_diffs {
        page.section("differences", "Differences with 95% intervals");
        differences_html(&mut page, diffs, *r);
    }
    page.section("config-differences", "Config differences");
    if diff_rows.is_empty() {
        page.text("No other config key differs between these runs.");
    } else {
        page.text("Other config keys that differ:");
        page.html(&table(&diff_header, &diff_rows));
    }
    page.section("curves", "Curves");
    let series = |pick: fn(&(usize, f64, f64, f64)) -> f64| -> Vec<Series> {
        runs.iter()
            .enumerate()
            .map(|(i, r)| Series { name: r.name.clone(), points: r.curve.iter().map(|c| (c.0 as f64, pick(c))).collect(), markers: true, colour: PALETTE[i % PALETTE.len()] })
            .collect()
    };
    let chart = LineChart::per_epoch;
    page.begin_row();
    page.figure("compare_f1.png", line_chart_png(&chart("Validation macro F1", "macro F1", series(|c| c.1), Some((0.0, 1.05))))?, "Validation macro F1 per epoch");
    page.figure("compare_val_loss.png", line_chart_png(&chart("Validation loss", "loss", series(|c| c.2), None))?, "Validation loss per epoch");
    page.figure("compare_train_loss.png", line_chart_png(&chart("Training loss", "loss", series(|c| c.3), None))?, "Training loss per epoch");
    page.end_row();
    let path = page.write(out, COMPARE_FILE)?;
    Ok(Comparison { markdown, page: path, differences: run_diffs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, lr: &str, seed: &str) -> Compared {
        let config: BTreeMap<String, String> =
            [("optim.lr", lr), ("train.seed", seed), ("train.device", name), ("model.backbone", "resnet18")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Compared { name: name.into(), dir: PathBuf::from(format!("/x/{name}")), config, epochs_run: 2, best_epoch: "2".into(), scores: None, val_loss: Some(0.5), curve: vec![], held_out: None, intervals: None }
    }

    #[test]
    fn tables_show_key_values_and_only_the_keys_that_differ() {
        let runs = vec![run("a", "0.001", "1"), run("b", "0.01", "1"), run("c|d", "0.01", "2")];
        let diffs = differing_keys(&runs);
        // optim.lr is a main column and train.device is noise: only the seed is left.
        assert_eq!(diffs, vec![("train.seed".to_string(), vec!["1".to_string(), "1".into(), "2".into()])]);
        let (header, rows) = score_table(&runs);
        let md = markdown_table(&header, &rows);
        assert!(md.starts_with("| run | backbone | layout |"), "{md}");
        assert!(md.contains("| c\\|d | resnet18 |"), "{md}");
        assert!(md.contains("| 0.5000 | - |"), "{md}");
        let mut same = vec![run("r", "1", "1"), run("r", "1", "1")];
        same[1].dir = PathBuf::from("/y/r");
        unique_names(&mut same);
        assert_eq!(same[0].name, "/x/r");
        assert_eq!(same[1].name, "/y/r");
    }
}
