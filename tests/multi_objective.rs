//! Multi-objective, hardware-aware search: constrained domination and hypervolume, the NSGA-II
//! and multi-objective TPE samplers against random search, latency measured with training
//! paused, the journal as Optuna reads it (directions, values, constraints, `best_trials`),
//! pruning on the score alone, constraints that keep candidates from training, the Pareto
//! leaderboard, `nas export --trial N` and hypervolume in `nas compare`.

use nas::compare::{self, RunResult};
use nas::controller::{Controller, PreparedData, SearchOptions};
use nas::data::{load, DataSource, InputShape, LoadOptions};
use nas::leaderboard::{self, View};
use nas::objective::Objective;
use nas::pareto;
use nas::search::{
    AshaScheduler, FifoScheduler, Observation, Sampler, Scheduler, SchedulerKind, Strategy,
    TrialState,
};
use nas::space::{Config, ParamValue, SearchSpace};
use nas::study::{JournalStorage, Metric, Objectives, Storage, StudyMeta, TrialRecord};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[path = "common/mo_fixture.rs"]
mod mo_fixture;

use mo_fixture::{mo_meta, mo_trials, optuna_checks, IRIS};

fn parse(text: &str, name: &str) -> SearchSpace {
    SearchSpace::from_str_named(text, name, &format!("{name}.ron")).expect("test space is valid")
}

// ---------------------------------------------------------------- Pareto ranking

#[test]
fn constrained_domination_puts_every_feasible_point_before_any_infeasible_one() {
    let (good, bad) = ([1.0, 1.0], [2.0, 2.0]);
    // Feasible beats infeasible, even when worse on every objective.
    assert!(pareto::constrained_dominates(&bad, 0.0, &good, 0.5));
    assert!(!pareto::constrained_dominates(&good, 0.5, &bad, 0.0));
    // Two infeasible points compare by violation alone.
    assert!(pareto::constrained_dominates(&bad, 0.1, &good, 0.2));
    assert!(!pareto::constrained_dominates(&good, 0.2, &bad, 0.1));
    // Two feasible ones by Pareto domination: better on both, or neither.
    assert!(pareto::constrained_dominates(&good, 0.0, &bad, 0.0));
    assert!(!pareto::constrained_dominates(
        &[1.0, 3.0],
        0.0,
        &[2.0, 2.0],
        0.0
    ));
    assert!(!pareto::constrained_dominates(
        &[2.0, 2.0],
        0.0,
        &[1.0, 3.0],
        0.0
    ));
    assert_eq!(pareto::violation(&[-1.0, 0.25, f64::NAN, 0.5]), 0.75);
}

#[test]
fn fronts_follow_constrained_domination_on_random_points() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..20 {
        let n = rng.gen_range(1..40);
        let points: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..3).map(|_| f64::from(rng.gen_range(0..6u8))).collect())
            .collect();
        let violations: Vec<f64> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.3) {
                    f64::from(rng.gen_range(1..4u8)) / 4.0
                } else {
                    0.0
                }
            })
            .collect();
        let fronts = pareto::fronts(&points, &violations);
        for i in 0..n {
            for j in 0..n {
                let dominates = pareto::constrained_dominates(
                    &points[i],
                    violations[i],
                    &points[j],
                    violations[j],
                );
                if dominates {
                    assert!(fronts[i] < fronts[j], "{i} dominates {j}");
                }
            }
            // Every point past the first front is dominated by one of the front before it.
            if fronts[i] > 0 {
                assert!((0..n).any(|k| fronts[k] + 1 == fronts[i]
                    && pareto::constrained_dominates(
                        &points[k],
                        violations[k],
                        &points[i],
                        violations[i]
                    )));
            }
            if violations[i] > 0.0 {
                assert!((0..n)
                    .filter(|&k| violations[k] <= 0.0)
                    .all(|k| fronts[k] < fronts[i]));
            }
        }
    }
}

