//! `masklab sweep` on tiny generated data: local worker processes, a second command that resumes
//! the same study with a larger budget as a job, two jobs at once, a killed sweep run again, and
//! a trial pruned through the trainer.
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

/// The study file as JSON, for reading what the workers did.
fn study_json(out_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(out_dir.join("study.json")).unwrap()).unwrap()
}

fn sweep_args(space: &Path, data: &Path, out: &Path) -> Vec<String> {
    let mut all: Vec<String> = ["sweep", space.to_str().unwrap(), data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--job"].iter().map(|s| s.to_string()).collect();
    all.extend(tiny_recipe(&["train.threads=1"]));
    all
}

/// Two `--job` processes started together on one sweep folder (as two tasks of a Slurm array):
/// both end well, every trial of the budget ran once, and the two workers' tallies add up to it.
#[test]
fn two_jobs_share_one_sweep_without_repeating_a_trial() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 5);
    let out_dir = dir.path().join("sweep");
    let space = sweep_file(dir.path(), 4);
    let args = sweep_args(&space, dir.path(), &out_dir);
    let jobs: Vec<std::process::Child> = (0..2)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_masklab"))
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut finished = 0;
    for job in jobs {
        let out = job.wait_with_output().unwrap();
        assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
        let said = stdout(&out);
        let tally = said.lines().find_map(|l| l.strip_prefix("this worker: ")).unwrap_or_else(|| panic!("{said}"));
        // "N trials complete, M pruned, K failed"
        let numbers: Vec<usize> = tally.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
        assert_eq!(numbers.len(), 3, "{tally}");
        assert_eq!(numbers[2], 0, "a trial failed: {said}\n{}", stderr(&out));
        finished += numbers[0] + numbers[1];
    }
    assert_eq!(finished, 4, "the two workers ran the 4 trials of the budget between them");
    let study = study_json(&out_dir);
    let trials = study["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "{study}");
    for t in trials {
        assert_eq!(t["attempts"], 1, "a trial was started twice: {t}");
        assert!(t["status"] == "complete" || t["status"] == "pruned", "{t}");
    }
    assert!(!out_dir.join("trial-004").exists());
    assert_eq!(fs::read_to_string(out_dir.join("sweep.csv")).unwrap().lines().count(), 5);
}

/// A sweep killed in the middle of a trial (SIGKILL: no clean-up) resumes where it stopped when the
/// same command runs again: the trial is taken over as a second attempt from its run folder and
/// finishes, with every epoch's objective in the study.
#[cfg(unix)]
#[test]
fn a_killed_sweep_resumes_its_unfinished_trial_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 6);
    let out_dir = dir.path().join("sweep");
    let space = sweep_file(dir.path(), 1);
    let mut args = sweep_args(&space, dir.path(), &out_dir);
    args.push("train.epochs=4".to_string());
    let mut job = std::process::Command::new(env!("CARGO_BIN_EXE_masklab"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the study holds the trial's first epoch (and before its last).
    let waited = std::time::Instant::now();
    loop {
        let epochs = fs::read_to_string(out_dir.join("study.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|study| study["trials"][0]["epochs"].as_array().map(|e| e.len()))
            .unwrap_or(0);
        if epochs >= 1 {
            break;
        }
        assert!(job.try_wait().unwrap().is_none(), "the sweep ended before it could be killed (4 epochs took under one poll)");
        assert!(waited.elapsed() < std::time::Duration::from_secs(300), "no epoch recorded in 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    job.kill().unwrap();
    job.wait().unwrap();
    let killed = study_json(&out_dir);
    assert_eq!(killed["trials"][0]["status"], "running", "{killed}");

    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let again = masklab(&refs);
    assert!(again.status.success(), "{}\n{}", stdout(&again), stderr(&again));
    assert!(stderr(&again).contains("(attempt 2: resuming)"), "{}", stderr(&again));
    let study = study_json(&out_dir);
    let trial = &study["trials"][0];
    assert_eq!(trial["attempts"], 2, "{trial}");
    assert_eq!(trial["status"], "complete", "{trial}");
    let epochs: Vec<u64> = trial["epochs"].as_array().unwrap().iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4], "{trial}");
    assert!(!out_dir.join("trial-001").exists(), "the budget was 1 trial");
}

/// ASHA stops a trial that is not in the top share at a rung, through the trainer: the run ends
/// after that epoch (its metrics log has no later epoch), and sweep.csv says pruned. The first
/// trial's recorded losses are lowered to 0 so that the second one must lose to it.
#[test]
fn a_trial_below_the_rung_is_pruned_and_its_run_stops_early() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 7);
    let out_dir = dir.path().join("sweep");
    // Minimising the validation loss, which no run brings to 0.
    let space = |trials: usize| {
        let path = dir.path().join(format!("loss-{trials}.toml"));
        fs::write(&path, format!("[space]\n\"optim.lr\" = {{ float = [0.0001, 0.01], log = true }}\n[budget]\ntrials = {trials}\n\
            [objective]\nmetric = \"loss\"\n[sampler]\nkind = \"random\"\n[pruner]\nmin_epochs = 1\nreduction_factor = 2\n")).unwrap();
        path
    };
    let one = space(1);
    let first = masklab(&sweep_args(&one, dir.path(), &out_dir).iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(first.status.success(), "{}\n{}", stdout(&first), stderr(&first));

    let mut study = study_json(&out_dir);
    for e in study["trials"][0]["epochs"].as_array_mut().unwrap() {
        e["value"] = serde_json::json!(0.0);
    }
    fs::write(out_dir.join("study.json"), serde_json::to_string_pretty(&study).unwrap()).unwrap();

    let two = space(2);
    let second = masklab(&sweep_args(&two, dir.path(), &out_dir).iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(second.status.success(), "{}\n{}", stdout(&second), stderr(&second));
    assert!(stdout(&second).contains("0 trials complete, 1 pruned"), "{}\n{}", stdout(&second), stderr(&second));
    let trial = &study_json(&out_dir)["trials"][1];
    assert_eq!(trial["status"], "pruned", "{trial}");
    assert_eq!(trial["epochs"].as_array().unwrap().len(), 1, "{trial}");
    let log = fs::read_to_string(out_dir.join("trial-001/metrics.jsonl")).unwrap();
    assert!(!log.contains("\"epoch\":2"), "the pruned run went on to epoch 2:\n{log}");
    let csv = fs::read_to_string(out_dir.join("sweep.csv")).unwrap();
    assert!(csv.lines().nth(2).unwrap().contains("pruned"), "{csv}");
}
