//! Mask templates drawn by our own code: RGBA images of a mask as the camera sees it, with the
//! anchor points the warp pins to the face.
//!
//! A mask is a curved surface: across the face it wraps a vertical cylinder (the angle `θ` runs
//! over ±`θmax`), down the face it tilts from the cheeks to under the chin. A template is that
//! surface seen from a yaw angle `φ` (the head's turn): a point at angle `θ` is drawn at
//! `x = R sin(θ + φ)`, so the side turned away is foreshortened and darker, and its pleats,
//! seams and prints crowd together as they do on a turned head. Everything on the surface
//! (outline, pleats, seams, prints, the fabric's grain) is a function of the surface coordinates
//! `σ = θ / θmax` in [-1, 1] (image left to right) and `η` (0 at the top edge's centre, 1 at the
//! bottom edge's centre), so the same design drawn for another yaw or size is the same mask.
//!
//! Kinds: surgical (pleats, bound edges, a nose wire), cloth (a centre seam, woven grain, plain
//! or printed: stripes, dots, checks, blotches), KN95 (two flat panels folded at a welded centre
//! seam, a pointed top, an embossed border), N95 (a moulded cup, a nose clip, head straps, an
//! optional valve). A design is a kind plus colours and a print; [`MaskDesign::random`] draws one.
use super::warp::{Anchors, RgbaImage};
use rand::Rng;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum MaskKind {
    Surgical,
    Cloth,
    Kn95,
    N95,
}

impl MaskKind {
    pub const ALL: [MaskKind; 4] = [MaskKind::Surgical, MaskKind::Cloth, MaskKind::Kn95, MaskKind::N95];

    pub fn name(self) -> &'static str {
        match self {
            MaskKind::Surgical => "surgical",
            MaskKind::Cloth => "cloth",
            MaskKind::Kn95 => "KN95",
            MaskKind::N95 => "N95",
        }
    }

    /// Half the angle the mask wraps around the face.
    fn theta_max(self) -> f32 {
        match self {
            MaskKind::Surgical => 62f32.to_radians(),
            MaskKind::Cloth => 60f32.to_radians(),
            MaskKind::Kn95 => 58f32.to_radians(),
            MaskKind::N95 => 55f32.to_radians(),
        }
    }

    /// `η` of the upper edge at `σ`.
    fn top(self, s: f32) -> f32 {
        let a = s.abs();
        match self {
            MaskKind::Surgical => 0.03 + 0.05 * s * s,
            // Rising to a point over the nose.
            MaskKind::Cloth => 0.16 * a.powf(1.2),
            MaskKind::Kn95 => 0.2 * a,
            MaskKind::N95 => 0.28 * (1.0 - (1.0 - 0.98 * s * s).sqrt()),
        }
    }

    /// `η` of the lower edge at `σ`.
    fn bottom(self, s: f32) -> f32 {
        let a = s.abs();
        match self {
            MaskKind::Surgical => 1.0 - 0.18 * s * s,
            MaskKind::Cloth => 1.0 - 0.3 * s * s,
            MaskKind::Kn95 => 1.0 - 0.3 * a.powf(1.1),
            MaskKind::N95 => 1.0 - 0.3 * (1.0 - (1.0 - 0.98 * s * s).sqrt()),
        }
    }

    /// Height over width of the mask laid flat (surface units).
    fn aspect(self) -> f32 {
        match self {
            MaskKind::Surgical => 0.62,
            MaskKind::Cloth => 0.66,
            MaskKind::Kn95 => 0.7,
            MaskKind::N95 => 0.72,
        }
    }
}

/// What is printed on a cloth mask.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Print {
    Plain,
    /// Bands of the second colour: angle (radians), period and duty (surface units).
    Stripes { angle: f32, period: f32, duty: f32 },
    Dots { period: f32, radius: f32 },
    Checks { period: f32 },
    /// Irregular patches of the second colour (floral or camouflage prints seen small).
    Blotches { scale: f32, share: f32 },
}

/// A mask to draw: its kind, colours and print, and the seed of its fabric's grain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaskDesign {
    pub kind: MaskKind,
    pub colour: [u8; 3],
    /// The print's colour (cloth), or the valve's (N95).
    pub second: [u8; 3],
    pub print: Print,
    /// Ear loops or head straps.
    pub strap_colour: [u8; 3],
    /// An exhalation valve (N95), on the wearer's left or right (`σ` of its centre).
    pub valve: Option<f32>,
    pub grain_seed: u64,
}

