//! Synthetic masks painted onto unmasked faces from MTCNN's five landmarks.
//!
//! The eyes, nose tip and mouth corners fix a face frame: `s` across (pixels along the eye
//! line) and `t` down (0 at the eyes, 1 at the mouth). The mask is a shape in that frame, so it
//! follows the head's roll, size and (through separate half-widths left and right of the nose)
//! its yaw: an upper edge that dips towards the cheeks (pointed for a KN95), sides at about the
//! cheeks, and a lower edge rounded under the chin. Worn correctly its top is on the bridge of
//! the nose; worn incorrectly it sits below the nose tip (mouth covered, nose out) or on the
//! chin only (mouth out). Styles (surgical with pleats, cloth, KN95 with a seam, patterned),
//! colours, shading across the curve of the face, the photo's own light, fabric noise, soft
//! edges and ear loops come from the caller's random generator: the same seed paints the same
//! mask. Everything is CPU work on one u8 RGB image, cheap enough to call per training sample.
use crate::image::decode::RgbImage;
use crate::labels::Mask;
use rand::Rng;
use serde::Serialize;

/// How the painted mask is worn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Wear {
    /// Over the nose and mouth, under the chin.
    Correct,
    /// Mouth and chin covered, the nose out.
    BelowNose,
    /// On the chin only, mouth and nose out.
    ChinOnly,
}

impl Wear {
    /// The label a photo with this mask gets.
    pub fn mask(self) -> Mask {
        match self {
            Wear::Correct => Mask::Wear,
            Wear::BelowNose | Wear::ChinOnly => Mask::Incorrect,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Style {
    /// Light colours, three horizontal pleats.
    Surgical,
    /// A plain fabric colour with a coarser texture.
    Cloth,
    /// White or grey, pointed top, a vertical seam.
    Kn95,
    /// Fabric with stripes or dots of a second colour.
    Patterned,
}

/// Which wear to draw when the caller does not choose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SynthOptions {
    /// Probability that the mask is worn incorrectly.
    pub p_incorrect: f64,
    /// Among incorrect masks, the share on the chin only (the rest sit below the nose).
    pub p_chin_only: f64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { p_incorrect: 0.5, p_chin_only: 0.3 }
    }
}

/// What was painted.
#[derive(Clone, Debug, Serialize)]
pub struct Painted {
    pub wear: Wear,
    /// The label of the painted photo (`Wear` or `Incorrect`).
    pub state: Mask,
    pub style: Style,
    pub colour: [u8; 3],
    /// The mask's outline (without the ear loops), in pixels of the photo.
    pub outline: Vec<[f32; 2]>,
    /// Pixels of the mask itself (soft edges included).
    pub pixels: usize,
    /// Pixels of the ear loops.
    pub loop_pixels: usize,
}

/// The face frame spanned by the landmarks.
#[derive(Clone, Copy, Debug)]
struct Frame {
    origin: [f32; 2],
    /// Unit vector along the eye line (towards the right eye).
    u: [f32; 2],
    /// Unit vector perpendicular to it, towards the mouth.
    v: [f32; 2],
    /// Eye-to-mouth distance along `v`, in pixels.
    d: f32,
    /// The nose tip: `s` (pixels) and `t` (eye-mouth units).
    nose: [f32; 2],
    /// The mouth centre's `s`.
    mouth_s: f32,
    /// Distances from the nose to the left and right eye along `u`.
    left: f32,
    right: f32,
}

fn sub(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    [a[0] - b[0], a[1] - b[1]]
}
fn dot(a: [f32; 2], b: [f32; 2]) -> f32 {
    a[0] * b[0] + a[1] * b[1]
}

impl Frame {
    /// None for landmarks no face has: eyes closer than 4 px, the mouth not below the eyes, the
    /// nose not between the eyes, or anything not finite.
    fn new(lm: &[[f32; 2]; 5]) -> Option<Frame> {
        if lm.iter().flatten().any(|v| !v.is_finite()) {
            return None;
        }
        let [le, re, nose, ml, mr] = *lm;
        let eyes = sub(re, le);
        let iod = dot(eyes, eyes).sqrt();
        if iod < 4.0 {
            return None;
        }
        let u = [eyes[0] / iod, eyes[1] / iod];
        let v = [-u[1], u[0]];
        let origin = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
        let mouth = [(ml[0] + mr[0]) / 2.0, (ml[1] + mr[1]) / 2.0];
        let d = dot(sub(mouth, origin), v);
        if d < 3.0 {
            return None;
        }
        let ns = dot(sub(nose, origin), u);
        let nt = dot(sub(nose, origin), v) / d;
        let (left, right) = (ns + iod / 2.0, iod / 2.0 - ns);
        if left < 0.1 * iod || right < 0.1 * iod || !(0.1..0.95).contains(&nt) {
            return None;
        }
        Some(Frame { origin, u, v, d, nose: [ns, nt], mouth_s: dot(sub(mouth, origin), u), left, right })
    }

