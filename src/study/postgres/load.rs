//! Reading trials from Optuna's tables into trial records: the new ones and those that had not
//! finished at the last read (a finished trial never changes, so it is read once).

use super::super::mapping::{
    param_value, read_system_attr, read_user_attr, score_value, set_state,
};
use super::super::optuna::{state, FAIL_REASON};
use super::super::{StudyMeta, TrialRecord};
use crate::space::Config;
use postgres::GenericClient;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A trial as its rows hold it.
#[derive(Debug, Default)]
pub struct Row {
    pub id: i32,
    pub number: i32,
    pub state: String,
    params: Vec<(String, f64, String)>,
    /// (objective, value, kind), one per objective.
    values: Vec<(i32, Option<f64>, String)>,
    intermediate: Vec<(i32, Option<f64>, String)>,
    /// (user attribute, key, JSON text): user attributes, then system attributes.
    attrs: Vec<(bool, String, String)>,
}

/// What a storage keeps about a trial beyond its record.
#[derive(Clone, Debug)]
pub struct Known {
    pub id: i32,
    pub finished: bool,
    /// Step -> value in the study's direction.
    pub curve: BTreeMap<i32, f64>,
}

/// The trials of `study` after trial id `after`, and those of `again`, by number.
pub fn rows(
    c: &mut impl GenericClient,
    study: i32,
    after: i32,
    again: &[i32],
) -> Result<Vec<Row>, postgres::Error> {
    // Trials first: whatever a later statement reads was committed with or after the state read
    // here, so a trial read as finished comes with all it was finished with.
    let mut rows: Vec<Row> = c
        .query(
            "SELECT trial_id, number, state::text FROM trials \
             WHERE study_id = $1 AND (trial_id > $2 OR trial_id = ANY($3)) \
             ORDER BY number, trial_id",
            &[&study, &after, &again],
        )?
        .iter()
        .map(|r| Row {
            id: r.get(0),
            number: r.get::<_, Option<i32>>(1).unwrap_or(-1),
            state: r.get(2),
            ..Row::default()
        })
        .collect();
    if rows.is_empty() {
        return Ok(rows);
    }
    let ids: Vec<i32> = rows.iter().map(|r| r.id).collect();
    let at: HashMap<i32, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for r in c.query(
        "SELECT trial_id, param_name, param_value, distribution_json FROM trial_params \
         WHERE trial_id = ANY($1) ORDER BY param_id",
        &[&ids],
    )? {
        let (Some(&i), Some(name), Some(v), Some(d)) =
            (at.get(&r.get::<_, i32>(0)), r.get(1), r.get(2), r.get(3))
        else {
            continue;
        };
        rows[i].params.push((name, v, d));
    }
    for r in c.query(
        "SELECT trial_id, objective, value, value_type::text FROM trial_values \
         WHERE trial_id = ANY($1) ORDER BY objective",
        &[&ids],
    )? {
        if let Some(&i) = at.get(&r.get::<_, i32>(0)) {
            rows[i].values.push((r.get(1), r.get(2), r.get(3)));
        }
    }
    for r in c.query(
        "SELECT trial_id, step, intermediate_value, intermediate_value_type::text \
         FROM trial_intermediate_values WHERE trial_id = ANY($1)",
        &[&ids],
    )? {
        if let Some(&i) = at.get(&r.get::<_, i32>(0)) {
            rows[i].intermediate.push((r.get(1), r.get(2), r.get(3)));
        }
    }
    // User attributes (user = true) and system attributes, each in the order written.
    for r in c.query(
        "SELECT trial_id, true, key, value_json, trial_user_attribute_id FROM trial_user_attributes \
         WHERE trial_id = ANY($1) UNION ALL \
         SELECT trial_id, false, key, value_json, trial_system_attribute_id \
         FROM trial_system_attributes WHERE trial_id = ANY($1) ORDER BY 2 DESC, 5",
        &[&ids],
    )? {
        let (Some(&i), Some(k), Some(v)) = (at.get(&r.get::<_, i32>(0)), r.get(2), r.get(3)) else {
            continue;
        };
        rows[i].attrs.push((r.get(1), k, v));
    }
    Ok(rows)
}

/// Optuna's state code of a state's name in the `trialstate` type.
pub fn state_code(name: &str) -> u64 {
    match name {
        "COMPLETE" => state::COMPLETE,
        "PRUNED" => state::PRUNED,
        "FAIL" => state::FAIL,
        "WAITING" => state::WAITING,
        _ => state::RUNNING,
    }
}

/// The name in the `trialstate` type of Optuna's state `code`.
pub fn state_name(code: u64) -> &'static str {
    match code {
        state::COMPLETE => "COMPLETE",
        state::PRUNED => "PRUNED",
        state::FAIL => "FAIL",
        state::WAITING => "WAITING",
        _ => "RUNNING",
    }
}

/// A stored float and its kind (`FINITE`, `INF_POS`, `INF_NEG`, `NAN`) as a number.
fn stored(v: Option<f64>, kind: &str) -> f64 {
    match kind {
        "INF_POS" => f64::INFINITY,
        "INF_NEG" => f64::NEG_INFINITY,
        "NAN" => f64::NAN,
        _ => v.unwrap_or(f64::NAN),
    }
}

/// A float as Optuna stores it: the value, or null and its kind.
pub fn to_stored(v: f64) -> (Option<f64>, &'static str) {
    if v.is_nan() {
        (None, "NAN")
    } else if v == f64::INFINITY {
        (None, "INF_POS")
    } else if v == f64::NEG_INFINITY {
        (None, "INF_NEG")
    } else {
        (Some(v), "FINITE")
    }
}

/// The record of a trial of the study `meta` read from its rows.
pub fn record(row: &Row, meta: &StudyMeta) -> Result<(TrialRecord, Known), String> {
    let mut config = Config::new();
    for (name, x, dist) in &row.params {
        config.insert(name.clone(), param_value(name, dist, *x)?);
    }
    let number =
        usize::try_from(row.number).map_err(|_| format!("trial id {} has no number", row.id))?;
    let mut r = TrialRecord::new(number, config, 0);
    let mut fail_reason = None;
    for (user, key, text) in &row.attrs {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        match (user, key.as_str()) {
            (true, FAIL_REASON) => fail_reason = v.as_str().map(str::to_string),
            (true, key) => read_user_attr(&mut r, key, &v),
            (false, key) => read_system_attr(&mut r, key, &v),
        }
    }
    let curve: BTreeMap<i32, f64> = row
        .intermediate
        .iter()
        .map(|(step, v, kind)| (*step, stored(*v, kind)))
        .collect();
    // Intermediate values are the score's, in its direction.
    let sign = if meta.metric.higher_is_better() {
        -1.0
    } else {
        1.0
    };
    r.intermediate = curve.values().map(|v| sign * v).collect();
    // Values by objective index; a missing one reads as NaN, as a null one does in the journal.
    let n_values = row.values.iter().map(|(o, ..)| *o + 1).max().unwrap_or(0);
    let mut values = vec![f64::NAN; n_values.max(0) as usize];
    for (o, v, kind) in &row.values {
        if let Some(slot) = usize::try_from(*o).ok().and_then(|o| values.get_mut(o)) {
            *slot = stored(*v, kind);
        }
    }
    let code = state_code(&row.state);
    set_state(
        &mut r,
        code,
        score_value(&values, Some(meta)),
        fail_reason.as_deref(),
    );
    let known = Known {
        id: row.id,
        finished: !matches!(code, state::RUNNING | state::WAITING),
        curve,
    };
    Ok((r, known))
}
