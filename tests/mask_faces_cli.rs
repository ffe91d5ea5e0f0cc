//! `masklab mask-faces`: masked copies of a folder of unmasked faces, the wears taken in turn and
//! listed in masks.csv with the label each implies, the same files for the same seed, a photo
//! without a face reported, a non-empty output refused without --force, and the preview strip.
//! The faces.csv of the input is written here with the annotated boxes of the public test photos
//! (detection is tested in faces_cli.rs), so no detector runs.
mod common;

use common::faces::source_faces;
use common::{masklab, stderr};
use masklab::faces::boxes::{Face, DEFAULT_MIN_FACE};
use masklab::faces::cache::{FacesCache, ImageFaces, Stamp, FACES_FILE};
use std::fs;
use std::path::Path;

fn save(img: &masklab::image::decode::RgbImage, path: &Path) {
    image::RgbImage::from_raw(img.width, img.height, img.data.clone()).unwrap().save(path).unwrap();
}

fn rows_of(out: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(out.join("masks.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(String::from).collect()).collect()
}

#[test]
fn masked_copies_follow_the_wears_and_the_seed_and_the_strip_is_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("faces");
    fs::create_dir_all(&input).unwrap();
    let mut cache = FacesCache::empty(&input.join(FACES_FILE));
    let sources = source_faces();
    for (k, s) in sources.iter().enumerate() {
        let path = input.join(format!("person{k}.png"));
        save(&s.photo, &path);
        let key = cache.key(&path);
        let face = Face { bbox: s.bbox, score: 0.99, landmarks: s.landmarks };
        cache.images.insert(key, ImageFaces { stamp: Stamp::of(&path).unwrap(), width: s.photo.width, height: s.photo.height, min_face: DEFAULT_MIN_FACE, faces: vec![face] });
    }
    let empty = input.join("wall.png");
    image::RgbImage::from_pixel(200, 160, image::Rgb([90, 110, 130])).save(&empty).unwrap();
    let key = cache.key(&empty);
    cache.images.insert(key, ImageFaces { stamp: Stamp::of(&empty).unwrap(), width: 200, height: 160, min_face: DEFAULT_MIN_FACE, faces: vec![] });
    cache.write().unwrap();

    let out = dir.path().join("masked");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["mask-faces", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--per-photo", "2", "--device", "cpu"];
        args.extend_from_slice(extra);
        masklab(&args)
    };
    let o = run(&out, &["--seed", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrote 4 masked copies") && stderr(&o).contains("wall.png: no face found"), "{}", stderr(&o));
    let rows = rows_of(&out);
    assert_eq!(rows.len(), 4, "{rows:?}");
    // file,source,face,wear,kind,label,...: the four wears in turn over the two photos' copies.
    let wears: Vec<&str> = rows.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(wears, ["worn", "nose_out", "mouth_nose_out", "on_chin"]);
    for r in &rows {
        assert_eq!(r[5], if r[3] == "worn" { "Wear" } else { "Incorrect" }, "the label follows the wear: {r:?}");
        assert!(["surgical", "cloth", "KN95", "N95"].contains(&r[4].as_str()), "{r:?}");
        let copy = image::open(out.join(&r[0])).unwrap().to_rgb8();
        let k: usize = r[1].trim_start_matches("person").trim_end_matches(".png").parse().unwrap();
        let s = &sources[k];
        assert_eq!((copy.width(), copy.height()), (s.photo.width, s.photo.height));
        // Painted below the eyes, untouched far from the face.
        let differs = |x: f32, y: f32| {
            let (x, y) = (x as u32, y as u32);
            let at = ((y * s.photo.width + x) * 3) as usize;
            copy.get_pixel(x, y).0 != [s.photo.data[at], s.photo.data[at + 1], s.photo.data[at + 2]]
        };
        let [x1, y1, x2, y2] = s.bbox;
        assert!(!differs(2.0, 2.0), "{}: a corner of the photo changed", r[0]);
        // From the nose down to below the chin, a good share of the pixels is mask (a mask on the
        // chin leaves the mouth bare but covers the chin and below it).
        let (top, bottom) = (s.landmarks[2][1], (y2 + 0.25 * (y2 - y1)).min(s.photo.height as f32 - 1.0));
        let (mut changed, mut all) = (0, 0);
        for y in (top as u32..bottom as u32).step_by(2) {
            for x in (x1 as u32..x2 as u32).step_by(2) {
                all += 1;
                changed += differs(x as f32, y as f32) as usize;
            }
        }
        assert!(changed * 6 > all, "{}: only {changed} of {all} pixels below the nose changed", r[0]);
    }

    // The same command writes the same files; into a non-empty folder only with --force.
    let o = run(&out, &["--seed", "4"]);
    assert!(!o.status.success() && stderr(&o).contains("is not empty") && stderr(&o).contains("--force"), "{}", stderr(&o));
    let again = dir.path().join("again");
    let o = run(&again, &["--seed", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for r in &rows {
        assert_eq!(fs::read(out.join(&r[0])).unwrap(), fs::read(again.join(&r[0])).unwrap(), "{} differs between two runs with one seed", r[0]);
    }
    let o = run(&out, &["--force", "--seed", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(rows.iter().any(|r| fs::read(out.join(&r[0])).unwrap() != fs::read(again.join(&r[0])).unwrap()), "another seed painted the same masks");

    // The strip: per photo with a face, the face and then one square per wear.
    let strip = dir.path().join("strip.png");
    let o = masklab(&["mask-faces", input.to_str().unwrap(), "--preview", strip.to_str().unwrap(), "--cell", "64", "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Five columns and two rows of 64-px squares (with thin gaps between them).
    let (w, h) = image::image_dimensions(&strip).unwrap();
    assert!((64 * 5..64 * 6).contains(&w) && (64 * 2..64 * 3).contains(&h), "{w}x{h}");
}
