//! Masks that look like masks: a mask template warped onto a face from the detector's box and
//! five landmarks, lit like the face, worn correctly or as people wear them wrongly, with the
//! label the paint implies.
//!
//! One call: a photo, the face's box and landmarks, a mask design (or a drawn template), a wear
//! style and a seeded random generator in; the painted photo and its mask label out, or an error
//! that says why nothing was painted (the caller skips the sample). The same generator state
//! paints the same mask.
//!
//! - [`face`]: the face frame, yaw and the points a mask rests on, derived from MTCNN's landmarks;
//! - [`template`]: procedural RGBA templates (surgical, cloth, KN95, N95; colours, prints; drawn
//!   for the face's yaw) with their anchor points;
//! - [`warp`]: the piecewise-affine warp that pins the template's anchors on the face's;
//! - [`light`]: the photo's light level, colour cast, fall-off across the face and grain;
//! - [`composite`]: the warped, relit mask blended over the photo, and its straps;
//! - [`strip`]: a preview strip of faces times wear styles, as a PNG.
//!
//! The label follows the paint, not the request: after painting, the mask's coverage of the nose
//! tip and the mouth is read back. Nose and mouth covered: `Wear`. The nose tip bare (not a
//! pixel of mask within 1.5 px of it): `Incorrect`. Anything between (half a nose, or the nose
//! covered and the mouth not) fits no label and is an error, as is a mask mostly outside the
//! image (a chin strap below a tight crop shows nothing to call incorrect).
pub mod composite;
pub mod face;
pub mod light;
pub mod strip;
pub mod template;
pub mod warp;

use crate::image::decode::RgbImage;
use crate::labels::Mask;
use face::{anchor_heights, FaceFrame, Facing};
use rand::Rng;
use serde::Serialize;
pub use template::{MaskDesign, MaskKind, Print, Template};
use warp::{Anchors, FanWarp};

/// The detector's answer for one face, in pixels of the photo: its box `[x1, y1, x2, y2]` and
/// MTCNN's five landmarks (the eye, then the mouth corner, on the image's left first).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectedFace {
    pub bbox: [f32; 4],
    pub landmarks: [[f32; 2]; 5],
}

/// How the mask is worn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum WearStyle {
    /// Over the nose and mouth, top on the bridge of the nose, bottom under the chin.
    Worn,
    /// Pulled below the nose tip: the mouth covered, the nose out.
    NoseOut,
    /// Pulled below the lower lip: mouth and nose out, the chin covered.
    MouthAndNoseOut,
    /// Pulled under the chin onto the neck.
    OnChin,
}

impl WearStyle {
    pub const ALL: [WearStyle; 4] = [WearStyle::Worn, WearStyle::NoseOut, WearStyle::MouthAndNoseOut, WearStyle::OnChin];

    pub fn name(self) -> &'static str {
        match self {
            WearStyle::Worn => "worn",
            WearStyle::NoseOut => "nose out",
            WearStyle::MouthAndNoseOut => "mouth and nose out",
            WearStyle::OnChin => "on the chin",
        }
    }

    /// The wear's name on the command line and in file names: `worn`, `nose_out`,
    /// `mouth_nose_out`, `on_chin`.
    pub fn slug(self) -> &'static str {
        match self {
            WearStyle::Worn => "worn",
            WearStyle::NoseOut => "nose_out",
            WearStyle::MouthAndNoseOut => "mouth_nose_out",
            WearStyle::OnChin => "on_chin",
        }
    }

    /// The label this wear is meant to give (the paint decides; see [`Rendered::label`]).
    pub fn intended(self) -> Mask {
        match self {
            WearStyle::Worn => Mask::Wear,
            _ => Mask::Incorrect,
        }
    }
}

impl std::str::FromStr for WearStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<WearStyle, String> {
        WearStyle::ALL.into_iter().find(|w| w.slug() == s.trim()).ok_or_else(|| {
            format!("unknown wear `{s}`: one of {}", WearStyle::ALL.map(WearStyle::slug).join(", "))
        })
    }
}

/// Why a mask was not painted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("the landmarks describe no face: {0}")]
    NoFace(String),
    #[error("the {name} landmark at ({x:.1}, {y:.1}) lies outside the {width}x{height} image", x = at[0], y = at[1])]
    LandmarkOutside { name: &'static str, at: [f32; 2], width: u32, height: u32 },
    #[error("the face box {0:?} does not hold the landmarks")]
    BadBox([f32; 4]),
    #[error("the template's anchors, or the face's, are folded or flat: no warp joins them")]
    NoWarp,
    #[error("only {percent:.0}% of the mask falls inside the image")]
    MaskOutside { percent: f32 },
    #[error("the paint covers {nose:.0}% of the nose tip and {mouth:.0}% of the mouth: no label fits it", nose = nose * 100.0, mouth = mouth * 100.0)]
    Ambiguous { nose: f32, mouth: f32 },
}

