//! The models of a layout, freshly built from their settings or loaded from a run's checkpoint
//! with the sections of the run's config they need.
use crate::data::settings::DataConfig;
use crate::model::net::Net;
use crate::model::settings::{ModelConfig, NetSettings};
use crate::model::task_layout::Layout;
use crate::run_dir::{checkpoint, RunDir};
use crate::util::section::read;
use anyhow::{bail, Context, Result};
use tch::Device;

/// Builds the models of `layout` on `device`, freshly initialised: `settings` holds each model's,
/// in the layout's order.
pub fn build_nets(layout: Layout, settings: &[&NetSettings], device: Device) -> Result<Vec<Net>> {
    let models = layout.models();
    if models.len() != settings.len() {
        bail!("layout `{layout}` has {} models, {} settings given", models.len(), settings.len());
    }
    models.into_iter().zip(settings).map(|((name, n), s)| Net::new(name, s, n, device)).collect()
}

/// A trained run's models, loaded, with the run's resolved config and the sections that say
/// how its inputs are made.
pub struct TrainedRun {
    /// The run's config.toml, resolved (other layers read their own sections from it).
    pub config: toml::Table,
    pub layout: Layout,
    pub data: DataConfig,
    pub nets: Vec<Net>,
}

/// Loads a trained run's models from its checkpoint `which` (`BEST`, `LAST`, or another
/// `RUN/<which>.safetensors`), as its config describes them. Every use of trained weights (eval,
/// predict, export, serve) comes through here: a checkpoint holding a NaN or an infinity (a
/// diverged run, written by an older version) is refused by name.
pub fn load_trained(run: &RunDir, which: &str, device: Device) -> Result<TrainedRun> {
    if run.is_kfold() {
        bail!(
            "{} is a k-fold run: its models are {}/fold-1 .. fold-k (predict takes the k-fold run itself and ensembles them; its cross-validated scores are in cv.json)",
            run.path().display(),
            run.path().display()
        );
    }
    let config = run.config_table()?;
    let context = || format!("{}", run.config_file().display());
    let layout = read::<ModelConfig>(&config).with_context(context)?.layout;
    let data: DataConfig = read(&config).with_context(context)?;
    let settings: Vec<NetSettings> = layout.models().iter().map(|(name, _)| NetSettings::of_model(&config, name)).collect::<Result<_>>().with_context(context)?;
    let path = run.checkpoint(which);
    let (tensors, _) = checkpoint::load_finite(&path, checkpoint::DIVERGED_RUN)?;
    let mut nets = build_nets(layout, &settings.iter().collect::<Vec<_>>(), device)?;
    for net in &mut nets {
        net.load_tensors(&tensors).with_context(|| format!("{}", path.display()))?;
    }
    Ok(TrainedRun { config, layout, data, nets })
}
