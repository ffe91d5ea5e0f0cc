//! `augment.synth_mask = p`: which training samples get a synthetic mask, and painting it.
//!
//! A sample of an unmasked photo (labelled `NotWear` after the relabel list) whose own face was
//! detected (a box and five landmarks in faces.csv) gets a mask with probability `p` in each
//! epoch: worn (label `Wear`) or worn as people wear masks wrongly (`Incorrect`), made as
//! `augment.synth_mask_style` says: rendered by [`super::mask_render`] (templates warped onto the
//! landmarks: worn, nose out, mouth and nose out, on the chin) or painted by [`super::mask_paint`]
//! (flat shapes: worn, below the nose, chin only). The label is the one the paint implies.
//!
//! `augment.synth_mask_on_masked = q`: a sample of a correctly masked photo (labelled `Wear`)
//! whose face was detected gets a rendered mask worn over its own with probability `q`, its label
//! unchanged: masked samples show real-looking masks too, while unmasked photos stay unmasked.
//!
//! The painting happens on the CPU decoding threads, on the model-sized input (after the face or
//! centre crop and the resize; the box and landmarks are carried into it), so the cache of
//! decoded images stays unpainted and a sample can be painted differently each epoch. The random
//! generator of a sample is seeded from (seed, epoch, sample index): a run paints the same masks
//! on every machine, and a resumed run paints what an uninterrupted one would.
use super::mask_paint::{paint_mask_in_place, SynthOptions};
use super::mask_render::{render, DetectedFace, MaskDesign, WearStyle};
use super::SynthMaskStyle;
use crate::data::face_crop::SampleFaces;
use crate::image::decode::{Preprocess, RgbImage};
use crate::labels::{Class, Mask};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How often each kind of training sample gets a synthetic mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SynthRates {
    /// `augment.synth_mask`: samples of unmasked photos (worn or incorrectly worn masks).
    pub unmasked: f64,
    /// `augment.synth_mask_on_masked`: samples of correctly masked photos (a worn mask over
    /// theirs; rendered style only).
    pub masked: f64,
}

/// What to paint on which sample.
#[derive(Clone, Debug)]
pub struct SynthPlan {
    pub rates: SynthRates,
    pub seed: u64,
    pub style: SynthMaskStyle,
    /// Per sample: its face (box and landmarks) in pixels of the model input; None: never painted.
    pub faces: Vec<Option<DetectedFace>>,
    /// Per sample: whether its photo shows a correctly worn mask already (painted at
    /// `rates.masked`, only with a worn mask).
    pub masked: Vec<bool>,
    /// The wears the painted style draws.
    pub options: SynthOptions,
}

/// A mask painted on a sample: the label it implies and how it is worn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthMask {
    pub label: Mask,
    /// `worn`, `nose out`, `below the nose`, `on the chin`, ...
    pub wear: &'static str,
}

impl SynthMask {
    /// `worn`, or `incorrect (nose out)` and the like.
    pub fn describe(&self) -> String {
        match self.label {
            Mask::Wear => "worn".to_string(),
            _ => format!("incorrect ({})", self.wear),
        }
    }
}

/// Shares of the rendered wears: half worn, half worn wrongly (the rarest class gets the most
/// help), the nose out most often among those, as people wear masks.
const RENDERED_WEARS: [(WearStyle, f64); 4] =
    [(WearStyle::Worn, 0.5), (WearStyle::NoseOut, 0.2), (WearStyle::MouthAndNoseOut, 0.15), (WearStyle::OnChin, 0.15)];

/// Draws tried per sample: a draw the renderer refuses (a mask mostly outside a tight crop, a
/// paint that fits no label) is drawn again, so that refusals do not skew the wears.
const RENDER_TRIES: usize = 3;

fn draw_rendered_wear<R: Rng + ?Sized>(rng: &mut R) -> WearStyle {
    let mut x: f64 = rng.gen();
    for (wear, share) in RENDERED_WEARS {
        if x < share {
            return wear;
        }
        x -= share;
    }
    WearStyle::Worn
}

