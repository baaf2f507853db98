//! Memory that does not grow: across many trials, and across the epochs of one long trial.
//!
//! Resident memory is a property of the whole process, so the tests of this file take one lock
//! and never run at the same time as each other. They read `/proc` and skip elsewhere.

use nas::controller::{Controller, PreparedData, SearchOptions};
use nas::data::{load, DataSource, DataSplit, Dataset, InputShape, LoadOptions, Targets};
use nas::search::{Decision, FifoScheduler, Strategy, TrialState};
use nas::space::SearchSpace;
use nas::study::{JournalStorage, Metric};
use nas::sys::resident_bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

mod common;
use common::{study_meta, Hooked};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Bytes of resident memory that come and go with the allocator's state alone.
const ALLOCATOR_SLACK: f64 = 4.0 * 1024.0 * 1024.0;

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One-epoch CNN trials on digits, all of the same size, so that only a leak could make the
/// hundredth trial need more memory than the tenth.
const SHORT_CNN: &str = "(
    task: Classification,
    data: \"digits\",
    model: Cnn((
        stages: Fixed(2),
        blocks_per_stage: Fixed(1),
        block: Choice([Plain, Residual]),
        width: Fixed(16),
        kernel: Fixed(3),
        downsample: Fixed(MaxPool),
        activation: Fixed(Relu),
        dropout: Range(0.0, 0.3),
        batch_norm: Fixed(true),
    )),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: LogRange(5e-4, 1e-2),
        batch_size: Fixed(32),
        max_epochs: Fixed(1),
        patience: Fixed(4),
    ),
)";

#[test]
fn resident_memory_after_100_short_trials_is_within_10_percent_of_after_10() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if resident_bytes().is_none() {
        eprintln!("skipped: no /proc to read resident memory from");
        return;
    }
    let space = SearchSpace::from_str_named(SHORT_CNN, "m", "m.ron").unwrap();
    let split = load(
        &DataSource::parse("digits").unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let data = PreparedData::new(split, 1, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Resident memory read by the worker that finished the 10th and the 100th trial, while the
    // search runs on (measured within one run, so no thread of an earlier run can skew it).
    let readings = Arc::new(Mutex::new(Vec::new()));
    let mut storage = Hooked::new(
        JournalStorage::open_or_create(dir.path(), study_meta("m", &space, SHORT_CNN, "digits", 1))
            .unwrap(),
    );
    let seen = readings.clone();
    storage.on_finish = Some(Box::new(move |trials| {
        let done = trials
            .iter()
            .filter(|t| t.state != TrialState::Running)
            .count();
        if done == 10 || done == 100 {
            nas::sys::release_free_memory();
            if let Ok(mut r) = seen.lock() {
                r.push(resident_bytes().unwrap_or(0));
            }
        }
    }));
    let c = Controller {
        space: &space,
        data: &data,
        metric: Metric::for_task(space.task),
        opts: SearchOptions {
            trials: Some(100),
            workers: 2,
            ..SearchOptions::default()
        },
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let sampler = Strategy::Random.build(&space).unwrap();
    c.run(&mut storage, sampler, Box::new(FifoScheduler), Vec::new())
        .unwrap();
    let readings = readings.lock().unwrap().clone();
    let (ten, hundred) = (readings[0], readings[1]);
    eprintln!(
        "resident memory: {:.1} MB after 10 trials, {:.1} MB after 100",
        mb(ten),
        mb(hundred)
    );
    // A test process holds little (digits is 0.4 MB), so the allocator's own state, a few MB
    // either way, is allowed on top of the 10%. The leak this guards against kept every
    // trial's buffers: 7.5 MB a trial here, 234 MB after 10 trials and 955 MB after 100.
    assert!(
        hundred as f64 <= ten as f64 * 1.10 + ALLOCATOR_SLACK,
        "resident memory grew from {:.1} MB after 10 trials to {:.1} MB after 100",
        mb(ten),
        mb(hundred)
    );
}

/// An MLP with batch norm (`BN`, replaced by `true` or `false`) and dropout at batch 16 on 28x28
/// inputs: many small steps per epoch, where a buffer kept per step shows at once. Without batch
/// norm the dense layers apply the ReLU themselves and hand their outputs to dfdx uncopied.
const LONG_MLP: &str = "(
    task: Classification,
    model: Mlp((
        depth: Fixed(1),
        width: Fixed(256),
        activation: Fixed(Relu),
        dropout: Fixed(0.3),
        batch_norm: Fixed(BN),
    )),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: Fixed(0.001),
        batch_size: Fixed(16),
        max_epochs: Fixed(8),
        patience: Fixed(100),
    ),
)";

