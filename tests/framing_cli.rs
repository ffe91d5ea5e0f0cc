//! Every face framed as the model learned faces: a run trained on whole photos records where the
//! faces sat in its training photos (framing.json, from the dataset's faces.csv), and `predict
//! --faces` on a composed photo of several faces, placed at other sizes and positions, answers each
//! face as the same photo alone is answered in competition framing (`predict` of an eval folder).
//! The faces.csv files are written here with known boxes (detection is tested in faces_cli.rs).
mod common;

use common::faces::record_faces;
use common::{demo, masklab, read_probs, stderr, train_tiny};
use masklab::data::dataset::{read_train, ReadOptions};
use masklab::faces::boxes::{iou, Face};
use masklab::faces::cache::{FacesCache, FACES_FILE};
use std::fs;

/// The face of every photo here: the same place in each, as in a competition set.
fn face_in(x: f32, y: f32, w: f32, h: f32) -> Face {
    let bbox = [x + 0.2 * w, y + 0.2 * h, x + 0.8 * w, y + 0.75 * h];
    let landmarks = [[x + 0.35 * w, y + 0.4 * h], [x + 0.65 * w, y + 0.4 * h], [x + 0.5 * w, y + 0.5 * h], [x + 0.4 * w, y + 0.62 * h], [x + 0.6 * w, y + 0.62 * h]];
    Face { bbox, score: 0.99, landmarks }
}


fn resized(img: &image::RgbImage, scale: f32) -> image::RgbImage {
    let (w, h) = ((img.width() as f32 * scale).round() as u32, (img.height() as f32 * scale).round() as u32);
    image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle)
}

fn argmax(p: &[f64]) -> usize {
    (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
}

#[test]
fn faces_of_a_composed_photo_are_answered_as_each_photo_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    demo(&data, 12, 11);

    // Every training photo's face, where it is.
    let set = read_train(&data, &ReadOptions::default()).unwrap();
    let mut cache = FacesCache::empty(&data.join("train").join(FACES_FILE));
    for person in &set.people {
        for img in &person.images {
            let (w, h) = image::image_dimensions(&img.path).unwrap();
            record_faces(&mut cache, &img.path, vec![face_in(0.0, 0.0, w as f32, h as f32)]);
        }
    }
    cache.write().unwrap();
    let run = dir.path().join("run");
    let o = train_tiny(&data, &run, &["train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run.join("framing.json").is_file(), "the run records its training photos' framing");

    // Three eval photos at other sizes: each alone, in competition framing, as an eval folder.
    let photos: Vec<_> = fs::read_dir(data.join("eval/images")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).take(3).collect();
    assert_eq!(photos.len(), 3);
    let scales = [1.0f32, 2.0, 1.5];
    let alone = dir.path().join("alone");
    fs::create_dir_all(alone.join("images")).unwrap();
    let mut info = String::from("ImageID,ans\n");
    let mut pieces = Vec::new();
    for (k, (photo, scale)) in photos.iter().zip(scales).enumerate() {
        let piece = resized(&image::open(photo).unwrap().to_rgb8(), scale);
        let name = format!("face{k}.png");
        piece.save(alone.join("images").join(&name)).unwrap();
        info.push_str(&format!("{name},0\n"));
        pieces.push(piece);
    }
    fs::write(alone.join("info.csv"), info).unwrap();
    let probs = dir.path().join("alone.csv");
    let sub = dir.path().join("alone-sub.csv");
    let o = masklab(&["predict", run.to_str().unwrap(), alone.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--probs", probs.to_str().unwrap(), "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let alone_probs = read_probs(&probs);

    // One photo holding the three, spread over a larger grey canvas.
    let scenes = dir.path().join("scenes");
    fs::create_dir_all(&scenes).unwrap();
    let mut canvas = image::RgbImage::from_pixel(220, 140, image::Rgb([118, 121, 115]));
    let spots = [(7u32, 11u32), (60, 30), (150, 5)];
    let mut boxes = Vec::new();
    for (piece, &(x, y)) in pieces.iter().zip(&spots) {
        image::imageops::replace(&mut canvas, piece, x as i64, y as i64);
        boxes.push(face_in(x as f32, y as f32, piece.width() as f32, piece.height() as f32));
    }
    let scene = scenes.join("group.png");
    canvas.save(&scene).unwrap();
    let mut scene_faces = FacesCache::empty(&scenes.join(FACES_FILE));
    record_faces(&mut scene_faces, &scene, boxes.iter().rev().cloned().collect());
    scene_faces.write().unwrap();

    let per_face = dir.path().join("faces.csv");
    let o = masklab(&["predict", run.to_str().unwrap(), scenes.to_str().unwrap(), "--faces", "--out", per_face.to_str().unwrap(), "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("each face framed as in training"), "{}", stderr(&o));
    let text = fs::read_to_string(&per_face).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "one row per face:\n{text}");
    for row in &rows {
        let bbox: [f32; 4] = ["x1", "y1", "x2", "y2"].map(|c| row[col(c)].parse().unwrap());
        let k = (0..3).max_by(|&a, &b| iou(&boxes[a].bbox, &bbox).total_cmp(&iou(&boxes[b].bbox, &bbox))).unwrap();
        assert!(iou(&boxes[k].bbox, &bbox) > 0.99, "row box {bbox:?} is none of the faces");
        let p: Vec<f64> = (0..18).map(|c| row[col(&format!("p{c}"))].parse().unwrap()).collect();
        let (_, want) = &alone_probs[k];
        assert_eq!(row[col("class")].parse::<usize>().unwrap(), argmax(want), "face {k} (scale {}): {p:?} against alone {want:?}", scales[k]);
        let worst = p.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 0.02, "face {k} (scale {}) differs from the photo alone by {worst}", scales[k]);
    }

    // The same scene through --largest-face: one row, the largest face (the one at scale 2).
    let largest = dir.path().join("largest.csv");
    let o = masklab(&["predict", run.to_str().unwrap(), scenes.to_str().unwrap(), "--largest-face", "--out", largest.to_str().unwrap(), "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = fs::read_to_string(&largest).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{text}");
    let x1: f32 = rows[0].split(',').nth(col("x1")).unwrap().parse().unwrap();
    assert!((x1 - boxes[1].bbox[0]).abs() < 0.5, "{text}");

    // A folder of photos without info.csv is no submission: the refusal says what to use.
    let o = masklab(&["predict", run.to_str().unwrap(), scenes.to_str().unwrap(), "--out", dir.path().join("sub.csv").to_str().unwrap(), "--device", "cpu"]);
    assert!(!o.status.success() && stderr(&o).contains("--largest-face"), "{}", stderr(&o));
}
