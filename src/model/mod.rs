//! Models: torchvision-style backbones by name, and task layouts over them.
pub mod blocks;
pub mod densenet;
pub mod efficientnet;
pub mod net;
pub mod registry;
pub mod resnet;
pub mod task_layout;
pub mod trained;
pub mod vgg;