    /// Pixel position of frame point `(s, t)`.
    fn point(&self, s: f32, t: f32) -> [f32; 2] {
        let td = t * self.d;
        [self.origin[0] + s * self.u[0] + td * self.v[0], self.origin[1] + s * self.u[1] + td * self.v[1]]
    }

    /// Frame point `(s, t)` of a pixel position.
    fn coords(&self, p: [f32; 2]) -> (f32, f32) {
        let d = sub(p, self.origin);
        (dot(d, self.u), dot(d, self.v) / self.d)
    }

    /// The face's centre line across at height `t`: through the nose tip above it, the mouth
    /// centre below the mouth, linear between.
    fn centre(&self, t: f32) -> f32 {
        let [ns, nt] = self.nose;
        let k = ((t - nt) / (1.0 - nt)).clamp(0.0, 1.0);
        ns + (self.mouth_s - ns) * k
    }
}

/// The mask's shape in the face frame.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// `t` of the upper edge at the centre line.
    top: f32,
    /// How far the upper edge drops at the sides (t units).
    dip: f32,
    /// Pointed (KN95) rather than rounded upper edge.
    pointed: bool,
    /// `t` of the lower edge at the sides and at the centre (under the chin).
    side_bottom: f32,
    bottom: f32,
    /// Half-widths left and right of the centre line, pixels.
    left: f32,
    right: f32,
}

impl Shape {
    /// `(s', t)` of a frame point, `s'` in [-1, 1] across the mask.
    fn across(&self, frame: &Frame, s: f32, t: f32) -> f32 {
        let c = frame.centre(t);
        if s < c {
            (s - c) / self.left
        } else {
            (s - c) / self.right
        }
    }

    fn upper(&self, a: f32) -> f32 {
        self.top + if self.pointed { self.dip * a.abs() } else { self.dip * a * a }
    }

    fn lower(&self, a: f32) -> f32 {
        self.side_bottom + (self.bottom - self.side_bottom) * (1.0 - a * a).max(0.0).sqrt()
    }

    /// Signed distance inside the shape in pixels (approximate; positive inside).
    fn inside(&self, frame: &Frame, s: f32, t: f32) -> (f32, f32) {
        let a = self.across(frame, s, t);
        let half = if a < 0.0 { self.left } else { self.right };
        let side = (1.0 - a.abs()) * half;
        let top = (t - self.upper(a)) * frame.d;
        let bottom = (self.lower(a) - t) * frame.d;
        (side.min(top).min(bottom), a)
    }

    /// The outline in frame coordinates, clockwise from the upper left corner.
    fn outline(&self, frame: &Frame) -> Vec<[f32; 2]> {
        const N: usize = 24;
        let mut pts = Vec::with_capacity(2 * N + 2);
        let s_of = |a: f32, t: f32| frame.centre(t) + a * if a < 0.0 { self.left } else { self.right };
        for i in 0..=N {
            let a = -1.0 + 2.0 * i as f32 / N as f32;
            let t = self.upper(a);
            pts.push(frame.point(s_of(a, t), t));
        }
        for i in 0..=N {
            let a = 1.0 - 2.0 * i as f32 / N as f32;
            let t = self.lower(a);
            pts.push(frame.point(s_of(a, t), t));
        }
        pts
    }
}

