//! Models: torchvision-style backbones by name, and task layouts over them.
pub mod blocks;
pub mod convnext;
pub mod densenet;
pub mod efficientnet;
pub mod efficientnet_v2;
pub mod mobilenet;
pub mod net;
pub mod precision;
pub mod regnet;
pub mod registry;
pub mod resnet;
pub mod swin;
pub mod task_layout;
pub mod trained;
pub mod vgg;
pub mod vit;
