//! Asynchronous successive halving (ASHA): stop a trial at a rung unless it is among the best
//! 1/eta of the trials that reached that rung so far; never wait for stragglers.
//!
//! Li, Jamieson, Rostamizadeh, Gonina, Ben-tzur, Hardt, Recht and Talwalkar, "A System for
//! Massively Parallel Hyperparameter Tuning", MLSys 2020 (arXiv:1810.05934, 2018).
//!
//! Rungs sit at `min_epochs * eta^k` epochs, for every such budget below `max_epochs`. When a
//! trial reports a rung's epoch its loss is recorded there; with `n` losses recorded (its own
//! included) it continues if its loss is at most the `max(1, floor(n / eta))`-th smallest.
//! Trials are never paused, so the first arrivals at a rung, where `floor(n / eta)` is still 0,
//! continue only while they are the best at that rung so far (the rule Optuna's
//! `SuccessiveHalvingPruner` uses). The best trial at a rung always continues.
//!
//! In a multi-objective study the costs of a trial (parameters, multiply-adds, latency) are known
//! before it trains ([`Scheduler::on_costs`]). There a trial is stopped only when at least
//! `max(1, floor(n / eta))` of the `n` trials at its rung score strictly better *and* cost no
//! more on every cost objective: a cheap network is not cut for scoring below expensive ones, as
//! it may still belong to the front. With no costs this is the rule above (a trial continues
//! exactly when fewer than that many trials score strictly better).

use super::{Decision, Rung, Scheduler};
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Debug)]
pub struct AshaScheduler {
    min_epochs: usize,
    eta: usize,
    max_epochs: usize,
    /// Epoch budgets of the rungs, increasing.
    rungs: Vec<usize>,
    /// Losses recorded at each rung, in arrival order.
    recorded: Vec<Vec<f64>>,
    /// Costs recorded with each loss at each rung (multi-objective studies), in the same order.
    recorded_costs: Vec<Vec<Option<Vec<f64>>>>,
    /// Costs of trials that have not ended, from [`Scheduler::on_costs`].
    costs: HashMap<usize, Vec<f64>>,
    /// (rung, trial) pairs already judged, so a repeated report is not counted twice.
    judged: BTreeSet<(usize, usize)>,
}

impl AshaScheduler {
    /// Rungs at `min_epochs * eta^k < max_epochs`; `min_epochs` is at least 1, `eta` at least 2.
    pub fn new(min_epochs: usize, eta: usize, max_epochs: usize) -> AshaScheduler {
        let (min_epochs, eta) = (min_epochs.max(1), eta.max(2));
        let mut rungs = Vec::new();
        let mut budget = min_epochs;
        while budget < max_epochs {
            rungs.push(budget);
            budget = match budget.checked_mul(eta) {
                Some(b) => b,
                None => break,
            };
        }
        AshaScheduler {
            min_epochs,
            eta,
            max_epochs,
            recorded: vec![Vec::new(); rungs.len()],
            recorded_costs: vec![Vec::new(); rungs.len()],
            costs: HashMap::new(),
            rungs,
            judged: BTreeSet::new(),
        }
    }

    /// The defaults: one epoch at the first rung, reduction factor 3.
    pub fn with_max_epochs(max_epochs: usize) -> AshaScheduler {
        AshaScheduler::new(1, 3, max_epochs)
    }

    /// Epoch budgets at which trials are judged.
    pub fn rungs(&self) -> &[usize] {
        &self.rungs
    }

    pub fn min_epochs(&self) -> usize {
        self.min_epochs
    }

    pub fn eta(&self) -> usize {
        self.eta
    }

    pub fn max_epochs(&self) -> usize {
        self.max_epochs
    }

    /// Losses recorded at rung `k` so far.
    pub fn recorded(&self, k: usize) -> &[f64] {
        self.recorded.get(k).map_or(&[], Vec::as_slice)
    }
}

