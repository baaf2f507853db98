//! The live display's state and the text of its lines, apart from any terminal so that tests can
//! read what it would show. Times are given as the time since the search started.

use super::{human_duration, trial_line, Event, FoldEpoch, Plan};
use crate::search::TrialState;
use std::time::Duration;

/// What one worker is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WorkerState {
    /// Before its first trial, or between two.
    Idle,
    /// Training `trial` since `since`; `last` is the latest fold epoch it finished.
    Trial {
        trial: usize,
        since: Duration,
        last: Option<FoldEpoch>,
    },
    /// It takes no more trials.
    Done,
}

/// Everything the live display shows, updated by [`Event`]s.
#[derive(Clone, Debug)]
pub struct Board {
    plan: Plan,
    /// Finished trials of the study that count towards `--trials` (those before this run too).
    done: usize,
    /// Trials finished in this run, and when the last of them did: the pace the ETA assumes.
    finished_now: usize,
    last_finish: Duration,
    /// The best complete trial so far: its number and score.
    best: Option<(usize, f64)>,
    workers: Vec<WorkerState>,
    /// Lines to print above the display (one per finished trial), not yet printed.
    log: Vec<String>,
}

impl Board {
    pub fn new(plan: &Plan) -> Board {
        Board {
            done: plan.done,
            finished_now: 0,
            last_finish: Duration::ZERO,
            best: plan.best,
            workers: vec![WorkerState::Idle; plan.workers.max(1)],
            log: Vec::new(),
            plan: plan.clone(),
        }
    }

    /// Takes `event`, which happened `at` after the start.
    pub fn apply(&mut self, event: Event<'_>, at: Duration) {
        let worker = match event {
            Event::TrialStarted { worker, .. }
            | Event::Epoch { worker, .. }
            | Event::TrialFinished { worker, .. }
            | Event::WorkerDone { worker } => worker,
        };
        if worker >= self.workers.len() {
            self.workers.resize(worker + 1, WorkerState::Idle);
        }
        let state = &mut self.workers[worker];
        match event {
            Event::TrialStarted { trial, .. } => {
                *state = WorkerState::Trial {
                    trial,
                    since: at,
                    last: None,
                }
            }
            Event::Epoch { fold, .. } => {
                if let WorkerState::Trial { last, .. } = state {
                    *last = Some(fold);
                }
            }
            Event::TrialFinished { record, .. } => {
                *state = WorkerState::Idle;
                self.log.push(trial_line(record, &self.plan));
                if matches!(
                    record.state,
                    TrialState::Complete | TrialState::Pruned | TrialState::Failed
                ) {
                    self.done += 1;
                    self.finished_now += 1;
                    self.last_finish = at;
                }
                let score = record.cv_mean.filter(|s| s.is_finite());
                if let (TrialState::Complete, Some(s)) = (record.state, score) {
                    let metric = self.plan.metric;
                    if self.best.is_none_or(|(_, b)| metric.better(s, b)) {
                        self.best = Some((record.number, s));
                    }
                }
            }
            Event::WorkerDone { .. } => *state = WorkerState::Done,
        }
    }

