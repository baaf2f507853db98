//! The search controller: asks the sampler for candidates, trains them on worker threads
//! (each in its own one-thread pool), lets the scheduler prune them, and records every result.

use crate::data::{kfold, train_test_split, DataError, DataSplit, Dataset, Standardizer};
use crate::nn::Cost;
use crate::objective::Objective;
use crate::progress::{Event, FoldEpoch, Plan, Progress, Silent};
use crate::search::{Decision, Sampler, Scheduler, TrialState};
use crate::space::{Candidate, Config, SearchSpace};
use crate::study::{
    counts_toward_total, suggest_for, Latency, Metric, Objectives, Storage, StudyError, TestResult,
    TrialRecord,
};
// Moved to modules without tensors (ask-and-tell studies use them too); kept at their old paths.
pub use crate::seed::derive_seed;
pub use crate::study::best_trial;
use crate::sys::human_bytes;
use crate::train::{
    cross_validate, eval_rows, evaluate, fit_samples, predict_view, FoldRows, Samples, SparePools,
    Stop, Trained, TrialError,
};
use dfdx::prelude::Cpu;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SearchError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Study(#[from] StudyError),
    #[error("no trial completed, so there is no best model ({0})")]
    NoBest(String),
    #[error("final training of trial {trial} failed: {error}")]
    Final { trial: usize, error: TrialError },
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    #[error("a search worker stopped unexpectedly: {0}")]
    Worker(String),
    /// The space (or data) cannot train: the search stops rather than spend its budget.
    #[error("{count} trials in a row failed (--max-consecutive-failures {count}); the last, trial {trial}, failed with: {error}")]
    TooManyFailures {
        count: usize,
        trial: usize,
        error: String,
    },
    /// A strategy comparison that cannot run as asked (`nas compare`).
    #[error("{0}")]
    Compare(String),
    /// The search was asked to optimise other objectives than its study's.
    #[error("{0}")]
    Objectives(String),
}

const SPLIT_SALT: u64 = 0x5EED_5EED;
const FOLD_SALT: u64 = 0xF01D_F01D;

/// The data of a study: the search part split into standardised folds, and the untouched test set.
pub struct PreparedData {
    /// All non-test data, raw.
    pub train: Dataset,
    /// The held-out test set, raw. No search decision reads it.
    pub test: Dataset,
    /// The rows of `train` each fold trains and validates on, with the fold's training statistics
    /// (rows, not copies: k copies of the data would set the memory of a search).
    pub folds: Vec<FoldRows>,
    pub per_channel: bool,
}

impl PreparedData {
    /// Splits off the test set (the data set's own, else a stratified 20% drawn from `seed`) and
    /// cuts the rest into `k` (stratified) folds, standardised as
    /// [`Standardizer::per_channel_for`] says.
    pub fn new(split: DataSplit, k: usize, seed: u64) -> Result<PreparedData, DataError> {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, SPLIT_SALT));
        let (train, test) = match split.test {
            Some(test) => (split.train, test),
            None => {
                let (tr, te) = train_test_split(&split.train, 0.2, &mut rng);
                (split.train.subset(&tr), split.train.subset(&te))
            }
        };
        let per_channel = Standardizer::per_channel_for(&train.shape);
        let mut fold_rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, FOLD_SALT));
        let folds = kfold(&train, k, &mut fold_rng)?
            .into_iter()
            .map(|f| FoldRows {
                scaler: Standardizer::fit_rows(&train, &f.train, per_channel),
                train: f.train,
                valid: f.valid,
            })
            .collect();
        Ok(PreparedData {
            train,
            test,
            folds,
            per_channel,
        })
    }

    pub fn n_inputs(&self) -> usize {
        self.train.shape.len()
    }

    pub fn n_outputs(&self) -> usize {
        self.train.n_outputs()
    }
}