impl Scheduler for AshaScheduler {
    fn name(&self) -> &'static str {
        "asha"
    }

    fn on_epoch(&mut self, trial: usize, epoch: usize, loss: f64) -> Decision {
        let Some(k) = self.rungs.iter().position(|&b| b == epoch) else {
            return Decision::Continue;
        };
        if !self.judged.insert((k, trial)) {
            return Decision::Continue;
        }
        if loss.is_nan() {
            return Decision::Prune;
        }
        let costs = self.costs.get(&trial).cloned();
        let (rung, rung_costs) = (&mut self.recorded[k], &mut self.recorded_costs[k]);
        rung.push(loss);
        rung_costs.push(costs.clone());
        let keep = (rung.len() / self.eta).max(1);
        // Trials at this rung that score strictly better and, in a multi-objective study, cost
        // no more on any cost objective.
        let better = rung
            .iter()
            .zip(rung_costs.iter())
            .filter(|(l, c)| {
                **l < loss
                    && match (&costs, c) {
                        (Some(mine), Some(theirs)) => theirs.iter().zip(mine).all(|(t, m)| t <= m),
                        _ => true,
                    }
            })
            .count();
        if better < keep {
            Decision::Continue
        } else {
            Decision::Prune
        }
    }

    fn on_costs(&mut self, trial: usize, costs: &[f64]) {
        self.costs.insert(trial, costs.to_vec());
    }

    fn on_trial_end(&mut self, trial: usize) {
        self.costs.remove(&trial);
    }

    fn rung(&self, _trial: usize, epoch: usize) -> Option<Rung> {
        let k = self.rungs.iter().position(|&b| b == epoch)?;
        Some(Rung {
            rung: k,
            epochs: epoch,
            bracket: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_grow_by_eta_below_the_maximum() {
        assert_eq!(AshaScheduler::new(1, 3, 60).rungs(), [1, 3, 9, 27]);
        assert_eq!(AshaScheduler::new(2, 2, 16).rungs(), [2, 4, 8]);
        assert!(AshaScheduler::new(5, 3, 5).rungs().is_empty());
    }

    #[test]
    fn the_first_arrival_continues_and_a_worse_second_is_stopped() {
        let mut s = AshaScheduler::new(1, 3, 10);
        assert_eq!(s.on_epoch(0, 1, 0.5), Decision::Continue);
        assert_eq!(s.on_epoch(1, 1, 0.7), Decision::Prune);
        assert_eq!(s.on_epoch(2, 1, 0.4), Decision::Continue);
        // Between rungs nothing is judged.
        assert_eq!(s.on_epoch(0, 2, 9.0), Decision::Continue);
    }

    #[test]
    fn with_costs_only_a_trial_dominated_by_enough_others_is_stopped() {
        // Costs: one objective (say latency). Trial 1 scores worse than trial 0 but is cheaper:
        // plain ASHA stops it, the multi-objective rule keeps it on the front.
        let mut plain = AshaScheduler::new(1, 3, 10);
        assert_eq!(plain.on_epoch(0, 1, 0.3), Decision::Continue);
        assert_eq!(plain.on_epoch(1, 1, 0.6), Decision::Prune);
        let mut s = AshaScheduler::new(1, 3, 10);
        s.on_costs(0, &[2.0]);
        s.on_costs(1, &[1.0]);
        s.on_costs(2, &[3.0]);
        assert_eq!(s.on_epoch(0, 1, 0.3), Decision::Continue);
        assert_eq!(s.on_epoch(1, 1, 0.6), Decision::Continue);
        // Worse and dearer than trial 0: dominated, stopped.
        assert_eq!(s.on_epoch(2, 1, 0.5), Decision::Prune);
        // A tie in cost with a better score dominates too; equal scores do not.
        s.on_costs(3, &[2.0]);
        assert_eq!(s.on_epoch(3, 1, 0.3), Decision::Continue);
    }

    #[test]
    fn a_rung_is_named_by_its_position_and_epochs() {
        let s = AshaScheduler::new(1, 3, 10);
        let at = |e| s.rung(0, e).map(|r| (r.rung, r.epochs));
        assert_eq!(
            (at(1), at(3), at(9), at(2)),
            (Some((0, 1)), Some((1, 3)), Some((2, 9)), None)
        );
    }
}
