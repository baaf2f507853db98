//! Ask-and-tell studies: reproducible suggestions, states the journal and the leaderboard read,
//! pruning through the scheduler, TPE against random on a toy function, and resumption.

use nas::leaderboard::{self, Format};
use nas::search::{Decision, SchedulerKind, Strategy, TrialState};
use nas::space::{Choice, Config, SearchSpace};
use nas::study::{
    Direction, JournalStorage, Metric, Outcome, Storage, Study, StudyError, StudyOptions, TuneError,
};
use std::path::Path;

/// Two continuous inputs (the space format names its parameters, so the training settings
/// stand in for `x` and `y`); nine steps, so ASHA judges at steps 1 and 3.
const QUADRATIC: &str = "(
    task: Regression,
    model: Mlp((depth: Fixed(1), width: Fixed(8))),
    train: (
        learning_rate: LogRange(1e-4, 1.0),
        weight_decay: Range(0.0, 1.0),
        max_epochs: Fixed(9),
    ),
)";

fn space(text: &str) -> SearchSpace {
    SearchSpace::from_str_named(text, "quadratic", "inline").expect("the space is valid")
}

fn options(strategy: Strategy, seed: u64) -> StudyOptions {
    StudyOptions {
        strategy,
        scheduler: SchedulerKind::Fifo,
        seed,
        metric: Metric::Value(Direction::Minimize),
    }
}

fn study(results: &Path, name: &str, opts: StudyOptions) -> Study {
    Study::create(results, name, space(QUADRATIC), opts).expect("the study opens")
}

/// Smallest (0) at learning_rate 1e-2, weight_decay 0.3.
fn quadratic(p: &nas::study::Params) -> f64 {
    let x = p.float("learning_rate").expect("a float").log10() + 2.0;
    let y = p.float("weight_decay").expect("a float") - 0.3;
    x * x + 4.0 * y * y
}

