//! Studies: trial records, the study's metadata, and where they are stored.

mod ask;
mod journal;
mod journal_lock;
mod liveness;
mod mapping;
mod objectives;
mod open;
mod optuna;
mod postgres;
mod replay;
mod url;

pub use ask::{Best, Outcome, Params, Study, StudyOptions, Trial, TuneError};
pub use journal::JournalStorage;
pub use objectives::{Latency, Objectives};
pub use open::{latest_study, open, open_or_create, StorageOptions, DEFAULT_HEARTBEAT};
pub use optuna::{LOST, LOST_STALE};
pub use postgres::PostgresStorage;
pub use url::{PostgresUrl, StorageUrl, UrlError};

use crate::data::Task;
use crate::search::{Observation, Rung, Sampler, TrialState};
use crate::space::{Config, SearchSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StudyError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: cannot read the study: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// A complete line in the middle of a journal that cannot be read.
    #[error("{path}:{line}: cannot read the journal: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no study named `{0}` under the results directory (run `nas search` first)")]
    Missing(String),
    #[error("trial {0} does not exist in this study")]
    NoTrial(usize),
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached (named without its password), after bounded retries.
    #[error("{url}: cannot reach the database: {message}")]
    Unreachable { url: String, message: String },
    /// The database answered with an error.
    #[error("{url}: {message}")]
    Database { url: String, message: String },
}

/// Which way a value is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Minimize,
    Maximize,
}

/// The score a study ranks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    Accuracy,
    Rmse,
    /// The value of an objective of the user's own ([`Study`]), better in its direction.
    Value(Direction),
}

impl Metric {
    pub fn for_task(task: Task) -> Metric {
        match task {
            Task::Classification => Metric::Accuracy,
            Task::Regression => Metric::Rmse,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Rmse => "rmse",
            Metric::Value(_) => "value",
        }
    }

    pub fn direction(&self) -> Direction {
        match self {
            Metric::Accuracy | Metric::Value(Direction::Maximize) => Direction::Maximize,
            Metric::Rmse | Metric::Value(Direction::Minimize) => Direction::Minimize,
        }
    }

    pub fn higher_is_better(&self) -> bool {
        self.direction() == Direction::Maximize
    }

    /// The score turned lower-is-better, as samplers and schedulers see it.
    pub fn to_loss(&self, score: f64) -> f64 {
        if self.higher_is_better() {
            -score
        } else {
            score
        }
    }

    /// Whether score `a` ranks before score `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        self.to_loss(a) < self.to_loss(b)
    }
}

/// What is fixed for the whole study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyMeta {
    pub name: String,
    pub space_file: String,
    pub space_source: String,
    pub data: String,
    pub task: Task,
    pub metric: Metric,
    pub seed: u64,
    pub folds: usize,
    pub strategy: String,
    pub scheduler: String,
    /// The objectives of a multi-objective study, in order (the score among them); empty for a
    /// study of the score alone, which is recorded as studies always were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<crate::objective::Objective>,
}

/// Everything known about one trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub number: usize,
    pub state: TrialState,
    pub config: Config,
    pub seed: u64,
    /// Mean and standard deviation of the folds' validation scores.
    pub cv_mean: Option<f64>,
    pub cv_std: Option<f64>,
    pub fold_scores: Vec<f64>,
    /// Epochs early stopping chose (mean over folds of the best epoch).
    pub epochs: usize,
    /// Epochs trained, summed over folds.
    pub budget: usize,
    /// Mean best-so-far validation objective (lower is better) per epoch.
    pub intermediate: Vec<f64>,
    pub params: usize,
    pub macs: u64,
    pub architecture: String,
    pub seconds: f64,
    /// Why the trial failed or was rejected.
    pub error: Option<String>,
    /// Each fold's validation curve (empty in journals written before they were recorded).
    #[serde(default)]
    pub curves: Vec<FoldCurve>,
    /// Where the scheduler stopped a pruned trial.
    #[serde(default)]
    pub pruned_at: Option<Rung>,
    /// Constraint values of a constrained multi-objective study, as Optuna keeps them (feasible
    /// when `<= 0`): `value / limit - 1` for each of `--max-params`, `--max-flops` and
    /// `--max-latency` given, NaN where it was not measured (a candidate already infeasible).
    #[serde(default)]
    pub constraints: Vec<f64>,
    /// The candidate's measured inference time, when the study needs it.
    #[serde(default)]
    pub latency: Option<Latency>,
}

