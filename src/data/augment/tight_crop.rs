//! `augment.tight_crop = p`: training photos seen as the tightly cropped faces people photograph.
//!
//! Photos outside the competition are often cut close around the face (the chin at the bottom
//! edge, the forehead at the top). `predict --largest-face`, `--faces` and `serve` frame such a
//! face as the training photos framed theirs, so the frame reaches beyond the photo and the part
//! beyond repeats the photo's edge pixels (`image::region::resize_beyond`): below the chin, a band
//! of streaks in the colours of the lower face. A model that never saw such bands reads them as a
//! mask. Measured on a run trained on the stand-in (cpu-quick with rendered masks at 0.25, seed 2):
//! of 1,930 real unmasked photos, the 1,209 whose face box spans 80% or more of the photo's width
//! were read as not worn in 46% of cases, the other 692 with a face in 95% (README, "Real photos,
//! measured").
//!
//! So in each epoch a training sample with a face box (from faces.csv) is, with probability `p`,
//! cut to a tight window around its face and continued by that window's edge pixels, as predict
//! continues a tight photo. Each side of the window lies between inside the face box and a little
//! outside it ([`MARGINS`]); the bottom may cut well into the box, as tight photos cut the chin
//! (the detector's box then reaches beyond the photo: a median 14% of the box's height beyond it
//! on those unmasked photos), except on incorrectly worn masks, which may sit on the chin: their
//! window keeps the chin ([`INCORRECT_BOTTOM`]). The label is unchanged: the window keeps the
//! face, and with it whatever mask is worn on it. It runs on the CPU decoding threads on the
//! model-sized input, after any synthetic mask (a tightly cropped photo of a masked face), and is
//! deterministic per (seed, epoch, sample), like the synthetic masks.
use super::mask_plan::input_box;
use crate::data::face_crop::SampleFaces;
use crate::faces::boxes::BoxF;
use crate::image::decode::Preprocess;
use crate::labels::{Class, Mask};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Where each side of the tight window may lie (left, top, right, bottom), as shares of the face
/// box's width or height, measured outwards from the box's side (negative: inside the box). The
/// detector's box runs from the brows to the chin; tight photos cut the forehead, the sides of
/// the face and the chin.
const MARGINS: [(f32, f32); 4] = [(-0.20, 0.15), (-0.15, 0.10), (-0.20, 0.15), (-0.35, 0.10)];

/// The bottom side's range for a face whose mask is worn incorrectly (nose out, on the chin): the
/// mask may lie in the lowest part of the box, so the window keeps it.
const INCORRECT_BOTTOM: (f32, f32) = (-0.03, 0.10);

/// Which training samples may be seen tightly cropped, and how.
#[derive(Clone, Debug)]
pub struct TightCropPlan {
    pub p: f64,
    pub seed: u64,
    /// Per sample: its face box in pixels of the model input; None: never cropped.
    pub boxes: Vec<Option<BoxF>>,
    /// Per sample: its mask state as labelled (a synthetic mask's state replaces it, see [`TightCropPlan::apply`]).
    pub masks: Vec<Mask>,
}

impl TightCropPlan {
    /// The plan for `faces` (boxes in photo pixels) carried into the model input `prep` makes;
    /// `use_regions`: the loader crops to `faces.regions` (face_crop = mtcnn).
    pub fn new(p: f64, seed: u64, classes: &[usize], faces: &SampleFaces, use_regions: bool, prep: &Preprocess) -> TightCropPlan {
        let boxes = (0..faces.boxes.len())
            .map(|i| {
                let (b, (w, h)) = (faces.boxes[i].as_ref()?, faces.sizes[i]?);
                let region = if use_regions { faces.regions[i] } else { None };
                Some(input_box(&b.bbox, region, w, h, prep))
            })
            .collect();
        let masks = classes.iter().map(|&c| Class::decode(c).map_or(Mask::Wear, |c| c.mask)).collect();
        TightCropPlan { p, seed, boxes, masks }
    }

