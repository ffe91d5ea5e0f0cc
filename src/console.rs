//! What a person sees on the terminal while a run trains: a progress bar per epoch (when
//! stderr is a terminal), one line per epoch, and notes on resuming and early stopping.
use crate::metrics::Evaluation;
use crate::run_dir::metrics_log::{EarlyStopLine, EpochLine};
use crate::train::observer::{EpochVerdict, RunStart, TrainObserver};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

pub struct Console {
    /// Draw a progress bar.
    progress: bool,
    bar: ProgressBar,
    epochs: usize,
    monitor: String,
    patience: usize,
}

impl Console {
    pub fn new(progress: bool) -> Console {
        Console { progress, bar: ProgressBar::hidden(), epochs: 0, monitor: String::new(), patience: 0 }
    }
}

impl TrainObserver for Console {
    fn start(&mut self, run: &RunStart) -> Result<()> {
        self.epochs = run.epochs;
        self.monitor = run.settings.train.monitor.to_string();
        self.patience = run.settings.train.patience;
        if let Some(r) = run.resumed {
            eprintln!("resuming {} after epoch {} (step {})", run.run.path().display(), r.epoch, r.step);
        }
        let (world, accumulate) = (run.line.world_size.unwrap_or(1), run.settings.train.accumulate);
        if world > 1 || accumulate > 1 {
            let global = run.line.global_batch.unwrap_or(0);
            let per = run.settings.train.batch_size;
            eprintln!("global batch {global} = {per} per process x {accumulate} accumulated x {world} processes");
        }
        Ok(())
    }

    fn epoch_begin(&mut self, epoch: usize, batches: usize) {
        if !self.progress {
            return;
        }
        self.bar = ProgressBar::new(batches as u64);
        self.bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        self.bar.set_prefix(format!("{epoch}/{}", self.epochs));
    }

    fn batch(&mut self, done: usize, mean_loss: &dyn Fn() -> f64) {
        if !self.progress {
            return;
        }
        self.bar.inc(1);
        // Reading the loss waits for the device: only every tenth step.
        if done % 10 == 1 {
            self.bar.set_message(format!("loss {:.4}", mean_loss()));
        }
        if Some(done as u64) == self.bar.length() {
            self.bar.finish_and_clear(); // validation follows
        }
    }

    fn epoch(&mut self, line: &EpochLine, _eval: Option<&Evaluation>, improved: bool) -> Result<EpochVerdict> {
        self.bar.finish_and_clear();
        eprintln!("{}", epoch_text(line, self.epochs, improved));
        Ok(EpochVerdict::Continue)
    }

    fn early_stop(&mut self, line: &EarlyStopLine) -> Result<()> {
        match &line.reason {
            Some(reason) => eprintln!("stopped after epoch {}: {reason}", line.epoch),
            None => eprintln!("early stop: no improvement of {} in {} epochs", self.monitor, self.patience),
        }
        Ok(())
    }
}

/// `epoch 3/8  train loss 0.4121  val loss 0.5003  f1 0.7120 ...`
pub fn epoch_text(line: &EpochLine, epochs: usize, improved: bool) -> String {
    let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let val = line.val.as_ref();
    format!(
        "epoch {}/{}  train loss {:.4}  val loss {}  f1 {}  acc {}  (mask {} gender {} age {})  {:.0} img/s  {:.1}s{}",
        line.epoch,
        epochs,
        line.train_loss,
        f(val.map(|v| v.loss)),
        f(val.map(|v| v.f1)),
        f(val.map(|v| v.accuracy)),
        f(val.map(|v| v.f1_mask)),
        f(val.map(|v| v.f1_gender)),
        f(val.map(|v| v.f1_age)),
        line.train_images_per_s,
        line.seconds,
        match (improved, &line.intervals) {
            (true, Some(i)) => format!("  *best (f1 95% CI {})", i.f1.bracket()),
            (true, None) => "  *best".to_string(),
            _ => String::new(),
        }
    )
}
