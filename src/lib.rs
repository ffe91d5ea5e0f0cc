//! masklab: train, evaluate and serve face-attribute (mask x gender x age) classifiers.
pub mod bench;
pub mod config;
pub mod data;
pub mod demo;
pub mod eda;
pub mod evaluate;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod predictions;
pub mod report;
pub mod tracking;
pub mod train;
pub mod tune;
pub mod util;
pub mod weights;
