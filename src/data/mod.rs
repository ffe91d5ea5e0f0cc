//! Data: the dataset layout, relabel lists, person-level splits, decoding, sampling, augmentation.
pub mod augment;
pub mod decode;
pub mod error;
pub mod image_check;
pub mod layout;
pub mod loader;
pub mod relabel;
pub mod sampler;
pub mod split;
