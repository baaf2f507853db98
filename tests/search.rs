//! Whole searches through the library: reproducibility, failing trials, early stopping, CLI.

use nas::controller::{Controller, PreparedData, SearchOptions};
use nas::data::{load, DataSource, LoadOptions};
use nas::leaderboard;
use nas::search::{FifoScheduler, Strategy, TrialState};
use nas::space::SearchSpace;
use nas::study::{JournalStorage, Metric, Storage, StudyMeta, TrialRecord};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const IRIS: &str = "(
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
        max_epochs: Fixed(30),
        patience: Fixed(3),
    ),
)";

fn run_study(text: &str, seed: u64, trials: usize, workers: usize) -> Vec<TrialRecord> {
    run_study_threads(text, seed, trials, workers, 1)
}

/// A search of `trials` trials on `workers` workers of `threads` threads each.
fn run_study_threads(
    text: &str,
    seed: u64,
    trials: usize,
    workers: usize,
    threads: usize,
) -> Vec<TrialRecord> {
    let space = SearchSpace::from_str_named(text, "t", "t.ron").unwrap();
    let data_name = space.data.clone().unwrap();
    let split = load(
        &DataSource::parse(&data_name).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let data = PreparedData::new(split, 3, seed).unwrap();
    let metric = Metric::for_task(space.task);
    let dir = tempfile::tempdir().unwrap();
    let meta = StudyMeta {
        name: "t".into(),
        space_file: "t.ron".into(),
        space_source: text.into(),
        data: data_name,
        task: space.task,
        metric,
        seed,
        folds: 3,
        strategy: "random".into(),
        scheduler: "fifo".into(),
        objectives: Vec::new(),
    };
    let mut storage = JournalStorage::open_or_create(dir.path(), meta).unwrap();
    let c = Controller {
        space: &space,
        data: &data,
        metric,
        opts: SearchOptions {
            trials: Some(trials),
            time_budget: None,
            seed,
            workers,
            threads_per_trial: threads,
            ..SearchOptions::default()
        },
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let sampler = Strategy::Random.build(&space).unwrap();
    c.run(&mut storage, sampler, Box::new(FifoScheduler), Vec::new())
        .unwrap();
    storage.trials().to_vec()
}

/// The leaderboard without its time column.
fn board(trials: &[TrialRecord], metric: Metric) -> Vec<String> {
    leaderboard::rows(trials, metric, None)
        .into_iter()
        .map(|r| {
            format!(
                "{:?} {} {} {} {:?} {:?} {}",
                r.rank, r.trial, r.state, r.architecture, r.cv_mean, r.cv_std, r.epochs
            )
        })
        .collect()
}

#[test]
fn same_seed_gives_the_same_leaderboard() {
    let a = run_study(IRIS, 5, 6, 1);
    let b = run_study(IRIS, 5, 6, 1);
    assert_eq!(board(&a, Metric::Accuracy), board(&b, Metric::Accuracy));
    let c = run_study(IRIS, 6, 6, 1);
    assert_ne!(board(&a, Metric::Accuracy), board(&c, Metric::Accuracy));
}

#[test]
fn random_search_leaderboard_does_not_depend_on_the_number_of_workers() {
    let one = run_study(IRIS, 11, 6, 1);
    let two = run_study(IRIS, 11, 6, 2);
    assert_eq!(board(&one, Metric::Accuracy), board(&two, Metric::Accuracy));
}

/// A digits CNN large enough that its ops split their work across a trial's threads (the
/// direct and the spectral convolutions, batch norm, the dense layer): 3 folds on 4 threads.
const DIGITS_CNN: &str = "(
    task: Classification,
    data: \"digits\",
    model: Cnn((
        stages: Fixed(2),
        blocks_per_stage: Fixed(1),
        block: Fixed(Residual),
        width: Fixed(32),
        kernel: Fixed(3),
        downsample: Fixed(MaxPool),
        activation: Fixed(Relu),
        dropout: Fixed(0.0),
        batch_norm: Fixed(true),
    )),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: Fixed(0.003),
        batch_size: Fixed(256),
        max_epochs: Fixed(2),
        patience: Fixed(5),
    ),
)";

/// Ops split their work across the threads a trial does not need for its folds, and every
/// value comes out as on one thread: the same validation losses, epoch by epoch and fold by
/// fold, on 1 and 4 threads.
#[test]
fn ops_split_across_threads_give_the_same_scores_as_on_one() {
    let one = run_study_threads(DIGITS_CNN, 3, 1, 1, 1);
    let four = run_study_threads(DIGITS_CNN, 3, 1, 1, 4);
    let losses = |t: &[TrialRecord]| -> Vec<Vec<u64>> {
        t[0].curves
            .iter()
            .map(|c| c.loss.iter().chain(&c.score).map(|v| v.to_bits()).collect())
            .collect()
    };
    assert_eq!(losses(&one), losses(&four));
    assert_eq!(losses(&one).concat().len(), 3 * 2 * 2);
    assert_eq!(one[0].fold_scores.len(), 3);
    assert!(
        one[0].fold_scores.iter().all(|&s| s > 0.2),
        "{:?}",
        one[0].fold_scores
    );
}