/// Runs `n` trials of the quadratic to completion; returns their configurations.
fn run(study: &Study, n: usize) -> Vec<Config> {
    (0..n)
        .map(|_| {
            let trial = study.ask().expect("ask");
            let (value, config) = (quadratic(trial.params()), trial.params().config().clone());
            study.tell(trial, Outcome::Complete(value)).expect("tell");
            config
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_suggestions_and_another_seed_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = run(&study(dir.path(), "a", options(Strategy::Tpe, 3)), 14);
    let b = run(&study(dir.path(), "b", options(Strategy::Tpe, 3)), 14);
    let c = run(&study(dir.path(), "c", options(Strategy::Tpe, 4)), 14);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn tell_records_complete_pruned_and_failed_trials_for_the_journal_and_the_leaderboard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = options(Strategy::Random, 1);
    opts.metric = Metric::Value(Direction::Maximize);
    let s = study(dir.path(), "states", opts);
    let done = s.ask().expect("ask");
    s.tell(done, Outcome::Complete(0.75)).expect("tell");
    let mut pruned = s.ask().expect("ask");
    pruned.report(1, 0.5).expect("report");
    pruned.report(2, 0.25).expect("report");
    s.tell(pruned, Outcome::Pruned).expect("tell");
    let failed = s.ask().expect("ask");
    s.tell(failed, Outcome::Failed("diverged".into()))
        .expect("tell");
    let better = s.ask().expect("ask");
    s.tell(better, Outcome::Complete(0.9)).expect("tell");

    let storage = JournalStorage::open(s.dir()).expect("the journal opens");
    assert_eq!(storage.meta().metric, Metric::Value(Direction::Maximize));
    let t = storage.trials();
    let states: Vec<TrialState> = t.iter().map(|r| r.state).collect();
    use TrialState::*;
    assert_eq!(states, [Complete, Pruned, Failed, Complete]);
    assert_eq!(t[0].cv_mean, Some(0.75));
    // Stored lower-is-better for samplers, as a search stores minus accuracy.
    assert_eq!(t[1].intermediate, [-0.5, -0.25]);
    assert_eq!(t[2].error.as_deref(), Some("diverged"));

    // Optuna sees a MAXIMIZE study whose values are the ones told and reported.
    let journal = std::fs::read_to_string(s.dir().join(JournalStorage::FILE)).expect("journal");
    assert!(journal.contains(r#""directions":[2]"#), "{journal}");
    assert!(
        journal.contains(r#""intermediate_value":0.25"#),
        "{journal}"
    );
    assert!(journal.contains(r#""values":[0.9]"#), "{journal}");

    let rows = leaderboard::rows(t, storage.meta().metric, Some(s.space()));
    let order: Vec<(Option<usize>, usize)> = rows.iter().map(|r| (r.rank, r.trial)).collect();
    assert_eq!(order, [(Some(1), 3), (Some(2), 0), (None, 1), (None, 2)]);
    assert!(rows[0].config.contains_key("learning_rate"));
    let table = s.leaderboard(Format::Table, None).expect("leaderboard");
    assert!(table.contains("cv value"), "{table}");

    let best = s.best().expect("best").expect("a complete trial");
    assert_eq!((best.number, best.value), (3, 0.9));
}

#[test]
fn report_with_asha_prunes_a_clearly_bad_trial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = options(Strategy::Random, 2);
    opts.scheduler = SchedulerKind::Asha;
    let s = study(dir.path(), "asha", opts);
    let mut good = s.ask().expect("ask");
    for step in 1..=9 {
        assert_eq!(good.report(step, 0.1).expect("report"), Decision::Continue);
    }
    s.tell(good, Outcome::Complete(0.1)).expect("tell");
    let mut bad = s.ask().expect("ask");
    assert_eq!(bad.report(1, 50.0).expect("report"), Decision::Prune);
    s.tell(bad, Outcome::Pruned).expect("tell");

    let t = s.trials().expect("trials");
    assert_eq!(t[1].state, TrialState::Pruned);
    assert_eq!(t[1].intermediate, [50.0]);

    // A second handle's scheduler starts from the recorded values: it prunes the same way.
    let again = study(dir.path(), "asha", opts);
    let mut bad = again.ask().expect("ask");
    assert_eq!(bad.report(1, 50.0).expect("report"), Decision::Prune);
}

#[test]
fn tpe_beats_random_on_a_quadratic_at_a_fixed_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let best = |strategy: Strategy, seed: u64| {
        let s = study(
            dir.path(),
            &format!("{strategy:?}-{seed}"),
            options(strategy, seed),
        );
        run(&s, 30);
        s.best().expect("best").expect("complete trials").value
    };
    let seeds = 0..5u64;
    let tpe: Vec<f64> = seeds.clone().map(|s| best(Strategy::Tpe, s)).collect();
    let random: Vec<f64> = seeds.map(|s| best(Strategy::Random, s)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&tpe) < mean(&random),
        "tpe {tpe:?} vs random {random:?}"
    );
    let wins = tpe.iter().zip(&random).filter(|(t, r)| t < r).count();
    assert!(wins >= 3, "tpe {tpe:?} vs random {random:?}");
}

#[test]
fn asking_after_tell_continues_the_numbering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = study(dir.path(), "numbers", options(Strategy::Random, 0));
    let first = s.ask().expect("ask");
    let second = s.ask().expect("ask");
    assert_eq!((first.number(), second.number()), (0, 1));
    s.tell(second, Outcome::Complete(1.0)).expect("tell");
    s.tell(first, Outcome::Complete(2.0)).expect("tell");
    assert_eq!(s.ask().expect("ask").number(), 2);
}

#[test]
fn a_second_handle_on_the_directory_continues_the_same_study() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = options(Strategy::Tpe, 5);
    let one = study(dir.path(), "shared", opts);
    run(&one, 3);
    let two = study(dir.path(), "shared", opts);
    // Both handles ask from one sequence of numbers, and each sees the other's trials.
    let a = two.ask().expect("ask");
    let b = one.ask().expect("ask");
    assert_eq!((a.number(), b.number()), (3, 4));
    two.tell(a, Outcome::Complete(-1.0)).expect("tell");
    assert_eq!(one.best().expect("best").expect("best").number, 3);
    one.tell(b, Outcome::Complete(5.0)).expect("tell");
    drop((one, two));

    // A resumed study suggests what the uninterrupted one would have.
    let straight = study(dir.path(), "straight", opts);
    let whole = run(&straight, 6);
    let resumed = study(dir.path(), "resumed", opts);
    let mut parts = run(&resumed, 2);
    drop(resumed);
    parts.extend(run(&study(dir.path(), "resumed", opts), 4));
    assert_eq!(whole, parts);
}

#[test]
fn a_study_refuses_another_space_or_direction_under_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = options(Strategy::Random, 0);
    run(&study(dir.path(), "fixed", opts), 1);
    let other = QUADRATIC.replace("Range(0.0, 1.0)", "Range(0.0, 0.5)");
    let err = Study::create(dir.path(), "fixed", space(&other), opts).err();
    assert!(
        matches!(
            err,
            Some(TuneError::Changed {
                what: "search space",
                ..
            })
        ),
        "{err:?}"
    );
    let mut max = opts;
    max.metric = Metric::Value(Direction::Maximize);
    let err = Study::create(dir.path(), "fixed", space(QUADRATIC), max).err();
    assert!(
        matches!(err, Some(TuneError::Changed { what: "metric", .. })),
        "{err:?}"
    );
}

#[test]
fn parameters_are_read_by_type_and_misuse_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = study(dir.path(), "typed", options(Strategy::Random, 0));
    let mut t = s.ask().expect("ask");
    assert_eq!(t.int("batch_size").expect("fixed int"), 64);
    assert_eq!(t.int("depth").expect("fixed int"), 1);
    assert_eq!(
        t.choice("activation").expect("fixed choice"),
        Choice::Str("relu".into())
    );
    assert!(matches!(
        t.float("depth"),
        Err(TuneError::WrongType {
            wanted: "a float",
            ..
        })
    ));
    assert!(matches!(t.int("speed"), Err(TuneError::NoParam(_))));
    // Momentum only exists with SGD; this space fixes Adam.
    assert!(matches!(t.float("momentum"), Err(TuneError::Inactive(_))));
    assert!(matches!(
        t.report(2, 1.0),
        Err(TuneError::Step {
            expected: 1,
            got: 2,
            ..
        })
    ));
    let elsewhere = study(dir.path(), "elsewhere", options(Strategy::Random, 0));
    assert!(matches!(
        elsewhere.tell(t, Outcome::Pruned),
        Err(TuneError::OtherStudy(0))
    ));
    // The journal refuses to finish a trial twice, whatever handle asks.
    let t = s.ask().expect("ask");
    let n = t.number();
    s.tell(t, Outcome::Complete(1.0)).expect("tell");
    let mut storage = JournalStorage::open(s.dir()).expect("open");
    let rec = storage.trials()[n].clone();
    assert!(matches!(
        storage.finish_trial(rec),
        Err(StudyError::Conflict(_))
    ));
}

