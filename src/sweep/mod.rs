//! `masklab sweep`: a search over config keys that runs itself. The sweep file gives a search
//! space and a budget (`spec`, `space`); samplers choose each trial's parameters (`sampler`:
//! random, TPE), a pruner stops poor trials early (`pruner`: ASHA), and the study that several
//! processes share through file locks records the trials (`study`, `trial`). Each trial is an
//! ordinary run in `SWEEP/trial-NNN`, trained by a worker (`worker`) with an observer that reports
//! every epoch to the study and stops the run when pruned (`observer`); `run` decides between one
//! worker and local worker processes; `results` and `page` write sweep.csv, best.toml and
//! sweep.html.
pub mod observer;
pub mod page;
pub mod pruner;
pub mod results;
pub mod run;
pub mod sampler;
pub mod space;
pub mod spec;
pub mod study;
pub mod trial;
pub mod worker;
