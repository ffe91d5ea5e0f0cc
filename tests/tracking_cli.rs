//! Experiment tracking end to end: a tiny training run writes TensorBoard event files that
//! TensorBoard's own reader (the `tensorboard` package in .venv) reads back with the values of
//! metrics.jsonl, and logs to a real `mlflow server` whose REST API returns the same values,
//! the params and the artifacts. `scripts/setup.sh --test` installs both packages.
mod common;
use common::{demo, masklab, stderr};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn venv_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin").join(name)
}

/// The tiny recipe of tests/train_cli.rs, with a step line every step.
fn train(data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["train".into(), data.to_str().unwrap().into(), "--out".into(), run.to_str().unwrap().into(), "--quiet".into()];
    args.extend(
        ["model.backbone=resnet18", "data.size=32", "train.batch_size=16", "train.epochs=2", "train.log_every=1", "train.threads=2", "train.device=cpu", "data.val_ratio=0.25", "optim.lr=0.003"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
    );
    masklab(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}

fn resume(data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", data.to_str().unwrap(), "--resume", run.to_str().unwrap(), "--quiet"];
    args.extend(extra);
    masklab(&args)
}

fn metrics(run: &Path, kind: &str) -> Vec<Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// The `(name, value)` numbers of a metrics.jsonl line as the trackers name them.
fn named(line: &Value) -> Vec<(String, f64)> {
    masklab::run_dir::metrics_log::line_scalars(line)
}

/// TensorBoard stores scalars as f32.
fn assert_f32_eq(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{what}: TensorBoard has {got}, metrics.jsonl {want}");
}

/// What TensorBoard's EventAccumulator reads from a log folder: per tag, the [step, value] scalars
/// and [step, width, height, is_png, png_width, png_height] images. `purge` is TensorBoard's orphaned-data purge.
fn tensorboard_read(dir: &Path, purge: bool) -> Value {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0}, purge_orphaned_data=sys.argv[2] == "1")
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.width, e.height, e.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n",
                    int.from_bytes(e.encoded_image_string[16:20], "big"), int.from_bytes(e.encoded_image_string[20:24], "big")]
                   for e in acc.Images(t)] for t in tags["images"]},
}))
"#;
    let python = venv_bin("python");
    let out = Command::new(&python)
        .args(["-c", script, dir.to_str().unwrap(), if purge { "1" } else { "0" }])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; scripts/setup.sh --test creates it", python.display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "TensorBoard's reader failed{}:\n{err}",
        if err.contains("No module named 'tensorboard'") { " (tensorboard is not installed in .venv: run scripts/setup.sh --test)" } else { "" }
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks that TensorBoard holds exactly the step and epoch lines of metrics.jsonl.
fn assert_tensorboard_matches_metrics(tb: &Value, run: &Path) {
    let steps = metrics(run, "step");
    let epochs = metrics(run, "epoch");
    assert!(!steps.is_empty() && !epochs.is_empty());
    for (lines, prefix) in [(&steps, "train"), (&epochs, "epoch")] {
        for (name, _) in named(&lines[0]) {
            let tag = format!("{prefix}/{name}");
            let series = tb["scalars"][&tag].as_array().unwrap_or_else(|| panic!("TensorBoard lacks {tag}: {tb}"));
            assert_eq!(series.len(), lines.len(), "{tag}: one value per metrics.jsonl line");
            for (point, line) in series.iter().zip(lines.iter()) {
                assert_eq!(point[0], line["step"], "{tag}: steps in order");
                let want = named(line).into_iter().find(|(k, _)| *k == name).unwrap().1;
                assert_f32_eq(point[1].as_f64().unwrap(), want, &format!("{tag} at step {}", point[0]));
            }
        }
    }
    for name in ["train_loss", "lr", "val_loss", "val_accuracy", "val_f1", "val_f1_mask", "val_f1_gender", "val_f1_age"] {
        assert!(tb["scalars"].get(format!("epoch/{name}")).is_some(), "epoch/{name} missing: {tb}");
    }
    for name in ["loss", "lr", "images_per_s"] {
        assert!(tb["scalars"].get(format!("train/{name}")).is_some(), "train/{name} missing: {tb}");
    }
    let images = tb["images"]["val/confusion"].as_array().unwrap_or_else(|| panic!("no confusion images: {tb}"));
    // One PNG per epoch at its last step, whose stated size is the size in its IHDR header.
    let got: Vec<Value> = images.iter().map(|i| json!([i[0], i[3]])).collect();
    let want: Vec<Value> = epochs.iter().map(|e| json!([e["step"], true])).collect();
    assert_eq!(got, want, "a PNG confusion matrix per epoch");
    for i in images {
        assert_eq!((&i[1], &i[2]), (&i[4], &i[5]), "stated size = the PNG's own size: {i}");
        assert!(i[1].as_u64().unwrap() > 500 && i[2].as_u64().unwrap() > 500, "a readable 18x18 matrix: {i}");
    }
}