/// How a search runs.
pub struct SearchOptions {
    /// Stop once the study holds this many finished trials.
    pub trials: Option<usize>,
    /// Start no new trial after this long.
    pub time_budget: Option<Duration>,
    pub seed: u64,
    pub workers: usize,
    /// Threads of each worker's trial: the folds of a trial train in parallel on them.
    pub threads_per_trial: usize,
    pub max_params: Option<usize>,
    pub max_macs: Option<u64>,
    /// Start no new trial once the study's trials have trained this many epochs (summed over
    /// folds), the budget unit of strategy comparisons.
    pub max_budget: Option<usize>,
    /// Memory one trial may need (estimated before training, see [`Cost::training_bytes`]);
    /// larger candidates fail with that reason instead of being trained.
    pub max_memory: Option<u64>,
    /// A trial that trains longer than this ends as failed, and its worker goes on.
    pub trial_timeout: Option<Duration>,
    /// Stop the search after this many failed trials in a row (rejections by a constraint and
    /// interruptions do not count).
    pub max_consecutive_failures: Option<usize>,
    /// The study's objectives (`StudyMeta::objectives`; empty: the score alone).
    pub objectives: Vec<Objective>,
    /// Reject candidates whose latency (milliseconds per sample at batch 1, see `nn::latency`)
    /// is above this, before training.
    pub max_latency: Option<f64>,
    /// Where the search reports trials and epochs as they finish (default: nowhere; `nas search`
    /// shows them live on a terminal, or as one line per trial).
    pub progress: Arc<dyn Progress>,
}

impl Default for SearchOptions {
    /// 20 trials, seed 0, one worker, no other limit.
    fn default() -> Self {
        SearchOptions {
            trials: Some(20),
            time_budget: None,
            seed: 0,
            workers: 1,
            threads_per_trial: 1,
            max_params: None,
            max_macs: None,
            max_budget: None,
            max_memory: None,
            trial_timeout: None,
            max_consecutive_failures: None,
            objectives: Vec::new(),
            max_latency: None,
            progress: Arc::new(Silent),
        }
    }
}

/// What a call to [`Controller::run`] cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    pub wall: Duration,
    /// Time workers spent outside training: sampling, storage, locks (summed over workers).
    pub controller: Duration,
    pub workers: usize,
    pub trials: usize,
}

impl RunStats {
    /// Controller time as a fraction of the workers' total wall time.
    pub fn overhead(&self) -> f64 {
        self.controller.as_secs_f64()
            / (self.wall.as_secs_f64() * self.workers.max(1) as f64).max(1e-9)
    }
}

/// State shared by the workers, behind one lock.
struct Shared<'a> {
    storage: &'a mut dyn Storage,
    sampler: Box<dyn Sampler>,
    /// Configurations to run again (trials that were in flight when a run died).
    queue: Vec<Config>,
    stop: bool,
    error: Option<SearchError>,
    /// How many trials in a row have failed (a finished trial sets it back to 0).
    failures: usize,
}

pub struct Controller<'a> {
    pub space: &'a SearchSpace,
    pub data: &'a PreparedData,
    pub metric: Metric,
    pub opts: SearchOptions,
    /// Set by Ctrl-C: in-flight trials end as interrupted and no new ones start.
    pub cancel: Arc<AtomicBool>,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

