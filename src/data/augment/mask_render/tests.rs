use super::strip::{preview_strip, write_png, StripFace};
use super::template::StrapEnd;
use super::warp::RgbaImage;
use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A frontal face in a 200x240 photo: eyes 60 px apart, eye-mouth 70 px.
const FACE: DetectedFace = DetectedFace {
    bbox: [45.0, 50.0, 155.0, 205.0],
    landmarks: [[70.0, 90.0], [130.0, 90.0], [100.0, 128.0], [76.0, 160.0], [124.0, 160.0]],
};

/// The same face turned about 30° towards the image's right.
fn turned() -> DetectedFace {
    let mut f = FACE;
    f.landmarks[2][0] += 17.0;
    f.landmarks[3][0] += 8.0;
    f.landmarks[4][0] += 4.0;
    f
}

/// Skin-coloured gradients, so that any painted pixel differs from the photo.
fn photo(width: u32, height: u32) -> RgbImage {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            data.extend_from_slice(&[(150 + x / 4) as u8, (110 + y / 6) as u8, (90 + (x + y) / 10) as u8]);
        }
    }
    RgbImage { width, height, data }
}

fn changed(a: &RgbImage, b: &RgbImage, p: [f32; 2]) -> bool {
    let i = ((p[1] as usize) * a.width as usize + p[0] as usize) * 3;
    a.data[i..i + 3] != b.data[i..i + 3]
}

#[test]
fn the_label_follows_the_paint_for_every_kind_wear_and_turn() {
    let src = photo(200, 240);
    let (mut painted, mut tried) = (0, 0);
    for face in [FACE, turned()] {
        let [le, re, nose, ml, mr] = face.landmarks;
        for seed in 0..6u64 {
            for kind in MaskKind::ALL {
                for wear in WearStyle::ALL {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    let design = MaskDesign::random_of(kind, &mut rng);
                    tried += 1;
                    let r = match render(&src, &face, &design, wear, &mut rng) {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("seed {seed}, {kind:?}, {wear:?}: {e}");
                            continue;
                        }
                    };
                    painted += 1;
                    let ctx = format!("seed {seed}, {kind:?}, {wear:?}, yaw {:.0}", r.yaw_degrees);
                    assert_eq!(r.label, wear.intended(), "{ctx}");
                    assert!(!changed(&src, &r.image, le) && !changed(&src, &r.image, re), "{ctx}: an eye was painted");
                    assert_eq!(changed(&src, &r.image, nose), wear == WearStyle::Worn, "{ctx}: nose tip");
                    for m in [ml, mr] {
                        match wear {
                            WearStyle::Worn | WearStyle::NoseOut => assert!(changed(&src, &r.image, m), "{ctx}: mouth corner {m:?} bare"),
                            WearStyle::MouthAndNoseOut | WearStyle::OnChin => assert!(!changed(&src, &r.image, m), "{ctx}: mouth corner {m:?} painted"),
                        }
                    }
                    assert!(r.visible > 0.5 && r.pixels > 1000, "{ctx}: {} pixels, {} visible", r.pixels, r.visible);
                }
            }
        }
    }
    // Nearly everything on a roomy photo paints; what does not is reported, never mislabelled.
    assert!(painted * 20 >= tried * 19, "{painted} of {tried} painted");
}

/// A template of seven opaque dots, one on each anchor.
fn dot_template() -> Template {
    let anchors: warp::Anchors = [[80.0, 8.0], [150.0, 30.0], [148.0, 80.0], [80.0, 104.0], [12.0, 80.0], [10.0, 30.0], [80.0, 75.0]];
    let mut image = RgbaImage::transparent(160, 112);
    for a in anchors {
        for y in 0..112u32 {
            for x in 0..160u32 {
                let d = (x as f32 + 0.5 - a[0]).hypot(y as f32 + 0.5 - a[1]);
                let alpha = (3.0 - d).clamp(0.0, 1.0);
                if alpha > 0.0 {
                    let i = ((y * 160 + x) * 4) as usize;
                    image.data[i..i + 4].copy_from_slice(&[0, 0, 0, (alpha * 255.0).round() as u8]);
                }
            }
        }
    }
    let straps: Vec<StrapEnd> = Vec::new();
    Template { kind: MaskKind::Surgical, yaw_degrees: 0.0, image, anchors, straps, strap_colour: [0; 3], head_straps: false }
}

#[test]
fn the_warped_anchors_land_on_the_face_points_within_a_pixel() {
    let grey = RgbImage { width: 200, height: 240, data: vec![128; 200 * 240 * 3] };
    let template = dot_template();
    for (face, wear) in [(FACE, WearStyle::Worn), (turned(), WearStyle::NoseOut), (FACE, WearStyle::MouthAndNoseOut)] {
        let r = render_template(&grey, &face, &template, wear, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        for (k, target) in r.face_anchors.iter().enumerate() {
            // The centroid of the paint near the anchor: an affine image of a dot is centred on
            // the image of its centre (nearly so for a dot on a ray between two sectors, hence
            // small dots).
            let (mut sx, mut sy, mut sw) = (0.0f32, 0.0f32, 0.0f32);
            for y in (target[1] - 10.0).max(0.0) as u32..((target[1] + 10.0) as u32).min(240) {
                for x in (target[0] - 10.0).max(0.0) as u32..((target[0] + 10.0) as u32).min(200) {
                    let weight = 128.0 - r.image.data[((y * 200 + x) * 3) as usize] as f32;
                    sx += weight * (x as f32 + 0.5);
                    sy += weight * (y as f32 + 0.5);
                    sw += weight;
                }
            }
            assert!(sw > 0.0, "{wear:?}: nothing painted near anchor {k}");
            let (cx, cy) = (sx / sw, sy / sw);
            let off = (cx - target[0]).hypot(cy - target[1]);
            assert!(off < 1.0, "{wear:?}: anchor {k} painted at ({cx:.2}, {cy:.2}), {off:.2} px from {target:?}");
            let at = ((target[1] as u32 * 200 + target[0] as u32) * 3) as usize;
            assert!(r.image.data[at] < 100, "{wear:?}: the pixel under anchor {k} is not painted");
        }
        // And the face points are where the wear puts them: a worn mask's top between the eyes
        // and the nose tip, an incorrect one's below the nose tip.
        let top = r.face_anchors[0][1];
        let (eyes, nose) = (face.landmarks[0][1], face.landmarks[2][1]);
        match wear {
            WearStyle::Worn => assert!(top > eyes && top < nose, "top {top}"),
            _ => assert!(top > nose + 2.0, "top {top}"),
        }
    }
}

#[test]
fn a_seed_paints_the_same_mask_and_another_seed_another() {
    let src = photo(200, 240);
    let run = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let design = MaskDesign::random(&mut rng);
        render(&src, &FACE, &design, WearStyle::Worn, &mut rng).unwrap().image
    };
    assert!(run(9) == run(9));
    assert!(run(9) != run(10));
}

