//! Painting a warped template into the photo: every pixel the mask may cover is mapped back into
//! the template, sampled bilinearly, relit by the photo's light, given the photo's grain and
//! alpha-blended over the skin; then the ear loops or head straps, from the mask's corners to
//! the ears (drawn on the face, since they stay at the ears wherever the mask is pulled).
use super::face::{FaceFrame, Placement};
use super::light::PhotoLight;
use super::template::Template;
use super::warp::FanWarp;
use crate::image::decode::RgbImage;
use rand::Rng;

/// How much of the mask landed where.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Coverage {
    /// Alpha summed over every pixel the mask covers, inside the image or not.
    pub total: f32,
    /// Alpha summed over the pixels inside the image.
    pub visible: f32,
    /// Pixels inside the image at least half covered.
    pub pixels: usize,
}

/// Where on the face, across, a pixel lies: -1 at the left edge, 1 at the right.
fn across(frame: &FaceFrame, p: [f32; 2]) -> f32 {
    let (s, t) = frame.coords(p);
    let c = frame.centre(t);
    if s < c {
        (s - c) / frame.half_width(-1.0, t).max(1.0)
    } else {
        (s - c) / frame.half_width(1.0, t).max(1.0)
    }
}

/// Noise of standard deviation about `sigma` (a sum of two uniforms).
fn grain<R: Rng + ?Sized>(rng: &mut R, sigma: f32) -> f32 {
    if sigma <= 0.0 {
        return 0.0;
    }
    (rng.gen::<f32>() + rng.gen::<f32>() - 1.0) * sigma * 2.449
}

/// Paints the mask body of `template` through `warp` into `out`.
pub fn paint_body<R: Rng + ?Sized>(out: &mut RgbImage, warp: &FanWarp, template: &Template, frame: &FaceFrame, light: &PhotoLight, rng: &mut R) -> Coverage {
    let (tw, th) = (template.image.width as f32, template.image.height as f32);
    // The template's border, mapped: the piecewise-affine image of a rectangle is bounded by the
    // images of its edges.
    let mut lo = [f32::INFINITY; 2];
    let mut hi = [f32::NEG_INFINITY; 2];
    let steps = (tw.max(th).ceil() as usize).max(4);
    for k in 0..=steps {
        let f = k as f32 / steps as f32;
        for p in [[f * tw, 0.0], [f * tw, th], [0.0, f * th], [tw, f * th]] {
            let q = warp.map(p);
            for c in 0..2 {
                lo[c] = lo[c].min(q[c]);
                hi[c] = hi[c].max(q[c]);
            }
        }
    }
    let mut cov = Coverage::default();
    let (w, h) = (out.width as i64, out.height as i64);
    let (x0, x1) = (lo[0].floor() as i64 - 1, hi[0].ceil() as i64 + 1);
    let (y0, y1) = (lo[1].floor() as i64 - 1, hi[1].ceil() as i64 + 1);
    for y in y0..y1 {
        for x in x0..x1 {
            let p = [x as f32 + 0.5, y as f32 + 0.5];
            let q = warp.unmap(p);
            let (rgb, alpha) = template.image.sample(q[0], q[1]);
            if alpha < 1.0 / 512.0 {
                continue;
            }
            cov.total += alpha;
            if x < 0 || y < 0 || x >= w || y >= h {
                continue;
            }
            cov.visible += alpha;
            if alpha >= 0.5 {
                cov.pixels += 1;
            }
            let gain = light.gain(across(frame, p));
            let noise = grain(rng, light.grain);
            let i = ((y * w + x) * 3) as usize;
            for c in 0..3 {
                let paint = (rgb[c] / alpha * gain[c] + noise).clamp(0.0, 255.0);
                let under = out.data[i + c] as f32;
                out.data[i + c] = (under + (paint - under) * alpha).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    cov
}

/// Draws the template's ear loops (or head straps) from the warped mask to the placement's ears,
/// leaving out the side the head hides. Returns the pixels changed.
pub fn paint_straps(out: &mut RgbImage, warp: &FanWarp, template: &Template, frame: &FaceFrame, placement: &Placement, light: &PhotoLight) -> usize {
    let d = frame.eye_mouth();
    let thickness = if template.head_straps { (0.05 * d).max(1.2) } else { (0.028 * d).max(0.9) };
    let mut changed = 0;
    for end in &template.straps {
        let side = usize::from(end.side > 0);
        if placement.hidden_side == Some(side) {
            continue;
        }
        let ends = if template.head_straps { placement.head_straps } else { placement.ear_loops };
        let to = ends[side][usize::from(!end.upper)];
        let from = warp.map(end.at);
        // A slight outward curve, as an elastic pulled round the cheek.
        let mid = [(from[0] + to[0]) / 2.0, (from[1] + to[1]) / 2.0];
        let len = (to[0] - from[0]).hypot(to[1] - from[1]);
        let (s, t) = frame.coords(mid);
        let out_dir = if end.side > 0 { 1.0 } else { -1.0 };
        let control = frame.point(s + out_dir * 0.12 * len, t);
        let curve: Vec<[f32; 2]> = (0..=16)
            .map(|k| {
                let f = k as f32 / 16.0;
                let (a, b, c) = ((1.0 - f) * (1.0 - f), 2.0 * f * (1.0 - f), f * f);
                [a * from[0] + b * control[0] + c * to[0], a * from[1] + b * control[1] + c * to[1]]
            })
            .collect();
        let gain = light.gain(out_dir);
        let colour = [0, 1, 2].map(|c| (template.strap_colour[c] as f32 * gain[c]).clamp(0.0, 255.0));
        changed += draw_polyline(out, &curve, thickness, colour);
    }
    changed
}

/// An anti-aliased polyline `thickness` pixels wide; returns the pixels it changed.
fn draw_polyline(image: &mut RgbImage, points: &[[f32; 2]], thickness: f32, colour: [f32; 3]) -> usize {
    let (w, h) = (image.width as i64, image.height as i64);
    let r = thickness / 2.0 + 1.0;
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for p in points {
        for c in 0..2 {
            lo[c] = lo[c].min(p[c]);
            hi[c] = hi[c].max(p[c]);
        }
    }
    let x0 = ((lo[0] - r).floor() as i64).max(0);
    let x1 = ((hi[0] + r).ceil() as i64).min(w);
    let y0 = ((lo[1] - r).floor() as i64).max(0);
    let y1 = ((hi[1] + r).ceil() as i64).min(h);
    let mut changed = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            let p = [x as f32 + 0.5, y as f32 + 0.5];
            let dist = points.windows(2).map(|s| segment_distance(p, s[0], s[1])).fold(f32::INFINITY, f32::min);
            let alpha = (thickness / 2.0 + 0.5 - dist).clamp(0.0, 1.0);
            if alpha <= 0.0 {
                continue;
            }
            let i = ((y * w + x) * 3) as usize;
            for (under, paint) in image.data[i..i + 3].iter_mut().zip(colour) {
                *under = (*under as f32 + (paint - *under as f32) * alpha).round() as u8;
            }
            changed += 1;
        }
    }
    changed
}

fn segment_distance(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let ab = [b[0] - a[0], b[1] - a[1]];
    let len2 = (ab[0] * ab[0] + ab[1] * ab[1]).max(1e-9);
    let k = (((p[0] - a[0]) * ab[0] + (p[1] - a[1]) * ab[1]) / len2).clamp(0.0, 1.0);
    (p[0] - a[0] - k * ab[0]).hypot(p[1] - a[1] - k * ab[1])
}