const SURGICAL: [[u8; 3]; 4] = [[170, 205, 232], [236, 240, 244], [150, 200, 190], [210, 215, 225]];
const CLOTH: [[u8; 3]; 8] = [[40, 40, 44], [30, 60, 120], [120, 124, 130], [232, 190, 200], [90, 140, 110], [180, 60, 60], [200, 200, 190], [70, 50, 90]];
const KN95: [[u8; 3]; 3] = [[245, 245, 245], [225, 225, 220], [60, 60, 64]];

fn pick<R: Rng>(rng: &mut R, colours: &[[u8; 3]]) -> [u8; 3] {
    let c = colours[rng.gen_range(0..colours.len())];
    let j: i32 = rng.gen_range(-12..=12);
    c.map(|v| (v as i32 + j).clamp(0, 255) as u8)
}

/// Draws the wear from `opts`.
pub fn draw_wear<R: Rng>(rng: &mut R, opts: &SynthOptions) -> Wear {
    if rng.gen_bool(opts.p_incorrect.clamp(0.0, 1.0)) {
        if rng.gen_bool(opts.p_chin_only.clamp(0.0, 1.0)) {
            Wear::ChinOnly
        } else {
            Wear::BelowNose
        }
    } else {
        Wear::Correct
    }
}

/// Paints a mask with a wear drawn from `opts` onto a copy of `image`; None when the landmarks
/// do not describe a face (see [`paint_mask_in_place`]).
pub fn paint_mask<R: Rng>(image: &RgbImage, landmarks: &[[f32; 2]; 5], rng: &mut R, opts: &SynthOptions) -> Option<(RgbImage, Painted)> {
    let mut out = image.clone();
    let wear = draw_wear(rng, opts);
    let painted = paint_wear_in_place(&mut out, landmarks, wear, rng)?;
    Some((out, painted))
}

/// Paints a mask with a wear drawn from `opts` into `image`.
pub fn paint_mask_in_place<R: Rng>(image: &mut RgbImage, landmarks: &[[f32; 2]; 5], rng: &mut R, opts: &SynthOptions) -> Option<Painted> {
    let wear = draw_wear(rng, opts);
    paint_wear_in_place(image, landmarks, wear, rng)
}

