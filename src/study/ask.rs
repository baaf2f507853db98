//! Ask-and-tell: a study for people who bring their own model or objective, as Optuna's
//! `study.ask()` / `study.tell()`.
//!
//! A [`Study`] samples configurations from a [`SearchSpace`] with the same samplers and
//! schedulers as `nas search`, and keeps its trials in the same Optuna-compatible journal
//! (`<results>/<name>/journal.log`), so `nas leaderboard --results <results> --study <name>` and
//! Optuna's `load_study` read it as they read a search. What runs between `ask` and `tell` is
//! yours: train a model of your own, call a simulator, evaluate a function.
//!
//! Values are given in the study's own direction ([`Metric::Value`] with [`Direction`], or
//! [`Metric::Accuracy`] / [`Metric::Rmse`]) and stored as the journal stores a search's scores:
//! as they are, with the Optuna study created MAXIMIZE or MINIMIZE to match.
//!
//! ```
//! use nas::search::{Decision, SchedulerKind, Strategy};
//! use nas::space::SearchSpace;
//! use nas::study::{Direction, Metric, Outcome, Study, StudyOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The space format names its parameters (see search_spaces/README.md); the training
//! // settings serve as the inputs of any function.
//! let space = SearchSpace::from_str_named(
//!     "(task: Regression, model: Mlp((depth: Fixed(1), width: Fixed(8))),
//!       train: (learning_rate: LogRange(1e-4, 1.0), weight_decay: Range(0.0, 1.0)))",
//!     "quadratic",
//!     "inline",
//! )?;
//! let results = tempfile::tempdir()?;
//! let options = StudyOptions {
//!     strategy: Strategy::Tpe,
//!     scheduler: SchedulerKind::Fifo,
//!     seed: 7,
//!     metric: Metric::Value(Direction::Minimize),
//! };
//! let study = Study::create(results.path(), "quadratic", space, options)?;
//! for _ in 0..20 {
//!     let mut trial = study.ask()?;
//!     let x = trial.float("learning_rate")?.log10() + 2.0; // best at 1e-2
//!     let y = trial.float("weight_decay")? - 0.5;
//!     if trial.report(1, x * x + y * y)? == Decision::Prune {
//!         study.tell(trial, Outcome::Pruned)?;
//!         continue;
//!     }
//!     study.tell(trial, Outcome::Complete(x * x + y * y))?;
//! }
//! let best = study.best()?.expect("a trial completed");
//! assert!(best.value < 1.0);
//! println!("trial {}: {} at learning_rate {}", best.number, best.value,
//!          best.params.float("learning_rate")?);
//! # Ok(())
//! # }
//! ```

