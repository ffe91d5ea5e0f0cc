//! Prediction through the CLI: the submission keeps info.csv's rows and order; TTA and
//! ensembles change probabilities as specified.
mod common;
use common::{demo, masklab, read_probs, stderr};
use std::fs;
use std::path::Path;

fn train(data: &Path, run: &Path, seed: &str) {
    let out = masklab(&[
        "train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet",
        "model.backbone=resnet18", "data.size=32", "train.batch_size=16", "train.epochs=1",
        "train.threads=2", "train.device=cpu", &format!("train.seed={seed}"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn predict_keeps_rows_and_order_and_ensembles_average() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 17);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(dir.path(), &a, "1");
    train(dir.path(), &b, "2");
    let eval = dir.path().join("eval");
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let run = |args: &[&str]| {
        let out = masklab(args);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    run(&["predict", a.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub.csv"), "--probs", &p("a.csv"), "--device", "cpu"]);
    let info: Vec<String> = fs::read_to_string(eval.join("info.csv")).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    let sub = fs::read_to_string(p("sub.csv")).unwrap();
    let mut lines = sub.lines();
    assert_eq!(lines.next(), Some("ImageID,ans"));
    let rows: Vec<(String, i64)> = lines.map(|l| {
        let (id, ans) = l.split_once(',').unwrap();
        (id.to_string(), ans.parse().unwrap())
    }).collect();
    assert_eq!(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), info, "rows and order of info.csv");
    assert!(rows.iter().all(|r| (0..18).contains(&r.1)));
    let pa = read_probs(Path::new(&p("a.csv")));
    for ((_, probs), (_, ans)) in pa.iter().zip(&rows) {
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let argmax = probs.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0 as i64;
        assert_eq!(argmax, *ans);
    }

    // TTA changes the probabilities (a model is not mirror-symmetric).
    run(&["predict", a.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub_tta.csv"), "--probs", &p("a_tta.csv"), "--tta", "flip", "--device", "cpu"]);
    let pt = read_probs(Path::new(&p("a_tta.csv")));
    let diff: f64 = pa.iter().zip(&pt).flat_map(|(x, y)| x.1.iter().zip(&y.1).map(|(u, v)| (u - v).abs())).sum();
    assert!(diff > 1e-3, "flip TTA left the probabilities unchanged");
    // Five crops, and crops with their mirror images: other probabilities, still distributions.
    run(&["predict", a.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub_c.csv"), "--probs", &p("a_c.csv"), "--tta", "crops", "--device", "cpu"]);
    run(&["predict", a.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub_fc.csv"), "--probs", &p("a_fc.csv"), "--tta", "flip,crops", "--device", "cpu"]);
    let (pc, pfc) = (read_probs(Path::new(&p("a_c.csv"))), read_probs(Path::new(&p("a_fc.csv"))));
    for other in [&pc, &pfc] {
        let diff: f64 = pa.iter().zip(other.iter()).flat_map(|(x, y)| x.1.iter().zip(&y.1).map(|(u, v)| (u - v).abs())).sum();
        assert!(diff > 1e-3, "crop TTA left the probabilities unchanged");
        assert!(other.iter().all(|(_, v)| (v.iter().sum::<f64>() - 1.0).abs() < 1e-4));
    }
    let bad = masklab(&["predict", a.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("x.csv"), "--tta", "mirror"]);
    assert!(!bad.status.success() && stderr(&bad).contains("mirror"));

    // An ensemble with weights 3,1 is the weighted mean of the two runs' probabilities.
    run(&["predict", b.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub_b.csv"), "--probs", &p("b.csv"), "--device", "cpu"]);
    run(&["predict", a.to_str().unwrap(), b.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub_ab.csv"), "--probs", &p("ab.csv"), "--weights", "3,1", "--device", "cpu"]);
    let pb = read_probs(Path::new(&p("b.csv")));
    let pab = read_probs(Path::new(&p("ab.csv")));
    for ((x, y), z) in pa.iter().zip(&pb).zip(&pab) {
        for c in 0..18 {
            let want = (3.0 * x.1[c] + y.1[c]) / 4.0;
            assert!((z.1[c] - want).abs() < 1e-5, "class {c}: {} vs {want}", z.1[c]);
        }
    }

    // A checkpoint file names one model: RUN/best.safetensors is the run itself, and the best
    // and last checkpoints of one run ensemble like two runs.
    run(&["predict", a.join("best.safetensors").to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub_f.csv"), "--probs", &p("af.csv"), "--device", "cpu"]);
    assert_eq!(read_probs(Path::new(&p("af.csv"))), pa);
    run(&["predict", a.join("best.safetensors").to_str().unwrap(), b.join("last.safetensors").to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub_bl.csv"), "--probs", &p("bl.csv"), "--device", "cpu"]);
    // b trained one epoch, so its last checkpoint is its best: the same as the a+b ensemble at equal weights.
    run(&["predict", a.to_str().unwrap(), b.to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("sub_ab1.csv"), "--probs", &p("ab1.csv"), "--device", "cpu"]);
    assert_eq!(read_probs(Path::new(&p("bl.csv"))), read_probs(Path::new(&p("ab1.csv"))));
    let bad = masklab(&["predict", a.join("config.toml").to_str().unwrap(), eval.to_str().unwrap(), "--out", &p("x.csv"), "--device", "cpu"]);
    assert!(!bad.status.success() && stderr(&bad).contains("config.toml"), "{}", stderr(&bad));
}

#[test]
fn an_unreadable_image_is_an_error_or_a_reported_row() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 8, 19);
    let run = dir.path().join("run");
    train(dir.path(), &run, "1");
    let eval = dir.path().join("eval");
    let first = fs::read_to_string(eval.join("info.csv")).unwrap().lines().nth(1).unwrap().split(',').next().unwrap().to_string();
    fs::write(eval.join("images").join(&first), b"not an image").unwrap();
    let sub = dir.path().join("sub.csv");
    let out = masklab(&["predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--device", "cpu"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&first), "{}", stderr(&out));
    assert!(!sub.exists(), "no partial submission");
    let out = masklab(&["predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--device", "cpu", "--skip-bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&first));
    assert_eq!(fs::read_to_string(&sub).unwrap().lines().count(), 1 + 4 * 7);
}
