//! Training: losses, optimisers, schedules, weight averaging.
pub mod checkpoint;
pub mod ema;
pub mod kfold;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod trainer;