#[test]
fn faces_that_are_not_faces_are_refused_never_painted_and_never_panic() {
    let src = photo(200, 240);
    let design = MaskDesign::random(&mut ChaCha8Rng::seed_from_u64(0));
    let refuse = |face: DetectedFace| render(&src, &face, &design, WearStyle::Worn, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
    let with = |landmarks: [[f32; 2]; 5]| DetectedFace { landmarks, ..FACE };
    assert!(matches!(refuse(with([[100.0, 120.0]; 5])), RenderError::NoFace(_)));
    assert!(matches!(refuse(with([[f32::NAN; 2]; 5])), RenderError::NoFace(_)));
    assert!(matches!(refuse(with(FACE.landmarks.map(|p| [p[0] + 150.0, p[1]]))), RenderError::LandmarkOutside { .. }));
    assert!(matches!(refuse(DetectedFace { bbox: [f32::NAN; 4], ..FACE }), RenderError::BadBox(_)));
    let err = refuse(with(FACE.landmarks.map(|p| [p[0], p[1] + 150.0])));
    assert_eq!(err.to_string(), "the nose landmark at (100.0, 278.0) lies outside the 200x240 image");
    // Random boxes and landmarks, in and out of the image: an answer every time.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut painted = 0;
    for _ in 0..300 {
        let mut coord = || rng.gen_range(-40.0..260.0f32);
        let landmarks = [[coord(), coord()], [coord(), coord()], [coord(), coord()], [coord(), coord()], [coord(), coord()]];
        let (x, y) = (coord(), coord());
        let face = DetectedFace { bbox: [x, y, x + coord().abs(), y + coord().abs()], landmarks };
        if let Ok(r) = render(&src, &face, &design, WearStyle::ALL[painted % 4], &mut ChaCha8Rng::seed_from_u64(1)) {
            assert!(r.image.width == 200 && r.image.height == 240);
            painted += 1;
        }
    }
    assert!(painted < 300);
}

#[test]
fn a_mask_mostly_below_a_tight_crop_is_refused() {
    // Cut just below the mouth: a mask pulled under the chin would be off the photo.
    let src = photo(200, 172);
    let design = MaskDesign::random_of(MaskKind::Surgical, &mut ChaCha8Rng::seed_from_u64(0));
    for seed in 0..5 {
        let err = render(&src, &FACE, &design, WearStyle::OnChin, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap_err();
        assert!(matches!(err, RenderError::MaskOutside { percent } if percent < 50.0), "{err}");
    }
    // While a worn one still paints.
    assert_eq!(render(&src, &FACE, &design, WearStyle::Worn, &mut ChaCha8Rng::seed_from_u64(0)).unwrap().label, Mask::Wear);
}

#[test]
fn the_preview_strip_has_a_cell_per_face_and_wear_and_writes_a_png() {
    let faces = vec![StripFace { image: photo(200, 240), face: FACE }, StripFace { image: photo(200, 240), face: turned() }];
    let (strip, cells) = preview_strip(&faces, &WearStyle::ALL, 4, 64);
    assert_eq!((strip.width, strip.height), (5 * 64 + 6 * 2, 2 * 64 + 3 * 2));
    assert_eq!(cells.len(), 8);
    for c in &cells {
        let wear = WearStyle::ALL[c.column - 1];
        if let Ok((kind, label)) = &c.outcome {
            assert_eq!(*label, wear.intended());
            assert_eq!(*kind, MaskKind::ALL[c.row]);
        }
    }
    assert!(cells.iter().filter(|c| c.outcome.is_ok()).count() >= 7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strip.png");
    write_png(&path, &strip).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back.as_raw(), &strip.data);
}

#[test]
fn paint_that_covers_the_nose_but_not_the_mouth_gets_no_label() {
    // The dot template's anchors, opaque only above the middle: worn, it covers the nose and
    // stops above the mouth, which no label describes.
    let mut template = dot_template();
    for y in 0..112u32 {
        for x in 0..160u32 {
            let i = ((y * 160 + x) * 4) as usize;
            template.image.data[i..i + 4].copy_from_slice(&[60, 90, 160, if y < 50 { 255 } else { 0 }]);
        }
    }
    let src = photo(200, 240);
    for seed in 0..5 {
        let err = render_template(&src, &FACE, &template, WearStyle::Worn, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap_err();
        assert!(matches!(err, RenderError::Ambiguous { nose, mouth } if nose > 0.99 && mouth < 0.01), "seed {seed}: {err}");
    }
}