/// Folds train in parallel on a trial's threads, each as it would alone: the same scores,
/// fold by fold, with 1 and 3 threads.
#[test]
fn folds_on_several_threads_give_the_same_scores_as_on_one() {
    let one = run_study_threads(IRIS, 13, 4, 1, 1);
    let three = run_study_threads(IRIS, 13, 4, 1, 3);
    let folds = |t: &[TrialRecord]| -> Vec<(Vec<f64>, usize)> {
        t.iter()
            .map(|r| (r.fold_scores.clone(), r.epochs))
            .collect()
    };
    assert_eq!(folds(&one), folds(&three));
    assert!(one.iter().all(|r| r.fold_scores.len() == 3));
}

/// A pool lent by a worker without trials (nas::train::SparePools) trains the folds alongside
/// the trial's own thread: two threads take part, and every fold's curve keeps its bits. (The
/// digits CNN: its fold-epochs take long enough that the lent thread is sure to start in time.)
#[test]
fn folds_on_a_lent_pool_keep_their_scores() {
    use nas::search::{Decision, Sampler};
    use nas::train::{cross_validate, SparePools, Stop};
    use rand::SeedableRng;
    use std::collections::HashSet;
    use std::sync::Mutex;
    let space = SearchSpace::from_str_named(DIGITS_CNN, "t", "t.ron").unwrap();
    let split = load(
        &DataSource::parse("digits").unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let data = PreparedData::new(split, 3, 2).unwrap();
    let config = nas::search::RandomSampler.suggest(
        &space,
        &[],
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(4),
    );
    let cand = space.decode(&config);
    let one_thread = || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
    };
    let cancel = AtomicBool::new(false);
    // Cross-validation on a one-thread pool, with `spare` to borrow from; the curves' bits and
    // the threads that trained.
    let run = |spare: &SparePools| {
        let threads = Mutex::new(HashSet::new());
        let on_fold = |_: nas::progress::FoldEpoch| {
            threads.lock().unwrap().insert(std::thread::current().id());
        };
        let cv = one_thread().install(|| {
            cross_validate(
                &cand,
                &data.train,
                &data.folds,
                9,
                &mut |_, _| Decision::Continue,
                &on_fold,
                Stop::on(&cancel),
                spare,
            )
            .unwrap()
        });
        let bits: Vec<Vec<u64>> = cv
            .curves
            .iter()
            .map(|c| c.loss.iter().chain(&c.score).map(|v| v.to_bits()).collect())
            .collect();
        (bits, threads.into_inner().unwrap().len())
    };
    let (alone, threads_alone) = run(&SparePools::new());
    let spare = SparePools::new();
    spare.give(Arc::new(one_thread()));
    let (lent, threads_lent) = run(&spare);
    assert_eq!(threads_alone, 1);
    assert_eq!(threads_lent, 2, "the lent pool's thread trained folds too");
    assert_eq!(alone, lent);
    assert_eq!(alone.len(), 3);
}

#[test]
fn a_diverging_trial_is_recorded_as_failed_and_the_search_completes() {
    // SGD with a learning rate of 10 on unscaled-looking regression diverges within an epoch.
    let text = "(
        task: Regression,
        data: \"diabetes\",
        model: Mlp((depth: Fixed(2), width: Fixed(64))),
        train: (
            optimizer: Fixed(Sgd),
            learning_rate: Choice([0.001, 10.0]),
            momentum: Fixed(0.9),
            max_epochs: Fixed(5),
        ),
    )";
    let trials = run_study(text, 1, 8, 2);
    assert_eq!(trials.len(), 8);
    let failed: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .collect();
    let complete = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .count();
    assert!(!failed.is_empty() && complete > 0, "{trials:#?}");
    for t in failed {
        let e = t.error.as_deref().unwrap_or("");
        assert!(e.contains("diverged") && e.contains("epoch"), "{e}");
        assert!(t.cv_mean.is_none());
    }
}

#[test]
fn early_stopping_ends_training_before_the_epoch_limit() {
    let text = IRIS
        .replace("max_epochs: Fixed(30)", "max_epochs: Fixed(400)")
        .replace("patience: Fixed(3)", "patience: Fixed(2)");
    let trials = run_study(&text, 2, 3, 2);
    for t in &trials {
        assert_eq!(t.state, TrialState::Complete);
        // Each fold stops `patience` epochs after its best; none reaches 400.
        assert!(
            t.budget < 3 * 400,
            "trial {} trained {} epochs",
            t.number,
            t.budget
        );
        assert!(t.epochs >= 1 && t.epochs < 400);
    }
}