#[test]
fn hypervolume_is_the_volume_of_the_union_of_boxes_and_never_shrinks() {
    let points = vec![
        vec![1.0, 2.0, 3.0],
        vec![2.0, 1.0, 3.0],
        vec![3.0, 3.0, 1.0],
    ];
    let reference = [4.0, 4.0, 4.0];
    // By inclusion-exclusion of the three boxes (3x2x1, 2x3x1, 1x1x3; pairwise overlaps
    // 2x2x1, 1x1x1, 1x1x1; all three 1x1x1): 6 + 6 + 3 - 4 - 1 - 1 + 1 = 10.
    assert!((pareto::hypervolume(&points, &reference) - 10.0).abs() < 1e-12);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut set: Vec<Vec<f64>> = Vec::new();
    let mut last = 0.0;
    for _ in 0..60 {
        set.push((0..3).map(|_| rng.gen_range(0.0..4.5)).collect());
        let hv = pareto::hypervolume(&set, &reference);
        assert!(hv >= last - 1e-12, "{hv} < {last}");
        last = hv;
    }
    // A Monte Carlo estimate agrees.
    let inside = (0..200_000)
        .filter(|_| {
            let x: Vec<f64> = (0..3).map(|_| rng.gen_range(0.0..4.0)).collect();
            set.iter().any(|p| p.iter().zip(&x).all(|(a, b)| a <= b))
        })
        .count();
    let estimate = 64.0 * inside as f64 / 200_000.0;
    assert!((estimate - last).abs() < 0.3, "{estimate} vs {last}");
}

// ---------------------------------------------------------------- samplers

const BENCH_SPACE: &str = r#"(
    task: Classification,
    model: Mlp((
        depth: Range(1, 6),
        width: Choice([32, 64, 128, 256]),
        activation: Choice([Relu, Tanh, Sigmoid, LeakyRelu]),
        dropout: Range(0.0, 0.5),
        batch_norm: Choice([false, true]),
    )),
    train: (
        optimizer: Choice([Adam, Sgd]),
        learning_rate: LogRange(1e-5, 1e-1),
        momentum: Range(0.8, 0.99),
        weight_decay: LogRange(1e-6, 1e-2),
    ),
)"#;

/// The synthetic problem: an "error" best at lr = 10^-2.5, depth 2, tanh, width 128, dropout
/// 0.2, weight decay 1e-4 and Adam, against a "cost" of depth x width / 128 (best: one narrow
/// layer). The Pareto front trades depth and width for error.
fn two_objectives(space: &SearchSpace, c: &Config) -> (f64, f64) {
    let float = |k: &str| match c.get(k) {
        Some(ParamValue::Float(x)) => *x,
        _ => f64::NAN,
    };
    let int = |k: &str| match c.get(k) {
        Some(ParamValue::Int(i)) => *i as f64,
        _ => f64::NAN,
    };
    let label = |k: &str| {
        c.get(k)
            .map(|v| space.display_value(k, v))
            .unwrap_or_default()
    };
    let width: f64 = label("width").parse().unwrap_or(f64::NAN);
    let mut error = (float("learning_rate").log10() + 2.5).powi(2)
        + (int("depth") - 2.0).powi(2) * 0.3
        + (label("activation") != "tanh") as u8 as f64
        + ((width / 128.0).log2()).abs() * 0.5
        + (float("dropout") - 0.2).powi(2) * 4.0
        + (float("weight_decay").log10() + 4.0).powi(2) * 0.1;
    if label("optimizer") == "sgd" {
        error += 0.3 + (float("momentum") - 0.9).powi(2) * 20.0;
    }
    (error, int("depth") * width / 128.0)
}

/// The cost limit of the constrained problem: cost <= 4 (`cost / 4 - 1 <= 0`).
const COST_LIMIT: f64 = 4.0;
const REFERENCE: [f64; 2] = [8.0, 13.0];

/// Runs `trials` suggestions on the two-objective problem; with `constrained`, candidates over
/// the cost limit are failed with their constraint value, as `nas search` rejects them.
fn run_mo(
    strategy: Strategy,
    space: &SearchSpace,
    seed: u64,
    trials: usize,
    constrained: bool,
) -> Vec<Observation> {
    run_mo_with(strategy, space, seed, trials, constrained, false)
}

