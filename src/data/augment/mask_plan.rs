//! `augment.synth_mask = p`: which training samples get a synthetic mask, and painting it.
//!
//! A sample of an unmasked photo (labelled `NotWear` after the relabel list) whose own face was
//! detected (five landmarks in faces.csv) is painted with probability `p` in each epoch: a mask
//! worn correctly (label `Wear`) or incorrectly (below the nose or on the chin: `Incorrect`),
//! drawn by [`super::synth`]. The painting happens on the CPU decoding threads, on the model-sized
//! input (after the face or centre crop and the resize; the landmarks are carried into it), so the
//! cache of decoded images stays unpainted and a sample can be painted differently each epoch.
//! The random generator of a sample is seeded from (seed, epoch, sample index): a run paints the
//! same masks on every machine, and a resumed run paints what an uninterrupted one would.
use crate::data::face_crop::SampleFaces;
use super::mask_paint::{paint_mask_in_place, SynthOptions, Wear};
use crate::image::decode::{Preprocess, RgbImage};
use crate::labels::{Class, Mask};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to paint on which sample.
#[derive(Clone, Debug)]
pub struct SynthPlan {
    pub p: f64,
    pub seed: u64,
    /// Per sample: the face's landmarks in pixels of the model input; None: never painted.
    pub landmarks: Vec<Option<[[f32; 2]; 5]>>,
    pub options: SynthOptions,
}

/// Landmarks of a `width` x `height` photo carried into the model input that `region` (or, without
/// one, `prep`'s centre crop) resized to `prep`'s size makes of it.
pub fn input_landmarks(landmarks: &[[f32; 2]; 5], region: Option<[f32; 4]>, width: u32, height: u32, prep: &Preprocess) -> [[f32; 2]; 5] {
    let (x0, y0, w, h) = match region {
        Some(r) => (r[0], r[1], r[2] - r[0], r[3] - r[1]),
        None => {
            let (l, t, w, h) = prep.crop.window(width, height);
            (l as f32, t as f32, w as f32, h as f32)
        }
    };
    let (sx, sy) = (prep.width as f32 / w.max(1.0), prep.height as f32 / h.max(1.0));
    landmarks.map(|[x, y]| [(x - x0) * sx, (y - y0) * sy])
}

/// The class of a sample painted with `wear`: its mask state becomes the painted one.
pub fn painted_class(class: usize, wear: Wear) -> usize {
    let mut c = Class::decode(class).expect("class index in range");
    c.mask = wear.mask();
    c.encode()
}

impl SynthPlan {
    /// The plan for samples of `classes` with `faces`: unmasked samples with their own landmarks
    /// are eligible. `use_regions`: the loader crops to `faces.regions` (face_crop = mtcnn).
    pub fn new(p: f64, seed: u64, classes: &[usize], faces: &SampleFaces, use_regions: bool, prep: &Preprocess) -> SynthPlan {
        let landmarks = classes
            .iter()
            .enumerate()
            .map(|(i, &class)| {
                let unmasked = Class::decode(class).is_some_and(|c| c.mask == Mask::NotWear);
                let (b, (w, h)) = (faces.boxes[i]?, faces.sizes[i]?);
                let lm = b.landmarks.filter(|_| unmasked)?;
                let region = if use_regions { faces.regions[i] } else { None };
                Some(input_landmarks(&lm, region, w, h, prep))
            })
            .collect();
        SynthPlan { p, seed, landmarks, options: SynthOptions::default() }
    }

    /// Samples that may be painted.
    pub fn eligible(&self) -> usize {
        self.landmarks.iter().filter(|l| l.is_some()).count()
    }