/// A point of a `width` x `height` photo carried into the model input that `region` (or, without
/// one, `prep`'s centre crop) resized to `prep`'s size makes of it.
fn input_mapping(region: Option<[f32; 4]>, width: u32, height: u32, prep: &Preprocess) -> impl Fn([f32; 2]) -> [f32; 2] {
    let (x0, y0, w, h) = match region {
        Some(r) => (r[0], r[1], r[2] - r[0], r[3] - r[1]),
        None => {
            let (l, t, w, h) = prep.crop.window(width, height);
            (l as f32, t as f32, w as f32, h as f32)
        }
    };
    let (sx, sy) = (prep.width as f32 / w.max(1.0), prep.height as f32 / h.max(1.0));
    move |[x, y]: [f32; 2]| [(x - x0) * sx, (y - y0) * sy]
}

/// Landmarks of a `width` x `height` photo carried into the model input (see [`input_face`]).
pub fn input_landmarks(landmarks: &[[f32; 2]; 5], region: Option<[f32; 4]>, width: u32, height: u32, prep: &Preprocess) -> [[f32; 2]; 5] {
    landmarks.map(input_mapping(region, width, height, prep))
}

/// A box of a `width` x `height` photo carried into the model input that `region` (or `prep`'s
/// centre crop) resized to `prep`'s size makes of it.
pub fn input_box(bbox: &[f32; 4], region: Option<[f32; 4]>, width: u32, height: u32, prep: &Preprocess) -> [f32; 4] {
    let map = input_mapping(region, width, height, prep);
    let ([x1, y1], [x2, y2]) = (map([bbox[0], bbox[1]]), map([bbox[2], bbox[3]]));
    [x1, y1, x2, y2]
}

/// A face of a `width` x `height` photo carried into the model input that `region` (or `prep`'s
/// centre crop) resized to `prep`'s size makes of it.
pub fn input_face(face: &DetectedFace, region: Option<[f32; 4]>, width: u32, height: u32, prep: &Preprocess) -> DetectedFace {
    DetectedFace { bbox: input_box(&face.bbox, region, width, height, prep), landmarks: face.landmarks.map(input_mapping(region, width, height, prep)) }
}

/// The class of a sample painted with a mask of label `mask`: its mask state becomes the painted one.
pub fn painted_class(class: usize, mask: Mask) -> usize {
    let mut c = Class::decode(class).expect("class index in range");
    c.mask = mask;
    c.encode()
}

impl SynthPlan {
    /// The plan for samples of `classes` with `faces`: samples with their own landmarks whose
    /// kind has a rate above 0 are eligible (unmasked ones; correctly masked ones for rendered
    /// masks). `use_regions`: the loader crops to `faces.regions` (face_crop = mtcnn).
    pub fn new(rates: SynthRates, seed: u64, style: SynthMaskStyle, classes: &[usize], faces: &SampleFaces, use_regions: bool, prep: &Preprocess) -> SynthPlan {
        let masked: Vec<bool> = classes.iter().map(|&c| Class::decode(c).is_some_and(|c| c.mask == Mask::Wear)).collect();
        let faces = classes
            .iter()
            .enumerate()
            .map(|(i, &class)| {
                let eligible = match Class::decode(class)?.mask {
                    Mask::NotWear => rates.unmasked > 0.0,
                    Mask::Wear => rates.masked > 0.0 && style == SynthMaskStyle::Rendered,
                    Mask::Incorrect => false,
                };
                let (b, (w, h)) = (faces.boxes[i]?, faces.sizes[i]?);
                let landmarks = b.landmarks.filter(|_| eligible)?;
                let region = if use_regions { faces.regions[i] } else { None };
                Some(input_face(&DetectedFace { bbox: b.bbox, landmarks }, region, w, h, prep))
            })
            .collect();
        SynthPlan { rates, seed, style, faces, masked, options: SynthOptions::default() }
    }

    /// Samples that may be painted.
    pub fn eligible(&self) -> usize {
        self.faces.iter().filter(|l| l.is_some()).count()
    }

