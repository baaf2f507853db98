//! A study kept as an append-only journal in the format of Optuna's `JournalStorage`.
//!
//! Every change is one JSON line appended to `journal.log` (the format Optuna's
//! `JournalFileBackend` reads), so `optuna.load_study` and optuna-dashboard can open a `nas`
//! study. The in-memory state is rebuilt by replaying the lines; several processes may share one
//! journal because every write happens under an exclusive lock on `journal.lock`, after replaying
//! whatever other processes appended since the last read.
//!
//! How a study maps onto Optuna's model:
//! - the study's direction is MAXIMIZE for accuracy and MINIMIZE for RMSE; [`StudyMeta`] is kept
//!   whole in the study system attribute `nas_meta` and, for people, field by field in user
//!   attributes; the test result is the study user attribute `test_result`;
//! - parameters carry Optuna distributions (`IntDistribution`, `FloatDistribution`,
//!   `CategoricalDistribution`) and internal values (a float; a categorical is its index);
//! - intermediate values are in the metric's own direction (accuracy, not minus accuracy), with
//!   the epoch as the step; a pruned trial's value is its last intermediate value, as in Optuna;
//! - an interrupted trial is FAIL with the user attribute `fail_reason = "interrupted"`;
//! - trial facts (`seed`, `n_params`, `macs`, `architecture`, `fold_scores`, `cv_std`, `epochs`,
//!   `budget`, `seconds`, `error`) are trial user attributes, written before the final state
//!   because Optuna ignores updates to a finished trial.
//!
//! A trial's owner is the `worker_id` (`<hostname>-<pid>`) of the line that created it. A process
//! that creates trials holds its owner lock (`owners/<worker_id>.lock`, see [`super::liveness`])
//! for as long as it may write them, so a running trial whose owner's lock is free was lost,
//! whichever host ran it. The owner's start time (system attribute `nas_owner_start`) is still
//! written for journals read by older versions, which look owners up in `/proc`.
//!
//! Limitation: the lock is `flock` on `journal.lock`, which Optuna's own writers do not take; a
//! Python process should read the journal, not write to it while `nas` runs.

use super::liveness::{self, Liveness, OwnerLock};
use super::{Storage, StudyError, StudyMeta, TestResult, TrialRecord};
use crate::search::TrialState;
use crate::space::{Choice, Config, Distribution, ParamValue, SearchSpace};
use fs4::fs_std::FileExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Optuna's `JournalOperation` codes.
mod op {
    pub const CREATE_STUDY: u64 = 0;
    pub const DELETE_STUDY: u64 = 1;
    pub const SET_STUDY_USER_ATTR: u64 = 2;
    pub const SET_STUDY_SYSTEM_ATTR: u64 = 3;
    pub const CREATE_TRIAL: u64 = 4;
    pub const SET_TRIAL_PARAM: u64 = 5;
    pub const SET_TRIAL_STATE_VALUES: u64 = 6;
    pub const SET_TRIAL_INTERMEDIATE_VALUE: u64 = 7;
    pub const SET_TRIAL_USER_ATTR: u64 = 8;
    pub const SET_TRIAL_SYSTEM_ATTR: u64 = 9;
}

/// Optuna's `TrialState` values.
mod state {
    pub const RUNNING: u64 = 0;
    pub const COMPLETE: u64 = 1;
    pub const PRUNED: u64 = 2;
    pub const FAIL: u64 = 3;
}

/// Optuna's `StudyDirection` values.
const MINIMIZE: u64 = 1;
const MAXIMIZE: u64 = 2;

const META_ATTR: &str = "nas_meta";
const TEST_ATTR: &str = "test_result";
const OWNER_START_ATTR: &str = "nas_owner_start";
const FAIL_REASON: &str = "fail_reason";
const INTERRUPTED: &str = "interrupted";
/// Why [`JournalStorage::recover_stale`] failed a trial.
pub const LOST: &str = "lost: the process died while it ran";

/// A study stored as an Optuna-compatible journal in `<dir>/journal.log`.
pub struct JournalStorage {
    path: PathBuf,
    lock: File,
    worker_id: String,
    host: String,
    start_time: Option<u64>,
    /// This process's owner lock, taken before the first trial this connection creates.
    owner: Option<Arc<OwnerLock>>,
    /// The study's space, for the distributions written with parameters.
    space: Option<SearchSpace>,
    meta: StudyMeta,
    replay: Replay,
}

/// Which study of the journal is ours.
enum Target {
    Named(String),
    First,
}

