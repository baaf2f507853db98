//! A study kept as an append-only journal in the format of Optuna's `JournalStorage`.
//!
//! Every change is one JSON line appended to `journal.log` (the format Optuna's
//! `JournalFileBackend` reads), so `optuna.load_study` and optuna-dashboard can open a `nas`
//! study. The in-memory state is rebuilt by replaying the lines; several processes may share one
//! journal because every write happens under an exclusive lock on `journal.lock`, after replaying
//! whatever other processes appended since the last read.
//!
//! How a study maps onto Optuna's model:
//! - the study's direction is MAXIMIZE for accuracy and MINIMIZE for RMSE (an ask-and-tell
//!   study's `Metric::Value` names its own); [`StudyMeta`] is kept
//!   whole in the study system attribute `nas_meta` and, for people, field by field in user
//!   attributes; the test result is the study user attribute `test_result`;
//! - parameters carry Optuna distributions (`IntDistribution`, `FloatDistribution`,
//!   `CategoricalDistribution`) and internal values (a float; a categorical is its index);
//! - intermediate values are in the metric's own direction (accuracy, not minus accuracy), with
//!   the epoch as the step; a pruned trial's value is its last intermediate value, as in Optuna;
//! - an interrupted trial is FAIL with the user attribute `fail_reason = "interrupted"`;
//! - a study of several objectives (`StudyMeta::objectives`) is created with one direction per
//!   objective (the score's, then MINIMIZE for parameters, MACs and latency) and names them in
//!   `study:metric_names`; a complete trial's `values` hold one value per objective in the
//!   objectives' own units, a pruned one has none (as Optuna keeps them), and intermediate
//!   values are the score's. Constraint values are Optuna's trial system attribute
//!   `constraints` (feasible when `<= 0`), the measured latency the user attribute `latency`;
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
//! Writers take two locks: `flock` on `journal.lock` (between `nas` processes, also for reading)
//! and Optuna's own symbolic link `journal.log.lock` ([`super::journal_lock`]), so that a Python
//! Optuna process appending to the same journal never interleaves with `nas`.

use super::journal_lock::{self, SymlinkLock};
use super::liveness::{self, Liveness, OwnerLock};
use super::mapping::{directions, ending, param_repr, study_attrs};
use super::optuna::{
    iso_now, numbers_json, objective_names, op, state, FAIL_REASON, LOST, MAXIMIZE,
    METRIC_NAMES_ATTR, MINIMIZE, OWNER_START_ATTR, TEST_ATTR,
};
use super::replay::{Replay, Target, Trial};
use super::{Direction, Objectives, Storage, StudyError, StudyMeta, TestResult, TrialRecord};
use crate::search::TrialState;
use crate::space::{Config, ParamValue, SearchSpace};
use fs4::fs_std::FileExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

impl JournalStorage {
    /// The journal's file name inside a study directory.
    pub const FILE: &'static str = "journal.log";
    /// The lock file next to it that `nas` processes `flock` (Optuna's own lock, the symbolic
    /// link `journal.log.lock`, is taken around writes as well).
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
                    // One direction per objective: Optuna's multi-objective encoding.
                    let directions: Vec<u64> = directions(&meta)
                        .into_iter()
                        .map(|d| match d {
                            Direction::Maximize => MAXIMIZE,
                            Direction::Minimize => MINIMIZE,
                        })
                        .collect();
                    lines.push((
                        op::CREATE_STUDY,
                        json!({"study_name": meta.name, "directions": directions}),
                    ));
                    s.replay.next_study_id
                }
            };
            if s.replay.meta.is_none() {
                lines.extend(meta_lines(id, &meta)?);
            }
            // Also for a study created before `nas` named its objective: optuna-dashboard labels
            // its axes with these names.
            if !s.replay.metric_names {
                let objectives = Objectives::of(s.replay.meta.as_ref().unwrap_or(&meta));
                if let Some(names) = objective_names(&objectives) {
                    lines.push((
                        op::SET_STUDY_SYSTEM_ATTR,
                        json!({"study_id": id, "system_attr": {METRIC_NAMES_ATTR: names}}),
                    ));
                }
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
            objectives: Vec::new(),
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
            // Optuna's writers take only its symlink lock; with it held too, no Python process
            // is halfway through a line, so a torn last line is a dead writer's.
            let journal = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&s.path)
                .map_err(|e| io_err(&s.path, e));
            drop(journal?);
            let _optuna = SymlinkLock::acquire(&s.path)
                .map_err(|e| io_err(&journal_lock::lock_path(&s.path), e))?;
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
        let (dist, internal) = param_repr(self.space.as_ref(), name, v);
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
            let end = ending(&record, old.seed, &Objectives::of(&s.meta), |v| {
                s.directed(v)
            })?;
            for (k, v) in end.attrs {
                lines.push(trial_user_attr(id, k, v));
            }
            for (k, v) in end.system {
                lines.push((
                    op::SET_TRIAL_SYSTEM_ATTR,
                    json!({"trial_id": id, "system_attr": {k: v}}),
                ));
            }
            let values = if end.values.is_empty() {
                Value::Null
            } else {
                numbers_json(&end.values)
            };
            let code = end.state;
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

    /// Marks FAIL every running trial whose owner process is gone, with `fail_reason` [`LOST`],
    /// and returns their configurations to run again; then removes the lock files of dead owners.
    /// An owner is gone when its owner lock can be taken, from any host. An owner without lock
    /// file (a journal from an older version) is looked up in `/proc` on its own host, and
    /// presumed alive on another.
    fn recover_stale(&mut self) -> Result<Vec<Config>, StudyError> {
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

    fn location(&self) -> String {
        self.path.display().to_string()
    }
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

/// The study's metadata as attribute lines, one attribute per line as Optuna writes them.
fn meta_lines(study: u64, meta: &StudyMeta) -> Result<Vec<(u64, Value)>, StudyError> {
    let (system, user) = study_attrs(meta)?;
    let mut lines = Vec::new();
    for (k, v) in system {
        lines.push((
            op::SET_STUDY_SYSTEM_ATTR,
            json!({"study_id": study, "system_attr": {k: v}}),
        ));
    }
    for (k, v) in user {
        lines.push((
            op::SET_STUDY_USER_ATTR,
            json!({"study_id": study, "user_attr": {k: v}}),
        ));
    }
    Ok(lines)
}

fn io_err(path: &Path, e: std::io::Error) -> StudyError {
    StudyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
