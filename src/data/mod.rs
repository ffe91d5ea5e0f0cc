//! Data: the dataset folder format (dataset), prepared splits, relabel lists, person-level splits, decoding, sampling, augmentation, masks rendered onto faces (mask_render).
pub mod augment;
pub mod decode;
pub mod error;
pub mod dataset;
pub mod image_check;
pub mod loader;
pub mod mask_render;
pub mod prepared;
pub mod relabel;
pub mod sampler;
pub mod split;
