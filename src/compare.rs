//! Strategy comparison: every sampler × scheduler pair searches one space at the same epoch budget
//! for several seeds; the report gives the median best score against the budget spent.
//!
//! Each run is an ordinary study (journal, leaderboards) under the output directory, so the
//! claim can be inspected trial by trial, and a comparison that was cut off resumes where it
//! stopped: a run whose study already spent the budget is read back, not trained again.
//!
//! Runs of several objectives are measured by hypervolume instead of the best score: after each
//! trial, the volume of objective space (every objective turned lower-is-better) that the
//! complete, feasible trials so far dominate, up to one reference point shared by every run
//! (given, or each objective's worst value over all runs pushed out by 10% of its range), which
//! the report states.

use crate::controller::{Controller, PreparedData, SearchError, SearchOptions};
use crate::leaderboard;
use crate::objective::Objective;
use crate::pareto;
use crate::search::{SchedulerKind, Strategy, TrialState};
use crate::space::SearchSpace;
use crate::study::{study_dir, Direction, Metric, Objectives, StorageUrl, StudyMeta, TrialRecord};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// What to compare and at which budget.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    pub strategies: Vec<Strategy>,
    pub schedulers: Vec<SchedulerKind>,
    pub seeds: Vec<u64>,
    /// Epochs (summed over folds) each run may train; trials that would end past it do not count.
    pub budget: usize,
    /// Studies trained at once, each on one thread.
    pub jobs: usize,
    /// Where each run's study directory goes (its leaderboard, and its journal by default).
    pub out: PathBuf,
    /// Where the runs' studies are stored.
    pub storage: StorageUrl,
    pub verbose: bool,
    /// The objectives of every run (empty: the score alone).
    pub objectives: Vec<Objective>,
}

/// One (strategy, scheduler, seed) run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub strategy: Strategy,
    pub scheduler: SchedulerKind,
    pub seed: u64,
    pub study: String,
    /// (budget spent when the trial ended, best score so far), one point per trial within budget.
    pub curve: Vec<(usize, f64)>,
    pub trials: usize,
    pub pruned: usize,
    pub failed: usize,
    pub seconds: f64,
    /// With several objectives: the budget spent when each trial within budget ended, with the
    /// losses of the complete, feasible ones (the `curve` is their hypervolume, see
    /// [`apply_hypervolume`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<(usize, Option<Vec<f64>>)>,
}

impl RunResult {
    /// The best score among trials that ended within `budget` epochs.
    pub fn best_at(&self, budget: usize) -> Option<f64> {
        self.curve
            .iter()
            .take_while(|(b, _)| *b <= budget)
            .last()
            .map(|(_, s)| *s)
    }

    /// The first budget at which the best score reached `target`.
    pub fn budget_to_reach(&self, target: f64, metric: Metric) -> Option<usize> {
        self.curve
            .iter()
            .find(|(_, s)| *s == target || metric.better(*s, target))
            .map(|(b, _)| *b)
    }
}

/// A study's trials in trial order, with the budget spent when each ended, up to the last one that
/// ended within `budget`.
fn within_budget(trials: &[TrialRecord], budget: usize) -> Vec<(usize, &TrialRecord)> {
    let mut sorted: Vec<&TrialRecord> = trials.iter().collect();
    sorted.sort_by_key(|t| t.number);
    let mut spent = 0usize;
    sorted
        .into_iter()
        .map(|t| {
            spent += t.budget;
            (spent, t)
        })
        .take_while(|(spent, _)| *spent <= budget)
        .collect()
}

/// Best-so-far curve of a study's trials, in trial order, cut at `budget`.
pub fn curve(trials: &[TrialRecord], metric: Metric, budget: usize) -> Vec<(usize, f64)> {
    let mut best = None::<f64>;
    let mut out = Vec::new();
    for (spent, t) in within_budget(trials, budget) {
        if let (TrialState::Complete, Some(s)) = (t.state, t.cv_mean) {
            if s.is_finite() && best.is_none_or(|b| metric.better(s, b)) {
                best = Some(s);
            }
        }
        if let Some(b) = best {
            out.push((spent, b));
        }
    }
    out
}

