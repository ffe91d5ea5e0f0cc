//! The observer that writes the run's metrics log, `RUN/metrics.jsonl` (see run_dir::metrics_log).
use crate::metrics::Evaluation;
use crate::run_dir::metrics_log::{EarlyStopLine, EndLine, EpochLine, MetricsLine, MetricsWriter, ResumeLine, StepLine, ValScores};
use crate::train::observer::{EpochVerdict, RunEnd, RunStart, TrainObserver};
use anyhow::Result;

#[derive(Default)]
pub struct MetricsFile {
    writer: Option<MetricsWriter>,
}

impl MetricsFile {
    pub fn new() -> MetricsFile {
        MetricsFile::default()
    }

    fn write(&mut self, line: MetricsLine) -> Result<()> {
        match &mut self.writer {
            Some(w) => w.write(&line),
            None => anyhow::bail!("the metrics log was written to before the run started"),
        }
    }
}

impl TrainObserver for MetricsFile {
    fn start(&mut self, run: &RunStart) -> Result<()> {
        // A resumed run drops the lines of the epochs after its checkpoint: it logs them again.
        self.writer = Some(MetricsWriter::open(&run.run.metrics_file(), run.resumed.map(|r| r.epoch))?);
        match run.resumed {
            None => self.write(MetricsLine::Start(run.line.clone()))?,
            Some(r) => self.write(MetricsLine::Resume(ResumeLine { epoch: r.epoch, step: r.step, provenance: run.line.provenance.clone() }))?,
        }
        Ok(())
    }

    fn step(&mut self, line: &StepLine) -> Result<()> {
        self.write(MetricsLine::Step(line.clone()))
    }

    fn epoch(&mut self, line: &EpochLine, _eval: Option<&Evaluation>, _improved: bool) -> Result<EpochVerdict> {
        self.write(MetricsLine::Epoch(line.clone()))?;
        Ok(EpochVerdict::Continue)
    }

    fn early_stop(&mut self, line: &EarlyStopLine) -> Result<()> {
        self.write(MetricsLine::EarlyStop(line.clone()))
    }

    fn end(&mut self, end: &RunEnd) -> Result<()> {
        self.write(MetricsLine::End(EndLine {
            epoch: end.epoch,
            best_epoch: end.best_epoch,
            val: end.best.map(ValScores::from),
            intervals: end.best.and_then(|e| e.intervals),
        }))
    }
}