    fn rng(&self, epoch: usize, index: usize) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
        key[16..24].copy_from_slice(&(index as u64).to_le_bytes());
        key[24..].copy_from_slice(b"synthmsk");
        ChaCha8Rng::from_seed(key)
    }

    /// Whether sample `index` is painted in `epoch`, and then paints `pixels` (the model input of
    /// `prep`'s size, row-major RGB): the wear painted, or None (nothing changed).
    pub fn paint(&self, epoch: usize, index: usize, pixels: &[u8], prep: &Preprocess) -> Option<(Vec<u8>, Wear)> {
        let landmarks = self.landmarks.get(index).copied().flatten()?;
        let mut rng = self.rng(epoch, index);
        if !rng.gen_bool(self.p.clamp(0.0, 1.0)) {
            return None;
        }
        let mut image = RgbImage { width: prep.width, height: prep.height, data: pixels.to_vec() };
        let painted = paint_mask_in_place(&mut image, &landmarks, &mut rng, &self.options)?;
        Some((image.data, painted.wear))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::Crop;
    use crate::data::face_assign::{FaceBox, FaceSource};
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
    }

    #[test]
    fn painting_is_deterministic_and_the_label_follows_the_painted_mask() {
        let prep = Preprocess { crop: Crop::None, width: 64, height: 64 };
        let lm = [[22.0, 26.0], [42.0, 26.0], [32.0, 36.0], [24.0, 45.0], [40.0, 45.0]];
        let n = 300;
        // Every third sample masked already (never painted), one without a face.
        let classes: Vec<usize> = (0..n).map(|i| class(if i % 3 == 0 { Mask::Wear } else { Mask::NotWear })).collect();
        let face = FaceBox { bbox: [12.0, 12.0, 52.0, 56.0], source: FaceSource::Detected, landmarks: Some(lm) };
        let mut faces = SampleFaces { boxes: vec![Some(face); n], regions: vec![None; n], sizes: vec![Some((64, 64)); n], ..Default::default() };
        faces.boxes[1] = None;
        let plan = SynthPlan::new(0.5, 7, &classes, &faces, false, &prep);
        assert_eq!(plan.eligible(), (0..n).filter(|i| i % 3 != 0 && *i != 1).count());
        let skin: Vec<u8> = (0..64 * 64).flat_map(|_| [200u8, 160, 140]).collect();
        let (mut painted, mut worn, mut incorrect) = (0, 0, 0);
        for i in 0..n {
            let a = plan.paint(3, i, &skin, &prep);
            let b = plan.paint(3, i, &skin, &prep);
            assert_eq!(a, b, "sample {i}: the same seed, epoch and index paint the same");
            if i % 3 == 0 || i == 1 {
                assert!(a.is_none());
                continue;
            }
            let Some((pixels, wear)) = a else { continue };
            painted += 1;
            // The mask covers the mouth; a correctly worn one covers the nose tip too, an incorrect one leaves it.
            let changed = |[x, y]: [f32; 2]| {
                let at = ((y as usize) * 64 + x as usize) * 3;
                pixels[at..at + 3] != skin[at..at + 3]
            };
            let mouth = [(lm[3][0] + lm[4][0]) / 2.0, (lm[3][1] + lm[4][1]) / 2.0 + 2.0];
            let new_class = painted_class(classes[i], wear);
            let c = Class::decode(new_class).unwrap();
            assert_eq!((c.gender, c.age), (Gender::Female, AgeBand::Middle));
            match wear {
                Wear::Correct => {
                    worn += 1;
                    assert_eq!(c.mask, Mask::Wear);
                    assert!(changed(mouth) && changed(lm[2]), "sample {i}: a worn mask covers mouth and nose");
                }
                Wear::BelowNose | Wear::ChinOnly => {
                    incorrect += 1;
                    assert_eq!(c.mask, Mask::Incorrect);
                    assert!(!changed(lm[2]), "sample {i}: an incorrect mask leaves the nose tip");
                }
            }
        }
        let eligible = plan.eligible() as f64;
        assert!((painted as f64 - 0.5 * eligible).abs() < 0.15 * eligible, "{painted} of {eligible} painted at p = 0.5");
        assert!(worn > 10 && incorrect > 10, "{worn} worn, {incorrect} incorrect");
        // Another epoch draws anew.
        let other: Vec<bool> = (0..n).map(|i| plan.paint(4, i, &skin, &prep).is_some()).collect();
        let this: Vec<bool> = (0..n).map(|i| plan.paint(3, i, &skin, &prep).is_some()).collect();
        assert_ne!(other, this);
    }
}
