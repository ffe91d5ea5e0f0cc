//! Training, evaluation, resuming and benchmarking through the CLI on tiny generated data.
mod common;
use common::{demo, masklab, stderr, stdout, tiny_recipe as tiny, train_tiny as train};
use std::fs;
use std::path::Path;

fn epoch_lines(run: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .collect()
}

#[test]
fn train_writes_a_complete_run_and_eval_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 12, 21);
    let run = dir.path().join("run");
    let out = train(dir.path(), &run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("best epoch"), "{}", stdout(&out));
    for f in ["config.toml", "metrics.jsonl", "best.safetensors", "best.json", "last.safetensors", "last.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let epochs = epoch_lines(&run);
    assert_eq!(epochs.len(), 2);
    for e in &epochs {
        let f1 = e["val"]["f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f1));
        assert!(e["train_loss"].as_f64().unwrap().is_finite());
    }
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"kind\":\"step\""), "log_every=2 must write step lines");

    let out = masklab(&["eval", run.to_str().unwrap(), dir.path().to_str().unwrap(), "--json", "--device", "cpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for k in ["f1", "accuracy", "f1_mask", "f1_gender", "f1_age", "confusion", "loss"] {
        assert!(v.get(k).is_some(), "eval --json lacks {k}: {v}");
    }
    let conf: Vec<Vec<u64>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    assert_eq!(conf.len(), 18);
    let total: u64 = conf.iter().flatten().sum();
    assert_eq!(total, v["images"].as_u64().unwrap());
    // The validation split is 3 of 12 people: 21 images.
    assert_eq!(total, 21);
    // The same numbers as the best epoch's validation.
    let best: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("best.json")).unwrap()).unwrap();
    assert!((best["metrics"]["f1"].as_f64().unwrap() - v["f1"].as_f64().unwrap()).abs() < 1e-9);

    let all = masklab(&["eval", run.to_str().unwrap(), dir.path().to_str().unwrap(), "--all", "--device", "cpu"]);
    assert!(all.status.success(), "{}", stderr(&all));
    let text = stdout(&all);
    assert!(text.contains("images    84") && text.contains("macro F1") && text.contains("Wear/Male/<30"), "{text}");

    let eval = masklab(&["eval", run.to_str().unwrap(), dir.path().to_str().unwrap(), "--split", "eval", "--json", "--device", "cpu"]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let v: serde_json::Value = serde_json::from_str(&stdout(&eval)).unwrap();
    assert_eq!(v["images"], 28);
}

#[test]
fn a_run_refuses_to_overwrite_and_unknown_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 2);
    let out = masklab(&["train", dir.path().to_str().unwrap(), "optim.lrr=0.1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("did you mean `optim.lr`"), "{}", stderr(&out));
    let out = masklab(&["train", dir.path().to_str().unwrap(), "--config", "/nonexistent/cfg.toml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/cfg.toml"), "{}", stderr(&out));
}

#[test]
fn killed_training_resumes_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 8);
    let run = dir.path().join("run");
    let mut args = vec!["train".to_string(), dir.path().to_str().unwrap().into(), "--out".into(), run.to_str().unwrap().into(), "--quiet".into()];
    args.extend(tiny(&["train.epochs=4"]));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_masklab"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the first epoch's checkpoint is on disk.
    let start = std::time::Instant::now();
    while !run.join("last.json").exists() {
        assert!(start.elapsed().as_secs() < 300, "no checkpoint after 300 s");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("training ended before it could be killed: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = epoch_lines(&run).len();
    assert!(done_before < 4, "killed after {done_before} epochs");

    let out = masklab(&["train", dir.path().to_str().unwrap(), "--resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let epochs: Vec<u64> = epoch_lines(&run).iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    assert_eq!(*epochs.last().unwrap(), 4, "{epochs:?}");
    // Each epoch once, in order, whatever was written before the kill.
    assert_eq!(epochs, (1..=4).collect::<Vec<u64>>());
    let last: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("last.json")).unwrap()).unwrap();
    assert_eq!(last["epoch"], 4);
}

#[test]
fn every_layout_trains_and_predicts_18_classes() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 5);
    for layout in ["multi", "two", "three"] {
        let run = dir.path().join(format!("run-{layout}"));
        let out = train(dir.path(), &run, &[&format!("model.layout={layout}"), "train.epochs=1", "models.age.optim.lr=0.001"]
            .iter()
            .filter(|s| layout != "multi" || !s.starts_with("models."))
            .copied()
            .collect::<Vec<_>>());
        assert!(out.status.success(), "{layout}: {}", stderr(&out));
        let best: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("best.json")).unwrap()).unwrap();
        assert_eq!(best["layout"], layout);
        let conf: Vec<Vec<u64>> = serde_json::from_value(best["metrics"]["confusion"].clone()).unwrap();
        assert_eq!(conf.len(), 18, "{layout}");
    }
}

#[test]
fn loss_decreases_when_training_longer() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 13);
    let run = dir.path().join("run");
    let out = train(dir.path(), &run, &["train.epochs=5", "augment.hflip=0", "schedule.kind=constant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let losses: Vec<f64> = epoch_lines(&run).iter().map(|e| e["train_loss"].as_f64().unwrap()).collect();
    assert!(losses[4] < losses[0] * 0.8, "training loss did not fall: {losses:?}");
}

#[test]
fn cpu_runs_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 3);
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    for run in [&a, &b] {
        let out = train(dir.path(), run, &["train.epochs=1"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let la = epoch_lines(&a)[0]["train_loss"].as_f64().unwrap();
    let lb = epoch_lines(&b)[0]["train_loss"].as_f64().unwrap();
    assert_eq!(la, lb);
}

#[test]
fn bench_prints_a_json_line() {
    let out = masklab(&["bench", "train", "--backbone", "resnet18", "--size", "32", "--batch", "2", "--device", "cpu", "--warmup", "1", "--steps", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["impl"], "masklab");
    assert_eq!(v["mode"], "train");
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn training_stops_early_without_improvement() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 6);
    let run = dir.path().join("run");
    // With a zero learning rate the monitored loss cannot keep improving for six epochs.
    let out = train(dir.path(), &run, &["train.epochs=6", "optim.lr=0", "train.patience=1", "train.monitor=loss"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"kind\":\"early_stop\""), "{metrics}");
    assert!(epoch_lines(&run).len() < 6);
}

/// `masklab eval` on the validation split reports the loss that training logged for the best
/// epoch, also with `auto` class weights (computed from the run's training split, not from the
/// evaluated images) and with EMA weights.
#[test]
fn eval_reports_the_validation_loss_training_logged() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 12, 5);
    let run = dir.path().join("run");
    let out = train(dir.path(), &run, &["loss.class_weights=\"auto\"", "optim.ema=0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let best: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("best.json")).unwrap()).unwrap();
    let best_epoch = best["epoch"].as_u64().unwrap();
    let logged = epoch_lines(&run).into_iter().find(|e| e["epoch"].as_u64() == Some(best_epoch)).unwrap()["val"]["loss"].as_f64().unwrap();
    let out = masklab(&["eval", run.to_str().unwrap(), dir.path().to_str().unwrap(), "--json", "--device", "cpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let evaluated = v["loss"].as_f64().unwrap();
    assert!((evaluated - logged).abs() <= 1e-5 * logged.abs().max(1.0), "eval loss {evaluated}, training logged {logged} at epoch {best_epoch}");
}
