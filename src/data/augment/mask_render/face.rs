//! Where a mask goes on a face, from the detector's box and five landmarks.
//!
//! MaskTheFace anchors its templates to six points of dlib's 68 landmarks: the middle of the
//! nose bridge, the jaw contour at the height of the nose tip (both sides) and of the lower lip
//! (both sides), and the bottom of the chin. MTCNN gives only the eyes, the nose tip and the
//! mouth corners, so those points are derived in the face frame they span: `s` across (pixels
//! along the eye line, 0 between the eyes) and `t` down (0 at the eyes, 1 at the mouth):
//! - the nose bridge: on the line from between the eyes to the nose tip, 30-55% of the way;
//! - the chin: 0.72 eye-to-mouth distances below the mouth (mouth to chin is about that share of
//!   eyes to mouth in adult faces), pulled 40% towards the box's bottom edge when that lies
//!   where a chin can be (the box follows the face's own length);
//! - the face's half-width: twice the eye-to-nose distance along the eye line on each side (the
//!   cheeks reach about one eye distance out from the nose; a turned head shrinks the far side as
//!   it shrinks the far eye's distance to the nose), narrowing below the mouth to the jaw and
//!   chin, and never past the box's side (the box ends where the turned-away cheek does);
//! - the yaw: the nose tip's offset from between the eyes over half the eye distance is about
//!   `tan(yaw)` (the tip stands about half an eye distance in front of the eyes).
//!
//! The placement's anchors sit on those points at the template's own proportions, so a template
//! whose anchors are pinned there puts its top on the bridge and its bottom under the chin when
//! worn, and lower (below the nose, below the lip, under the chin) when worn wrongly.
use super::template::Template;
use super::warp::Anchors;
use super::{DetectedFace, RenderError, WearStyle};
use rand::Rng;
use serde::Serialize;

/// The way a face is turned, in the image's terms (the side the nose points to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Facing {
    Left,
    Frontal,
    Right,
}

/// Beyond this yaw a face counts as turned (MaskTheFace switches templates at 13°), and the
/// strap on the far side is hidden behind the head.
pub const TURNED_DEGREES: f32 = 13.0;

/// The smallest eye distance and eye-to-mouth distance a mask is painted on, pixels.
const MIN_FACE_PIXELS: f32 = 6.0;

/// Mouth to chin, in eye-to-mouth distances.
const CHIN_BELOW_MOUTH: f32 = 0.72;

fn sub(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

fn dot(a: [f32; 2], b: [f32; 2]) -> f32 {
    a[0] * b[0] + a[1] * b[1]
}

/// The face frame of one detected face.
#[derive(Clone, Copy, Debug)]
pub struct FaceFrame {
    origin: [f32; 2],
    /// Unit vector along the eye line, towards the image-right eye.
    u: [f32; 2],
    /// Unit vector perpendicular to it, towards the mouth.
    v: [f32; 2],
    /// Eye-to-mouth distance along `v`, pixels.
    d: f32,
    /// Eye distance, pixels.
    iod: f32,
    /// The nose tip's `s` (pixels) and `t`.
    nose: [f32; 2],
    mouth_s: f32,
    /// Eye-to-nose distances along `u`, on the image's left and right.
    left: f32,
    right: f32,
    bbox: [f32; 4],
    landmarks: [[f32; 2]; 5],
}

/// Where each of a template's anchors goes on the face, and where its straps go.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub wear: WearStyle,
    pub anchors: Anchors,
    /// Ear loops' ends: `[side][upper, lower]`, side 0 the image's left.
    pub ear_loops: [[[f32; 2]; 2]; 2],
    /// Head straps' ends (over and under the ears, towards the back of the head).
    pub head_straps: [[[f32; 2]; 2]; 2],
    /// The side whose straps the head hides (0 left, 1 right), on a turned face.
    pub hidden_side: Option<usize>,
}

/// The heights, between a mask's top centre and bottom centre, of its upper and lower side
/// anchors and its inner anchor: the template's own proportions, which the face placement keeps.
pub fn anchor_heights(template: &Template) -> [f32; 3] {
    let a = &template.anchors;
    let (top, bottom) = (a[0][1], a[3][1]);
    let span = (bottom - top).max(1e-3);
    let share = |y: f32| (y - top) / span;
    [share((a[1][1] + a[5][1]) / 2.0), share((a[2][1] + a[4][1]) / 2.0), share(a[6][1])]
}

/// The top and bottom of a mask along the face's centre line, and how wide it is drawn.
#[derive(Clone, Copy, Debug)]
pub struct WearLine {
    pub wear: WearStyle,
    /// `t` of the top and bottom centre.
    pub top: f32,
    pub bottom: f32,
    /// Width factor on the face's half-width.
    pub width: f32,
}

