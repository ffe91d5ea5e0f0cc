//! A small synthetic dataset in the competition's full layout, for the README demo and tests.
//!
//! Each person is a drawn face whose labels are visible in the pixels, so a model can learn them:
//! - mask state: a coloured mask over nose and mouth (worn), over mouth and chin only with the
//!   nose showing (worn incorrectly), or none (the mouth shows);
//! - gender: short hair (male) or long hair falling beside the face (female);
//! - age band: hair colour (dark, greying, white) and forehead lines for the old.
//!
//! It also plants the competition's quirks: mixed extensions (.jpg .jpeg .JPG .png), macOS `._*`
//! junk and a stray file, a suffixed id and a duplicated id, and folder labels that are wrong
//! on purpose together with the `relabel.csv` that corrects them.
use crate::labels::{AgeBand, AgeBounds, Class, Gender, Mask, STEMS};
use anyhow::{Context, Result};
use image::{ImageEncoder, Rgb, RgbImage};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub train_people: usize,
    pub eval_people: usize,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
}

/// What was written, so callers (and tests) know the truth without re-reading it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DemoSummary {
    pub people: usize,
    pub images: usize,
    pub junk_files: usize,
    pub relabels: usize,
    pub eval_images: usize,
    /// Classes of the train images after relabelling (the truth), 18 counts.
    pub class_counts: Vec<usize>,
}

/// A person as drawn (true labels) and as filed (what train.csv says).
struct DemoPerson {
    id: String,
    gender: Gender,
    age: u32,
    filed_gender: Gender,
    filed_age: u32,
    race: &'static str,
    folder: String,
    ext: &'static str,
    swapped: bool,
    mask3_incorrect: bool,
    junk: Vec<(&'static str, &'static [u8])>,
}

const SKIN: [[u8; 3]; 5] = [[241, 206, 180], [224, 172, 138], [198, 134, 96], [141, 85, 54], [255, 220, 196]];
const MASK_COLOURS: [[u8; 3]; 6] = [[70, 130, 220], [240, 240, 245], [30, 30, 35], [60, 170, 110], [230, 110, 160], [120, 90, 200]];
const RACES: [&str; 4] = ["Asian", "White", "Black", "Others"];

/// Draws one photo of a person. `variant` seeds the per-photo jitter.
fn draw_face(w: u32, h: u32, gender: Gender, band: AgeBand, mask: Mask, identity: u64, variant: u64) -> RgbImage {
    let mut id_rng = ChaCha8Rng::seed_from_u64(identity);
    let skin = SKIN[id_rng.gen_range(0..SKIN.len())];
    let hair = match band {
        AgeBand::Young => [[25, 18, 12], [60, 35, 20], [90, 55, 25]][id_rng.gen_range(0..3)],
        AgeBand::Middle => [[105, 90, 80], [120, 105, 95]][id_rng.gen_range(0..2)],
        AgeBand::Old => [[225, 225, 225], [200, 200, 205]][id_rng.gen_range(0..2)],
    };
    let back = [id_rng.gen_range(60..200u8), id_rng.gen_range(60..200u8), id_rng.gen_range(60..200u8)];
    let mask_colour = MASK_COLOURS[id_rng.gen_range(0..MASK_COLOURS.len())];

    let mut rng = ChaCha8Rng::seed_from_u64(identity ^ variant.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (wf, hf) = (w as f32, h as f32);
    let cx = wf * (0.5 + rng.gen_range(-0.04..0.04));
    let cy = hf * (0.52 + rng.gen_range(-0.03..0.03));
    let (rx, ry) = (wf * 0.27, hf * 0.27);
    let inside = |x: f32, y: f32, ax: f32, ay: f32, bx: f32, by: f32| ((x - ax) / bx).powi(2) + ((y - ay) / by).powi(2) <= 1.0;
    let brightness = rng.gen_range(0.85..1.15f32);
    let mask_top = match mask {
        Mask::Wear => Some(cy - ry * 0.05),
        Mask::Incorrect => Some(cy + ry * rng.gen_range(0.35..0.55)),
        Mask::NotWear => None,
    };

    let mut img = RgbImage::new(w, h);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (x, y) = (x as f32 + 0.5, y as f32 + 0.5);
        let mut c = back;
        // Long hair sits behind the face and falls to the shoulders.
        if gender == Gender::Female && inside(x, y, cx, cy + ry * 0.25, rx * 1.35, ry * 1.3) && y > cy - ry * 1.25 {
            c = hair;
        }
        if inside(x, y, cx, cy, rx, ry) {
            c = skin;
            let forehead = y < cy - ry * 0.45;
            if forehead && band == AgeBand::Old && ((y - (cy - ry * 0.7)) / (ry * 0.12)).fract().abs() < 0.25 {
                c = [skin[0] / 2 + 40, skin[1] / 2 + 30, skin[2] / 2 + 25];
            }
            // eyes
            let ey = cy - ry * 0.15;
            if inside(x, y, cx - rx * 0.4, ey, rx * 0.13, ry * 0.08) || inside(x, y, cx + rx * 0.4, ey, rx * 0.13, ry * 0.08) {
                c = [20, 20, 30];
            }
            // nose
            if (x - cx).abs() < rx * 0.1 && y > cy + ry * 0.05 && y < cy + ry * 0.3 {
                c = [skin[0].saturating_sub(45), skin[1].saturating_sub(45), skin[2].saturating_sub(40)];
            }
            // mouth
            if inside(x, y, cx, cy + ry * 0.58, rx * 0.35, ry * 0.08) {
                c = [170, 40, 50];
            }
        }
        // Hair on top of the head (both genders); short for men.
        if inside(x, y, cx, cy - ry * 0.55, rx * 1.05, ry * 0.6) && y < cy - ry * 0.5 {
            c = hair;
        }
        if let Some(top) = mask_top {
            if y >= top && inside(x, y, cx, cy + ry * 0.1, rx * 1.08, ry * 1.0) {
                c = mask_colour;
                if ((y - top) / (ry * 0.2)).fract() < 0.12 {
                    c = [mask_colour[0] / 2 + 20, mask_colour[1] / 2 + 20, mask_colour[2] / 2 + 20];
                }
            }
        }
        let noise = rng.gen_range(-12.0..12.0f32);
        *px = Rgb(c.map(|v| (v as f32 * brightness + noise).clamp(0.0, 255.0) as u8));
    }
    img
}