/// Paints a mask worn as `wear` into `image`, whose landmarks (in its pixels, MTCNN's order) are
/// `landmarks`. Returns None, and leaves the image as it was, when the landmarks do not describe
/// a face (eyes closer than 4 pixels, the mouth not below the eyes, the nose outside them) or the
/// mask would lie wholly outside the image.
pub fn paint_wear_in_place<R: Rng>(image: &mut RgbImage, landmarks: &[[f32; 2]; 5], wear: Wear, rng: &mut R) -> Option<Painted> {
    let frame = Frame::new(landmarks)?;
    let style = match rng.gen_range(0..10) {
        0..=3 => Style::Surgical,
        4..=6 => Style::Cloth,
        7..=8 => Style::Kn95,
        _ => Style::Patterned,
    };
    let colour = match style {
        Style::Surgical => pick(rng, &SURGICAL),
        Style::Cloth | Style::Patterned => pick(rng, &CLOTH),
        Style::Kn95 => pick(rng, &KN95),
    };
    let width = rng.gen_range(1.85..2.15f32) * if wear == Wear::ChinOnly { 0.85 } else { 1.0 };
    let nose_t = frame.nose[1];
    let (top, side_bottom, bottom) = match wear {
        Wear::Correct => (rng.gen_range(0.24..0.34f32).min(nose_t - 0.1), rng.gen_range(1.0..1.15f32), rng.gen_range(1.6..1.75f32)),
        Wear::BelowNose => ((nose_t + rng.gen_range(0.14..0.22f32)).min(0.85), rng.gen_range(1.05..1.2f32), rng.gen_range(1.6..1.75f32)),
        Wear::ChinOnly => {
            let top = rng.gen_range(1.15..1.25f32);
            (top, top + rng.gen_range(0.15..0.25f32), rng.gen_range(1.65..1.8f32))
        }
    };
    let shape = Shape {
        top,
        dip: rng.gen_range(0.08..0.16f32),
        pointed: style == Style::Kn95,
        side_bottom,
        bottom,
        left: width * frame.left,
        right: width * frame.right,
    };
    let outline = shape.outline(&frame);
    // Look: shading across the curve, a light direction, fabric noise, style details.
    let curve = rng.gen_range(0.15..0.3f32);
    let slope = rng.gen_range(-0.12..0.12f32);
    let noise_amp = if matches!(style, Style::Cloth | Style::Patterned) { rng.gen_range(5.0..10.0f32) } else { rng.gen_range(2.0..5.0f32) };
    let second = pick(rng, &CLOTH);
    let stripes = rng.gen_bool(0.5);
    let period = frame.d * rng.gen_range(0.12..0.2f32);
    let phase = rng.gen_range(0.0..1.0f32);
    let loop_colour = if colour.iter().map(|&c| c as u32).sum::<u32>() < 300 { [235, 235, 235] } else { colour.map(|c| c.saturating_sub(40)) };

    let (w, h) = (image.width as i64, image.height as i64);
    let xs = outline.iter().map(|p| p[0]);
    let ys = outline.iter().map(|p| p[1]);
    let x0 = (xs.clone().fold(f32::INFINITY, f32::min).floor() as i64 - 1).max(0);
    let x1 = (xs.fold(f32::NEG_INFINITY, f32::max).ceil() as i64 + 2).min(w);
    let y0 = (ys.clone().fold(f32::INFINITY, f32::min).floor() as i64 - 1).max(0);
    let y1 = (ys.fold(f32::NEG_INFINITY, f32::max).ceil() as i64 + 2).min(h);
    if x0 >= x1 || y0 >= y1 {
        return None;
    }
    let luma = |px: &[u8]| 0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32;
    // The photo's own light under the mask, relative to its mean there.
    let (mut sum, mut count) = (0.0f32, 0usize);
    for y in y0..y1 {
        for x in x0..x1 {
            let (s, t) = frame.coords([x as f32 + 0.5, y as f32 + 0.5]);
            if shape.inside(&frame, s, t).0 > 0.0 {
                let i = ((y * w + x) * 3) as usize;
                sum += luma(&image.data[i..i + 3]);
                count += 1;
            }
        }
    }
    if count == 0 {
        return None;
    }
    let mean = (sum / count as f32).max(1.0);
    let mut pixels = 0;
    let span = (shape.bottom - shape.top).max(0.1);
    for y in y0..y1 {
        for x in x0..x1 {
            let (s, t) = frame.coords([x as f32 + 0.5, y as f32 + 0.5]);
            let (dist, a) = shape.inside(&frame, s, t);
            let alpha = (dist + 0.5).clamp(0.0, 1.0);
            if alpha <= 0.0 {
                continue;
            }
            let i = ((y * w + x) * 3) as usize;
            let under = luma(&image.data[i..i + 3]);
            let f = (t - shape.top) / span;
            let mut light = 1.0 - curve * a * a + slope * a - 0.08 * (f - 0.5);
            light *= 0.8 + 0.2 * (under / mean).clamp(0.5, 1.5);
            let mut base = colour;
            match style {
                Style::Surgical => {
                    for k in [0.3f32, 0.5, 0.7] {
                        let z = (f - k) / 0.025;
                        light -= 0.14 * (-z * z).exp();
                        let z = (f - k + 0.045) / 0.03;
                        light += 0.05 * (-z * z).exp();
                    }
                }
                Style::Kn95 => {
                    let z = a / 0.03;
                    light -= 0.18 * (-z * z).exp();
                }
                Style::Patterned => {
                    let along = t * frame.d / period + phase;
                    let on = if stripes {
                        along.fract() < 0.35
                    } else {
                        let across = s / period + phase;
                        let (fx, fy) = (across.fract() - 0.5, along.fract() - 0.5);
                        fx * fx + fy * fy < 0.06
                    };
                    if on {
                        base = second;
                    }
                }
                Style::Cloth => {}
            }
            let noise = (rng.gen::<f32>() + rng.gen::<f32>() - 1.0) * noise_amp;
            for c in 0..3 {
                let painted = (base[c] as f32 * light + noise).clamp(0.0, 255.0);
                let old = image.data[i + c] as f32;
                image.data[i + c] = (old + (painted - old) * alpha).round() as u8;
            }
            pixels += 1;
        }
    }
    // Ear loops: from the mask's upper corners towards the ears, beyond the eyes.
    let thickness = (frame.d * 0.025).max(0.8);
    let mut loop_pixels = 0;
    for (a, side) in [(-1.0f32, -frame.left), (1.0, frame.right)] {
        let t = shape.upper(a);
        let c = frame.centre(t);
        let corner = frame.point(c + a * if a < 0.0 { shape.left } else { shape.right }, t);
        let ear = frame.point(frame.nose[0] + side * width * 1.1, 0.15);
        loop_pixels += draw_line(image, corner, ear, thickness, loop_colour);
    }
    Some(Painted { wear, state: wear.mask(), style, colour, outline, pixels, loop_pixels })
}

