//! Contract tests run over every sampler, a synthetic benchmark with a known optimum, and the
//! behaviour of the ASHA and Hyperband schedulers.

use nas::search::{
    AshaScheduler, Decision, GridSampler, HyperbandScheduler, Observation, Scheduler,
    SchedulerKind, SearchError, Strategy, TrialState,
};
use nas::space::{Config, ParamValue, SearchSpace};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn parse(text: &str, name: &str) -> SearchSpace {
    SearchSpace::from_str_named(text, name, &format!("{name}.ron")).expect("test space is valid")
}

fn mlp_space() -> SearchSpace {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/search_spaces/mlp.ron"
    ))
    .expect("search_spaces/mlp.ron is readable");
    parse(&text, "mlp")
}

/// The MLP space made discrete (so grid search accepts it), conditions kept: momentum only
/// with SGD, per-layer widths only when asked for and only up to the depth.
fn discrete_mlp_space() -> SearchSpace {
    parse(
        r#"(
            task: Classification,
            model: Mlp((
                depth: Range(1, 3),
                width: Choice([16, 32]),
                per_layer_width: Choice([false, true]),
                activation: Choice([Relu, Tanh]),
                dropout: Choice([0.0, 0.2]),
            )),
            train: (
                optimizer: Choice([Adam, Sgd]),
                learning_rate: Choice([0.001, 0.01]),
                momentum: Choice([0.9, 0.95]),
            ),
        )"#,
        "discrete_mlp",
    )
}

/// A stand-in loss for any configuration: deterministic, varied, cheap.
fn generic_loss(config: &Config) -> f64 {
    config
        .iter()
        .enumerate()
        .map(|(k, (_, v))| {
            let x = match v {
                ParamValue::Int(i) => *i as f64,
                ParamValue::Float(f) => f.abs().max(1e-12).ln(),
                ParamValue::Cat(i) => *i as f64,
            };
            (x * (k as f64 + 1.3)).sin()
        })
        .sum()
}

/// An observation for trial `number`, in a state that cycles through complete, pruned, failed.
fn observe(number: usize, config: Config, loss: f64) -> Observation {
    let (state, final_loss, intermediate) = match number % 7 {
        3 => (TrialState::Pruned, None, vec![loss + 1.0, loss + 0.5]),
        5 => (TrialState::Failed, None, vec![]),
        _ => (TrialState::Complete, Some(loss), vec![loss + 0.5, loss]),
    };
    Observation {
        number,
        config,
        state,
        loss: final_loss,
        values: final_loss.into_iter().collect(),
        intermediate,
        constraints: Vec::new(),
    }
}

/// Runs `trials` suggestions, each observed with `loss`, and returns the suggestions.
fn run(
    strategy: Strategy,
    space: &SearchSpace,
    seed: u64,
    trials: usize,
    loss: impl Fn(&Config) -> f64,
) -> Vec<Config> {
    let mut sampler = strategy
        .build(space)
        .expect("sampler builds for this space");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut history = Vec::new();
    for number in 0..trials {
        let config = sampler.suggest(space, &history, &mut rng);
        let l = loss(&config);
        history.push(observe(number, config, l));
    }
    history.into_iter().map(|o| o.config).collect()
}

/// Every strategy with the spaces it accepts (grid search only takes discrete spaces).
fn cases() -> Vec<(Strategy, Vec<SearchSpace>)> {
    Strategy::ALL
        .into_iter()
        .map(|s| {
            let spaces = match s {
                Strategy::Grid => vec![discrete_mlp_space()],
                _ => vec![mlp_space(), discrete_mlp_space()],
            };
            (s, spaces)
        })
        .collect()
}

#[test]
fn every_sampler_repeats_its_suggestions_given_the_same_seed_and_history() {
    for (strategy, spaces) in cases() {
        for space in &spaces {
            let a = run(strategy, space, 7, 60, generic_loss);
            let b = run(strategy, space, 7, 60, generic_loss);
            assert_eq!(a, b, "{} on {}", strategy.label(), space.name);
            let c = run(strategy, space, 8, 60, generic_loss);
            assert_ne!(
                a,
                c,
                "{} ignores its seed on {}",
                strategy.label(),
                space.name
            );
        }
    }
}

