//! Faults a run can meet, through the CLI on tiny generated data: divergence (non-finite loss
//! and weights), two writers on one run folder, kills before the first checkpoint and during
//! writes, a full disk, decision biases that do not help, unreadable eval images, and settings
//! that do not fit the data.
mod common;
use common::{demo, masklab, stderr, stdout, tiny_recipe, train_tiny};
use masklab::run_dir::checkpoint;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn lines_of_kind(run: &Path, kind: &str) -> Vec<serde_json::Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .collect()
}

fn epochs_logged(run: &Path) -> Vec<u64> {
    lines_of_kind(run, "epoch").iter().map(|e| e["epoch"].as_u64().unwrap()).collect()
}

/// `masklab train DATA --out RUN --quiet` with the tiny recipe, in the background.
fn spawn_train(data: &Path, run: &Path, extra: &[&str]) -> Child {
    let mut args = vec!["train".to_string(), data.to_str().unwrap().into(), "--out".into(), run.to_str().unwrap().into(), "--quiet".into()];
    args.extend(tiny_recipe(extra));
    Command::new(env!("CARGO_BIN_EXE_masklab")).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

fn wait_for(what: &str, child: &mut Child, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(300), "no {what} after 300 s");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("training ended ({status}) before {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn temp_files(dir: &Path) -> Vec<String> {
    files_in(dir).into_iter().filter(|n| n.contains(".tmp")).collect()
}

/// A learning rate of 1e6 makes the loss NaN within a few steps. Training stops with an error
/// naming the divergence; no checkpoint is written; nothing downstream gets NaN weights.
#[test]
fn a_diverging_run_stops_with_an_error_and_writes_no_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 21);
    let run = dir.path().join("run");
    let out = train_tiny(dir.path(), &run, &["optim.lr=1e6", "train.epochs=3", "train.max_nonfinite_steps=2", "train.log_every=1"]);
    assert!(!out.status.success(), "a diverged run exited 0: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("training diverged") && (err.contains("non-finite") || err.contains("NaN")), "{err}");
    for f in ["best.safetensors", "last.safetensors", "val_predictions.csv"] {
        assert!(!run.join(f).exists(), "{f} was written by a diverged run");
    }
}