/// The losses of the complete, feasible trials of a study as each trial within `budget` ended.
pub fn points(
    trials: &[TrialRecord],
    objectives: &Objectives,
    budget: usize,
) -> Vec<(usize, Option<Vec<f64>>)> {
    within_budget(trials, budget)
        .into_iter()
        .map(|(spent, t)| {
            let feasible = pareto::violation(&t.constraints) <= 0.0;
            (spent, objectives.losses(t).filter(|_| feasible))
        })
        .collect()
}

/// The default reference point, in losses: each objective's worst over every run's points,
/// pushed out by a tenth of its range (by a tenth of its size when all runs agree).
pub fn default_reference(results: &[RunResult]) -> Option<Vec<f64>> {
    let all: Vec<&Vec<f64>> = results
        .iter()
        .flat_map(|r| r.points.iter().filter_map(|(_, p)| p.as_ref()))
        .collect();
    let m = all.first()?.len();
    Some(
        (0..m)
            .map(|k| {
                let worst = all.iter().map(|p| p[k]).fold(f64::NEG_INFINITY, f64::max);
                let best = all.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min);
                let margin = if worst > best {
                    0.1 * (worst - best)
                } else {
                    (0.1 * worst.abs()).max(1e-9)
                };
                worst + margin
            })
            .collect(),
    )
}

/// Sets each run's curve to the hypervolume its points dominate up to `reference` (in losses),
/// one point per trial end once a trial has completed.
pub fn apply_hypervolume(results: &mut [RunResult], reference: &[f64]) {
    for r in results {
        let mut so_far: Vec<Vec<f64>> = Vec::new();
        r.curve = r
            .points
            .iter()
            .filter_map(|(spent, p)| {
                if let Some(p) = p {
                    so_far.push(p.clone());
                }
                (!so_far.is_empty()).then(|| (*spent, pareto::hypervolume(&so_far, reference)))
            })
            .collect();
    }
}

/// The study name of one run.
pub fn run_name(strategy: Strategy, scheduler: SchedulerKind, seed: u64) -> String {
    format!("{}-{}-s{seed}", strategy.label(), scheduler.label())
}

