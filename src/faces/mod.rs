//! Faces: the MTCNN detector (P-Net, R-Net, O-Net on tch), faces with five landmarks, the
//! dataset cache of detections (`faces.csv`), the rule that gives a masked training photo its
//! person's unmasked box, and synthetic masks painted from the landmarks.
pub mod boxes;
pub mod crops;
pub mod mtcnn;
pub mod synth;
pub mod weights;
pub mod assign;
pub mod cache;
pub mod dataset;
pub mod face_crop;
pub mod predict_faces;
pub mod synth_plan;
pub mod synth_examples;