/// [`run_mo`]; with `costed`, the sampler is told each candidate's cost before it is "trained"
/// (`Sampler::suggest_costed`), as `nas search` tells it parameters, MACs and latency.
fn run_mo_with(
    strategy: Strategy,
    space: &SearchSpace,
    seed: u64,
    trials: usize,
    constrained: bool,
    costed: bool,
) -> Vec<Observation> {
    let mut sampler = strategy.build(space).expect("sampler builds");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut history: Vec<Observation> = Vec::new();
    let mut costs = |c: &Config| {
        let (_, cost) = two_objectives(space, c);
        (!constrained || cost <= COST_LIMIT).then(|| vec![f64::NAN, cost])
    };
    for number in 0..trials {
        let config = if costed {
            sampler.suggest_costed(space, &history, &mut rng, &mut costs)
        } else {
            sampler.suggest(space, &history, &mut rng)
        };
        let (error, cost) = two_objectives(space, &config);
        let c = cost / COST_LIMIT - 1.0;
        let o = if constrained && c > 0.0 {
            Observation {
                number,
                config,
                state: TrialState::Failed,
                loss: None,
                intermediate: vec![],
                values: vec![],
                constraints: vec![c],
            }
        } else {
            Observation {
                number,
                config,
                state: TrialState::Complete,
                loss: Some(error),
                intermediate: vec![error],
                values: vec![error, cost],
                constraints: if constrained { vec![c] } else { vec![] },
            }
        };
        history.push(o);
    }
    history
}

