//! Parity with facenet-pytorch's own MTCNN (its `detect`, defaults: min face 20 px, thresholds
//! 0.6/0.7/0.7, factor 0.709), run from its unpacked wheel next to the .venv's torch by
//! scripts/mtcnn_parity.py, on the two real face photos and on multi-face scenes composed from
//! them (several faces per canvas, different sizes, some mirrored, some with a painted mask):
//! the same number of faces per image, each box at IoU >= 0.95 with facenet-pytorch's, each
//! landmark within 2 px. The scenes also check the detector against where the faces were put.
mod common;

use common::faces::{assets, compose, save_png, source_faces, SceneOptions};
use masklab::faces::boxes::{iou, Face};
use masklab::faces::dataset::decode_photo;
use masklab::faces::mtcnn::Mtcnn;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Device;

fn facenet_faces(images: &[PathBuf]) -> Vec<Vec<Face>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("MASKLAB_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/python"));
    let out = Command::new(&python)
        .arg(root.join("scripts/mtcnn_parity.py"))
        .arg(assets())
        .args(images)
        .output()
        .expect("run scripts/mtcnn_parity.py");
    assert!(out.status.success(), "mtcnn_parity.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), images.len(), "{text}");
    lines
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let boxes = v["boxes"].as_array().unwrap();
            let points = v["landmarks"].as_array().unwrap();
            boxes
                .iter()
                .zip(points)
                .map(|(b, p)| {
                    let b: Vec<f32> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                    let p: Vec<Vec<f32>> = p.as_array().unwrap().iter().map(|q| q.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect();
                    Face { bbox: [b[0], b[1], b[2], b[3]], score: b[4], landmarks: std::array::from_fn(|j| [p[j][0], p[j][1]]) }
                })
                .collect()
        })
        .collect()
}

#[test]
fn detections_match_facenet_pytorch_on_real_photos_and_composed_scenes() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("mtcnn");
    masklab::faces::weights::fetch(Some(&weights), Some(&common::faces::facenet_wheel())).unwrap();
    let detector = Mtcnn::load(&weights, Device::Cpu).unwrap();

    let sources = source_faces();
    let mut images = vec![assets().join("astronaut.png"), assets().join("grace_hopper.jpg")];
    let mut truth = vec![None, None];
    let sizes = [(384, 512), (512, 384), (640, 480), (384, 512), (480, 360), (512, 512)];
    for (seed, &(width, height)) in sizes.iter().enumerate() {
        let o = SceneOptions { width, height, faces: 4, min_face: 36.0, max_face: 150.0, p_masked: 0.35, context: 0.45 };
        let (scene, placed) = compose(&sources, &o, seed as u64);
        let path = dir.path().join(format!("scene{seed}.png"));
        save_png(&scene, &path);
        images.push(path);
        truth.push(Some(placed));
    }
    let theirs = facenet_faces(&images);
    let (mut compared, mut unmasked, mut found_unmasked) = (0, 0, 0);
    for ((path, want), placed) in images.iter().zip(&theirs).zip(&truth) {
        let ours = detector.detect(&decode_photo(path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(ours.len(), want.len(), "{name}: masklab {ours:?}\nfacenet-pytorch {want:?}");
        for w in want {
            let best = ours.iter().max_by(|a, b| iou(&a.bbox, &w.bbox).total_cmp(&iou(&b.bbox, &w.bbox))).unwrap();
            let overlap = iou(&best.bbox, &w.bbox);
            assert!(overlap >= 0.95, "{name}: box {:?} vs facenet-pytorch's {:?}: IoU {overlap}", best.bbox, w.bbox);
            for (a, b) in best.landmarks.iter().zip(&w.landmarks) {
                let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
                assert!(d <= 2.0, "{name}: landmark {a:?} vs facenet-pytorch's {b:?}: {d} px");
            }
            assert!((best.score - w.score).abs() < 1e-3, "{name}: score {} vs {}", best.score, w.score);
            compared += 1;
        }
        // Every face masklab finds is one that was put there; every unmasked one is found.
        if let Some(placed) = placed {
            for f in &ours {
                assert!(placed.iter().any(|p| iou(&p.bbox, &f.bbox) >= 0.5), "{name}: {:?} is no placed face ({placed:?})", f.bbox);
            }
            for p in placed.iter().filter(|p| p.wear.is_none()) {
                unmasked += 1;
                found_unmasked += ours.iter().any(|f| iou(&p.bbox, &f.bbox) >= 0.5) as usize;
            }
        }
    }
    eprintln!("{compared} faces compared with facenet-pytorch; {found_unmasked} of {unmasked} unmasked placed faces found");
    assert!(compared >= 14, "only {compared} faces compared");
    assert_eq!(found_unmasked, unmasked);
}