/// A checkpoint holding NaN (as earlier versions wrote for diverged runs) is refused by name by
/// everything that uses trained weights: eval, predict, export, tune, and a resume.
#[test]
fn every_command_refuses_a_checkpoint_with_non_finite_values() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 22);
    let run = dir.path().join("run");
    let out = train_tiny(dir.path(), &run, &["train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for which in ["best", "last"] {
        let path = run.join(format!("{which}.safetensors"));
        let (mut tensors, meta) = checkpoint::load(&path).unwrap();
        let (_, weight) = tensors.iter_mut().find(|(name, t)| name.ends_with("fc.weight") && t.numel() > 0).unwrap();
        let _ = weight.fill_(f64::NAN);
        masklab::util::write_atomic(&path, &checkpoint::to_bytes(&tensors, &meta).unwrap()).unwrap();
    }
    let (r, d, eval) = (run.to_str().unwrap(), dir.path().to_str().unwrap(), dir.path().join("eval"));
    let sub = dir.path().join("sub.csv");
    let export = dir.path().join("model.safetensors");
    let commands: Vec<Vec<&str>> = vec![
        vec!["eval", r, d, "--device", "cpu"],
        vec!["predict", r, eval.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--device", "cpu"],
        vec!["export", r, "--out", export.to_str().unwrap()],
        vec!["tune", r],
        vec!["train", d, "--resume", r, "--quiet"],
    ];
    for args in commands {
        let out = masklab(&args);
        assert!(!out.status.success(), "masklab {args:?} accepted NaN weights");
        let err = stderr(&out);
        assert!(err.contains(".safetensors") && err.contains("non-finite"), "masklab {args:?}: {err}");
    }
    assert!(!sub.exists() && !export.exists() && !run.join("tune.json").exists());
}

/// One writer per run folder: a second `train`, `report` or `tune` is refused naming the first
/// one's process; once it is killed, its lock is free and its stale temporary file is removed.
#[test]
fn a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 23);
    let run = dir.path().join("run");
    let mut first = spawn_train(dir.path(), &run, &["train.epochs=100"]);
    let lock = run.join(".masklab.lock");
    let pid = first.id();
    wait_for("lock file naming the trainer", &mut first, || fs::read_to_string(&lock).is_ok_and(|t| t.contains(&format!("pid = {pid}"))));
    let second = train_tiny(dir.path(), &run, &[]);
    assert!(!second.status.success(), "two trainers in one run folder");
    let err = stderr(&second);
    assert!(err.contains(&format!("process {pid}")) && err.contains("masklab train"), "{err}");
    let report = masklab(&["report", run.to_str().unwrap()]);
    assert!(!report.status.success() && stderr(&report).contains(&format!("process {pid}")), "{}", stderr(&report));

    // Killed (as by the OOM killer: no chance to clean up) while it was writing a checkpoint.
    first.kill().unwrap();
    first.wait().unwrap();
    let stale = run.join(format!(".last.safetensors.tmp{pid}"));
    fs::write(&stale, vec![0u8; 4096]).unwrap();
    let out = masklab(&["train", dir.path().to_str().unwrap(), "--resume", run.to_str().unwrap(), "--quiet", "train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stale.exists(), "the dead writer's temporary file is still there: {:?}", files_in(&run));
    assert!(!fs::read_to_string(&lock).unwrap().contains(&format!("pid = {pid}\n")), "the lock file still names the dead process");
    assert!(temp_files(&run).is_empty(), "{:?}", temp_files(&run));
}

/// A run killed in its first epoch, before any checkpoint: `--resume` starts it afresh, and so
/// does `train --out` on the same folder; either way the log holds one start line and each
/// epoch once, and nothing of the killed attempt is appended to.
#[test]
fn a_run_killed_before_its_first_checkpoint_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 40, 24);
    let run = dir.path().join("run");
    for _attempt in 0..2 {
        let mut child = spawn_train(dir.path(), &run, &["train.log_every=1", "train.epochs=2"]);
        // Its own TensorBoard file (named by its process id) exists once its log is open: then
        // the first step line in metrics.jsonl is this attempt's.
        let own_events = format!(".masklab.{}", child.id());
        wait_for("this attempt's log", &mut child, || {
            fs::read_dir(run.join("tensorboard")).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(&own_events)))
        });
        wait_for("a step line", &mut child, || fs::read_to_string(run.join("metrics.jsonl")).is_ok_and(|t| t.contains("\"kind\":\"step\"")));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!run.join("last.safetensors").exists(), "the kill came too late: epoch 1 was already saved");
    }
    let out = masklab(&["train", dir.path().to_str().unwrap(), "--resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("starting it afresh"), "{}", stderr(&out));
    assert_eq!(lines_of_kind(&run, "start").len(), 1);
    assert_eq!(epochs_logged(&run), vec![1, 2]);
    let events = files_in(&run.join("tensorboard")).into_iter().filter(|n| n.starts_with("events.out.tfevents.")).count();
    assert_eq!(events, 1, "the killed attempts' TensorBoard files are gone");

    // The same through `train --out` after a kill that left a best checkpoint but no last one.
    fs::remove_file(run.join("last.safetensors")).unwrap();
    fs::remove_file(run.join("last.json")).unwrap();
    let out = train_tiny(dir.path(), &run, &["train.log_every=1", "train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("metrics.jsonl"), "the removal is reported: {}", stderr(&out));
    assert_eq!(lines_of_kind(&run, "start").len(), 1);
    assert_eq!(epochs_logged(&run), vec![1]);
}

/// A full disk (here: the file size limit) fails the checkpoint write with an error, and the
/// partial temporary file does not stay behind to keep the disk full.
#[cfg(target_os = "linux")]
#[test]
fn a_failed_checkpoint_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 25);
    let run = dir.path().join("run");
    let mut args = vec![env!("CARGO_BIN_EXE_masklab").to_string(), "train".into(), dir.path().to_str().unwrap().into(), "--out".into(), run.to_str().unwrap().into(), "--quiet".into()];
    args.extend(tiny_recipe(&["train.epochs=1"]));
    // 20 MB: enough for the config and log, not for a 45 MB ResNet-18 checkpoint. SIGXFSZ ignored,
    // so the write fails with EFBIG as on a full disk instead of killing the process.
    let out = Command::new("sh").arg("-c").arg("ulimit -f 20000; trap '' XFSZ; exec \"$@\"").arg("sh").args(&args).output().unwrap();
    assert!(!out.status.success(), "the write cannot have succeeded");
    assert!(stderr(&out).contains("cannot write") && stderr(&out).contains(".safetensors"), "{}", stderr(&out));
    assert!(temp_files(&run).is_empty(), "left behind: {:?}", temp_files(&run));
}

/// Biases that do not raise the held-out F1 are recorded but not applied, and predict says so;
/// `tune --force` applies them anyway and tune.json records that.
#[test]
fn predict_keeps_the_argmax_when_tuning_does_not_help_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 26);
    let run = dir.path().join("run");
    let out = train_tiny(dir.path(), &run, &["train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Validation predictions that are all right: no bias can raise their F1, held out or not.
    let path = run.join("val_predictions.csv");
    let mut rows = masklab::run_dir::heldout::read_rows(&path).unwrap();
    for r in &mut rows {
        r.probs = [0.01; 18];
        r.probs[r.truth] = 0.83;
    }
    masklab::run_dir::heldout::write_rows(&path, &rows).unwrap();
    let text = stdout(&masklab(&["tune", run.to_str().unwrap()]));
    assert!(text.contains("does NOT apply"), "{text}");
    let tuned: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("tune.json")).unwrap()).unwrap();
    assert_eq!((tuned["applied"].as_bool(), tuned["forced"].as_bool()), (Some(false), Some(false)));

    let eval = dir.path().join("eval");
    let predict = |name: &str, extra: &[&str]| {
        let sub = dir.path().join(name);
        let mut args = vec!["predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--device", "cpu"];
        args.extend_from_slice(extra);
        let out = masklab(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        (fs::read_to_string(&sub).unwrap(), stderr(&out))
    };
    let (tuned_sub, note) = predict("a.csv", &[]);
    assert!(note.contains("not applied") && note.contains("--force"), "{note}");
    assert_eq!(tuned_sub, predict("b.csv", &["--no-tune"]).0);

    let out = masklab(&["tune", run.to_str().unwrap(), "--force", "--json"]);
    let forced: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((forced["applied"].as_bool(), forced["forced"].as_bool()), (Some(true), Some(true)));
    assert!(predict("c.csv", &[]).1.contains("applying its tuned decision biases"));
}

