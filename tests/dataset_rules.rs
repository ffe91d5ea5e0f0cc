//! What the dataset reader refuses and what it accepts, through `masklab eda`: a person's folder
//! listed twice, relabel ids that several folders share, damaged photos, and ids that need CSV
//! quoting; warnings without colour codes when stderr is not a terminal.
mod common;
use common::{demo, masklab, stderr, stdout};
use std::fs;
use std::path::Path;

fn eda_json(data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["eda", data.to_str().unwrap(), "--json"];
    args.extend(extra);
    let out = masklab(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn a_folder_listed_twice_is_an_error_naming_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 10, 4);
    let csv = dir.path().join("train/train.csv");
    let text = fs::read_to_string(&csv).unwrap();
    // Line 4 (the third person) again at the end: line 12.
    let third = text.lines().nth(3).unwrap().to_string();
    fs::write(&csv, format!("{text}{third}\n")).unwrap();
    let data = dir.path().to_str().unwrap();
    let out = masklab(&["eda", data]);
    assert!(!out.status.success(), "the same person counted twice");
    let err = stderr(&out);
    assert!(err.contains("train.csv:12") && err.contains("train.csv:4") && err.contains("already listed"), "{err}");
    // --skip-bad reports it and keeps the person once.
    let v = eda_json(dir.path(), &["--skip-bad"]);
    assert_eq!(v["people"], 10);
    assert_eq!(v["images"], 70);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{}", v["problems"]);
}

#[test]
fn a_relabel_id_shared_by_two_folders_must_name_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    // demo-data gives people 8 and 10 the id 000008 (two folders, two people: allowed).
    demo(dir.path(), 10, 4);
    let csv = fs::read_to_string(dir.path().join("train/train.csv")).unwrap();
    let folders: Vec<(usize, String)> = csv
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("000008,"))
        .map(|(i, l)| (i + 1, l.rsplit(',').next().unwrap().to_string()))
        .collect();
    assert_eq!(folders.len(), 2, "{csv}");
    let fix = dir.path().join("fix.csv");
    fs::write(&fix, "id,field,true_value\n000001,age,33\n000008,age,99\n").unwrap();
    let out = masklab(&["eda", dir.path().to_str().unwrap(), "--relabel", fix.to_str().unwrap()]);
    assert!(!out.status.success(), "an ambiguous id was applied to both folders");
    let err = stderr(&out);
    assert!(err.contains("fix.csv:3") && err.contains("000008"), "{err}");
    for (line, folder) in &folders {
        assert!(err.contains(folder.as_str()) && err.contains(&format!("train.csv:{line}")), "{err}");
    }
    // The folder name picks one of them.
    fs::write(&fix, format!("id,field,true_value\n{},age,99\n", folders[1].1)).unwrap();
    let v = eda_json(dir.path(), &["--relabel", fix.to_str().unwrap()]);
    assert_eq!(v["relabeled"], 1);
    assert_eq!(v["age_histogram"]["99"], 1, "only one person becomes 99");
    // An id that one folder has still works, and a suffixed id is suggested for its stem.
    fs::write(&fix, "id,field,true_value\n000001,age,99\n000003,age,40\n").unwrap();
    let out = masklab(&["eda", dir.path().to_str().unwrap(), "--relabel", fix.to_str().unwrap()]);
    assert!(stderr(&out).contains("fix.csv:3") && stderr(&out).contains("000003-1"), "{}", stderr(&out));
}

#[test]
fn ids_and_folders_that_need_csv_quoting_are_read() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 2);
    let train = dir.path().join("train");
    // Rename the first person's folder and id to ones with a comma, quotes and a newline.
    let csv_path = train.join("train.csv");
    let mut rows: Vec<csv::StringRecord> = csv::Reader::from_path(&csv_path).unwrap().records().map(|r| r.unwrap()).collect();
    let (id, folder) = ("00,1 \"a\"\nb", "odd, \"folder\"\nname");
    fs::rename(train.join("images").join(&rows[0][4]), train.join("images").join(folder)).unwrap();
    let first = &rows[0];
    rows[0] = csv::StringRecord::from(vec![id, &first[1], &first[2], &first[3], folder]);
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    w.write_record(["id", "gender", "race", "age", "path"]).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let mut w = csv::Writer::from_path(dir.path().join("fix.csv")).unwrap();
    w.write_record(["id", "field", "true_value"]).unwrap();
    w.write_record([id, "age", "77"]).unwrap();
    w.flush().unwrap();
    let v = eda_json(dir.path(), &["--relabel", dir.path().join("fix.csv").to_str().unwrap()]);
    assert_eq!(v["people"], 8);
    assert_eq!(v["age_histogram"]["77"], 1);
    // info.csv with a quoted image id holding a comma.
    let eval = dir.path().join("eval");
    let info = fs::read_to_string(eval.join("info.csv")).unwrap();
    let first_id = info.lines().nth(1).unwrap().split(',').next().unwrap().to_string();
    fs::rename(eval.join("images").join(&first_id), eval.join("images").join("a,b.jpg")).unwrap();
    fs::write(eval.join("info.csv"), info.replacen(&format!("{first_id},"), "\"a,b.jpg\",", 1)).unwrap();
    let v = eda_json(dir.path(), &["--no-relabel"]);
    assert_eq!(v["eval_images"], 4 * 7);
}

#[test]
fn damaged_photos_are_errors_naming_them_and_warnings_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 6);
    let images = dir.path().join("train/images");
    let mut folders: Vec<_> = fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    folders.sort();
    // Half of one JPEG and 90% of one PNG (demo-data writes some people as PNG).
    let mut cut = Vec::new();
    for (ext, keep) in [("jpg", 50), ("png", 90)] {
        let photo = folders
            .iter()
            .flat_map(|f| fs::read_dir(f).unwrap().map(|e| e.unwrap().path()))
            .find(|p| p.extension().is_some_and(|e| e == ext) && p.file_name().unwrap().to_string_lossy().starts_with("mask"))
            .unwrap();
        let bytes = fs::read(&photo).unwrap();
        fs::write(&photo, &bytes[..bytes.len() * keep / 100]).unwrap();
        cut.push(photo);
    }
    let data = dir.path().to_str().unwrap();
    let out = masklab(&["eda", data]);
    assert!(!out.status.success(), "eda read cut photos");
    let err = stderr(&out);
    assert!(cut.iter().any(|p| err.contains(p.to_str().unwrap())) && err.contains("truncated"), "{err}");
    let out = masklab(&["eda", data, "--json", "--skip-bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    for p in &cut {
        assert!(problems.iter().any(|x| x.as_str().unwrap().contains(p.to_str().unwrap())), "{problems:?}");
    }
    let err = stderr(&out);
    assert!(err.contains("skipped"), "{err}");
    assert!(!err.contains('\x1b'), "colour codes in a pipe: {err:?}");
}
