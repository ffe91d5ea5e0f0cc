//! The `[report]` section of the config.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Write RUN/report.html when training ends (`masklab report RUN` writes it at any time).
    pub enabled: bool,
    /// Validation mistakes shown in the report, most confident first.
    pub worst: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { enabled: true, worst: 24 }
    }
}

impl crate::util::section::Section for ReportConfig {
    const KEY: &'static str = "report";
}
