//! `masklab audit` on a k-fold run folder: a hand-made one over generated demo data, whose
//! out-of-fold probabilities come from a good model that sees the true labels (training a real
//! k-fold run that learns the demo faces takes minutes on two cores). The demo files some labels
//! wrong on purpose; the audit must put them first, and its relabel draft must restore the truth.
mod common;
use common::{demo, masklab, stderr, stdout};
use masklab::config::Config;
use masklab::data::dataset::{read_train, ReadOptions, TrainSet};
use masklab::run_dir::heldout::{score_rows, write_rows, HeldOutRow};
use masklab::labels::{Gender, NUM_CLASSES};
use masklab::run_dir::{CrossValidation, FoldScore, FoldsState, RunDir};
use rand::{Rng, SeedableRng};
use std::fs;
use std::path::Path;

/// Probabilities of a model that sees `seen` (the photo's true class): 0.75..0.95 on it, the
/// rest spread.
fn probs_for(seen: usize, rng: &mut rand_chacha::ChaCha8Rng) -> [f32; NUM_CLASSES] {
    let top = rng.gen_range(0.75..0.95f32);
    let mut rest: Vec<f32> = (0..NUM_CLASSES).map(|_| rng.gen_range(0.1..1.0f32)).collect();
    rest[seen] = 0.0;
    let sum: f32 = rest.iter().sum();
    let mut p = [0f32; NUM_CLASSES];
    for c in 0..NUM_CLASSES {
        p[c] = if c == seen { top } else { (1.0 - top) * rest[c] / sum };
    }
    p
}

/// A k-fold run folder (3 folds) holding `rows` as its out-of-fold predictions, trained on `data`
/// (with its relabel list or without), with what `masklab report` needs.
fn hand_made_run(run: &Path, data: &Path, rows: &[HeldOutRow], no_relabel: bool) {
    fs::create_dir_all(run).unwrap();
    let run = RunDir::new(run);
    let cfg = Config::load(None, &["data.folds=3".into(), format!("data.no_relabel={no_relabel}")]).unwrap();
    run.write_config(&cfg.table().unwrap()).unwrap();
    run.write_folds_state(&FoldsState { folds: 3, completed: vec![1, 2, 3] }).unwrap();
    write_rows(&run.oof_predictions(), rows).unwrap();
    let mut per_fold = Vec::new();
    for k in 1..=3 {
        let dir = run.fold(k);
        fs::create_dir_all(dir.path()).unwrap();
        let mut fold_cfg = cfg.clone();
        fold_cfg.data.fold = k;
        dir.write_config(&fold_cfg.table().unwrap()).unwrap();
        let start = serde_json::json!({"kind": "start", "data": data.display().to_string(), "fold": k});
        let epoch = r#"{"kind":"epoch","epoch":1,"step":4,"train_loss":1.5,"lr":0.001,"seconds":2.0,"val":{"loss":1.2,"f1":0.8,"accuracy":0.8,"f1_mask":0.9,"f1_gender":0.9,"f1_age":0.8,"images":7}}"#;
        fs::write(dir.metrics_file(), format!("{start}\n{epoch}\n")).unwrap();
        let fold_rows: Vec<HeldOutRow> = rows.iter().filter(|r| r.fold == k).cloned().collect();
        write_rows(&dir.val_predictions(), &fold_rows.iter().map(|r| HeldOutRow { fold: 0, ..r.clone() }).collect::<Vec<_>>()).unwrap();
        let people: std::collections::BTreeSet<&str> = fold_rows.iter().map(|r| r.person.as_str()).collect();
        per_fold.push(FoldScore { fold: k, images: fold_rows.len(), people: people.len(), best_epoch: 1, scores: score_rows(&fold_rows, |r| r.predicted()), intervals: None });
    }
    let cv = CrossValidation { folds: 3, oof: score_rows(rows, |r| r.predicted()), images: rows.len(), per_fold, fold_f1_mean: 0.8, fold_f1_std: 0.0, oof_intervals: None };
    run.write_cv(&cv).unwrap();
}

