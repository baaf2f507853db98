//! Hyperband: several ASHA brackets, from aggressive (judged after `min_epochs`) to patient
//! (judged late or never), so a bad guess of how early losses predict final ones costs little.
//!
//! Li, Jamieson, DeSalvo, Rostamizadeh and Talwalkar, "Hyperband: A Novel Bandit-Based Approach
//! to Hyperparameter Optimization", JMLR 2018; run asynchronously over ASHA brackets as in
//! Optuna's `HyperbandPruner`.
//!
//! With `s_max = floor(log_eta(max_epochs / min_epochs))` there are `s_max + 1` brackets;
//! bracket `s` is ASHA with first rung `min_epochs * eta^s`, and trials only compete within
//! their bracket. Bracket `s` receives `ceil((s_max + 1) / (s_max - s + 1) * eta^(s_max - s))`
//! trials out of every cycle of the summed budgets (the paper's allocation, most to the
//! aggressive brackets); trial `n` goes to the bracket holding position `n mod cycle`.

use super::{AshaScheduler, Decision, Rung, Scheduler};

#[derive(Clone, Debug)]
pub struct HyperbandScheduler {
    brackets: Vec<AshaScheduler>,
    /// Trials per cycle given to each bracket.
    budgets: Vec<usize>,
}

impl HyperbandScheduler {
    /// `min_epochs` at least 1 and `eta` at least 2, as for [`AshaScheduler::new`].
    pub fn new(min_epochs: usize, eta: usize, max_epochs: usize) -> HyperbandScheduler {
        let (min_epochs, eta) = (min_epochs.max(1), eta.max(2));
        let mut s_max = 0u32;
        while let Some(b) = eta
            .checked_pow(s_max + 1)
            .and_then(|p| p.checked_mul(min_epochs))
        {
            if b > max_epochs {
                break;
            }
            s_max += 1;
        }
        let n = s_max as usize + 1;
        let brackets = (0..n)
            .map(|s| AshaScheduler::new(min_epochs * eta.pow(s as u32), eta, max_epochs))
            .collect();
        let budgets = (0..n)
            .map(|s| {
                let paper_s = (n - 1 - s) as i32;
                (n as f64 / (paper_s + 1) as f64 * (eta as f64).powi(paper_s)).ceil() as usize
            })
            .collect();
        HyperbandScheduler { brackets, budgets }
    }

    /// The defaults: one epoch at the first rung of the most aggressive bracket, factor 3.
    pub fn with_max_epochs(max_epochs: usize) -> HyperbandScheduler {
        HyperbandScheduler::new(1, 3, max_epochs)
    }

    pub fn brackets(&self) -> &[AshaScheduler] {
        &self.brackets
    }

    /// Trials per cycle given to each bracket.
    pub fn budgets(&self) -> &[usize] {
        &self.budgets
    }

    /// The bracket of trial number `trial` (a function of the number alone).
    pub fn bracket_of(&self, trial: usize) -> usize {
        let cycle: usize = self.budgets.iter().sum();
        let mut pos = trial % cycle.max(1);
        for (s, b) in self.budgets.iter().enumerate() {
            if pos < *b {
                return s;
            }
            pos -= b;
        }
        0
    }
}

impl Scheduler for HyperbandScheduler {
    fn name(&self) -> &'static str {
        "hyperband"
    }

    fn on_epoch(&mut self, trial: usize, epoch: usize, loss: f64) -> Decision {
        let s = self.bracket_of(trial);
        self.brackets[s].on_epoch(trial, epoch, loss)
    }

    fn on_costs(&mut self, trial: usize, costs: &[f64]) {
        let s = self.bracket_of(trial);
        self.brackets[s].on_costs(trial, costs);
    }

    fn on_trial_end(&mut self, trial: usize) {
        let s = self.bracket_of(trial);
        self.brackets[s].on_trial_end(trial);
    }

    fn rung(&self, trial: usize, epoch: usize) -> Option<Rung> {
        let s = self.bracket_of(trial);
        let r = self.brackets[s].rung(trial, epoch)?;
        Some(Rung {
            bracket: Some(s),
            ..r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_start_at_growing_budgets_with_the_papers_allocation() {
        let h = HyperbandScheduler::new(1, 3, 81);
        let firsts: Vec<usize> = h.brackets().iter().map(|b| b.min_epochs()).collect();
        assert_eq!(firsts, [1, 3, 9, 27, 81]);
        // Hyperband paper, Table 1 (R = 81, eta = 3): n = 81, 34, 15, 8, 5.
        assert_eq!(h.budgets(), [81, 34, 15, 8, 5]);
        assert!(h.brackets()[4].rungs().is_empty());
    }
}
