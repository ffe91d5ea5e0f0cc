//! The `[tracking]` settings: which trackers a run logs to. A leaf of the config, apart from the
//! trackers themselves, so that reading a config never pulls in the tracking code.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingConfig {
    /// Write TensorBoard event files into RUN/tensorboard/: scalars per step and per epoch, the confusion matrix per epoch.
    pub tensorboard: bool,
    /// MLflow tracking server URL, e.g. "http://127.0.0.1:5000" ("" = no MLflow).
    pub mlflow: String,
    /// MLflow experiment that runs are logged under (created when missing).
    pub experiment: String,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig { tensorboard: true, mlflow: String::new(), experiment: "masklab".into() }
    }
}

impl crate::util::section::Section for TrackingConfig {
    const KEY: &'static str = "tracking";
}

impl TrackingConfig {
    pub fn validate(&self) -> Result<()> {
        if !self.mlflow.is_empty() {
            check_url(&self.mlflow)?;
            if self.experiment.trim().is_empty() {
                anyhow::bail!("tracking.experiment must name an MLflow experiment");
            }
        }
        Ok(())
    }
}


/// Rejects a tracking URL that could never work, when the config is read.
pub fn check_url(url: &str) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
        bail!("tracking.mlflow must be an http:// or https:// URL of an MLflow server (or \"\" for none), got `{url}`");
    }
    Ok(())
}