#[test]
fn nas_search_and_nas_leaderboard_print_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("iris.ron");
    std::fs::write(&space, IRIS).unwrap();
    let nas = env!("CARGO_BIN_EXE_nas");
    let out = nas_search(
        &space,
        dir.path(),
        &["--trials", "3", "--seed", "4", "--quiet"],
    );
    let search_out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(search_out.contains("TEST SET"), "{search_out}");
    let study = dir.path().join("iris");
    for f in [
        "journal.log",
        "leaderboard.txt",
        "leaderboard.json",
        "leaderboard.csv",
        "test.json",
    ] {
        assert!(study.join(f).exists(), "{f} missing");
    }
    let out = std::process::Command::new(nas)
        .args(["leaderboard", "--study", "iris", "--results"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let board = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(board.trim(), search_out.trim());

    let out = std::process::Command::new(nas)
        .args([
            "leaderboard",
            "--format",
            "json",
            "--study",
            "iris",
            "--results",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for key in [
        "rank",
        "trial",
        "state",
        "params",
        "cv_mean",
        "cv_std",
        "epochs",
        "architecture",
        "config",
    ] {
        assert!(rows[0].get(key).is_some(), "json row lacks {key}");
    }
    assert!(rows[0]["config"].get("learning_rate").is_some());
}

/// A CSV of 1-D signals (40 values per row) searched with the CNN family via `--shape 1x40`.
#[test]
fn a_csv_of_40_features_declared_1x40_trains_the_cnn_family() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("label");
    for i in 0..40 {
        csv.push_str(&format!(",x{i}"));
    }
    csv.push('\n');
    // Class 0: a slow sine; class 1: a fast one; both with a random phase.
    let mut state = 12345u64;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for row in 0..120 {
        let label = row % 2;
        let freq = if label == 0 { 0.15 } else { 0.6 };
        let phase = uniform() * std::f64::consts::TAU;
        csv.push_str(&label.to_string());
        for i in 0..40 {
            let v = (freq * i as f64 + phase).sin() + 0.1 * (uniform() - 0.5);
            csv.push_str(&format!(",{v:.4}"));
        }
        csv.push('\n');
    }
    let data = dir.path().join("signals.csv");
    std::fs::write(&data, csv).unwrap();
    let space = dir.path().join("signals.ron");
    std::fs::write(
        &space,
        "(
            task: Classification,
            model: Cnn((
                stages: Fixed(2),
                blocks_per_stage: Fixed(1),
                block: Choice([Plain, Residual, Dense, Separable]),
                width: Fixed(4),
                growth_rate: Fixed(4),
                kernel: Fixed(3),
                downsample: Choice([MaxPool, Stride]),
            )),
            train: (optimizer: Fixed(Adam), learning_rate: Fixed(0.01), batch_size: Fixed(16),
                    max_epochs: Fixed(4), patience: Fixed(4)),
        )",
    )
    .unwrap();
    let data = data.display().to_string();
    let out = nas_search(
        &space,
        dir.path(),
        &[
            "--trials", "4", "--folds", "2", "--quiet", "--shape", "1x40", "--data", &data,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("input 1x1x40"), "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("signals/leaderboard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["state"], "complete", "{r}");
        assert!(r["params"].as_u64().unwrap() > 0);
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("TEST SET"));
}

#[test]
fn grid_search_with_two_workers_never_runs_a_point_twice() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("grid.ron");
    std::fs::write(
        &space,
        "(
            task: Classification,
            data: \"iris\",
            model: Mlp((depth: Fixed(1), width: Choice([4, 8, 16]), activation: Choice([Relu, Tanh]))),
            train: (learning_rate: Fixed(0.01), max_epochs: Fixed(20), patience: Fixed(20)),
        )",
    )
    .unwrap();
    let args = [
        "--strategy",
        "grid",
        "--trials",
        "6",
        "--workers",
        "2",
        "--no-final",
        "--quiet",
    ];
    nas_search(&space, dir.path(), &args);
    let storage = JournalStorage::open(&dir.path().join("grid")).unwrap();
    let configs: std::collections::BTreeSet<String> = storage
        .trials()
        .iter()
        .map(|t| format!("{:?}", t.config))
        .collect();
    assert_eq!(storage.trials().len(), 6);
    assert_eq!(configs.len(), 6, "a grid point ran twice");
}

