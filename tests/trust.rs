//! Studies a user can trust: no mixed data, no crash on a huge candidate, flags checked first,
//! errors that end the search instead of vanishing, and faults during a search handled.

use nas::controller::{Controller, PreparedData, SearchError, SearchOptions};
use nas::data::{load, DataSource, LoadOptions};
use nas::search::{FifoScheduler, Observation, RandomSampler, Sampler, Strategy, TrialState};
use nas::space::{Config, SearchSpace};
use nas::study::{JournalStorage, Metric, Storage, StudyError, TrialRecord};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{study_meta, Hooked};

/// A few small MLPs that train quickly on any data set.
const MLP: &str = "(
    task: Classification,
    model: Mlp((
        depth: Fixed(1),
        width: Choice([8, 16]),
        activation: Fixed(Relu),
    )),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: Fixed(0.01),
        batch_size: Fixed(16),
        max_epochs: Fixed(3),
        patience: Fixed(3),
    ),
)";

fn nas(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn trials(study: &Path) -> Vec<TrialRecord> {
    JournalStorage::open(study).unwrap().trials().to_vec()
}

/// A CSV of 60 rows, 4 features, 3 classes.
fn write_csv(path: &Path) {
    let mut text = String::from("a,b,c,d,label\n");
    for i in 0..60 {
        let c = i % 3;
        let x = i as f32 / 60.0;
        text.push_str(&format!(
            "{},{},{},{},{c}\n",
            c as f32 + x,
            x,
            2.0 * c as f32 - x,
            (i % 7) as f32
        ));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_study_continued_without_data_trains_on_its_own_data_not_the_space_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The space file names digits; the study is created on a CSV.
    let space = MLP.replacen(
        "task: Classification,",
        "task: Classification, data: \"digits\",",
        1,
    );
    std::fs::write(dir.join("s.ron"), space).unwrap();
    write_csv(&dir.join("my.csv"));
    let first = nas(
        &[
            "search", "--space", "s.ron", "--data", "my.csv", "--trials", "2", "-q",
        ],
        dir,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let again = nas(&["search", "--space", "s.ron", "--trials", "4", "-q"], dir);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("(my.csv)"), "{}", stderr(&again));
    let study = dir.join("results/s");
    let storage = JournalStorage::open(&study).unwrap();
    assert_eq!(storage.meta().data, "my.csv");
    assert_eq!(storage.trials().len(), 4);
    // The final model was retrained on the CSV's 48 search rows, not on digits' 1,437.
    let test = storage.test_result().expect("a test result");
    assert_eq!(test.train_samples, 48);
    // Naming another data set for the study is refused, and nothing is added.
    let clash = nas(
        &[
            "search", "--space", "s.ron", "--data", "digits", "--trials", "6",
        ],
        dir,
    );
    assert_eq!(clash.status.code(), Some(2));
    assert!(stderr(&clash).contains("created with data `my.csv`"));
    assert_eq!(trials(&study).len(), 4);
}

#[test]
fn a_candidate_too_large_for_this_machine_fails_with_that_reason_and_the_search_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let space = MLP
        .replace("Choice([8, 16])", "Choice([2000000, 8])")
        .replace("depth: Fixed(1)", "depth: Fixed(2)");
    std::fs::write(dir.join("big.ron"), space).unwrap();
    write_csv(&dir.join("my.csv"));
    let out = nas(
        &[
            "search",
            "--space",
            "big.ron",
            "--data",
            "my.csv",
            "--trials",
            "6",
            "--seed",
            "3",
            "--no-final",
            "-q",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let t = trials(&dir.join("results/big"));
    assert_eq!(t.len(), 6);
    let big: Vec<_> = t.iter().filter(|t| t.params > 1_000_000_000).collect();
    assert!(!big.is_empty(), "the seed should sample the huge width");
    for r in &big {
        assert_eq!(r.state, TrialState::Failed);
        let e = r.error.as_deref().unwrap_or_default();
        assert!(e.contains("too large for this machine"), "{e}");
        // Counted from the architecture: 4 + 2e6 + 4e12 + ... weights, none allocated.
        assert!(r.params > 4_000_000_000_000, "{}", r.params);
    }
    assert!(t.iter().any(|t| t.state == TrialState::Complete));
}

#[test]
fn zero_workers_folds_or_trials_are_refused_before_any_data_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("s.ron"), MLP).unwrap();
    for flag in ["--workers", "--folds", "--trials"] {
        let out = nas(
            &[
                "search",
                "--space",
                "s.ron",
                "--data",
                "missing.csv",
                flag,
                "0",
            ],
            dir,
        );
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains(&format!("{flag} must be at least 1")), "{e}");
        assert!(!e.contains("missing.csv"), "the data was read first: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(!dir.join("results").exists(), "{flag} 0 created a study");
    }
}

/// Small MLPs on digits that train for a long while (1,000 epochs, no early stop).
const SLOW: &str = "(
    task: Classification,
    data: \"digits\",
    model: Mlp((
        depth: Fixed(1),
        width: Choice([32, 48]),
        activation: Fixed(Relu),
    )),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: Fixed(0.001),
        batch_size: Fixed(16),
        max_epochs: Fixed(1000),
        patience: Fixed(1000),
    ),
)";

