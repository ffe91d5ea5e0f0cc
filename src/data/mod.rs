//! Data: the dataset folder format (dataset), relabel lists, person-level splits, sampling,
//! the batch loader, augmentation (synthetic masks too), face boxes of a dataset (detection into
//! faces.csv, the masked photo's box, face crops), how training framed faces (framing) and
//! prepared splits.
pub mod augment;
pub mod dataset;
pub mod face_assign;
pub mod face_crop;
pub mod face_detection;
pub mod framing;
pub mod identity;
pub mod loader;
pub mod mask_faces;
pub mod prepared;
pub mod relabel;
pub mod sampler;
pub mod split;
pub mod settings;