#[test]
fn every_sampler_answers_the_same_history_the_same_way_from_a_fresh_start() {
    // A resumed study: a fresh sampler and RNG shown a history it did not produce.
    for (strategy, spaces) in cases() {
        for space in &spaces {
            let history: Vec<Observation> = run(Strategy::Random, space, 1, 40, generic_loss)
                .into_iter()
                .enumerate()
                .map(|(n, c)| {
                    let l = generic_loss(&c);
                    observe(n, c, l)
                })
                .collect();
            let suggest = || {
                let mut sampler = strategy.build(space).expect("sampler builds");
                let mut rng = ChaCha8Rng::seed_from_u64(99);
                (0..5)
                    .map(|_| sampler.suggest(space, &history, &mut rng))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                suggest(),
                suggest(),
                "{} on {}",
                strategy.label(),
                space.name
            );
        }
    }
}

#[test]
fn every_sampler_stays_inside_the_space_and_respects_conditions_over_200_trials() {
    for (strategy, spaces) in cases() {
        for space in &spaces {
            for seed in 0..3 {
                let configs = run(strategy, space, seed, 200, generic_loss);
                for (i, c) in configs.iter().enumerate() {
                    if let Err(e) = space.validate_config(c) {
                        panic!("{} on {}, trial {i}: {e}", strategy.label(), space.name);
                    }
                }
                let widths = configs.iter().filter(|c| c.contains_key("width_1")).count();
                let momentum = configs
                    .iter()
                    .filter(|c| c.contains_key("momentum"))
                    .count();
                assert!(
                    widths > 0 && momentum > 0,
                    "{}: conditional branches never taken",
                    strategy.label()
                );
            }
        }
    }
}

// ---------------------------------------------------------------- synthetic benchmark

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