/// Waits until the study's journal shows a trial that has reported an epoch.
fn wait_mid_training(study: &Path, child: &mut std::process::Child) {
    let start = Instant::now();
    loop {
        if study.join(JournalStorage::FILE).exists() {
            if let Ok(s) = JournalStorage::open(study) {
                if s.trials()
                    .iter()
                    .any(|t| t.state == TrialState::Running && !t.intermediate.is_empty())
                {
                    return;
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nas search exited ({status}) before training started");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no trial started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_ends_the_search_like_ctrl_c_with_the_trial_in_flight_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("slow.ron"), SLOW).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args([
            "search",
            "--space",
            "slow.ron",
            "--trials",
            "20",
            "--workers",
            "1",
        ])
        .args(["--no-final", "-q"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let study = dir.join("results/slow");
    wait_mid_training(&study, &mut child);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}: {}", out.status, stderr(&out));
    let t = trials(&study);
    assert!(t.iter().all(|t| t.state != TrialState::Running), "{t:?}");
    assert!(t.iter().any(|t| t.state == TrialState::Interrupted));
    assert!(t.len() < 20);
    assert!(dir.join("results/slow/leaderboard.txt").exists());
}

#[test]
fn a_trial_over_its_timeout_fails_with_that_reason_and_its_worker_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("slow.ron"), SLOW).unwrap();
    let out = nas(
        &[
            "search",
            "--space",
            "slow.ron",
            "--trials",
            "2",
            "--workers",
            "1",
            "--trial-timeout",
            "1s",
            "--no-final",
            "-q",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let t = trials(&dir.join("results/slow"));
    assert_eq!(t.len(), 2, "the worker went on to the second trial");
    for r in &t {
        assert_eq!(r.state, TrialState::Failed);
        assert_eq!(
            r.error.as_deref(),
            Some("timed out after 1s (--trial-timeout)")
        );
        assert!(r.seconds < 10.0, "{}", r.seconds);
    }
}

#[test]
fn a_space_that_cannot_train_stops_after_max_consecutive_failures_with_the_trials_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Five stages halve an 8x8 digit down to nothing: every candidate is impossible.
    let space = "(
        task: Classification,
        data: \"digits\",
        model: Cnn((stages: Fixed(5), width: Choice([4, 8]), kernel: Fixed(3))),
        train: (max_epochs: Fixed(1)),
    )";
    std::fs::write(dir.join("bad.ron"), space).unwrap();
    let out = nas(
        &[
            "search",
            "--space",
            "bad.ron",
            "--trials",
            "50",
            "--workers",
            "1",
            "--max-consecutive-failures",
            "3",
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    let last = e.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("nas: error: 3 trials in a row failed (--max-consecutive-failures 3)"),
        "{e}"
    );
    assert!(last.contains("impossible architecture"), "{last}");
    let t = trials(&dir.join("results/bad"));
    assert_eq!(t.len(), 3);
    assert!(t.iter().all(|t| t.state == TrialState::Failed));
    assert!(dir.join("results/bad/leaderboard.txt").exists());
}

#[test]
fn a_journal_write_that_fails_while_reporting_epochs_ends_the_search_with_its_error() {
    let space = SearchSpace::from_str_named(SLOW, "t", "t.ron").unwrap();
    let split = load(
        &DataSource::parse("digits").unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let data = PreparedData::new(split, 1, 0).unwrap();
    let metric = Metric::for_task(space.task);
    let tmp = tempfile::tempdir().unwrap();
    let meta = study_meta("t", &space, SLOW, "digits", 1);
    // Every epoch report fails, as a full disk or a lost file system would make it.
    let mut storage = Hooked::new(JournalStorage::open_or_create(tmp.path(), meta).unwrap());
    storage.on_report = Some(Box::new(|_, _, _| {
        Err(StudyError::Io {
            path: PathBuf::from("journal.log"),
            message: "No space left on device".into(),
        })
    }));
    let c = Controller {
        space: &space,
        data: &data,
        metric,
        opts: SearchOptions {
            trials: Some(5),
            ..SearchOptions::default()
        },
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let start = Instant::now();
    let result = c.run(
        &mut storage,
        Strategy::Random.build(&space).unwrap(),
        Box::new(FifoScheduler),
        Vec::new(),
    );
    match result {
        Err(SearchError::Study(StudyError::Io { message, .. })) => {
            assert!(message.contains("No space left"))
        }
        other => panic!("the failed write was not reported: {other:?}"),
    }
    // The trial stopped at its first report instead of training 1,000 epochs; no other began.
    assert_eq!(storage.trials().len(), 1);
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_class_smaller_than_the_fold_count_is_named_in_a_warning_and_the_search_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("s.ron"), MLP).unwrap();
    let mut text = String::from("x,label\n");
    for i in 0..30 {
        text.push_str(&format!("{i},a\n{},c\n", i + 40));
    }
    text.push_str("35,b\n36,b\n");
    std::fs::write(dir.join("small.csv"), text).unwrap();
    let out = nas(
        &[
            "search",
            "--space",
            "s.ron",
            "--data",
            "small.csv",
            "--trials",
            "1",
            "--no-final",
            "-q",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("nas: warning: small.csv: class `b` has 2 samples, fewer than the 3 folds"),
        "{e}"
    );
}

/// A sampler that fails on its third suggestion, as a bug in a sampler would.
struct PanicsOnThird(usize);

impl Sampler for PanicsOnThird {
    fn name(&self) -> &'static str {
        "panics"
    }
    fn suggest(
        &mut self,
        space: &SearchSpace,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
    ) -> Config {
        self.0 += 1;
        assert!(self.0 < 3, "a bug in the sampler");
        RandomSampler.suggest(space, history, rng)
    }
}

#[test]
fn a_worker_that_panics_outside_training_ends_the_search_with_an_error() {
    let space = SearchSpace::from_str_named(MLP, "t", "t.ron").unwrap();
    let split = load(&DataSource::parse("iris").unwrap(), &LoadOptions::default()).unwrap();
    let data = PreparedData::new(split, 1, 0).unwrap();
    let metric = Metric::for_task(space.task);
    let tmp = tempfile::tempdir().unwrap();
    let meta = study_meta("t", &space, MLP, "iris", 1);
    let mut storage = JournalStorage::open_or_create(tmp.path(), meta).unwrap();
    let c = Controller {
        space: &space,
        data: &data,
        metric,
        opts: SearchOptions {
            trials: Some(6),
            ..SearchOptions::default()
        },
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let result = c.run(
        &mut storage,
        Box::new(PanicsOnThird(0)),
        Box::new(FifoScheduler),
        Vec::new(),
    );
    match result {
        Err(SearchError::Worker(message)) => assert!(message.contains("a bug in the sampler")),
        other => panic!("the panic was not reported: {other:?}"),
    }
}

#[test]
fn max_memory_sets_the_limit_a_candidate_must_fit_and_a_bad_size_is_refused_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("s.ron"), MLP).unwrap();
    write_csv(&dir.join("my.csv"));
    // 64 kB cannot hold even the smallest of these networks' three folds and optimiser state.
    let out = nas(
        &[
            "search",
            "--space",
            "s.ron",
            "--data",
            "my.csv",
            "--trials",
            "2",
            "--max-memory",
            "64K",
            "--no-final",
            "-q",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for r in trials(&dir.join("results/s")) {
        assert_eq!(r.state, TrialState::Failed);
        let e = r.error.unwrap_or_default();
        assert!(e.contains("64 kB is available to each worker"), "{e}");
        assert!(e.ends_with("(--max-memory)"), "{e}");
    }
    let bad = nas(
        &[
            "search",
            "--space",
            "s.ron",
            "--data",
            "missing.csv",
            "--max-memory",
            "lots",
        ],
        dir,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("--max-memory: `lots` is not a size"),
        "{}",
        stderr(&bad)
    );
}
