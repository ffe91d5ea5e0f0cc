use super::*;
use crate::sweep::space::ParamValue;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};

fn spec(extra: &str) -> SweepSpec {
    SweepSpec::parse(&format!("[space]\n\"optim.lr\" = {{ float = [1e-4, 1e-1], log = true }}\n\"train.epochs\" = {{ int = [2, 9] }}\n{extra}")).unwrap()
}

fn lr(params: &Params) -> f64 {
    match params["optim.lr"] {
        ParamValue::Float(x) => x,
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn a_worker_runs_trials_until_the_budget_is_spent_and_the_study_remembers_them() {
    let dir = tempfile::tempdir().unwrap();
    let study = Study::open(dir.path(), spec("[budget]\ntrials = 3\n[pruner]\nkind = \"none\"\n")).unwrap();
    let mut numbers = Vec::new();
    while let Some(claim) = study.next_trial().unwrap() {
        assert!(!claim.resume && claim.attempt == 1);
        assert_eq!(claim.run().path(), dir.path().join(claim.name()));
        for epoch in 1..=2 {
            assert_eq!(study.report_epoch(&claim, epoch, 0.1 * epoch as f64).unwrap(), Judgement::Continue);
        }
        numbers.push(claim.number);
        let value = lr(&claim.params);
        study.finish(claim, Outcome::Complete(value)).unwrap();
    }
    assert_eq!(numbers, vec![0, 1, 2]);
    let state = study.state().unwrap();
    assert_eq!(state.trials.len(), 3);
    for t in &state.trials {
        assert_eq!((t.status, t.attempts, t.epochs.len()), (TrialStatus::Complete, 1, 2));
        assert!(t.finished.unwrap() >= t.started && t.worker.ends_with(&format!(":{}", std::process::id())));
        assert_eq!(t.value, Some(lr(&t.params)));
    }
    let best = state.best().unwrap();
    assert!(state.trials.iter().all(|t| t.value.unwrap() <= best.value.unwrap()));
    // Another worker, later: the same study; raising the budget continues it.
    let again = Study::open(dir.path(), spec("[budget]\ntrials = 4\n[pruner]\nkind = \"none\"\n")).unwrap();
    assert_eq!(again.state().unwrap().trials, state.trials);
    let claim = again.next_trial().unwrap().unwrap();
    assert_eq!(claim.number, 3);
    again.finish(claim, Outcome::Failed("out of memory".into())).unwrap();
    assert!(again.next_trial().unwrap().is_none());
    let last = &again.state().unwrap().trials[3];
    assert_eq!((last.status, last.note.as_deref()), (TrialStatus::Failed, Some("out of memory")));
}

#[test]
fn a_study_started_with_another_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Study::open(dir.path(), spec("[budget]\ntrials = 3\n")).unwrap();
    let other = SweepSpec::parse("[space]\n\"optim.lr\" = { float = [1e-3, 1e-1] }\n[budget]\ntrials = 3\n").unwrap();
    let err = format!("{:#}", Study::open(dir.path(), other).err().unwrap());
    assert!(err.contains("study.json was started with another [space]"), "{err}");
    let err = format!("{:#}", Study::open(dir.path(), spec("[budget]\ntrials = 3\n[sampler]\nseed = 9\n")).err().unwrap());
    assert!(err.contains("another [sampler]"), "{err}");
}

#[test]
fn the_pruner_stops_a_poor_trial_and_a_resumed_attempt_rewrites_its_later_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let study = Study::open(dir.path(), spec("[budget]\ntrials = 5\n[pruner]\nreduction_factor = 2\n")).unwrap();
    let first = study.next_trial().unwrap().unwrap();
    for (epoch, value) in [(1, 0.5), (2, 0.6), (3, 0.55)] {
        assert_eq!(study.report_epoch(&first, epoch, value).unwrap(), Judgement::Continue);
    }
    // Epoch 2 again (a resumed attempt redoing it): epochs 2 and 3 are replaced.
    study.report_epoch(&first, 2, 0.65).unwrap();
    let recorded: Vec<(usize, f64)> = study.state().unwrap().trials[0].epochs.iter().map(|e| (e.epoch, e.value)).collect();
    assert_eq!(recorded, vec![(1, 0.5), (2, 0.65)]);
    study.finish(first, Outcome::Complete(0.65)).unwrap();
    // A second trial, worse at the first rung (epoch 1) than the first: stopped there.
    let second = study.next_trial().unwrap().unwrap();
    let Judgement::Stop(why) = study.report_epoch(&second, 1, 0.3).unwrap() else { panic!("0.3 < 0.5 at rung 1 with eta 2") };
    let state = study.state().unwrap();
    assert_eq!((state.trials[1].status, state.trials[1].note.as_deref()), (TrialStatus::Pruned, Some(why.as_str())));
    assert!(state.trials[1].finished.is_some());
    // A pruned trial is over: neither more epochs nor a finish.
    assert!(format!("{:#}", study.report_epoch(&second, 2, 0.9).unwrap_err()).contains("trial-001 is pruned, not running"));
    assert!(format!("{:#}", study.finish(second, Outcome::Complete(0.9)).unwrap_err()).contains("pruned"));
    // A value that is not a number makes a failed trial, and the study file keeps it as null.
    let third = study.next_trial().unwrap().unwrap();
    study.report_epoch(&third, 3, f64::NAN).unwrap();
    study.finish(third, Outcome::Complete(f64::NAN)).unwrap();
    let state = study.state().unwrap();
    assert_eq!(state.trials[2].status, TrialStatus::Failed);
    assert!(state.trials[2].epochs[0].value.is_nan());
    assert!(std::fs::read_to_string(study.file()).unwrap().contains("\"value\": null"));
}