impl Controller<'_> {
    /// Runs trials until the trial count or time budget is reached, or Ctrl-C.
    pub fn run(
        &self,
        storage: &mut dyn Storage,
        sampler: Box<dyn Sampler>,
        scheduler: Box<dyn Scheduler>,
        requeue: Vec<Config>,
    ) -> Result<RunStats, SearchError> {
        let start = Instant::now();
        let study = Objectives::of(storage.meta());
        if study.list() != self.objectives().list() {
            return Err(SearchError::Objectives(format!(
                "the study's objectives are {}, the search was asked for {}",
                crate::objective::names(study.list()),
                crate::objective::names(self.objectives().list())
            )));
        }
        let shared = Mutex::new(Shared {
            storage,
            sampler,
            queue: requeue,
            stop: false,
            error: None,
            failures: 0,
        });
        let scheduler = Mutex::new(scheduler);
        let workers = self.opts.workers.max(1);
        let mut stats = RunStats {
            workers,
            ..RunStats::default()
        };
        let progress = self.opts.progress.as_ref();
        progress.start(&self.plan(&shared, workers));
        // Workers that have no trial left lend their threads to the trials still running.
        let spare = SparePools::new();
        let ran = std::thread::scope(|s| -> Result<(), SearchError> {
            let mut handles = Vec::new();
            for w in 0..workers {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(self.opts.threads_per_trial.max(1))
                    .build()
                    .map_err(|e| SearchError::Threads(e.to_string()))?;
                let (shared, scheduler, spare) = (&shared, &scheduler, &spare);
                handles.push(s.spawn(move || {
                    let pool = Arc::new(pool);
                    let done = self.worker(w, &pool, shared, scheduler, spare, start);
                    spare.give(pool);
                    done
                }));
            }
            for h in handles {
                match h.join() {
                    Ok((time, n)) => {
                        stats.controller += time;
                        stats.trials += n;
                    }
                    // Training panics are caught per trial; one here is a bug in the
                    // controller, and the search must not end as if all went well.
                    Err(p) => {
                        let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
                        sh.stop = true;
                        sh.error
                            .get_or_insert(SearchError::Worker(panic_message(p.as_ref())));
                    }
                }
            }
            Ok(())
        });
        progress.finish();
        ran?;
        stats.wall = start.elapsed();
        let shared = shared
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match shared.error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// What the progress display knows before the first trial: the limits, and the study's
    /// finished trials and best so far (a resumed study has some).
    fn plan(&self, shared: &Mutex<Shared>, workers: usize) -> Plan {
        let sh = shared.lock().unwrap_or_else(|p| p.into_inner());
        let trials = sh.storage.trials();
        Plan {
            metric: self.metric,
            trials: self.opts.trials,
            time_budget: self.opts.time_budget,
            workers,
            done: trials
                .iter()
                .filter(|t| t.state != TrialState::Running && counts_toward_total(t))
                .count(),
            best: best_trial(trials, self.metric).and_then(|t| Some((t.number, t.cv_mean?))),
            objectives: self.objectives().list().to_vec(),
        }
    }

    /// Takes the next trial: its number, configuration and seed; `None` when the search is over.
    fn next_trial(&self, shared: &Mutex<Shared>, start: Instant) -> Option<(usize, Config, u64)> {
        let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
        // Other processes may be working on the same study: count their trials too.
        if let Err(e) = sh.storage.refresh() {
            self.abort(&mut sh, e.into());
            return None;
        }
        let over_time = self.opts.time_budget.is_some_and(|b| start.elapsed() >= b);
        let over_budget = self
            .opts
            .max_budget
            .is_some_and(|b| sh.storage.trials().iter().map(|t| t.budget).sum::<usize>() >= b);
        if sh.stop || over_time || over_budget || self.cancel.load(Ordering::Relaxed) {
            sh.stop = true;
            return None;
        }
        // Trials of workers that died since (on any host) fail, and their configurations run again.
        match sh.storage.recover_stale() {
            Ok(lost) => sh.queue.extend(lost),
            Err(e) => {
                self.abort(&mut sh, e.into());
                return None;
            }
        }
        // Counting the study's trials and creating the next one is one step under the journal's
        // lock, so processes sharing a study never start more trials than it asks for.
        let number = match sh.storage.create_trial_within(self.opts.trials) {
            Ok(Some(n)) => n,
            Ok(None) => {
                sh.stop = true;
                return None;
            }
            Err(e) => {
                self.abort(&mut sh, e.into());
                return None;
            }
        };
        let seed = derive_seed(self.opts.seed, number as u64);
        let config = match sh.queue.pop() {
            Some(c) => c,
            None => {
                let Shared {
                    storage, sampler, ..
                } = &mut *sh;
                let mut costs = |c: &Config| self.known_costs(c, seed);
                suggest_for(
                    sampler.as_mut(),
                    self.space,
                    storage.trials(),
                    &self.objectives(),
                    seed,
                    Some(&mut costs),
                )
            }
        };
        if let Err(e) = sh.storage.set_params(number, config.clone(), seed) {
            self.abort(&mut sh, e.into());
            return None;
        }
        Some((number, config, seed))
    }

    /// Worker `w` runs trials until none is left; returns the time spent outside training and
    /// the count.
    fn worker(
        &self,
        w: usize,
        pool: &rayon::ThreadPool,
        shared: &Mutex<Shared>,
        scheduler: &Mutex<Box<dyn Scheduler>>,
        spare: &SparePools,
        start: Instant,
    ) -> (Duration, usize) {
        let (mut overhead, mut count) = (Duration::ZERO, 0);
        let progress = self.opts.progress.as_ref();
        loop {
            let t0 = Instant::now();
            let Some((number, config, seed)) = self.next_trial(shared, start) else {
                overhead += t0.elapsed();
                progress.event(Event::WorkerDone { worker: w });
                break;
            };
            overhead += t0.elapsed();
            progress.event(Event::TrialStarted {
                worker: w,
                trial: number,
            });
            let on_fold = |fold: FoldEpoch| progress.event(Event::Epoch { worker: w, fold });
            let mut in_reports = Duration::ZERO;
            let mut pruned_at = None;
            let mut report = |epoch: usize, value: f64| {
                let t = Instant::now();
                let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = sh.storage.report(number, epoch, value) {
                    // A journal that cannot be written ends the search: training on would
                    // produce results that are not saved.
                    self.abort(&mut sh, e.into());
                }
                drop(sh);
                let d = match scheduler.lock() {
                    Ok(mut s) => {
                        let d = s.on_epoch(number, epoch, value);
                        if d == Decision::Prune {
                            pruned_at = s.rung(number, epoch);
                        }
                        d
                    }
                    Err(_) => Decision::Continue,
                };
                in_reports += t.elapsed();
                d
            };
            let mut costs = |c: &[f64]| {
                if let Ok(mut s) = scheduler.lock() {
                    s.on_costs(number, c);
                }
            };
            let (mut record, ending) = pool.install(|| {
                self.attempt_trial(
                    number,
                    config,
                    seed,
                    &mut costs,
                    &mut report,
                    &on_fold,
                    spare,
                )
            });
            if record.state == TrialState::Pruned {
                record.pruned_at = pruned_at;
            }
            let t1 = Instant::now();
            crate::sys::release_free_memory();
            if let Ok(mut s) = scheduler.lock() {
                s.on_trial_end(number);
            }
            progress.event(Event::TrialFinished {
                worker: w,
                record: &record,
            });
            let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
            let (trial, error) = (record.number, record.error.clone());
            if let Err(e) = sh.storage.finish_trial(record) {
                self.abort(&mut sh, e.into());
            }
            match ending {
                Ending::Failed => sh.failures += 1,
                Ending::Finished => sh.failures = 0,
                Ending::Rejected | Ending::Interrupted => {}
            }
            if let Some(max) = self.opts.max_consecutive_failures {
                let count = sh.failures;
                if count >= max.max(1) {
                    self.abort(
                        &mut sh,
                        SearchError::TooManyFailures {
                            count,
                            trial,
                            error: error.unwrap_or_default(),
                        },
                    );
                }
            }
            drop(sh);
            overhead += t1.elapsed() + in_reports;
            count += 1;
        }
        (overhead, count)
    }

    /// The study's objectives, with the score's metric.
    pub fn objectives(&self) -> Objectives {
        Objectives::new(&self.opts.objectives, self.metric)
    }

    /// What a candidate costs, counted from its architecture alone (no weight is allocated).
    pub fn cost(&self, cand: &Candidate) -> Result<Cost, String> {
        crate::nn::cost(&cand.arch, self.data.train.shape, self.data.n_outputs())
            .map_err(|e| e.to_string())
    }

    /// Bytes training `cand` (of cost `cost`) needs at its peak: every fold's network trains in
    /// lockstep, so all of them are alive at once, and evaluation runs in [`eval_rows`] chunks.
    fn training_bytes(&self, cand: &Candidate, cost: &Cost) -> u64 {
        let eval = eval_rows(cost.largest_activation);
        cost.training_bytes(cand.train.batch_size, eval, self.data.folds.len())
    }

    /// Whether candidates are timed: latency is an objective or limited (`--max-latency`).
    fn timed(&self) -> bool {
        self.objectives().needs_latency() || self.opts.max_latency.is_some()
    }

    /// The candidate's latency (measured once per network in this process), or why it could
    /// not be measured.
    fn latency(&self, cand: &Candidate, seed: u64) -> Result<Latency, String> {
        let shape = self.data.train.shape;
        let measured = catch_unwind(AssertUnwindSafe(|| {
            crate::nn::latency::measure_cached(&cand.arch, shape, self.data.n_outputs(), seed)
        }));
        match measured {
            Ok(Ok(l)) => Ok(l),
            Ok(Err(e)) => Err(format!("rejected at sampling time: {e}")),
            Err(p) => Err(format!(
                "latency measurement panicked: {}",
                panic_message(p.as_ref())
            )),
        }
    }

    /// What `config` costs before training, for a sampler that weighs candidates by it
    /// ([`crate::search::prescreen::Costs`]): every objective, lower is better, NaN for the
    /// score; `None` when the candidate cannot be built or timed, does not fit `--max-memory`
    /// or breaks a constraint (it would be rejected before training).
    fn known_costs(&self, config: &Config, seed: u64) -> crate::search::prescreen::Costs {
        let cand = self.space.decode(config);
        let cost = self.cost(&cand).ok()?;
        let need = self.training_bytes(&cand, &cost);
        if self.opts.max_memory.is_some_and(|m| need > m) {
            return None;
        }
        let mut rec = TrialRecord::new(0, config.clone(), seed);
        rec.params = cost.params;
        rec.macs = cost.macs;
        if self.timed() {
            // A quick measurement unless the network was measured already (`estimate_ms`).
            let shape = self.data.train.shape;
            let ms = catch_unwind(AssertUnwindSafe(|| {
                crate::nn::latency::estimate_ms(&cand.arch, shape, self.data.n_outputs(), seed)
            }))
            .ok()?
            .ok()?;
            rec.latency = Some(Latency {
                ms,
                batch_ms: f64::NAN,
                batch: 0,
                spread: f64::NAN,
                repeats: 0,
                wall_ms: f64::NAN,
            });
        }
        if crate::pareto::violation(&self.constraints(&rec)) > 0.0 {
            return None;
        }
        let objectives = self.objectives();
        objectives
            .list()
            .iter()
            .map(|o| match o {
                Objective::Score => Some(f64::NAN),
                o => objectives.value(*o, &rec),
            })
            .collect()
    }

    /// Trains and cross-validates one configuration; never panics.
    pub fn run_trial(
        &self,
        number: usize,
        config: Config,
        seed: u64,
        report: &mut dyn FnMut(usize, f64) -> Decision,
    ) -> TrialRecord {
        let spare = SparePools::new();
        let on_fold = |_| {};
        self.attempt_trial(number, config, seed, &mut |_| {}, report, &on_fold, &spare)
            .0
    }

    /// [`Controller::run_trial`], and how the trial ended, for the failure count.
    #[allow(clippy::too_many_arguments)]
    fn attempt_trial(
        &self,
        number: usize,
        config: Config,
        seed: u64,
        costs: &mut dyn FnMut(&[f64]),
        report: &mut dyn FnMut(usize, f64) -> Decision,
        on_fold: &(dyn Fn(FoldEpoch) + Sync),
        spare: &SparePools,
    ) -> (TrialRecord, Ending) {
        let start = Instant::now();
        let cand = self.space.decode(&config);
        let mut rec = TrialRecord::new(number, config, seed);
        rec.architecture = cand.summary(self.data.n_inputs(), self.data.n_outputs());
        let fail = |mut rec: TrialRecord, state: TrialState, msg: String| {
            rec.state = state;
            rec.error = Some(msg);
            rec.seconds = start.elapsed().as_secs_f64();
            rec
        };
        let cost = match self.cost(&cand) {
            Ok(c) => c,
            // Shapes that cannot work are rejected before any training (the message names the
            // part); they still count towards --max-consecutive-failures, which stops a space
            // whose every configuration is impossible (`nas space check` measures the share).
            Err(e) => {
                let msg = format!("rejected at sampling time: {e}");
                return (fail(rec, TrialState::Failed, msg), Ending::Failed);
            }
        };
        rec.params = cost.params;
        rec.macs = cost.macs;
        let objectives = self.objectives();
        let mut rejected = None;
        if let Some(max) = self.opts.max_params.filter(|m| rec.params > *m) {
            rejected = Some(format!(
                "rejected before training: {} parameters exceed --max-params {max}",
                rec.params
            ));
        } else if let Some(max) = self.opts.max_macs.filter(|m| rec.macs > *m) {
            rejected = Some(format!(
                "rejected before training: {} multiply-adds per sample exceed --max-flops {max}",
                rec.macs
            ));
        }
        let need = self.training_bytes(&cand, &cost);
        let too_large = self.opts.max_memory.filter(|m| need > *m);
        // The latency is measured (before training: it never depends on the weights) when it is
        // an objective or limited, of candidates that are otherwise feasible and fit in memory.
        if self.timed() && rejected.is_none() && too_large.is_none() {
            match self.latency(&cand, seed) {
                Ok(l) => rec.latency = Some(l),
                Err(msg) => return (fail(rec, TrialState::Failed, msg), Ending::Failed),
            }
            let ms = rec.latency.as_ref().map_or(f64::NAN, |l| l.ms);
            if let Some(max) = self.opts.max_latency.filter(|m| ms > *m) {
                rejected = Some(format!(
                    "rejected before training: latency {} ms per sample exceeds --max-latency {max} ms",
                    crate::space::short_float(ms)
                ));
            }
        }
        if objectives.is_multi() {
            rec.constraints = self.constraints(&rec);
            // The scheduler judges a multi-objective trial by its score and these costs.
            if let Some(c) = objectives.costs(&rec) {
                costs(&c);
            }
        }
        if let Some(msg) = rejected {
            return (fail(rec, TrialState::Failed, msg), Ending::Rejected);
        }
        if let Some(max) = too_large {
            let msg = format!(
                "too large for this machine: training it needs about {} of memory, {} is available to each worker (--max-memory)",
                human_bytes(need),
                human_bytes(max)
            );
            return (fail(rec, TrialState::Failed, msg), Ending::Failed);
        }
        let stop = Stop::with_timeout(&self.cancel, self.opts.trial_timeout);
        let result = catch_unwind(AssertUnwindSafe(|| {
            cross_validate(
                &cand,
                &self.data.train,
                &self.data.folds,
                seed,
                report,
                on_fold,
                stop,
                spare,
            )
        }));
        match result {
            Ok(Ok(cv)) => {
                rec.state = if cv.pruned {
                    TrialState::Pruned
                } else {
                    TrialState::Complete
                };
                if !cv.pruned {
                    rec.cv_mean = Some(cv.mean());
                    rec.cv_std = Some(cv.std());
                }
                rec.fold_scores = cv.fold_scores.clone();
                rec.epochs = if cv.pruned {
                    cv.epochs_run
                } else {
                    cv.chosen_epochs()
                };
                rec.budget = cv.budget;
                rec.intermediate = cv.intermediate;
                rec.curves = cv.curves;
                rec.seconds = start.elapsed().as_secs_f64();
                (rec, Ending::Finished)
            }
            Ok(Err(TrialError::Interrupted)) => (
                fail(rec, TrialState::Interrupted, "interrupted".into()),
                Ending::Interrupted,
            ),
            Ok(Err(e)) => (fail(rec, TrialState::Failed, e.to_string()), Ending::Failed),
            Err(p) => (
                fail(
                    rec,
                    TrialState::Failed,
                    format!("panicked: {}", panic_message(p.as_ref())),
                ),
                Ending::Failed,
            ),
        }
    }
}