    /// Samples that may be cropped.
    pub fn eligible(&self) -> usize {
        self.boxes.iter().filter(|b| b.is_some()).count()
    }

    fn rng(&self, epoch: usize, index: usize) -> ChaCha8Rng {
        super::sample_rng(self.seed, epoch, index, b"tightcrp")
    }

    /// The tight window `[x1, y1, x2, y2)` (whole pixels of the `width` x `height` input) sample
    /// `index`, showing a mask in state `mask`, is cut to in `epoch`, or None: not drawn, no box,
    /// or a box too small or outside.
    pub fn window(&self, epoch: usize, index: usize, mask: Mask, width: u32, height: u32) -> Option<[u32; 4]> {
        let b = self.boxes.get(index).copied().flatten()?;
        let mut rng = self.rng(epoch, index);
        if !rng.gen_bool(self.p.clamp(0.0, 1.0)) {
            return None;
        }
        let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
        if !(bw >= 4.0 && bh >= 4.0) {
            return None;
        }
        let mut draw = |(lo, hi): (f32, f32)| rng.gen_range(lo..=hi);
        let x1 = b[0] - draw(MARGINS[0]) * bw;
        let y1 = b[1] - draw(MARGINS[1]) * bh;
        let x2 = b[2] + draw(MARGINS[2]) * bw;
        let y2 = b[3] + draw(if mask == Mask::Incorrect { INCORRECT_BOTTOM } else { MARGINS[3] }) * bh;
        let clamp = |v: f32, limit: u32| v.round().clamp(0.0, limit as f32) as u32;
        let w = [clamp(x1, width), clamp(y1, height), clamp(x2, width), clamp(y2, height)];
        // A box mostly outside the input leaves nothing worth keeping.
        (w[2] >= w[0] + 2 && w[3] >= w[1] + 2).then_some(w)
    }

    /// Whether sample `index` is cut in `epoch`, and then `pixels` (the row-major RGB model input
    /// of `prep`'s size) cut to its window and continued by the window's edges; None: unchanged.
    /// `painted`: the state of a synthetic mask painted on it, which replaces its label's.
    pub fn apply(&self, epoch: usize, index: usize, pixels: &[u8], prep: &Preprocess, painted: Option<Mask>) -> Option<Vec<u8>> {
        let mask = painted.or_else(|| self.masks.get(index).copied())?;
        let window = self.window(epoch, index, mask, prep.width, prep.height)?;
        Some(continue_edges(pixels, prep.width, prep.height, window))
    }
}

