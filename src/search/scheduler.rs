//! Schedulers decide, epoch by epoch, whether a running trial gets more budget.

use serde::{Deserialize, Serialize};

/// What a scheduler tells a running trial after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Continue,
    /// Stop now: the trial is recorded as pruned with the epochs it got.
    Prune,
}

/// Where a scheduler stopped a trial: the rung it was judged at (counted from 0), the epochs
/// that rung gives, and for Hyperband the bracket (counted from 0, most aggressive first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rung {
    pub rung: usize,
    pub epochs: usize,
    pub bracket: Option<usize>,
}

/// Receives each trial's validation loss (lower is better) after every epoch.
/// Shared by all workers, so implementations keep their state behind `&mut self`
/// and the controller serialises calls.
pub trait Scheduler: Send {
    fn name(&self) -> &'static str;
    /// `epoch` counts from 1.
    fn on_epoch(&mut self, trial: usize, epoch: usize, loss: f64) -> Decision;
    /// The costs of trial `trial` (its cost objectives, lower is better), known before it trains;
    /// called before its first epoch in a multi-objective study.
    fn on_costs(&mut self, _trial: usize, _costs: &[f64]) {}
    /// Called once when a trial ends, whatever its state.
    fn on_trial_end(&mut self, _trial: usize) {}
    /// The rung at which trial `trial` is judged after `epoch` epochs, if any: where a
    /// [`Decision::Prune`] it returned for that epoch stopped it.
    fn rung(&self, _trial: usize, _epoch: usize) -> Option<Rung> {
        None
    }
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
