//! How a `nas` study maps onto Optuna's data model and back: the study's settings as attributes,
//! a parameter as distribution JSON plus internal value, a finished trial as user attributes, a
//! state and a value. The journal and the database both write and read through here.

use super::optuna::{
    categorical_json, curves_from_json, curves_json, distribution_json, float_json, int_json,
    numbers_from_json, numbers_json, state, CONSTRAINTS_ATTR, CURVES_ATTR, FAIL_REASON,
    INTERRUPTED, LATENCY_ATTR, META_ATTR, PRUNED_AT_ATTR,
};
use super::{Direction, Objectives, StudyError, StudyMeta, TrialRecord};
use crate::search::TrialState;
use crate::space::{Choice, ParamValue, SearchSpace};
use serde_json::{json, Value};

/// The study's settings: whole as a system attribute (what `nas` reads back), and field by field
/// as user attributes (what people see in optuna-dashboard). Returns (system, user) attributes.
#[allow(clippy::type_complexity)]
pub fn study_attrs(
    meta: &StudyMeta,
) -> Result<(Vec<(&'static str, Value)>, Vec<(&'static str, Value)>), StudyError> {
    let whole = serde_json::to_value(meta).map_err(|e| StudyError::Conflict(e.to_string()))?;
    let user = vec![
        ("space_file", json!(meta.space_file)),
        ("data", json!(meta.data)),
        ("task", json!(format!("{:?}", meta.task))),
        ("metric", json!(meta.metric.label())),
        ("seed", json!(meta.seed)),
        ("folds", json!(meta.folds)),
        ("strategy", json!(meta.strategy)),
        ("scheduler", json!(meta.scheduler)),
    ];
    let objectives = (!meta.objectives.is_empty()).then(|| {
        (
            "objectives",
            json!(crate::objective::names(&meta.objectives)),
        )
    });
    Ok((
        vec![(META_ATTR, whole)],
        user.into_iter().chain(objectives).collect(),
    ))
}

/// The study's directions, one per objective in order (Optuna's multi-objective encoding): the
/// score's, then MINIMIZE for parameters, MACs and latency.
pub fn directions(meta: &StudyMeta) -> Vec<Direction> {
    Objectives::of(meta).directions()
}

/// A parameter as Optuna stores it: its distribution's JSON and its internal value (a float; a
/// categorical is the index of its choice).
pub fn param_repr(space: Option<&SearchSpace>, name: &str, v: &ParamValue) -> (String, Value) {
    let dist = space
        .and_then(|s| s.param(name))
        .map(|p| &p.dist)
        .filter(|d| d.contains(v));
    match (dist, v) {
        (Some(d), ParamValue::Int(x)) => (distribution_json(d), json!(*x as f64)),
        (Some(d), ParamValue::Float(x)) => (distribution_json(d), json!(x)),
        (Some(d), ParamValue::Cat(i)) => (distribution_json(d), json!(i)),
        // Not in the study's space (changed with --force): a one-point domain keeps the value
        // readable, though Optuna drops it if earlier trials used another domain.
        (None, ParamValue::Int(x)) => (int_json(*x, *x, false), json!(*x as f64)),
        (None, ParamValue::Float(x)) => (float_json(*x, *x, false), json!(x)),
        (None, ParamValue::Cat(i)) => {
            let choices: Vec<Choice> = (0..=*i as i64).map(Choice::Int).collect();
            (categorical_json(&choices), json!(i))
        }
    }
}