/// The state rebuilt from the lines read so far.
struct Replay {
    /// Bytes and lines of the journal consumed (complete lines only).
    offset: u64,
    lines: usize,
    warned_torn_at: Option<u64>,
    target: Target,
    /// Live studies by id, as Optuna numbers them.
    studies: HashMap<u64, String>,
    next_study_id: u64,
    next_trial_id: u64,
    study: Option<u64>,
    maximize: bool,
    meta: Option<StudyMeta>,
    test: Option<TestResult>,
    /// Optuna trial id -> our trial number.
    numbers: HashMap<u64, usize>,
    records: Vec<TrialRecord>,
    /// What the records do not hold, by trial number.
    trials: Vec<Trial>,
}

/// What the journal says about a trial beyond its [`TrialRecord`].
struct Trial {
    id: u64,
    owner: String,
    owner_start: Option<u64>,
    /// Step -> value in the study's direction.
    curve: BTreeMap<u64, f64>,
    fail_reason: Option<String>,
}

impl JournalStorage {
    /// The journal's file name inside a study directory.
    pub const FILE: &'static str = "journal.log";
    /// The lock file next to it (not Optuna's `journal.log.lock`, which its writers remove).
    pub const LOCK: &'static str = "journal.lock";

    /// Opens the study named `meta.name` in `dir` (replaying its journal), or creates it.
    /// An existing study keeps its own metadata: compare [`Storage::meta`] with what you expected.
    pub fn open_or_create(dir: &Path, meta: StudyMeta) -> Result<JournalStorage, StudyError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut s = Self::connect(dir, Target::Named(meta.name.clone()), meta.clone())?;
        s.transact(|s| {
            let mut lines = Vec::new();
            let id = match s.replay.study {
                Some(id) => id,
                None => {
                    let direction = if meta.metric.higher_is_better() {
                        MAXIMIZE
                    } else {
                        MINIMIZE
                    };
                    lines.push((
                        op::CREATE_STUDY,
                        json!({"study_name": meta.name, "directions": [direction]}),
                    ));
                    s.replay.next_study_id
                }
            };
            if s.replay.meta.is_none() {
                lines.extend(meta_lines(id, &meta)?);
            }
            Ok((lines, ()))
        })?;
        s.finish_open()
    }

    /// Opens an existing study in `dir`: the first study of its journal.
    pub fn open(dir: &Path) -> Result<JournalStorage, StudyError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !dir.join(Self::FILE).exists() {
            return Err(StudyError::Missing(name));
        }
        let placeholder = StudyMeta {
            name: name.clone(),
            space_file: String::new(),
            space_source: String::new(),
            data: String::new(),
            task: crate::data::Task::Classification,
            metric: super::Metric::Accuracy,
            seed: 0,
            folds: 0,
            strategy: String::new(),
            scheduler: String::new(),
        };
        let mut s = Self::connect(dir, Target::First, placeholder)?;
        s.refresh()?;
        if s.replay.study.is_none() {
            return Err(StudyError::Missing(name));
        }
        s.finish_open()
    }

    /// The `worker_id` this storage writes: `<hostname>-<pid>`.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Marks FAIL every running trial whose owner process is gone, with `fail_reason` [`LOST`],
    /// and returns their configurations to run again; then removes the lock files of dead owners.
    /// An owner is gone when its owner lock can be taken, from any host. An owner without lock
    /// file (a journal from an older version) is looked up in `/proc` on its own host, and
    /// presumed alive on another.
    pub fn recover_stale(&mut self) -> Result<Vec<Config>, StudyError> {
        let dir = self.dir().to_path_buf();
        let (configs, dead) = self.transact(|s| {
            // Dead owners' locks stay held until their trials are recorded, so that a new
            // process reusing the worker id cannot take them in between.
            let mut owners: HashMap<&str, Liveness> = HashMap::new();
            let mut lines = Vec::new();
            let mut configs = Vec::new();
            for (t, r) in s.replay.trials.iter().zip(&s.replay.records) {
                if r.state != TrialState::Running {
                    continue;
                }
                let owner = owners
                    .entry(t.owner.as_str())
                    .or_insert_with(|| liveness::probe(&dir, &t.owner));
                let gone = match owner {
                    Liveness::Alive => false,
                    Liveness::Dead(_) => true,
                    Liveness::Unknown => {
                        liveness::legacy_owner_is_gone(&t.owner, t.owner_start, &s.host)
                    }
                };
                if !gone {
                    continue;
                }
                lines.push(trial_user_attr(t.id, FAIL_REASON, json!(LOST)));
                lines.push(trial_user_attr(t.id, "error", json!(LOST)));
                lines.push(state_line(t.id, state::FAIL, Value::Null));
                if !r.config.is_empty() {
                    configs.push(r.config.clone());
                }
            }
            let probed: Vec<&str> = owners.keys().copied().collect();
            let mut dead = liveness::dead_owners(&dir, &probed);
            dead.extend(owners.into_values().filter_map(|o| match o {
                Liveness::Dead(d) => Some(d),
                _ => None,
            }));
            Ok((lines, (configs, dead)))
        })?;
        for d in dead {
            d.remove();
        }
        Ok(configs)
    }

    /// The study directory.
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn connect(dir: &Path, target: Target, meta: StudyMeta) -> Result<JournalStorage, StudyError> {
        let path = dir.join(Self::FILE);
        let lock_path = dir.join(Self::LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        let host = liveness::hostname();
        let pid = std::process::id();
        Ok(JournalStorage {
            path,
            lock,
            worker_id: format!("{host}-{pid}"),
            host,
            start_time: liveness::process_start(pid),
            owner: None,
            space: None,
            meta,
            replay: Replay::new(target),
        })
    }

    fn finish_open(mut self) -> Result<JournalStorage, StudyError> {
        match self.replay.meta.clone() {
            Some(meta) => self.meta = meta,
            None => {
                return Err(StudyError::Corrupt {
                    path: self.path.clone(),
                    message: "the study was not created by nas (no `nas_meta` attribute)".into(),
                })
            }
        }
        self.space = SearchSpace::from_str_named(
            &self.meta.space_source,
            &self.meta.name,
            &self.meta.space_file,
        )
        .ok();
        Ok(self)
    }

    /// Runs `f` holding the lock: shared to read, exclusive to write.
    fn locked<T>(
        &mut self,
        exclusive: bool,
        f: impl FnOnce(&mut Self) -> Result<T, StudyError>,
    ) -> Result<T, StudyError> {
        let lock_path = self.path.with_file_name(Self::LOCK);
        let taken = if exclusive {
            FileExt::lock_exclusive(&self.lock)
        } else {
            FileExt::lock_shared(&self.lock)
        };
        taken.map_err(|e| io_err(&lock_path, e))?;
        let result = f(self);
        let released = FileExt::unlock(&self.lock).map_err(|e| io_err(&lock_path, e));
        let value = result?;
        released?;
        Ok(value)
    }

    /// Under the exclusive lock: catches up with the journal, asks `build` for the lines to
    /// append (it sees the up-to-date state), appends them durably and replays them.
    fn transact<T>(
        &mut self,
        build: impl FnOnce(&Self) -> Result<(Vec<(u64, Value)>, T), StudyError>,
    ) -> Result<T, StudyError> {
        self.locked(true, |s| {
            s.sync(true)?;
            let (lines, value) = build(s)?;
            if !lines.is_empty() {
                s.append(lines)?;
                s.sync(true)?;
            }
            Ok(value)
        })
    }

    fn append(&self, lines: Vec<(u64, Value)>) -> Result<(), StudyError> {
        let mut text = String::new();
        for (code, body) in lines {
            let mut obj = serde_json::Map::new();
            obj.insert("op_code".into(), json!(code));
            obj.insert("worker_id".into(), json!(self.worker_id));
            if let Value::Object(fields) = body {
                obj.extend(fields);
            }
            let line = serde_json::to_string(&Value::Object(obj)).map_err(|e| StudyError::Io {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
            text.push_str(&line);
            text.push('\n');
        }
        let io = |e| io_err(&self.path, e);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.flush().map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Replays the lines appended since the last read. Called with the lock held, so an
    /// unterminated last line was left by a writer that died; `writing` removes it.
    fn sync(&mut self, writing: bool) -> Result<(), StudyError> {
        let io = |e| io_err(&self.path, e);
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        f.seek(SeekFrom::Start(self.replay.offset)).map_err(io)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io)?;
        let mut start = 0;
        while let Some(len) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + len];
            self.replay.lines += 1;
            self.replay
                .apply_line(line)
                .map_err(|message| StudyError::BadLine {
                    path: self.path.clone(),
                    line: self.replay.lines,
                    message,
                })?;
            start += len + 1;
            self.replay.offset += len as u64 + 1;
        }
        if start < buf.len() {
            let at = self.replay.offset;
            let line = self.replay.lines + 1;
            if writing {
                eprintln!(
                    "nas: warning: {}:{line}: removing a torn last line (a write cut short by a crash)",
                    self.path.display()
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .map_err(io)?;
                f.set_len(at).map_err(io)?;
                f.sync_all().map_err(io)?;
                self.replay.warned_torn_at = None;
            } else if self.replay.warned_torn_at != Some(at) {
                eprintln!(
                    "nas: warning: {}:{line}: ignoring a torn last line (a write cut short by a crash)",
                    self.path.display()
                );
                self.replay.warned_torn_at = Some(at);
            }
        }
        Ok(())
    }

    /// A trial that may still change, with its record.
    fn running(&self, number: usize) -> Result<(&Trial, &TrialRecord), StudyError> {
        let (Some(t), Some(r)) = (
            self.replay.trials.get(number),
            self.replay.records.get(number),
        ) else {
            return Err(StudyError::NoTrial(number));
        };
        if r.state != TrialState::Running {
            return Err(StudyError::Conflict(format!(
                "trial {number} has already finished ({})",
                r.state.label()
            )));
        }
        Ok((t, r))
    }

    /// The value as Optuna sees it: the objective in the study's direction.
    fn directed(&self, loss: f64) -> f64 {
        if self.replay.maximize {
            -loss
        } else {
            loss
        }
    }

    fn param_line(&self, id: u64, name: &str, v: &ParamValue) -> (u64, Value) {
        let dist = self
            .space
            .as_ref()
            .and_then(|s| s.param(name))
            .map(|p| &p.dist)
            .filter(|d| d.contains(v));
        let (dist, internal) = match (dist, v) {
            (Some(d), ParamValue::Int(x)) => (distribution_json(d), json!(*x as f64)),
            (Some(d), ParamValue::Float(x)) => (distribution_json(d), json!(x)),
            (Some(d), ParamValue::Cat(i)) => (distribution_json(d), json!(i)),
            // Not in the study's space (changed with --force): a one-point domain keeps the
            // value readable, though Optuna drops it if earlier trials used another domain.
            (None, ParamValue::Int(x)) => (int_json(*x, *x, false), json!(*x as f64)),
            (None, ParamValue::Float(x)) => (float_json(*x, *x, false), json!(x)),
            (None, ParamValue::Cat(i)) => {
                let choices: Vec<Choice> = (0..=*i as i64).map(Choice::Int).collect();
                (categorical_json(&choices), json!(i))
            }
        };
        (
            op::SET_TRIAL_PARAM,
            json!({"trial_id": id, "param_name": name, "param_value_internal": internal,
                   "distribution": dist}),
        )
    }
}

impl Drop for JournalStorage {
    fn drop(&mut self) {
        if let Some(lock) = self.owner.take() {
            // With none of its trials running, nobody needs to ask about this owner again.
            let tidy = !self
                .replay
                .trials
                .iter()
                .zip(&self.replay.records)
                .any(|(t, r)| t.owner == self.worker_id && r.state == TrialState::Running);
            liveness::release(lock, tidy);
        }
    }
}

impl Storage for JournalStorage {
    fn meta(&self) -> &StudyMeta {
        &self.meta
    }

    fn trials(&self) -> &[TrialRecord] {
        &self.replay.records
    }

    fn refresh(&mut self) -> Result<(), StudyError> {
        self.locked(false, |s| s.sync(false))
    }

    fn create_trial_within(&mut self, limit: Option<usize>) -> Result<Option<usize>, StudyError> {
        // Held before the trial exists, so no prober can see the trial without its owner lock.
        if self.owner.is_none() {
            self.owner = Some(liveness::hold(self.dir(), &self.worker_id)?);
        }
        let number = self.transact(|s| {
            let study = s
                .replay
                .study
                .ok_or_else(|| StudyError::Missing(s.meta.name.clone()))?;
            let counted = s
                .replay
                .records
                .iter()
                .filter(|t| super::counts_toward_total(t))
                .count();
            if limit.is_some_and(|n| counted >= n) {
                return Ok((Vec::new(), None));
            }
            let id = s.replay.next_trial_id;
            let mut lines = vec![(
                op::CREATE_TRIAL,
                json!({"study_id": study, "datetime_start": iso_now()}),
            )];
            if let Some(start) = s.start_time {
                lines.push((
                    op::SET_TRIAL_SYSTEM_ATTR,
                    json!({"trial_id": id, "system_attr": {OWNER_START_ATTR: start}}),
                ));
            }
            Ok((lines, Some(s.replay.records.len())))
        })?;
        let Some(number) = number else {
            return Ok(None);
        };
        match self.replay.trials.get(number) {
            Some(t) if t.owner == self.worker_id => Ok(Some(number)),
            _ => Err(StudyError::Conflict(format!(
                "{}: trial {number} was not recorded as created by this process",
                self.path.display()
            ))),
        }
    }

    fn set_params(&mut self, number: usize, config: Config, seed: u64) -> Result<(), StudyError> {
        self.transact(|s| {
            let (t, _) = s.running(number)?;
            let mut lines: Vec<_> = config
                .iter()
                .map(|(k, v)| s.param_line(t.id, k, v))
                .collect();
            lines.push(trial_user_attr(t.id, "seed", json!(seed)));
            Ok((lines, ()))
        })
    }

    fn report(&mut self, number: usize, epoch: usize, value: f64) -> Result<(), StudyError> {
        if !value.is_finite() {
            return Ok(());
        }
        self.transact(|s| {
            let (t, _) = s.running(number)?;
            let line = (
                op::SET_TRIAL_INTERMEDIATE_VALUE,
                json!({"trial_id": t.id, "step": epoch, "intermediate_value": s.directed(value)}),
            );
            Ok((vec![line], ()))
        })
    }

    fn finish_trial(&mut self, record: TrialRecord) -> Result<(), StudyError> {
        self.transact(|s| {
            let (t, old) = s.running(record.number)?;
            let id = t.id;
            let mut lines = Vec::new();
            for (k, v) in &record.config {
                if old.config.get(k) != Some(v) {
                    lines.push(s.param_line(id, k, v));
                }
            }
            for (i, v) in record.intermediate.iter().enumerate() {
                let (step, value) = (i as u64 + 1, s.directed(*v));
                if value.is_finite() && t.curve.get(&step) != Some(&value) {
                    lines.push((
                        op::SET_TRIAL_INTERMEDIATE_VALUE,
                        json!({"trial_id": id, "step": step, "intermediate_value": value}),
                    ));
                }
            }
            let mut attr = |k: &str, v: Value| lines.push(trial_user_attr(id, k, v));
            if old.seed != record.seed {
                attr("seed", json!(record.seed));
            }
            attr("n_params", json!(record.params));
            attr("macs", json!(record.macs));
            attr("architecture", json!(record.architecture));
            attr("fold_scores", json!(record.fold_scores));
            attr("cv_std", json!(record.cv_std));
            attr("epochs", json!(record.epochs));
            attr("budget", json!(record.budget));
            attr("seconds", json!(record.seconds));
            let finite_mean = record.cv_mean.filter(|m| m.is_finite());
            let (code, values) = match record.state {
                TrialState::Complete if finite_mean.is_some() => {
                    (state::COMPLETE, json!([finite_mean]))
                }
                TrialState::Complete => {
                    attr("error", json!("complete without a finite score"));
                    (state::FAIL, Value::Null)
                }
                TrialState::Pruned => {
                    let last = record
                        .intermediate
                        .last()
                        .map(|v| s.directed(*v))
                        .filter(|v| v.is_finite());
                    (state::PRUNED, last.map_or(Value::Null, |v| json!([v])))
                }
                TrialState::Failed => (state::FAIL, Value::Null),
                TrialState::Interrupted => {
                    attr(FAIL_REASON, json!(INTERRUPTED));
                    (state::FAIL, Value::Null)
                }
                TrialState::Running => {
                    return Err(StudyError::Conflict(format!(
                        "trial {} cannot finish in the running state",
                        record.number
                    )))
                }
            };
            if let Some(e) = &record.error {
                attr("error", json!(e));
            }
            lines.push(state_line(id, code, values));
            Ok((lines, ()))
        })
    }

    fn set_test_result(&mut self, result: TestResult) -> Result<(), StudyError> {
        let value = serde_json::to_value(&result).map_err(|e| StudyError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        self.transact(|s| {
            let study = s
                .replay
                .study
                .ok_or_else(|| StudyError::Missing(s.meta.name.clone()))?;
            let line = (
                op::SET_STUDY_USER_ATTR,
                json!({"study_id": study, "user_attr": {TEST_ATTR: value}}),
            );
            Ok((vec![line], ()))
        })
    }

    fn test_result(&self) -> Option<&TestResult> {
        self.replay.test.as_ref()
    }
}

impl Replay {
    fn new(target: Target) -> Replay {
        Replay {
            offset: 0,
            lines: 0,
            warned_torn_at: None,
            target,
            studies: HashMap::new(),
            next_study_id: 0,
            next_trial_id: 0,
            study: None,
            maximize: false,
            meta: None,
            test: None,
            numbers: HashMap::new(),
            records: Vec::new(),
            trials: Vec::new(),
        }
    }

    /// Applies one line with Optuna's rules: events for unknown studies or trials, and updates
    /// of finished trials, are ignored.
    fn apply_line(&mut self, line: &[u8]) -> Result<(), String> {
        let log: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
        let code = get(&log, "op_code")?
            .as_u64()
            .ok_or("`op_code` is not a number")?;
        match code {
            op::CREATE_STUDY => self.create_study(&log),
            op::DELETE_STUDY => {
                let id = get_u64(&log, "study_id")?;
                if self.studies.remove(&id).is_some() && self.study == Some(id) {
                    return Err("the study was deleted".into());
                }
                Ok(())
            }
            op::SET_STUDY_USER_ATTR | op::SET_STUDY_SYSTEM_ATTR => {
                let id = get_u64(&log, "study_id")?;
                if self.study != Some(id) {
                    return Ok(());
                }
                let key = if code == op::SET_STUDY_USER_ATTR {
                    "user_attr"
                } else {
                    "system_attr"
                };
                for (k, v) in one_attr(&log, key)? {
                    self.study_attr(code == op::SET_STUDY_USER_ATTR, k, v)?;
                }
                Ok(())
            }
            op::CREATE_TRIAL => self.create_trial(&log),
            op::SET_TRIAL_PARAM
            | op::SET_TRIAL_STATE_VALUES
            | op::SET_TRIAL_INTERMEDIATE_VALUE
            | op::SET_TRIAL_USER_ATTR
            | op::SET_TRIAL_SYSTEM_ATTR => {
                let id = get_u64(&log, "trial_id")?;
                match self.numbers.get(&id) {
                    Some(&n) if self.records[n].state == TrialState::Running => {
                        self.trial_event(n, code, &log)
                    }
                    _ => Ok(()),
                }
            }
            // DISCARD_TRIALS (10) and later codes are not Optuna's JournalFileBackend's own.
            _ => Ok(()),
        }
    }

    fn create_study(&mut self, log: &Value) -> Result<(), String> {
        let name = get(log, "study_name")?
            .as_str()
            .ok_or("`study_name` is not a string")?;
        let directions = get(log, "directions")?
            .as_array()
            .ok_or("`directions` is not a list")?;
        if self.studies.values().any(|n| n == name) {
            return Ok(());
        }
        let id = self.next_study_id;
        self.next_study_id += 1;
        self.studies.insert(id, name.to_string());
        let ours = match &self.target {
            Target::Named(n) => n == name,
            Target::First => true,
        };
        if ours && self.study.is_none() {
            self.study = Some(id);
            self.maximize = directions.first().and_then(Value::as_u64) == Some(MAXIMIZE);
        }
        Ok(())
    }

    fn study_attr(&mut self, user: bool, key: &str, value: &Value) -> Result<(), String> {
        match (user, key) {
            (false, META_ATTR) => {
                let meta = serde_json::from_value(value.clone())
                    .map_err(|e| format!("`{META_ATTR}`: {e}"))?;
                self.meta = Some(meta);
            }
            (true, TEST_ATTR) => match serde_json::from_value(value.clone()) {
                Ok(t) => self.test = Some(t),
                Err(e) => eprintln!("nas: warning: ignoring an unreadable `{TEST_ATTR}`: {e}"),
            },
            _ => {}
        }
        Ok(())
    }

    fn create_trial(&mut self, log: &Value) -> Result<(), String> {
        let study = get_u64(log, "study_id")?;
        if !self.studies.contains_key(&study) {
            return Ok(());
        }
        let id = self.next_trial_id;
        self.next_trial_id += 1;
        if self.study != Some(study) {
            return Ok(());
        }
        let number = self.records.len();
        self.numbers.insert(id, number);
        self.records
            .push(TrialRecord::new(number, Config::new(), 0));
        self.trials.push(Trial {
            id,
            owner: log
                .get("worker_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            owner_start: None,
            curve: BTreeMap::new(),
            fail_reason: None,
        });
        // A trial written whole (Optuna's template trials): the same fields as the events.
        if let (Some(Value::Object(dists)), Some(Value::Object(params))) =
            (log.get("distributions"), log.get("params"))
        {
            for (name, internal) in params {
                let dist = dists.get(name).ok_or("a parameter without distribution")?;
                self.set_param(number, name, dist, internal)?;
            }
        }
        for (key, code) in [
            ("user_attrs", op::SET_TRIAL_USER_ATTR),
            ("system_attrs", op::SET_TRIAL_SYSTEM_ATTR),
        ] {
            if let Some(Value::Object(attrs)) = log.get(key) {
                for (k, v) in attrs {
                    self.trial_attr(number, code == op::SET_TRIAL_USER_ATTR, k, v);
                }
            }
        }
        if let Some(Value::Object(curve)) = log.get("intermediate_values") {
            for (step, v) in curve {
                if let (Ok(step), Some(v)) = (step.parse::<u64>(), v.as_f64()) {
                    self.trials[number].curve.insert(step, v);
                }
            }
            self.update_curve(number);
        }
        if let Some(code) = log.get("state").and_then(Value::as_u64) {
            let values = match log.get("values") {
                Some(Value::Array(_)) => log["values"].clone(),
                _ => log.get("value").map_or(Value::Null, |v| json!([v])),
            };
            self.set_state(number, code, &values);
        }
        Ok(())
    }

    fn trial_event(&mut self, n: usize, code: u64, log: &Value) -> Result<(), String> {
        match code {
            op::SET_TRIAL_PARAM => {
                let name = get(log, "param_name")?
                    .as_str()
                    .ok_or("`param_name` is not a string")?;
                let dist = get(log, "distribution")?;
                let internal = get(log, "param_value_internal")?;
                self.set_param(n, name, dist, internal)
            }
            op::SET_TRIAL_STATE_VALUES => {
                let code = get_u64(log, "state")?;
                self.set_state(n, code, log.get("values").unwrap_or(&Value::Null));
                Ok(())
            }
            op::SET_TRIAL_INTERMEDIATE_VALUE => {
                let step = get_u64(log, "step")?;
                // Optuna writes NaN as a bare `NaN`, which is not JSON; null stands for it here.
                let v = get(log, "intermediate_value")?.as_f64().unwrap_or(f64::NAN);
                self.trials[n].curve.insert(step, v);
                self.update_curve(n);
                Ok(())
            }
            _ => {
                let user = code == op::SET_TRIAL_USER_ATTR;
                let key = if user { "user_attr" } else { "system_attr" };
                for (k, v) in one_attr(log, key)? {
                    self.trial_attr(n, user, k, v);
                }
                Ok(())
            }
        }
    }

    fn set_param(
        &mut self,
        n: usize,
        name: &str,
        dist: &Value,
        internal: &Value,
    ) -> Result<(), String> {
        let x = internal
            .as_f64()
            .ok_or_else(|| format!("parameter `{name}`: the value is not a number"))?;
        // Optuna keeps the distribution as a JSON string inside the line.
        let text = dist
            .as_str()
            .ok_or_else(|| format!("parameter `{name}`: the distribution is not a string"))?;
        let d: Value = serde_json::from_str(text)
            .map_err(|e| format!("parameter `{name}`: bad distribution: {e}"))?;
        let kind = d
            .get("name")
            .or_else(|| d.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = match kind {
            "CategoricalDistribution" | "categorical" => ParamValue::Cat(x as usize),
            "IntDistribution" | "IntUniformDistribution" | "IntLogUniformDistribution" | "int" => {
                ParamValue::Int(x.round() as i64)
            }
            "FloatDistribution"
            | "UniformDistribution"
            | "LogUniformDistribution"
            | "DiscreteUniformDistribution"
            | "float" => ParamValue::Float(x),
            other => {
                return Err(format!(
                    "parameter `{name}`: unknown distribution `{other}`"
                ))
            }
        };
        self.records[n].config.insert(name.to_string(), value);
        Ok(())
    }

    fn set_state(&mut self, n: usize, code: u64, values: &Value) {
        let first = values
            .as_array()
            .and_then(|v| v.first())
            .and_then(Value::as_f64);
        let interrupted = self.trials[n].fail_reason.as_deref() == Some(INTERRUPTED);
        let lost = self.trials[n].fail_reason.clone();
        let r = &mut self.records[n];
        r.state = match code {
            state::COMPLETE => TrialState::Complete,
            state::PRUNED => TrialState::Pruned,
            state::FAIL if interrupted => TrialState::Interrupted,
            state::FAIL => TrialState::Failed,
            state::RUNNING => TrialState::Running,
            // WAITING (a trial Optuna enqueued) has not finished either.
            _ => TrialState::Running,
        };
        if r.state == TrialState::Complete {
            r.cv_mean = first;
        }
        if r.state == TrialState::Failed && r.error.is_none() {
            r.error = lost;
        }
    }

    /// Our curve is lower-is-better, indexed by epoch.
    fn update_curve(&mut self, n: usize) {
        let sign = if self.maximize { -1.0 } else { 1.0 };
        self.records[n].intermediate = self.trials[n].curve.values().map(|v| sign * v).collect();
    }

    fn trial_attr(&mut self, n: usize, user: bool, key: &str, v: &Value) {
        let r = &mut self.records[n];
        let usize_of = |v: &Value| v.as_u64().map(|x| x as usize);
        match (user, key) {
            (false, OWNER_START_ATTR) => self.trials[n].owner_start = v.as_u64(),
            (true, "seed") => r.seed = v.as_u64().unwrap_or(r.seed),
            (true, "n_params") => r.params = usize_of(v).unwrap_or(r.params),
            (true, "macs") => r.macs = v.as_u64().unwrap_or(r.macs),
            (true, "epochs") => r.epochs = usize_of(v).unwrap_or(r.epochs),
            (true, "budget") => r.budget = usize_of(v).unwrap_or(r.budget),
            (true, "seconds") => r.seconds = v.as_f64().unwrap_or(r.seconds),
            (true, "cv_std") => r.cv_std = v.as_f64(),
            (true, "architecture") => {
                r.architecture = v.as_str().unwrap_or_default().to_string();
            }
            (true, "error") => r.error = v.as_str().map(str::to_string),
            (true, FAIL_REASON) => self.trials[n].fail_reason = v.as_str().map(str::to_string),
            (true, "fold_scores") => {
                if let Some(a) = v.as_array() {
                    // JSON has no NaN: a non-finite score was written as null.
                    r.fold_scores = a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect();
                }
            }
            _ => {}
        }
    }
}

fn get<'a>(log: &'a Value, key: &str) -> Result<&'a Value, String> {
    log.get(key).ok_or_else(|| format!("missing `{key}`"))
}

fn get_u64(log: &Value, key: &str) -> Result<u64, String> {
    get(log, key)?
        .as_u64()
        .ok_or_else(|| format!("`{key}` is not a whole number"))
}

/// The `{key: value}` object of an attribute line.
fn one_attr<'a>(log: &'a Value, key: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
    get(log, key)?
        .as_object()
        .ok_or_else(|| format!("`{key}` is not an object"))
}

fn trial_user_attr(id: u64, key: &str, value: Value) -> (u64, Value) {
    (
        op::SET_TRIAL_USER_ATTR,
        json!({"trial_id": id, "user_attr": {key: value}}),
    )
}

fn state_line(id: u64, code: u64, values: Value) -> (u64, Value) {
    (
        op::SET_TRIAL_STATE_VALUES,
        json!({"trial_id": id, "state": code, "values": values, "datetime_complete": iso_now()}),
    )
}

/// The study's metadata: whole as a system attribute (what replay reads), and field by field as
/// user attributes (what people see in optuna-dashboard). One attribute per line, as Optuna does.
fn meta_lines(study: u64, meta: &StudyMeta) -> Result<Vec<(u64, Value)>, StudyError> {
    let whole = serde_json::to_value(meta).map_err(|e| StudyError::Conflict(e.to_string()))?;
    let mut lines = vec![(
        op::SET_STUDY_SYSTEM_ATTR,
        json!({"study_id": study, "system_attr": {META_ATTR: whole}}),
    )];
    let fields = [
        ("space_file", json!(meta.space_file)),
        ("data", json!(meta.data)),
        ("task", json!(format!("{:?}", meta.task))),
        ("metric", json!(meta.metric.label())),
        ("seed", json!(meta.seed)),
        ("folds", json!(meta.folds)),
        ("strategy", json!(meta.strategy)),
        ("scheduler", json!(meta.scheduler)),
    ];
    for (k, v) in fields {
        lines.push((
            op::SET_STUDY_USER_ATTR,
            json!({"study_id": study, "user_attr": {k: v}}),
        ));
    }
    Ok(lines)
}

/// `optuna.distributions.distribution_to_json`: a JSON string, attributes in Optuna's order.
fn distribution_json(d: &Distribution) -> String {
    match d {
        Distribution::Int { low, high, log } => int_json(*low, *high, *log),
        Distribution::Float { low, high, log } => float_json(*low, *high, *log),
        Distribution::Categorical { choices } => categorical_json(choices),
    }
}

fn int_json(low: i64, high: i64, log: bool) -> String {
    format!(
        r#"{{"name": "IntDistribution", "attributes": {{"log": {log}, "step": 1, "low": {low}, "high": {high}}}}}"#
    )
}

fn float_json(low: f64, high: f64, log: bool) -> String {
    format!(
        r#"{{"name": "FloatDistribution", "attributes": {{"step": null, "low": {}, "high": {}, "log": {log}}}}}"#,
        json!(low),
        json!(high)
    )
}

fn categorical_json(choices: &[Choice]) -> String {
    format!(
        r#"{{"name": "CategoricalDistribution", "attributes": {{"choices": {}}}}}"#,
        json!(choices)
    )
}

fn io_err(path: &Path, e: std::io::Error) -> StudyError {
    StudyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Now, as Optuna writes datetimes: `datetime.now(timezone.utc).isoformat(timespec="microseconds")`.
fn iso_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    iso_utc(since.as_secs(), since.subsec_micros())
}

fn iso_utc(secs: u64, micros: u32) -> String {
    let (y, m, d) = civil_date((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, computed in 400-year eras
/// (146097 days) that start on March 1st so the leap day falls at the end of a year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_like_python_isoformat() {
        assert_eq!(iso_utc(0, 0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(iso_utc(951_782_400, 5), "2000-02-29T00:00:00.000005+00:00");
        assert_eq!(
            iso_utc(1_704_067_199, 999_999),
            "2023-12-31T23:59:59.999999+00:00"
        );
    }

    #[test]
    fn distributions_are_encoded_as_optuna_does() {
        assert_eq!(
            int_json(1, 3, false),
            r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 1, "high": 3}}"#
        );
        let c = categorical_json(&[Choice::Str("relu".into()), Choice::Int(2)]);
        assert!(c.contains(r#""choices": ["relu",2]"#), "{c}");
    }
}
