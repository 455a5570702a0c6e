//! Progress of a training phase: a bar per epoch on a terminal (plain lines otherwise), one line
//! per epoch, and the checkpoint after every epoch.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use burn_qat::run::{Checkpoint, CheckpointPosition, Stage};
use burn_qat::state_dict::SaveStateDict;
use burn_qat::train::{BatchProgress, EpochReport, ResumePoint, TrainHooks};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn print_header() {
    println!("{:>6} {:>5} {:>9} {:>10} {:>10} {:>10} {:>7}", "phase", "epoch", "loss", "train acc", "test acc", "samples/s", "time");
}

fn epoch_line(phase: &str, r: &EpochReport, seconds: f64) -> String {
    format!(
        "{phase:>6} {:>5} {:>9.4} {:>9.2}% {:>9.2}% {:>10.0} {:>6.1}s",
        r.epoch + 1,
        r.loss,
        100.0 * r.train_accuracy,
        100.0 * r.test_accuracy,
        r.samples_per_second,
        seconds
    )
}

/// The hooks of one phase (`float` or `QAT`).
pub struct PhaseHooks<'a> {
    phase: &'static str,
    stage: Stage,
    epochs: usize,
    /// In the QAT phase, the float phase's reports, for its checkpoints.
    float_reports: Vec<EpochReport>,
    terminal: bool,
    bar: Option<ProgressBar>,
    epoch_started: Instant,
    checkpoint: &'a Path,
    metadata: HashMap<String, String>,
}

impl<'a> PhaseHooks<'a> {
    /// `metadata`: what every checkpoint of the run carries (run spec, flags).
    pub fn new(phase: &'static str, stage: Stage, epochs: usize, checkpoint: &'a Path, metadata: &HashMap<String, String>) -> Self {
        let terminal = std::io::stdout().is_terminal();
        let (bar, epoch_started, float_reports) = (None, Instant::now(), Vec::new());
        Self { phase, stage, epochs, float_reports, terminal, bar, epoch_started, checkpoint, metadata: metadata.clone() }
    }

    /// The float phase's reports, for the QAT phase's checkpoints.
    pub fn with_float_reports(mut self, reports: &[EpochReport]) -> Self {
        self.float_reports = reports.to_vec();
        self
    }

    fn message(p: &BatchProgress) -> String {
        format!("loss {:.4} acc {:6.2}% {:5.0}/s", p.loss, 100.0 * p.accuracy, p.samples_per_second)
    }
}

impl<M: SaveStateDict> TrainHooks<M> for PhaseHooks<'_> {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        self.epoch_started = Instant::now();
        if !self.terminal {
            return;
        }
        // At most 9 + 2 + 18 + 2 + 9 + 1 + 29 + 1 + 4 = 75 columns: fits an 80-column terminal.
        let style = ProgressStyle::with_template("{prefix:>9} [{bar:18.cyan/blue}] {pos:>4}/{len:<4} {msg} {eta}")
            .expect("a valid progress template")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stdout()).with_style(style);
        bar.set_prefix(format!("{} {}/{}", self.phase, epoch + 1, self.epochs));
        self.bar = Some(bar);
    }

    fn batch_done(&mut self, p: &BatchProgress) {
        if let Some(bar) = &self.bar {
            bar.set_message(Self::message(p));
            bar.set_position(p.batch as u64);
        }
    }

    fn evaluating(&mut self, _epoch: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message("testing...");
        }
    }

    fn epoch_done(&mut self, report: &EpochReport, _model: &M) -> burn_qat::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{}", epoch_line(self.phase, report, self.epoch_started.elapsed().as_secs_f64()));
        Ok(())
    }

    /// The model's state dict and the optimizer state in one file, written atomically (a temp
    /// file renamed over the old checkpoint), so that a kill at any moment leaves the last
    /// complete epoch to resume from.
    fn checkpoint(&mut self, point: &ResumePoint, model: &M) -> burn_qat::Result<()> {
        let position = CheckpointPosition { stage: self.stage, epochs: self.epochs, float_reports: &self.float_reports };
        Checkpoint::save(self.checkpoint, model.state_dict(), point, position, &self.metadata)
    }
}