/// A line `thickness` pixels wide, anti-aliased; returns the pixels it changed.
fn draw_line(image: &mut RgbImage, a: [f32; 2], b: [f32; 2], thickness: f32, colour: [u8; 3]) -> usize {
    let (w, h) = (image.width as i64, image.height as i64);
    let r = thickness / 2.0 + 1.0;
    let x0 = ((a[0].min(b[0]) - r).floor() as i64).max(0);
    let x1 = ((a[0].max(b[0]) + r).ceil() as i64).min(w);
    let y0 = ((a[1].min(b[1]) - r).floor() as i64).max(0);
    let y1 = ((a[1].max(b[1]) + r).ceil() as i64).min(h);
    let ab = sub(b, a);
    let len2 = dot(ab, ab).max(1e-6);
    let mut changed = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            let p = [x as f32 + 0.5, y as f32 + 0.5];
            let k = (dot(sub(p, a), ab) / len2).clamp(0.0, 1.0);
            let q = [a[0] + k * ab[0], a[1] + k * ab[1]];
            let d = dot(sub(p, q), sub(p, q)).sqrt();
            let alpha = (thickness / 2.0 + 0.5 - d).clamp(0.0, 1.0);
            if alpha <= 0.0 {
                continue;
            }
            let i = ((y * w + x) * 3) as usize;
            for c in 0..3 {
                let old = image.data[i + c] as f32;
                image.data[i + c] = (old + (colour[c] as f32 - old) * alpha).round() as u8;
            }
            changed += 1;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A frontal face's landmarks in a 200x240 photo: eyes 60 px apart, eye-mouth 70 px.
    const FACE: [[f32; 2]; 5] = [[70.0, 90.0], [130.0, 90.0], [100.0, 128.0], [76.0, 160.0], [124.0, 160.0]];

    fn photo() -> RgbImage {
        // A mid-grey gradient, so that any painted pixel differs from it.
        let (w, h) = (200u32, 240u32);
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[(100 + x / 8) as u8, (90 + y / 8) as u8, 128]);
            }
        }
        RgbImage { width: w, height: h, data }
    }

    fn changed(a: &RgbImage, b: &RgbImage, p: [f32; 2]) -> bool {
        let i = ((p[1] as usize) * a.width as usize + p[0] as usize) * 3;
        a.data[i..i + 3] != b.data[i..i + 3]
    }

    /// Whether point `p` lies inside polygon `poly` (even-odd rule).
    fn in_polygon(poly: &[[f32; 2]], p: [f32; 2]) -> bool {
        let mut inside = false;
        let mut j = poly.len() - 1;
        for i in 0..poly.len() {
            let (a, b) = (poly[i], poly[j]);
            if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0] {
                inside = !inside;
            }
            j = i;
        }
        inside
    }

    #[test]
    fn the_painted_region_lies_where_the_landmarks_say_for_every_wear() {
        let src = photo();
        let [le, re, nose, ml, mr] = FACE;
        let below_mouth = [100.0, 160.0 + 0.4 * 70.0];
        for seed in 0..24u64 {
            for wear in [Wear::Correct, Wear::BelowNose, Wear::ChinOnly] {
                let mut img = src.clone();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let p = paint_wear_in_place(&mut img, &FACE, wear, &mut rng).expect("a frontal face paints");
                assert_eq!(p.wear, wear);
                assert_eq!(p.state, if wear == Wear::Correct { Mask::Wear } else { Mask::Incorrect });
                let ctx = format!("seed {seed}, {wear:?}, {:?}", p.style);
                // The eyes are never covered.
                assert!(!changed(&src, &img, le) && !changed(&src, &img, re), "{ctx}: an eye was painted");
                assert_eq!(changed(&src, &img, nose), wear == Wear::Correct, "{ctx}: nose tip");
                for m in [ml, mr] {
                    assert_eq!(changed(&src, &img, m), wear != Wear::ChinOnly, "{ctx}: mouth corner {m:?}");
                    assert_eq!(in_polygon(&p.outline, m), wear != Wear::ChinOnly, "{ctx}: outline vs mouth");
                }
                assert!(changed(&src, &img, below_mouth) && in_polygon(&p.outline, below_mouth), "{ctx}: chin");
                let (mut inside, mut outside) = (0, 0);
                for y in 0..img.height {
                    for x in 0..img.width {
                        let q = [x as f32 + 0.5, y as f32 + 0.5];
                        if changed(&src, &img, q) {
                            if in_polygon(&p.outline, q) { inside += 1 } else { outside += 1 }
                        }
                    }
                }
                // Outside the outline: only the ear loops and a soft edge at most a pixel wide.
                let perimeter: f32 = p.outline.windows(2).map(|w| ((w[1][0] - w[0][0]).powi(2) + (w[1][1] - w[0][1]).powi(2)).sqrt()).sum();
                assert!(inside > 1500, "{ctx}: {inside} pixels painted");
                assert!((outside as f32) <= p.loop_pixels as f32 + perimeter + 8.0, "{ctx}: {outside} outside the outline, {} loop pixels, perimeter {perimeter}", p.loop_pixels);
                assert!(p.pixels + p.loop_pixels >= inside + outside, "{ctx}");
            }
        }
    }

    #[test]
    fn the_mask_follows_a_rotated_head() {
        // The same face rolled by 30 degrees about its eye centre.
        let (c, s) = (30f32.to_radians().cos(), 30f32.to_radians().sin());
        let rot = |p: [f32; 2]| {
            let (x, y) = (p[0] - 100.0, p[1] - 90.0);
            [100.0 + c * x - s * y, 90.0 + s * x + c * y]
        };
        let face = FACE.map(rot);
        let src = photo();
        let mut img = src.clone();
        let p = paint_wear_in_place(&mut img, &face, Wear::Correct, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert!(changed(&src, &img, face[2]) && changed(&src, &img, face[3]) && changed(&src, &img, face[4]));
        assert!(!changed(&src, &img, face[0]) && !changed(&src, &img, face[1]));
        assert!(in_polygon(&p.outline, rot([100.0, 190.0])));
    }

    #[test]
    fn a_seed_paints_the_same_mask_and_another_seed_another() {
        let src = photo();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            paint_mask(&src, &FACE, &mut rng, &SynthOptions::default()).unwrap()
        };
        let (a, pa) = run(5);
        let (b, pb) = run(5);
        assert!(a == b && pa.wear == pb.wear && pa.style == pb.style);
        assert!((0..20).any(|s| run(s).0 != a));
        // Both wears are drawn.
        let states: std::collections::BTreeSet<Mask> = (0..40).map(|s| run(s).1.state).collect();
        assert_eq!(states.len(), 2);
    }

    #[test]
    fn landmarks_of_no_face_paint_nothing() {
        let mut img = photo();
        let before = img.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let squashed = [[70.0, 90.0], [72.0, 90.0], [71.0, 100.0], [70.0, 110.0], [72.0, 110.0]];
        let upside_down = [[70.0, 160.0], [130.0, 160.0], [100.0, 128.0], [76.0, 90.0], [124.0, 90.0]];
        let outside = FACE.map(|p| [p[0] + 1000.0, p[1]]);
        for lm in [squashed, upside_down, outside, [[f32::NAN; 2]; 5]] {
            assert!(paint_wear_in_place(&mut img, &lm, Wear::Correct, &mut rng).is_none(), "{lm:?}");
        }
        assert!(img == before);
    }
}
