//! The dataset reader, relabelling, EDA and demo data, driven through the CLI.
mod common;
use common::{demo, masklab, stderr, stdout};
use std::fs;

#[test]
fn eda_counts_exactly_what_demo_data_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let truth = demo(dir.path(), 14, 3);
    let data = dir.path().to_str().unwrap();
    let out = masklab(&["eda", data, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["people"], 14);
    assert_eq!(v["images"], 14 * 7);
    assert_eq!(v["skipped_files"], truth.junk_files);
    assert!(truth.junk_files >= 2);
    assert_eq!(v["relabeled"], truth.relabels);
    assert_eq!(truth.relabels, 4);
    let counts: Vec<usize> = serde_json::from_value(v["class_counts"].clone()).unwrap();
    assert_eq!(counts.len(), 18);
    assert_eq!(counts, truth.class_counts, "relabelled classes must equal the drawn truth");
    assert_eq!(v["eval_images"], 4 * 7);
    let exts = v["extensions"].as_object().unwrap();
    for e in ["jpg", "jpeg", "png"] {
        assert!(exts.contains_key(e), "extension {e} missing from {exts:?}");
    }
    assert_eq!(v["image_sizes"]["32x40"], 14 * 7);
}

#[test]
fn without_relabel_the_wrong_labels_stay() {
    let dir = tempfile::tempdir().unwrap();
    let truth = demo(dir.path(), 14, 3);
    let out = masklab(&["eda", dir.path().to_str().unwrap(), "--json", "--no-relabel"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["relabeled"], 0);
    let counts: Vec<usize> = serde_json::from_value(v["class_counts"].clone()).unwrap();
    assert_ne!(counts, truth.class_counts);
}

#[test]
fn eda_text_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 5);
    let charts = dir.path().join("charts");
    let out = masklab(&["eda", dir.path().to_str().unwrap(), "--out", charts.to_str().unwrap(), "--age-bounds", "30,59"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("people         8"), "{text}");
    assert!(text.contains("Wear/Male/<30"), "{text}");
    assert!(text.contains("30-58"), "age bounds 30,59 must show as 30-58: {text}");
    for name in ["class_distribution.png", "age_histogram.png"] {
        let img = image::open(charts.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(img.width() >= 800, "{name} too small");
        // Something is drawn: not a blank white canvas.
        let rgb = img.to_rgb8();
        assert!(rgb.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 5000, "{name} looks empty");
    }
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(charts.join("eda.json")).unwrap()).unwrap();
    assert_eq!(json["people"], 8);
    // Again into its own output: fine. Into the dataset folder: refused, nothing written.
    let out = masklab(&["eda", dir.path().to_str().unwrap(), "--out", charts.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = masklab(&["eda", dir.path().to_str().unwrap(), "--out", dir.path().to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("is not empty") && stderr(&out).contains("train"), "{}", stderr(&out));
    assert!(!dir.path().join("eda.json").exists());
}

#[test]
fn relabel_with_unknown_id_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 1);
    let relabel = dir.path().join("fix.csv");
    fs::write(&relabel, "id,field,true_value\n000001,age,33\n999999,gender,male\n").unwrap();
    let out = masklab(&["eda", dir.path().to_str().unwrap(), "--relabel", relabel.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("fix.csv:3") && err.contains("unknown id `999999`"), "{err}");
}

#[test]
fn explicit_relabel_file_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 1);
    let relabel = dir.path().join("fix.csv");
    // Person 000001 (a young man, by construction) becomes 99: seven images move to the Old band.
    fs::write(&relabel, "id,field,true_value\n000001,age,99\n").unwrap();
    let out = masklab(&["eda", dir.path().to_str().unwrap(), "--json", "--relabel", relabel.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["relabeled"], 1);
    assert_eq!(v["age_histogram"]["99"], 1);
}

#[test]
fn bad_csv_row_is_an_error_with_file_and_line_and_skip_bad_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 2);
    let csv = dir.path().join("train/train.csv");
    let mut text = fs::read_to_string(&csv).unwrap();
    text.push_str("000099,female,Asian,forty,000099_female_Asian_40\n");
    fs::write(&csv, text).unwrap();
    let data = dir.path().to_str().unwrap();
    let out = masklab(&["eda", data]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("train.csv:10") && err.contains("age must be"), "{err}");

    let out = masklab(&["eda", data, "--json", "--skip-bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["people"], 8);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1);

    // A relabel row for a person whose row was skipped is reported as skipped, with why, not as
    // an unknown id that stops the read.
    let relabel = dir.path().join("train/relabel.csv");
    let list = fs::read_to_string(&relabel).unwrap();
    fs::write(&relabel, format!("{}\n000099,gender,male\n", list.trim_end())).unwrap();
    let out = masklab(&["eda", data, "--json", "--skip-bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("unknown id"), "{err}");
    assert!(err.contains("relabel.csv:") && err.contains("correction for `000099` not applied: its person was skipped") && err.contains("train.csv:10"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 2);
    // Without --skip-bad the bad row stops the read first.
    let out = masklab(&["eda", data]);
    assert!(!out.status.success() && stderr(&out).contains("train.csv:10"), "{}", stderr(&out));
}

#[test]
fn missing_folder_missing_photo_and_corrupt_image_are_reported_with_paths() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 4);
    let data = dir.path().to_str().unwrap();
    let images = dir.path().join("train/images");
    let mut folders: Vec<_> = fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    folders.sort();
    // A corrupt photo.
    let victim = fs::read_dir(&folders[0]).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains("mask2")).unwrap();
    fs::write(&victim, b"\xff\xd8\xff garbage").unwrap();
    let out = masklab(&["eda", data]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(victim.to_str().unwrap()), "{}", stderr(&out));
    // A missing photo.
    let normal = fs::read_dir(&folders[1]).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains("normal")).unwrap();
    fs::remove_file(&normal).unwrap();
    let out = masklab(&["eda", data]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(folders[1].to_str().unwrap()) && err.contains("missing photo(s): normal"), "{err}");
    // A missing folder.
    fs::remove_dir_all(&folders[2]).unwrap();
    // --skip-bad reports all three and keeps the other five people.
    let out = masklab(&["eda", data, "--json", "--skip-bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["people"], 6);
    let problems: Vec<String> = serde_json::from_value(v["problems"].clone()).unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains(folders[2].to_str().unwrap())), "{problems:?}");
}

