//! The command line: raw flags (clap) are checked into a configuration, then each subcommand runs.

use crate::controller::{train_final, Controller, PreparedData, SearchOptions};
use crate::data::{load, load_test_file, DataSource, DataSplit, InputShape, LoadOptions};
use crate::leaderboard::{self, Column, Format, StateFilter, View};
use crate::objective::Objective;
use crate::progress::Mode;
use crate::search::{SchedulerKind, SearchError, Strategy};
use crate::space::{SearchSpace, SpaceError};
use crate::study::{
    study_dir, Metric, Objectives, StorageOptions, StorageUrl, StudyError, StudyMeta,
};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

pub mod model;
pub mod report;
pub mod space;
pub mod trial;

#[derive(Debug, Parser)]
#[command(
    name = "nas",
    version,
    about = "Neural architecture search and hyper-parameter tuning"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Search a space: sample, train with k-fold cross-validation, rank, and test the best.
    Search(Box<SearchArgs>),
    /// Print a study's leaderboard again: some trials, sorted, with chosen columns.
    Leaderboard(LeaderboardArgs),
    /// Show one trial in full: sampled values, layers, validation curves, cost, why it ended.
    Trial(trial::TrialArgs),
    /// Retrain a study's best (or chosen) trial on all non-test data and write it as a model directory.
    Export(model::ExportArgs),
    /// Predict with an exported model: one CSV line per row.
    Predict(model::PredictArgs),
    /// Evaluate an exported model on labelled data.
    Evaluate(model::EvaluateArgs),
    /// Compare samplers and schedulers: every pair, several seeds, the same epoch budget.
    #[command(alias = "bench")]
    Compare(CompareArgs),
    /// Inspect a search space: its parameters, sampled networks, and the share that cannot work.
    Space(space::SpaceArgs),
    /// Write a study's plots (SVG and PNG) under results/<study>/plots/.
    Plot(report::PlotArgs),
    /// Write a study's report: one self-contained HTML page, results/<study>/report.html.
    Report(report::ReportArgs),
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The search space (RON); grid search needs every parameter discrete.
    #[arg(long, default_value = "search_spaces/bench_cnn.ron")]
    pub space: PathBuf,
    /// Data set (default: the one named in the space file, else digits).
    #[arg(long)]
    pub data: Option<String>,
    /// Epochs each run may train, summed over its trials and folds.
    #[arg(long, default_value_t = 240)]
    pub budget: usize,
    /// Seeds per pair: 0, 1, ... N-1.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Comma-separated samplers (default: the single-objective ones; nsga2 and motpe too when
    /// --objectives names several).
    #[arg(long)]
    pub strategies: Option<String>,
    /// Objectives of every run, e.g. `score,latency`: runs are then compared by hypervolume.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub objectives: Vec<Objective>,
    /// The hypervolume's reference point, one value per objective in its own unit, e.g.
    /// `0.5,1.0` for score and latency (default: each objective's worst value over all runs,
    /// 10% of its range further; the report states it).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub reference: Vec<f64>,
    /// Comma-separated schedulers (default: all).
    #[arg(long, default_value = "fifo,asha,hyperband")]
    pub schedulers: String,
    #[arg(long, default_value_t = 1)]
    pub folds: usize,
    /// Runs trained at once, one thread each (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where the runs' studies and the report go.
    #[arg(long, default_value = "results/bench")]
    pub out: PathBuf,
    /// Where studies are stored: postgresql://USER:PASSWORD@HOST:PORT/DATABASE for a database in
    /// Optuna's schema shared by workers anywhere (default: the journal under --results).
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The search space (RON), e.g. search_spaces/mlp.ron (optional with --resume).
    #[arg(long, required_unless_present = "resume")]
    pub space: Option<PathBuf>,
    /// Continue an existing study, which must exist; without --space, its own space file,
    /// data set, strategy and scheduler are used. (Running the same command again resumes too.)
    #[arg(long)]
    pub resume: bool,
    /// digits | iris | diabetes, a directory of IDX files, or a CSV file
    /// (default: the data set named in the space file, else digits).
    #[arg(long)]
    pub data: Option<String>,
    /// A held-out test set (CSV or IDX directory) instead of the data set's own.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// CSV column with the labels or targets (default: `label` or `target`).
    #[arg(long)]
    pub target: Option<String>,
    /// Input shape CxHxW (or HxW), e.g. 1x40 for a 1-D signal of 40 values.
    #[arg(long)]
    pub shape: Option<String>,
    /// Number of trials the study should hold (default 20; no limit with --time-budget alone).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Start no new trial after this long (e.g. 90s, 10m, 1h), instead of a trial count.
    #[arg(long)]
    pub time_budget: Option<String>,
    /// Study seed (default 0); an existing study keeps the seed it was created with.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Cross-validation folds (default 3; 1: one stratified validation split); fixed by the study.
    #[arg(long)]
    pub folds: Option<usize>,
    /// Study name (default: the space file's name).
    #[arg(long)]
    pub study: Option<String>,
    /// Where derived files go (leaderboards, test result), and the journal without --storage.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where studies are stored: postgresql://USER:PASSWORD@HOST:PORT/DATABASE for a database in
    /// Optuna's schema shared by workers anywhere (default: the journal under --results).
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// With a database --storage: how often this worker stamps its running trials (e.g. 30s); a
    /// running trial not stamped for twice this was lost, and runs again (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub heartbeat: Option<String>,
    /// Trials trained at once (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Threads of each trial, on which its folds train in parallel (default: cores / workers).
    #[arg(long)]
    pub threads_per_trial: Option<usize>,
    /// random | grid | evolution | tpe | nsga2 | motpe (default: random, or the resumed study's)
    #[arg(long)]
    pub strategy: Option<String>,
    /// fifo | asha | hyperband, with epochs as the budget (default: fifo, or the resumed study's)
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Reject candidates with more trainable parameters before training.
    #[arg(long)]
    pub max_params: Option<usize>,
    /// Reject candidates with more multiply-adds per sample before training.
    #[arg(long)]
    pub max_flops: Option<u64>,
    /// Reject candidates slower than this many milliseconds per sample (batch 1, one thread of
    /// this CPU) before training.
    #[arg(long, value_name = "MS")]
    pub max_latency: Option<f64>,
    /// What to optimise, e.g. `score,latency` (score, params, macs, latency; default: the space
    /// file's `objectives`, else the score alone); fixed by the study.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub objectives: Vec<Objective>,
    /// Continue a study whose space file has changed.
    #[arg(long)]
    pub force: bool,
    /// Memory one trial may use (e.g. 512M, 4G); larger candidates fail before training
    /// (default: the memory free when the search starts, shared between the workers).
    #[arg(long)]
    pub max_memory: Option<String>,
    /// A trial that trains longer than this (e.g. 90s, 5m, 1h) ends as failed; its worker goes on.
    #[arg(long)]
    pub trial_timeout: Option<String>,
    /// Stop the search after this many failed trials in a row (a space that cannot train).
    #[arg(long, default_value_t = 10)]
    pub max_consecutive_failures: usize,
    /// Skip retraining the best configuration and the test-set evaluation.
    #[arg(long)]
    pub no_final: bool,
    /// Show no progress: neither the live display (on a terminal) nor one line per finished
    /// trial (otherwise); the leaderboard and test result are printed as always.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Which study a command reads: `--study`, `--results`, `--storage` (the same three flags on
