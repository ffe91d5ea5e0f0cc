//! Models: torchvision-style backbones by name, and task layouts over them.
pub mod blocks;
pub mod densenet;
pub mod efficientnet;
pub mod layout;
pub mod net;
pub mod registry;
pub mod resnet;
pub mod vgg;
