//! Run reports and comparisons through the CLI on tiny generated data.
mod common;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{demo, masklab, stderr, stdout, train_tiny};
use std::fs;
use std::path::Path;

fn train(data: &Path, run: &Path, extra: &[&str]) {
    let out = train_tiny(data, run, extra);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn best_f1(run: &Path) -> f64 {
    let best: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("best.json")).unwrap()).unwrap();
    best["metrics"]["f1"].as_f64().unwrap()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).expect("a PNG");
    (img.width(), img.height())
}

/// The base64 payloads of `data:MIME;base64,...` URIs in a page.
fn embedded(html: &str, mime: &str) -> Vec<Vec<u8>> {
    let prefix = format!("data:{mime};base64,");
    html.match_indices(&prefix)
        .map(|(at, _)| {
            let rest = &html[at + prefix.len()..];
            STANDARD.decode(&rest[..rest.find('"').unwrap()]).unwrap()
        })
        .collect()
}

const RUN_FIGURES: [&str; 9] = [
    "loss.png",
    "scores.png",
    "learning_rate.png",
    "confusion_18.png",
    "confusion_mask.png",
    "confusion_gender.png",
    "confusion_age.png",
    "per_class.png",
    "class_distribution.png",
];

#[test]
fn training_writes_a_report_and_report_rewrites_it() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 12, 21);
    let run = dir.path().join("run");
    train(dir.path(), &run, &[]);
    let page = run.join("report.html");
    let html = fs::read_to_string(&page).expect("training writes report.html");

    for f in RUN_FIGURES {
        assert!(html.contains(&format!("href=\"report/{f}\"")), "the page does not show {f}");
        let (w, h) = png_size(&fs::read(run.join("report").join(f)).unwrap());
        assert!((400..=2600).contains(&w) && (300..=2600).contains(&h), "{f} is {w}x{h}");
    }
    let pngs = embedded(&html, "image/png");
    assert_eq!(pngs.len(), RUN_FIGURES.len(), "every chart is embedded");
    for png in &pngs {
        png_size(png);
    }
    let (w, h) = png_size(&fs::read(run.join("report/confusion_18.png")).unwrap());
    assert!(w >= 18 * 40 && h >= 18 * 40, "18x18 cells must be large enough to read: {w}x{h}");

    for label in ["Wear/Male/&lt;30", "NotWear/Female/&gt;=60", "Incorrect/Female/30-59"] {
        assert!(html.contains(label), "the page lacks the class name {label}");
    }
    assert!(html.contains(&format!("{:.4}", best_f1(&run))), "the page lacks the best macro F1");
    for heading in ["Learning curves", "Confusion matrices", "Per-class precision", "Class distribution", "Worst validation mistakes", "Resolved config"] {
        assert!(html.contains(heading), "no section {heading}");
    }
    assert!(html.contains("backbone = &quot;resnet18&quot;"), "the resolved config is shown");
    // Mistakes come with thumbnails decoded from the validation images.
    let wrong = masklab::run_dir::heldout::read_rows(&run.join("val_predictions.csv")).unwrap().iter().filter(|r| r.predicted() != r.truth).count();
    let thumbnails = embedded(&html, "image/jpeg");
    assert_eq!(thumbnails.len(), wrong.min(24));
    for t in &thumbnails {
        let img = image::load_from_memory(t).unwrap();
        assert_eq!(img.height(), 40, "the demo's 40 px images are not enlarged");
    }

    // The start line now records the splits' classes.
    let start: serde_json::Value = serde_json::from_str(fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    let train_classes: Vec<u64> = serde_json::from_value(start["train_classes"].clone()).unwrap();
    assert_eq!(train_classes.iter().sum::<u64>(), start["train_images"].as_u64().unwrap());

    // `masklab report` writes the same page again from the folder alone.
    fs::remove_file(&page).unwrap();
    fs::remove_dir_all(run.join("report")).unwrap();
    let out = masklab(&["report", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("report.html"), "{}", stdout(&out));
    assert_eq!(fs::read_to_string(&page).unwrap(), html);
    let out = masklab(&["report", run.to_str().unwrap(), "--worst", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(embedded(&fs::read_to_string(&page).unwrap(), "image/jpeg").len(), wrong.min(1));
}

#[test]
fn compare_prints_a_table_and_writes_a_page_with_overlaid_curves() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 4);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(dir.path(), &a, &["train.epochs=1"]);
    train(dir.path(), &b, &["train.epochs=1", "optim.lr=0.001", "augment.hflip=0", "report.enabled=false"]);
    assert!(a.join("report.html").is_file());
    assert!(!b.join("report.html").exists(), "report.enabled=false writes no page");

    let out_dir = dir.path().join("cmp");
    let out = masklab(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.starts_with("| run | backbone |"), "{md}");
    for (name, run) in [("a", &a), ("b", &b)] {
        let line = md.lines().find(|l| l.starts_with(&format!("| {name} |"))).unwrap_or_else(|| panic!("no row for {name}: {md}"));
        assert!(line.contains(&format!("{:.4}", best_f1(run))), "{line}");
    }
    assert!(md.contains("| augment.hflip | 0.5 | 0.0 |"), "differing keys are listed: {md}");
    assert!(!md.contains("report.enabled"), "settings of the report itself are not differences between experiments: {md}");
    let html = fs::read_to_string(out_dir.join("compare.html")).unwrap();
    assert!(html.contains("<th>a</th>") && html.contains("<th>b</th>"));
    let (w, h) = png_size(&fs::read(out_dir.join("compare_f1.png")).unwrap());
    assert!(w > 400 && h > 300);
    assert_eq!(embedded(&html, "image/png").len(), 3);
    // The same comparison again writes over its own output; a folder holding anything else is
    // refused unless --force.
    let out = masklab(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = masklab(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--out", a.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("is not empty") && stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(!a.join("compare.html").exists());
}

#[test]
fn kfold_runs_get_a_cross_validation_page() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 9);
    let run = dir.path().join("cv");
    train(dir.path(), &run, &["train.epochs=1", "data.folds=2"]);
    for page in ["report.html", "fold-1/report.html", "fold-2/report.html"] {
        assert!(run.join(page).is_file(), "{page} missing");
    }
    fs::remove_file(run.join("fold-2/report.html")).unwrap();
    let out = masklab(&["report", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run.join("fold-2/report.html").is_file(), "report on a k-fold run rewrites its folds' pages");
    let html = fs::read_to_string(run.join("report.html")).unwrap();
    let cv: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("cv.json")).unwrap()).unwrap();
    assert!(html.contains(&format!("{:.4}", cv["oof"]["f1"].as_f64().unwrap())), "the page shows the out-of-fold F1");
    assert!(html.contains("href=\"fold-1/report.html\"") && html.contains("href=\"report/folds_f1.png\""));
    assert!(html.contains("18 classes (out-of-fold)") || html.contains("href=\"report/confusion_18.png\""));
}

#[test]
fn report_and_compare_name_a_folder_that_is_not_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let not_run = dir.path().join("holiday-photos");
    fs::create_dir_all(&not_run).unwrap();
    for args in [vec!["report", not_run.to_str().unwrap()], vec!["compare", not_run.to_str().unwrap(), not_run.to_str().unwrap(), "--out", dir.path().join("cmp").to_str().unwrap()]] {
        let out = masklab(&args);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("holiday-photos") && err.contains("not a masklab run folder"), "{err}");
    }
    let missing = dir.path().join("no-such-run");
    let out = masklab(&["report", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-run"), "{}", stderr(&out));
}