/// `leaderboard`, `trial`, `export`, `plot` and `report`).
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Study name (default: the only, else most recently changed, study under --results).
    #[arg(long)]
    pub study: Option<String>,
    /// The results folder: the studies' journals (without --storage) and the files made from them.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where studies are stored: postgresql://USER:PASSWORD@HOST:PORT/DATABASE for a database in
    /// Optuna's schema shared by workers anywhere (default: the journal under --results).
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
}

impl StudyArgs {
    /// The study's name (the only or latest one when --study is absent) and its storage.
    pub(crate) fn open(&self) -> Result<(String, Box<dyn crate::study::Storage>), CliError> {
        let url = storage_url(self.storage.as_deref(), &self.results)?;
        let study = match &self.study {
            Some(s) => s.clone(),
            None => only_study(&url)?,
        };
        let storage = crate::study::open(&url, &study)?;
        Ok((study, storage))
    }
}

#[derive(Debug, Args)]
pub struct LeaderboardArgs {
    #[command(flatten)]
    pub at: StudyArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Show the first N rows only (after --state and --sort).
    #[arg(long)]
    pub top: Option<usize>,
    /// Order the rows by this column: the score best first, other numbers smallest first,
    /// text alphabetically (ties keep the rank order).
    #[arg(long, value_enum, value_name = "COLUMN", default_value_t = Column::Rank)]
    pub sort: Column,
    /// Which trials to show: complete, pruned, failed (with interrupted ones) or all.
    #[arg(long, value_enum, default_value_t = StateFilter::All)]
    pub state: StateFilter,
    /// The columns to show, in order, e.g. `trial,score,params` (default: the format's own).
    #[arg(long, value_enum, value_name = "COLUMN,..", value_delimiter = ',')]
    pub columns: Vec<Column>,
    /// Only the Pareto front of a multi-objective study (front 1).
    #[arg(long)]
    pub pareto: bool,
}