impl FaceFrame {
    /// The frame of `face` in a `width` x `height` image; an error for landmarks that describe
    /// no face (not finite, eyes or eyes-to-mouth under 6 px, the mouth not below the eyes, the
    /// nose not between them), lie outside the image, or a box that is not around them.
    pub fn new(face: &DetectedFace, width: u32, height: u32) -> Result<FaceFrame, RenderError> {
        let lm = face.landmarks;
        if lm.iter().flatten().any(|v| !v.is_finite()) {
            return Err(RenderError::NoFace("a landmark is not a finite number".into()));
        }
        const NAMES: [&str; 5] = ["left eye", "right eye", "nose", "mouth left", "mouth right"];
        for (p, name) in lm.iter().zip(NAMES) {
            if p[0] < 0.0 || p[1] < 0.0 || p[0] > width as f32 || p[1] > height as f32 {
                return Err(RenderError::LandmarkOutside { name, at: *p, width, height });
            }
        }
        let [le, re, nose, ml, mr] = lm;
        let eyes = sub(re, le);
        let iod = dot(eyes, eyes).sqrt();
        if iod < MIN_FACE_PIXELS {
            return Err(RenderError::NoFace(format!("the eyes are {iod:.1} px apart (at least {MIN_FACE_PIXELS} needed)")));
        }
        let u = [eyes[0] / iod, eyes[1] / iod];
        let v = [-u[1], u[0]];
        let origin = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
        let mouth = [(ml[0] + mr[0]) / 2.0, (ml[1] + mr[1]) / 2.0];
        let d = dot(sub(mouth, origin), v);
        if d < MIN_FACE_PIXELS {
            return Err(RenderError::NoFace(format!("the mouth is {d:.1} px below the eyes (at least {MIN_FACE_PIXELS} needed)")));
        }
        let ns = dot(sub(nose, origin), u);
        let nt = dot(sub(nose, origin), v) / d;
        let (left, right) = (ns + iod / 2.0, iod / 2.0 - ns);
        if left < 0.1 * iod || right < 0.1 * iod || !(0.15..0.9).contains(&nt) {
            return Err(RenderError::NoFace("the nose tip is not between the eyes and the mouth".into()));
        }
        let b = face.bbox;
        let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
        let grown = |p: [f32; 2]| p[0] >= b[0] - 0.25 * bw && p[0] <= b[2] + 0.25 * bw && p[1] >= b[1] - 0.25 * bh && p[1] <= b[3] + 0.25 * bh;
        if b.iter().any(|v| !v.is_finite()) || bw < 2.0 || bh < 2.0 || !grown(origin) || !grown(nose) || !grown(mouth) {
            return Err(RenderError::BadBox(b));
        }
        Ok(FaceFrame { origin, u, v, d, iod, nose: [ns, nt], mouth_s: dot(sub(mouth, origin), u), left, right, bbox: b, landmarks: lm })
    }

    /// Pixel position of frame point `(s, t)`.
    pub fn point(&self, s: f32, t: f32) -> [f32; 2] {
        let td = t * self.d;
        [self.origin[0] + s * self.u[0] + td * self.v[0], self.origin[1] + s * self.u[1] + td * self.v[1]]
    }

    /// Frame point `(s, t)` of a pixel position.
    pub fn coords(&self, p: [f32; 2]) -> (f32, f32) {
        let r = sub(p, self.origin);
        (dot(r, self.u), dot(r, self.v) / self.d)
    }

    /// Eye-to-mouth distance, pixels.
    pub fn eye_mouth(&self) -> f32 {
        self.d
    }

    pub fn landmarks(&self) -> &[[f32; 2]; 5] {
        &self.landmarks
    }

    /// The face's centre line at height `t`: through the nose tip above it, the mouth's centre
    /// from the mouth down, straight between.
    pub fn centre(&self, t: f32) -> f32 {
        let [ns, nt] = self.nose;
        let k = ((t - nt) / (1.0 - nt)).clamp(0.0, 1.0);
        ns + (self.mouth_s - ns) * k
    }

    /// Degrees; positive when the face is turned towards the image's right.
    pub fn yaw_degrees(&self) -> f32 {
        (self.nose[0] / (self.iod / 2.0)).atan().to_degrees()
    }

    pub fn facing(&self) -> Facing {
        match self.yaw_degrees() {
            y if y > TURNED_DEGREES => Facing::Right,
            y if y < -TURNED_DEGREES => Facing::Left,
            _ => Facing::Frontal,
        }
    }

