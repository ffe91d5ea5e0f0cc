//! k-fold training, out-of-fold predictions, fold ensembles and tuned decisions through the CLI.
mod common;
use common::{demo, masklab, stderr, stdout};
use masklab::run_dir::heldout::{read_rows, score_rows};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn train(data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = vec![
        "train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet",
        "model.backbone=resnet18", "data.size=32", "train.batch_size=16", "train.epochs=1",
        "train.threads=2", "train.device=cpu", "optim.lr=0.003",
    ];
    args.extend_from_slice(extra);
    masklab(&args)
}

fn ok(args: &[&str]) -> String {
    let out = masklab(args);
    assert!(out.status.success(), "masklab {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn read_probs(path: &Path) -> Vec<Vec<f64>> {
    fs::read_to_string(path).unwrap().lines().skip(1).map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect()).collect()
}

fn answers(path: &Path) -> Vec<usize> {
    fs::read_to_string(path).unwrap().lines().skip(1).map(|l| l.split_once(',').unwrap().1.parse().unwrap()).collect()
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0
}

#[test]
fn kfold_trains_every_fold_predicts_out_of_fold_and_ensembles_its_folds() {
    let dir = tempfile::tempdir().unwrap();
    let summary = demo(dir.path(), 12, 5);
    let run = dir.path().join("cv");
    let out = train(dir.path(), &run, &["data.folds=3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cross-validated (3 folds"), "{}", stdout(&out));
    for k in 1..=3 {
        let fold = run.join(format!("fold-{k}"));
        for f in ["config.toml", "best.safetensors", "val_predictions.csv", "metrics.jsonl"] {
            assert!(fold.join(f).is_file(), "fold-{k}/{f} missing");
        }
        assert!(fs::read_to_string(fold.join("config.toml")).unwrap().contains(&format!("fold = {k}")));
    }

    // Every training image is predicted exactly once, by the one fold that held its person out.
    let oof = read_rows(&run.join("oof_predictions.csv")).unwrap();
    assert_eq!(oof.len(), summary.images, "one out-of-fold row per training image");
    let mut fold_of_person: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &oof {
        assert!((1..=3).contains(&r.fold));
        assert_eq!(*fold_of_person.entry(&r.person).or_insert(r.fold), r.fold, "person {} in two folds", r.person);
    }
    let mut paths: Vec<&str> = oof.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), oof.len());
    // No fold trained on the people it was validated on: its validation people are exactly its fold's.
    for k in 1..=3 {
        let val = read_rows(&run.join(format!("fold-{k}/val_predictions.csv"))).unwrap();
        assert!(val.iter().all(|r| fold_of_person[r.person.as_str()] == k));
    }

    // The printed and stored cross-validated F1 is the F1 of the out-of-fold rows.
    let cv: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("cv.json")).unwrap()).unwrap();
    let pooled = score_rows(&oof, |r| r.predicted());
    assert!((cv["oof"]["f1"].as_f64().unwrap() - pooled.f1).abs() < 1e-9);
    assert!((cv["oof"]["f1_age"].as_f64().unwrap() - pooled.f1_age).abs() < 1e-9);
    assert_eq!(cv["per_fold"].as_array().unwrap().len(), 3);

    // predict on the k-fold run = the equal-weight ensemble of its three folds.
    let eval = dir.path().join("eval");
    let p = |name: &str| dir.path().join(name);
    ok(&["predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", p("cv.csv").to_str().unwrap(), "--probs", p("cv_probs.csv").to_str().unwrap(), "--device", "cpu"]);
    let folds: Vec<String> = (1..=3).map(|k| run.join(format!("fold-{k}")).to_str().unwrap().to_string()).collect();
    ok(&["predict", &folds[0], &folds[1], &folds[2], eval.to_str().unwrap(), "--out", p("f.csv").to_str().unwrap(), "--probs", p("f_probs.csv").to_str().unwrap(), "--device", "cpu"]);
    let (a, b) = (read_probs(&p("cv_probs.csv")), read_probs(&p("f_probs.csv")));
    assert_eq!(a.len(), summary.eval_images);
    for (x, y) in a.iter().zip(&b) {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() < 1e-6, "{u} vs {v}");
        }
    }
    assert_eq!(answers(&p("cv.csv")), answers(&p("f.csv")));

    // A finished k-fold run resumes to the same result; a lost fold is retrained alone.
    let fold1_mtime = fs::metadata(run.join("fold-1/best.safetensors")).unwrap().modified().unwrap();
    fs::remove_dir_all(run.join("fold-3")).unwrap();
    fs::write(run.join("folds.json"), r#"{"folds": 3, "completed": [1, 2]}"#).unwrap();
    let out = masklab(&["train", dir.path().to_str().unwrap(), "--resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("fold 1/3: finished earlier") && stderr(&out).contains("fold 2/3: finished earlier"), "{}", stderr(&out));
    assert!(run.join("fold-3/best.safetensors").is_file());
    assert_eq!(fs::metadata(run.join("fold-1/best.safetensors")).unwrap().modified().unwrap(), fold1_mtime);
    assert_eq!(read_rows(&run.join("oof_predictions.csv")).unwrap().len(), summary.images);

    // Tuning on the out-of-fold rows is reported on each fold with biases fitted on the others.
    let report: serde_json::Value = serde_json::from_str(&ok(&["tune", run.to_str().unwrap(), "--by", "task", "--json"])).unwrap();
    assert_eq!(report["source"], "oof_predictions.csv");
    assert_eq!(report["held_out_groups"], 3);
    assert_eq!(report["images"].as_u64().unwrap() as usize, summary.images);
    assert!(report["fitted_after"]["f1"].as_f64().unwrap() >= report["fitted_before"]["f1"].as_f64().unwrap());
    assert_eq!(report["biases"]["values"].as_array().unwrap().len(), 8);
}

#[test]
fn tune_fits_on_validation_never_loses_there_and_predict_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 8);
    let run = dir.path().join("run");
    let out = train(dir.path(), &run, &["data.val_ratio=0.4"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // --force: this checks how predict applies biases, which it does by default only when their
    // held-out F1 rises; on a one-epoch model of ten people that is chance (tests/reliability_cli.rs
    // checks the refusal).
    let text = ok(&["tune", run.to_str().unwrap(), "--force"]);
    assert!(text.contains("held out") && text.contains("tuned"), "{text}");
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("tune.json")).unwrap()).unwrap();
    assert_eq!(report["source"], "val_predictions.csv");
    let val = read_rows(&run.join("val_predictions.csv")).unwrap();
    assert_eq!(report["images"].as_u64().unwrap() as usize, val.len());
    let (before, after) = (report["fitted_before"]["f1"].as_f64().unwrap(), report["fitted_after"]["f1"].as_f64().unwrap());
    assert!(after >= before, "tuning lowered the F1 it was fitted on: {before} -> {after}");
    assert!((before - score_rows(&val, |r| r.predicted()).f1).abs() < 1e-9);
    assert!(report["held_out_after"]["f1"].is_number());

    // predict applies the biases (softmax(log p + b), then argmax) unless --no-tune.
    let eval = dir.path().join("eval");
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    ok(&["predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("t.csv"), "--probs", &p("t_probs.csv"), "--device", "cpu"]);
    ok(&["predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("p.csv"), "--probs", &p("p_probs.csv"), "--device", "cpu", "--no-tune"]);
    let biases: Vec<f64> = serde_json::from_value(report["biases"]["values"].clone()).unwrap();
    let (tuned, plain) = (read_probs(Path::new(&p("t_probs.csv"))), read_probs(Path::new(&p("p_probs.csv"))));
    for (t, q) in tuned.iter().zip(&plain) {
        // Hand-computed: the plain probabilities times exp(bias), renormalised.
        let w: Vec<f64> = q.iter().zip(&biases).map(|(p, b)| p.max(1e-7) * b.exp()).collect();
        let z: f64 = w.iter().sum();
        for (a, b) in t.iter().zip(&w) {
            assert!((a - b / z).abs() < 1e-4, "{a} vs {}", b / z);
        }
    }
    assert_eq!(answers(Path::new(&p("t.csv"))), tuned.iter().map(|v| argmax(v)).collect::<Vec<_>>());
    assert_eq!(answers(Path::new(&p("p.csv"))), plain.iter().map(|v| argmax(v)).collect::<Vec<_>>());

    // Not a run: a clear error naming what is missing.
    let out = masklab(&["tune", dir.path().join("eval").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("val_predictions.csv"), "{}", stderr(&out));
}

/// `masklab train DATA --out RUN --fold I ...` as a running child process (one job of a k-fold run).
fn spawn_fold_job(data: &Path, run: &Path, fold: usize, extra: &[&str]) -> std::process::Child {
    let fold = fold.to_string();
    let mut args: Vec<&str> = vec![
        "train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--fold", &fold, "--quiet",
        "model.backbone=resnet18", "data.size=32", "train.batch_size=16", "train.epochs=1",
        "train.threads=1", "train.device=cpu", "optim.lr=0.003", "data.folds=3",
    ];
    args.extend_from_slice(extra);
    std::process::Command::new(env!("CARGO_BIN_EXE_masklab"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn fold_jobs_train_at_once_into_one_parent_and_the_last_one_gathers() {
    let dir = tempfile::tempdir().unwrap();
    let summary = demo(dir.path(), 12, 5);
    let run = dir.path().join("cv");

    // Folds 1 and 3 as two jobs started together (a Slurm array): both create or join the parent.
    let jobs = [spawn_fold_job(dir.path(), &run, 1, &[]), spawn_fold_job(dir.path(), &run, 3, &["train.threads=2"])];
    let said: Vec<String> = jobs
        .into_iter()
        .map(|job| {
            let out = job.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            stdout(&out)
        })
        .collect();
    assert!(said.iter().any(|s| s.contains("fold 2 is still to finish")), "{said:?}");
    let state: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("folds.json")).unwrap()).unwrap();
    assert_eq!(state["completed"], serde_json::json!([1, 3]));
    assert!(!run.join("cv.json").exists() && !run.join("oof_predictions.csv").exists());
    assert!(fs::read_to_string(run.join("config.toml")).unwrap().contains("fold = 0"));
    assert!(fs::read_to_string(run.join("fold-3/config.toml")).unwrap().contains("fold = 3"));
    // Not finished: predict refuses the parent, naming the missing fold.
    let out = masklab(&["predict", run.to_str().unwrap(), dir.path().join("eval").to_str().unwrap(), "--out", dir.path().join("x.csv").to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("[2]"), "{}", stderr(&out));

    // A job whose recipe differs from the parent's is refused, naming the key, before training.
    let out = spawn_fold_job(dir.path(), &run, 2, &["optim.lr=0.01"]).wait_with_output().unwrap();
    assert!(!out.status.success(), "a job with another learning rate joined the run");
    assert!(stderr(&out).contains("optim.lr = 0.003 vs 0.01"), "{}", stderr(&out));
    assert!(!run.join("fold-2").join("metrics.jsonl").exists());

    // A job on other data (same recipe) is refused before training, naming both datasets: its
    // out-of-fold predictions would mix two datasets into one cross-validation.
    let other = dir.path().join("other");
    demo(&other, 12, 6);
    let out = spawn_fold_job(&other, &run, 2, &[]).wait_with_output().unwrap();
    assert!(!out.status.success(), "a job on other data joined the run");
    let said = stderr(&out);
    assert!(said.contains("k-fold run of other data") && said.contains(other.to_str().unwrap()) && said.contains("84 images of 12 people"), "{said}");
    assert!(!run.join("fold-2").join("metrics.jsonl").exists());
    let recorded: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(recorded["images"].as_u64().unwrap() as usize, summary.images);

    // A fold that an earlier job started (it left a checkpoint) is continued only when asked.
    fs::create_dir_all(run.join("fold-2")).unwrap();
    fs::write(run.join("fold-2/last.safetensors"), b"x").unwrap();
    let out = spawn_fold_job(dir.path(), &run, 2, &[]).wait_with_output().unwrap();
    assert!(!out.status.success() && stderr(&out).contains("--resume"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--fold 2"), "{}", stderr(&out));
    fs::remove_file(run.join("fold-2/last.safetensors")).unwrap();

    // The last fold's job gathers: out-of-fold predictions of every image, cv.json, the report.
    let out = spawn_fold_job(dir.path(), &run, 2, &[]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cross-validated (3 folds"), "{}", stdout(&out));
    let oof = read_rows(&run.join("oof_predictions.csv")).unwrap();
    assert_eq!(oof.len(), summary.images, "one out-of-fold row per training image");
    for k in 1..=3 {
        let val = read_rows(&run.join(format!("fold-{k}/val_predictions.csv"))).unwrap();
        let of_fold: Vec<_> = oof.iter().filter(|r| r.fold == k).map(|r| (r.path.clone(), r.predicted())).collect();
        assert_eq!(of_fold, val.iter().map(|r| (r.path.clone(), r.predicted())).collect::<Vec<_>>(), "fold {k}");
    }
    let cv: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("cv.json")).unwrap()).unwrap();
    assert!((cv["oof"]["f1"].as_f64().unwrap() - score_rows(&oof, |r| r.predicted()).f1).abs() < 1e-9);
    assert!(run.join("report.html").is_file());

    // A finished fold is not trained again: refused without --resume, skipped with it (which
    // gathers again); the k-fold run as a whole resumes to the same cross-validation.
    let out = spawn_fold_job(dir.path(), &run, 2, &[]).wait_with_output().unwrap();
    assert!(!out.status.success() && stderr(&out).contains("has finished already"), "{}", stderr(&out));
    let best = fs::metadata(run.join("fold-2/best.safetensors")).unwrap().modified().unwrap();
    let out = masklab(&["train", dir.path().to_str().unwrap(), "--resume", run.to_str().unwrap(), "--fold", "2", "--quiet"]);
    assert!(out.status.success() && stderr(&out).contains("fold 2/3: finished earlier"), "{}", stderr(&out));
    assert_eq!(fs::metadata(run.join("fold-2/best.safetensors")).unwrap().modified().unwrap(), best);
    let out = masklab(&["train", dir.path().to_str().unwrap(), "--resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("cv.json")).unwrap()).unwrap();
    assert_eq!(again["oof"], cv["oof"]);
    let out = masklab(&["train", other.to_str().unwrap(), "--resume", run.to_str().unwrap(), "--quiet"]);
    assert!(!out.status.success() && stderr(&out).contains("k-fold run of other data"), "{}", stderr(&out));

    // --fold needs a parent folder and a k-fold config.
    let out = masklab(&["train", dir.path().to_str().unwrap(), "--fold", "1", "data.folds=3"]);
    assert!(!out.status.success() && stderr(&out).contains("--fold needs"), "{}", stderr(&out));
    let out = masklab(&["train", dir.path().to_str().unwrap(), "--out", dir.path().join("x").to_str().unwrap(), "--fold", "4", "data.folds=3"]);
    assert!(!out.status.success() && stderr(&out).contains("1..=3"), "{}", stderr(&out));
}
