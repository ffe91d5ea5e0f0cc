//! What to run, decided above the engines from the whole config: a training command becomes a
//! single run, a k-fold run, one fold's job or a data-parallel launch, with its observers; the
//! commands on finished runs read each run's config here and hand the engines their sections.
pub mod observers;
pub mod runs;
pub mod train;