/// `predict --skip-bad` fails when more images than `--max-skipped` (5% by default) were
/// unreadable, and always when none was readable, instead of writing a submission of guesses.
#[test]
fn predict_skip_bad_fails_when_too_many_images_are_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 27);
    let run = dir.path().join("run");
    let out = train_tiny(dir.path(), &run, &["train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval = dir.path().join("eval");
    let ids: Vec<String> = fs::read_to_string(eval.join("info.csv")).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    let sub = dir.path().join("sub.csv");
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--device", "cpu", "--skip-bad"];
        args.extend_from_slice(extra);
        masklab(&args)
    };
    for id in &ids[..3] {
        fs::write(eval.join("images").join(id), b"not an image").unwrap();
    }
    // 3 of 28 is more than 5% (1 image).
    let out = predict(&[]);
    assert!(!out.status.success() && stderr(&out).contains("3 of 28") && stderr(&out).contains("--max-skipped"), "{}", stderr(&out));
    assert!(!sub.exists());
    assert!(predict(&["--max-skipped", "3"]).status.success());
    for id in &ids {
        fs::write(eval.join("images").join(id), b"not an image").unwrap();
    }
    fs::remove_file(&sub).unwrap();
    let out = predict(&["--max-skipped", "100%"]);
    assert!(!out.status.success() && stderr(&out).contains("none of the 28 images"), "{}", stderr(&out));
    assert!(!sub.exists());
}

/// Settings that cannot fit the data are all named before any training: nothing is trained,
/// and in a k-fold run no fold is.
#[test]
fn settings_that_do_not_fit_the_data_are_named_before_training() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 12, 28);
    let run = dir.path().join("run");
    let out = train_tiny(
        dir.path(),
        &run,
        &["data.val_ratio=0.01", "train.patience=2", "data.age_bounds=[30, 200]", "sampler.kind=oversample", "sampler.oversample={ 8 = 30 }"],
    );
    assert!(!out.status.success(), "trained with settings that do not fit");
    let err = stderr(&out);
    for expected in ["data.val_ratio = 0.01 holds out no one", "train.patience = 2", "age band", "sampler.oversample: class 8"] {
        assert!(err.contains(expected), "`{expected}` not named in: {err}");
    }
    // Nothing of the failed run is left: not even its config and lock.
    assert!(!run.exists(), "a failed run left {:?}", files_in(&run));

    let kfold = dir.path().join("cv");
    let out = train_tiny(dir.path(), &kfold, &["data.folds=13"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("data.folds = 13 needs at least 13 people") && stderr(&out).contains("no fold was trained"), "{}", stderr(&out));
    assert!(!kfold.exists(), "a failed k-fold run left {:?}", files_in(&kfold));

    // A folder the user made (empty) is left as it was: there, and empty.
    let made = dir.path().join("made");
    fs::create_dir(&made).unwrap();
    let out = train_tiny(&dir.path().join("missing-data"), &made, &[]);
    assert!(!out.status.success() && stderr(&out).contains("train.csv"), "{}", stderr(&out));
    assert!(made.is_dir() && files_in(&made).is_empty(), "{:?}", files_in(&made));
}