/// A parameter's value from its distribution's JSON text and Optuna's internal value.
pub fn param_value(name: &str, dist: &str, x: f64) -> Result<ParamValue, String> {
    let d: Value = serde_json::from_str(dist)
        .map_err(|e| format!("parameter `{name}`: bad distribution: {e}"))?;
    let kind = d
        .get("name")
        .or_else(|| d.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(match kind {
        "CategoricalDistribution" | "categorical" => {
            let choices = d
                .pointer("/attributes/choices")
                .and_then(Value::as_array)
                .map(Vec::len);
            if x < 0.0 || x.fract() != 0.0 || choices.is_some_and(|n| x >= n as f64) {
                return Err(format!(
                    "parameter `{name}`: {x} is not the index of one of its choices"
                ));
            }
            ParamValue::Cat(x as usize)
        }
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
    })
}

/// How a finished trial is written: attributes first (Optuna ignores updates to a finished
/// trial), then its state and values.
pub struct Ending {
    /// Trial user attributes.
    pub attrs: Vec<(&'static str, Value)>,
    /// Trial system attributes (the constraint values of a constrained study).
    pub system: Vec<(&'static str, Value)>,
    /// Optuna's state code.
    pub state: u64,
    /// The trial's values, one per objective (the score in the study's direction, the costs in
    /// their own units); empty when it has none.
    pub values: Vec<f64>,
}

/// The ending of `record` in a study of `objectives`; `old_seed` is the seed already stored,
/// `directed` turns a lower-is-better score into the study's direction.
pub fn ending(
    record: &TrialRecord,
    old_seed: u64,
    objectives: &Objectives,
    directed: impl Fn(f64) -> f64,
) -> Result<Ending, StudyError> {
    let mut attrs = Vec::new();
    if old_seed != record.seed {
        attrs.push(("seed", json!(record.seed)));
    }
    attrs.push(("n_params", json!(record.params)));
    attrs.push(("macs", json!(record.macs)));
    attrs.push(("architecture", json!(record.architecture)));
    attrs.push(("fold_scores", json!(record.fold_scores)));
    attrs.push(("cv_std", json!(record.cv_std)));
    attrs.push(("epochs", json!(record.epochs)));
    attrs.push(("budget", json!(record.budget)));
    attrs.push(("seconds", json!(record.seconds)));
    if !record.curves.is_empty() {
        attrs.push((CURVES_ATTR, curves_json(&record.curves)));
    }
    if let Some(r) = record.pruned_at {
        attrs.push((PRUNED_AT_ATTR, json!(r)));
    }
    if let Some(l) = &record.latency {
        attrs.push((LATENCY_ATTR, json!(l)));
    }
    let finite_mean = record.cv_mean.filter(|m| m.is_finite());
    let (code, value) = match record.state {
        // One value per objective, in the study's order and the objectives' own units.
        TrialState::Complete if objectives.is_multi() => match objectives.values(record) {
            Some(v) => (state::COMPLETE, Some(v)),
            None => {
                attrs.push((
                    "error",
                    json!("complete without a value for every objective"),
                ));
                (state::FAIL, None)
            }
        },
        TrialState::Complete if finite_mean.is_some() => {
            (state::COMPLETE, finite_mean.map(|m| vec![m]))
        }
        TrialState::Complete => {
            attrs.push(("error", json!("complete without a finite score")));
            (state::FAIL, None)
        }
        // Optuna keeps no value for a pruned trial of several objectives.
        TrialState::Pruned if objectives.is_multi() => (state::PRUNED, None),
        TrialState::Pruned => {
            let last = record
                .intermediate
                .last()
                .map(|v| directed(*v))
                .filter(|v| v.is_finite());
            (state::PRUNED, last.map(|v| vec![v]))
        }
        TrialState::Failed => (state::FAIL, None),
        TrialState::Interrupted => {
            attrs.push((FAIL_REASON, json!(INTERRUPTED)));
            (state::FAIL, None)
        }
        TrialState::Running => {
            return Err(StudyError::Conflict(format!(
                "trial {} cannot finish in the running state",
                record.number
            )))
        }
    };
    if let Some(e) = &record.error {
        attrs.push(("error", json!(e)));
    }
    let mut system = Vec::new();
    if !record.constraints.is_empty() {
        system.push((CONSTRAINTS_ATTR, numbers_json(&record.constraints)));
    }
    Ok(Ending {
        attrs,
        system,
        state: code,
        values: value.unwrap_or_default(),
    })
}

/// The score among a trial's stored `values` (NaN for a null one) in a study of `meta` (the
/// first value when the study's settings are unknown).
pub fn score_value(values: &[f64], meta: Option<&StudyMeta>) -> Option<f64> {
    let at = meta.map_or(0, |m| Objectives::of(m).score_index());
    values.get(at).copied().filter(|v| !v.is_nan())
}

/// Our state of a trial in Optuna's state `code`, given its `fail_reason` attribute.
pub fn trial_state(code: u64, fail_reason: Option<&str>) -> TrialState {
    match code {
        state::COMPLETE => TrialState::Complete,
        state::PRUNED => TrialState::Pruned,
        state::FAIL if fail_reason == Some(INTERRUPTED) => TrialState::Interrupted,
        state::FAIL => TrialState::Failed,
        // RUNNING, and WAITING (a trial Optuna enqueued), have not finished.
        _ => TrialState::Running,
    }
}

/// Sets the state of `r` from Optuna's state `code`, its first value and its `fail_reason`.
pub fn set_state(r: &mut TrialRecord, code: u64, first: Option<f64>, fail_reason: Option<&str>) {
    r.state = trial_state(code, fail_reason);
    if r.state == TrialState::Complete {
        r.cv_mean = first;
    }
    if r.state == TrialState::Failed && r.error.is_none() {
        r.error = fail_reason.map(str::to_string);
    }
}

/// Applies the trial system attribute `key` to `r`.
pub fn read_system_attr(r: &mut TrialRecord, key: &str, v: &Value) {
    if key == CONSTRAINTS_ATTR {
        r.constraints = numbers_from_json(v).unwrap_or_default();
    }
}

/// Applies the trial user attribute `key` to `r` (`fail_reason` is read by [`set_state`]).
pub fn read_user_attr(r: &mut TrialRecord, key: &str, v: &Value) {
    let usize_of = |v: &Value| v.as_u64().map(|x| x as usize);
    match key {
        LATENCY_ATTR => r.latency = serde_json::from_value(v.clone()).ok(),
        "seed" => r.seed = v.as_u64().unwrap_or(r.seed),
        "n_params" => r.params = usize_of(v).unwrap_or(r.params),
        "macs" => r.macs = v.as_u64().unwrap_or(r.macs),
        "epochs" => r.epochs = usize_of(v).unwrap_or(r.epochs),
        "budget" => r.budget = usize_of(v).unwrap_or(r.budget),
        "seconds" => r.seconds = v.as_f64().unwrap_or(r.seconds),
        "cv_std" => r.cv_std = v.as_f64(),
        "architecture" => r.architecture = v.as_str().unwrap_or_default().to_string(),
        "error" => r.error = v.as_str().map(str::to_string),
        CURVES_ATTR => r.curves = curves_from_json(v).unwrap_or_default(),
        PRUNED_AT_ATTR => r.pruned_at = serde_json::from_value(v.clone()).ok(),
        "fold_scores" => {
            if let Some(a) = v.as_array() {
                // JSON has no NaN: a non-finite score was written as null.
                r.fold_scores = a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect();
            }
        }
        _ => {}
    }
}