#[test]
fn optuna_loads_an_ask_and_tell_study_with_its_values_and_direction() {
    let has_optuna = std::process::Command::new("python3")
        .args(["-c", "import optuna"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_optuna {
        let required = ["NAS_REQUIRE_OPTUNA", "CI"]
            .into_iter()
            .find(|v| std::env::var(v).is_ok_and(|x| !matches!(x.as_str(), "" | "0" | "false")));
        if let Some(var) = required {
            panic!("{var} is set, and python3 cannot import optuna (pip install optuna)");
        }
        use std::io::Write;
        let _ = std::io::stderr().write_all(
            b"SKIPPED optuna_loads_an_ask_and_tell_study: python3 cannot import optuna\n",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let s = study(dir.path(), "toy", options(Strategy::Random, 9));
    let mut pruned = s.ask().expect("ask");
    pruned.report(1, 3.5).expect("report");
    s.tell(pruned, Outcome::Pruned).expect("tell");
    let done = s.ask().expect("ask");
    let lr = done.float("learning_rate").expect("float");
    s.tell(done, Outcome::Complete(1.25)).expect("tell");
    let failed = s.ask().expect("ask");
    s.tell(failed, Outcome::Failed("no".into())).expect("tell");
    let script = r#"
import sys, optuna
from optuna.storages import JournalStorage
try:
    from optuna.storages.journal import JournalFileBackend as Backend
except ImportError:
    from optuna.storages import JournalFileStorage as Backend
optuna.logging.set_verbosity(optuna.logging.WARNING)
s = optuna.load_study(study_name="toy", storage=JournalStorage(Backend(sys.argv[1])))
t = s.trials
print(s.direction.name, [x.state.name for x in t], t[0].value, t[0].intermediate_values,
      s.best_trial.number, s.best_value, repr(s.best_params["learning_rate"]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(s.dir().join(JournalStorage::FILE))
        .output()
        .expect("runs python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("MINIMIZE ['PRUNED', 'COMPLETE', 'FAIL'] 3.5 {{1: 3.5}} 1 1.25 {lr:?}")
    );
}

#[test]
fn studies_and_trials_can_be_shared_with_worker_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Study>();
    send_sync::<nas::study::Trial>();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = study(dir.path(), "threads", options(Strategy::Random, 0));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| run(&s, 3));
        }
    });
    let mut numbers: Vec<usize> = s
        .trials()
        .expect("trials")
        .iter()
        .map(|t| t.number)
        .collect();
    numbers.sort();
    assert_eq!(numbers, [0, 1, 2, 3, 4, 5]);
}

/// A file with `params` and no `model` declares free parameters, typed by their values; a study
/// samples them (and only them), within their domains.
#[test]
fn a_space_of_free_parameters_has_exactly_those_parameters_typed_by_their_values() {
    let text = "(
        task: Regression,
        params: {
            \"x\": Range(-2.0, 2.0),
            \"layers\": Range(1, 4),
            \"rate\": LogRange(1e-4, 1e-1),
            \"solver\": Choice([adam, lbfgs]),
            \"warm\": Choice([true, false]),
        },
    )";
    let space = space(text);
    let names: Vec<&str> = space.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["x", "layers", "rate", "solver", "warm"]);
    let dir = tempfile::tempdir().unwrap();
    let study = Study::create(dir.path(), "free", space, options(Strategy::Tpe, 3)).unwrap();
    for _ in 0..15 {
        let trial = study.ask().unwrap();
        let x = trial.float("x").unwrap();
        let layers = trial.int("layers").unwrap();
        let rate = trial.float("rate").unwrap();
        assert!((-2.0..=2.0).contains(&x), "{x}");
        assert!((1..=4).contains(&layers), "{layers}");
        assert!((1e-4..=1e-1).contains(&rate), "{rate}");
        let solver = trial.choice("solver").unwrap();
        assert!(
            [Choice::Str("adam".into()), Choice::Str("lbfgs".into())].contains(&solver),
            "{solver:?}"
        );
        assert!(matches!(trial.choice("warm").unwrap(), Choice::Bool(_)));
        assert!(trial.float("layers").is_err(), "an integer is not a float");
        let value = (x - 1.0).powi(2) + layers as f64;
        study.tell(trial, Outcome::Complete(value)).unwrap();
    }
    let best = study.best().unwrap().unwrap();
    assert!(best.params.float("x").is_ok() && best.params.int("layers").is_ok());
}

#[test]
fn a_free_parameter_that_is_a_part_or_of_mixed_types_is_an_error_at_its_value() {
    let cases = [
        (
            "(task: Regression, params: {\"x\": Conv(3)})",
            (1, 34),
            "is a part, but the file has no `model`",
        ),
        (
            "(task: Regression, params: {\"x\": Choice([1, adam])})",
            (1, 45),
            "`x`: expected an integer, found `adam`",
        ),
    ];
    for (text, (line, col), needle) in cases {
        match SearchSpace::from_str_named(text, "free", "free.ron") {
            Err(nas::space::SpaceError::Invalid {
                line: l,
                col: c,
                message,
                ..
            }) => {
                assert_eq!((l, c), (line, col), "{text}: {message}");
                assert!(message.contains(needle), "{text}: {message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}
