//! `masklab weights fetch mtcnn`, `masklab faces` on the competition's layout, an eval folder
//! and a plain folder of photos (the faces.csv cache, its reuse, the reuse of a person's
//! unmasked box), and `masklab bench detect`, on photos composed from the real faces that
//! scripts/setup.sh --test unpacks.
mod common;

use common::faces::{assets, compose, facenet_wheel, save_png, source_faces, SceneOptions};
use common::{masklab, stderr, stdout};
use masklab::faces::boxes::iou;
use masklab::faces::cache::FacesCache;
use std::fs;
use std::io::Write;
use std::path::Path;

fn fetch(dir: &Path) -> String {
    let o = masklab(&["weights", "fetch", "mtcnn", "--dir", dir.to_str().unwrap(), "--wheel", facenet_wheel().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

#[test]
fn fetch_extracts_the_three_networks_and_finds_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("mtcnn");
    assert_eq!(fetch(&weights), weights.to_str().unwrap());
    for f in ["pnet.pt", "rnet.pt", "onet.pt", "LICENSE.md"] {
        assert!(weights.join(f).is_file(), "{f}");
    }
    // Found: no pip.
    let o = masklab(&["weights", "fetch", "mtcnn", "--dir", weights.to_str().unwrap()]);
    assert!(o.status.success() && stderr(&o).contains("found"), "{}", stderr(&o));
    // A wheel without them is an error naming what is missing.
    let fake = dir.path().join("facenet_pytorch-0.0.0-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(fs::File::create(&fake).unwrap());
    zip.start_file("facenet_pytorch/__init__.py", zip::write::FileOptions::default()).unwrap();
    zip.write_all(b"").unwrap();
    zip.finish().unwrap();
    let o = masklab(&["weights", "fetch", "mtcnn", "--dir", dir.path().join("other").to_str().unwrap(), "--wheel", fake.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("facenet_pytorch/data/pnet.pt"), "{}", stderr(&o));
}

fn faces(args: &[&str]) -> (String, String, bool) {
    let o = masklab(&[&["faces"], args].concat());
    (stdout(&o), stderr(&o), o.status.success())
}

#[test]
fn faces_of_a_dataset_are_cached_and_masked_photos_reuse_the_unmasked_box() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("mtcnn");
    fetch(&weights);
    let w = weights.to_str().unwrap();
    let sources = source_faces();
    let face = |seed| compose(&sources, &SceneOptions { width: 192, height: 240, faces: 1, min_face: 80.0, max_face: 90.0, p_masked: 0.0, context: 0.45 }, seed);
    let blank = |seed| compose(&sources, &SceneOptions { width: 192, height: 240, faces: 0, min_face: 80.0, max_face: 90.0, p_masked: 0.0, context: 0.45 }, seed).0;

    // Person a: every photo shows the face except mask1 (nothing there: it takes the normal
    // photo's box). Person b: no face anywhere, and an unreadable mask3.
    let data = dir.path().join("data");
    let train = data.join("train");
    for (folder, with_face) in [("000001_female_Asian_45", true), ("000002_male_Asian_20", false)] {
        let person = train.join("images").join(folder);
        fs::create_dir_all(&person).unwrap();
        for (k, stem) in ["mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal"].iter().enumerate() {
            let img = if with_face && *stem != "mask1" { face(k as u64).0 } else { blank(k as u64) };
            save_png(&img, &person.join(format!("{stem}.png")));
        }
    }
    fs::write(train.join("images/000002_male_Asian_20/mask3.png"), b"not a png").unwrap();
    fs::write(train.join("train.csv"), "id,gender,race,age,path\n000001,female,Asian,45,000001_female_Asian_45\n000002,male,Asian,20,000002_male_Asian_20\n").unwrap();
    let eval = data.join("eval");
    fs::create_dir_all(eval.join("images")).unwrap();
    let (scene, placed) = face(9);
    save_png(&scene, &eval.join("images/a.png"));
    save_png(&blank(10), &eval.join("images/b.png"));
    fs::write(eval.join("info.csv"), "ImageID,ans\na.png,0\nb.png,0\n").unwrap();

    // An unreadable photo stops the run, naming it.
    let (_, err, ok) = faces(&[data.to_str().unwrap(), "--weights", w, "--device", "cpu"]);
    assert!(!ok && err.contains("000002_male_Asian_20/mask3.png"), "{err}");
    let (out, err, ok) = faces(&[data.to_str().unwrap(), "--weights", w, "--device", "cpu", "--skip-bad"]);
    assert!(ok, "{err}");
    assert!(err.contains("skipped:") && err.contains("mask3.png"), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("train: ") && lines[0].contains("13 images (0 from the cache, 13 detected"), "{out}");
    assert!(lines[0].contains("6 with one face, 0 with several, 7 with none"), "{out}");
    assert!(lines[0].contains("1 masked photos take the padded box of their person's unmasked photo, 7 have no box"), "{out}");
    assert!(lines[0].contains("1 skipped"), "{out}");
    assert!(lines[1].starts_with("eval: ") && lines[1].contains("2 images (0 from the cache, 2 detected") && lines[1].contains("1 with one face, 0 with several, 1 with none"), "{out}");

    let cache = FacesCache::read(&train.join("faces.csv")).unwrap();
    assert_eq!(cache.images.len(), 13);
    assert!(cache.images["images/000001_female_Asian_45/mask1.png"].faces.is_empty());
    assert_eq!(cache.images["images/000001_female_Asian_45/normal.png"].faces.len(), 1);
    let eval_cache = FacesCache::read(&eval.join("faces.csv")).unwrap();
    let found = &eval_cache.images["images/a.png"].faces;
    assert!(found.len() == 1 && iou(&found[0].bbox, &placed[0].bbox) > 0.6, "{found:?} vs {placed:?}");

    // The unreadable photo was not cached: once repaired, it alone is detected.
    save_png(&blank(2), &train.join("images/000002_male_Asian_20/mask3.png"));
    let (out, err, ok) = faces(&[data.join("train").to_str().unwrap(), "--weights", w]);
    assert!(ok && out.contains("14 images (13 from the cache, 1 detected"), "{out}{err}");
    // Again: everything from the cache, no detector needed.
    let (out, err, ok) = faces(&[data.join("train").to_str().unwrap(), "--weights", "/nonexistent"]);
    assert!(ok && out.contains("14 images (14 from the cache, 0 detected"), "{out}{err}");
    // A changed photo is detected again: without a face on the normal photo nothing is reused.
    save_png(&blank(3), &train.join("images/000001_female_Asian_45/normal.png"));
    let (out, err, ok) = faces(&[data.join("train").to_str().unwrap(), "--weights", "/nonexistent"]);
    assert!(!ok && err.contains("masklab weights fetch mtcnn"), "{out}{err}");
    let (out, err, ok) = faces(&[data.join("train").to_str().unwrap(), "--weights", w, "--json"]);
    assert!(ok, "{err}");
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((s["cached"].as_u64(), s["detected"].as_u64(), s["reused_from_normal"].as_u64(), s["without_box"].as_u64()), (Some(13), Some(1), Some(0), Some(9)), "{s}");

    // --out names one file: an error for a dataset holding train/ and eval/.
    let (_, err, ok) = faces(&[data.to_str().unwrap(), "--weights", w, "--out", dir.path().join("x.csv").to_str().unwrap()]);
    assert!(!ok && err.contains("train and eval"), "{err}");
    let elsewhere = dir.path().join("elsewhere/eval-faces.csv");
    let (_, err, ok) = faces(&[eval.to_str().unwrap(), "--weights", w, "--out", elsewhere.to_str().unwrap()]);
    assert!(ok && elsewhere.is_file(), "{err}");
}

#[test]
fn faces_of_a_folder_of_photos_and_the_detection_benchmark() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("mtcnn");
    fetch(&weights);
    let photos = dir.path().join("photos");
    fs::create_dir_all(photos.join("nested")).unwrap();
    fs::copy(assets().join("astronaut.png"), photos.join("astronaut.png")).unwrap();
    fs::copy(assets().join("grace_hopper.jpg"), photos.join("nested/grace_hopper.JPG")).unwrap();
    fs::write(photos.join("notes.txt"), "not a photo").unwrap();
    let (out, err, ok) = faces(&[photos.to_str().unwrap(), "--weights", weights.to_str().unwrap(), "--device", "cpu"]);
    assert!(ok && out.starts_with("folder: ") && out.contains("2 images") && out.contains("2 with one face"), "{out}{err}");
    let cache = FacesCache::read(&photos.join("faces.csv")).unwrap();
    let sources = source_faces();
    for (key, source) in [("astronaut.png", &sources[0]), ("nested/grace_hopper.JPG", &sources[1])] {
        let f = &cache.images[key].faces[0];
        assert!(iou(&f.bbox, &source.bbox) > 0.9, "{key}: {:?}", f.bbox);
    }
    let (_, err, ok) = faces(&[dir.path().join("mtcnn").join("pnet.pt").to_str().unwrap()]);
    assert!(!ok && err.contains("not a folder"), "{err}");

    // --min-face: faces smaller than it are not searched for, and a photo detected with
    // another size is detected again (the file records the size each photo was searched at).
    let small = dir.path().join("small");
    fs::create_dir_all(&small).unwrap();
    let (scene, placed) = compose(&sources, &SceneOptions { width: 384, height: 512, faces: 2, min_face: 40.0, max_face: 44.0, p_masked: 0.0, context: 0.45 }, 11);
    assert_eq!(placed.len(), 2);
    save_png(&scene, &small.join("two_small.png"));
    fs::copy(assets().join("astronaut.png"), small.join("astronaut.png")).unwrap();
    let count = |key: &str| FacesCache::read(&small.join("faces.csv")).unwrap().images[key].faces.len();
    let (out, err, ok) = faces(&[small.to_str().unwrap(), "--weights", weights.to_str().unwrap(), "--device", "cpu"]);
    assert!(ok && out.contains("0 from the cache, 2 detected"), "{out}{err}");
    assert_eq!((count("two_small.png"), count("astronaut.png")), (2, 1), "{out}");
    // (O-Net's regression still finds faces somewhat below the smallest size; one larger than
    // the photo leaves the pyramid empty.)
    let (out, err, ok) = faces(&[small.to_str().unwrap(), "--weights", weights.to_str().unwrap(), "--device", "cpu", "--min-face", "600"]);
    assert!(ok && out.contains("0 from the cache, 2 detected"), "searched again at the new size: {out}{err}");
    assert_eq!((count("two_small.png"), count("astronaut.png")), (0, 0), "{out}");
    let (out, _, ok) = faces(&[small.to_str().unwrap(), "--weights", weights.to_str().unwrap(), "--device", "cpu", "--min-face", "600"]);
    assert!(ok && out.contains("2 from the cache, 0 detected"), "{out}");
    let (_, err, ok) = faces(&[small.to_str().unwrap(), "--weights", weights.to_str().unwrap(), "--min-face", "8"]);
    assert!(!ok && err.contains("at least 12 pixels"), "{err}");

    let o = masklab(&[
        "bench", "detect", "--image", photos.join("astronaut.png").to_str().unwrap(), "--weights", weights.to_str().unwrap(),
        "--device", "cpu", "--warmup", "0", "--steps", "1", "--detect-batch", "2", "--backbone", "resnet18", "--size", "64", "--batch", "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!((r["mode"].as_str(), r["device"].as_str(), r["photo"].as_str(), r["faces"].as_u64()), (Some("detect"), Some("cpu"), Some("384x512"), Some(1)), "{r}");
    assert!(r["detect_ms"].as_f64().unwrap() > 0.0 && r["classifier_ms_per_image"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["min_face"].as_f64(), Some(20.0), "{r}");
}
