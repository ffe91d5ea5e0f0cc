//! The photo's light on the face, so that a painted mask is lit like the skin around it.
//!
//! Skin brightness mixes the light with the skin's own tone, so the level is taken from the
//! brightest tenth of the face (the lit side of the forehead, nose and cheeks, the eyes' whites),
//! which follows the light more than the tone; a mask in a dim photo comes out dim. The skin of
//! the two cheeks gives the colour cast (its hue against a typical skin hue, applied weakly: skin
//! hues differ between people too) and the light's fall across the face (one cheek brighter than
//! the other). The photo's grain (the noise of its sensor and JPEG) is measured on the cheeks and
//! added to the mask, which would otherwise look pasted on.
use super::face::FaceFrame;
use crate::image::decode::RgbImage;

fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// What a mask painted on the face should look like in this photo's light.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhotoLight {
    /// Brightness against a well-lit photo (1.0).
    pub level: f32,
    /// Per-channel gain of the colour cast (luma-neutral).
    pub cast: [f32; 3],
    /// Brightness of the image's left and right cheek against their mean.
    pub left: f32,
    pub right: f32,
    /// Standard deviation of the photo's grain, in 0..255 units.
    pub grain: f32,
}

impl Default for PhotoLight {
    fn default() -> Self {
        PhotoLight { level: 1.0, cast: [1.0; 3], left: 1.0, right: 1.0, grain: 0.0 }
    }
}

/// The 90th percentile luma of the face region that marks a well-lit photo.
const WELL_LIT: f32 = 215.0;
/// A typical skin colour's channels over its luma.
const SKIN_HUE: [f32; 3] = [1.18, 0.95, 0.8];

