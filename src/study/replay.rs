//! A study's state rebuilt from journal lines, with Optuna's rules for what is ignored.

use super::mapping::{self, read_system_attr, read_user_attr, score_value, set_state};
use super::optuna::{
    curves_from_json, numbers_from_json, op, state, CONSTRAINTS_ATTR, CURVES_ATTR, FAIL_REASON,
    LATENCY_ATTR, MAXIMIZE, META_ATTR, METRIC_NAMES_ATTR, OWNER_START_ATTR, PRUNED_AT_ATTR,
    TEST_ATTR,
};
use super::{Latency, StudyMeta, TestResult, TrialRecord};
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
    /// Whether the study names its objective (Optuna's `study:metric_names`).
    pub metric_names: bool,
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
            metric_names: false,
            test: None,
            numbers: HashMap::new(),
            records: Vec::new(),
            trials: Vec::new(),
        }
    }

    /// Applies one line with Optuna's rules: events for deleted studies or for trials of other
    /// studies, and updates of finished trials, are ignored. Every line is checked whole first,
    /// ignored or not: a line that Optuna could not have written is an error.
    pub fn apply_line(&mut self, line: &[u8]) -> Result<(), String> {
        let log: Value = serde_json::from_slice(line).map_err(|e| {
            // serde_json counts lines within this one line; only the column means anything here.
            let text = e.to_string();
            let what = text.split(" at line ").next().unwrap_or(&text);
            format!("not JSON at column {} ({what})", e.column())
        })?;
        if !log.is_object() {
            return Err("not a JSON object".into());
        }
        let code = get(&log, "op_code")?
            .as_u64()
            .ok_or("`op_code` is not a whole number")?;
        if log.get("worker_id").is_some_and(|w| !w.is_string()) {
            return Err("`worker_id` is not a string".into());
        }
        match code {
            op::CREATE_STUDY => self.create_study(&log),
            op::DELETE_STUDY => {
                let id = self.study_id(&log)?;
                if self.studies.remove(&id).is_some() && self.study == Some(id) {
                    return Err("the study was deleted".into());
                }
                Ok(())
            }
            op::SET_STUDY_USER_ATTR | op::SET_STUDY_SYSTEM_ATTR => {
                let id = self.study_id(&log)?;
                let user = code == op::SET_STUDY_USER_ATTR;
                let attrs = one_attr(&log, if user { "user_attr" } else { "system_attr" })?;
                if self.study != Some(id) {
                    return Ok(());
                }
                for (k, v) in attrs {
                    self.study_attr(user, k, v)?;
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
                if id >= self.next_trial_id {
                    return Err(format!("trial_id {id}: no line before created that trial"));
                }
                let event = TrialEvent::read(code, &log)?;
                match self.numbers.get(&id) {
                    Some(&n) if self.records[n].state == TrialState::Running => {
                        self.apply_event(n, event);
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            // Optuna's JournalOperation ends at 9: a larger code is not from Optuna nor `nas`.
            other => Err(format!(
                "unknown `op_code` {other} (Optuna's journal operations are 0 to 9)"
            )),
        }
    }

    /// The `study_id` of a line, which an earlier line must have created.
    fn study_id(&self, log: &Value) -> Result<u64, String> {
        let id = get_u64(log, "study_id")?;
        if id >= self.next_study_id {
            return Err(format!("study_id {id}: no line before created that study"));
        }
        Ok(id)
    }

    fn create_study(&mut self, log: &Value) -> Result<(), String> {
        let name = get(log, "study_name")?
            .as_str()
            .ok_or("`study_name` is not a string")?;
        let directions = get(log, "directions")?
            .as_array()
            .filter(|d| d.iter().all(|x| x.as_u64().is_some_and(|x| x <= MAXIMIZE)))
            .ok_or("`directions` is not a list of Optuna directions")?;
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
                let meta: StudyMeta = serde_json::from_value(value.clone())
                    .map_err(|e| format!("`{META_ATTR}`: {e}"))?;
                // Intermediate values are the score's, in its direction, whichever objective
                // comes first.
                self.maximize = meta.metric.higher_is_better();
                self.meta = Some(meta);
            }
            (false, METRIC_NAMES_ATTR) => self.metric_names = true,
            (true, TEST_ATTR) => match serde_json::from_value(value.clone()) {
                Ok(t) => self.test = Some(t),
                Err(e) => eprintln!("nas: warning: ignoring an unreadable `{TEST_ATTR}`: {e}"),
            },
            _ => {}
        }
        Ok(())
    }

    fn create_trial(&mut self, log: &Value) -> Result<(), String> {
        let study = self.study_id(log)?;
        // A trial written whole (Optuna's template trials): the same fields as the events,
        // checked before anything is recorded.
        let mut events = Vec::new();
        if let Some(params) = log.get("params") {
            let params = params.as_object().ok_or("`params` is not an object")?;
            let dists = get(log, "distributions")?
                .as_object()
                .ok_or("`distributions` is not an object")?;
            for (name, internal) in params {
                let dist = dists
                    .get(name)
                    .ok_or_else(|| format!("parameter `{name}` has no distribution"))?;
                events.push(TrialEvent::Param(name, param_value(name, dist, internal)?));
            }
        }
        for (key, user) in [("user_attrs", true), ("system_attrs", false)] {
            if let Some(attrs) = log.get(key) {
                let attrs = attrs
                    .as_object()
                    .ok_or_else(|| format!("`{key}` is not an object"))?;
                for (k, v) in attrs {
                    check_attr(user, k, v)?;
                }
                events.push(TrialEvent::Attrs(user, attrs));
            }
        }
        if let Some(curve) = log.get("intermediate_values") {
            let curve = curve
                .as_object()
                .ok_or("`intermediate_values` is not an object")?;
            for (step, v) in curve {
                let step = step.parse::<u64>().map_err(|_| {
                    format!("intermediate value step `{step}` is not a whole number")
                })?;
                events.push(TrialEvent::Intermediate(step, curve_value(v)?));
            }
        }
        if let Some(code) = log.get("state") {
            let code = code.as_u64().ok_or("`state` is not a whole number")?;
            let values = match log.get("values") {
                Some(v) => v.clone(),
                None => log.get("value").map_or(Value::Null, |v| json!([v])),
            };
            events.push(TrialEvent::State(check_state(code)?, numbers(&values)?));
        }
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
        // The state last, as the attributes it reads (the fail reason) come first.
        for event in events {
            self.apply_event(number, event);
        }
        Ok(())
    }

    /// Applies a checked event to running trial `n`.
    fn apply_event(&mut self, n: usize, event: TrialEvent) {
        match event {
            TrialEvent::Param(name, value) => {
                self.records[n].config.insert(name.to_string(), value);
            }
            TrialEvent::State(code, values) => self.set_state(n, code, values),
            TrialEvent::Intermediate(step, v) => {
                self.trials[n].curve.insert(step, v);
                self.update_curve(n);
            }
            TrialEvent::Attrs(user, attrs) => {
                for (k, v) in attrs {
                    self.trial_attr(n, user, k, v);
                }
            }
        }
    }

    fn set_state(&mut self, n: usize, code: u64, values: Vec<f64>) {
        // The score is the first value, or its place among a multi-objective study's values.
        let score = score_value(&values, self.meta.as_ref());
        let reason = self.trials[n].fail_reason.clone();
        set_state(&mut self.records[n], code, score, reason.as_deref());
    }

    /// Our curve is lower-is-better, indexed by epoch.
    fn update_curve(&mut self, n: usize) {
        let sign = if self.maximize { -1.0 } else { 1.0 };
        self.records[n].intermediate = self.trials[n].curve.values().map(|v| sign * v).collect();
    }

    fn trial_attr(&mut self, n: usize, user: bool, key: &str, v: &Value) {
        match (user, key) {
            (false, OWNER_START_ATTR) => self.trials[n].owner_start = v.as_u64(),
            (true, FAIL_REASON) => self.trials[n].fail_reason = v.as_str().map(str::to_string),
            (true, key) => read_user_attr(&mut self.records[n], key, v),
            (false, key) => read_system_attr(&mut self.records[n], key, v),
        }
    }
}

/// A trial event of one journal line, checked, to apply or to ignore.
enum TrialEvent<'a> {
    Param(&'a str, ParamValue),
    /// Optuna's state code and the values (NaN for a null one).
    State(u64, Vec<f64>),
    /// Step and value in the study's direction.
    Intermediate(u64, f64),
    /// User (true) or system attributes.
    Attrs(bool, &'a serde_json::Map<String, Value>),
}

impl<'a> TrialEvent<'a> {
    fn read(code: u64, log: &'a Value) -> Result<TrialEvent<'a>, String> {
        Ok(match code {
            op::SET_TRIAL_PARAM => {
                let name = get(log, "param_name")?
                    .as_str()
                    .ok_or("`param_name` is not a string")?;
                let dist = get(log, "distribution")?;
                let internal = get(log, "param_value_internal")?;
                TrialEvent::Param(name, param_value(name, dist, internal)?)
            }
            op::SET_TRIAL_STATE_VALUES => {
                let code = check_state(get_u64(log, "state")?)?;
                TrialEvent::State(code, numbers(log.get("values").unwrap_or(&Value::Null))?)
            }
            op::SET_TRIAL_INTERMEDIATE_VALUE => {
                let step = get_u64(log, "step")?;
                TrialEvent::Intermediate(step, curve_value(get(log, "intermediate_value")?)?)
            }
            _ => {
                let user = code == op::SET_TRIAL_USER_ATTR;
                let attrs = one_attr(log, if user { "user_attr" } else { "system_attr" })?;
                for (k, v) in attrs {
                    check_attr(user, k, v)?;
                }
                TrialEvent::Attrs(user, attrs)
            }
        })
    }
}

fn check_state(code: u64) -> Result<u64, String> {
    if !(state::RUNNING..=state::WAITING).contains(&code) {
        return Err(format!(
            "unknown trial `state` {code} (Optuna's states are 0 to 4)"
        ));
    }
    Ok(code)
}

/// A trial's `values`: null (none), or a list of numbers (null for a non-finite one, read as NaN).
fn numbers(values: &Value) -> Result<Vec<f64>, String> {
    match values {
        Value::Null => Ok(Vec::new()),
        v => numbers_from_json(v).ok_or_else(|| "`values` is not a list of numbers".into()),
    }
}

/// An intermediate value. Optuna writes NaN as a bare `NaN`, which is not JSON; null stands for
/// it here.
fn curve_value(v: &Value) -> Result<f64, String> {
    match v {
        Value::Null => Ok(f64::NAN),
        v => v
            .as_f64()
            .ok_or_else(|| "`intermediate_value` is not a number".into()),
    }
}

/// The trial attributes `nas` reads must have the types it writes; others may hold anything.
fn check_attr(user: bool, key: &str, v: &Value) -> Result<(), String> {
    let number_or_null = |v: &Value| v.is_number() || v.is_null();
    let expected = match (user, key) {
        (false, OWNER_START_ATTR) | (true, "seed" | "n_params" | "macs" | "epochs" | "budget") => {
            (!v.is_u64()).then_some("a whole number")
        }
        (true, "seconds") => (!v.is_number()).then_some("a number"),
        (true, "cv_std") => (!number_or_null(v)).then_some("a number or null"),
        (true, "architecture" | FAIL_REASON) => (!v.is_string()).then_some("a string"),
        (true, "error") => (!(v.is_string() || v.is_null())).then_some("a string or null"),
        (true, "fold_scores") => (!v.as_array().is_some_and(|a| a.iter().all(number_or_null)))
            .then_some("a list of numbers"),
        (true, CURVES_ATTR) => curves_from_json(v)
            .is_none()
            .then_some("a list of fold curves ({\"loss\": [..], \"score\": [..], ..})"),
        (true, PRUNED_AT_ATTR) => serde_json::from_value::<crate::search::Rung>(v.clone())
            .is_err()
            .then_some("a rung ({\"rung\": r, \"epochs\": e, \"bracket\": b})"),
        (false, CONSTRAINTS_ATTR) => numbers_from_json(v)
            .is_none()
            .then_some("a list of numbers"),
        (true, LATENCY_ATTR) => serde_json::from_value::<Latency>(v.clone())
            .is_err()
            .then_some("a latency measurement ({\"ms\": .., \"batch_ms\": .., ..})"),
        _ => None,
    };
    match expected {
        Some(what) => Err(format!("trial attribute `{key}` is not {what}")),
        None => Ok(()),
    }
}

/// A parameter's value from Optuna's internal representation and its distribution.
fn param_value(name: &str, dist: &Value, internal: &Value) -> Result<ParamValue, String> {
    let x = internal
        .as_f64()
        .ok_or_else(|| format!("parameter `{name}`: the value is not a number"))?;
    // Optuna keeps the distribution as a JSON string inside the line.
    let text = dist
        .as_str()
        .ok_or_else(|| format!("parameter `{name}`: the distribution is not a string"))?;
    mapping::param_value(name, text, x)
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
