//! Who follows a run: the metrics log, the console, the report, the trackers.
use crate::config::Config;
use crate::train::observer::TrainObserver;

/// The observers of a training run, in the order they hear of each event: the metrics log, the
/// console, the report (written when the run ends), then the trackers, whose MLflow upload at the
/// end takes the run folder's final files.
pub fn training_observers(cfg: &Config, progress: bool) -> Vec<Box<dyn TrainObserver>> {
    let mut list: Vec<Box<dyn TrainObserver>> =
        vec![Box::new(crate::train::metrics_file::MetricsFile::new()), Box::new(crate::console::Console::new(progress))];
    if let Some(report) = report_observer(cfg) {
        list.push(Box::new(report));
    }
    list.push(Box::new(crate::tracking::TrackingObserver::new()));
    list
}

/// The observers that record a run without a console (the metrics log, the report, the
/// trackers): what a sweep's trials run with, the sweep printing one line per epoch itself.
pub fn recording_observers(cfg: &Config) -> Vec<Box<dyn TrainObserver>> {
    let mut list: Vec<Box<dyn TrainObserver>> = vec![Box::new(crate::train::metrics_file::MetricsFile::new())];
    if let Some(report) = report_observer(cfg) {
        list.push(Box::new(report));
    }
    list.push(Box::new(crate::tracking::TrackingObserver::new()));
    list
}

/// The report observer of a run whose config asks for reports (`report.enabled`).
pub fn report_observer(cfg: &Config) -> Option<crate::report::ReportObserver> {
    cfg.report.enabled.then(|| crate::report::ReportObserver::new(cfg.report.worst))
}