/// `pixels` (row-major RGB, `width` x `height`) with everything outside `window` `[x1, y1, x2, y2)`
/// replaced by the window's nearest pixel: the window continued by its own edges, as
/// `resize_beyond` continues a photo.
pub fn continue_edges(pixels: &[u8], width: u32, height: u32, window: [u32; 4]) -> Vec<u8> {
    let [x1, y1, x2, y2] = window;
    let mut out = Vec::with_capacity(pixels.len());
    for y in 0..height {
        let row = y.clamp(y1, y2 - 1);
        for x in 0..width {
            let col = x.clamp(x1, x2 - 1);
            let at = ((row * width + col) * 3) as usize;
            out.extend_from_slice(&pixels[at..at + 3]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::Crop;

    fn input(width: u32, height: u32) -> Vec<u8> {
        (0..height).flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, 7])).collect()
    }

    fn plan_of(p: f64) -> TightCropPlan {
        // Face boxes of a 40x40 input: sample 1 has none.
        TightCropPlan { p, seed: 3, boxes: vec![Some([10.0, 8.0, 30.0, 32.0]), None, Some([12.0, 10.0, 28.0, 30.0])], masks: vec![Mask::NotWear; 3] }
    }

    #[test]
    fn outside_the_window_repeats_its_edges() {
        let out = continue_edges(&input(6, 5), 6, 5, [1, 1, 4, 3]);
        let px = |x: u32, y: u32| &out[((y * 6 + x) * 3) as usize..((y * 6 + x) * 3 + 3) as usize];
        assert_eq!(px(2, 2), [2, 2, 7], "inside is unchanged");
        assert_eq!(px(0, 0), [1, 1, 7], "the corner repeats the window's corner");
        assert_eq!(px(5, 4), [3, 2, 7]);
        assert_eq!(px(2, 4), [2, 2, 7], "below repeats the bottom row");
        assert_eq!(px(0, 2), [1, 2, 7], "left repeats the left column");
    }

    #[test]
    fn the_window_hugs_the_face_and_is_drawn_per_seed_epoch_and_sample() {
        let plan = plan_of(1.0);
        let mut seen = std::collections::HashSet::new();
        let mut lowest_bottom = 40;
        for epoch in 0..200 {
            let w = plan.window(epoch, 0, Mask::Wear, 40, 40).expect("p = 1 with a box");
            // Sides within the margins of the 20x24 box at (10, 8).
            assert!((7..=14).contains(&w[0]) && (6..=12).contains(&w[1]), "{w:?}");
            assert!((26..=33).contains(&w[2]) && (24..=35).contains(&w[3]), "{w:?}");
            assert_eq!(plan.window(epoch, 0, Mask::Wear, 40, 40), Some(w), "same draw for the same epoch and sample");
            lowest_bottom = lowest_bottom.min(w[3]);
            // An incorrectly worn mask keeps the chin: the bottom at most 3% of the box inside it.
            let incorrect = plan.window(epoch, 0, Mask::Incorrect, 40, 40).unwrap();
            assert!((31..=35).contains(&incorrect[3]) && incorrect[..3] == w[..3], "{incorrect:?}");
            seen.insert(w);
        }
        assert!(lowest_bottom <= 26, "the chin is cut at times: {lowest_bottom}");
        assert!(seen.len() > 10, "windows vary from epoch to epoch: {}", seen.len());
        assert_eq!(plan.window(0, 1, Mask::Wear, 40, 40), None, "no box, never cropped");
        assert_ne!(TightCropPlan { seed: 4, ..plan.clone() }.window(0, 0, Mask::Wear, 40, 40), plan.window(0, 0, Mask::Wear, 40, 40));
    }

    #[test]
    fn share_drawn_follows_p_and_an_incorrect_mask_keeps_the_chin() {
        let plan = plan_of(0.3);
        let prep = Preprocess { crop: Crop::None, width: 40, height: 40 };
        let pixels = input(40, 40);
        let drawn = (0..2000).filter(|&e| plan.apply(e, 2, &pixels, &prep, None).is_some()).count();
        assert!((500..700).contains(&drawn), "about 30% of 2000 draws: {drawn}");
        let cut = (0..2000).find_map(|e| plan.apply(e, 2, &pixels, &prep, None)).unwrap();
        assert_eq!(cut.len(), pixels.len());
        assert_eq!(plan_of(0.0).apply(0, 0, &pixels, &prep, None), None);
        // A painted mask's state decides the bottom: an incorrect one keeps the chin.
        let one = TightCropPlan { p: 1.0, ..plan.clone() };
        let bottom_row = |out: &[u8]| (0..40).rev().find(|&y| out[(y * 40 + 20) * 3 + 1] as usize == y).unwrap();
        for e in 0..100 {
            let out = one.apply(e, 2, &pixels, &prep, Some(Mask::Incorrect)).unwrap();
            assert!(bottom_row(&out) >= 28, "box bottom 30, at most 3% of its 20 px inside: {}", bottom_row(&out));
        }
    }

    #[test]
    fn a_box_outside_the_input_is_left_alone() {
        let plan = TightCropPlan { p: 1.0, seed: 1, boxes: vec![Some([60.0, 60.0, 80.0, 80.0]), Some([1.0, 1.0, 2.0, 2.0])], masks: vec![Mask::Wear; 2] };
        assert_eq!(plan.window(0, 0, Mask::Wear, 40, 40), None);
        assert_eq!(plan.window(0, 1, Mask::Wear, 40, 40), None, "too small a box");
    }
}