const SURGICAL: [[u8; 3]; 6] = [[150, 198, 228], [120, 175, 220], [236, 239, 242], [160, 212, 196], [236, 188, 204], [40, 40, 44]];
const CLOTH: [[u8; 3]; 12] = [
    [35, 35, 40],
    [28, 52, 110],
    [118, 122, 128],
    [232, 190, 200],
    [84, 132, 100],
    [170, 46, 52],
    [205, 200, 186],
    [70, 48, 92],
    [240, 240, 236],
    [196, 150, 60],
    [60, 110, 160],
    [110, 70, 50],
];
const KN95: [[u8; 3]; 5] = [[244, 244, 242], [240, 240, 240], [200, 202, 205], [45, 45, 48], [236, 200, 210]];
const N95: [[u8; 3]; 3] = [[240, 240, 236], [232, 232, 225], [215, 218, 222]];
const STRAPS: [[u8; 3]; 4] = [[230, 200, 60], [60, 110, 190], [236, 236, 236], [150, 150, 150]];

fn pick<R: Rng + ?Sized>(rng: &mut R, colours: &[[u8; 3]]) -> [u8; 3] {
    let c = colours[rng.gen_range(0..colours.len())];
    let j: i32 = rng.gen_range(-10..=10);
    c.map(|v| (v as i32 + j).clamp(0, 255) as u8)
}

fn luma(c: [u8; 3]) -> f32 {
    0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32
}

impl MaskDesign {
    /// A design of `kind` with colours, print and grain drawn from `rng`.
    pub fn random_of<R: Rng + ?Sized>(kind: MaskKind, rng: &mut R) -> MaskDesign {
        let (colour, palette_second): ([u8; 3], &[[u8; 3]]) = match kind {
            MaskKind::Surgical => (pick(rng, &SURGICAL), &CLOTH),
            MaskKind::Cloth => (pick(rng, &CLOTH), &CLOTH),
            MaskKind::Kn95 => (pick(rng, &KN95), &KN95),
            MaskKind::N95 => (pick(rng, &N95), &[[70, 70, 76], [200, 120, 40], [90, 130, 180]]),
        };
        let mut second = pick(rng, palette_second);
        // A print needs contrast to be seen.
        if (luma(second) - luma(colour)).abs() < 50.0 {
            second = if luma(colour) > 128.0 { [30, 30, 36] } else { [238, 236, 230] };
        }
        let print = match (kind, rng.gen_range(0..10)) {
            (MaskKind::Cloth, 0..=3) | (MaskKind::Surgical | MaskKind::Kn95 | MaskKind::N95, _) => Print::Plain,
            (MaskKind::Cloth, 4..=5) => Print::Stripes { angle: [0.0f32, 0.5, -0.5, std::f32::consts::FRAC_PI_2][rng.gen_range(0..4)], period: rng.gen_range(0.08..0.22), duty: rng.gen_range(0.3..0.6) },
            (MaskKind::Cloth, 6..=7) => {
                let period = rng.gen_range(0.09..0.2);
                Print::Dots { period, radius: period * rng.gen_range(0.15..0.3) }
            }
            (MaskKind::Cloth, 8) => Print::Checks { period: rng.gen_range(0.08..0.18) },
            (MaskKind::Cloth, _) => Print::Blotches { scale: rng.gen_range(0.08..0.2), share: rng.gen_range(0.3..0.5) },
        };
        let strap_colour = match kind {
            MaskKind::N95 => pick(rng, &STRAPS),
            MaskKind::Cloth if rng.gen_bool(0.5) => colour,
            MaskKind::Cloth => [32, 32, 34],
            _ if luma(colour) < 90.0 => colour,
            _ => [238, 238, 236],
        };
        let valve = (kind == MaskKind::N95 && rng.gen_bool(0.4)).then(|| if rng.gen_bool(0.5) { -0.42 } else { 0.42 });
        MaskDesign { kind, colour, second, print, strap_colour, valve, grain_seed: rng.gen() }
    }