    /// Where the ray from `p` along `dir` leaves the box, pixels; None from outside the box.
    fn distance_to_box_edge(&self, p: [f32; 2], dir: [f32; 2]) -> Option<f32> {
        let b = self.bbox;
        if p[0] < b[0] || p[0] > b[2] || p[1] < b[1] || p[1] > b[3] {
            return None;
        }
        let along = |x: f32, d: f32, lo: f32, hi: f32| {
            if d > 1e-6 {
                (hi - x) / d
            } else if d < -1e-6 {
                (lo - x) / d
            } else {
                f32::INFINITY
            }
        };
        Some(along(p[0], dir[0], b[0], b[2]).min(along(p[1], dir[1], b[1], b[3])))
    }

    /// `t` of the bottom of the chin.
    pub fn chin(&self) -> f32 {
        let own = 1.0 + CHIN_BELOW_MOUTH;
        let mouth = self.point(self.mouth_s, 1.0);
        match self.distance_to_box_edge(mouth, self.v).map(|px| 1.0 + px / self.d) {
            Some(boxed) if (1.35..2.2).contains(&boxed) => 0.6 * own + 0.4 * boxed,
            _ => own,
        }
    }

    /// The face's half-width at height `t` on `side` (-1 the image's left, 1 its right), pixels.
    pub fn half_width(&self, side: f32, t: f32) -> f32 {
        let eye_to_nose = if side < 0.0 { self.left } else { self.right };
        // Cheeks down to the mouth, then narrowing to the jaw and chin.
        let profile = (1.0 - 0.5 * (t - 1.0).max(0.0)).max(0.62);
        let own = 2.0 * eye_to_nose * profile;
        let from = self.point(self.centre(t), t);
        let dir = if side < 0.0 { [-self.u[0], -self.u[1]] } else { self.u };
        match self.distance_to_box_edge(from, dir) {
            Some(edge) if edge > 0.3 * self.iod => own.min(1.05 * edge),
            _ => own,
        }
    }

    /// Where a mask worn as `wear` sits along the centre line, with the random play of how
    /// people wear it. Incorrect wears keep a gap of at least 3 px (or a tenth of the nose to
    /// mouth distance) below the nose tip.
    pub fn wear_line<R: Rng + ?Sized>(&self, wear: WearStyle, rng: &mut R) -> WearLine {
        let nt = self.nose[1];
        let chin = self.chin();
        let min_gap = (3.0 / self.d).max(0.1 * (1.0 - nt));
        let (top, bottom) = match wear {
            WearStyle::Worn => (nt * rng.gen_range(0.3..0.55), chin + rng.gen_range(-0.04..0.06)),
            WearStyle::NoseOut => (nt + ((1.0 - nt) * rng.gen_range(0.15..0.3)).max(min_gap), chin + rng.gen_range(0.02..0.12)),
            WearStyle::MouthAndNoseOut => (1.0 + rng.gen_range(0.2..0.32f32).max(3.0 / self.d), chin + rng.gen_range(0.15..0.3)),
            WearStyle::OnChin => (chin - rng.gen_range(0.05..0.15), chin + rng.gen_range(0.5..0.7)),
        };
        WearLine { wear, top, bottom, width: rng.gen_range(0.93..1.05) }
    }