/// Everything that can end a command; `main` maps it to an exit code in one place.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Space(#[from] SpaceError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Study(#[from] crate::study::StudyError),
    #[error(transparent)]
    Search(#[from] crate::controller::SearchError),
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// A path the user named for output (`--results`, `--out`) that cannot be made.
    #[error("cannot create {}: {message}", path.display())]
    CannotCreate { path: PathBuf, message: String },
}

impl CliError {
    /// 2 for bad input the user can fix (space file, flags, data), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Space(_)
            | CliError::Usage(_)
            | CliError::Data(_)
            | CliError::CannotCreate { .. } => 2,
            // A study name that does not exist is a typo, and a journal line that cannot be read
            // (edited by hand) is named with its line: both are input the user can fix.
            // So is a database that cannot be reached (a URL, a server, a network to fix).
            CliError::Study(
                StudyError::Missing(_)
                | StudyError::BadLine { .. }
                | StudyError::Corrupt { .. }
                | StudyError::Unreachable { .. },
            ) => 2,
            // Every trial in a row failing means a space or data set that cannot train.
            CliError::Search(crate::controller::SearchError::TooManyFailures { .. }) => 2,
            _ => 1,
        }
    }
}

/// A flag error from clap as one line (its text without the `error:` prefix, the usage block and
/// the help hint, which clap spreads over several lines), or `None` for --help, --version and
/// the help a bare `nas` prints, which are not errors to condense.
pub fn flag_error(e: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return None;
    }
    let text = e.render().to_string();
    let body: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = body.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    Some(format!("{line} (try --help)"))
}

/// Parses durations such as `90s`, `10m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 90s, 10m or 1h)"))?;
    let secs = match unit {
        "" | "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (use s, m or h)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{s}` must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Search(a) => search(*a),
        Command::Leaderboard(a) => show_leaderboard(a),
        Command::Trial(a) => trial::run(a),
        Command::Export(a) => model::export(a),
        Command::Predict(a) => model::predict(a),
        Command::Evaluate(a) => model::evaluate(a),
        Command::Compare(a) => compare(a),
        Command::Space(a) => space::run(a),
        Command::Plot(a) => report::plot(a),
        Command::Report(a) => report::report(a),
    }
}

/// Loads the data of a study: the source named by `spec`, read as `task` data with the CSV
/// target column and input shape the user gave, plus a separate test set when one is named.
/// `nas search`, `nas export` and `nas compare` all read their data through here.
pub(crate) fn load_data(
    spec: &str,
    target: Option<&str>,
    shape: Option<&str>,
    test_data: Option<&Path>,
    task: crate::data::Task,
) -> Result<DataSplit, CliError> {
    let source = DataSource::parse(spec)?;
    let opts = LoadOptions {
        target_column: target.map(String::from),
        shape: shape.map(str::parse::<InputShape>).transpose()?,
        task: Some(task),
    };
    let mut split = load(&source, &opts)?;
    if let Some(path) = test_data {
        split.test = Some(load_test_file(path, &opts, &split.train)?);
    }
    Ok(split)
}

/// Refuses an output directory that cannot be made because a part of it is a regular file,
/// before any work, so that a long run does not end on a typo. Creates nothing.
pub(crate) fn check_creatable(dir: &Path) -> Result<(), CliError> {
    let existing = dir
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| p.exists());
    match existing {
        Some(p) if !p.is_dir() => Err(CliError::CannotCreate {
            path: dir.to_path_buf(),
            message: format!("{} is not a directory", p.display()),
        }),
        _ => Ok(()),
    }
}