#[test]
fn tensorboard_reads_back_the_values_of_metrics_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 31);
    let run = dir.path().join("run");
    let out = train(dir.path(), &run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tb = tensorboard_read(&run.join("tensorboard"), true);
    assert_tensorboard_matches_metrics(&tb, &run);
}

#[test]
fn a_resumed_run_shows_redone_epochs_once_in_tensorboard() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 32);
    let run = dir.path().join("run");
    let out = train(dir.path(), &run, &["train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved = dir.path().join("epoch1");
    fs::create_dir(&saved).unwrap();
    for f in ["last.safetensors", "last.json"] {
        fs::copy(run.join(f), saved.join(f)).unwrap();
    }
    let out = resume(dir.path(), &run, &["train.epochs=2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first_try = metrics(&run, "epoch")[1]["train_loss"].as_f64().unwrap();
    // As if the process died after logging epoch 2 but before its checkpoint landed: epoch 2
    // is redone, with another learning rate so that its values differ.
    for f in ["last.safetensors", "last.json"] {
        fs::copy(saved.join(f), run.join(f)).unwrap();
    }
    let out = resume(dir.path(), &run, &["train.epochs=2", "optim.lr=0.0003"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let epochs = metrics(&run, "epoch");
    assert_eq!(epochs.len(), 2);
    assert_ne!(epochs[1]["train_loss"].as_f64().unwrap(), first_try);
    // Even without TensorBoard's own purge of orphaned data, each step is there once, with the
    // values of the attempt that completed.
    let tb = tensorboard_read(&run.join("tensorboard"), false);
    assert_tensorboard_matches_metrics(&tb, &run);
    assert_eq!(fs::read_dir(run.join("tensorboard")).unwrap().count(), 3, "one event file per attempt");
}

#[test]
fn a_tracking_server_that_is_down_is_a_warning_and_tensorboard_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 33);
    let run = dir.path().join("run");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("tracking.mlflow=http://127.0.0.1:{port}");
    let out = train(dir.path(), &run, &["train.epochs=1", &url, "tracking.tensorboard=false"]);
    assert!(out.status.success(), "a dead tracking server failed the training: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("MLflow") && err.contains(&port.to_string()) && err.contains("training goes on"), "{err}");
    assert_eq!(err.matches("MLflow at").count(), 1, "warned once: {err}");
    assert_eq!(metrics(&run, "epoch").len(), 1);
    assert!(run.join("best.safetensors").is_file());
    assert!(!run.join("tensorboard").exists(), "tracking.tensorboard=false writes no event files");
    assert!(!run.join("mlflow.json").exists());

    let out = train(dir.path(), &dir.path().join("bad"), &["tracking.mlflow=localhost:5000"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tracking.mlflow"), "{}", stderr(&out));
}

/// A `mlflow server` on a free loopback port, stopped with its whole process group on drop
/// (it starts uvicorn workers of its own), whatever the test's outcome.
struct MlflowServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl MlflowServer {
    fn start(dir: &Path) -> MlflowServer {
        use std::os::unix::process::CommandExt;
        let mlflow = venv_bin("mlflow");
        assert!(mlflow.is_file(), "{} is missing: the MLflow test needs `mlflow` in .venv (scripts/setup.sh --test installs it)", mlflow.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join("mlflow-server.log");
        let child = Command::new(&mlflow)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            // The server's background job runner is not needed for tracking; it costs CPU.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(dir.join("mlflow-server.err")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", mlflow.display()));
        let mut server = MlflowServer { child, url: format!("http://127.0.0.1:{port}"), log };
        server.wait_until_up(dir);
        server
    }

    fn wait_until_up(&mut self, dir: &Path) {
        let start = Instant::now();
        loop {
            if ureq::get(format!("{}/health", self.url)).call().is_ok_and(|r| r.status() == 200) {
                return;
            }
            let why = if let Some(status) = self.child.try_wait().unwrap() {
                format!("exited with {status}")
            } else if start.elapsed() > Duration::from_secs(180) {
                "did not answer in 180 s".to_string()
            } else {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            };
            panic!(
                "mlflow server {why}:\n{}\n{}",
                fs::read_to_string(&self.log).unwrap_or_default(),
                fs::read_to_string(dir.join("mlflow-server.err")).unwrap_or_default()
            );
        }
    }

    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Value {
        let mut request = ureq::get(format!("{}/api/2.0/{endpoint}", self.url));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        request.call().unwrap_or_else(|e| panic!("{endpoint}: {e}")).body_mut().read_json().unwrap()
    }

    fn post(&self, endpoint: &str, body: Value) -> Value {
        ureq::post(format!("{}/api/2.0/{endpoint}", self.url)).send_json(body).unwrap_or_else(|e| panic!("{endpoint}: {e}")).body_mut().read_json().unwrap()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // SAFETY: signals the process group this test created (process_group(0): pgid = pid).
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// The MLflow run's history of a metric as (step, value).
fn history(server: &MlflowServer, run_id: &str, key: &str) -> Vec<(i64, f64)> {
    let v = server.get("mlflow/metrics/get-history", &[("run_id", run_id), ("metric_key", key)]);
    v["metrics"].as_array().map(|ms| ms.iter().map(|m| (m["step"].as_i64().unwrap(), m["value"].as_f64().unwrap())).collect()).unwrap_or_default()
}

/// Every artifact path of a run, with its size.
fn artifacts(server: &MlflowServer, run_id: &str, path: &str, out: &mut Vec<(String, u64)>) {
    let v = server.get("mlflow/artifacts/list", &[("run_id", run_id), ("path", path)]);
    for f in v["files"].as_array().cloned().unwrap_or_default() {
        let p = f["path"].as_str().unwrap().to_string();
        if f["is_dir"] == true {
            artifacts(server, run_id, &p, out);
        } else {
            out.push((p, f["file_size"].as_u64().unwrap()));
        }
    }
}

#[test]
fn mlflow_receives_params_metrics_and_artifacts_and_a_resume_continues_the_run() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 34);
    let server = MlflowServer::start(dir.path());
    let url = format!("tracking.mlflow={}", server.url);
    let run = dir.path().join("run");
    // Whatever of the report is in the run folder at the end goes along.
    fs::create_dir_all(run.join("report")).unwrap();
    fs::write(run.join("report.html"), "<html></html>").unwrap();
    fs::write(run.join("report/notes.txt"), "report asset").unwrap();
    let out = train(dir.path(), &run, &[&url, "tracking.experiment=masklab-test", "train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("WARN"), "{}", stderr(&out));
    let out = resume(dir.path(), &run, &["train.epochs=2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("changed on resume: train.epochs (1 -> 2)"), "{}", stderr(&out));

    let experiment = server.get("mlflow/experiments/get-by-name", &[("experiment_name", "masklab-test")]);
    let experiment_id = experiment["experiment"]["experiment_id"].as_str().unwrap().to_string();
    let runs = server.post("mlflow/runs/search", json!({"experiment_ids": [experiment_id], "max_results": 10}));
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "the resume continued the same MLflow run: {runs:?}");
    let info = &runs[0]["info"];
    let run_id = info["run_id"].as_str().unwrap();
    assert_eq!(info["status"], "FINISHED");
    assert_eq!(info["run_name"], "run");
    let link: Value = serde_json::from_str(&fs::read_to_string(run.join("mlflow.json")).unwrap()).unwrap();
    assert_eq!(link["run_id"], run_id);

    let params: Vec<(String, String)> = runs[0]["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["key"].as_str().unwrap().to_string(), p["value"].as_str().unwrap().to_string()))
        .collect();
    let param = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(param("model.backbone"), Some("resnet18"));
    assert_eq!(param("data.size"), Some("32"));
    assert_eq!(param("train.epochs"), Some("1"), "MLflow keeps a run's first params");
    assert_eq!(param("tracking.experiment"), Some("masklab-test"));

    let epochs = metrics(&run, "epoch");
    assert_eq!(epochs.len(), 2);
    for name in ["train_loss", "lr", "val_loss", "val_accuracy", "val_f1", "val_f1_mask", "val_f1_gender", "val_f1_age"] {
        let want: Vec<(i64, f64)> =
            epochs.iter().map(|e| (e["epoch"].as_i64().unwrap(), named(e).into_iter().find(|(k, _)| k == name).unwrap().1)).collect();
        assert_eq!(history(&server, run_id, name), want, "{name}");
    }

    let mut listed = Vec::new();
    artifacts(&server, run_id, "", &mut listed);
    for (path, _) in &listed {
        assert!(!path.starts_with("last."), "only the best checkpoint is uploaded: {listed:?}");
    }
    for f in ["best.safetensors", "best.json", "config.toml", "metrics.jsonl", "val_predictions.csv", "report.html", "report/notes.txt"] {
        let size = fs::metadata(run.join(f)).unwrap().len();
        assert!(listed.contains(&(f.to_string(), size)), "{f} ({size} bytes) is not an artifact: {listed:?}");
    }
    let stored = dir.path().join("artifacts").join(&experiment_id).join(run_id).join("artifacts/best.safetensors");
    assert_eq!(fs::read(stored).unwrap(), fs::read(run.join("best.safetensors")).unwrap());
}