use super::{
    best_trial, open_or_create, study_dir, suggest, Direction, Metric, Storage, StorageUrl,
    StudyError, StudyMeta, TrialRecord,
};
use crate::leaderboard::{self, Format};
use crate::search::{
    Decision, Sampler, Scheduler, SchedulerKind, SearchError, Strategy, TrialState,
};
use crate::seed::derive_seed;
use crate::space::{Choice, Config, Distribution, ParamValue, SearchSpace};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TuneError {
    #[error(transparent)]
    Study(#[from] StudyError),
    #[error(transparent)]
    Search(#[from] SearchError),
    /// `create` found a study of that name with another space or direction.
    #[error("study `{name}` already exists with a different {what}; use another name")]
    Changed { name: String, what: &'static str },
    #[error("the search space has no parameter `{0}`")]
    NoParam(String),
    /// The parameter exists but its condition does not hold in this configuration.
    #[error("parameter `{0}` is not active in this configuration")]
    Inactive(String),
    #[error("parameter `{name}` is {found}, not {wanted}")]
    WrongType {
        name: String,
        wanted: &'static str,
        found: String,
    },
    /// Steps are counted from 1 without gaps, as epochs are: the journal keys intermediate values
    /// by position and the schedulers' rungs are in these units.
    #[error("trial {trial}: reported step {got}, expected step {expected}")]
    Step {
        trial: usize,
        expected: usize,
        got: usize,
    },
    #[error("trial {0} was asked of another study")]
    OtherStudy(usize),
}

/// How a [`Study`] searches: fixed when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StudyOptions {
    pub strategy: Strategy,
    /// Decides from [`Trial::report`] whether a trial goes on; its budget is the space's
    /// `train.max_epochs` (in steps).
    pub scheduler: SchedulerKind,
    /// Trial `n`'s configuration is sampled with `derive_seed(seed, n)`, as in `nas search`.
    pub seed: u64,
    /// What a value is and which way it is better.
    pub metric: Metric,
}

/// How a trial ended, as told by the caller.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The objective's final value, in the study's direction. A value that is not finite is
    /// recorded as a failure, as Optuna does.
    Complete(f64),
    /// Stopped early (usually because [`Trial::report`] said [`Decision::Prune`]); the last
    /// reported value stands for it.
    Pruned,
    /// The objective could not be evaluated, and why.
    Failed(String),
}

/// A configuration with typed access to its values.
#[derive(Clone, Debug)]
pub struct Params {
    config: Config,
    space: Arc<SearchSpace>,
}

impl Params {
    /// The raw configuration: categorical values as indices into their choices.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Parameter name to JSON value (choices by label), as the leaderboard shows them.
    pub fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.space.config_json(&self.config)
    }

    /// The value of `name` as the space wrote it: an integer, a float or one of its choices.
    pub fn choice(&self, name: &str) -> Result<Choice, TuneError> {
        let spec = self
            .space
            .param(name)
            .ok_or_else(|| TuneError::NoParam(name.to_string()))?;
        let value = self
            .config
            .get(name)
            .ok_or_else(|| TuneError::Inactive(name.to_string()))?;
        match (value, &spec.dist) {
            (ParamValue::Int(i), _) => Ok(Choice::Int(*i)),
            (ParamValue::Float(x), _) => Ok(Choice::Float(*x)),
            (ParamValue::Cat(i), Distribution::Categorical { choices }) => choices
                .get(*i)
                .cloned()
                .ok_or_else(|| TuneError::WrongType {
                    name: name.to_string(),
                    wanted: "a choice of its domain",
                    found: format!("choice #{i}"),
                }),
            (ParamValue::Cat(i), _) => Err(TuneError::WrongType {
                name: name.to_string(),
                wanted: "a value of its domain",
                found: format!("choice #{i}"),
            }),
        }
    }

    /// An integer parameter (a range, or a `Fixed`/`Choice` of integers).
    pub fn int(&self, name: &str) -> Result<i64, TuneError> {
        match self.choice(name)? {
            Choice::Int(i) => Ok(i),
            other => Err(wrong(name, "an integer", &other)),
        }
    }

    /// A float parameter (a range, or a `Fixed`/`Choice` of floats).
    pub fn float(&self, name: &str) -> Result<f64, TuneError> {
        match self.choice(name)? {
            Choice::Float(x) => Ok(x),
            other => Err(wrong(name, "a float", &other)),
        }
    }
}

fn wrong(name: &str, wanted: &'static str, found: &Choice) -> TuneError {
    let found = match found {
        Choice::Bool(b) => format!("the boolean {b}"),
        Choice::Int(i) => format!("the integer {i}"),
        Choice::Float(x) => format!("the float {x}"),
        Choice::Str(s) => format!("the option {s}"),
    };
    TuneError::WrongType {
        name: name.to_string(),
        wanted,
        found,
    }
}

/// One running trial: its number, its sampled parameters, and what it reported so far.
/// Hand it back with [`Study::tell`]; a trial dropped without `tell` stays running in the
/// journal until the process ends, after which the next `create` marks it failed (lost).
#[derive(Debug)]
pub struct Trial {
    number: usize,
    seed: u64,
    params: Params,
    /// Reported values, lower-is-better, step `i + 1` at index `i`.
    intermediate: Vec<f64>,
    started: Instant,
    core: Arc<Mutex<Core>>,
}

impl Trial {
    /// The trial's number in the study, from 0.
    pub fn number(&self) -> usize {
        self.number
    }

