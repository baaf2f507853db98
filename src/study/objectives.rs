//! A study's objectives as its trials record them: directions, one value per objective, the
//! names Optuna shows, and the Pareto ranking of trials under constrained domination.

use super::{Direction, Metric, StudyMeta, TrialRecord};
use crate::objective::Objective;
use crate::pareto;
use crate::search::TrialState;
use serde::{Deserialize, Serialize};

/// A candidate's measured inference time (see `nn::latency`): thread CPU time of forward passes
/// on one thread, after warm-up, with training in this process paused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median milliseconds of one forward pass of one sample (batch 1): the `latency` objective.
    pub ms: f64,
    /// Median milliseconds per sample in forward passes of `batch` samples.
    pub batch_ms: f64,
    pub batch: usize,
    /// Spread of the batch-1 repetitions: their interquartile range over their median.
    pub spread: f64,
    /// Timed repetitions at batch 1 (each of enough forward passes to last about a millisecond).
    pub repeats: usize,
    /// Median wall-clock milliseconds at batch 1, for comparison with the CPU time.
    pub wall_ms: f64,
}

/// The objectives of a study, with its metric (which says the score's direction).
#[derive(Clone, Debug, PartialEq)]
pub struct Objectives {
    list: Vec<Objective>,
    metric: Metric,
}

impl Objectives {
    /// A study of the score alone.
    pub fn single(metric: Metric) -> Objectives {
        Objectives {
            list: vec![Objective::Score],
            metric,
        }
    }

    /// `list` (empty: the score alone) with the score's `metric`.
    pub fn new(list: &[Objective], metric: Metric) -> Objectives {
        if list.is_empty() {
            return Objectives::single(metric);
        }
        Objectives {
            list: list.to_vec(),
            metric,
        }
    }

    pub fn of(meta: &StudyMeta) -> Objectives {
        Objectives::new(&meta.objectives, meta.metric)
    }

    pub fn list(&self) -> &[Objective] {
        &self.list
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Whether the study records several values per trial.
    pub fn is_multi(&self) -> bool {
        self.list.len() > 1
    }

    /// Whether candidates must be timed.
    pub fn needs_latency(&self) -> bool {
        self.list.contains(&Objective::Latency)
    }

    pub fn direction(&self, o: Objective) -> Direction {
        match o {
            Objective::Score => self.metric.direction(),
            _ => Direction::Minimize,
        }
    }

    pub fn directions(&self) -> Vec<Direction> {
        self.list.iter().map(|o| self.direction(*o)).collect()
    }

    /// Where the score is among the values.
    pub fn score_index(&self) -> usize {
        self.list
            .iter()
            .position(|o| *o == Objective::Score)
            .unwrap_or(0)
    }

    /// The objectives' names, as Optuna's `study:metric_names` keeps them.
    pub fn names(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|o| match o {
                Objective::Score => format!("cv {}", self.metric.label()),
                Objective::Params => "params".into(),
                Objective::Macs => "MACs".into(),
                Objective::Latency => "latency ms".into(),
            })
            .collect()
    }

    /// One objective's value of a trial in its own unit and direction, when known.
    pub fn value(&self, o: Objective, r: &TrialRecord) -> Option<f64> {
        match o {
            Objective::Score => r.cv_mean,
            Objective::Params => Some(r.params as f64),
            Objective::Macs => Some(r.macs as f64),
            Objective::Latency => r.latency.as_ref().map(|l| l.ms),
        }
        .filter(|v| v.is_finite())
    }

    /// The cost objectives' values of a trial (every objective but the score, all lower is
    /// better), known before training; `None` in a single-objective study or while one is
    /// unknown.
    pub fn costs(&self, r: &TrialRecord) -> Option<Vec<f64>> {
        if !self.is_multi() {
            return None;
        }
        self.list
            .iter()
            .filter(|o| o.known_before_training())
            .map(|o| self.value(*o, r))
            .collect()
    }

    /// A complete trial's values, one per objective, as the journal records them.
    pub fn values(&self, r: &TrialRecord) -> Option<Vec<f64>> {
        if r.state != TrialState::Complete {
            return None;
        }
        self.list.iter().map(|o| self.value(*o, r)).collect()
    }