/// A cheap objective with its optimum (loss 0) at lr = 10^-2.5, depth 2, tanh, width 128,
/// dropout 0.2, weight decay 1e-4, Adam; SGD costs 0.3 plus a momentum penalty.
fn bench_loss(space: &SearchSpace, c: &Config) -> f64 {
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
    let mut loss = (float("learning_rate").log10() + 2.5).powi(2)
        + (int("depth") - 2.0).powi(2) * 0.3
        + (label("activation") != "tanh") as u8 as f64
        + (label("width") != "128") as u8 as f64 * 0.5
        + (float("dropout") - 0.2).powi(2) * 4.0
        + (float("weight_decay").log10() + 4.0).powi(2) * 0.1;
    if label("optimizer") == "sgd" {
        loss += 0.3 + (float("momentum") - 0.9).powi(2) * 20.0;
    }
    loss
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

/// Median over 10 seeds of the best loss found in 60 trials.
fn median_best(strategy: Strategy, space: &SearchSpace) -> f64 {
    let bests = (0..10)
        .map(|seed| {
            run(strategy, space, 1000 + seed, 60, |c| bench_loss(space, c))
                .iter()
                .map(|c| bench_loss(space, c))
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    median(bests)
}

#[test]
fn tpe_and_evolution_beat_random_search_on_a_cheap_objective_with_a_known_optimum() {
    let space = parse(BENCH_SPACE, "bench");
    let random = median_best(Strategy::Random, &space);
    let tpe = median_best(Strategy::Tpe, &space);
    let evolution = median_best(Strategy::Evolution, &space);
    eprintln!("median best loss after 60 trials over 10 seeds: random {random:.4}, tpe {tpe:.4}, evolution {evolution:.4}");
    assert!(tpe < random, "tpe {tpe} vs random {random}");
    assert!(
        evolution < random,
        "evolution {evolution} vs random {random}"
    );
}

// ---------------------------------------------------------------- grid

#[test]
fn grid_search_enumerates_every_point_of_a_small_space_exactly_once() {
    let space = parse(
        r#"(
            task: Classification,
            model: Mlp((depth: Range(1, 3), width: Fixed(64), activation: Choice([Relu, Tanh]), batch_norm: Choice([false, true]))),
            train: (optimizer: Choice([Adam, Sgd]), momentum: Choice([0.9, 0.95]), learning_rate: Range(0.01, 0.01)),
        )"#,
        "grid",
    );
    // depth x activation x batch norm x (Adam | Sgd x 2 momenta)
    let expected = 3 * 2 * 2 * (1 + 2);
    assert_eq!(GridSampler::new(&space).expect("discrete").len(), expected);
    let configs = run(Strategy::Grid, &space, 5, expected + 1, generic_loss);
    let first: Vec<&Config> = configs[..expected].iter().collect();
    for (i, c) in first.iter().enumerate() {
        space.validate_config(c).expect("grid point is valid");
        assert!(!first[..i].contains(c), "point {i} repeated");
    }
    // Exhausted: it starts over with a point already tried.
    assert!(first.contains(&&configs[expected]));
}

#[test]
fn grid_search_order_depends_on_the_seed() {
    let space = discrete_mlp_space();
    assert_ne!(
        run(Strategy::Grid, &space, 1, 10, generic_loss),
        run(Strategy::Grid, &space, 2, 10, generic_loss)
    );
}

#[test]
fn grid_search_refuses_a_continuous_range_and_names_it() {
    let err = Strategy::Grid
        .build(&mlp_space())
        .err()
        .expect("mlp.ron has continuous ranges");
    assert!(
        matches!(err, SearchError::ContinuousParameter { ref param, .. } if param == "dropout"),
        "{err}"
    );
    assert!(err.to_string().contains("`dropout`"));
}

#[test]
fn grid_search_refuses_more_than_a_million_points() {
    let space = parse(
        r#"(task: Classification, model: Mlp((depth: Range(1, 20), per_layer_width: Fixed(true), width: Choice([8, 16, 32, 64]))))"#,
        "huge",
    );
    let err = GridSampler::new(&space).expect_err("4^20 points");
    assert!(matches!(err, SearchError::GridTooLarge { .. }), "{err}");
}

// ---------------------------------------------------------------- names

#[test]
fn strategies_and_schedulers_parse_from_their_cli_names() {
    for s in Strategy::ALL {
        assert_eq!(s.label().parse::<Strategy>(), Ok(s));
    }
    for k in SchedulerKind::ALL {
        assert_eq!(k.label().parse::<SchedulerKind>(), Ok(k));
        assert_eq!(k.build(27).name(), k.label());
    }
    assert_eq!("TPE".parse::<Strategy>(), Ok(Strategy::Tpe));
    assert!(matches!(
        "bayes".parse::<Strategy>(),
        Err(SearchError::UnknownStrategy(_))
    ));
    assert!(matches!(
        "median".parse::<SchedulerKind>(),
        Err(SearchError::UnknownScheduler(_))
    ));
}

// ---------------------------------------------------------------- schedulers

/// Loss of a trial of quality `q` (lower is better) after `epoch` epochs: the ranking of
/// trials is the same at every epoch.
fn curve(q: f64, epoch: usize) -> f64 {
    q + 1.0 / epoch as f64
}

/// Feeds `qualities.len()` trials epoch by epoch in a shuffled, interleaved order (as parallel
/// workers would) and returns, per trial, the epoch at which it was pruned, if it was.
fn simulate(
    s: &mut dyn Scheduler,
    qualities: &[f64],
    max_epochs: usize,
    seed: u64,
) -> Vec<Option<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..qualities.len()).collect();
    order.shuffle(&mut rng);
    let mut pruned = vec![None; qualities.len()];
    let mut epoch = vec![0usize; qualities.len()];
    // Up to four trials run at once; each step advances one running trial by an epoch.
    let mut running: Vec<usize> = Vec::new();
    let mut queue = order.into_iter();
    loop {
        while running.len() < 4 {
            match queue.next() {
                Some(t) => running.push(t),
                None => break,
            }
        }
        if running.is_empty() {
            break;
        }
        let k = rand::Rng::gen_range(&mut rng, 0..running.len());
        let t = running[k];
        epoch[t] += 1;
        let decision = s.on_epoch(t, epoch[t], curve(qualities[t], epoch[t]));
        if decision == Decision::Prune {
            pruned[t] = Some(epoch[t]);
        }
        if decision == Decision::Prune || epoch[t] == max_epochs {
            s.on_trial_end(t);
            running.swap_remove(k);
        }
    }
    pruned
}

