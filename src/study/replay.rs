//! A study's state rebuilt from journal lines, with Optuna's rules for what is ignored.

use super::optuna::{
    op, state, FAIL_REASON, INTERRUPTED, MAXIMIZE, META_ATTR, OWNER_START_ATTR, TEST_ATTR,
};
use super::{StudyMeta, TestResult, TrialRecord};
use crate::search::TrialState;
use crate::space::{Config, ParamValue};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Which study of the journal is ours.
pub enum Target {
    Named(String),
    First,
}

/// The state rebuilt from the lines read so far.
pub struct Replay {
    /// Bytes and lines of the journal consumed (complete lines only).
    pub offset: u64,
    pub lines: usize,
    pub warned_torn_at: Option<u64>,
    pub target: Target,
    /// Live studies by id, as Optuna numbers them.
    pub studies: HashMap<u64, String>,
    pub next_study_id: u64,
    pub next_trial_id: u64,
    pub study: Option<u64>,
    pub maximize: bool,
    pub meta: Option<StudyMeta>,
    pub test: Option<TestResult>,
    /// Optuna trial id -> our trial number.
    pub numbers: HashMap<u64, usize>,
    pub records: Vec<TrialRecord>,
    /// What the records do not hold, by trial number.
    pub trials: Vec<Trial>,
}

/// What the journal says about a trial beyond its [`TrialRecord`].
pub struct Trial {
    pub id: u64,
    pub owner: String,
    pub owner_start: Option<u64>,
    /// Step -> value in the study's direction.
    pub curve: BTreeMap<u64, f64>,
    pub fail_reason: Option<String>,
}

impl Replay {
    pub fn new(target: Target) -> Replay {
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
    pub fn apply_line(&mut self, line: &[u8]) -> Result<(), String> {
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