#[test]
fn version_names_libtorch_and_cuda() {
    let out = masklab(&["--version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("masklab 0."), "{text}");
    assert!(text.contains("libtorch 2.11.0"), "{text}");
    assert!(text.contains("cuda "), "{text}");
}

/// Started without an OpenMP wait policy, masklab runs again with OMP_WAIT_POLICY=PASSIVE (the
/// restarted process prints it), its arguments intact; a policy the user set is kept.
#[test]
fn openmp_threads_sleep_when_idle_unless_the_user_chose() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_masklab"));
        command.args(args).env_remove("OMP_WAIT_POLICY").env_remove("GOMP_SPINCOUNT");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("run masklab")
    };
    let out = run(&["--version"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("openmp wait OMP_WAIT_POLICY=PASSIVE"), "{}", stdout(&out));
    let out = run(&["--version"], &[("OMP_WAIT_POLICY", "ACTIVE")]);
    assert!(stdout(&out).contains("openmp wait OMP_WAIT_POLICY=ACTIVE"), "{}", stdout(&out));
    let out = run(&["--version"], &[("GOMP_SPINCOUNT", "1000")]);
    assert!(stdout(&out).contains("openmp wait GOMP_SPINCOUNT=1000"), "{}", stdout(&out));
    // Arguments with spaces and non-ASCII letters reach the restarted process unchanged.
    let missing = "/no such folder/dïr ñ";
    let out = run(&["eda", missing], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(missing), "{}", stderr(&out));
}

#[test]
fn demo_data_cli_writes_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("d");
    let out = masklab(&["demo-data", out_dir.to_str().unwrap(), "--people", "6", "--size", "32x32", "--seed", "9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for p in ["train/train.csv", "train/relabel.csv", "eval/info.csv", "eval/answers.csv"] {
        assert!(out_dir.join(p).is_file(), "{p}");
    }
    let info = fs::read_to_string(out_dir.join("eval/info.csv")).unwrap();
    let key = fs::read_to_string(out_dir.join("eval/answers.csv")).unwrap();
    let ids = |t: &str| t.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&info), ids(&key));
    assert_eq!(ids(&info).len(), 4 * 7);
}

#[test]
fn demo_data_refuses_a_folder_holding_a_dataset_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.to_str().unwrap();
    let first = masklab(&["demo-data", path, "--people", "6", "--size", "32x40", "--seed", "1"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let train_csv = fs::read(data.join("train").join("train.csv")).unwrap();
    let again = masklab(&["demo-data", path, "--people", "8", "--size", "32x40", "--seed", "2"]);
    assert!(!again.status.success(), "demo-data wrote over an existing dataset");
    let err = stderr(&again);
    assert!(err.contains("is not empty") && err.contains("--force") && err.contains(path), "{err}");
    assert_eq!(fs::read(data.join("train").join("train.csv")).unwrap(), train_csv, "the refused run changed train.csv");
    let forced = masklab(&["demo-data", path, "--people", "8", "--size", "32x40", "--seed", "2", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(fs::read(data.join("train").join("train.csv")).unwrap(), train_csv);
}
