//! Multi-face test scenes composed from real face photos, so that the tests know where every
//! face is. The photos come from PyPI wheels that scripts/setup.sh --test unpacks into
//! `.venv/masklab-test/` (scikit-image's astronaut.png, matplotlib's grace_hopper.jpg), together
//! with facenet-pytorch's wheel (its MTCNN and weights).
use masklab::image::decode::{resize_rgb, Crop, Preprocess, RgbImage};
use masklab::faces::boxes::BoxF;
use masklab::data::face_detection::decode_photo;
use masklab::data::augment::mask_paint::{paint_wear_in_place, Wear};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// `.venv/masklab-test` (or `$MASKLAB_TEST_ASSETS`), checked to hold what the tests read.
pub fn assets() -> PathBuf {
    let dir = std::env::var_os("MASKLAB_TEST_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/masklab-test"));
    for f in ["astronaut.png", "grace_hopper.jpg", "facenet_pytorch/data/onet.pt", "wheels/facenet_pytorch-2.6.0-py3-none-any.whl"] {
        assert!(dir.join(f).is_file(), "{} is missing: run scripts/setup.sh --test", dir.join(f).display());
    }
    dir
}

pub fn facenet_wheel() -> PathBuf {
    assets().join("wheels/facenet_pytorch-2.6.0-py3-none-any.whl")
}

/// A photo with one annotated face.
#[derive(Clone)]
pub struct SourceFace {
    pub photo: RgbImage,
    pub bbox: BoxF,
    pub landmarks: [[f32; 2]; 5],
}

/// The two asset photos, annotated (box and landmarks rounded to a pixel; placed by
/// facenet-pytorch's MTCNN and checked by eye).
pub fn source_faces() -> Vec<SourceFace> {
    let dir = assets();
    vec![
        SourceFace {
            photo: decode_photo(&dir.join("astronaut.png")).unwrap(),
            bbox: [181.0, 62.0, 268.0, 172.0],
            landmarks: [[205.0, 102.0], [247.0, 104.0], [225.0, 129.0], [202.0, 139.0], [245.0, 142.0]],
        },
        SourceFace {
            photo: decode_photo(&dir.join("grace_hopper.jpg")).unwrap(),
            bbox: [174.0, 120.0, 356.0, 340.0],
            landmarks: [[222.0, 192.0], [310.0, 186.0], [269.0, 239.0], [233.0, 280.0], [307.0, 276.0]],
        },
    ]
}

/// A face placed in a scene.
#[derive(Clone, Debug)]
pub struct PlacedFace {
    pub bbox: BoxF,
    pub landmarks: [[f32; 2]; 5],
    /// The mask painted on it, if any.
    pub wear: Option<Wear>,
}

#[derive(Clone, Debug)]
pub struct SceneOptions {
    pub width: u32,
    pub height: u32,
    pub faces: usize,
    /// Face box widths are drawn from this range, pixels.
    pub min_face: f32,
    pub max_face: f32,
    /// Probability that a placed face gets a painted mask.
    pub p_masked: f64,
    /// Context kept around a source face, as a share of its box on every side.
    pub context: f32,
}

fn crop(src: &RgbImage, x0: u32, y0: u32, w: u32, h: u32) -> RgbImage {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in y0..y0 + h {
        let start = ((y * src.width + x0) * 3) as usize;
        data.extend_from_slice(&src.data[start..start + (w * 3) as usize]);
    }
    RgbImage { width: w, height: h, data }
}

fn mirror(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for y in 0..img.height as usize {
        for x in 0..img.width as usize {
            let (a, b) = ((y * img.width as usize + x) * 3, (y * img.width as usize + img.width as usize - 1 - x) * 3);
            out.data[a..a + 3].copy_from_slice(&img.data[b..b + 3]);
        }
    }
    out
}