    /// A design of a kind drawn as people wear them (surgical most, N95 least).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> MaskDesign {
        let kind = match rng.gen_range(0..20) {
            0..=7 => MaskKind::Surgical,
            8..=13 => MaskKind::Cloth,
            14..=17 => MaskKind::Kn95,
            _ => MaskKind::N95,
        };
        MaskDesign::random_of(kind, rng)
    }

    /// The template of this design seen from `yaw_degrees` (positive: the face turned towards
    /// the image's right; clamped to ±28°), `width` pixels across its visible surface.
    pub fn template(&self, yaw_degrees: f32, width: u32) -> Template {
        draw(self, yaw_degrees, width)
    }
}

/// Where a strap leaves the mask: a point on the template and the side of the face it goes to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StrapEnd {
    /// In template pixels.
    pub at: [f32; 2],
    /// -1: the image's left, 1: its right.
    pub side: i8,
    /// The upper (true) or lower strap of that side.
    pub upper: bool,
}

/// A drawn mask: RGBA pixels and the points the warp pins to the face.
#[derive(Clone, Debug)]
pub struct Template {
    pub kind: MaskKind,
    /// The yaw it was drawn for, degrees.
    pub yaw_degrees: f32,
    pub image: RgbaImage,
    /// Top centre, upper right side, lower right side, bottom centre, lower left side, upper
    /// left side, and the inner point on the centre line (see [`super::warp::Anchors`]).
    pub anchors: Anchors,
    /// Ear loops (two per side) or head straps (N95).
    pub straps: Vec<StrapEnd>,
    pub strap_colour: [u8; 3],
    /// Head straps (around the head) rather than ear loops.
    pub head_straps: bool,
}

/// Where on the side edge (from its top corner, as a share of its length) the upper and lower
/// side anchors sit, and where on the centre line the inner one sits. The face side of the warp
/// places its anchors by the same shares ([`super::face::FaceFrame::placement`]).
pub const SIDE_UPPER: f32 = 0.22;
pub const SIDE_LOWER: f32 = 0.72;
pub const INNER: f32 = 0.42;