    /// This trial's own seed (`derive_seed(study seed, number)`), for the caller's randomness.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn int(&self, name: &str) -> Result<i64, TuneError> {
        self.params.int(name)
    }

    pub fn float(&self, name: &str) -> Result<f64, TuneError> {
        self.params.float(name)
    }

    pub fn choice(&self, name: &str) -> Result<Choice, TuneError> {
        self.params.choice(name)
    }

    /// Records an intermediate value (in the study's direction) after `step`, counted from 1
    /// without gaps, and asks the scheduler whether the trial should go on.
    pub fn report(&mut self, step: usize, value: f64) -> Result<Decision, TuneError> {
        let expected = self.intermediate.len() + 1;
        if step != expected {
            return Err(TuneError::Step {
                trial: self.number,
                expected,
                got: step,
            });
        }
        let mut core = lock(&self.core);
        let loss = core.metric.to_loss(value);
        core.storage.report(self.number, step, loss)?;
        self.intermediate.push(loss);
        Ok(core.scheduler.on_epoch(self.number, step, loss))
    }
}

/// The best complete trial.
#[derive(Clone, Debug)]
pub struct Best {
    pub number: usize,
    /// Its value, in the study's direction.
    pub value: f64,
    pub params: Params,
}

/// What the study's handle and its trials share: the journal, the sampler and the scheduler.
struct Core {
    storage: Box<dyn Storage>,
    sampler: Box<dyn Sampler>,
    scheduler: Box<dyn Scheduler>,
    metric: Metric,
    /// Configurations of trials lost with a dead process, asked again first (as `nas search`
    /// runs them again).
    queue: Vec<Config>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("sampler", &self.sampler.name())
            .field("scheduler", &self.scheduler.name())
            .field("metric", &self.metric)
            .finish_non_exhaustive()
    }
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    // A panic while the lock was held leaves a journal that replays to a valid state.
    core.lock().unwrap_or_else(|p| p.into_inner())
}

/// A study driven by the caller: [`Study::ask`] for a trial, [`Study::tell`] how it ended.
///
/// Methods take `&self`, so trials may be evaluated on several threads at once; several handles
/// (or processes) on one directory share the study through the journal's lock.
pub struct Study {
    dir: PathBuf,
    space: Arc<SearchSpace>,
    seed: u64,
    core: Arc<Mutex<Core>>,
}

impl Study {
    /// Creates the study `name` in `results/<name>`, or continues it when it exists (its space
    /// and direction must be the ones given). Trials whose process died are marked failed and
    /// their configurations are asked again first.
    pub fn create(
        results: &Path,
        name: &str,
        space: SearchSpace,
        options: StudyOptions,
    ) -> Result<Study, TuneError> {
        let dir = study_dir(results, name);
        let meta = StudyMeta {
            name: name.to_string(),
            space_file: space.name.clone(),
            space_source: space.source.clone(),
            // No data set: the objective is the caller's.
            data: String::new(),
            task: space.task,
            metric: options.metric,
            seed: options.seed,
            folds: 0,
            strategy: options.strategy.label().to_string(),
            scheduler: options.scheduler.label().to_string(),
            objectives: Vec::new(),
        };
        let mut storage = open_or_create(&StorageUrl::journal(results), meta, Default::default())?;
        let existing = storage.meta();
        if existing.space_source != space.source {
            return Err(TuneError::Changed {
                name: name.to_string(),
                what: "search space",
            });
        }
        if existing.metric != options.metric {
            return Err(TuneError::Changed {
                name: name.to_string(),
                what: "metric",
            });
        }
        let queue = storage.recover_stale()?;
        let sampler = options.strategy.build(&space)?;
        let mut scheduler = options.scheduler.build(space.max_epochs());
        // A continued study's scheduler starts from the values already recorded, so a resumed
        // study prunes as the uninterrupted one would have.
        for t in storage.trials() {
            if matches!(t.state, TrialState::Complete | TrialState::Pruned) {
                for (i, loss) in t.intermediate.iter().enumerate() {
                    scheduler.on_epoch(t.number, i + 1, *loss);
                }
                scheduler.on_trial_end(t.number);
            }
        }
        Ok(Study {
            dir,
            space: Arc::new(space),
            seed: options.seed,
            core: Arc::new(Mutex::new(Core {
                storage,
                sampler,
                scheduler,
                metric: options.metric,
                queue,
            })),
        })
    }

