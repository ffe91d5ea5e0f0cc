//! Face boxes: the detector's answer per face (box, score, five landmarks), intersection over
//! union, and the two non-maximum suppressions MTCNN uses (torchvision's, and the original
//! MTCNN's "Min" overlap for the last stage).
use serde::{Deserialize, Serialize};

/// The smallest face searched for by default, in pixels: facenet-pytorch's `min_face_size`.
/// (Here, below the detector, so that `faces.csv`'s reader knows it without the networks.)
pub const DEFAULT_MIN_FACE: f64 = 20.0;

/// A box `[x1, y1, x2, y2]` in pixels of the photo.
pub type BoxF = [f32; 4];

/// The five landmarks in MTCNN's order: the eye, then the mouth corner, on the image's left first.
pub const LANDMARK_NAMES: [&str; 5] = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"];

/// One detected face.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Face {
    pub bbox: BoxF,
    /// O-Net's face probability.
    pub score: f32,
    /// `(x, y)` of [`LANDMARK_NAMES`], in pixels of the photo.
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }
    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
}

/// The face a one-face pipeline (crop for the classifier) uses: the largest box, as
/// facenet-pytorch's `select_largest` does.
pub fn primary_face(faces: &[Face]) -> Option<&Face> {
    faces.iter().max_by(|a, b| a.area().total_cmp(&b.area()))
}

/// Intersection over union of two boxes (continuous coordinates: area = width x height).
pub fn iou(a: &BoxF, b: &BoxF) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0) + (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// `box` grown by `pad` times its width and height on every side, clipped to a `width` x `height` photo.
pub fn pad_box(b: &BoxF, pad: f32, width: u32, height: u32) -> BoxF {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    [
        (b[0] - pad * w).max(0.0),
        (b[1] - pad * h).max(0.0),
        (b[2] + pad * w).min(width as f32),
        (b[3] + pad * h).min(height as f32),
    ]
}

/// How two boxes' overlap is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// torchvision's `nms`: intersection over union, areas as `(x2 - x1) * (y2 - y1)`.
    Union,
    /// The original MTCNN's "Min": intersection over the smaller box, areas as
    /// `(x2 - x1 + 1) * (y2 - y1 + 1)` (pixel-inclusive).
    Min,
}

/// Greedy non-maximum suppression: indices of the kept boxes, highest score first. A box is
/// dropped when its overlap with a kept, higher-scoring box exceeds `threshold`.
pub fn nms(boxes: &[BoxF], scores: &[f32], threshold: f64, overlap: Overlap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Stable, so equal scores keep their input order (as torchvision's stable sort does).
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let one = if overlap == Overlap::Min { 1.0f32 } else { 0.0 };
    let area = |b: &BoxF| (b[2] - b[0] + one) * (b[3] - b[1] + one);
    let areas: Vec<f32> = boxes.iter().map(area).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = &boxes[i];
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = &boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0]) + one).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1]) + one).max(0.0);
            let inter = w * h;
            let o = match overlap {
                Overlap::Union => inter / (areas[i] + areas[j] - inter),
                Overlap::Min => inter / areas[i].min(areas[j]),
            };
            // torchvision compares its float overlap with the double threshold; NumPy (the "Min"
            // stage) compares in float32.
            let over = match overlap {
                Overlap::Union => o as f64 > threshold,
                Overlap::Min => o > threshold as f32,
            };
            if over {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        let b = [5.0, 0.0, 15.0, 10.0];
        assert!((iou(&a, &b) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_the_best_of_each_cluster_in_score_order() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0], [0.5, 0.0, 10.5, 10.0]];
        let scores = [0.8, 0.9, 0.7, 0.95];
        assert_eq!(nms(&boxes, &scores, 0.5, Overlap::Union), vec![3, 2]);
        // A box inside a bigger one overlaps it fully by "Min" but little by union.
        let boxes = [[0.0, 0.0, 99.0, 99.0], [10.0, 10.0, 29.0, 29.0]];
        assert_eq!(nms(&boxes, &[0.9, 0.8], 0.7, Overlap::Union), vec![0, 1]);
        assert_eq!(nms(&boxes, &[0.9, 0.8], 0.7, Overlap::Min), vec![0]);
    }

    #[test]
    fn padded_boxes_stay_inside_the_photo() {
        assert_eq!(pad_box(&[10.0, 10.0, 30.0, 50.0], 0.1, 100, 100), [8.0, 6.0, 32.0, 54.0]);
        assert_eq!(pad_box(&[0.0, 0.0, 100.0, 100.0], 0.5, 100, 120), [0.0, 0.0, 100.0, 120.0]);
    }
}
