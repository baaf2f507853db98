//! What a search shows while it runs: the controller reports events (trials started and finished,
//! a fold's epoch done on a worker) to one [`Progress`], drawn live on a terminal, written as plain
//! log lines elsewhere, or nowhere.
//!
//! Training threads only hand a few numbers to a `Progress`, once per fold and epoch; drawing
//! happens on a thread of its own, a few times a second ([`live`]).

mod board;
mod live;

pub use board::{Board, WorkerState};
pub use live::Live;

use crate::objective::Objective;
use crate::search::TrialState;
use crate::space::short_float;
use crate::study::{Metric, TrialRecord};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the display knows of a search before its first trial.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub metric: Metric,
    /// The trials the study should hold in all (`--trials`), if that is a limit.
    pub trials: Option<usize>,
    /// No new trial starts after this long (`--time-budget`), if that is a limit.
    pub time_budget: Option<Duration>,
    pub workers: usize,
    /// Trials of the study that had finished before this run (and count towards `trials`).
    pub done: usize,
    /// The study's best complete trial before this run: its number and score.
    pub best: Option<(usize, f64)>,
    /// The objectives of a multi-objective study (empty for the score alone): a trial's line
    /// shows its value on each cost objective.
    pub objectives: Vec<Objective>,
}

impl Plan {
    /// What a display assumes of a search that never said: a study of accuracy, without limits.
    pub fn unknown() -> Plan {
        Plan {
            metric: Metric::Accuracy,
            trials: None,
            time_budget: None,
            workers: 1,
            done: 0,
            best: None,
            objectives: Vec::new(),
        }
    }
}

/// One fold of a trial has trained an epoch and been validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FoldEpoch {
    /// Counted from 1.
    pub fold: usize,
    pub folds: usize,
    /// Counted from 1.
    pub epoch: usize,
    pub max_epochs: usize,
    /// The fold's validation loss after this epoch (the training criterion).
    pub valid_loss: f64,
}

/// What happened in a search; `worker` counts from 0.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    TrialStarted {
        worker: usize,
        trial: usize,
    },
    Epoch {
        worker: usize,
        fold: FoldEpoch,
    },
    /// Sent before the trial is saved, as the plain log has always printed it.
    TrialFinished {
        worker: usize,
        record: &'a TrialRecord,
    },
    /// The worker takes no more trials.
    WorkerDone {
        worker: usize,
    },
}

/// Where a search reports its progress. Shared by the workers; every call must be cheap.
pub trait Progress: Send + Sync {
    /// A run of the controller begins.
    fn start(&self, plan: &Plan);
    fn event(&self, event: Event<'_>);
    /// A message for the user now (Ctrl-C): printed so that it does not garble the display.
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
    /// The run is over: the live display is cleared (what it logged stays).
    fn finish(&self) {}
}

/// No progress at all: what library users (and `--quiet`) get.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &Plan) {}
    fn event(&self, _: Event<'_>) {}
}

/// One line on stderr per finished trial, for logs and pipes.
#[derive(Debug, Default)]
pub struct PlainLog {
    plan: Mutex<Option<Plan>>,
}

impl Progress for PlainLog {
    fn start(&self, plan: &Plan) {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = Some(plan.clone());
    }

    fn event(&self, event: Event<'_>) {
        if let Event::TrialFinished { record, .. } = event {
            let line = {
                let plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
                trial_line(record, plan.as_ref().unwrap_or(&Plan::unknown()))
            };
            eprintln!("{line}");
        }
    }
}

/// How `nas search` shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bars redrawn in place ([`Live`]).
    Live,
    /// One line per finished trial ([`PlainLog`]).
    Plain,
    /// Nothing ([`Silent`]).
    Off,
}

impl Mode {
    /// The mode for standard error as it is: see [`Mode::choose`] and [`can_redraw`].
    pub fn for_stderr(quiet: bool) -> Mode {
        let term = std::env::var("TERM").ok();
        Mode::choose(
            quiet,
            can_redraw(std::io::stderr().is_terminal(), term.as_deref()),
        )
    }

    /// `--quiet` shows no progress; a terminal that can be redrawn gets the live display; a pipe,
    /// a file or a dumb terminal, plain lines.
    pub fn choose(quiet: bool, redraws: bool) -> Mode {
        match (quiet, redraws) {
            (true, _) => Mode::Off,
            (false, true) => Mode::Live,
            (false, false) => Mode::Plain,
        }
    }

    pub fn build(self) -> Arc<dyn Progress> {
        match self {
            Mode::Live => Arc::new(Live::default()),
            Mode::Plain => Arc::new(PlainLog::default()),
            Mode::Off => Arc::new(Silent),
        }
    }
}

/// Whether standard error can be redrawn in place: it is a terminal, and `TERM` names one other
/// than `dumb` (indicatif, as its `console` crate, draws nothing on a dumb terminal, so the live
/// display would show nothing there, not even the finished trials).
pub fn can_redraw(is_terminal: bool, term: Option<&str>) -> bool {
    is_terminal && !matches!(term, None | Some("dumb"))
}