#[test]
fn a_trial_whose_worker_let_go_unfinished_is_taken_over_as_a_resumed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let budget = "[budget]\ntrials = 3\n";
    let (one, two) = (Study::open(dir.path(), spec(budget)).unwrap(), Study::open(dir.path(), spec(budget)).unwrap());
    let held = one.next_trial().unwrap().unwrap();
    one.report_epoch(&held, 1, 0.4).unwrap();
    // While its worker holds trial 0, another worker gets a new trial.
    let other = two.next_trial().unwrap().unwrap();
    assert_eq!(other.number, 1);
    let params = held.params.clone();
    drop(held);
    let taken = two.next_trial().unwrap().unwrap();
    assert_eq!((taken.number, taken.resume, taken.attempt), (0, true, 2));
    assert_eq!(taken.params, params);
    let t = &two.state().unwrap().trials[0];
    assert_eq!((t.status, t.attempts, t.epochs.len()), (TrialStatus::Running, 2, 1));
    two.finish(taken, Outcome::Complete(0.5)).unwrap();
    two.finish(other, Outcome::Complete(0.6)).unwrap();
}

#[test]
fn workers_in_parallel_share_the_study_without_losing_or_repeating_a_trial() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[budget]\ntrials = 24\n[pruner]\nkind = \"none\"\n[sampler]\nstartup_trials = 4\n";
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let study = Study::open(&path, spec(text)).unwrap();
                let mut mine = Vec::new();
                while let Some(claim) = study.next_trial().unwrap() {
                    for epoch in 1..=3 {
                        study.report_epoch(&claim, epoch, lr(&claim.params) * epoch as f64).unwrap();
                    }
                    mine.push(claim.number);
                    let value = lr(&claim.params);
                    study.finish(claim, Outcome::Complete(value)).unwrap();
                }
                mine
            })
        })
        .collect();
    let claimed: Vec<Vec<usize>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let all: BTreeSet<usize> = claimed.iter().flatten().copied().collect();
    assert_eq!(all, (0..24).collect(), "{claimed:?}");
    assert_eq!(claimed.iter().map(Vec::len).sum::<usize>(), 24, "a trial was run twice: {claimed:?}");
    let state = Study::open(dir.path(), spec(text)).unwrap().state().unwrap();
    assert_eq!(state.trials.len(), 24);
    for t in &state.trials {
        assert_eq!((t.status, t.attempts), (TrialStatus::Complete, 1), "{t:?}");
        assert_eq!(t.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
    // No temporary file is left.
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

/// A worker process killed with SIGKILL while it runs a trial: its trial is taken over (resumed),
/// with the epochs it recorded. The child is this test binary, re-run with MASKLAB_SWEEP_CHILD.
#[cfg(unix)]
#[test]
fn a_killed_worker_process_leaves_its_trial_to_the_next_worker() {
    let budget = "[budget]\ntrials = 5\n";
    if let Some(dir) = std::env::var_os("MASKLAB_SWEEP_CHILD") {
        let study = Study::open(Path::new(&dir), spec(budget)).unwrap();
        let claim = study.next_trial().unwrap().unwrap();
        study.report_epoch(&claim, 1, 0.25).unwrap();
        println!("claimed {}", claim.number);
        // Until the parent kills it.
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sweep::study::tests::a_killed_worker_process_leaves_its_trial_to_the_next_worker", "--nocapture", "--test-threads=1"])
        .env("MASKLAB_SWEEP_CHILD", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The test harness writes the test's name before its output, on the same line.
    let said = lines.find_map(|l| l.ok().and_then(|l| l.split_once("claimed ").map(|(_, n)| n.trim().to_string()))).expect("the child claims a trial");
    assert_eq!(said, "0");
    let study = Study::open(dir.path(), spec(budget)).unwrap();
    // Alive, the child holds trial 0.
    let other = study.next_trial().unwrap().unwrap();
    assert_eq!(other.number, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let taken = study.next_trial().unwrap().unwrap();
    assert_eq!((taken.number, taken.resume, taken.attempt), (0, true, 2));
    let t = &study.state().unwrap().trials[0];
    assert_eq!(t.epochs.iter().map(|e| (e.epoch, e.value)).collect::<Vec<_>>(), vec![(1, 0.25)]);
    assert!(t.worker.ends_with(&format!(":{}", std::process::id())), "{}", t.worker);
}

/// A writer killed between writing its temporary file and renaming it: the study file is the
/// previous whole one, and the next writer removes the leftover. A damaged study file is an
/// error naming it.
#[test]
fn a_write_cut_short_leaves_the_previous_study_and_a_damaged_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let study = Study::open(dir.path(), spec("[budget]\ntrials = 3\n")).unwrap();
    let claim = study.next_trial().unwrap().unwrap();
    let before = study.state().unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let leftover = dir.path().join(format!(".study.json.tmp{dead}.a1b2c3"));
    std::fs::write(&leftover, b"{\"version\": 1, \"trials\": [").unwrap();
    assert_eq!(study.state().unwrap(), before);
    study.report_epoch(&claim, 1, 0.5).unwrap();
    assert!(!leftover.exists(), "the dead writer's temporary file is removed");
    assert_eq!(study.state().unwrap().trials[0].epochs.len(), 1);
    let text = std::fs::read_to_string(study.file()).unwrap();
    std::fs::write(study.file(), &text[..text.len() / 2]).unwrap();
    let err = format!("{:#}", study.report_epoch(&claim, 2, 0.5).unwrap_err());
    assert!(err.contains("study.json is not a sweep's study file") && err.contains("line"), "{err}");
}

#[test]
fn a_worker_starts_nothing_once_its_time_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let study = Study::open(dir.path(), spec("[budget]\nseconds = 0.3\n")).unwrap();
    let claim = study.next_trial().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(study.next_trial().unwrap().is_none());
    // What is under way still finishes.
    study.finish(claim, Outcome::Complete(0.5)).unwrap();
    // A worker that opens the study now has its own time.
    assert!(Study::open(dir.path(), spec("[budget]\nseconds = 30\n")).unwrap().next_trial().unwrap().is_some());
}