impl PhotoLight {
    /// Measures the light on `frame`'s face in `image`. Parts of the face outside the image are
    /// left out; a face with nothing inside gets the default light.
    pub fn measure(image: &RgbImage, frame: &FaceFrame) -> PhotoLight {
        let (w, h) = (image.width as i64, image.height as i64);
        let pixel = |x: i64, y: i64| -> Option<[f32; 3]> {
            if x < 0 || y < 0 || x >= w || y >= h {
                return None;
            }
            let i = ((y * w + x) * 3) as usize;
            Some([image.data[i] as f32, image.data[i + 1] as f32, image.data[i + 2] as f32])
        };
        let at = |s: f32, t: f32| {
            let p = frame.point(s, t);
            (p[0].floor() as i64, p[1].floor() as i64)
        };
        // The face from the brows to below the mouth.
        let mut face_lumas = Vec::new();
        for i in 0..24 {
            for j in 0..24 {
                let t = -0.3 + 1.5 * (i as f32 + 0.5) / 24.0;
                let half = 0.5 * (frame.half_width(-1.0, t) + frame.half_width(1.0, t));
                let s = frame.centre(t) + half * 0.9 * (-1.0 + 2.0 * (j as f32 + 0.5) / 24.0);
                let (x, y) = at(s, t);
                face_lumas.extend(pixel(x, y).map(luma));
            }
        }
        if face_lumas.is_empty() {
            return PhotoLight::default();
        }
        face_lumas.sort_by(f32::total_cmp);
        let p90 = face_lumas[(face_lumas.len() * 9 / 10).min(face_lumas.len() - 1)];
        let level = (p90.max(1.0) / WELL_LIT).powf(0.85).clamp(0.25, 1.15);
        // Both cheeks: between the eyes and the mouth, half-way out to the face's edge.
        let mut cheeks = [([0.0f32; 3], 0usize); 2];
        let mut residuals = Vec::new();
        for (k, side) in [-1.0f32, 1.0].into_iter().enumerate() {
            for i in 0..6 {
                for j in 0..6 {
                    let t = 0.4 + 0.45 * i as f32 / 5.0;
                    let s = frame.centre(t) + side * frame.half_width(side, t) * (0.35 + 0.35 * j as f32 / 5.0);
                    let (x, y) = at(s, t);
                    let Some(p) = pixel(x, y) else { continue };
                    for (sum, v) in cheeks[k].0.iter_mut().zip(p) {
                        *sum += v;
                    }
                    cheeks[k].1 += 1;
                    // The grain: what a pixel has that its four neighbours do not.
                    let around: Option<Vec<f32>> = [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)].iter().map(|&(a, b)| pixel(a, b).map(luma)).collect();
                    if let Some(n) = around {
                        residuals.push((luma(p) - n.iter().sum::<f32>() / 4.0).abs());
                    }
                }
            }
        }
        let mean = |k: usize| (cheeks[k].1 > 0).then(|| cheeks[k].0.map(|c| c / cheeks[k].1 as f32));
        let (left, right) = match (mean(0), mean(1)) {
            (Some(l), Some(r)) => (l, r),
            (Some(l), None) => (l, l),
            (None, Some(r)) => (r, r),
            (None, None) => return PhotoLight { level, ..PhotoLight::default() },
        };
        let skin = [0, 1, 2].map(|c| (left[c] + right[c]) / 2.0);
        let skin_luma = luma(skin).max(1.0);
        let mut cast = [0, 1, 2].map(|c| (skin[c] / skin_luma / SKIN_HUE[c]).max(0.01).powf(0.35).clamp(0.9, 1.1));
        let cast_luma = luma(cast);
        cast = cast.map(|c| c / cast_luma);
        let (ll, rl) = (luma(left).max(1.0), luma(right).max(1.0));
        let mid = (ll + rl) / 2.0;
        let soften = |x: f32| 1.0 + 0.7 * ((x / mid).clamp(0.75, 1.25) - 1.0);
        residuals.sort_by(f32::total_cmp);
        // A residual of pure noise has 1.25 times its variance; the median of |N(0, s)| is 0.674 s.
        let grain = residuals.get(residuals.len() / 2).map_or(0.0, |m| m / 0.674 / 1.25f32.sqrt()).min(8.0);
        PhotoLight { level, cast, left: soften(ll), right: soften(rl), grain }
    }

    /// The gain on a mask's colour at `across` (-1 the face's left edge, 1 its right).
    pub fn gain(&self, across: f32) -> [f32; 3] {
        let k = (across.clamp(-1.0, 1.0) + 1.0) / 2.0;
        let side = self.left + (self.right - self.left) * k;
        self.cast.map(|c| c * side * self.level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::mask_render::DetectedFace;

    fn photo(colour: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
        let (w, h) = (200u32, 240u32);
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&colour(x, y));
            }
        }
        RgbImage { width: w, height: h, data }
    }

    const FACE: DetectedFace = DetectedFace {
        bbox: [45.0, 50.0, 155.0, 205.0],
        landmarks: [[70.0, 90.0], [130.0, 90.0], [100.0, 128.0], [76.0, 160.0], [124.0, 160.0]],
    };

    #[test]
    fn a_dim_bluish_photo_lit_from_the_left_is_read_as_such() {
        let frame = FaceFrame::new(&FACE, 200, 240).unwrap();
        let bright = PhotoLight::measure(&photo(|_, _| [215, 170, 140]), &frame);
        let dim = PhotoLight::measure(&photo(|_, _| [80, 70, 75]), &frame);
        assert!(bright.level > 0.8 && dim.level < 0.5, "{bright:?} {dim:?}");
        // Blue light on skin: the cast gains blue, loses red.
        assert!(dim.cast[2] > 1.0 && dim.cast[0] < 1.0, "{dim:?}");
        assert!(bright.grain < 0.01);
        let side_lit = PhotoLight::measure(&photo(|x, _| [(240 - x / 2) as u8, (200 - x / 2) as u8, (170 - x / 2) as u8]), &frame);
        assert!(side_lit.left > 1.05 && side_lit.right < 0.95, "{side_lit:?}");
        assert!(side_lit.gain(-1.0)[0] > side_lit.gain(1.0)[0]);
        // Noise: alternating +-10 reads as grain.
        let noisy = PhotoLight::measure(&photo(|x, y| if (x + y) % 2 == 0 { [170, 140, 120] } else { [190, 160, 140] }), &frame);
        assert!(noisy.grain > 5.0, "{noisy:?}");
    }
}