    /// Samples of correctly masked photos that may get a mask over theirs.
    pub fn eligible_masked(&self) -> usize {
        self.faces.iter().zip(&self.masked).filter(|(f, &m)| f.is_some() && m).count()
    }

    /// The probability that sample `index` is painted in an epoch (if eligible).
    fn rate(&self, index: usize) -> f64 {
        let rate = if self.masked.get(index).copied().unwrap_or(false) { self.rates.masked } else { self.rates.unmasked };
        rate.clamp(0.0, 1.0)
    }

    fn rng(&self, epoch: usize, index: usize) -> ChaCha8Rng {
        super::sample_rng(self.seed, epoch, index, b"synthmsk")
    }

    /// Whether sample `index` is drawn for a mask in `epoch` (the first draw of its generator;
    /// whether the paint then succeeds is [`SynthPlan::paint`]'s).
    pub fn drawn(&self, epoch: usize, index: usize) -> bool {
        self.faces.get(index).is_some_and(|f| f.is_some()) && self.rng(epoch, index).gen_bool(self.rate(index))
    }

    /// Whether sample `index` is painted in `epoch`, and then paints `pixels` (the model input of
    /// `prep`'s size, row-major RGB): the painted pixels and mask, or None (nothing changed).
    pub fn paint(&self, epoch: usize, index: usize, pixels: &[u8], prep: &Preprocess) -> Option<(Vec<u8>, SynthMask)> {
        let face = self.faces.get(index).copied().flatten()?;
        let mut rng = self.rng(epoch, index);
        if !rng.gen_bool(self.rate(index)) {
            return None;
        }
        let mut image = RgbImage { width: prep.width, height: prep.height, data: pixels.to_vec() };
        match self.style {
            SynthMaskStyle::Painted => {
                let painted = paint_mask_in_place(&mut image, &face.landmarks, &mut rng, &self.options)?;
                let wear = match painted.wear {
                    super::mask_paint::Wear::Correct => "worn",
                    super::mask_paint::Wear::BelowNose => "below the nose",
                    super::mask_paint::Wear::ChinOnly => "chin only",
                };
                Some((image.data, SynthMask { label: painted.state, wear }))
            }
            SynthMaskStyle::Rendered => {
                // Over a mask already worn, only a worn mask whose paint reads as worn: the
                // photo's label stays true.
                let over_mask = self.masked[index];
                (0..RENDER_TRIES).find_map(|_| {
                    let wear = if over_mask { WearStyle::Worn } else { draw_rendered_wear(&mut rng) };
                    let design = MaskDesign::random(&mut rng);
                    let r = render(&image, &face, &design, wear, &mut rng).ok().filter(|r| !over_mask || r.label == Mask::Wear)?;
                    Some((r.image.data, SynthMask { label: r.label, wear: r.wear.name() }))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::face_assign::{FaceBox, FaceSource};
    use crate::image::decode::Crop;
    use crate::labels::{AgeBand, Gender};

    fn class(mask: Mask) -> usize {
        Class { mask, gender: Gender::Female, age: AgeBand::Middle }.encode()
    }

    #[test]
    fn landmarks_follow_the_crop_and_resize() {
        let prep = Preprocess { crop: Crop::Fraction(0.5), width: 50, height: 50 };
        // A region of 100x100 at (10, 20) resized to 50: halved, shifted.
        assert_eq!(input_landmarks(&[[60.0, 70.0]; 5], Some([10.0, 20.0, 110.0, 120.0]), 200, 200, &prep)[0], [25.0, 25.0]);
        // The centre crop of a 200x100 photo is 50x50 at (75, 25): unchanged scale.
        assert_eq!(input_landmarks(&[[100.0, 50.0]; 5], None, 200, 100, &prep)[0], [25.0, 25.0]);
        // The box goes with them.
        let face = input_face(&DetectedFace { bbox: [30.0, 40.0, 90.0, 100.0], landmarks: [[60.0, 70.0]; 5] }, Some([10.0, 20.0, 110.0, 120.0]), 200, 200, &prep);
        assert_eq!(face.bbox, [10.0, 10.0, 40.0, 40.0]);
    }

    /// 300 samples of a 64x64 skin-coloured input (every third masked already, sample 1 without
    /// a face) painted at p = 0.5 in `style`.
    fn check_style(style: SynthMaskStyle) {
        let prep = Preprocess { crop: Crop::None, width: 64, height: 64 };
        let lm = [[22.0, 26.0], [42.0, 26.0], [32.0, 36.0], [24.0, 45.0], [40.0, 45.0]];
        let n = 300;
        // Every third sample masked already (never painted), one without a face.
        let classes: Vec<usize> = (0..n).map(|i| class(if i % 3 == 0 { Mask::Wear } else { Mask::NotWear })).collect();
        let face = FaceBox { bbox: [12.0, 12.0, 52.0, 56.0], source: FaceSource::Detected, landmarks: Some(lm) };
        let mut faces = SampleFaces { boxes: vec![Some(face); n], regions: vec![None; n], sizes: vec![Some((64, 64)); n], ..Default::default() };
        faces.boxes[1] = None;
        let plan = SynthPlan::new(SynthRates { unmasked: 0.5, masked: 0.0 }, 7, style, &classes, &faces, false, &prep);
        assert_eq!(plan.eligible(), (0..n).filter(|i| i % 3 != 0 && *i != 1).count());
        let skin: Vec<u8> = (0..64 * 64).flat_map(|_| [200u8, 160, 140]).collect();
        let (mut painted, mut worn, mut incorrect) = (0, 0, 0);
        let mut wears = std::collections::BTreeSet::new();
        for i in 0..n {
            let a = plan.paint(3, i, &skin, &prep);
            let b = plan.paint(3, i, &skin, &prep);
            assert_eq!(a, b, "{style:?} sample {i}: the same seed, epoch and index paint the same");
            if i % 3 == 0 || i == 1 {
                assert!(a.is_none());
                continue;
            }
            assert!(a.is_none() || plan.drawn(3, i), "{style:?} sample {i}: painted without being drawn");
            let Some((pixels, mask)) = a else { continue };
            painted += 1;
            wears.insert(mask.wear);
            // The mask covers the mouth; a correctly worn one covers the nose tip too, an incorrect one leaves it.
            let changed = |[x, y]: [f32; 2]| {
                let at = ((y as usize) * 64 + x as usize) * 3;
                pixels[at..at + 3] != skin[at..at + 3]
            };
            let mouth = [(lm[3][0] + lm[4][0]) / 2.0, (lm[3][1] + lm[4][1]) / 2.0 + 2.0];
            let new_class = painted_class(classes[i], mask.label);
            let c = Class::decode(new_class).unwrap();
            assert_eq!((c.gender, c.age), (Gender::Female, AgeBand::Middle));
            match mask.label {
                Mask::Wear => {
                    worn += 1;
                    assert_eq!(c.mask, Mask::Wear);
                    assert!(changed(mouth) && changed(lm[2]), "{style:?} sample {i}: a worn mask covers mouth and nose");
                }
                Mask::Incorrect => {
                    incorrect += 1;
                    assert_eq!(c.mask, Mask::Incorrect);
                    assert!(!changed(lm[2]), "{style:?} sample {i}: an incorrect mask leaves the nose tip");
                }
                Mask::NotWear => panic!("{style:?} sample {i}: a painted mask labelled not worn"),
            }
        }
        let eligible = plan.eligible() as f64;
        assert!((painted as f64 - 0.5 * eligible).abs() < 0.15 * eligible, "{style:?}: {painted} of {eligible} painted at p = 0.5");
        assert!(worn > 10 && incorrect > 10, "{style:?}: {worn} worn, {incorrect} incorrect");
        assert!(wears.len() >= 3, "{style:?}: the wears drawn: {wears:?}");
        // Another epoch draws anew.
        let other: Vec<bool> = (0..n).map(|i| plan.paint(4, i, &skin, &prep).is_some()).collect();
        let this: Vec<bool> = (0..n).map(|i| plan.paint(3, i, &skin, &prep).is_some()).collect();
        assert_ne!(other, this);
    }

    #[test]
    fn painting_is_deterministic_and_the_label_follows_the_painted_mask() {
        check_style(SynthMaskStyle::Painted);
    }

    #[test]
    fn rendering_is_deterministic_and_the_label_follows_the_rendered_mask() {
        check_style(SynthMaskStyle::Rendered);
    }

    #[test]
    fn masked_samples_get_a_worn_mask_over_theirs_only_at_their_own_rate() {
        let prep = Preprocess { crop: Crop::None, width: 64, height: 64 };
        let lm = [[22.0, 26.0], [42.0, 26.0], [32.0, 36.0], [24.0, 45.0], [40.0, 45.0]];
        let n = 300;
        // Worn, incorrect and unmasked photos in turn.
        let masks = [Mask::Wear, Mask::Incorrect, Mask::NotWear];
        let classes: Vec<usize> = (0..n).map(|i| class(masks[i % 3])).collect();
        let face = FaceBox { bbox: [12.0, 12.0, 52.0, 56.0], source: FaceSource::Detected, landmarks: Some(lm) };
        let faces = SampleFaces { boxes: vec![Some(face); n], regions: vec![None; n], sizes: vec![Some((64, 64)); n], ..Default::default() };
        let skin: Vec<u8> = (0..64 * 64).flat_map(|_| [200u8, 160, 140]).collect();
        let painted = |plan: &SynthPlan, i: usize| plan.paint(2, i, &skin, &prep);

        // Masked samples only: unmasked and incorrect ones are never painted.
        let plan = SynthPlan::new(SynthRates { unmasked: 0.0, masked: 0.6 }, 11, SynthMaskStyle::Rendered, &classes, &faces, false, &prep);
        assert_eq!((plan.eligible(), plan.eligible_masked()), (n / 3, n / 3));
        let mut over = 0;
        for i in 0..n {
            let a = painted(&plan, i);
            assert_eq!(a, painted(&plan, i), "sample {i}: deterministic");
            if i % 3 != 0 {
                assert!(a.is_none(), "sample {i} ({:?}) painted", masks[i % 3]);
                continue;
            }
            let Some((pixels, mask)) = a else { continue };
            over += 1;
            assert_eq!((mask.label, mask.wear), (Mask::Wear, "worn"), "sample {i}: only a worn mask goes over a worn one");
            assert_eq!(painted_class(classes[i], mask.label), classes[i], "sample {i}: the label stays");
            assert_ne!(pixels, skin);
        }
        let expected = 0.6 * (n / 3) as f64;
        assert!((over as f64 - expected).abs() < 0.2 * expected, "{over} of {} masked samples painted at 0.6", n / 3);

        // Both rates: unmasked samples are drawn at theirs, as without masked ones.
        let both = SynthPlan::new(SynthRates { unmasked: 0.5, masked: 0.6 }, 11, SynthMaskStyle::Rendered, &classes, &faces, false, &prep);
        let unmasked_only = SynthPlan::new(SynthRates { unmasked: 0.5, masked: 0.0 }, 11, SynthMaskStyle::Rendered, &classes, &faces, false, &prep);
        assert_eq!((both.eligible(), both.eligible_masked(), unmasked_only.eligible_masked()), (2 * n / 3, n / 3, 0));
        for i in (2..n).step_by(3) {
            assert_eq!(painted(&both, i), painted(&unmasked_only, i), "unmasked sample {i}");
        }
        for i in (0..n).step_by(3) {
            assert_eq!(painted(&both, i), painted(&plan, i), "masked sample {i}");
        }

        // Painted (flat) masks never go over masks.
        let flat = SynthPlan::new(SynthRates { unmasked: 0.5, masked: 0.6 }, 11, SynthMaskStyle::Painted, &classes, &faces, false, &prep);
        assert_eq!(flat.eligible_masked(), 0);
    }
}