    /// The anchors for a template with anchor heights `heights` (see [`anchor_heights`]) worn
    /// along `line`, and the straps' ends.
    pub fn placement(&self, line: &WearLine, heights: [f32; 3]) -> Placement {
        let (top, bottom) = (line.top, line.bottom);
        let at = |share: f32| top + share * (bottom - top);
        let side_point = |side: f32, t: f32| self.point(self.centre(t) + side * line.width * self.half_width(side, t), t);
        let (upper, lower, inner) = (at(heights[0]), at(heights[1]), at(heights[2]));
        let anchors = [
            self.point(self.centre(top), top),
            side_point(1.0, upper),
            side_point(1.0, lower),
            self.point(self.centre(bottom), bottom),
            side_point(-1.0, lower),
            side_point(-1.0, upper),
            self.point(self.centre(inner), inner),
        ];
        // The ears: at the face's edge, from about the eyes' height to below the nose.
        let edge = |side: f32, scale: f32, t: f32| self.point(self.centre(0.3) + side * scale * self.half_width(side, 0.3), t);
        let ear_loops = [-1.0f32, 1.0].map(|side| [edge(side, 1.02, 0.05), edge(side, 1.0, 0.6)]);
        let head_straps = [-1.0f32, 1.0].map(|side| [edge(side, 1.12, -0.55), edge(side, 1.08, 1.5)]);
        let hidden_side = match self.facing() {
            Facing::Right => Some(1),
            Facing::Left => Some(0),
            Facing::Frontal => None,
        };
        Placement { wear: line.wear, anchors, ear_loops, head_straps, hidden_side }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    pub const FACE: DetectedFace = DetectedFace {
        bbox: [45.0, 50.0, 155.0, 205.0],
        landmarks: [[70.0, 90.0], [130.0, 90.0], [100.0, 128.0], [76.0, 160.0], [124.0, 160.0]],
    };

    #[test]
    fn the_frame_reads_a_frontal_face() {
        let f = FaceFrame::new(&FACE, 200, 240).unwrap();
        assert_eq!(f.facing(), Facing::Frontal);
        assert!(f.yaw_degrees().abs() < 0.01);
        assert_eq!(f.eye_mouth(), 70.0);
        // The chin between 0.72 eye-mouth below the mouth (210) and the box's bottom (205).
        let chin = f.point(0.0, f.chin());
        assert!((chin[1] - (0.6 * 210.4 + 0.4 * 205.0)).abs() < 0.5, "{chin:?}");
        // Half-widths: one eye distance at the cheeks, less than the box allows (55 + 5%).
        assert!((f.half_width(-1.0, 0.5) - 57.75).abs() < 0.01 && (f.half_width(1.0, 0.5) - 57.75).abs() < 0.01);
        let p = f.point(12.0, 0.5);
        let (s, t) = f.coords(p);
        assert!((s - 12.0).abs() < 1e-4 && (t - 0.5).abs() < 1e-4);
    }

    #[test]
    fn a_turned_face_is_read_as_turned() {
        let mut face = FACE;
        // The nose tip 20 px towards the image's right: tan(yaw) = 20 / 30.
        face.landmarks[2][0] += 20.0;
        let f = FaceFrame::new(&face, 200, 240).unwrap();
        assert!((f.yaw_degrees() - (20.0f32 / 30.0).atan().to_degrees()).abs() < 0.01);
        assert_eq!(f.facing(), Facing::Right);
        assert!(f.half_width(1.0, 0.6) < 0.5 * f.half_width(-1.0, 0.6));
        face.landmarks[2][0] -= 40.0;
        assert_eq!(FaceFrame::new(&face, 200, 240).unwrap().facing(), Facing::Left);
    }

    #[test]
    fn incorrect_wears_leave_the_nose_and_worn_ones_reach_the_bridge() {
        let f = FaceFrame::new(&FACE, 200, 240).unwrap();
        let nt = 38.0 / 70.0;
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let worn = f.wear_line(WearStyle::Worn, &mut rng);
            assert!(worn.top < 0.6 * nt && worn.top > 0.25 * nt && worn.bottom > 1.6);
            let nose_out = f.wear_line(WearStyle::NoseOut, &mut rng);
            assert!(nose_out.top >= nt + 3.0 / 70.0 && nose_out.top < 1.0);
            let below_lip = f.wear_line(WearStyle::MouthAndNoseOut, &mut rng);
            assert!(below_lip.top > 1.15 && below_lip.bottom > f.chin());
            let chin = f.wear_line(WearStyle::OnChin, &mut rng);
            assert!(chin.top > below_lip.top - 0.2 && chin.bottom > f.chin() + 0.4);
        }
    }

    #[test]
    fn landmarks_of_no_face_are_refused_with_the_reason() {
        let bad = |mut face: DetectedFace, change: fn(&mut DetectedFace)| {
            change(&mut face);
            FaceFrame::new(&face, 200, 240).unwrap_err()
        };
        assert!(matches!(bad(FACE, |f| f.landmarks = [[100.0, 100.0]; 5]), RenderError::NoFace(_)));
        assert!(matches!(bad(FACE, |f| f.landmarks[3][1] = f32::NAN), RenderError::NoFace(_)));
        assert!(matches!(bad(FACE, |f| f.landmarks[4][0] = 250.0), RenderError::LandmarkOutside { name: "mouth right", .. }));
        assert!(matches!(bad(FACE, |f| f.landmarks[0][1] = -1.0), RenderError::LandmarkOutside { name: "left eye", .. }));
        // Upside down: the mouth above the eyes.
        assert!(matches!(bad(FACE, |f| f.landmarks = [[70.0, 160.0], [130.0, 160.0], [100.0, 128.0], [76.0, 90.0], [124.0, 90.0]]), RenderError::NoFace(_)));
        assert!(matches!(bad(FACE, |f| f.bbox = [0.0, 0.0, 30.0, 30.0]), RenderError::BadBox(_)));
        assert!(matches!(bad(FACE, |f| f.bbox[2] = f32::INFINITY), RenderError::BadBox(_)));
    }
}