impl Controller<'_> {
    /// A multi-objective study's constraint values for `rec` (Optuna's convention: feasible when
    /// `<= 0`): `value / limit - 1` for each limit given, in the order `--max-params`,
    /// `--max-flops`, `--max-latency`; NaN for a latency that was not measured. Relative, so
    /// that violations of different units add up to a comparable total.
    fn constraints(&self, rec: &TrialRecord) -> Vec<f64> {
        let relative = |value: f64, limit: f64| value / limit.max(f64::MIN_POSITIVE) - 1.0;
        let latency = rec.latency.as_ref().map_or(f64::NAN, |l| l.ms);
        [
            self.opts
                .max_params
                .map(|m| relative(rec.params as f64, m as f64)),
            self.opts
                .max_macs
                .map(|m| relative(rec.macs as f64, m as f64)),
            self.opts.max_latency.map(|m| relative(latency, m)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// How a trial ended, as the count of failures in a row sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Complete or pruned.
    Finished,
    /// Refused by a constraint (`--max-params`, `--max-flops`) before training.
    Rejected,
    /// Could not be built, diverged, ran out of memory or time, or panicked.
    Failed,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

impl Shared<'_> {
    /// Ends the search with `e` (the first error is the one reported).
    fn fail(&mut self, e: SearchError) {
        self.stop = true;
        self.error.get_or_insert(e);
    }
}

impl Controller<'_> {
    /// Ends the search with `e`: no trial starts, and the trials in flight stop at their next
    /// step as interrupted (results that could not be saved, or a search that cannot train, must
    /// not go on).
    fn abort(&self, sh: &mut Shared, e: SearchError) {
        sh.fail(e);
        self.cancel.store(true, Ordering::SeqCst);
    }
}

/// The final model: trained on all non-test data, with its preprocessing.
pub struct FinalModel {
    pub trained: Trained,
    pub dev: Cpu,
    pub standardizer: Standardizer,
    pub candidate: Candidate,
    pub test: TestResult,
}

/// Retrains trial `rec` on all non-test data for the epochs early stopping chose, then evaluates
/// it once on the test set, on a pool of `threads` threads across which its ops split their
/// work (the same values on any number).
pub fn train_final(
    space: &SearchSpace,
    data: &PreparedData,
    metric: Metric,
    rec: &TrialRecord,
    cancel: &AtomicBool,
    threads: usize,
) -> Result<FinalModel, SearchError> {
    // The training runs on one of the pool's threads, so that an op splits its work with a
    // cheap join rather than a round trip from outside the pool on every call.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| SearchError::Final {
            trial: rec.number,
            error: TrialError::Other(format!("cannot start {threads} threads: {e}")),
        })?;
    pool.install(|| final_model(space, data, metric, rec, cancel))
}