    /// The log lines not yet taken, oldest first.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    pub fn workers(&self) -> &[WorkerState] {
        &self.workers
    }

    /// How full the bar is, as (position, length): trials done of the total, or else seconds
    /// spent of the time budget.
    pub fn bar(&self, at: Duration) -> (u64, u64) {
        match (self.plan.trials, self.plan.time_budget) {
            (Some(total), _) => (self.done.min(total) as u64, total as u64),
            (None, Some(budget)) => (at.min(budget).as_secs(), budget.as_secs().max(1)),
            (None, None) => (0, 0),
        }
    }

    /// The text beside the bar: trials done, time left, the best score so far.
    pub fn status(&self, at: Duration) -> String {
        let budget_left = self.plan.time_budget.map(|b| b.saturating_sub(at));
        let mut parts = Vec::new();
        match self.plan.trials {
            Some(total) => {
                parts.push(format!("{}/{total} trials", self.done.min(total)));
                parts.push(match self.eta(at) {
                    Some(eta) => format!("ETA {}", human_duration(eta)),
                    None => "ETA --".into(),
                });
                if let Some(left) = budget_left {
                    parts.push(format!("time left {}", human_duration(left)));
                }
            }
            None => {
                if let Some(left) = budget_left {
                    parts.push(format!("time left {}", human_duration(left)));
                }
                let s = if self.done == 1 { "" } else { "s" };
                parts.push(format!("{} trial{s} done", self.done));
            }
        }
        parts.push(match self.best {
            Some((trial, score)) => format!(
                "best cv {} {score:.4} (trial {trial})",
                self.plan.metric.label()
            ),
            None => "no complete trial yet".into(),
        });
        parts.join(" · ")
    }

    /// Time until the last trial ends, at the pace of this run's finished trials (none before the
    /// first has finished), and no later than the time budget.
    pub fn eta(&self, at: Duration) -> Option<Duration> {
        let left = self.plan.trials?.saturating_sub(self.done);
        let budget_left = self.plan.time_budget.map(|b| b.saturating_sub(at));
        let by_pace = if left == 0 {
            Some(Duration::ZERO)
        } else if self.finished_now == 0 {
            None
        } else {
            let per_trial = self.last_finish / self.finished_now as u32;
            Some((per_trial * left as u32).saturating_sub(at.saturating_sub(self.last_finish)))
        };
        match (by_pace, budget_left) {
            (Some(p), Some(b)) => Some(p.min(b)),
            (p, _) => p,
        }
    }

    /// One worker's line: its trial, fold, epoch of the maximum and last validation loss.
    pub fn worker_line(&self, worker: usize, at: Duration) -> String {
        let name = format!("worker {:>2}", worker + 1);
        match self.workers.get(worker) {
            None | Some(WorkerState::Idle) => format!("{name}  idle"),
            Some(WorkerState::Done) => format!("{name}  done"),
            Some(WorkerState::Trial { trial, since, last }) => {
                let took = human_duration(at.saturating_sub(*since));
                let trial = format!("trial {trial:<4}");
                match last {
                    None => format!("{name}  {trial}  starting  {took}"),
                    Some(f) => format!(
                        "{name}  {trial}  fold {}/{}  epoch {:>w$}/{}  val loss {:.4}  {took}",
                        f.fold,
                        f.folds,
                        f.epoch,
                        f.max_epochs,
                        f.valid_loss,
                        w = f.max_epochs.to_string().len()
                    ),
                }
            }
        }
    }

    /// Every line of the display below the bar: the status, then one line per worker.
    pub fn lines(&self, at: Duration) -> Vec<String> {
        std::iter::once(self.status(at))
            .chain((0..self.workers.len()).map(|w| self.worker_line(w, at)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Config;
    use crate::study::{Metric, TrialRecord};

    fn plan(trials: Option<usize>, time_budget: Option<Duration>) -> Plan {
        Plan {
            metric: Metric::Accuracy,
            trials,
            time_budget,
            workers: 2,
            done: 0,
            best: None,
            objectives: Vec::new(),
        }
    }

    fn complete(number: usize, score: f64) -> TrialRecord {
        let mut r = TrialRecord::new(number, Config::default(), 0);
        r.state = TrialState::Complete;
        r.cv_mean = Some(score);
        r.cv_std = Some(0.0);
        r.architecture = "mlp 8".into();
        r.params = 10;
        r.seconds = 2.0;
        r
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn epoch(fold: usize, epoch: usize, valid_loss: f64) -> FoldEpoch {
        FoldEpoch {
            fold,
            folds: 3,
            epoch,
            max_epochs: 30,
            valid_loss,
        }
    }

    #[test]
    fn before_any_event_the_workers_are_idle_and_nothing_is_known() {
        let b = Board::new(&plan(Some(6), None));
        assert_eq!(
            b.lines(secs(0)),
            [
                "0/6 trials · ETA -- · no complete trial yet",
                "worker  1  idle",
                "worker  2  idle"
            ]
        );
        assert_eq!(b.bar(secs(0)), (0, 6));
    }

    #[test]
    fn each_worker_line_shows_its_trial_fold_epoch_and_last_validation_loss() {
        let mut b = Board::new(&plan(Some(6), None));
        b.apply(
            Event::TrialStarted {
                worker: 0,
                trial: 0,
            },
            secs(0),
        );
        b.apply(
            Event::TrialStarted {
                worker: 1,
                trial: 1,
            },
            secs(1),
        );
        b.apply(
            Event::Epoch {
                worker: 0,
                fold: epoch(1, 1, 0.91234),
            },
            secs(2),
        );
        b.apply(
            Event::Epoch {
                worker: 0,
                fold: epoch(2, 1, 0.5),
            },
            secs(3),
        );
        assert_eq!(
            b.worker_line(0, secs(4)),
            "worker  1  trial 0     fold 2/3  epoch  1/30  val loss 0.5000  4s"
        );
        assert_eq!(
            b.worker_line(1, secs(4)),
            "worker  2  trial 1     starting  3s"
        );
    }

    #[test]
    fn a_finished_trial_is_logged_counted_and_may_become_the_best() {
        let mut b = Board::new(&plan(Some(4), None));
        b.apply(
            Event::TrialStarted {
                worker: 0,
                trial: 0,
            },
            secs(0),
        );
        let r = complete(0, 0.9);
        b.apply(
            Event::TrialFinished {
                worker: 0,
                record: &r,
            },
            secs(10),
        );
        let worse = complete(1, 0.8);
        b.apply(
            Event::TrialFinished {
                worker: 1,
                record: &worse,
            },
            secs(10),
        );
        // Two trials in 10 s: two more take 10 s more, of which 4 have passed.
        assert_eq!(
            b.status(secs(14)),
            "2/4 trials · ETA 6s · best cv accuracy 0.9000 (trial 0)"
        );
        assert_eq!(b.worker_line(0, secs(14)), "worker  1  idle");
        assert_eq!(b.bar(secs(14)), (2, 4));
        let log = b.take_log();
        assert_eq!(log.len(), 2);
        assert!(
            log[0].starts_with("trial 0/4  complete   cv accuracy 0.9000"),
            "{log:?}"
        );
        assert!(b.take_log().is_empty(), "the log is taken once");
    }

    #[test]
    fn the_best_of_a_regression_is_the_lowest_rmse() {
        let mut p = plan(Some(4), None);
        p.metric = Metric::Rmse;
        let mut b = Board::new(&p);
        for (n, s) in [(0, 3.0), (1, 2.0), (2, 5.0)] {
            let r = complete(n, s);
            b.apply(
                Event::TrialFinished {
                    worker: 0,
                    record: &r,
                },
                secs(1),
            );
        }
        assert!(b.status(secs(1)).ends_with("best cv rmse 2.0000 (trial 1)"));
    }

    #[test]
    fn interrupted_trials_do_not_count_and_failed_ones_do_not_become_the_best() {
        let mut b = Board::new(&plan(Some(4), None));
        let mut r = complete(0, 0.99);
        r.state = TrialState::Interrupted;
        b.apply(
            Event::TrialFinished {
                worker: 0,
                record: &r,
            },
            secs(1),
        );
        r.state = TrialState::Failed;
        b.apply(
            Event::TrialFinished {
                worker: 0,
                record: &r,
            },
            secs(1),
        );
        assert!(b.status(secs(1)).starts_with("1/4 trials"));
        assert!(b.status(secs(1)).ends_with("no complete trial yet"));
    }

    #[test]
    fn a_resumed_study_starts_from_its_finished_trials_and_best() {
        let mut p = plan(Some(10), None);
        p.done = 7;
        p.best = Some((3, 0.95));
        let b = Board::new(&p);
        assert_eq!(
            b.status(secs(0)),
            "7/10 trials · ETA -- · best cv accuracy 0.9500 (trial 3)"
        );
        assert_eq!(b.bar(secs(0)), (7, 10));
    }

    #[test]
    fn with_only_a_time_budget_the_bar_is_the_time_spent() {
        let mut b = Board::new(&plan(None, Some(secs(300))));
        let r = complete(0, 0.5);
        b.apply(
            Event::TrialFinished {
                worker: 0,
                record: &r,
            },
            secs(20),
        );
        assert_eq!(b.bar(secs(72)), (72, 300));
        assert_eq!(
            b.status(secs(72)),
            "time left 3m 48s · 1 trial done · best cv accuracy 0.5000 (trial 0)"
        );
        assert_eq!(b.bar(secs(400)), (300, 300));
    }

    #[test]
    fn with_trials_and_a_time_budget_the_eta_is_no_later_than_the_budget() {
        let mut b = Board::new(&plan(Some(100), Some(secs(60))));
        let r = complete(0, 0.5);
        b.apply(
            Event::TrialFinished {
                worker: 0,
                record: &r,
            },
            secs(10),
        );
        assert_eq!(b.eta(secs(10)), Some(secs(50)));
        assert!(b
            .status(secs(10))
            .starts_with("1/100 trials · ETA 50s · time left 50s"));
    }

    #[test]
    fn a_worker_without_trials_left_is_done() {
        let mut b = Board::new(&plan(Some(1), None));
        b.apply(Event::WorkerDone { worker: 1 }, secs(1));
        assert_eq!(b.worker_line(1, secs(1)), "worker  2  done");
    }
}