/// A scene: a gradient background with noise, `faces` faces of the sources at random sizes and
/// places (not overlapping), some mirrored, some masked. Deterministic for a seed. Fewer faces
/// than asked are placed when they do not fit.
pub fn compose(sources: &[SourceFace], o: &SceneOptions, seed: u64) -> (RgbImage, Vec<PlacedFace>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (w, h) = (o.width, o.height);
    let top: [f32; 3] = [rng.gen_range(30.0..220.0), rng.gen_range(30.0..220.0), rng.gen_range(30.0..220.0)];
    let bottom: [f32; 3] = [rng.gen_range(30.0..220.0), rng.gen_range(30.0..220.0), rng.gen_range(30.0..220.0)];
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        let k = y as f32 / h as f32;
        for _ in 0..w {
            for c in 0..3 {
                let v = top[c] + (bottom[c] - top[c]) * k + rng.gen_range(-6.0..6.0f32);
                data.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    let mut canvas = RgbImage { width: w, height: h, data };
    let mut taken: Vec<[f32; 4]> = Vec::new();
    let mut placed = Vec::new();
    for _ in 0..o.faces {
        let s = &sources[rng.gen_range(0..sources.len())];
        let b = s.bbox;
        let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
        let cx0 = (b[0] - o.context * bw).max(0.0).floor() as u32;
        let cy0 = (b[1] - o.context * bh).max(0.0).floor() as u32;
        let cx1 = ((b[2] + o.context * bw).ceil() as u32).min(s.photo.width);
        let cy1 = ((b[3] + o.context * bh).ceil() as u32).min(s.photo.height);
        let scale = rng.gen_range(o.min_face..o.max_face) / bw;
        let (tw, th) = (((cx1 - cx0) as f32 * scale).round() as u32, ((cy1 - cy0) as f32 * scale).round() as u32);
        if tw < 4 || th < 4 || tw >= w || th >= h {
            continue;
        }
        let spot = (0..60).map(|_| (rng.gen_range(0..w - tw), rng.gen_range(0..h - th))).find(|&(x, y)| {
            let r = [x as f32, y as f32, (x + tw) as f32, (y + th) as f32];
            taken.iter().all(|t| r[2] <= t[0] || r[0] >= t[2] || r[3] <= t[1] || r[1] >= t[3])
        });
        let Some((px, py)) = spot else { continue };
        let flip = rng.gen_bool(0.5);
        let mut piece = resize_rgb(&crop(&s.photo, cx0, cy0, cx1 - cx0, cy1 - cy0), &Preprocess { crop: Crop::None, width: tw, height: th }).unwrap();
        let (sx, sy) = (tw as f32 / (cx1 - cx0) as f32, th as f32 / (cy1 - cy0) as f32);
        let map = |p: [f32; 2]| {
            let x = (p[0] - cx0 as f32) * sx;
            [px as f32 + if flip { tw as f32 - x } else { x }, py as f32 + (p[1] - cy0 as f32) * sy]
        };
        if flip {
            piece = mirror(&piece);
        }
        for y in 0..th {
            let (src, dst) = (((y * tw) * 3) as usize, (((py + y) * w + px) * 3) as usize);
            canvas.data[dst..dst + (tw * 3) as usize].copy_from_slice(&piece.data[src..src + (tw * 3) as usize]);
        }
        let (p1, p2) = (map([b[0], b[1]]), map([b[2], b[3]]));
        let bbox = [p1[0].min(p2[0]), p1[1], p1[0].max(p2[0]), p2[1]];
        let mut landmarks = s.landmarks.map(map);
        if flip {
            landmarks.swap(0, 1);
            landmarks.swap(3, 4);
        }
        let wear = if rng.gen_bool(o.p_masked) {
            let wear = [Wear::Correct, Wear::BelowNose, Wear::ChinOnly][rng.gen_range(0..3)];
            paint_wear_in_place(&mut canvas, &landmarks, wear, &mut rng).map(|p| p.wear)
        } else {
            None
        };
        taken.push([px as f32, py as f32, (px + tw) as f32, (py + th) as f32]);
        placed.push(PlacedFace { bbox, landmarks, wear });
    }
    (canvas, placed)
}

pub fn save_png(img: &RgbImage, path: &Path) {
    image::RgbImage::from_raw(img.width, img.height, img.data.clone()).unwrap().save(path).unwrap();
}

/// Records `faces` for the photo at `path` in `cache`, as the detector would have (fresh stamp,
/// the default smallest face), so that no detection runs for it.
pub fn record_faces(cache: &mut masklab::faces::cache::FacesCache, path: &Path, faces: Vec<masklab::faces::boxes::Face>) {
    let (w, h) = image::image_dimensions(path).unwrap();
    let key = cache.key(path);
    let stamp = masklab::faces::cache::Stamp::of(path).unwrap();
    cache.images.insert(key, masklab::faces::cache::ImageFaces { stamp, width: w, height: h, min_face: masklab::faces::boxes::DEFAULT_MIN_FACE, faces });
}

/// The npm tarball of the `faceres` weights that scripts/setup.sh --test packs.
pub fn faceres_tarball() -> PathBuf {
    let tarball = assets().join("npm/vladmandic-human-3.3.6.tgz");
    assert!(tarball.is_file(), "{} is missing: run scripts/setup.sh --test", tarball.display());
    tarball
}