/// Runs `nas search --space SPACE --results RESULTS ARGS..`, asserting that it succeeds.
fn nas_search(
    space: &std::path::Path,
    results: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nas"))
        .arg("search")
        .arg("--space")
        .arg(space)
        .arg("--results")
        .arg(results)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `nas search` on the iris space in a fresh temporary directory; stderr is a pipe.
fn iris_search(args: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("iris.ron");
    std::fs::write(&space, IRIS).unwrap();
    let out = nas_search(&space, dir.path(), args);
    (dir, out)
}

/// What `nas leaderboard` prints for the study `iris` under `dir`.
fn leaderboard_of(dir: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(["leaderboard", "--study", "iris", "--results"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn piped_stderr_gets_one_plain_line_per_finished_trial_as_before() {
    let (dir, out) = iris_search(&["--trials", "3", "--workers", "2", "--no-final"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "terminal codes in a pipe: {stderr:?}"
    );
    let storage = JournalStorage::open(&dir.path().join("iris")).unwrap();
    let mut lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("trial ")).collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{stderr}");
    for (line, t) in lines.iter().zip(storage.trials()) {
        // The line `nas search` has always printed, written out here rather than taken from the
        // code that prints it, so that a change to it fails.
        let head = format!(
            "trial {}/3  complete   cv accuracy {:.4} ± {:.4}  [{}; {} params]  ",
            t.number,
            t.cv_mean.unwrap(),
            t.cv_std.unwrap(),
            t.architecture,
            t.params
        );
        let secs = line
            .strip_prefix(&head)
            .unwrap_or_else(|| panic!("{line:?}\n{head:?}"));
        let secs = secs.strip_suffix('s').unwrap();
        assert!(secs.parse::<f64>().is_ok() && secs.contains('.'), "{line}");
    }
    // Besides the trial lines: only the study's one-line messages.
    for l in stderr.lines().filter(|l| !l.starts_with("trial ")) {
        assert!(l.starts_with("nas: "), "{l:?} in\n{stderr}");
    }
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        leaderboard_of(dir.path())
    );
}

#[test]
fn quiet_prints_the_result_and_no_progress() {
    let (dir, out) = iris_search(&["--trials", "3", "--workers", "2", "--quiet"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    for l in stderr.lines() {
        assert!(
            l.starts_with("nas: ") && !l.contains("trial 0/"),
            "{l:?} in\n{stderr}"
        );
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let board = leaderboard_of(dir.path());
    // The leaderboard, then the test-set line (which `nas leaderboard` shows too).
    assert_eq!(stdout.trim_end(), board.trim_end(), "{stdout}");
    assert!(stdout.contains("TEST SET"), "{stdout}");
}

/// On a terminal (a pseudo-terminal made by `script`, of util-linux) the live display shows a
/// bar with the trials done and one line per worker, and finished trials stay printed above it.
#[test]
fn on_a_terminal_the_live_display_shows_the_bar_and_each_workers_trial_fold_and_epoch() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("`script` (util-linux / bsdutils) is needed to run nas on a pseudo-terminal");
    }
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("digits.ron");
    // Slow enough (digits, 30 epochs without early stopping) for a few frames of 250 ms.
    std::fs::write(
        &space,
        "(
            task: Classification,
            data: \"digits\",
            model: Mlp((depth: Fixed(2), width: Fixed(256))),
            train: (learning_rate: Fixed(0.01), max_epochs: Fixed(30), patience: Fixed(30)),
        )",
    )
    .unwrap();
    let on_terminal = |term: &str, study: &str| {
        let cmd = format!(
            "stty cols 150 rows 30; exec '{}' search --space '{}' --results '{}' --study {study} --trials 2 --workers 2 --folds 2 --no-final",
            env!("CARGO_BIN_EXE_nas"),
            space.display(),
            dir.path().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("TERM", term)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{screen}");
        screen
    };
    // A dumb terminal cannot be redrawn: it gets the plain lines.
    let dumb = on_terminal("dumb", "dumb");
    assert!(dumb.contains("trial 1/2  complete"), "{dumb}");
    assert!(
        !dumb.contains("worker  1") && !dumb.contains('\x1b'),
        "{dumb}"
    );
    let screen = on_terminal("xterm", "live");
    for want in [
        "0/2 trials · ETA -- · no complete trial yet",
        "worker  1  trial ",
        "worker  2  trial ",
        // Which fold a redraw catches depends on the machine's speed: a trial of this MLP
        // takes 0.4 s, and redraws may see only its second fold.
        "/2  epoch ",
        "/30  val loss ",
        "trial 0/2  complete   cv accuracy ",
        "trial 1/2  complete   cv accuracy ",
    ] {
        assert!(
            screen.contains(want),
            "no {want:?} on the screen:\n{screen}"
        );
    }
}
