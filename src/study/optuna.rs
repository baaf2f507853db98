//! Optuna's journal vocabulary: operation codes, trial states, directions, distributions as
//! JSON and datetimes as Optuna writes them, and the attribute names `nas` keeps within them.

use super::{FoldCurve, Metric, Objectives};
use crate::space::{Choice, Distribution};
use serde_json::{json, Value};

/// Optuna's `JournalOperation` codes.
pub mod op {
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
pub mod state {
    pub const RUNNING: u64 = 0;
    pub const COMPLETE: u64 = 1;
    pub const PRUNED: u64 = 2;
    pub const FAIL: u64 = 3;
    pub const WAITING: u64 = 4;
}

/// Optuna's `StudyDirection` values.
pub const MINIMIZE: u64 = 1;
pub const MAXIMIZE: u64 = 2;

/// The attributes `nas` adds to Optuna's model (the study's and trials' own facts), and values.
pub const META_ATTR: &str = "nas_meta";
pub const TEST_ATTR: &str = "test_result";
pub const OWNER_START_ATTR: &str = "nas_owner_start";
pub const FAIL_REASON: &str = "fail_reason";
pub const INTERRUPTED: &str = "interrupted";
/// Each fold's validation curve (a trial user attribute, see [`curves_json`]).
pub const CURVES_ATTR: &str = "fold_curves";
/// Where the scheduler pruned a trial (a trial user attribute).
pub const PRUNED_AT_ATTR: &str = "pruned_at";
/// Optuna's study system attribute for the objectives' names (`Study.set_metric_names`,
/// `optuna/study/study.py`), which optuna-dashboard shows on its axes instead of "Objective 0".
pub const METRIC_NAMES_ATTR: &str = "study:metric_names";
/// Optuna's trial system attribute for constraint values (`optuna.study._constrained_optimization
/// ._CONSTRAINTS_KEY`): a list of numbers, feasible when all are `<= 0`.
pub const CONSTRAINTS_ATTR: &str = "constraints";
/// A trial's measured inference time (a trial user attribute, [`super::Latency`]).
pub const LATENCY_ATTR: &str = "latency";
/// Why [`super::JournalStorage::recover_stale`] failed a trial.
pub const LOST: &str = "lost: the process died while it ran";
/// Why a database storage failed a trial: its worker's heartbeat stopped (the worker died, or
/// lost the database for longer than the grace period).
pub const LOST_STALE: &str = "lost: its worker sent no heartbeat within the grace period";

/// Whether `error` says a trial was lost with its worker (its configuration runs again).
pub fn is_lost(error: Option<&str>) -> bool {
    matches!(error, Some(LOST | LOST_STALE))
}

/// The objective's names as Optuna keeps them, `["cv accuracy"]` or `["cv rmse"]`; none for an
/// objective of the user's own, which `nas` cannot name.
pub fn metric_names(metric: Metric) -> Option<Value> {
    match metric {
        Metric::Accuracy | Metric::Rmse => Some(json!([format!("cv {}", metric.label())])),
        Metric::Value(_) => None,
    }
}

/// The objectives' names, one per value: `["cv accuracy", "latency ms"]`.
pub fn objective_names(objectives: &Objectives) -> Option<Value> {
    if objectives.is_multi() {
        Some(json!(objectives.names()))
    } else {
        metric_names(objectives.metric())
    }
}

/// Numbers as a JSON list, a non-finite one as null (JSON has no NaN).
pub fn numbers_json(xs: &[f64]) -> Value {
    Value::Array(
        xs.iter()
            .map(|x| if x.is_finite() { json!(x) } else { Value::Null })
            .collect(),
    )
}

/// Reads what [`numbers_json`] writes; `None` when `v` is not a list of numbers and nulls.
pub fn numbers_from_json(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?
        .iter()
        .map(|x| match x {
            Value::Null => Some(f64::NAN),
            x => x.as_f64(),
        })
        .collect()
}

/// Fold curves as a JSON list of `{"loss": [..], "score": [..], "best_epoch": k,
/// "stopped_early": k | null}`, a non-finite value written as null (JSON has no NaN).
pub fn curves_json(curves: &[FoldCurve]) -> Value {
    let finite = |xs: &[f64]| -> Vec<Value> {
        xs.iter()
            .map(|x| if x.is_finite() { json!(x) } else { Value::Null })
            .collect()
    };
    Value::Array(
        curves
            .iter()
            .map(|c| {
                json!({"loss": finite(&c.loss), "score": finite(&c.score),
                       "best_epoch": c.best_epoch, "stopped_early": c.stopped_early})
            })
            .collect(),
    )
}

/// Reads what [`curves_json`] writes; `None` when `v` is not that.
pub fn curves_from_json(v: &Value) -> Option<Vec<FoldCurve>> {
    let numbers = |v: Option<&Value>| -> Option<Vec<f64>> {
        v?.as_array()?
            .iter()
            .map(|x| match x {
                Value::Null => Some(f64::NAN),
                x => x.as_f64(),
            })
            .collect()
    };
    v.as_array()?
        .iter()
        .map(|c| {
            let stopped_early = match c.get("stopped_early") {
                None | Some(Value::Null) => None,
                Some(k) => Some(k.as_u64()? as usize),
            };
            Some(FoldCurve {
                loss: numbers(c.get("loss"))?,
                score: numbers(c.get("score"))?,
                best_epoch: c.get("best_epoch")?.as_u64()? as usize,
                stopped_early,
            })
        })
        .collect()
}

/// `optuna.distributions.distribution_to_json`: a JSON string, attributes in Optuna's order.
pub fn distribution_json(d: &Distribution) -> String {
    match d {
        Distribution::Int { low, high, log } => int_json(*low, *high, *log),
        Distribution::Float { low, high, log } => float_json(*low, *high, *log),
        Distribution::Categorical { choices } => categorical_json(choices),
    }
}

pub fn int_json(low: i64, high: i64, log: bool) -> String {
    format!(
        r#"{{"name": "IntDistribution", "attributes": {{"log": {log}, "step": 1, "low": {low}, "high": {high}}}}}"#
    )
}

pub fn float_json(low: f64, high: f64, log: bool) -> String {
    format!(
        r#"{{"name": "FloatDistribution", "attributes": {{"step": null, "low": {}, "high": {}, "log": {log}}}}}"#,
        json!(low),
        json!(high)
    )
}

pub fn categorical_json(choices: &[Choice]) -> String {
    format!(
        r#"{{"name": "CategoricalDistribution", "attributes": {{"choices": {}}}}}"#,
        json!(choices)
    )
}

/// Now, as Optuna writes datetimes: `datetime.now(timezone.utc).isoformat(timespec="microseconds")`.
pub fn iso_now() -> String {
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
    fn fold_curves_read_back_as_written_with_nan_as_null() {
        let curves = vec![
            FoldCurve {
                loss: vec![0.9, 0.5],
                score: vec![0.5, f64::NAN],
                best_epoch: 2,
                stopped_early: None,
            },
            FoldCurve {
                loss: vec![0.8],
                score: vec![0.6],
                best_epoch: 1,
                stopped_early: Some(1),
            },
        ];
        let v = curves_json(&curves);
        assert!(v.to_string().contains(r#""score":[0.5,null]"#), "{v}");
        let back = curves_from_json(&v).expect("reads");
        assert_eq!(back[1], curves[1]);
        assert!(back[0].score[1].is_nan() && back[0].loss == curves[0].loss);
        assert_eq!(curves_from_json(&json!([{"loss": "x"}])), None);
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