fn hypervolume(history: &[Observation]) -> f64 {
    let points: Vec<Vec<f64>> = history
        .iter()
        .filter(|o| o.state == TrialState::Complete && !o.infeasible())
        .map(|o| o.values.clone())
        .collect();
    pareto::hypervolume(&points, &REFERENCE)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

const MULTI: [Strategy; 2] = [Strategy::Nsga2, Strategy::Motpe];

#[test]
fn nsga2_and_motpe_repeat_their_suggestions_given_the_same_seed_and_history() {
    let space = parse(BENCH_SPACE, "bench");
    for strategy in MULTI {
        for constrained in [false, true] {
            let configs = |seed| -> Vec<Config> {
                run_mo(strategy, &space, seed, 50, constrained)
                    .into_iter()
                    .map(|o| o.config)
                    .collect()
            };
            assert_eq!(configs(3), configs(3), "{}", strategy.label());
            assert_ne!(
                configs(3),
                configs(4),
                "{} ignores its seed",
                strategy.label()
            );
        }
        // A fresh sampler shown the same history (a resumed study) answers the same.
        let history = run_mo(Strategy::Random, &space, 9, 40, true);
        let ask = || {
            let mut s = strategy.build(&space).expect("builds");
            let mut rng = ChaCha8Rng::seed_from_u64(99);
            (0..5)
                .map(|_| s.suggest(&space, &history, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(ask(), ask(), "{}", strategy.label());
    }
}

#[test]
fn nsga2_and_motpe_stay_inside_the_space_and_take_conditional_branches() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/search_spaces/mlp.ron"
    ))
    .expect("mlp.ron");
    let space = parse(&text, "mlp");
    for strategy in MULTI {
        for seed in 0..2 {
            let mut sampler = strategy.build(&space).expect("builds");
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut history = Vec::new();
            for number in 0..150 {
                let config = sampler.suggest(&space, &history, &mut rng);
                if let Err(e) = space.validate_config(&config) {
                    panic!("{} trial {number}: {e}", strategy.label());
                }
                // Two objectives: a smooth one and a count of the parameters drawn.
                let x = config.len() as f64;
                let y = match config.get("dropout") {
                    Some(ParamValue::Float(d)) => *d,
                    _ => 0.0,
                };
                history.push(Observation {
                    number,
                    config,
                    state: TrialState::Complete,
                    loss: Some(y),
                    intermediate: vec![y],
                    values: vec![y, x],
                    constraints: vec![],
                });
            }
            let has = |k: &str| history.iter().filter(|o| o.config.contains_key(k)).count();
            assert!(
                has("width_1") > 0 && has("momentum") > 0,
                "{}: conditional branches never taken",
                strategy.label()
            );
        }
    }
}

#[test]
fn nsga2_and_motpe_reach_a_larger_hypervolume_than_random_search() {
    let space = parse(BENCH_SPACE, "bench");
    for constrained in [false, true] {
        let median_hv = |strategy: Strategy| {
            median(
                (0..10)
                    .map(|seed| hypervolume(&run_mo(strategy, &space, 500 + seed, 80, constrained)))
                    .collect(),
            )
        };
        let random = median_hv(Strategy::Random);
        for strategy in MULTI {
            let hv = median_hv(strategy);
            eprintln!(
                "median hypervolume after 80 trials over 10 seeds{}: {} {hv:.3}, random {random:.3}",
                if constrained { " (constrained)" } else { "" },
                strategy.label()
            );
            assert!(hv > random, "{}: {hv} vs random {random}", strategy.label());
        }
    }
}

#[test]
fn motpe_told_the_costs_before_training_reaches_a_larger_hypervolume_sooner() {
    let space = parse(BENCH_SPACE, "bench");
    let median_hv = |costed: bool| {
        median(
            (0..10)
                .map(|seed| {
                    hypervolume(&run_mo_with(
                        Strategy::Motpe,
                        &space,
                        700 + seed,
                        30,
                        false,
                        costed,
                    ))
                })
                .collect(),
        )
    };
    let (plain, costed) = (median_hv(false), median_hv(true));
    eprintln!("median hypervolume after 30 trials over 10 seeds: motpe {plain:.3}, with costs {costed:.3}");
    assert!(costed > plain, "with costs {costed} vs without {plain}");
    // Under a constraint, a candidate whose costs break it is never proposed after the random
    // startup trials (without costs MOTPE proposes some and they fail).
    let infeasible_after_startup = |costed: bool| -> usize {
        (0..10)
            .map(|seed| {
                run_mo_with(Strategy::Motpe, &space, 700 + seed, 30, true, costed)[10..]
                    .iter()
                    .filter(|o| o.infeasible())
                    .count()
            })
            .sum()
    };
    assert_eq!(infeasible_after_startup(true), 0);
    assert!(infeasible_after_startup(false) > 0);
    // Same seed and history, same suggestions; the costs change what is suggested.
    let configs = |seed, costed| -> Vec<Config> {
        run_mo_with(Strategy::Motpe, &space, seed, 30, true, costed)
            .into_iter()
            .map(|o| o.config)
            .collect()
    };
    assert_eq!(configs(3, true), configs(3, true));
    assert_ne!(configs(3, true), configs(3, false));
}

#[test]
fn constrained_samplers_propose_fewer_infeasible_candidates_than_random_search() {
    let space = parse(BENCH_SPACE, "bench");
    let infeasible = |strategy: Strategy| -> usize {
        (0..5)
            .map(|seed| {
                run_mo(strategy, &space, 700 + seed, 80, true)[40..]
                    .iter()
                    .filter(|o| o.infeasible())
                    .count()
            })
            .sum()
    };
    let random = infeasible(Strategy::Random);
    for strategy in MULTI {
        let n = infeasible(strategy);
        assert!(n < random, "{}: {n} vs random {random}", strategy.label());
    }
}

// ---------------------------------------------------------------- latency

#[test]
fn a_latency_measurement_reports_its_median_batch_and_spread() {
    let space = parse(IRIS, "iris");
    let config = nas::search::RandomSampler.suggest(&space, &[], &mut ChaCha8Rng::seed_from_u64(0));
    let cand = space.decode(&config);
    let l = nas::nn::latency::measure(&cand.arch, InputShape::flat(4), 3, 1).expect("measures");
    assert!(l.ms > 0.0 && l.ms.is_finite(), "{l:?}");
    assert!(l.batch_ms > 0.0 && l.batch_ms.is_finite(), "{l:?}");
    assert_eq!(l.batch, nas::nn::latency::LATENCY_BATCH);
    assert_eq!(l.repeats, nas::nn::latency::REPEATS_ONE);
    assert!(l.spread >= 0.0 && l.spread.is_finite(), "{l:?}");
    assert!(l.wall_ms > 0.0, "{l:?}");
    // A search measures a network once: the same architecture again gets that measurement.
    let first = nas::nn::latency::measure_cached(&cand.arch, InputShape::flat(4), 3, 7).expect("a");
    let again = nas::nn::latency::measure_cached(&cand.arch, InputShape::flat(4), 3, 8).expect("b");
    assert_eq!(first, again);
    let other = nas::nn::latency::measure_cached(&cand.arch, InputShape::flat(5), 3, 7).expect("c");
    assert_ne!(first, other, "another input shape is another network");
    // A sampler's estimate is that measurement once there is one...
    let shape = InputShape::flat(4);
    assert_eq!(
        nas::nn::latency::estimate_ms(&cand.arch, shape, 3, 9).expect("estimate"),
        first.ms
    );
    // ...else a quick measurement of the same network, near the full one.
    let wide = InputShape::flat(64);
    let quick = nas::nn::latency::estimate_ms(&cand.arch, wide, 3, 9).expect("quick");
    let full = nas::nn::latency::measure_cached(&cand.arch, wide, 3, 9).expect("full");
    assert!(
        quick > 0.5 * full.ms && quick < 2.0 * full.ms,
        "quick {quick} ms, full {} ms",
        full.ms
    );
}

#[test]
fn training_pauses_while_a_latency_measurement_runs() {
    let steps = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let trainer = {
        let (steps, stop) = (steps.clone(), stop.clone());
        std::thread::spawn(move || {
            let _training = nas::nn::latency::training();
            while !stop.load(Ordering::Relaxed) {
                nas::nn::latency::pause_point();
                steps.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    while steps.load(Ordering::Relaxed) < 10 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (before, after) = nas::nn::latency::exclusive(|| {
        let before = steps.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        (before, steps.load(Ordering::Relaxed))
    });
    assert_eq!(before, after, "a training step ran during the measurement");
    // And it goes on afterwards.
    let resumed = steps.load(Ordering::Relaxed);
    while steps.load(Ordering::Relaxed) == resumed {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    trainer.join().expect("trainer");
}

// ---------------------------------------------------------------- journal and Optuna

/// The shared study in a journal in `dir`.
fn mo_study(dir: &Path) -> Vec<TrialRecord> {
    let mut s = JournalStorage::open_or_create(dir, mo_meta("mo")).expect("creates");
    mo_trials(&mut s)
}

#[test]
fn a_multi_objective_journal_keeps_directions_values_constraints_and_latency() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = mo_study(dir.path());
    let text = std::fs::read_to_string(dir.path().join(JournalStorage::FILE)).expect("journal");
    assert!(
        text.contains(r#""directions":[2,1,1]"#),
        "MAXIMIZE, MINIMIZE, MINIMIZE"
    );
    assert!(
        text.contains(r#""values":[0.9,1000.0,0.02]"#),
        "one value per objective"
    );
    assert!(text.contains(r#""system_attr":{"constraints":[-0.5,-0.2]}"#));
    assert!(text.contains(r#""study:metric_names":["cv accuracy","params","latency ms"]"#));
    let again = JournalStorage::open(dir.path()).expect("reopens");
    assert_eq!(again.meta(), &mo_meta("mo"));
    assert_eq!(again.trials(), &written[..]);
    let objectives = Objectives::of(again.meta());
    let best: Vec<usize> = objectives
        .best_trials(again.trials())
        .iter()
        .map(|t| t.number)
        .collect();
    assert_eq!(best, [0, 1]);
    // The infeasible trial ranks behind every feasible one, the dominated one in between.
    assert_eq!(
        objectives.fronts(again.trials()),
        vec![Some(1), Some(1), Some(2), None, None, Some(3)]
    );
    // A study of the score alone keeps the journal it always had: no `objectives` in it.
    let single = tempfile::tempdir().expect("temp dir");
    let meta = StudyMeta {
        objectives: vec![],
        ..mo_meta("one")
    };
    drop(JournalStorage::open_or_create(single.path(), meta).expect("creates"));
    let text = std::fs::read_to_string(single.path().join(JournalStorage::FILE)).expect("journal");
    assert!(!text.contains("objectives") && text.contains(r#""directions":[2]"#));
}

/// A Python with Optuna: `NAS_PYTHON`, else `python3`, else the peer venv of the benches.
fn python_with_optuna() -> Option<String> {
    let venv = std::env::var("HOME")
        .map(|h| format!("{h}/.cache/nas-peers-venv/bin/python"))
        .unwrap_or_default();
    std::env::var("NAS_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), venv])
        .find(|py| {
            Command::new(py)
                .args(["-c", "import optuna"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn optuna_reads_a_multi_objective_study_and_its_best_trials_are_our_first_front() {
    let Some(python) = python_with_optuna() else {
        let required = ["NAS_REQUIRE_OPTUNA", "CI"]
            .into_iter()
            .find(|v| std::env::var(v).is_ok_and(|x| !matches!(x.as_str(), "" | "0" | "false")));
        if let Some(var) = required {
            panic!("{var} is set, and no python can import optuna (pip install optuna)");
        }
        let _ = std::io::stderr()
            .write_all(b"SKIPPED optuna_reads_a_multi_objective_study: no python imports optuna\n");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let trials = mo_study(dir.path());
    let journal = dir.path().join(JournalStorage::FILE);
    let stdout = optuna_checks(&python, &journal.display().to_string(), &trials);
    assert!(stdout.contains("best_trials [0, 1]"), "{stdout}");
    eprintln!("{stdout}");
}

// ---------------------------------------------------------------- searches

fn iris_data(seed: u64) -> PreparedData {
    let split = load(
        &DataSource::parse("iris").expect("iris"),
        &LoadOptions::default(),
    )
    .expect("loads iris");
    PreparedData::new(split, 3, seed).expect("folds")
}

/// A multi-objective search through the library, on 2 workers (measurements pause the other
/// worker's training).
fn mo_search(
    dir: &Path,
    objectives: &[Objective],
    scheduler: Box<dyn Scheduler>,
    trials: usize,
    max_params: Option<usize>,
) -> Vec<TrialRecord> {
    let space = parse(IRIS, "iris");
    let data = iris_data(0);
    let meta = StudyMeta {
        objectives: objectives.to_vec(),
        ..mo_meta("search")
    };
    let mut storage = JournalStorage::open_or_create(dir, meta).expect("creates");
    let c = Controller {
        space: &space,
        data: &data,
        metric: Metric::Accuracy,
        opts: SearchOptions {
            trials: Some(trials),
            seed: 0,
            workers: 2,
            max_params,
            objectives: objectives.to_vec(),
            ..SearchOptions::default()
        },
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let sampler = Strategy::Nsga2.build(&space).expect("builds");
    c.run(&mut storage, sampler, scheduler, Vec::new())
        .expect("the search runs");
    JournalStorage::open(dir)
        .expect("reopens")
        .trials()
        .to_vec()
}

#[test]
fn pruning_works_on_a_multi_objective_study_and_judges_the_score_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let objectives = [Objective::Score, Objective::Latency];
    let trials = mo_search(
        dir.path(),
        &objectives,
        Box::new(AshaScheduler::with_max_epochs(9)),
        16,
        None,
    );
    let pruned: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.state == TrialState::Pruned)
        .collect();
    assert!(!pruned.is_empty(), "ASHA pruned nothing");
    for t in &pruned {
        // Pruned at a rung, on the score's curve; its costs were known before training.
        assert!(t.pruned_at.is_some() && !t.intermediate.is_empty());
        assert!(t.latency.is_some() && t.params > 0);
        assert_eq!(t.cv_mean, None, "a pruned trial has no values");
    }
    let o = Objectives::new(&objectives, Metric::Accuracy);
    let complete: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .collect();
    assert!(!complete.is_empty());
    for t in &complete {
        assert!(o.values(t).is_some(), "trial {}", t.number);
    }
    // The front holds complete trials only.
    let fronts = o.fronts(&trials);
    for (t, f) in trials.iter().zip(&fronts) {
        assert_eq!(f.is_some(), t.state == TrialState::Complete);
    }
    // Optuna keeps no values for a pruned trial of several objectives.
    let journal = std::fs::read_to_string(dir.path().join(JournalStorage::FILE)).expect("read");
    let pruned_lines: Vec<Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["op_code"] == 6 && l["state"] == 2)
        .collect();
    assert_eq!(pruned_lines.len(), pruned.len());
    assert!(pruned_lines.iter().all(|l| l["values"].is_null()));
}

#[test]
fn candidates_known_infeasible_before_training_are_never_trained_and_rank_last() {
    let dir = tempfile::tempdir().expect("temp dir");
    let objectives = [Objective::Score, Objective::Params];
    let trials = mo_search(
        dir.path(),
        &objectives,
        Box::new(FifoScheduler),
        12,
        Some(150),
    );
    let (rejected, kept): (Vec<&TrialRecord>, Vec<&TrialRecord>) =
        trials.iter().partition(|t| t.params > 150);
    assert!(!rejected.is_empty() && !kept.is_empty(), "both kinds drawn");
    for t in &rejected {
        assert_eq!(t.state, TrialState::Failed);
        assert_eq!((t.budget, t.epochs), (0, 0), "trial {} trained", t.number);
        assert!(t.intermediate.is_empty());
        assert!(t.constraints[0] > 0.0, "{:?}", t.constraints);
        assert!(t
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("rejected before training")));
    }
    for t in kept.iter().filter(|t| t.state == TrialState::Complete) {
        assert!(t.constraints[0] <= 0.0, "{:?}", t.constraints);
    }
    let o = Objectives::new(&objectives, Metric::Accuracy);
    let rows = leaderboard::ranked_rows(&trials, &o, None);
    let last_ranked = rows.iter().rposition(|r| r.rank.is_some()).expect("ranked");
    assert!(rows[..=last_ranked].iter().all(|r| r.state == "complete"));
    assert!(rows
        .iter()
        .filter(|r| r.params > 150)
        .all(|r| r.rank.is_none() && r.front.is_none()));
    // Fronts come in order, and within a front the first objective (the score) best first.
    for w in rows[..=last_ranked].windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(
            a.front < b.front || (a.front == b.front && a.cv_mean >= b.cv_mean),
            "{:?} before {:?}",
            (a.front, a.cv_mean),
            (b.front, b.cv_mean)
        );
    }
    let view = View {
        pareto: true,
        ..View::default()
    };
    let front = leaderboard::select(rows, Metric::Accuracy, &view);
    let best: Vec<usize> = o.best_trials(&trials).iter().map(|t| t.number).collect();
    let mut shown: Vec<usize> = front.iter().map(|r| r.trial).collect();
    shown.sort_unstable();
    assert_eq!(shown, best);
    let table =
        leaderboard::render_columns(&front, Metric::Accuracy, leaderboard::Format::Csv, &[]);
    assert!(table.starts_with("rank,front,trial,state"), "{table}");
}

// ---------------------------------------------------------------- the command line

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .output()
        .expect("runs nas")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn nas_search_with_objectives_gives_a_pareto_leaderboard_and_any_front_trial_exports() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mo-cli");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let space = dir.join("mo.ron");
    std::fs::write(&space, IRIS).expect("space");
    let results = dir.join("results");
    let (space, results) = (
        space.to_str().expect("utf-8"),
        results.to_str().expect("utf-8"),
    );
    let out = nas(&[
        "search",
        "--space",
        space,
        "--results",
        results,
        "--objectives",
        "score,latency",
        "--strategy",
        "motpe",
        "--scheduler",
        "asha",
        "--trials",
        "8",
        "--workers",
        "2",
        "--max-params",
        "300",
        "--no-final",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("front") && table.contains("latency ms"),
        "{table}"
    );
    // The progress lines (plain, in a pipe) show a trained trial's measured latency.
    let log = text(&out.stderr);
    assert!(
        log.lines()
            .any(|l| l.contains(" complete ") && l.contains(" params; ") && l.contains(" ms]")),
        "{log}"
    );

    let out = nas(&[
        "leaderboard",
        "--results",
        results,
        "--study",
        "mo",
        "--pareto",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let storage = JournalStorage::open(&Path::new(results).join("mo")).expect("study");
    let o = Objectives::of(storage.meta());
    assert_eq!(o.list(), [Objective::Score, Objective::Latency]);
    let mut best: Vec<u64> = o
        .best_trials(storage.trials())
        .iter()
        .map(|t| t.number as u64)
        .collect();
    let mut shown: Vec<u64> = rows.iter().filter_map(|r| r["trial"].as_u64()).collect();
    best.sort_unstable();
    shown.sort_unstable();
    assert_eq!(shown, best);
    assert!(rows
        .iter()
        .all(|r| r["front"] == 1 && r["latency_ms"].is_number()));

    // nas trial N ranks as the leaderboard does, by front, and gives every objective's value.
    let first = rows[0]["trial"].as_u64().expect("a front").to_string();
    let out = nas(&[
        "trial",
        &first,
        "--results",
        results,
        "--study",
        "mo",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(view["front"], 1);
    assert_eq!(view["objectives"][1]["name"], "latency ms");
    assert!(view["objectives"][1]["value"]
        .as_f64()
        .is_some_and(|ms| ms > 0.0));
    let out = nas(&["trial", &first, "--results", results, "--study", "mo"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("Pareto front 1)") && shown.contains("objectives: cv accuracy "),
        "{shown}"
    );

    // The Pareto plot sets the score against latency and marks front 1; the report has it.
    let out = nas(&["plot", "--results", results, "--study", "mo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(Path::new(results).join("mo/plots/pareto.svg"))
        .expect("pareto.svg");
    assert!(
        svg.contains("Score against latency") && svg.contains("front 1 (every objective)"),
        "the multi-objective Pareto plot"
    );
    let out = nas(&["report", "--results", results, "--study", "mo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(Path::new(results).join("mo/report.html")).expect("html");
    assert!(html.contains("Score against latency") && html.contains(">front</th>"));

    // Any point of the front exports: the last one listed.
    let pick = rows
        .last()
        .and_then(|r| r["trial"].as_u64())
        .expect("a front");
    let model = dir.join("model");
    let out = nas(&[
        "export",
        "--results",
        results,
        "--study",
        "mo",
        "--trial",
        &pick.to_string(),
        "--out",
        model.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let provenance: Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("provenance.json")).expect("provenance"),
    )
    .expect("json");
    assert_eq!(provenance["trial"], pick);

    // The objectives are the study's: continuing it with others is refused.
    let out = nas(&[
        "search",
        "--space",
        space,
        "--results",
        results,
        "--objectives",
        "score,params",
        "--trials",
        "9",
        "--quiet",
        "--no-final",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("objectives score,latency"),
        "{}",
        text(&out.stderr)
    );
    // Flags are checked before anything is read.
    let out = nas(&["search", "--space", space, "--objectives", "latency,params"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("leave out `score`"),
        "{}",
        text(&out.stderr)
    );
    let out = nas(&["search", "--space", space, "--max-latency", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_space_file_names_its_objectives_and_a_single_objective_study_has_no_pareto_view() {
    let with = IRIS.replacen(
        "task: Classification,",
        "task: Classification, objectives: [Score, Params],",
        1,
    );
    assert_eq!(
        parse(&with, "with").objectives,
        [Objective::Score, Objective::Params]
    );
    let bad = IRIS.replacen(
        "task: Classification,",
        "task: Classification,\n    objectives: [Params],",
        1,
    );
    let err = SearchSpace::from_str_named(&bad, "bad", "bad.ron").expect_err("no score");
    assert!(err.to_string().starts_with("bad.ron:3:"), "{err}");
    assert!(err.to_string().contains("leave out `score`"), "{err}");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("so-pareto");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let space = dir.join("one.ron");
    std::fs::write(&space, IRIS).expect("space");
    let results = dir.to_str().expect("utf-8");
    let out = nas(&[
        "search",
        "--space",
        space.to_str().expect("utf-8"),
        "--results",
        results,
        "--trials",
        "1",
        "--no-final",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = nas(&[
        "leaderboard",
        "--results",
        results,
        "--study",
        "one",
        "--pareto",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has one objective"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------- comparison

#[test]
fn compare_measures_multi_objective_runs_by_hypervolume_against_one_reference() {
    let run = |strategy, seed, points: Vec<(usize, Option<Vec<f64>>)>| RunResult {
        strategy,
        scheduler: SchedulerKind::Fifo,
        seed,
        study: String::new(),
        curve: Vec::new(),
        trials: points.len(),
        pruned: 0,
        failed: 0,
        seconds: 0.0,
        points,
    };
    let mut results = vec![
        run(
            Strategy::Random,
            0,
            vec![
                (10, Some(vec![-0.5, 2.0])),
                (20, None),
                (30, Some(vec![-0.9, 3.0])),
            ],
        ),
        run(
            Strategy::Nsga2,
            0,
            vec![(10, Some(vec![-0.9, 1.0])), (20, Some(vec![-1.0, 4.0]))],
        ),
    ];
    // Worst score loss -0.5 and latency 4.0, pushed out by a tenth of their ranges.
    let reference = compare::default_reference(&results).expect("points");
    assert!((reference[0] - -0.45).abs() < 1e-12 && (reference[1] - 4.3).abs() < 1e-12);
    compare::apply_hypervolume(&mut results, &reference);
    let hv = |pts: &[Vec<f64>]| pareto::hypervolume(pts, &reference);
    assert_eq!(results[0].curve[0], (10, hv(&[vec![-0.5, 2.0]])));
    assert_eq!(results[0].curve[1], (20, hv(&[vec![-0.5, 2.0]])));
    assert_eq!(
        results[0].curve[2].1,
        hv(&[vec![-0.5, 2.0], vec![-0.9, 3.0]])
    );
    assert!(results[1].curve[0].1 > results[0].curve[0].1);
    let (metric, what) = compare::measure(&Objectives::new(
        &[Objective::Score, Objective::Latency],
        Metric::Accuracy,
    ));
    assert_eq!(what, "hypervolume");
    let (reference_hv, summaries) = compare::summarize(&results, metric, 30);
    assert_eq!(reference_hv, Some(results[0].curve[2].1));
    let nsga2 = summaries
        .iter()
        .find(|s| s.strategy == Strategy::Nsga2)
        .expect("nsga2");
    assert_eq!(nsga2.budget_to_reference, Some(10.0));
}
