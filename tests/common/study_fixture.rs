//! A study over `search_spaces/mlp.ron` and trials in every state, written through any `Storage`:
//! shared by the journal and PostgreSQL storage tests.

use nas::data::Task;
use nas::search::{Rung, TrialState};
use nas::space::{Config, Distribution, ParamValue, SearchSpace};
use nas::study::{FoldCurve, Metric, Storage, StudyError, StudyMeta, TestResult, TrialRecord};

pub fn space_source() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/search_spaces/mlp.ron"
    ))
    .expect("search_spaces/mlp.ron is readable")
}

pub fn space() -> SearchSpace {
    SearchSpace::from_str_named(&space_source(), "mlp", "mlp.ron").expect("the space is valid")
}

pub fn meta(name: &str) -> StudyMeta {
    StudyMeta {
        name: name.into(),
        space_file: "search_spaces/mlp.ron".into(),
        space_source: space_source(),
        data: "digits".into(),
        task: Task::Classification,
        metric: Metric::Accuracy,
        seed: 7,
        folds: 3,
        strategy: "tpe".into(),
        scheduler: "asha".into(),
        objectives: Vec::new(),
    }
}

/// A configuration of the space's parameters: the `k`-th value of each (conditions ignored,
/// which a storage does not check).
pub fn config(k: usize) -> Config {
    space()
        .params
        .iter()
        .map(|p| {
            let v = match &p.dist {
                Distribution::Int { low, high, .. } => ParamValue::Int((low + k as i64).min(*high)),
                Distribution::Float { low, high, .. } => {
                    ParamValue::Float(low + (high - low) * 0.25 * (k % 4) as f64)
                }
                Distribution::Categorical { choices } => ParamValue::Cat(k % choices.len()),
            };
            (p.name.clone(), v)
        })
        .collect()
}

/// Runs one trial through the storage as the controller does and returns the final record.
pub fn run_trial(
    s: &mut dyn Storage,
    k: usize,
    state: TrialState,
    curve: &[f64],
) -> Result<TrialRecord, StudyError> {
    let number = s.create_trial()?;
    s.set_params(number, config(k), 100 + k as u64)?;
    for (i, v) in curve.iter().enumerate() {
        s.report(number, i + 1, *v)?;
    }
    let mut r = TrialRecord::new(number, config(k), 100 + k as u64);
    r.state = state;
    r.intermediate = curve.to_vec();
    r.params = 1000 + k;
    r.macs = 5000 + k as u64;
    r.architecture = format!("mlp {k}");
    r.seconds = 1.5;
    r.epochs = curve.len();
    r.budget = 3 * curve.len();
    // Each fold's curve: losses falling by a quarter, scores by the epoch's objective.
    r.curves = (0..3)
        .map(|f| FoldCurve {
            loss: (0..curve.len())
                .map(|e| 2.0 - 0.25 * (e + f) as f64)
                .collect(),
            score: curve.iter().map(|v| -v).collect(),
            best_epoch: curve.len(),
            stopped_early: (f == 1).then_some(curve.len()),
        })
        .filter(|c| !c.loss.is_empty())
        .collect();
    match state {
        TrialState::Complete => {
            r.cv_mean = Some(-curve.last().copied().unwrap_or(0.0));
            r.cv_std = Some(0.125);
            r.fold_scores = vec![0.75, 0.875, 0.5];
        }
        TrialState::Pruned => {
            r.pruned_at = Some(Rung {
                rung: 1,
                epochs: curve.len(),
                bracket: Some(0),
            })
        }
        TrialState::Failed => r.error = Some("diverged".into()),
        TrialState::Interrupted => r.error = Some("interrupted (Ctrl-C)".into()),
        _ => {}
    }
    s.finish_trial(r.clone())?;
    Ok(r)
}

pub fn test_result() -> TestResult {
    TestResult {
        trial: 0,
        metric: Metric::Accuracy,
        test_score: 0.9375,
        test_loss: 0.25,
        test_samples: 360,
        train_samples: 1437,
        epochs: 3,
        seconds: 2.5,
    }
}