fn final_model(
    space: &SearchSpace,
    data: &PreparedData,
    metric: Metric,
    rec: &TrialRecord,
    cancel: &AtomicBool,
) -> Result<FinalModel, SearchError> {
    let start = Instant::now();
    let cand = space.decode(&rec.config);
    // Standardised on the fly: a standardised copy would double the data's memory.
    let standardizer = Standardizer::fit(&data.train, data.per_channel);
    let train = Samples::scaled(&data.train, &standardizer);
    let test = Samples::scaled(&data.test, &standardizer);
    let epochs = rec.epochs.max(1);
    let fitted = catch_unwind(AssertUnwindSafe(|| {
        fit_samples(&cand, train, epochs, derive_seed(rec.seed, 1), cancel)
    }))
    .map_err(|p| SearchError::Final {
        trial: rec.number,
        error: TrialError::Other(format!("panicked: {}", panic_message(p.as_ref()))),
    })?;
    let (mut trained, dev) = fitted.map_err(|error| SearchError::Final {
        trial: rec.number,
        error,
    })?;
    let out = predict_view(&mut trained.net, &dev, test);
    let m = evaluate(&out, &test.targets(), trained.target);
    let test_result = TestResult {
        trial: rec.number,
        metric,
        test_score: m.score,
        test_loss: m.loss,
        test_samples: test.len(),
        train_samples: train.len(),
        epochs,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(FinalModel {
        trained,
        dev,
        standardizer,
        candidate: cand,
        test: test_result,
    })
}
