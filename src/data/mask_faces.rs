//! `masklab mask-faces IN --out OUT`: masked copies of a folder of unmasked faces, for people who
//! build their own training sets the way MaskTheFace is used; `--preview FILE`: a strip of the
//! folder's faces with a mask worn in each style (the README's strip).
//!
//! The faces come from the folder's `faces.csv`, brought up to date as `masklab faces IN` does
//! (only new and changed photos are detected). Every face of a photo gets a mask (each its own
//! design: surgical, cloth, KN95 or N95, colours and prints), all worn the same way in one copy;
//! a photo's copies take the wears asked for in turn, continuing from photo to photo, so each wear
//! gets an even share. Each copy is drawn from a generator seeded by (seed, the photo's path in
//! IN, the copy's number): the same command writes the same files, whatever else the folder
//! holds. `OUT/masks.csv` lists every painted face (`file,source,face,wear,kind,label,x1,y1,x2,y2`,
//! the label the paint implies: `Wear` or `Incorrect`). A photo without a face, or a face the
//! renderer refuses (a mask mostly outside the photo, landmarks that describe no face), is
//! reported and its copy left out, never written half-masked.
use crate::data::augment::mask_render::strip::{preview_strip, write_png, StripCell, StripFace};
use crate::data::augment::mask_render::{render, DetectedFace, MaskDesign, WearStyle};
use crate::data::dataset::ReadOptions;
use crate::data::face_detection::{decode_photo, find_sets, set_faces, FacesOptions};
use crate::image::decode::RgbImage;
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use image::ImageEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The list of painted faces in OUT.
pub const MASKS_FILE: &str = "masks.csv";

#[derive(Clone, Debug)]
pub struct MaskFacesOptions {
    /// A folder of photos (searched recursively), or a dataset (its photos).
    pub input: PathBuf,
    /// The wears, in turn.
    pub wears: Vec<WearStyle>,
    pub seed: u64,
    pub detector: FacesOptions,
}

/// What `mask_faces` wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MaskFacesSummary {
    pub photos: usize,
    pub copies: usize,
    pub faces: usize,
    pub without_face: usize,
    /// Copies left out, with the reason.
    pub refused: Vec<String>,
    /// Unreadable photos reported and skipped (`--skip-bad`).
    pub skipped: Vec<String>,
    pub seconds: f64,
}

/// One painted face, a row of masks.csv.
#[derive(Clone, Debug, Serialize)]
struct Row {
    file: String,
    source: String,
    face: usize,
    wear: &'static str,
    kind: &'static str,
    label: &'static str,
    x1: f32,
    y1: f32,
    x2: f32,
    y2: f32,
}

/// A photo of the input, decoded, with its faces (largest first) and its path in IN.
struct Photo {
    path: PathBuf,
    key: String,
    image: RgbImage,
    faces: Vec<DetectedFace>,
}

/// The generator of copy `copy` of the photo at `key`.
fn copy_rng(seed: u64, key: &str, copy: usize) -> ChaCha8Rng {
    let digest = Sha256::new().chain_update(seed.to_le_bytes()).chain_update(key.as_bytes()).chain_update((copy as u64).to_le_bytes()).finalize();
    ChaCha8Rng::from_seed(digest.into())
}

/// Whether `inner` is `outer` or lies inside it (both made absolute).
fn within(inner: &Path, outer: &Path) -> bool {
    let abs = |p: &Path| std::path::absolute(p).map(|a| a.components().collect::<PathBuf>()).unwrap_or_else(|_| p.to_path_buf());
    abs(inner).starts_with(abs(outer))
}