fn save(img: &RgbImage, path: &Path) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    if ext == "png" {
        image::codecs::png::PngEncoder::new(&mut out).write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)?;
    } else {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92).write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)?;
    }
    out.flush()?;
    Ok(())
}

/// Picks (gender, age) so that all six gender x age strata appear, in roughly the competition's mix.
fn draw_person_labels(rng: &mut ChaCha8Rng, i: usize) -> (Gender, u32) {
    // The first six people cover every stratum; the rest follow the competition's mix.
    let stratum = if i < 6 {
        i
    } else {
        let weights = [549, 410, 83, 732, 817, 109];
        let total: u32 = weights.iter().sum();
        let mut r = rng.gen_range(0..total);
        weights.iter().position(|&w| if r < w { true } else { r -= w; false }).unwrap_or(0)
    };
    let gender = if stratum < 3 { Gender::Male } else { Gender::Female };
    let age = match stratum % 3 {
        0 => rng.gen_range(18..30),
        1 => rng.gen_range(30..60),
        _ => rng.gen_range(60..76),
    };
    (gender, age)
}

pub fn write_demo(out: &Path, opts: &DemoOptions) -> Result<DemoSummary> {
    anyhow::ensure!(opts.train_people >= 6, "demo-data needs at least 6 people (one per gender x age band)");
    anyhow::ensure!(opts.width >= 16 && opts.height >= 16, "demo-data images must be at least 16x16");
    let bounds = AgeBounds::default();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut people = Vec::with_capacity(opts.train_people);
    for i in 0..opts.train_people {
        let (gender, age) = draw_person_labels(&mut rng, i);
        let mut id = format!("{:06}", i + 1);
        if i == 2 {
            id.push_str("-1"); // a suffixed id, as in the competition
        }
        if i == 9 {
            id = format!("{:06}", 8); // a duplicated id: another folder, another person
        }
        let ext = match i % 6 {
            1 => "png",
            3 => "jpeg",
            5 => "JPG",
            _ => "jpg",
        };
        let mut p = DemoPerson {
            id,
            gender,
            age,
            filed_gender: gender,
            filed_age: age,
            race: RACES[i % RACES.len()],
            folder: String::new(),
            ext,
            swapped: false,
            mask3_incorrect: false,
            junk: Vec::new(),
        };
        // Wrong labels on purpose, each with its correction in relabel.csv.
        match i {
            4 => p.filed_gender = match gender { Gender::Male => Gender::Female, Gender::Female => Gender::Male },
            5 => p.swapped = true,
            10 => p.filed_age = if bounds.band(age) == AgeBand::Old { 45 } else { age + 40 },
            12 => p.mask3_incorrect = true,
            _ => {}
        }
        if i % 4 == 0 {
            p.junk.push(("._mask1.jpg", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "));
        }
        if i == 1 {
            p.junk.push(("Thumbs.db", b"not an image"));
        }
        p.folder = format!("{}_{}_{}_{}", p.id, p.filed_gender.word(), p.race, p.filed_age);
        people.push(p);
    }

    let train_images = out.join("train").join("images");
    std::fs::create_dir_all(&train_images).with_context(|| format!("cannot create {}", train_images.display()))?;
    people.par_iter().enumerate().try_for_each(|(i, p)| -> Result<()> {
        let dir = train_images.join(&p.folder);
        std::fs::create_dir_all(&dir)?;
        let band = bounds.band(p.age);
        for (k, stem) in STEMS.iter().enumerate() {
            let mut mask = Mask::from_stem(stem).expect("known stem");
            if p.mask3_incorrect && *stem == "mask3" {
                mask = Mask::Incorrect;
            }
            // A swapped person has the bare face filed as incorrect_mask and vice versa.
            let filed_stem = match (*stem, p.swapped) {
                ("normal", true) => "incorrect_mask",
                ("incorrect_mask", true) => "normal",
                (s, _) => s,
            };
            let img = draw_face(opts.width, opts.height, p.gender, band, mask, opts.seed ^ ((i as u64 + 1) << 20), k as u64 + 1);
            save(&img, &dir.join(format!("{filed_stem}.{}", p.ext)))?;
        }
        for (name, bytes) in &p.junk {
            std::fs::write(dir.join(name), bytes)?;
        }
        Ok(())
    })?;

    let mut csv = csv::Writer::from_path(out.join("train").join("train.csv"))?;
    csv.write_record(["id", "gender", "race", "age", "path"])?;
    for p in &people {
        csv.write_record([p.id.as_str(), p.filed_gender.word(), p.race, &p.filed_age.to_string(), p.folder.as_str()])?;
    }
    csv.flush()?;

    let mut relabel = csv::Writer::from_path(out.join("train").join("relabel.csv"))?;
    relabel.write_record(["id", "field", "true_value"])?;
    let mut relabels = 0;
    for p in &people {
        if p.filed_gender != p.gender {
            relabel.write_record([p.id.as_str(), "gender", p.gender.word()])?;
            relabels += 1;
        }
        if p.filed_age != p.age {
            relabel.write_record([p.id.as_str(), "age", &p.age.to_string()])?;
            relabels += 1;
        }
        if p.swapped {
            relabel.write_record([p.id.as_str(), "swap", "normal<->incorrect_mask"])?;
            relabels += 1;
        }
        if p.mask3_incorrect {
            relabel.write_record([p.id.as_str(), "mask", "mask3=incorrect"])?;
            relabels += 1;
        }
    }
    relabel.flush()?;

    let mut class_counts = vec![0; crate::labels::NUM_CLASSES];
    for p in &people {
        for stem in STEMS {
            let mut mask = Mask::from_stem(stem).expect("known stem");
            if p.mask3_incorrect && stem == "mask3" {
                mask = Mask::Incorrect;
            }
            class_counts[Class::new(mask, p.gender, bounds.band(p.age)).encode()] += 1;
        }
    }

    let eval_images = write_eval(out, opts, &bounds, &mut rng)?;
    Ok(DemoSummary {
        people: people.len(),
        images: people.len() * STEMS.len(),
        junk_files: people.iter().map(|p| p.junk.len()).sum(),
        relabels,
        eval_images,
        class_counts,
    })
}

/// `eval/info.csv` (ans = 0), `eval/answers.csv` (the key) and `eval/images/<hex>.jpg`, shuffled.
fn write_eval(out: &Path, opts: &DemoOptions, bounds: &AgeBounds, rng: &mut ChaCha8Rng) -> Result<usize> {
    let dir = out.join("eval").join("images");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..opts.eval_people {
        let (gender, age) = draw_person_labels(rng, i);
        for (k, stem) in STEMS.iter().enumerate() {
            let mask = Mask::from_stem(stem).expect("known stem");
            let name = format!("{:016x}{:016x}.jpg", rng.gen::<u64>(), rng.gen::<u64>());
            let class = Class::new(mask, gender, bounds.band(age)).encode();
            rows.push((name.clone(), class));
            jobs.push((name, gender, bounds.band(age), mask, opts.seed ^ 0xE7A1 ^ ((i as u64 + 1) << 24), k as u64 + 1));
        }
    }
    jobs.par_iter().try_for_each(|(name, g, band, mask, identity, variant)| {
        save(&draw_face(opts.width, opts.height, *g, *band, *mask, *identity, *variant), &dir.join(name))
    })?;
    rows.shuffle(rng);
    let mut info = csv::Writer::from_path(out.join("eval").join("info.csv"))?;
    let mut key = csv::Writer::from_path(out.join("eval").join("answers.csv"))?;
    info.write_record(["ImageID", "ans"])?;
    key.write_record(["ImageID", "ans"])?;
    for (name, class) in &rows {
        info.write_record([name.as_str(), "0"])?;
        key.write_record([name.as_str(), &class.to_string()])?;
    }
    info.flush()?;
    key.flush()?;
    Ok(rows.len())
}
