//! What a search optimises: the CV score and, in a multi-objective search, what a model costs.
//!
//! A study of several objectives records one value per objective (Optuna's multi-objective
//! encoding); every objective but the score is known before training, from the architecture
//! (`params`, `macs`, see `nn::cost`) or from timing the built network (`latency`, see
//! `nn::latency`).

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One objective of a study. In a space file: `objectives: [Score, Latency]`; on the command
/// line: `--objectives score,latency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ValueEnum)]
pub enum Objective {
    /// The mean cross-validation score (accuracy, higher is better; RMSE, lower is better).
    Score,
    /// Trainable parameters (lower is better).
    Params,
    /// Multiply-adds of one forward pass for one sample (lower is better).
    Macs,
    /// Median milliseconds of inference for one sample at batch 1, on one thread of this CPU
    /// (lower is better).
    Latency,
}

impl Objective {
    pub const ALL: [Objective; 4] = [
        Objective::Score,
        Objective::Params,
        Objective::Macs,
        Objective::Latency,
    ];

    /// The name on the command line, in CSV headers and JSON rows.
    pub fn key(&self) -> &'static str {
        match self {
            Objective::Score => "score",
            Objective::Params => "params",
            Objective::Macs => "macs",
            Objective::Latency => "latency",
        }
    }

    /// Whether the value is known before any training (every objective but the score).
    pub fn known_before_training(&self) -> bool {
        *self != Objective::Score
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Checks a list of objectives as a study takes it: `score` present (a search trains to score
/// its candidates), none twice. An empty list, or `score` alone, is a single-objective study.
pub fn check(list: &[Objective]) -> Result<(), String> {
    if !list.is_empty() && !list.contains(&Objective::Score) {
        return Err(format!(
            "objectives {} leave out `score`: a search trains its candidates to score them (list score with the costs, e.g. score,latency)",
            names(list)
        ));
    }
    for (i, o) in list.iter().enumerate() {
        if list[..i].contains(o) {
            return Err(format!("objective `{o}` is listed twice"));
        }
    }
    Ok(())
}

/// `score,latency`.
pub fn names(list: &[Objective]) -> String {
    list.iter().map(|o| o.key()).collect::<Vec<_>>().join(",")
}

/// The list a study keeps: empty for a single objective (so single-objective studies are
/// recorded as they always were).
pub fn normalise(list: &[Objective]) -> Vec<Objective> {
    if list.len() <= 1 {
        Vec::new()
    } else {
        list.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_required_and_no_objective_twice() {
        assert!(check(&[]).is_ok());
        assert!(check(&[Objective::Score, Objective::Latency]).is_ok());
        assert!(check(&[Objective::Params, Objective::Latency])
            .unwrap_err()
            .contains("leave out `score`"));
        assert!(check(&[Objective::Score, Objective::Score])
            .unwrap_err()
            .contains("twice"));
        assert_eq!(normalise(&[Objective::Score]), Vec::<Objective>::new());
    }
}
