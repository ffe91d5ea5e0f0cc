//! The JSON answer for one image: its faces, each with the 18-way decision (the class `predict`
//! writes), the mask / gender / age probabilities (sums of the 18 over the other two tasks), and
//! the 18 probabilities themselves.
use super::image_input::FaceRegion;
use crate::labels::{AgeBand, AgeBounds, Class, Gender, Mask, NUM_CLASSES};
use crate::util::argmax::argmax;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ImageAnswer {
    /// The part's file name in a multipart request.
    pub name: Option<String>,
    /// The upright image's size (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceAnswer>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FaceAnswer {
    /// `[x1, y1, x2, y2]` in pixels of the upright image.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// The box is the whole image (no face detector placed it, or it found no face).
    pub whole_image: bool,
    /// The detector's face probability (detected faces only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// `[x, y]` of the eyes, the nose tip and the mouth corners, the image's left first (detected faces only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<[[f32; 2]; 5]>,
    /// The decided class, `Wear/Male/<30`.
    pub label: String,
    /// `mask*6 + gender*3 + age`.
    pub class: usize,
    /// The decided class's probability.
    pub probability: f32,
    pub mask: TaskAnswer,
    pub gender: TaskAnswer,
    pub age: TaskAnswer,
    /// All 18 probabilities, by class id.
    pub probabilities: Vec<f32>,
}

/// One task's most likely value and the probability of each of its values.
#[derive(Clone, Debug, Serialize)]
pub struct TaskAnswer {
    pub label: String,
    pub probability: f32,
    pub probabilities: Vec<LabelProbability>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LabelProbability {
    pub label: String,
    pub probability: f32,
}

fn task(labels: Vec<String>, probs: Vec<f32>) -> TaskAnswer {
    let best = argmax(&probs);
    TaskAnswer {
        label: labels[best].clone(),
        probability: probs[best],
        probabilities: labels.into_iter().zip(probs).map(|(label, probability)| LabelProbability { label, probability }).collect(),
    }
}

/// The answer for one face from its 18 probabilities (biases already applied by the ensemble).
pub fn face_answer(face: &FaceRegion, probs: &[f32; NUM_CLASSES], bounds: &AgeBounds) -> FaceAnswer {
    // The first of equal probabilities, as the submission's tensor argmax decides.
    let class = argmax(probs);
    let decided = Class::decode(class).expect("class index in range");
    let (mut mask, mut gender, mut age) = ([0f32; 3], [0f32; 2], [0f32; 3]);
    for (c, p) in Class::all().zip(probs) {
        mask[c.mask.index()] += p;
        gender[c.gender.index()] += p;
        age[c.age.index()] += p;
    }
    FaceAnswer {
        bbox: face.bbox,
        whole_image: face.whole_image,
        score: face.score,
        landmarks: face.landmarks,
        label: decided.label(bounds),
        class,
        probability: probs[class],
        mask: task(Mask::ALL.iter().map(|m| m.name().to_string()).collect(), mask.to_vec()),
        gender: task(Gender::ALL.iter().map(|g| g.name().to_string()).collect(), gender.to_vec()),
        age: task(AgeBand::ALL.iter().map(|a| bounds.band_label(*a)).collect(), age.to_vec()),
        probabilities: probs.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marginals_sum_the_18_probabilities_and_the_label_is_the_argmax() {
        let mut probs = [0.01f32; NUM_CLASSES];
        // class 16 = NotWear/Female/30-59 at 0.5; the rest spread over Wear classes.
        probs[16] = 0.5;
        probs[0] = 0.2;
        probs[4] = 0.14; // Wear/Female/30-59
        let total: f32 = probs.iter().sum();
        let probs = probs.map(|p| p / total);
        let face = FaceRegion { bbox: [0.0, 0.0, 10.0, 20.0], whole_image: true, score: None, landmarks: None };
        let a = face_answer(&face, &probs, &AgeBounds::new(30, 59).unwrap());
        assert_eq!((a.class, a.label.as_str()), (16, "NotWear/Female/30-58"));
        let mask_sum: f32 = a.mask.probabilities.iter().map(|l| l.probability).sum();
        assert!((mask_sum - 1.0).abs() < 1e-5);
        let wear: f32 = probs[..6].iter().sum();
        assert_eq!(a.mask.probabilities[0].label, "Wear");
        assert!((a.mask.probabilities[0].probability - wear).abs() < 1e-6);
        assert_eq!(a.mask.label, "NotWear", "0.5 + 5 x 0.01 against the Wear classes");
        assert_eq!(a.gender.label, "Female");
        assert_eq!(a.age.probabilities.iter().map(|l| l.label.as_str()).collect::<Vec<_>>(), ["<30", "30-58", ">=59"]);
        assert_eq!(a.age.label, "30-58");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["box"], serde_json::json!([0.0, 0.0, 10.0, 20.0]));
        assert_eq!(json["probabilities"].as_array().unwrap().len(), 18);
    }

    #[test]
    fn a_tie_is_decided_as_the_submission_decides_it() {
        // Classes 3 and 7 equal and largest: predict's submission takes the tensor argmax (the
        // first of equals); the service must answer the same class, and each task likewise.
        let mut probs = [0.02f32; NUM_CLASSES];
        probs[3] = 0.34;
        probs[7] = 0.34;
        let tensor_choice = tch::Tensor::from_slice(&probs).view([1, -1]).argmax(1, false).int64_value(&[0]);
        let face = FaceRegion { bbox: [0.0, 0.0, 10.0, 20.0], whole_image: true, score: None, landmarks: None };
        let a = face_answer(&face, &probs, &AgeBounds::default());
        assert_eq!(a.class as i64, tensor_choice);
        assert_eq!(a.class, 3);
        let tie = task(vec!["a".into(), "b".into(), "c".into()], vec![0.2, 0.4, 0.4]);
        assert_eq!(tie.label, "b", "the first of equal task probabilities");
        let with_nan = task(vec!["a".into(), "b".into()], vec![f32::NAN, 0.1]);
        assert_eq!(with_nan.label, "b", "a NaN never wins");
    }
}