/// Out-of-fold rows labelled as `filed` says and predicted as `seen` looks (same people, same order).
fn oof_rows(filed: &TrainSet, seen: &TrainSet, seed: u64) -> Vec<HeldOutRow> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let bounds = masklab::labels::AgeBounds::default();
    let (given, truth) = (filed.samples(&bounds), seen.samples(&bounds));
    given
        .iter()
        .zip(&truth)
        .map(|(g, t)| {
            assert_eq!(g.path, t.path);
            HeldOutRow {
                path: g.path.display().to_string(),
                person: filed.people[g.person].folder.clone(),
                fold: g.person % 3 + 1,
                truth: g.class.encode(),
                probs: probs_for(t.class.encode(), &mut rng),
            }
        })
        .collect()
}

/// An oof_predictions.csv line with its fold column (the third) moved to the next fold.
fn move_fold(line: &str) -> String {
    let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
    let fold: usize = cells[2].parse().unwrap();
    cells[2] = (fold % 3 + 1).to_string();
    cells.join(",")
}

#[test]
fn audit_finds_the_planted_labels_and_its_draft_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    demo(data, 20, 3);
    let filed = read_train(data, &ReadOptions { no_relabel: true, ..Default::default() }).unwrap();
    let mut truth = read_train(data, &ReadOptions::default()).unwrap();
    // Two more wrong genders the relabel list does not know: the suffixed id (its own row can
    // fix it) and one of the two folders sharing an id (no row can fix it alone).
    let flip = |g: Gender| Gender::from_index(1 - g.index()).unwrap();
    let suffixed = truth.people.iter().position(|p| p.id.ends_with("-1")).unwrap();
    let shared = truth.people.iter().position(|p| truth.people.iter().filter(|q| q.id == p.id).count() > 1).unwrap();
    for i in [suffixed, shared] {
        truth.people[i].gender = flip(truth.people[i].gender);
    }
    let rows = oof_rows(&filed, &truth, 1);
    let run = data.join("cv");
    hand_made_run(&run, data, &rows, true);

    let (csv, draft) = (data.join("suspects.csv"), data.join("draft.csv"));
    // mask3 worn below the nose and filed as worn is a hard case (its score halved): accept it too.
    let args = ["audit", run.to_str().unwrap(), "--top", "10", "--out", csv.to_str().unwrap(), "--write-relabel", draft.to_str().unwrap(), "--min-score", "0.3"];
    let out = masklab(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    // A draft is not written over an existing file (the dataset's own list, an earlier draft)
    // unless asked.
    let before = fs::read(&draft).unwrap();
    fs::write(&draft, b"id,field,true_value\n").unwrap();
    let again = masklab(&args);
    assert!(!again.status.success() && stderr(&again).contains("draft.csv exists") && stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(fs::read(&draft).unwrap(), b"id,field,true_value\n");
    let again = masklab(&[&args[..], &["--force"]].concat());
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(fs::read(&draft).unwrap(), before);
    let text = stdout(&out);
    // The demo's planted errors (gender of person 5, swap of 6, age of 11, mask3 of 13) and the two
    // extra genders are the six suspects above the minimum score.
    let folder = |i: usize| filed.people[i].folder.clone();
    let expected = [(4, "gender"), (5, "swap"), (10, "age"), (12, "mask"), (suffixed, "gender"), (shared, "gender")];
    // The ranked lines: rank, score, field, person, ...
    let lines: Vec<&str> = text.lines().filter(|l| l.split_whitespace().next().is_some_and(|w| w.parse::<usize>().is_ok()) && l.contains('.')).filter(|l| !l.contains(" of the ")).collect();
    for (i, field) in expected {
        let rank = lines.iter().position(|l| l.contains(&folder(i)) && l.split_whitespace().nth(2) == Some(field));
        assert!(rank.is_some_and(|r| r < expected.len()), "{field} of {} not in the top {}:\n{text}", folder(i), expected.len());
    }
    assert!(text.contains(&format!("{} of the ", expected.len())), "{text}");
    assert!(lines.iter().any(|l| l.contains(&folder(12)) && l.contains("mask3") && l.contains("[hard case: a mask just below the nose")), "{text}");
    assert!(text.contains("left out of the draft: gender"), "{text}");

    // The suspects CSV lists the top 10 with their evidence.
    let listed = fs::read_to_string(&csv).unwrap();
    assert!(listed.starts_with("rank,score,field,person,id,"));
    assert_eq!(listed.lines().count(), 1 + lines.len());
    assert!(listed.contains(",mask,") && listed.contains("mask3=incorrect"));

    // The draft applied: every planted label and the suffixed one are the truth again; the
    // folder sharing its id keeps its (wrong) label, as does its namesake.
    let fixed = read_train(data, &ReadOptions { relabel: Some(draft.clone()), ..Default::default() }).unwrap();
    let bounds = masklab::labels::AgeBounds::default();
    let classes = |s: &TrainSet| s.samples(&bounds).iter().map(|x| x.class.encode()).collect::<Vec<_>>();
    let mut want = truth.clone();
    want.people[shared].gender = filed.people[shared].gender;
    assert_eq!(classes(&fixed), classes(&want));
    let eda = masklab(&["eda", data.to_str().unwrap(), "--relabel", draft.to_str().unwrap(), "--json"]);
    assert!(eda.status.success(), "{}", stderr(&eda));

    // audit.json is in the run, and the run's page shows the suspects with their photos.
    let audit: serde_json::Value = serde_json::from_str(&fs::read_to_string(RunDir::new(&run).audit_file()).unwrap()).unwrap();
    assert_eq!(audit["audit"]["people"], 20);
    assert_eq!(audit["draft"]["written"].as_array().unwrap().len(), 5);
    let page = fs::read_to_string(run.join("report.html")).unwrap();
    assert!(page.contains("Label audit"), "audit writes the run's page");
    assert!(page.matches("class=\"suspect").count() == lines.len());
    assert!(page.matches("data:image/jpeg;base64,").count() >= 7 * expected.len());
    let out = masklab(&["report", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fs::read_to_string(run.join("report.html")).unwrap().contains("Label audit"));
}

#[test]
fn a_correct_set_has_no_accepted_suspects_and_bad_runs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    demo(data, 16, 4);
    let truth = read_train(data, &ReadOptions::default()).unwrap();
    let run = data.join("cv");
    hand_made_run(&run, data, &oof_rows(&truth, &truth, 2), false);
    // Trained with the demo's relabel list, whose corrections the model agrees with: nothing is
    // accepted, and the draft is the run's own list again (passing it back in keeps it).
    let out = masklab(&["audit", run.to_str().unwrap(), "--write-relabel", data.join("d.csv").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no suspects") || stdout(&out).contains("\n0 of the"), "{}", stdout(&out));
    assert!(stdout(&out).contains("0 row(s) for accepted suspects after the 4 row(s) of the run's own relabel list"), "{}", stdout(&out));
    let own = masklab::data::relabel::read_relabels(&data.join("train/relabel.csv")).unwrap();
    let draft = masklab::data::relabel::read_relabels(&data.join("d.csv")).unwrap();
    assert_eq!(own.iter().map(|r| (&r.id, &r.correction)).collect::<Vec<_>>(), draft.iter().map(|r| (&r.id, &r.correction)).collect::<Vec<_>>());

    let out = masklab(&["audit", data.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not a k-fold run"), "{}", stderr(&out));
    let out = masklab(&["audit", run.to_str().unwrap(), "--min-score", "nan"]);
    assert!(!out.status.success() && stderr(&out).contains("from 0 to 1"), "{}", stderr(&out));

    // Out-of-fold predictions edited by hand are refused, naming the row: one row deleted, one
    // repeated, one moved to another fold.
    let oof_path = RunDir::new(&run).oof_predictions();
    let text = fs::read_to_string(&oof_path).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut moved = lines.clone();
    moved[2] = move_fold(&lines[2]);
    let edits = [([&lines[..3], &lines[4..]].concat(), "lacks"), ([&lines[..], &lines[5..6]].concat(), "appears twice"), (moved, "held it out")];
    for (edited, said) in edits {
        fs::write(&oof_path, edited.join("\n") + "\n").unwrap();
        let out = masklab(&["audit", run.to_str().unwrap()]);
        assert!(!out.status.success() && stderr(&out).contains(said), "{said}: {}", stderr(&out));
        assert!(stderr(&out).contains("oof_predictions.csv"), "{}", stderr(&out));
    }
    fs::write(&oof_path, &text).unwrap();
    fs::remove_file(RunDir::new(&run).oof_predictions()).unwrap();
    let out = masklab(&["audit", run.to_str().unwrap()]);
    assert!(stderr(&out).contains("has no oof_predictions.csv"), "{}", stderr(&out));
}
