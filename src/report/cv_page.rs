//! The page of a k-fold run: cross-validated scores (cv.json), the out-of-fold confusion and
//! per-class scores, every fold's curves on one chart, the worst out-of-fold mistakes, and links
//! to each fold's own page.
use super::html::{cards, facts, table, Card, Page};
use super::mistakes::worst;
use super::plots::{line_chart_png, LineChart, Series, PALETTE};
use super::run::RunRecord;
use super::run_page::{class_labels, config_section, confusions, mistakes_grid, per_class};
use crate::run_dir::heldout::{read_rows, score_intervals, HeldOutRow};
use crate::labels::NUM_CLASSES;
use crate::metrics::Confusion;
use crate::run_dir::RunDir;
use anyhow::{Context, Result};

pub fn cv_page(run: &RunDir, worst_count: Option<usize>) -> Result<Page> {
    let cv = run.read_cv().context("a k-fold run writes cv.json when its last fold ends")?;
    let config_text = std::fs::read_to_string(run.config_file())?;
    let settings = crate::train::settings::RunSettings::from_config(run.config_table()?)?;
    let report: crate::report::settings::ReportConfig = crate::util::section::read(&settings.config)?;
    let bounds = settings.data.bounds()?;
    let backbone = crate::report::run::config_values(&settings.config).get("model.backbone").cloned().unwrap_or_default();
    let folds: Vec<RunRecord> = (1..=cv.folds).map(|k| RunRecord::load(run.fold(k).path())).collect::<Result<_>>()?;

    let name = run.name();
    let mut page = Page::new(&format!("k-fold run report: {name}"), &run.path().display().to_string(), RunDir::figure_dir_name());
    page.section("summary", "Cross-validation");
    let oof = read_rows(&run.oof_predictions())?;
    // cv.json from before intervals: drawn here from the out-of-fold predictions.
    let resampling = settings.intervals.resampling();
    let intervals_of = |rows: &[HeldOutRow]| resampling.map(|r| score_intervals(rows, r)).transpose();
    let oof_intervals = match cv.oof_intervals {
        Some(i) => Some(i),
        None => intervals_of(&oof)?,
    };
    let o = &cv.oof;
    let i = oof_intervals.as_ref();
    page.html(&cards(&[
        Card::new("out-of-fold macro F1", format!("{:.4}", o.f1)).with_interval(i.map(|i| &i.f1)),
        Card::new("fold F1 mean \u{b1} std", format!("{:.4} \u{b1} {:.4}", cv.fold_f1_mean, cv.fold_f1_std)),
        Card::new("accuracy", format!("{:.4}", o.accuracy)),
        Card::new("mask F1", format!("{:.4}", o.f1_mask)).with_interval(i.map(|i| &i.f1_mask)),
        Card::new("gender F1", format!("{:.4}", o.f1_gender)).with_interval(i.map(|i| &i.f1_gender)),
        Card::new("age F1", format!("{:.4}", o.f1_age)).with_interval(i.map(|i| &i.f1_age)),
    ]));
    if let Some(i) = i {
        page.html(&format!("<p class=\"sub\">{}: a person's photos are resampled together; each fold's interval resamples that fold's people.</p>", super::html::escape(&i.method())));
    }
    let mut fact_rows = vec![
        ("folds", format!("{} (people split by person, stratified by gender x age band)", cv.folds)),
        ("out-of-fold images", cv.images.to_string()),
        ("model", format!("{} ({} layout), input {} px", backbone, settings.layout, settings.data.size)),
        ("dataset", folds[0].start.data.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "-".into())),
    ];
    // Fold jobs may run on several machines, by several people: each different origin once.
    let mut origins: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, f) in folds.iter().enumerate() {
        let who = f.start.provenance.as_ref().map(|p| format!("{}: {}", p.summary(), p.command)).unwrap_or_else(|| "- (not recorded)".into());
        match origins.iter_mut().find(|(w, _)| *w == who) {
            Some((_, ks)) => ks.push(k + 1),
            None => origins.push((who, vec![k + 1])),
        }
    }
    for (who, ks) in origins {
        let which = if ks.len() == cv.folds { "all folds".to_string() } else { format!("folds {}", ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")) };
        fact_rows.push(("started by", format!("{which}: {who}")));
    }
    page.html(&facts(&fact_rows));
    let rows: Vec<Vec<String>> = cv
        .per_fold
        .iter()
        .map(|f| -> Result<Vec<String>> {
            let s = &f.scores;
            let interval = match f.intervals {
                Some(i) => Some(i),
                None => intervals_of(&oof.iter().filter(|r| r.fold == f.fold).cloned().collect::<Vec<_>>())?,
            };
            Ok(vec![
                f.fold.to_string(),
                f.people.to_string(),
                f.images.to_string(),
                f.best_epoch.to_string(),
                format!("{:.4}", s.f1),
                interval.map(|i| i.f1.bracket()).unwrap_or_else(|| "-".into()),
                format!("{:.4}", s.accuracy),
                format!("{:.4}", s.f1_mask),
                format!("{:.4}", s.f1_gender),
                format!("{:.4}", s.f1_age),
            ])
        })
        .collect::<Result<_>>()?;
    page.html(&table(&["fold", "people", "images", "best epoch", "macro F1", "macro F1 95% CI", "accuracy", "mask F1", "gender F1", "age F1"], &rows));
    let links: Vec<String> = (1..=cv.folds)
        .map(|k| {
            let page = run.fold(k).report_page();
            let href = page.strip_prefix(run.path()).unwrap_or(&page).to_string_lossy().replace('\\', "/");
            format!("<a href=\"{}\">fold {k}</a>", super::html::escape(&href))
        })
        .collect();
    page.html(&format!("<p>Each fold's own report: {}</p>", links.join(" &middot; ")));

    page.section("curves", "Learning curves of the folds");
    let per_fold = |f: fn(&crate::run_dir::metrics_log::EpochLine) -> Option<f64>| -> Vec<Series> {
        folds
            .iter()
            .enumerate()
            .map(|(i, r)| Series {
                name: format!("fold {}", i + 1),
                points: r.epochs.iter().filter_map(|e| f(e).map(|y| (e.epoch as f64, y))).collect(),
                markers: true,
                colour: PALETTE[i % PALETTE.len()],
            })
            .collect()
    };
    let chart = LineChart::per_epoch;
    page.begin_row();
    page.figure("folds_f1.png", line_chart_png(&chart("Validation macro F1 per fold", "macro F1", per_fold(|e| e.val.map(|v| v.f1)), Some((0.0, 1.05))))?, "Validation macro F1 of each fold");
    page.figure("folds_val_loss.png", line_chart_png(&chart("Validation loss per fold", "loss", per_fold(|e| e.val.map(|v| v.loss)), None))?, "Validation loss of each fold");
    page.figure("folds_train_loss.png", line_chart_png(&chart("Training loss per fold", "loss", per_fold(|e| Some(e.train_loss)), None))?, "Training loss of each fold");
    page.end_row();

    let mut conf = Confusion::new(NUM_CLASSES);
    for r in &oof {
        conf.add(r.truth, r.predicted());
    }
    confusions(&mut page, &conf, &bounds, "out-of-fold")?;
    per_class(&mut page, &conf, &bounds, "out-of-fold")?;

    page.section("mistakes", "Worst out-of-fold mistakes");
    let found = worst(&oof, worst_count.unwrap_or(report.worst), folds[0].start.data.as_deref());
    page.text(&format!("{} of {} out-of-fold images are wrong; the {} below got the highest probability for a wrong class.", oof.iter().filter(|r| r.predicted() != r.truth).count(), oof.len(), found.len()));
    page.html(&mistakes_grid(&found, &class_labels(&bounds)));
    super::audit_page::audit_section(&mut page, run, folds[0].start.data.as_deref());
    config_section(&mut page, &config_text);
    Ok(page)
}
