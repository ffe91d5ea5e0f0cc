//! `masklab sweep` on tiny generated data: local worker processes, then a second command that
//! resumes the same study with a larger budget as a job, and the result files.
mod common;
use common::{demo, masklab, stderr, stdout, tiny_recipe};
use std::fs;
use std::path::Path;

fn sweep_file(dir: &Path, trials: usize) -> std::path::PathBuf {
    let path = dir.join(format!("space-{trials}.toml"));
    let text = format!(
        "[space]\n\"optim.lr\" = {{ float = [0.0001, 0.01], log = true }}\n\"train.batch_size\" = {{ choices = [8, 16] }}\n\
         [budget]\ntrials = {trials}\n[sampler]\nkind = \"random\"\nseed = 3\n[pruner]\nmin_epochs = 1\nreduction_factor = 2\n"
    );
    fs::write(&path, text).unwrap();
    path
}

fn sweep(args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(tiny_recipe(&["train.threads=1"]));
    let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
    masklab(&refs)
}

#[test]
fn a_sweep_runs_trials_with_local_workers_and_resumes_with_a_larger_budget() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 4);
    let out_dir = dir.path().join("sweep");
    let (data, out) = (dir.path().to_str().unwrap(), out_dir.to_str().unwrap());

    let two = sweep_file(dir.path(), 2);
    let first = sweep(&["sweep", two.to_str().unwrap(), data, "--out", out, "--workers", "2"]);
    assert!(first.status.success(), "{}\n{}", stdout(&first), stderr(&first));
    for trial in ["trial-000", "trial-001"] {
        let run = out_dir.join(trial);
        assert!(run.join("config.toml").is_file() && run.join("metrics.jsonl").is_file(), "{trial} is not a run");
    }
    assert!(!out_dir.join("trial-002").exists(), "the budget was 2 trials");
    let first_log = fs::read_to_string(out_dir.join("trial-000/metrics.jsonl")).unwrap();

    // The same sweep with a larger budget, as one job: the finished trials stay as they were.
    let three = sweep_file(dir.path(), 3);
    let second = sweep(&["sweep", three.to_str().unwrap(), data, "--out", out, "--job"]);
    assert!(second.status.success(), "{}\n{}", stdout(&second), stderr(&second));
    assert!(stdout(&second).contains("this worker: "), "{}", stdout(&second));
    assert_eq!(fs::read_to_string(out_dir.join("trial-000/metrics.jsonl")).unwrap(), first_log, "a finished trial ran again");
    assert!(out_dir.join("trial-002/metrics.jsonl").is_file());

    let csv = fs::read_to_string(out_dir.join("sweep.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows.iter().all(|r| r.contains("complete") || r.contains("pruned")), "{csv}");
    assert!(csv.lines().next().unwrap().contains("optim.lr"), "{csv}");
    let page = fs::read_to_string(out_dir.join("sweep.html")).unwrap();
    assert!(page.contains("trial-000"), "the page lists the trials");
    // The preset is a config `train --config` takes.
    let preset = out_dir.join("best.toml");
    assert!(fs::read_to_string(&preset).unwrap().contains("lr"));
    let bad = masklab(&["train", data, "--config", preset.to_str().unwrap(), "optim.lrr=1"]);
    assert!(stderr(&bad).contains("did you mean `optim.lr`"), "the preset must load as a config: {}", stderr(&bad));
}