    /// A trial's values turned lower-is-better, with `score_loss` for the score (the score's
    /// loss, or a pruned trial's last intermediate value).
    pub fn losses_with_score(&self, r: &TrialRecord, score_loss: f64) -> Option<Vec<f64>> {
        if !score_loss.is_finite() {
            return None;
        }
        self.list
            .iter()
            .map(|o| match o {
                Objective::Score => Some(score_loss),
                o => self.value(*o, r),
            })
            .collect()
    }

    /// A complete trial's values turned lower-is-better.
    pub fn losses(&self, r: &TrialRecord) -> Option<Vec<f64>> {
        let score = self.metric.to_loss(r.cv_mean?);
        self.values(r)?;
        self.losses_with_score(r, score)
    }

    /// Turns values in the objectives' own directions lower-is-better, and back.
    pub fn to_losses(&self, values: &[f64]) -> Vec<f64> {
        values
            .iter()
            .zip(&self.list)
            .map(|(v, o)| match self.direction(*o) {
                Direction::Maximize => -v,
                Direction::Minimize => *v,
            })
            .collect()
    }

    /// The Pareto front of every complete trial with all its values, 1 for the first, under
    /// constrained domination (infeasible trials in fronts behind every feasible one); `None`
    /// for the other trials. Within a study of the score alone the fronts are the distinct
    /// scores, best first.
    pub fn fronts(&self, trials: &[TrialRecord]) -> Vec<Option<usize>> {
        let ranked: Vec<(usize, Vec<f64>)> = trials
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.losses(t).map(|l| (i, l)))
            .collect();
        let losses: Vec<Vec<f64>> = ranked.iter().map(|(_, l)| l.clone()).collect();
        let violations: Vec<f64> = ranked
            .iter()
            .map(|(i, _)| pareto::violation(&trials[*i].constraints))
            .collect();
        let mut out = vec![None; trials.len()];
        for ((i, _), f) in ranked.iter().zip(pareto::fronts(&losses, &violations)) {
            out[*i] = Some(f + 1);
        }
        out
    }

    /// The trials of the first front: complete, feasible, dominated by no other (Optuna's
    /// `study.best_trials`), in trial order.
    pub fn best_trials<'a>(&self, trials: &'a [TrialRecord]) -> Vec<&'a TrialRecord> {
        trials
            .iter()
            .zip(self.fronts(trials))
            .filter(|(t, f)| *f == Some(1) && pareto::violation(&t.constraints) <= 0.0)
            .map(|(t, _)| t)
            .collect()
    }

    /// The trial a multi-objective study retrains and exports by default: on the first front,
    /// best on the first objective (then the lowest number); in a study of the score alone, the
    /// best score.
    pub fn best<'a>(&self, trials: &'a [TrialRecord]) -> Option<&'a TrialRecord> {
        if !self.is_multi() {
            return super::best_trial(trials, self.metric);
        }
        let first = |t: &TrialRecord| {
            self.losses(t)
                .and_then(|l| l.first().copied())
                .unwrap_or(f64::INFINITY)
        };
        self.best_trials(trials)
            .into_iter()
            .min_by(|a, b| first(a).total_cmp(&first(b)).then(a.number.cmp(&b.number)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Config;

    fn trial(n: usize, score: f64, params: usize, constraints: Vec<f64>) -> TrialRecord {
        let mut t = TrialRecord::new(n, Config::new(), 0);
        t.state = TrialState::Complete;
        t.cv_mean = Some(score);
        t.params = params;
        t.constraints = constraints;
        t
    }

    #[test]
    fn infeasible_trials_rank_behind_every_feasible_one() {
        let o = Objectives::new(&[Objective::Score, Objective::Params], Metric::Accuracy);
        let trials = vec![
            trial(0, 0.9, 100, vec![-0.5]),
            trial(1, 0.8, 50, vec![-0.5]),
            trial(2, 0.7, 200, vec![-0.5]),
            // Better than every other on both objectives, but over a limit.
            trial(3, 0.99, 10, vec![0.2]),
            trial(4, 0.99, 10, vec![0.1]),
        ];
        assert_eq!(
            o.fronts(&trials),
            vec![Some(1), Some(1), Some(2), Some(4), Some(3)]
        );
        let best: Vec<usize> = o.best_trials(&trials).iter().map(|t| t.number).collect();
        assert_eq!(best, [0, 1]);
        assert_eq!(o.best(&trials).map(|t| t.number), Some(0));
    }
}