/// Runs (or reads back) every run of the comparison.
pub fn run_all(
    space: &SearchSpace,
    data_spec: &str,
    data: &[(u64, PreparedData)],
    folds: usize,
    opts: &CompareOptions,
) -> Result<Vec<RunResult>, SearchError> {
    let metric = Metric::for_task(space.task);
    let mut jobs = Vec::new();
    for &seed in &opts.seeds {
        for &strategy in &opts.strategies {
            for &scheduler in &opts.schedulers {
                jobs.push((strategy, scheduler, seed));
            }
        }
    }
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    let error = Mutex::new(None);
    let cancel = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| loop {
                let job = queue.lock().ok().and_then(|mut q| q.pop());
                let Some((i, (strategy, scheduler, seed))) = job else {
                    break;
                };
                let Some((_, prepared)) = data.iter().find(|(s, _)| *s == seed) else {
                    break;
                };
                let r = run_one(
                    space, data_spec, prepared, folds, metric, strategy, scheduler, seed, opts,
                    &cancel,
                );
                match r {
                    Ok(r) => {
                        if opts.verbose {
                            let best = match r.curve.last() {
                                Some((_, s)) => format!("best {s:.4}"),
                                None if !r.points.is_empty() => format!(
                                    "{} complete",
                                    r.points.iter().filter(|(_, p)| p.is_some()).count()
                                ),
                                None => "best -".into(),
                            };
                            eprintln!(
                                "compare [{}/{total}] {:<24} {best} after {} trials ({} pruned) {:.0}s",
                                i + 1,
                                r.study,
                                r.trials,
                                r.pruned,
                                r.seconds
                            );
                        }
                        if let Ok(mut v) = results.lock() {
                            v.push(r);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut slot) = error.lock() {
                            slot.get_or_insert(e);
                        }
                        if let Ok(mut q) = queue.lock() {
                            q.clear();
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|r| (r.strategy as u8, r.scheduler as u8, r.seed));
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    space: &SearchSpace,
    data_spec: &str,
    data: &PreparedData,
    folds: usize,
    metric: Metric,
    strategy: Strategy,
    scheduler: SchedulerKind,
    seed: u64,
    opts: &CompareOptions,
    cancel: &Arc<AtomicBool>,
) -> Result<RunResult, SearchError> {
    let name = run_name(strategy, scheduler, seed);
    let dir = study_dir(&opts.out, &name);
    let meta = StudyMeta {
        name: name.clone(),
        space_file: space.name.clone(),
        space_source: space.source.clone(),
        data: data_spec.to_string(),
        task: space.task,
        metric,
        seed,
        folds,
        strategy: strategy.label().into(),
        scheduler: scheduler.label().into(),
        objectives: crate::objective::normalise(&opts.objectives),
    };
    let mut storage = crate::study::open_or_create(&opts.storage, meta, Default::default())?;
    if storage.meta().space_source != space.source {
        return Err(SearchError::Compare(format!(
            "{} holds a run of a different space; remove it or choose another --out",
            storage.location()
        )));
    }
    let objectives = Objectives::of(storage.meta());
    if storage.meta().objectives != crate::objective::normalise(&opts.objectives) {
        return Err(SearchError::Compare(format!(
            "{} holds a run of other objectives ({}); remove it or choose another --out",
            storage.location(),
            crate::objective::names(objectives.list())
        )));
    }
    let requeue = storage.recover_stale()?;
    let spent: usize = storage.trials().iter().map(|t| t.budget).sum();
    if spent < opts.budget {
        let controller = Controller {
            space,
            data,
            metric,
            opts: SearchOptions {
                trials: None,
                seed,
                max_budget: Some(opts.budget),
                objectives: storage.meta().objectives.clone(),
                ..SearchOptions::default()
            },
            cancel: cancel.clone(),
        };
        let sampler = strategy
            .build(space)
            .map_err(|e| SearchError::Compare(e.to_string()))?;
        controller.run(
            storage.as_mut(),
            sampler,
            scheduler.build(space.max_epochs()),
            requeue,
        )?;
        std::fs::create_dir_all(&dir).map_err(|e| crate::study::StudyError::Io {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        leaderboard::save(&dir, storage.as_ref(), Some(space))?;
    }
    let trials = storage.trials();
    let seconds = trials.iter().map(|t| t.seconds).sum::<f64>();
    let (curve, points) = if objectives.is_multi() {
        (Vec::new(), points(trials, &objectives, opts.budget))
    } else {
        (curve(trials, metric, opts.budget), Vec::new())
    };
    let within = within_budget(trials, opts.budget).len();
    Ok(RunResult {
        strategy,
        scheduler,
        seed,
        study: name,
        curve,
        trials: within,
        pruned: trials
            .iter()
            .filter(|t| t.state == TrialState::Pruned)
            .count(),
        failed: trials
            .iter()
            .filter(|t| t.state == TrialState::Failed)
            .count(),
        seconds,
        points,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub strategy: Strategy,
    pub scheduler: SchedulerKind,
    pub seeds: usize,
    /// Median best score at each budget checkpoint.
    pub best_at: Vec<(usize, f64)>,
    /// Median over seeds of the budget needed to reach the reference score (None: not reached
    /// by at least half of the seeds).
    pub budget_to_reference: Option<f64>,
    /// Seeds that reached the reference score within the budget.
    pub reached: usize,
    pub median_trials: f64,
}

/// Medians per (strategy, scheduler) and the reference score: random search (FIFO)'s median
/// final best.
pub fn summarize(
    results: &[RunResult],
    metric: Metric,
    budget: usize,
) -> (Option<f64>, Vec<Summary>) {
    let checkpoints: Vec<usize> = [8, 4, 2]
        .iter()
        .map(|d| budget / d)
        .chain([budget * 3 / 4, budget])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let final_of = |r: &RunResult| r.best_at(budget).unwrap_or(f64::NAN);
    let reference: Vec<f64> = results
        .iter()
        .filter(|r| r.strategy == Strategy::Random && r.scheduler == SchedulerKind::Fifo)
        .map(final_of)
        .filter(|s| s.is_finite())
        .collect();
    let reference = (!reference.is_empty()).then(|| median(reference));
    let mut pairs: Vec<(Strategy, SchedulerKind)> =
        results.iter().map(|r| (r.strategy, r.scheduler)).collect();
    pairs.dedup();
    let mut out = Vec::new();
    for (strategy, scheduler) in pairs {
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.strategy == strategy && r.scheduler == scheduler)
            .collect();
        let best_at = checkpoints
            .iter()
            .map(|&b| {
                let v = runs
                    .iter()
                    .map(|r| r.best_at(b).unwrap_or(f64::NAN))
                    .collect::<Vec<_>>();
                // A run with no complete trial yet has no score: count it as the worst.
                let worst = if metric.higher_is_better() {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                };
                let v = v
                    .into_iter()
                    .map(|s| if s.is_nan() { worst } else { s })
                    .collect();
                (b, median(v))
            })
            .collect();
        let (budget_to_reference, reached) = match reference {
            Some(target) => {
                let needed: Vec<f64> = runs
                    .iter()
                    .map(|r| {
                        r.budget_to_reach(target, metric)
                            .map_or(f64::INFINITY, |b| b as f64)
                    })
                    .collect();
                let reached = needed.iter().filter(|b| b.is_finite()).count();
                let m = median(needed);
                (m.is_finite().then_some(m), reached)
            }
            None => (None, 0),
        };
        out.push(Summary {
            strategy,
            scheduler,
            seeds: runs.len(),
            best_at,
            budget_to_reference,
            reached,
            median_trials: median(runs.iter().map(|r| r.trials as f64).collect()),
        });
    }
    (reference, out)
}

/// What a comparison measures: the best score, or the hypervolume of several objectives.
pub fn measure(objectives: &Objectives) -> (Metric, String) {
    if objectives.is_multi() {
        (Metric::Value(Direction::Maximize), "hypervolume".into())
    } else {
        (
            objectives.metric(),
            format!("best CV {}", objectives.metric().label()),
        )
    }
}

/// The report as a markdown table; `what` names the measure (see [`measure`]).
pub fn render(reference: Option<f64>, summaries: &[Summary], what: &str, budget: usize) -> String {
    let mut s = String::new();
    let Some(first) = summaries.first() else {
        return "no runs\n".into();
    };
    s.push_str(&format!(
        "Median {what} over {} seeds against epochs spent (budget {budget}); reference = random/fifo's median final {what}{}.\n\n",
        first.seeds,
        reference.map(|r| format!(" = {r:.4}")).unwrap_or_default()
    ));
    s.push_str("| strategy | scheduler | trials |");
    for (b, _) in &first.best_at {
        s.push_str(&format!(" best @{b} |"));
    }
    s.push_str(" epochs to reference | seeds reaching it |\n|---|---|---:|");
    for _ in &first.best_at {
        s.push_str("---:|");
    }
    s.push_str("---:|---:|\n");
    for m in summaries {
        s.push_str(&format!(
            "| {} | {} | {} |",
            m.strategy.label(),
            m.scheduler.label(),
            m.median_trials
        ));
        for (_, v) in &m.best_at {
            if v.is_finite() {
                s.push_str(&format!(" {v:.4} |"));
            } else {
                s.push_str(" - |");
            }
        }
        match m.budget_to_reference {
            Some(b) => s.push_str(&format!(
                " {b:.0} ({:.0}% of budget) |",
                100.0 * b / budget as f64
            )),
            None => s.push_str(" not reached |"),
        }
        s.push_str(&format!(" {}/{} |\n", m.reached, m.seeds));
    }
    s
}

/// Writes the report (markdown and JSON with every run's curve) into `out`.
pub fn save(
    out: &Path,
    report: &str,
    results: &[RunResult],
    summaries: &[Summary],
) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("comparison.md"), report)?;
    let json = serde_json::json!({ "summaries": summaries, "runs": results });
    // A report that cannot be serialised is an error, never an empty file.
    let text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
    std::fs::write(out.join("comparison.json"), text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Config;

    fn trial(number: usize, state: TrialState, score: Option<f64>, budget: usize) -> TrialRecord {
        let mut t = TrialRecord::new(number, Config::new(), 0);
        t.state = state;
        t.cv_mean = score;
        t.budget = budget;
        t
    }

    #[test]
    fn the_curve_keeps_the_best_complete_score_and_stops_at_the_budget() {
        let trials = vec![
            trial(0, TrialState::Complete, Some(0.5), 9),
            trial(1, TrialState::Pruned, None, 1),
            trial(2, TrialState::Complete, Some(0.4), 9),
            trial(3, TrialState::Complete, Some(0.9), 9),
            trial(4, TrialState::Complete, Some(0.99), 9),
        ];
        let c = curve(&trials, Metric::Accuracy, 30);
        assert_eq!(c, vec![(9, 0.5), (10, 0.5), (19, 0.5), (28, 0.9)]);
        let r = RunResult {
            strategy: Strategy::Random,
            scheduler: SchedulerKind::Fifo,
            seed: 0,
            study: "x".into(),
            curve: c,
            trials: 4,
            pruned: 1,
            failed: 0,
            seconds: 0.0,
            points: Vec::new(),
        };
        assert_eq!(r.best_at(20), Some(0.5));
        assert_eq!(r.best_at(5), None);
        assert_eq!(r.budget_to_reach(0.8, Metric::Accuracy), Some(28));
        assert_eq!(r.budget_to_reach(0.95, Metric::Accuracy), None);
    }

    #[test]
    fn the_reference_is_the_median_final_best_of_random_fifo() {
        let run = |strategy, seed, finals: &[(usize, f64)]| RunResult {
            strategy,
            scheduler: SchedulerKind::Fifo,
            seed,
            study: String::new(),
            curve: finals.to_vec(),
            trials: finals.len(),
            pruned: 0,
            failed: 0,
            seconds: 0.0,
            points: Vec::new(),
        };
        let results = vec![
            run(Strategy::Random, 0, &[(10, 0.7), (100, 0.8)]),
            run(Strategy::Random, 1, &[(10, 0.9)]),
            run(Strategy::Random, 2, &[(50, 0.85)]),
            run(Strategy::Tpe, 0, &[(20, 0.85), (40, 0.95)]),
            run(Strategy::Tpe, 1, &[(30, 0.86)]),
            run(Strategy::Tpe, 2, &[(90, 0.5)]),
        ];
        let (reference, s) = summarize(&results, Metric::Accuracy, 100);
        assert_eq!(reference, Some(0.85));
        let tpe = s.iter().find(|m| m.strategy == Strategy::Tpe).unwrap();
        // Seeds reach 0.85 at 20 and 30 epochs; the third never does: median 30.
        assert_eq!(tpe.budget_to_reference, Some(30.0));
        assert_eq!(tpe.reached, 2);
        assert_eq!(tpe.best_at.last(), Some(&(100, 0.86)));
    }
}
