//! Faces: the MTCNN detector (P-Net, R-Net, O-Net on tch), faces with five landmarks and their
//! boxes, the detector's weights, and the cache of detections (`faces.csv`) that datasets,
//! predictions and the service build on.
pub mod args;
pub mod boxes;
pub mod bounded;
pub mod cache;
pub mod crops;
pub mod mtcnn;
pub mod weights;