/// `n` random 1 x side x side images in 10 classes.
fn images(n: usize, side: usize, rng: &mut ChaCha8Rng) -> Dataset {
    let shape = InputShape::new(1, side, side);
    Dataset {
        name: "images".into(),
        shape,
        features: (0..n * shape.len()).map(|_| rng.gen::<f32>()).collect(),
        targets: Targets::Classes {
            labels: (0..n).map(|_| rng.gen_range(0..10)).collect(),
            n_classes: 10,
        },
        class_names: (0..10).map(|c| c.to_string()).collect(),
    }
}

#[test]
fn one_long_trials_resident_memory_is_flat_from_its_second_epoch_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if resident_bytes().is_none() {
        eprintln!("skipped: no /proc to read resident memory from");
        return;
    }
    for batch_norm in ["true", "false"] {
        long_trial_is_flat(&LONG_MLP.replace("BN", batch_norm), 28, 3000);
    }
    // Tanh keeps its slope for the backward pass and the tensor takes the output buffer: one
    // served from a longer pooled buffer (kept for the larger evaluation chunks) once went to
    // dfdx's cache cut to length, and its long self was allocated again (peak 76 -> 118 MB over
    // 30 epochs of a digits network like this one).
    long_trial_is_flat(LONG_CNN, 8, 1000);
}

/// A 64-channel tanh network with batch norm over 8x8 images, batch 128.
const LONG_CNN: &str = "(
    task: Classification,
    model: Sequential([
        Conv(channels: 64, kernel: 5), BatchNorm, Act(Tanh),
        Conv(kernel: 5), BatchNorm, Act(Tanh),
        GlobalAvgPool,
    ]),
    train: (
        optimizer: Fixed(Adam),
        learning_rate: Fixed(0.001),
        batch_size: Fixed(128),
        max_epochs: Fixed(8),
        patience: Fixed(100),
    ),
)";

fn long_trial_is_flat(text: &str, side: usize, n: usize) {
    let space = SearchSpace::from_str_named(text, "m", "m.ron").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let split = DataSplit {
        train: images(n, side, &mut rng),
        test: Some(images(100, side, &mut rng)),
    };
    let data = PreparedData::new(split, 1, 0).unwrap();
    let c = Controller {
        space: &space,
        data: &data,
        metric: Metric::for_task(space.task),
        opts: SearchOptions::default(),
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let config = Strategy::Random
        .build(&space)
        .unwrap()
        .suggest(&space, &[], &mut rng);
    let mut rss = Vec::new();
    let mut report = |_epoch: usize, _value: f64| {
        rss.push(resident_bytes().unwrap());
        Decision::Continue
    };
    let rec = c.run_trial(0, config, 1, &mut report);
    assert!(rec.error.is_none(), "{:?}", rec.error);
    let shown: Vec<String> = rss.iter().map(|&b| format!("{:.1}", mb(b))).collect();
    eprintln!("resident memory per epoch (MB): {}", shown.join(", "));
    assert_eq!(rss.len(), 8, "one reading per epoch");
    // Readings wander by a few MB (allocator and scratch-buffer reuse), so the baseline is the
    // highest of epochs 2-4 rather than one reading; a leak keeps growing past it.
    let second = rss[1..4].iter().copied().max().unwrap();
    let most = rss[4..].iter().copied().max().unwrap();
    assert!(
        most as f64 <= second as f64 * 1.10,
        "resident memory grew from {:.1} MB (most of epochs 2-4) to {:.1} MB: {}",
        mb(second),
        mb(most),
        shown.join(", ")
    );
}