fn qualities(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut q: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
    q.shuffle(&mut rng);
    q
}

#[test]
fn asha_stops_about_the_worse_half_at_each_rung_and_never_the_best_trial() {
    for seed in 0..5 {
        let q = qualities(60, seed);
        let best = (0..q.len())
            .min_by(|&a, &b| q[a].total_cmp(&q[b]))
            .expect("trials");
        let mut asha = AshaScheduler::new(1, 3, 27);
        assert_eq!(asha.rungs(), [1, 3, 9]);
        let pruned = simulate(&mut asha, &q, 27, seed);
        assert_eq!(
            pruned[best], None,
            "seed {seed}: the best trial was stopped"
        );
        let mut reached = q.len();
        for rung in asha.rungs() {
            let stopped = pruned.iter().filter(|p| **p == Some(*rung)).count();
            // Early arrivals at a rung continue while they lead it, so "half" is only expected
            // where many trials arrive; the rung's leader always continues.
            assert!(
                (reached < 10 || stopped * 5 >= reached * 2) && stopped < reached,
                "seed {seed}: rung {rung} stopped {stopped} of {reached}"
            );
            reached -= stopped;
        }
        // Between rungs nothing is stopped.
        assert!(pruned.iter().flatten().all(|e| asha.rungs().contains(e)));
    }
}

#[test]
fn asha_stops_a_trial_that_is_worse_than_the_rest_of_its_rung() {
    let mut asha = AshaScheduler::new(1, 3, 9);
    for t in 0..9 {
        asha.on_epoch(t, 1, t as f64);
    }
    assert_eq!(asha.on_epoch(9, 1, 100.0), Decision::Prune);
    assert_eq!(asha.on_epoch(10, 1, -1.0), Decision::Continue);
}

#[test]
fn hyperband_assigns_brackets_from_the_trial_number_alone() {
    let a = HyperbandScheduler::with_max_epochs(27);
    let mut b = HyperbandScheduler::with_max_epochs(27);
    // Feeding b trials in some order does not change any assignment.
    simulate(&mut b, &qualities(40, 3), 27, 3);
    let brackets: Vec<usize> = (0..500).map(|t| a.bracket_of(t)).collect();
    assert_eq!(
        brackets,
        (0..500).map(|t| b.bracket_of(t)).collect::<Vec<_>>()
    );
    // Every bracket is used, in proportion to its budget over one cycle.
    let cycle: usize = a.budgets().iter().sum();
    for (s, budget) in a.budgets().iter().enumerate() {
        assert_eq!(
            brackets[..cycle].iter().filter(|&&x| x == s).count(),
            *budget
        );
    }
    let firsts: Vec<usize> = a.brackets().iter().map(|x| x.min_epochs()).collect();
    assert_eq!(firsts, [1, 3, 9, 27]);
}

#[test]
fn hyperband_never_stops_trials_in_its_most_patient_bracket() {
    let mut h = HyperbandScheduler::with_max_epochs(27);
    let q = qualities(120, 4);
    let pruned = simulate(&mut h, &q, 27, 4);
    let patient = h.brackets().len() - 1;
    for (t, p) in pruned.iter().enumerate() {
        let s = h.bracket_of(t);
        if s == patient {
            assert_eq!(*p, None);
        }
        if let Some(e) = p {
            assert!(
                h.brackets()[s].rungs().contains(e),
                "trial {t} stopped off-rung"
            );
        }
    }
    assert!(pruned.iter().any(Option::is_some));
}
