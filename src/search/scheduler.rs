//! Schedulers decide, epoch by epoch, whether a running trial gets more budget.

use serde::{Deserialize, Serialize};

/// What a scheduler tells a running trial after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Continue,
    /// Stop now: the trial is recorded as pruned with the epochs it got.
    Prune,
}

/// Receives each trial's validation loss (lower is better) after every epoch.
/// Shared by all workers, so implementations keep their state behind `&mut self`
/// and the controller serialises calls.
pub trait Scheduler: Send {
    fn name(&self) -> &'static str;
    /// `epoch` counts from 1.
    fn on_epoch(&mut self, trial: usize, epoch: usize, loss: f64) -> Decision;
    /// Called once when a trial ends, whatever its state.
    fn on_trial_end(&mut self, _trial: usize) {}
}

/// Every trial trains for its full epochs (early stopping aside).
#[derive(Clone, Copy, Debug, Default)]
pub struct FifoScheduler;

impl Scheduler for FifoScheduler {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn on_epoch(&mut self, _: usize, _: usize, _: f64) -> Decision {
        Decision::Continue
    }
}
