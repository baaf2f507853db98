//! A constrained study of three objectives (score, params, latency) written through any
//! `Storage`, and what Optuna must read of it: shared by the journal and PostgreSQL tests.

use nas::data::Task;
use nas::objective::Objective;
use nas::search::{Rung, TrialState};
use nas::space::{Config, ParamValue};
use nas::study::{Latency, Metric, Objectives, Storage, StudyError, StudyMeta, TrialRecord};
use std::process::Command;

pub const IRIS: &str = "(
    task: Classification,
    data: \"iris\",
    model: Mlp((
        depth: Range(0, 2),
        width: Choice([8, 16]),
        activation: Choice([Relu, Tanh]),
        batch_norm: Choice([false, true]),
        dropout: Choice([0.0, 0.1]),
    )),
    train: (
        optimizer: Choice([Adam, Sgd]),
        learning_rate: LogRange(1e-3, 1e-1),
        momentum: Range(0.8, 0.95),
        batch_size: Choice([16, 32]),
        max_epochs: Fixed(9),
        patience: Fixed(3),
    ),
)";

pub fn mo_meta(name: &str) -> StudyMeta {
    StudyMeta {
        name: name.into(),
        space_file: "iris.ron".into(),
        space_source: IRIS.into(),
        data: "iris".into(),
        task: Task::Classification,
        metric: Metric::Accuracy,
        seed: 3,
        folds: 3,
        strategy: "nsga2".into(),
        scheduler: "asha".into(),
        objectives: vec![Objective::Score, Objective::Params, Objective::Latency],
    }
}

pub fn latency(ms: f64) -> Latency {
    Latency {
        ms,
        batch_ms: ms / 4.0,
        batch: 32,
        spread: 0.01,
        repeats: 21,
        wall_ms: ms * 1.25,
    }
}

/// Records a trial through the storage as the controller does.
pub fn record(
    s: &mut dyn Storage,
    state: TrialState,
    score: Option<f64>,
    params: usize,
    ms: f64,
    constraints: Vec<f64>,
) -> Result<TrialRecord, StudyError> {
    let number = s.create_trial()?;
    // Parameters as written by a search; values that survive the JSON text exactly.
    let config: Config = [
        ("depth".to_string(), ParamValue::Int(number as i64 % 3)),
        ("learning_rate".to_string(), ParamValue::Float(0.0625)),
    ]
    .into_iter()
    .collect();
    s.set_params(number, config.clone(), number as u64)?;
    let mut r = TrialRecord::new(number, config, number as u64);
    r.state = state;
    r.params = params;
    r.macs = params as u64;
    r.architecture = format!("mlp {number}");
    r.latency = Some(latency(ms));
    r.constraints = constraints;
    match state {
        TrialState::Complete => {
            r.cv_mean = score;
            r.cv_std = Some(0.01);
            r.fold_scores = vec![score.unwrap_or(0.0); 3];
            r.intermediate = vec![-score.unwrap_or(0.0)];
            s.report(number, 1, r.intermediate[0])?;
        }
        TrialState::Pruned => {
            r.intermediate = vec![-0.5];
            s.report(number, 1, -0.5)?;
            r.pruned_at = Some(Rung {
                rung: 0,
                epochs: 1,
                bracket: None,
            });
        }
        _ => r.error = Some("rejected before training: too many parameters".into()),
    }
    s.finish_trial(r.clone())?;
    Ok(r)
}

/// A constrained study of three objectives: two trials on the front, one dominated, one
/// pruned, one rejected before training, and one that would dominate all but is infeasible.
pub fn mo_trials(s: &mut dyn Storage) -> Vec<TrialRecord> {
    let c = |p: f64, l: f64| vec![p, l];
    let rs = vec![
        record(
            s,
            TrialState::Complete,
            Some(0.9),
            1000,
            0.02,
            c(-0.5, -0.2),
        ),
        record(
            s,
            TrialState::Complete,
            Some(0.8),
            500,
            0.01,
            c(-0.75, -0.6),
        ),
        record(s, TrialState::Complete, Some(0.7), 2000, 0.03, c(0.0, -0.1)),
        record(s, TrialState::Pruned, None, 300, 0.005, c(-0.85, -0.8)),
        record(s, TrialState::Failed, None, 5000, 0.05, c(1.5, 0.25)),
        record(
            s,
            TrialState::Complete,
            Some(0.99),
            100,
            0.001,
            c(0.1, -0.9),
        ),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .expect("trials");
    assert_eq!(s.trials(), &rs[..], "the live state is the replayed one");
    rs
}

/// What `tests/optuna_multi_objective.py` must find in study `mo` holding `trials`.
pub fn optuna_expectation(trials: &[TrialRecord]) -> serde_json::Value {
    let objectives = Objectives::of(&mo_meta("mo"));
    let front: Vec<usize> = objectives
        .best_trials(trials)
        .iter()
        .map(|t| t.number)
        .collect();
    serde_json::json!({
        "study": "mo",
        "directions": ["MAXIMIZE", "MINIMIZE", "MINIMIZE"],
        "states": ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "FAIL", "COMPLETE"],
        "values": trials.iter().map(|t| objectives.values(t)).collect::<Vec<_>>(),
        "constraints": trials.iter().map(|t| t.constraints.clone()).collect::<Vec<_>>(),
        "best_trials": front,
        "metric_names": ["cv accuracy", "params", "latency ms"],
        "latency_ms": 0.02,
        "pruned_intermediate": {"1": 0.5},
    })
}

/// Runs `tests/optuna_multi_objective.py` with `python` on `storage` (a journal file or an
/// SQLAlchemy URL) and returns what it printed; panics with its output when a check fails.
pub fn optuna_checks(python: &str, storage: &str, trials: &[TrialRecord]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/optuna_multi_objective.py"
    );
    let out = Command::new(python)
        .arg(script)
        .arg(storage)
        .arg(optuna_expectation(trials).to_string())
        .output()
        .expect("runs python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{python}: {stdout}\n{stderr}");
    stdout
}