/// Every photo of the input with its detected faces (faces.csv brought up to date first), read in
/// parallel, in order of path; unreadable photos go to `skipped` under `skip_bad`.
fn photos(o: &MaskFacesOptions, skipped: &mut Vec<String>) -> Result<Vec<Photo>> {
    let read = ReadOptions { skip_bad: o.detector.skip_bad, ..Default::default() };
    let mut out = Vec::new();
    for set in find_sets(&o.input, &read)? {
        let found = set_faces(&set, &o.detector)?;
        skipped.extend(found.skipped);
        let cache = found.cache;
        let decoded: Vec<_> = found.photos.par_iter().map(|p| decode_photo(p)).collect();
        for (path, image) in found.photos.iter().zip(decoded) {
            let image = match image {
                Ok(i) => i,
                Err(e) if o.detector.skip_bad => {
                    skipped.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let entry = cache.get(path).expect("listed above");
            let mut faces = entry.faces.clone();
            faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
            let key = path.strip_prefix(&o.input).unwrap_or(path).components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push(Photo { path: path.clone(), key, image, faces: faces.iter().map(|f| DetectedFace { bbox: f.bbox, landmarks: f.landmarks }).collect() });
        }
    }
    Ok(out)
}

/// `image` encoded as the extension of `path` asks: PNG for `.png`, else JPEG at quality 95.
fn encode(path: &Path, image: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let (data, w, h, colour) = (&image.data, image.width, image.height, image::ExtendedColorType::Rgb8);
    if png {
        image::codecs::png::PngEncoder::new(&mut bytes).write_image(data, w, h, colour)
    } else {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95).write_image(data, w, h, colour)
    }
    .with_context(|| format!("cannot encode {}", path.display()))?;
    Ok(bytes)
}

/// The copies of one photo: its painted faces' rows, or why a copy was left out.
fn paint_copies(photo: &Photo, first: usize, per_photo: usize, o: &MaskFacesOptions, out: &Path) -> Vec<Result<Vec<Row>, String>> {
    (0..per_photo)
        .map(|copy| {
            let wear = o.wears[(first + copy) % o.wears.len()];
            let mut rng = copy_rng(o.seed, &photo.key, copy);
            let mut image = photo.image.clone();
            let mut rows = Vec::new();
            let stem = Path::new(&photo.key).with_extension("");
            let ext = photo.path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_else(|| "png".into());
            let suffix = if per_photo > 1 { format!("_{}_{copy}", wear.slug()) } else { format!("_{}", wear.slug()) };
            let file = format!("{}{suffix}.{ext}", stem.to_string_lossy());
            for (k, face) in photo.faces.iter().enumerate() {
                let design = MaskDesign::random(&mut rng);
                let r = render(&image, face, &design, wear, &mut rng).map_err(|e| format!("{} face {k} ({}): {e}", photo.path.display(), wear.name()))?;
                rows.push(Row {
                    file: file.clone(),
                    source: photo.key.clone(),
                    face: k,
                    wear: wear.slug(),
                    kind: r.kind.name(),
                    label: r.label.name(),
                    x1: face.bbox[0],
                    y1: face.bbox[1],
                    x2: face.bbox[2],
                    y2: face.bbox[3],
                });
                image = r.image;
            }
            let target = out.join(&file);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            encode(&target, &image).and_then(|bytes| write_atomic(&target, &bytes)).map_err(|e| format!("{e:#}"))?;
            Ok(rows)
        })
        .collect()
}

/// Writes masked copies of the input's photos into `out` (`per_photo` per photo) and
/// `out/masks.csv`. A non-empty `out` is refused unless `force` (its files are then overwritten,
/// others left); `out` may neither lie inside the input (the next walk of it would find the
/// copies) nor hold it.
pub fn mask_faces(o: &MaskFacesOptions, out: &Path, per_photo: usize, force: bool) -> Result<MaskFacesSummary> {
    let start = std::time::Instant::now();
    if o.wears.is_empty() || per_photo == 0 {
        bail!("nothing to write: at least one wear and one copy per photo are needed");
    }
    if within(out, &o.input) || within(&o.input, out) {
        bail!("{}: the output folder may neither lie inside {} nor hold it (masked copies would be read back as photos to mask)", out.display(), o.input.display());
    }
    let non_empty = std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && !force {
        bail!("{} is not empty: choose an empty or new folder, or pass --force to write into it (files of the same name are replaced)", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut summary = MaskFacesSummary::default();
    let photos = photos(o, &mut summary.skipped)?;
    summary.photos = photos.len();
    let results: Vec<Vec<Result<Vec<Row>, String>>> = photos
        .par_iter()
        .enumerate()
        .map(|(i, photo)| if photo.faces.is_empty() { Vec::new() } else { paint_copies(photo, i * per_photo, per_photo, o, out) })
        .collect();
    let mut csv = csv::Writer::from_writer(Vec::new());
    for (photo, copies) in photos.iter().zip(results) {
        if photo.faces.is_empty() {
            summary.without_face += 1;
            summary.refused.push(format!("{}: no face found", photo.path.display()));
            continue;
        }
        for copy in copies {
            match copy {
                Ok(rows) => {
                    summary.copies += 1;
                    summary.faces += rows.len();
                    for r in rows {
                        csv.serialize(r)?;
                    }
                }
                Err(why) => summary.refused.push(why),
            }
        }
    }
    write_atomic(&out.join(MASKS_FILE), &csv.into_inner().context("masks.csv")?)?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// Writes the preview strip of the input's faces to `file` (PNG): `rows` rows (default one per
/// photo with a face), each the largest face of a photo in turn, its photo and then a mask worn in
/// each of the wears; `cell` pixels per square. Returns what each cell shows.
pub fn preview(o: &MaskFacesOptions, file: &Path, rows: Option<usize>, cell: u32) -> Result<Vec<StripCell>> {
    if !file.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        bail!("{}: the preview is written as PNG; name it *.png", file.display());
    }
    if !(16..=1024).contains(&cell) {
        bail!("--cell must be between 16 and 1024 pixels, got {cell}");
    }
    let mut skipped = Vec::new();
    let faces: Vec<StripFace> = photos(o, &mut skipped)?
        .into_iter()
        .filter_map(|p| {
            let face = *p.faces.first()?;
            Some(StripFace { image: p.image, face })
        })
        .collect();
    for s in &skipped {
        eprintln!("skipped: {s}");
    }
    if faces.is_empty() {
        bail!("{}: no photo with a face to preview", o.input.display());
    }
    let rows = rows.unwrap_or(faces.len());
    if rows == 0 {
        bail!("--rows must be at least 1");
    }
    let chosen: Vec<StripFace> = (0..rows).map(|r| faces[r % faces.len()].clone()).collect();
    let (strip, cells) = preview_strip(&chosen, &o.wears, o.seed, cell);
    write_png(file, &strip)?;
    Ok(cells)
}