    /// Starts the next trial: a new number, and a configuration the sampler proposes from every
    /// trial recorded so far (by any handle or process), with the trial's derived seed.
    pub fn ask(&self) -> Result<Trial, TuneError> {
        let mut guard = lock(&self.core);
        let core = &mut *guard;
        core.storage.refresh()?;
        let number = core.storage.create_trial()?;
        let seed = derive_seed(self.seed, number as u64);
        let config = match core.queue.pop() {
            Some(c) => c,
            None => suggest(
                core.sampler.as_mut(),
                &self.space,
                core.storage.trials(),
                core.metric,
                seed,
            ),
        };
        core.storage.set_params(number, config.clone(), seed)?;
        Ok(Trial {
            number,
            seed,
            params: Params {
                config,
                space: Arc::clone(&self.space),
            },
            intermediate: Vec::new(),
            started: Instant::now(),
            core: Arc::clone(&self.core),
        })
    }

    /// Records how `trial` ended. Intermediate values were journalled as they were reported.
    pub fn tell(&self, trial: Trial, outcome: Outcome) -> Result<(), TuneError> {
        if !Arc::ptr_eq(&trial.core, &self.core) {
            return Err(TuneError::OtherStudy(trial.number));
        }
        // The leaderboard's "architecture" column: what varies, since no network is built.
        let summary: Vec<String> = trial
            .params
            .config
            .iter()
            .filter(|(k, _)| {
                let dist = self.space.param(k).map(|p| &p.dist);
                dist.and_then(Distribution::cardinality) != Some(1)
            })
            .map(|(k, v)| format!("{k}={}", self.space.display_value(k, v)))
            .collect();
        let mut rec = TrialRecord::new(trial.number, trial.params.config, trial.seed);
        rec.architecture = summary.join(" ");
        rec.epochs = trial.intermediate.len();
        rec.budget = trial.intermediate.len();
        rec.intermediate = trial.intermediate;
        rec.seconds = trial.started.elapsed().as_secs_f64();
        match outcome {
            Outcome::Complete(value) => {
                rec.state = TrialState::Complete;
                // One evaluation: the leaderboard's "mean ± std" of a single score.
                rec.cv_mean = Some(value);
                rec.cv_std = Some(0.0);
                rec.fold_scores = vec![value];
            }
            Outcome::Pruned => rec.state = TrialState::Pruned,
            Outcome::Failed(reason) => {
                rec.state = TrialState::Failed;
                rec.error = Some(reason);
            }
        }
        let mut core = lock(&self.core);
        core.storage.finish_trial(rec)?;
        core.scheduler.on_trial_end(trial.number);
        Ok(())
    }

    /// The best complete trial so far (of every handle and process), if any.
    pub fn best(&self) -> Result<Option<Best>, TuneError> {
        let mut core = lock(&self.core);
        core.storage.refresh()?;
        let metric = core.metric;
        Ok(best_trial(core.storage.trials(), metric).map(|t| Best {
            number: t.number,
            value: t.cv_mean.unwrap_or(f64::NAN),
            params: Params {
                config: t.config.clone(),
                space: Arc::clone(&self.space),
            },
        }))
    }

    /// Every trial recorded so far, as the journal holds them.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, TuneError> {
        let mut core = lock(&self.core);
        core.storage.refresh()?;
        Ok(core.storage.trials().to_vec())
    }

    /// The leaderboard, as `nas leaderboard` prints it; `top` keeps the first N rows.
    pub fn leaderboard(&self, format: Format, top: Option<usize>) -> Result<String, TuneError> {
        let trials = self.trials()?;
        let rows = leaderboard::rows(&trials, self.metric(), Some(&self.space));
        Ok(leaderboard::render(&rows, self.metric(), format, top))
    }

    pub fn metric(&self) -> Metric {
        lock(&self.core).metric
    }

    pub fn direction(&self) -> Direction {
        self.metric().direction()
    }

    pub fn space(&self) -> &SearchSpace {
        &self.space
    }

    /// The study's directory, `results/<name>`, holding `journal.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