/// A finished trial as one log line:
/// `trial 3/20  complete   cv accuracy 0.9650 ± 0.0100  [mlp 64-64 relu; 4810 params]  1.2s`;
/// in a multi-objective study the bracket holds every cost objective
/// (`[cnn ..; 4810 params; 1.2M MACs; 0.041 ms]`), and a measured latency is always shown.
pub fn trial_line(r: &TrialRecord, plan: &Plan) -> String {
    let metric = plan.metric;
    let total = plan.trials.map(|n| format!("/{n}")).unwrap_or_default();
    let outcome = match (r.state, r.cv_mean, &r.error) {
        (TrialState::Complete, Some(m), _) => format!(
            "cv {} {:.4} ± {:.4}",
            metric.label(),
            m,
            r.cv_std.unwrap_or(0.0)
        ),
        (TrialState::Pruned, _, _) => format!("pruned after {} epochs", r.epochs),
        (_, _, Some(e)) => format!("{}: {e}", r.state.label()),
        _ => r.state.label().to_string(),
    };
    let macs = if plan.objectives.contains(&Objective::Macs) {
        format!("; {} MACs", crate::leaderboard::human(r.macs))
    } else {
        String::new()
    };
    let latency = r
        .latency
        .as_ref()
        .map(|l| format!("; {} ms", short_float(l.ms)))
        .unwrap_or_default();
    format!(
        "trial {}{total}  {:<10} {outcome}  [{}; {} params{macs}{latency}]  {:.1}s",
        r.number,
        r.state.label(),
        r.architecture,
        r.params,
        r.seconds
    )
}

/// `41s`, `3m 12s`, `1h 05m`: a time left, to the second under an hour.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Config;

    fn record(number: usize, state: TrialState) -> TrialRecord {
        let mut r = TrialRecord::new(number, Config::default(), 0);
        r.state = state;
        r.architecture = "mlp 16 relu".into();
        r.params = 100;
        r.seconds = 1.25;
        r
    }

    #[test]
    fn a_terminal_gets_the_live_display_a_pipe_plain_lines_and_quiet_nothing() {
        assert_eq!(Mode::choose(false, true), Mode::Live);
        assert_eq!(Mode::choose(false, false), Mode::Plain);
        assert_eq!(Mode::choose(true, true), Mode::Off);
        assert_eq!(Mode::choose(true, false), Mode::Off);
    }

    #[test]
    fn only_a_terminal_with_a_term_other_than_dumb_is_redrawn() {
        assert!(can_redraw(true, Some("xterm-256color")));
        assert!(can_redraw(true, Some("tmux-256color")));
        assert!(!can_redraw(true, Some("dumb")));
        assert!(!can_redraw(true, None));
        assert!(!can_redraw(false, Some("xterm")));
    }

    #[test]
    fn the_trial_line_is_the_one_the_plain_log_has_always_printed() {
        let mut r = record(3, TrialState::Complete);
        r.cv_mean = Some(0.965);
        r.cv_std = Some(0.01);
        let plan = |metric, trials| Plan {
            metric,
            trials,
            ..Plan::unknown()
        };
        assert_eq!(
            trial_line(&r, &plan(Metric::Accuracy, Some(20))),
            "trial 3/20  complete   cv accuracy 0.9650 ± 0.0100  [mlp 16 relu; 100 params]  1.2s"
        );
        let mut r = record(4, TrialState::Failed);
        r.error = Some("diverged".into());
        assert_eq!(
            trial_line(&r, &plan(Metric::Rmse, None)),
            "trial 4  failed     failed: diverged  [mlp 16 relu; 100 params]  1.2s"
        );
        let mut r = record(5, TrialState::Pruned);
        r.epochs = 3;
        assert!(trial_line(&r, &plan(Metric::Accuracy, Some(9)))
            .starts_with("trial 5/9  pruned     pruned after 3 epochs  ["));
    }

    #[test]
    fn a_multi_objective_trial_line_shows_its_cost_objectives() {
        let mut r = record(6, TrialState::Complete);
        r.cv_mean = Some(0.9);
        r.cv_std = Some(0.0);
        r.macs = 1_234_567;
        r.latency = Some(crate::study::Latency {
            ms: 0.0412,
            batch_ms: 0.01,
            batch: 64,
            spread: 0.01,
            repeats: 41,
            wall_ms: 0.0415,
        });
        let plan = Plan {
            objectives: vec![Objective::Score, Objective::Macs, Objective::Latency],
            ..Plan::unknown()
        };
        assert_eq!(
            trial_line(&r, &plan),
            "trial 6  complete   cv accuracy 0.9000 ± 0.0000  [mlp 16 relu; 100 params; 1234.6k MACs; 0.0412 ms]  1.2s"
        );
        // The score alone: no MACs, and the latency only because it was measured.
        r.latency = None;
        assert!(trial_line(&r, &Plan::unknown()).ends_with("[mlp 16 relu; 100 params]  1.2s"));
    }

    #[test]
    fn durations_read_in_seconds_minutes_or_hours() {
        assert_eq!(human_duration(Duration::from_secs(41)), "41s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(human_duration(Duration::from_secs(3900)), "1h 05m");
    }
}