/// A sampler that cannot run on `space`: a continuous parameter under grid search is a mistake in
/// the space file, so it is named at that parameter's line and column.
fn sampler_error(space: &SearchSpace, file: &str, e: SearchError) -> CliError {
    match &e {
        // A parameter of the architecture language is named by its path, not written as a key:
        // its declaration knows where it is.
        SearchError::ContinuousParameter { param, .. } => {
            CliError::Space(match space.net.as_ref().and_then(|n| n.origin(param)) {
                Some(pos) => SpaceError::Invalid {
                    file: file.to_string(),
                    line: pos.line,
                    col: pos.col,
                    message: e.to_string(),
                },
                None => SpaceError::at_key(&space.source, file, param, e.to_string()),
            })
        }
        _ => CliError::Usage(e.to_string()),
    }
}

/// Trials (or comparison runs) trained at once when the user does not say: one per core.
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|e| {
        CliError::Study(crate::study::StudyError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    })
}

/// The study `--resume` names (or the only / latest one), as its journal records it.
fn resumed_study(a: &SearchArgs, storage: &StorageUrl) -> Result<StudyMeta, CliError> {
    let study = match (&a.study, &a.space) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) => SearchSpace::from_file(p)?.name,
        (None, None) => only_study(storage)?,
    };
    existing_study(storage, &study)?.ok_or_else(|| {
        CliError::Usage(format!(
            "--resume: there is no study `{study}` in {} to resume",
            storage.place()
        ))
    })
}

/// Parses sizes such as `512M`, `4G`, `1.5G` or a plain number of bytes (K, M, G are powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| c.is_alphabetic()).unwrap_or(t.len()));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 512M or 4G)"))?;
    let scale = match unit.to_ascii_uppercase().trim_end_matches('B') {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (use K, M, G or T)")),
    };
    let bytes = v * scale;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("`{s}` must be a positive size"));
    }
    Ok(bytes as u64)
}

/// The flags of `nas search`, checked before any file is read.
struct SearchPlan {
    trials: Option<usize>,
    time_budget: Option<Duration>,
    workers: usize,
    threads_per_trial: usize,
    trial_timeout: Option<Duration>,
    max_consecutive_failures: Option<usize>,
    max_memory: Option<u64>,
    storage: StorageUrl,
    heartbeat: Duration,
}

impl SearchArgs {
    /// Checks every flag that needs no file, so that a typo fails at once, before data loads.
    fn plan(&self) -> Result<SearchPlan, CliError> {
        let at_least_one = |flag: &str, v: Option<usize>| match v {
            Some(0) => Err(CliError::Usage(format!("{flag} must be at least 1"))),
            _ => Ok(()),
        };
        at_least_one("--folds", self.folds)?;
        at_least_one("--workers", self.workers)?;
        at_least_one("--threads-per-trial", self.threads_per_trial)?;
        at_least_one("--trials", self.trials)?;
        at_least_one(
            "--max-consecutive-failures",
            Some(self.max_consecutive_failures),
        )?;
        let duration = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
        };
        let time_budget = duration("--time-budget", &self.time_budget)?;
        let trial_timeout = duration("--trial-timeout", &self.trial_timeout)?;
        let storage = storage_url(self.storage.as_deref(), &self.results)?;
        let heartbeat = duration("--heartbeat", &self.heartbeat)?;
        if heartbeat.is_some() && matches!(storage, StorageUrl::Journal { .. }) {
            return Err(CliError::Usage(
                "--heartbeat needs a database --storage (a journal tells dead workers by their owner locks)".into(),
            ));
        }
        let max_memory = self
            .max_memory
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .map_err(|e| CliError::Usage(format!("--max-memory: {e}")))?;
        if let Some(s) = &self.strategy {
            s.parse::<Strategy>()
                .map_err(|e: SearchError| CliError::Usage(format!("--strategy: {e}")))?;
        }
        if let Some(s) = &self.scheduler {
            s.parse::<SchedulerKind>()
                .map_err(|e: SearchError| CliError::Usage(format!("--scheduler: {e}")))?;
        }
        if let Some(s) = &self.shape {
            s.parse::<InputShape>()?;
        }
        crate::objective::check(&self.objectives)
            .map_err(|e| CliError::Usage(format!("--objectives: {e}")))?;
        if self
            .max_latency
            .is_some_and(|m| !(m.is_finite() && m > 0.0))
        {
            return Err(CliError::Usage(
                "--max-latency must be a positive number of milliseconds".into(),
            ));
        }
        let workers = self.workers.unwrap_or_else(default_workers);
        Ok(SearchPlan {
            trials: match (self.trials, time_budget) {
                (Some(n), _) => Some(n),
                (None, Some(_)) => None,
                (None, None) => Some(20),
            },
            time_budget,
            workers,
            threads_per_trial: self
                .threads_per_trial
                .unwrap_or_else(|| (default_workers() / workers).max(1)),
            trial_timeout,
            max_consecutive_failures: Some(self.max_consecutive_failures),
            max_memory,
            storage,
            heartbeat: heartbeat.unwrap_or(crate::study::DEFAULT_HEARTBEAT),
        })
    }
}