/// A painted photo.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub image: RgbImage,
    /// The mask label the paint implies.
    pub label: Mask,
    pub wear: WearStyle,
    pub kind: MaskKind,
    pub facing: Facing,
    pub yaw_degrees: f32,
    /// Where the template's anchors went (see [`warp::Anchors`]).
    pub face_anchors: Anchors,
    /// Share of the mask inside the image.
    pub visible: f32,
    /// Pixels of the photo at least half covered by the mask body.
    pub pixels: usize,
}

/// The least share of a mask that must fall inside the image.
const MIN_VISIBLE: f32 = 0.5;

/// Paints `design`, drawn for the face's yaw at the size it will have, worn as `wear`.
pub fn render<R: Rng + ?Sized>(image: &RgbImage, face: &DetectedFace, design: &MaskDesign, wear: WearStyle, rng: &mut R) -> Result<Rendered, RenderError> {
    let frame = FaceFrame::new(face, image.width, image.height)?;
    let line = frame.wear_line(wear, rng);
    // Drawn a quarter larger than it lands (the side anchors' distance), so that sampling it
    // neither blurs nor skips its details.
    let t = line.top + 0.3 * (line.bottom - line.top);
    let across = line.width * (frame.half_width(-1.0, t) + frame.half_width(1.0, t));
    let template = design.template(frame.yaw_degrees(), (1.25 * across).round().clamp(16.0, 1024.0) as u32);
    paint(image, &frame, &line, &template, rng)
}

/// Paints a given template worn as `wear` (its anchors pinned to the face's).
pub fn render_template<R: Rng + ?Sized>(image: &RgbImage, face: &DetectedFace, template: &Template, wear: WearStyle, rng: &mut R) -> Result<Rendered, RenderError> {
    let frame = FaceFrame::new(face, image.width, image.height)?;
    let line = frame.wear_line(wear, rng);
    paint(image, &frame, &line, template, rng)
}

fn paint<R: Rng + ?Sized>(image: &RgbImage, frame: &FaceFrame, line: &face::WearLine, template: &Template, rng: &mut R) -> Result<Rendered, RenderError> {
    let placement = frame.placement(line, anchor_heights(template));
    let warp = FanWarp::new(&template.anchors, &placement.anchors).ok_or(RenderError::NoWarp)?;
    let coverage_at = |p: [f32; 2]| {
        let q = warp.unmap(p);
        template.image.sample(q[0], q[1]).1
    };
    // The label, read from where the mask lands, before painting anything.
    let [_, _, nose, ml, mr] = *frame.landmarks();
    let near_nose = [[0.0, 0.0], [1.5, 0.0], [-1.5, 0.0], [0.0, 1.5], [0.0, -1.5]].map(|o| coverage_at([nose[0] + o[0], nose[1] + o[1]]));
    let mouth_centre = [(ml[0] + mr[0]) / 2.0, (ml[1] + mr[1]) / 2.0];
    let mouth = [ml, mr, mouth_centre].map(coverage_at).into_iter().fold(1.0f32, f32::min);
    let nose_most = near_nose.iter().copied().fold(0.0f32, f32::max);
    let nose_least = near_nose.iter().copied().fold(1.0f32, f32::min);
    let label = if nose_least >= 0.95 && mouth >= 0.95 {
        Mask::Wear
    } else if nose_most < 1.0 / 512.0 {
        Mask::Incorrect
    } else {
        return Err(RenderError::Ambiguous { nose: near_nose[0], mouth });
    };
    let light = light::PhotoLight::measure(image, frame);
    let mut out = image.clone();
    let coverage = composite::paint_body(&mut out, &warp, template, frame, &light, rng);
    let visible = if coverage.total > 0.0 { coverage.visible / coverage.total } else { 0.0 };
    if visible < MIN_VISIBLE || coverage.pixels == 0 {
        return Err(RenderError::MaskOutside { percent: 100.0 * visible });
    }
    composite::paint_straps(&mut out, &warp, template, frame, &placement, &light);
    Ok(Rendered {
        image: out,
        label,
        wear: line.wear,
        kind: template.kind,
        facing: frame.facing(),
        yaw_degrees: frame.yaw_degrees(),
        face_anchors: placement.anchors,
        visible,
        pixels: coverage.pixels,
    })
}

#[cfg(test)]
mod tests;