/// One fold's validation loss and score after every epoch it trained, and how its training ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FoldCurve {
    /// Validation loss (the training criterion) after each epoch, from epoch 1.
    pub loss: Vec<f64>,
    /// Validation score (accuracy, or RMSE in target units) after each epoch.
    pub score: Vec<f64>,
    /// The epoch of the lowest validation loss, whose score is the fold's score (0: none).
    pub best_epoch: usize,
    /// The epoch at which early stopping ended the fold, its patience used up; `None` when the
    /// fold trained to `max_epochs` or the trial was pruned.
    pub stopped_early: Option<usize>,
}

impl FoldCurve {
    /// Epochs trained.
    pub fn epochs(&self) -> usize {
        self.loss.len()
    }
}

impl TrialRecord {
    pub fn new(number: usize, config: Config, seed: u64) -> TrialRecord {
        TrialRecord {
            number,
            state: TrialState::Running,
            config,
            seed,
            cv_mean: None,
            cv_std: None,
            fold_scores: Vec::new(),
            epochs: 0,
            budget: 0,
            intermediate: Vec::new(),
            params: 0,
            macs: 0,
            architecture: String::new(),
            seconds: 0.0,
            error: None,
            curves: Vec::new(),
            pruned_at: None,
            constraints: Vec::new(),
            latency: None,
        }
    }

    /// The view of this trial that samplers learn from, in a study of the score alone.
    pub fn observation(&self, metric: Metric) -> Observation {
        self.observation_of(&Objectives::single(metric))
    }

    /// The view of this trial that samplers learn from: its loss on the score (the last
    /// intermediate value of a pruned trial), and its losses on every objective.
    pub fn observation_of(&self, objectives: &Objectives) -> Observation {
        let metric = objectives.metric();
        let loss = match self.state {
            TrialState::Complete => self.cv_mean.map(|s| metric.to_loss(s)),
            TrialState::Pruned => self.intermediate.last().copied(),
            _ => None,
        };
        Observation {
            number: self.number,
            config: self.config.clone(),
            state: self.state,
            loss,
            intermediate: self.intermediate.clone(),
            values: loss
                .and_then(|l| objectives.losses_with_score(self, l))
                .unwrap_or_default(),
            constraints: self.constraints.clone(),
        }
    }
}

/// The final model's one evaluation on the held-out test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub trial: usize,
    pub metric: Metric,
    pub test_score: f64,
    pub test_loss: f64,
    pub test_samples: usize,
    pub train_samples: usize,
    pub epochs: usize,
    pub seconds: f64,
}

/// Where a study's trials live. Calls are serialised by the caller.
pub trait Storage: Send {
    fn meta(&self) -> &StudyMeta;
    fn trials(&self) -> &[TrialRecord];
    /// Picks up what other processes recorded since the last read (storages that only one
    /// process writes have nothing to do). Writes catch up by themselves.
    fn refresh(&mut self) -> Result<(), StudyError> {
        Ok(())
    }
    /// Allocates the next trial number and records the trial as running, but only while fewer
    /// than `limit` trials count toward the study's total ([`counts_toward_total`]); the check and
    /// the creation are one step for every process sharing the study. `None` when it is full.
    fn create_trial_within(&mut self, limit: Option<usize>) -> Result<Option<usize>, StudyError>;
    /// Allocates the next trial number and records the trial as running, whatever the count.
    fn create_trial(&mut self) -> Result<usize, StudyError> {
        self.create_trial_within(None)?
            .ok_or_else(|| StudyError::Conflict("no trial was created".into()))
    }
    /// Records the sampled configuration and seed of a running trial.
    fn set_params(&mut self, number: usize, config: Config, seed: u64) -> Result<(), StudyError>;
    /// An intermediate validation objective after `epoch` (counted from 1).
    fn report(&mut self, number: usize, epoch: usize, value: f64) -> Result<(), StudyError>;
    /// Records a trial's final state and values.
    fn finish_trial(&mut self, record: TrialRecord) -> Result<(), StudyError>;
    fn set_test_result(&mut self, result: TestResult) -> Result<(), StudyError>;
    fn test_result(&self) -> Option<&TestResult>;
    /// Fails the running trials whose worker is gone (a journal's owner whose lock is free, a
    /// database trial whose heartbeat is older than the grace period) and returns their
    /// configurations, to run again. Called when a worker starts and before each new trial.
    fn recover_stale(&mut self) -> Result<Vec<Config>, StudyError> {
        Ok(Vec::new())
    }
    /// Where the study lives, for messages.
    fn location(&self) -> String {
        format!("study `{}`", self.meta().name)
    }
}

