//! Tunes a function that is not a network: a noisy 2-D Rosenbrock, with TPE over 30 trials,
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

/// The space format names its parameters (the MLP and training settings of a search), so two of
/// the training settings carry the function's inputs: `x = log10(learning_rate) + 3` and
/// `y = 4 * weight_decay - 2`, both in [-2, 2]. The model part is fixed, so nothing else varies.
const SPACE: &str = "(
    task: Regression,
    model: Mlp((depth: Fixed(1), width: Fixed(8))),
    train: (
        learning_rate: LogRange(1e-5, 1e-1),
        weight_decay: Range(0.0, 1.0),
    ),
)";

/// Rosenbrock's banana: 0 at (1, 1), that is learning_rate 1e-2 and weight_decay 0.75.
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
    for _ in 0..30 {
        let trial = study.ask()?;
        let x = trial.float("learning_rate")?.log10() + 3.0;
        let y = 4.0 * trial.float("weight_decay")? - 2.0;
        // The trial's own seed makes the noise as reproducible as the suggestions.
        let mut rng = ChaCha8Rng::seed_from_u64(trial.seed());
        let value = rosenbrock(x, y) + noise.sample(&mut rng);
        study.tell(trial, Outcome::Complete(value))?;
    }
    let best = study
        .best()?
        .ok_or("no trial completed, so there is no best value")?;
    let (lr, wd) = (
        best.params.float("learning_rate")?,
        best.params.float("weight_decay")?,
    );
    println!(
        "best: trial {} value {:.4} at learning_rate {lr:.4e} (x = {:.3}), weight_decay {wd:.4} (y = {:.3})",
        best.number,
        best.value,
        lr.log10() + 3.0,
        4.0 * wd - 2.0
    );
    println!("the optimum: value 0 at x = 1, y = 1 (learning_rate 1e-2, weight_decay 0.75)\n");
    println!("{}", study.leaderboard(Format::Table, Some(5))?);
    println!(
        "journal in {}; `nas leaderboard --results {} --study rosenbrock` shows it all",
        study.dir().display(),
        results.display()
    );
    Ok(())
}
