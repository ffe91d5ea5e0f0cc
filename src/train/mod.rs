//! Training: the trainer and what it announces to observers; losses, optimisers over flat
//! buffers, schedules, loss scaling, weight averaging, best-checkpoint and early-stopping rules,
//! k-fold cross-validation, the checks of a config against the data before training, and the
//! detection of non-finite steps; data-parallel training across processes (data_parallel).
pub mod data_parallel;
pub mod ema;
pub mod flat;
pub mod kfold;
pub mod loss_scale;
pub mod metrics_file;
pub mod nonfinite;
pub mod observer;
pub mod optim;
pub mod preflight;
pub mod schedule;
pub mod stopping;
pub mod trainer;
pub mod settings;
