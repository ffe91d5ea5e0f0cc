//! Data: the dataset layout, relabel lists, person-level splits and image decoding.
pub mod decode;
pub mod error;
pub mod layout;
pub mod relabel;
pub mod split;
