//! The models of a layout as a config describes them, freshly built or loaded from a run's checkpoint.
use crate::config::Config;
use crate::model::net::Net;
use crate::run_dir::{checkpoint, RunDir};
use anyhow::{bail, Context, Result};
use tch::Device;

/// Builds the models of the config's layout on `device`, freshly initialised.
pub fn build_nets(cfg: &Config, device: Device) -> Result<Vec<Net>> {
    cfg.model.layout.models().into_iter().map(|(name, n)| Net::new(name, &cfg.model_settings(name)?, n, device)).collect()
}

/// Loads a trained run's models from its checkpoint `which` (`BEST`, `LAST`, or another
/// `RUN/<which>.safetensors`), with the run's config. Every use of trained weights (eval,
/// predict, export, serve) comes through here: a checkpoint holding a NaN or an infinity (a
/// diverged run, written by an older version) is refused by name.
pub fn load_trained(run: &RunDir, which: &str, device: Device) -> Result<(Config, Vec<Net>)> {
    if run.is_kfold() {
        bail!(
            "{} is a k-fold run: its models are {}/fold-1 .. fold-k (predict takes the k-fold run itself and ensembles them; its cross-validated scores are in cv.json)",
            run.path().display(),
            run.path().display()
        );
    }
    let cfg = run.load_config()?;
    let path = run.checkpoint(which);
    let (tensors, _) = checkpoint::load_finite(&path)?;
    let mut nets = build_nets(&cfg, device)?;
    for net in &mut nets {
        net.load_tensors(&tensors).with_context(|| format!("{}", path.display()))?;
    }
    Ok((cfg, nets))
}