/// Study `study` at `storage`, as it records it, when it exists already.
fn existing_study(storage: &StorageUrl, study: &str) -> Result<Option<StudyMeta>, CliError> {
    match crate::study::open(storage, study) {
        Ok(s) => {
            let mut meta = s.meta().clone();
            meta.name = study.to_string();
            Ok(Some(meta))
        }
        Err(StudyError::Missing(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn search(a: SearchArgs) -> Result<(), CliError> {
    let plan = a.plan()?;
    check_creatable(&a.results)?;
    let resumed = if a.resume {
        Some(resumed_study(&a, &plan.storage)?)
    } else {
        None
    };
    let (space, space_label) = match (&a.space, &resumed) {
        (Some(p), _) => (SearchSpace::from_file(p)?, p.display().to_string()),
        (None, Some(m)) => (
            SearchSpace::from_str_named(&m.space_source, &m.name, &m.space_file)?,
            m.space_file.clone(),
        ),
        (None, None) => {
            return Err(CliError::Usage(
                "--space FILE is required (or --resume to continue a study)".into(),
            ))
        }
    };
    if space.net.as_ref().is_some_and(|n| !n.has_model()) {
        return Err(CliError::Space(SpaceError::at_key(
            &space.source,
            &space_label,
            "params",
            "the file has `params` but no `model`: free parameters are for an objective of your own (the Rust API, nas::study::Study); `nas search` needs a `model`".into(),
        )));
    }
    let study = a.study.clone().unwrap_or_else(|| space.name.clone());
    let dir = study_dir(&a.results, &study);
    // An existing study is read before anything else: it fixes the data, seed and folds.
    let existing = match resumed {
        Some(m) => Some(m),
        None => existing_study(&plan.storage, &study)?,
    };
    if let Some(m) = &existing {
        if m.space_source != space.source && !a.force {
            return Err(CliError::Usage(format!(
                "study `{study}` in {} was created from a different space file; use another --study, or --force to continue it anyway",
                plan.storage.place()
            )));
        }
        // Trials made with another seed, other folds, other data or objectives would not
        // compare.
        let objectives = crate::objective::normalise(&a.objectives);
        let clash = if a.seed.is_some_and(|s| s != m.seed) {
            Some(format!("seed {}", m.seed))
        } else if !a.objectives.is_empty() && objectives != m.objectives {
            Some(format!(
                "objectives {}",
                crate::objective::names(Objectives::of(m).list())
            ))
        } else if a.folds.is_some_and(|k| k != m.folds) {
            Some(format!("{} folds", m.folds))
        } else if a.data.as_ref().is_some_and(|d| *d != m.data) {
            Some(format!("data `{}`", m.data))
        } else {
            None
        };
        if let Some(what) = clash {
            return Err(CliError::Usage(format!(
                "study `{study}` in {} was created with {what}; leave the flag out to continue it, or start a new study with --study NAME",
                plan.storage.place()
            )));
        }
    }
    // Without --data an existing study continues on its own data, never the space file's.
    let data_spec = a
        .data
        .clone()
        .or_else(|| existing.as_ref().map(|m| m.data.clone()))
        .or_else(|| space.data.clone())
        .unwrap_or_else(|| "digits".into());
    let strategy: Strategy = a
        .strategy
        .clone()
        .or_else(|| existing.as_ref().map(|m| m.strategy.clone()))
        .unwrap_or_else(|| "random".into())
        .parse()
        .map_err(|e: SearchError| CliError::Usage(e.to_string()))?;
    let scheduler: SchedulerKind = a
        .scheduler
        .clone()
        .or_else(|| existing.as_ref().map(|m| m.scheduler.clone()))
        .unwrap_or_else(|| "fifo".into())
        .parse()
        .map_err(|e: SearchError| CliError::Usage(e.to_string()))?;
    let sampler = strategy
        .build(&space)
        .map_err(|e| sampler_error(&space, &space_label, e))?;
    let split = load_data(
        &data_spec,
        a.target.as_deref(),
        a.shape.as_deref(),
        a.test_data.as_deref(),
        space.task,
    )?;
    if split.train.task() != space.task {
        return Err(CliError::Usage(format!(
            "{space_label} describes a {:?} task but {data_spec} is {:?} data",
            space.task,
            split.train.task()
        )));
    }
    let seed = existing.as_ref().map_or(a.seed.unwrap_or(0), |m| m.seed);
    let folds = existing.as_ref().map_or(a.folds.unwrap_or(3), |m| m.folds);
    let data = PreparedData::new(split, folds, seed)
        .map_err(|e| CliError::Usage(format!("{data_spec}: {e}")))?;
    // Warnings only once the data is known to be usable, so that an error stands alone.
    for warning in crate::data::check_classes(&data.train, folds)? {
        eprintln!("nas: warning: {data_spec}: {warning}");
    }
    let metric = Metric::for_task(space.task);
    // Only now, with everything checked and the data loaded, is a new study created.
    let meta = StudyMeta {
        name: study.clone(),
        space_file: space_label.clone(),
        space_source: space.source.clone(),
        data: data_spec.clone(),
        task: space.task,
        metric,
        seed,
        folds,
        strategy: strategy.label().into(),
        scheduler: scheduler.label().into(),
        // The flag, else the space file's; an existing study keeps its own.
        objectives: crate::objective::normalise(if a.objectives.is_empty() {
            &space.objectives
        } else {
            &a.objectives
        }),
    };
    // A results path under a regular file is the user's to fix, and is named as such.
    std::fs::create_dir_all(&dir).map_err(|e| CliError::CannotCreate {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let options = StorageOptions {
        heartbeat: plan.heartbeat,
    };
    let mut storage = crate::study::open_or_create(&plan.storage, meta, options)?;
    let requeue = storage.recover_stale()?;
    if !requeue.is_empty() {
        eprintln!(
            "nas: resuming study `{study}`: {} trial(s) lost by a process that died are queued again",
            requeue.len()
        );
    }
    eprintln!(
        "nas: study `{study}`: {} search samples in {folds} folds, {} held-out test samples ({}), input {}; results in {}{}",
        data.train.len(),
        data.test.len(),
        data_spec,
        data.train.shape,
        dir.display(),
        match &plan.storage {
            StorageUrl::Journal { .. } => String::new(),
            StorageUrl::Postgres(url) => format!(", trials in {url}"),
        }
    );
    // Live on a terminal, plain lines in a pipe or file, nothing with --quiet.
    let progress = Mode::for_stderr(a.quiet).build();
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let (c, progress) = (cancel.clone(), progress.clone());
        // Ctrl-C, and SIGTERM (what `kill`, Slurm and Kubernetes send), end the trials in
        // flight as interrupted. A second signal while shutting down quits at once.
        let _ = ctrlc::set_handler(move || {
            if c.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            progress.note("nas: interrupted; finishing up (Ctrl-C again to quit at once)");
        });
    }
    let workers = plan.workers;
    let controller = Controller {
        space: &space,
        data: &data,
        metric,
        opts: SearchOptions {
            trials: plan.trials,
            time_budget: plan.time_budget,
            seed,
            workers,
            threads_per_trial: plan.threads_per_trial,
            max_params: a.max_params,
            max_macs: a.max_flops,
            max_budget: None,
            // Unless the user says: what the machine has free now, shared between the workers.
            max_memory: plan
                .max_memory
                .or_else(|| crate::sys::available_bytes().map(|b| b / workers.max(1) as u64)),
            trial_timeout: plan.trial_timeout,
            max_consecutive_failures: plan.max_consecutive_failures,
            objectives: storage.meta().objectives.clone(),
            max_latency: a.max_latency,
            progress,
        },
        cancel: cancel.clone(),
    };
    let run = controller.run(
        storage.as_mut(),
        sampler,
        scheduler.build(space.max_epochs()),
        requeue,
    );
    // Whatever ended the search, the trials that finished are ranked, saved and plotted.
    let table = leaderboard::save(&dir, storage.as_ref(), Some(&space))?;
    if let Err(e) = report::write_plots(&dir, storage.as_ref(), Some(&space), a.quiet) {
        // The search's results are kept whatever happens to its pictures.
        eprintln!("nas: warning: {e}");
    }
    let stats = run?;
    println!("{table}");
    if stats.trials > 0 {
        let peak = crate::sys::peak_resident_bytes()
            .map(|b| format!("; peak memory {}", crate::sys::human_bytes(b)))
            .unwrap_or_default();
        eprintln!(
            "nas: {} trials in {:.1}s with {} workers; controller overhead {:.2}% of worker time{peak}",
            stats.trials,
            stats.wall.as_secs_f64(),
            stats.workers,
            100.0 * stats.overhead()
        );
    }
    if a.no_final || cancel.load(Ordering::SeqCst) {
        return Ok(());
    }
    // With several objectives: the first front's best on the first objective.
    let best = Objectives::of(storage.meta())
        .best(storage.trials())
        .cloned()
        .ok_or_else(|| crate::controller::SearchError::NoBest("every trial failed".into()))?;
    eprintln!(
        "nas: retraining trial {} on all {} search samples for {} epochs, then one evaluation on the test set",
        best.number,
        data.train.len(),
        best.epochs
    );
    // The search's threads, all free now.
    let threads = plan.workers * plan.threads_per_trial;
    let model = train_final(&space, &data, metric, &best, &cancel, threads)?;
    storage.set_test_result(model.test.clone())?;
    let line = leaderboard::test_line(&model.test);
    leaderboard::save(&dir, storage.as_ref(), Some(&space))?;
    let json = serde_json::to_string_pretty(&model.test)
        .map_err(|e| CliError::Usage(format!("cannot write the test result: {e}")))?;
    write_file(&dir.join("test.json"), &json)?;
    println!("{line}");
    Ok(())
}

fn compare(a: CompareArgs) -> Result<(), CliError> {
    use crate::compare;
    let storage = storage_url(a.storage.as_deref(), &a.out)?;
    let space = SearchSpace::from_file(&a.space)?;
    let data_spec = a
        .data
        .clone()
        .or_else(|| space.data.clone())
        .unwrap_or_else(|| "digits".into());
    if a.folds == 0 || a.seeds == 0 || a.budget == 0 {
        return Err(CliError::Usage(
            "--folds, --seeds and --budget must be at least 1".into(),
        ));
    }
    let split = load_data(&data_spec, None, None, None, space.task)?;
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    crate::objective::check(&a.objectives)
        .map_err(|e| CliError::Usage(format!("--objectives: {e}")))?;
    let objectives = Objectives::new(
        &crate::objective::normalise(&a.objectives),
        Metric::for_task(space.task),
    );
    if !a.reference.is_empty() && a.reference.len() != objectives.list().len() {
        return Err(CliError::Usage(format!(
            "--reference: {} values for {} objectives ({})",
            a.reference.len(),
            objectives.list().len(),
            crate::objective::names(objectives.list())
        )));
    }
    let default_strategies = if objectives.is_multi() {
        "random,nsga2,motpe"
    } else {
        "random,grid,evolution,tpe"
    };
    let strategies = list(a.strategies.as_deref().unwrap_or(default_strategies))
        .iter()
        .map(|s| s.parse::<Strategy>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let schedulers = list(&a.schedulers)
        .iter()
        .map(|s| s.parse::<SchedulerKind>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    for s in &strategies {
        s.build(&space)
            .map_err(|e| sampler_error(&space, &a.space.display().to_string(), e))?;
    }
    let seeds: Vec<u64> = (0..a.seeds).collect();
    let mut data = Vec::new();
    for &seed in &seeds {
        data.push((
            seed,
            PreparedData::new(split.clone(), a.folds, seed)
                .map_err(|e| CliError::Usage(format!("{data_spec}: {e}")))?,
        ));
    }
    if let Some((_, d)) = data.first() {
        for warning in crate::data::check_classes(&d.train, a.folds)? {
            eprintln!("nas: warning: {data_spec}: {warning}");
        }
    }
    let jobs = a.jobs.unwrap_or_else(default_workers);
    let copts = compare::CompareOptions {
        strategies,
        schedulers,
        seeds,
        budget: a.budget,
        jobs,
        out: a.out.clone(),
        storage,
        verbose: !a.quiet,
        objectives: objectives.list().to_vec(),
    };
    eprintln!(
        "nas compare: {} runs of {} epochs each on {data_spec}, {jobs} at a time; studies in {}",
        copts.strategies.len() * copts.schedulers.len() * copts.seeds.len(),
        a.budget,
        a.out.display()
    );
    let start = std::time::Instant::now();
    let mut results = compare::run_all(&space, &data_spec, &data, a.folds, &copts)?;
    // Several objectives: every run's hypervolume against one reference point, stated.
    let (mut stated, mut point_text) = (String::new(), String::new());
    if objectives.is_multi() {
        let point = if a.reference.is_empty() {
            compare::default_reference(&results)
        } else {
            Some(objectives.to_losses(&a.reference))
        };
        if let Some(point) = point {
            compare::apply_hypervolume(&mut results, &point);
            // Back in the objectives' own units (the losses of maximised ones are negated).
            let own: Vec<String> = objectives
                .to_losses(&point)
                .iter()
                .map(|v| format!("{v}"))
                .collect();
            stated = format!(
                " --objectives {} --reference {}",
                crate::objective::names(objectives.list()),
                own.join(",")
            );
            point_text = objectives
                .list()
                .iter()
                .zip(&own)
                .map(|(o, v)| format!("{o} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
        }
    }
    let (metric, what) = compare::measure(&objectives);
    let (reference, summaries) = compare::summarize(&results, metric, a.budget);
    let mut report = compare::render(reference, &summaries, &what, a.budget);
    if !stated.is_empty() {
        report.push_str(&format!(
            "\nHypervolume: the region of ({}) that the complete, feasible trials dominate, every objective turned lower-is-better, up to the reference point {point_text} (in the objectives' units).\n",
            crate::objective::names(objectives.list()),
        ));
    }
    report.push_str(&format!(
        "\nSpace {}, data {data_spec}, {} fold(s); command: nas compare --space {} --budget {} --seeds {} --folds {} --strategies {} --schedulers {}{stated}\n",
        a.space.display(),
        a.folds,
        a.space.display(),
        a.budget,
        a.seeds,
        a.folds,
        copts
            .strategies
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(","),
        copts
            .schedulers
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(","),
    ));
    compare::save(&a.out, &report, &results, &summaries).map_err(|e| {
        CliError::Study(crate::study::StudyError::Io {
            path: a.out.clone(),
            message: e.to_string(),
        })
    })?;
    println!("{report}");
    eprintln!(
        "nas compare: done in {:.0}s; report in {}",
        start.elapsed().as_secs_f64(),
        a.out.join("comparison.md").display()
    );
    Ok(())
}

fn show_leaderboard(a: LeaderboardArgs) -> Result<(), CliError> {
    let format = a.format;
    let (study, storage) = a.at.open()?;
    let space = SearchSpace::from_str_named(
        &storage.meta().space_source,
        &study,
        &storage.meta().space_file,
    )
    .ok();
    let metric = storage.meta().metric;
    let objectives = Objectives::of(storage.meta());
    if a.pareto && !objectives.is_multi() {
        return Err(CliError::Usage(format!(
            "--pareto: study `{study}` has one objective (its best trials are the top of the leaderboard); a search with --objectives score,latency has a Pareto front"
        )));
    }
    let view = View {
        state: a.state,
        sort: a.sort,
        top: a.top,
        columns: a.columns,
        pareto: a.pareto,
    };
    let rows = leaderboard::select(
        leaderboard::ranked_rows(storage.trials(), &objectives, space.as_ref()),
        metric,
        &view,
    );
    let mut text = leaderboard::render_columns(&rows, metric, format, &view.columns);
    if matches!(format, Format::Table | Format::Markdown) {
        if let Some(t) = storage.test_result() {
            text.push('\n');
            text.push_str(&leaderboard::test_line(t));
        }
    }
    print_out(text.trim_end_matches('\n'))
}

/// Prints `text` and a newline on standard output; a reader that stopped reading (`| head`) is
/// not an error.
fn print_out(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Study(crate::study::StudyError::Io {
                path: PathBuf::from("standard output"),
                message: e.to_string(),
            }))
        }
        _ => Ok(()),
    }
}

/// The study to show when none is named: the only one, else the most recently changed.
pub(crate) fn only_study(storage: &StorageUrl) -> Result<String, CliError> {
    crate::study::latest_study(storage)?.ok_or_else(|| {
        CliError::Usage(format!(
            "no study under {}; run `nas search --space FILE` first or pass --results or --storage",
            storage.place()
        ))
    })
}

/// The checked `--storage` flag (the journal under `results` when it is absent).
pub(crate) fn storage_url(flag: Option<&str>, results: &Path) -> Result<StorageUrl, CliError> {
    StorageUrl::parse(flag, results).map_err(|e| CliError::Usage(format!("--storage: {e}")))
}
