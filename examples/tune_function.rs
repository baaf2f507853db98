//! Tunes a function that is not a network: a noisy 2-D Rosenbrock, with TPE over 60 trials,
//! through the ask-and-tell API (`nas::study::Study`).
//!
//! `cargo run --release --example tune_function [RESULTS_DIR]`; the study's journal is left in
//! `RESULTS_DIR/rosenbrock` (a fresh temporary directory by default) for `nas leaderboard`.

use nas::leaderboard::Format;
use nas::search::{SchedulerKind, Strategy};
use nas::space::SearchSpace;
use nas::study::{Direction, Metric, Outcome, Study, StudyOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::path::PathBuf;

/// A space of free parameters: `params` and no `model`, each entry one input of the function.
const SPACE: &str = "(
    task: Regression,
    params: {
        \"x\": Range(-2.0, 2.0),
        \"y\": Range(-2.0, 2.0),
    },
)";

/// Rosenbrock's banana: 0 at (1, 1).
fn rosenbrock(x: f64, y: f64) -> f64 {
    (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let results = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("nas-tune-function-{}", std::process::id())),
    };
    let space = SearchSpace::from_str_named(SPACE, "rosenbrock", "inline")?;
    let options = StudyOptions {
        strategy: Strategy::Tpe,
        scheduler: SchedulerKind::Fifo,
        seed: 42,
        metric: Metric::Value(Direction::Minimize),
    };
    let study = Study::create(&results, "rosenbrock", space, options)?;
    let noise = Normal::new(0.0, 0.01)?;
    for _ in 0..60 {
        let trial = study.ask()?;
        let (x, y) = (trial.float("x")?, trial.float("y")?);
        // The trial's own seed makes the noise as reproducible as the suggestions.
        let mut rng = ChaCha8Rng::seed_from_u64(trial.seed());
        let value = rosenbrock(x, y) + noise.sample(&mut rng);
        study.tell(trial, Outcome::Complete(value))?;
    }
    let best = study
        .best()?
        .ok_or("no trial completed, so there is no best value")?;
    let (x, y) = (best.params.float("x")?, best.params.float("y")?);
    println!(
        "best: trial {} value {:.4} at x = {x:.3}, y = {y:.3}",
        best.number, best.value
    );
    println!("the optimum: value 0 at x = 1, y = 1\n");
    println!("{}", study.leaderboard(Format::Table, Some(5))?);
    println!(
        "journal in {}; `nas leaderboard --results {} --study rosenbrock` shows it all",
        study.dir().display(),
        results.display()
    );
    Ok(())
}
