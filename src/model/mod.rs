//! Models: backbone families (one file each, listed by the registry), task layouts over them,
//! and what needs a backbone's registry entry or a built model: pretrained weights by name and
//! their loading, the zoo table, checkpoint inspection and conversion, and export of a run.
pub mod blocks;
pub mod convnext;
pub mod densenet;
pub mod efficientnet;
pub mod efficientnet_lite;
pub mod efficientnet_v2;
pub mod export;
pub mod faceres;
pub mod family;
pub mod import;
pub mod inspect;
pub mod inverted_residual;
pub mod loss;
pub mod mobilenet_v2;
pub mod mobilenet_v3;
pub mod net;
pub mod precise_bn;
pub mod precision;
pub mod pretrained;
pub mod registry;
pub mod regnet;
pub mod resnet;
pub mod settings;
pub mod swin;
pub mod task_layout;
pub mod trained;
pub mod vgg;
pub mod vit;
pub mod zoo;