/// A smooth value noise in [0, 1] with unit cells, from a seed.
fn value_noise(x: f32, y: f32, seed: u64) -> f32 {
    fn hash(ix: i64, iy: i64, seed: u64) -> f32 {
        let mut h = seed ^ (ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (iy as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        (h >> 40) as f32 / (1u64 << 24) as f32
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (ix, iy) = (x0 as i64, y0 as i64);
    let a = hash(ix, iy, seed) + (hash(ix + 1, iy, seed) - hash(ix, iy, seed)) * sx;
    let b = hash(ix, iy + 1, seed) + (hash(ix + 1, iy + 1, seed) - hash(ix, iy + 1, seed)) * sx;
    a + (b - a) * sy
}

fn bump(z: f32) -> f32 {
    (-z * z).exp()
}

/// The template's frame: surface coordinates to pixels and back.
struct Projection {
    kind: MaskKind,
    theta_max: f32,
    phi: f32,
    /// Cylinder radius, pixels.
    radius: f32,
    /// Pixels per unit of `η`.
    height: f32,
    /// `sin` of the leftmost visible angle.
    x_min: f32,
    margin: f32,
}

impl Projection {
    fn x(&self, s: f32) -> f32 {
        self.margin + self.radius * ((self.theta_max * s + self.phi).sin() - self.x_min)
    }

    fn y(&self, eta: f32) -> f32 {
        self.margin + eta * self.height
    }

    fn pixel(&self, s: f32, eta: f32) -> [f32; 2] {
        [self.x(s), self.y(eta)]
    }

    /// `(σ, η)` of a pixel position, or None beyond the cylinder's silhouette.
    fn surface(&self, x: f32, y: f32) -> Option<(f32, f32)> {
        let sin = (x - self.margin) / self.radius + self.x_min;
        if !(-1.0..=1.0).contains(&sin) {
            return None;
        }
        Some(((sin.asin() - self.phi) / self.theta_max, (y - self.margin) / self.height))
    }

    /// Pixels per unit of `σ` at `σ`.
    fn dx_ds(&self, s: f32) -> f32 {
        (self.radius * self.theta_max * (self.theta_max * s + self.phi).cos()).max(1e-3)
    }

    /// A point `share` of the way down the side edge at `σ = side`.
    fn side_point(&self, side: f32, share: f32) -> [f32; 2] {
        let (t, b) = (self.kind.top(side), self.kind.bottom(side));
        self.pixel(side, t + share * (b - t))
    }
}

fn draw(design: &MaskDesign, yaw_degrees: f32, width: u32) -> Template {
    let kind = design.kind;
    let theta_max = kind.theta_max();
    let phi = yaw_degrees.clamp(-28.0, 28.0).to_radians();
    let (x_min, x_max) = ((phi - theta_max).sin(), (phi + theta_max).sin());
    let margin = 2.0;
    let width = width.clamp(16, 1024) as f32;
    let radius = width / (x_max - x_min);
    // The flat mask's height against its width along the surface (2 θmax R).
    let height = kind.aspect() * 2.0 * theta_max * radius;
    let proj = Projection { kind, theta_max, phi, radius, height, x_min, margin };
    let (w, h) = ((width + 2.0 * margin).ceil() as u32, (height + 2.0 * margin).ceil() as u32);
    let mut image = RgbaImage::transparent(w, h);
    // Surface units: `u` across (radians of the wrap), `v` down, both in the same physical scale.
    let v_scale = kind.aspect() * 2.0 * theta_max;
    for py in 0..h {
        for px in 0..w {
            let (x, y) = (px as f32 + 0.5, py as f32 + 0.5);
            let Some((s, eta)) = proj.surface(x, y) else { continue };
            let (top, bottom) = (kind.top(s.clamp(-1.0, 1.0)), kind.bottom(s.clamp(-1.0, 1.0)));
            // Distance inside the outline, pixels; the edge is anti-aliased over one pixel.
            let side = (1.0 - s.abs()) * proj.dx_ds(s.clamp(-1.0, 1.0));
            let inside = side.min((eta - top) * height).min((bottom - eta) * height);
            let alpha = (inside + 0.5).clamp(0.0, 1.0);
            if alpha <= 0.0 {
                continue;
            }
            let (u, v) = (s * theta_max, eta * v_scale);
            let (colour, light) = surface_colour(design, &proj, s, eta, u, v, top, inside);
            let i = ((py * w + px) * 4) as usize;
            for (out, c) in image.data[i..i + 3].iter_mut().zip(colour) {
                *out = (c * light).round().clamp(0.0, 255.0) as u8;
            }
            image.data[i + 3] = (alpha * 255.0).round() as u8;
        }
    }
    let anchors = [
        proj.pixel(0.0, kind.top(0.0)),
        proj.side_point(1.0, SIDE_UPPER),
        proj.side_point(1.0, SIDE_LOWER),
        proj.pixel(0.0, kind.bottom(0.0)),
        proj.side_point(-1.0, SIDE_LOWER),
        proj.side_point(-1.0, SIDE_UPPER),
        proj.pixel(0.0, kind.top(0.0) + INNER * (kind.bottom(0.0) - kind.top(0.0))),
    ];
    let head_straps = kind == MaskKind::N95;
    let (upper, lower) = if head_straps { (0.15, 0.85) } else { (0.04, 0.96) };
    let straps = [-1i8, 1]
        .iter()
        .flat_map(|&side| [(side, true, upper), (side, false, lower)])
        .map(|(side, is_upper, share)| StrapEnd { at: proj.side_point(side as f32, share), side, upper: is_upper })
        .collect();
    Template { kind, yaw_degrees: phi.to_degrees(), image, anchors, straps, strap_colour: design.strap_colour, head_straps }
}

/// The colour (before light) and the light at a surface point.
#[allow(clippy::too_many_arguments)]
fn surface_colour(design: &MaskDesign, proj: &Projection, s: f32, eta: f32, u: f32, v: f32, top: f32, inside: f32) -> ([f32; 3], f32) {
    let kind = design.kind;
    let seed = design.grain_seed;
    let mut colour = design.colour.map(|c| c as f32);
    // Light from the camera and a little above: the normal turns with the wrap (θ + φ) and tilts
    // down towards the chin; a moulded N95 curves more.
    let horizontal = u + proj.phi;
    let tilt = if kind == MaskKind::N95 { 1.3 } else { 0.8 } * (eta - 0.42);
    let n = [horizontal.sin() * tilt.cos(), tilt.sin(), horizontal.cos() * tilt.cos()];
    let l = [0.0f32, -0.35, 1.0];
    let ln = (l[0] * l[0] + l[1] * l[1] + l[2] * l[2]).sqrt();
    let lambert = ((n[0] * l[0] + n[1] * l[1] + n[2] * l[2]) / ln).max(0.0);
    let mut light = 0.5 + 0.5 * lambert;
    // Soft wrinkles and the fabric's grain.
    light += 0.05 * (value_noise(u * 7.0, v * 7.0, seed) - 0.5);
    let grain = value_noise(u * 90.0, v * 90.0, seed ^ 0x5151);
    let px_per_unit = proj.height / (kind.aspect() * 2.0 * proj.theta_max);
    // How far in from the outline, in surface units.
    let edge = inside / px_per_unit;
    match kind {
        MaskKind::Surgical => {
            light += 0.05 * (grain - 0.5);
            // Three pleats: where each fold overlaps the next, a shadow under it and a highlight
            // above; they gather towards the stitched sides.
            let gather = 1.0 - s * s;
            for (k, centre) in [0.3f32, 0.5, 0.7].into_iter().enumerate() {
                let at_side = 0.32 + 0.1 * k as f32;
                let fold = at_side + (centre - at_side) * gather;
                light -= 0.16 * bump((eta - fold) / 0.018);
                light += 0.07 * bump((eta - fold + 0.04) / 0.03);
            }
            // Bound edges: a denser band with a line of stitches.
            if edge < 0.05 {
                light -= 0.05;
                let along = if s.abs() > 0.9 { v } else { u };
                if (edge - 0.025).abs() < 0.006 && (along * 60.0).fract() < 0.5 {
                    light -= 0.06;
                }
            }
            // The nose wire under the top binding.
            if s.abs() < 0.3 && (eta - top - 0.035).abs() < 0.015 {
                light += 0.06;
            }
        }
        MaskKind::Cloth => {
            // Woven grain.
            light += 0.04 * ((u * 260.0).sin() * (v * 260.0).sin()) + 0.05 * (grain - 0.5);
            if print_on(&design.print, u, v, seed) {
                colour = design.second.map(|c| c as f32);
            }
            // The centre seam from nose to chin, and its stitches.
            light -= 0.28 * bump(u / 0.012);
            if (u.abs() - 0.03).abs() < 0.006 && (v * 50.0).fract() < 0.5 {
                light -= 0.08;
            }
            // Hemmed edges.
            if edge < 0.04 {
                light -= 0.06;
            }
        }
        MaskKind::Kn95 => {
            light += 0.03 * (grain - 0.5);
            // Two flat panels folded at the centre: each faces its own way.
            light += if s < 0.0 { 0.04 } else { -0.04 };
            light -= 0.2 * bump(u / 0.01);
            // The welded border, embossed with a row of dots.
            if edge < 0.045 {
                light -= 0.04;
                let along = if s.abs() > 0.9 { v } else { u };
                if (edge - 0.022).abs() < 0.008 && (along * 45.0).fract() < 0.45 {
                    light -= 0.09;
                }
            }
        }
        MaskKind::N95 => {
            light += 0.04 * (grain - 0.5);
            // The foam-lined rim.
            if edge < 0.05 {
                light -= 0.07;
            }
            // The metal nose clip.
            if s.abs() < 0.25 && eta > top + 0.02 && eta < top + 0.06 {
                colour = [150.0, 152.0, 158.0];
                light += 0.1 * bump((eta - top - 0.035) / 0.012);
            }
            if let Some(valve_s) = design.valve {
                let (du, dv) = (u - valve_s * proj.theta_max, v - 0.58 * kind.aspect() * 2.0 * proj.theta_max);
                let r = (du * du + dv * dv).sqrt();
                if r < 0.16 {
                    colour = design.second.map(|c| c as f32);
                    // A raised ring and slots.
                    light += 0.12 * (1.0 - r / 0.16) - 0.15 * bump((r - 0.14) / 0.012);
                    if r < 0.11 && (dv * 40.0).fract().abs() < 0.25 {
                        light -= 0.12;
                    }
                }
            }
        }
    }
    (colour, light.max(0.05))
}

/// Whether the print's second colour shows at surface point `(u, v)`.
fn print_on(print: &Print, u: f32, v: f32, seed: u64) -> bool {
    match *print {
        Print::Plain => false,
        Print::Stripes { angle, period, duty } => ((u * angle.cos() + v * angle.sin()) / period).rem_euclid(1.0) < duty,
        Print::Dots { period, radius } => {
            // Alternate rows offset by half a period.
            let row = (v / period).floor();
            let shift = if row as i64 % 2 == 0 { 0.0 } else { 0.5 };
            let fx = (u / period + shift).rem_euclid(1.0) - 0.5;
            let fy = (v / period).rem_euclid(1.0) - 0.5;
            (fx * fx + fy * fy).sqrt() * period < radius
        }
        Print::Checks { period } => ((u / period).floor() as i64 + (v / period).floor() as i64) % 2 == 0,
        Print::Blotches { scale, share } => value_noise(u / scale, v / scale, seed ^ 0xB107) + 0.5 * value_noise(2.0 * u / scale, 2.0 * v / scale, seed ^ 0xB108) > 1.5 * (1.0 - share),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn alpha_at(t: &Template, p: [f32; 2]) -> f32 {
        t.image.sample(p[0], p[1]).1
    }

    #[test]
    fn every_kind_draws_an_opaque_mask_around_its_anchors_for_every_yaw() {
        for kind in MaskKind::ALL {
            for yaw in [-40.0f32, -20.0, 0.0, 15.0, 28.0] {
                let design = MaskDesign::random_of(kind, &mut ChaCha8Rng::seed_from_u64(3));
                let t = design.template(yaw, 120);
                assert!(t.image.width >= 120 && t.image.width <= 125, "{kind:?} {yaw}: {}", t.image.width);
                let ctx = format!("{kind:?} at {yaw}°");
                // The inner anchor is deep inside; the side anchors are on the edge (about half
                // covered); the outer corners of the canvas are empty.
                assert!(alpha_at(&t, t.anchors[6]) > 0.99, "{ctx}");
                for &a in &t.anchors[..6] {
                    let al = alpha_at(&t, a);
                    assert!(al > 0.2 && al < 0.9, "{ctx}: alpha {al} at anchor {a:?}");
                }
                assert_eq!(t.image.data[3], 0, "{ctx}");
                // The nose line moves towards the side the face turns to.
                let centre = t.image.width as f32 / 2.0;
                let nose_x = t.anchors[0][0];
                match yaw {
                    y if y > 0.0 => assert!(nose_x > centre + 5.0, "{ctx}: {nose_x}"),
                    y if y < 0.0 => assert!(nose_x < centre - 5.0, "{ctx}: {nose_x}"),
                    _ => assert!((nose_x - centre).abs() < 1.0, "{ctx}: {nose_x}"),
                }
                assert_eq!(t.straps.len(), 4);
            }
        }
    }

    #[test]
    fn a_design_draws_the_same_template_twice_and_designs_vary() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let designs: Vec<MaskDesign> = (0..40).map(|_| MaskDesign::random(&mut rng)).collect();
        assert_eq!(designs[0].template(10.0, 90).image, designs[0].template(10.0, 90).image);
        let kinds: std::collections::HashSet<MaskKind> = designs.iter().map(|d| d.kind).collect();
        assert_eq!(kinds.len(), 4, "40 designs cover every kind");
        let prints = designs.iter().filter(|d| d.print != Print::Plain).count();
        assert!(prints > 0);
        let colours: std::collections::HashSet<[u8; 3]> = designs.iter().map(|d| d.colour).collect();
        assert!(colours.len() > 20);
    }

    #[test]
    fn the_turned_away_side_is_darker() {
        let design = MaskDesign { print: Print::Plain, ..MaskDesign::random_of(MaskKind::Kn95, &mut ChaCha8Rng::seed_from_u64(1)) };
        let t = design.template(25.0, 200);
        let mean_luma = |from: f32, to: f32| {
            let (mut sum, mut n) = (0.0, 0);
            let y = t.anchors[6][1] as u32;
            for x in (from as u32)..(to as u32) {
                let i = ((y * t.image.width + x) * 4) as usize;
                if t.image.data[i + 3] == 255 {
                    sum += luma([t.image.data[i], t.image.data[i + 1], t.image.data[i + 2]]);
                    n += 1;
                }
            }
            sum / n.max(1) as f32
        };
        // Turned to the right: the right side (the far one) is the narrow, dark one.
        let nose = t.anchors[0][0];
        let (near, far) = (mean_luma(t.anchors[5][0] + 3.0, nose - 3.0), mean_luma(nose + 3.0, t.anchors[1][0] - 3.0));
        assert!(far < near - 10.0, "far {far}, near {near}");
        assert!(t.anchors[1][0] - nose < 0.7 * (nose - t.anchors[5][0]));
    }
}
