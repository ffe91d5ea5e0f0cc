//! Parity with facenet-pytorch's own MTCNN (its `detect`, defaults: min face 20 px, thresholds
//! 0.6/0.7/0.7, factor 0.709), run from its unpacked wheel next to the .venv's torch by
//! scripts/mtcnn_parity.py, on the two real face photos and on multi-face scenes composed from
//! them (several faces per canvas, different sizes, some mirrored, some with a painted mask):
//! the same number of faces per image, each box at IoU >= 0.95 with facenet-pytorch's, each
//! landmark within 2 px. The scenes also check the detector against where the faces were put.
mod common;

use common::faces::{assets, compose, save_png, source_faces, SceneOptions};
use masklab::faces::boxes::{iou, Face};
use masklab::data::face_detection::decode_photo;
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
    // A batch of photos (two of one size, one of another) finds what each photo finds alone.
    let photos: Vec<_> = [2, 5, 3].iter().map(|&i| decode_photo(&images[i]).unwrap()).collect();
    let refs: Vec<_> = photos.iter().collect();
    let batched = detector.detect_batch(&refs).unwrap();
    for (photo, faces) in photos.iter().zip(&batched) {
        let alone = detector.detect(photo).unwrap();
        assert_eq!(alone.len(), faces.len());
        for (a, b) in alone.iter().zip(faces) {
            assert!(iou(&a.bbox, &b.bbox) > 0.999 && (a.score - b.score).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }
    eprintln!("{compared} faces compared with facenet-pytorch; {found_unmasked} of {unmasked} unmasked placed faces found");
    assert!(compared >= 14, "only {compared} faces compared");
    assert_eq!(found_unmasked, unmasked);
}

/// A measurement, not a check (run it by hand): detection recall and precision at IoU 0.5 on
/// multi-face scenes composed from UTKFace's aligned face crops, and the time per scene.
///
///     MASKLAB_UTKFACE=../shared/data/utkface-adults [MASKLAB_BIN=target/release/masklab] \
///         cargo test --test faces_parity -- --ignored --nocapture
///
/// Each crop's own face (MTCNN on the crop alone; crops where it finds not exactly one face are
/// left out) is the truth for its placements. Nothing is written outside a temporary folder.
#[test]
#[ignore]
fn measure_detection_on_utkface_scenes() {
    let Some(faces_dir) = std::env::var_os("MASKLAB_UTKFACE").map(PathBuf::from) else {
        panic!("set MASKLAB_UTKFACE to the folder of UTKFace crops (../shared/data/utkface-adults)");
    };
    let bin = std::env::var_os("MASKLAB_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_masklab")));
    let n_chips: usize = std::env::var("MASKLAB_CHIPS").ok().and_then(|v| v.parse().ok()).unwrap_or(240);
    let n_scenes: u64 = std::env::var("MASKLAB_SCENES").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("mtcnn");
    masklab::faces::weights::fetch(Some(&weights), Some(&common::faces::facenet_wheel())).unwrap();
    let run_faces = |folder: &Path| -> serde_json::Value {
        let o = Command::new(&bin).args(["faces", folder.to_str().unwrap(), "--weights", weights.to_str().unwrap(), "--device", "cpu", "--json"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };

    // Every k-th crop of the sorted folder, copied (faces.csv is written beside the photos).
    let mut all: Vec<PathBuf> = std::fs::read_dir(&faces_dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "jpg")).collect();
    all.sort();
    let step = (all.len() / n_chips).max(1);
    let chips_dir = dir.path().join("chips");
    std::fs::create_dir_all(&chips_dir).unwrap();
    for p in all.iter().step_by(step).take(n_chips) {
        std::fs::copy(p, chips_dir.join(p.file_name().unwrap())).unwrap();
    }
    let chip_summary = run_faces(&chips_dir);
    let chip_cache = masklab::faces::cache::FacesCache::read(&chips_dir.join("faces.csv")).unwrap();
    let sources: Vec<common::faces::SourceFace> = chip_cache
        .images
        .iter()
        .filter(|(_, e)| e.faces.len() == 1)
        .map(|(k, e)| common::faces::SourceFace { photo: decode_photo(&chips_dir.join(k)).unwrap(), bbox: e.faces[0].bbox, landmarks: e.faces[0].landmarks })
        .collect();

    let scenes_dir = dir.path().join("scenes");
    std::fs::create_dir_all(&scenes_dir).unwrap();
    let mut truth = std::collections::BTreeMap::new();
    for seed in 0..n_scenes {
        let o = SceneOptions { width: 384, height: 512, faces: 3 + (seed % 3) as usize, min_face: 24.0, max_face: 160.0, p_masked: 0.3, context: 0.45 };
        let (scene, placed) = compose(&sources, &o, 1000 + seed);
        let name = format!("scene{seed:03}.png");
        save_png(&scene, &scenes_dir.join(&name));
        truth.insert(name, placed);
    }
    let summary = run_faces(&scenes_dir);
    let cache = masklab::faces::cache::FacesCache::read(&scenes_dir.join("faces.csv")).unwrap();
    // (found, total) per group; detections matched / all.
    let mut groups: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let (mut matched, mut detections, mut near_misses, mut near_extras) = (0, 0, 0, 0);
    let best = |b: &masklab::faces::boxes::BoxF, others: &mut dyn Iterator<Item = masklab::faces::boxes::BoxF>| others.map(|o| iou(b, &o)).fold(0.0f32, f32::max);
    for (name, placed) in &truth {
        let found = &cache.images[name].faces;
        detections += found.len();
        matched += found.iter().filter(|f| placed.iter().any(|p| iou(&p.bbox, &f.bbox) >= 0.5)).count();
        // Misses and extra detections that are the same face with a box that overlaps too little.
        near_extras += found.iter().filter(|f| (0.3..0.5).contains(&best(&f.bbox, &mut placed.iter().map(|p| p.bbox)))).count();
        near_misses += placed.iter().filter(|p| (0.3..0.5).contains(&best(&p.bbox, &mut found.iter().map(|f| f.bbox)))).count();
        for p in placed {
            let hit = found.iter().any(|f| iou(&p.bbox, &f.bbox) >= 0.5) as usize;
            let width = p.bbox[2] - p.bbox[0];
            let size = if width < 40.0 { "width <40 px" } else if width < 80.0 { "width 40-80 px" } else { "width >=80 px" };
            let wear = p.wear.map(|w| format!("masked {w:?}")).unwrap_or_else(|| "unmasked".into());
            for key in ["all".to_string(), wear, size.to_string()] {
                let g = groups.entry(key).or_default();
                g.0 += hit;
                g.1 += 1;
            }
        }
    }
    eprintln!("chips: {} of {} with exactly one face (the truth), in {:.1}s", sources.len(), chip_summary["images"], chip_summary["seconds"].as_f64().unwrap());
    eprintln!("scenes: {n_scenes} of 384x512, {} s for all ({:.3} s per scene, decoding included)", summary["seconds"], summary["seconds"].as_f64().unwrap() / n_scenes as f64);
    for (k, (hit, total)) in &groups {
        eprintln!("recall@0.5 {k}: {hit}/{total} = {:.3}", *hit as f64 / *total as f64);
    }
    eprintln!("precision@0.5: {matched}/{detections} = {:.3}", matched as f64 / detections.max(1) as f64);
    eprintln!("of which at IoU 0.3-0.5 (the face found, its box off): {near_misses} misses, {near_extras} extra detections");
}
