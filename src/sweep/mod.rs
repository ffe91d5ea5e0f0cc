//! `masklab sweep`'s core: a search space over config keys and a budget (`spec`, `space`),
//! samplers that choose each trial's parameters (`sampler`: random, TPE), a pruner that stops
//! poor trials early (`pruner`: ASHA), and the study that several processes share through a
//! file lock (`study`, recording `trial`s). Each trial is an ordinary run in `SWEEP/trial-NNN`.
pub mod pruner;
pub mod sampler;
pub mod space;
pub mod spec;
pub mod study;
pub mod trial;