/// The view of a study's trials that samplers learn from.
pub fn history(trials: &[TrialRecord], metric: Metric) -> Vec<Observation> {
    history_of(trials, &Objectives::single(metric))
}

/// [`history`] in a study of any number of objectives.
pub fn history_of(trials: &[TrialRecord], objectives: &Objectives) -> Vec<Observation> {
    trials
        .iter()
        // Running trials (of other workers and processes) are shown with their configurations so
        // that grid search does not hand out the same point twice and TPE can count them as bad
        // (its constant liar); the models learn from finished ones. A trial being created has no
        // configuration yet.
        .filter(|t| t.state != TrialState::Running || !t.config.is_empty())
        .map(|t| t.observation_of(objectives))
        .collect()
}

/// The configuration of the trial whose seed is `seed`, asked of `sampler` given the study's
/// trials: the one place the search controller and ask-and-tell studies sample, so both give the
/// same suggestions for the same seed and history.
pub fn suggest(
    sampler: &mut dyn Sampler,
    space: &SearchSpace,
    trials: &[TrialRecord],
    metric: Metric,
    seed: u64,
) -> Config {
    suggest_for(
        sampler,
        space,
        trials,
        &Objectives::single(metric),
        seed,
        None,
    )
}

/// [`suggest`] in a study of any number of objectives; in one of several, `costs` (when given)
/// tells the sampler what a configuration costs before training ([`Sampler::suggest_costed`]).
pub fn suggest_for(
    sampler: &mut dyn Sampler,
    space: &SearchSpace,
    trials: &[TrialRecord],
    objectives: &Objectives,
    seed: u64,
    costs: Option<&mut dyn FnMut(&Config) -> crate::search::prescreen::Costs>,
) -> Config {
    let history = history_of(trials, objectives);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match costs {
        Some(costs) if objectives.is_multi() => {
            sampler.suggest_costed(space, &history, &mut rng, costs)
        }
        _ => sampler.suggest(space, &history, &mut rng),
    }
}

/// The best complete trial by mean CV score.
pub fn best_trial(trials: &[TrialRecord], metric: Metric) -> Option<&TrialRecord> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.cv_mean.is_some_and(f64::is_finite))
        .fold(None, |best: Option<&TrialRecord>, t| match best {
            Some(b)
                if !metric.better(t.cv_mean.unwrap_or(f64::NAN), b.cv_mean.unwrap_or(f64::NAN)) =>
            {
                Some(b)
            }
            _ => Some(t),
        })
}

/// Whether a trial uses up one of the trials a study asks for: running or finished, but not
/// lost with a dead process (those run again) nor interrupted by Ctrl-C.
pub fn counts_toward_total(t: &TrialRecord) -> bool {
    let lost = optuna::is_lost(t.error.as_deref());
    matches!(
        t.state,
        TrialState::Running | TrialState::Complete | TrialState::Pruned | TrialState::Failed
    ) && !lost
}

/// `results/<study>`.
pub fn study_dir(results: &std::path::Path, study: &str) -> PathBuf {
    results.join(study)
}
