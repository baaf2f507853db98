//! Choosing among candidates whose costs are known before training: expected hypervolume
//! improvement under a kernel-regression guess of the score.
//!
//! In a multi-objective study every objective but the score (parameters, multiply-adds,
//! latency) is known before a candidate trains. A sampler that draws several candidates can
//! look at those costs and train the one most likely to widen the Pareto front, instead of
//! spending epochs on one whose costs already place it behind the front. How ([`choose`]):
//!
//! - **Score guess.** Nadaraya-Watson regression over the finished trials: each trial's score
//!   loss (a complete trial's value, a pruned trial's last intermediate value) weighs by its
//!   similarity to the candidate, the product over parameters of a kernel: 1 for an equal
//!   categorical value, [`CATEGORICAL_MISMATCH`] for a different one, a Gaussian of bandwidth
//!   [`BANDWIDTH`] times the range for numbers (on the log scale for log ranges), and
//!   [`CATEGORICAL_MISMATCH`] for a parameter active in only one of the two. A prior
//!   pseudo-trial of weight [`PRIOR_WEIGHT`] at the mean and spread of all trials keeps an
//!   unfamiliar candidate's guess wide. The guess is a normal distribution with the weighted
//!   mean and standard deviation.
//! - **Value of a candidate.** The expected hypervolume improvement of (guessed score, known
//!   costs) over the front of the complete feasible trials, averaged over [`DRAWS`] draws of the
//!   score (the same draws for every candidate), with Optuna's reference point (the worst
//!   point of the trials pushed out by 10%, [`crate::pareto::reference_point`]).
//! - **Choice.** The candidate of the largest expected improvement; when none improves (or no
//!   trial has finished) the first candidate, which is the sampler's own choice. A candidate
//!   without costs (it cannot be built or breaks a constraint) is never chosen unless all are.

use super::{Observation, TrialState};
use crate::pareto;
use crate::space::{Config, Distribution, ParamValue, SearchSpace};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, StandardNormal};

/// Kernel value of two different categorical values (or a parameter active in one only).
pub const CATEGORICAL_MISMATCH: f64 = 0.25;
/// Gaussian kernel bandwidth for numbers, as a fraction of the (log) range.
pub const BANDWIDTH: f64 = 0.15;
/// Weight of the prior pseudo-trial (mean and spread of every trial) in each guess.
pub const PRIOR_WEIGHT: f64 = 0.05;
/// Score draws over which the hypervolume improvement is averaged.
pub const DRAWS: usize = 64;

/// A study's objective values of a candidate known before training, lower is better, with
/// NaN for the score (not known before training); `None` when the candidate cannot be built
/// or breaks a constraint.
pub type Costs = Option<Vec<f64>>;

/// The index of the candidate to train (see the module's notes). `candidates[0]` is the
/// sampler's own choice; `costs[i]` belongs to `candidates[i]`.
pub fn choose(
    space: &SearchSpace,
    history: &[Observation],
    candidates: &[Config],
    costs: &[Costs],
    rng: &mut ChaCha8Rng,
) -> usize {
    let usable = |i: usize| costs.get(i).and_then(|c| c.as_ref());
    let Some(first_costed) = (0..candidates.len()).find(|&i| usable(i).is_some()) else {
        return 0;
    };
    let Some(score_at) = usable(first_costed).and_then(|c| c.iter().position(|v| v.is_nan()))
    else {
        return first_costed;
    };
    let observed = Observed::of(history, score_at);
    let front: Vec<Vec<f64>> = history
        .iter()
        .filter(|o| o.state == TrialState::Complete && !o.infeasible())
        .filter(|o| !o.values.is_empty() && o.values.iter().all(|v| v.is_finite()))
        .map(|o| o.values.clone())
        .collect();
    if observed.points.is_empty() || front.is_empty() {
        return first_costed;
    }
    let reference = pareto::reference_point(&front);
    let base = pareto::hypervolume(&front, &reference);
    let draws: Vec<f64> = (0..DRAWS).map(|_| StandardNormal.sample(rng)).collect();
    // Expected improvement per candidate (minus infinity without costs); the first of the
    // largest wins, so the sampler's own order breaks ties.
    let mut gains = vec![f64::NEG_INFINITY; candidates.len()];
    for (i, config) in candidates.iter().enumerate() {
        let Some(c) = usable(i) else { continue };
        let (mean, sd) = observed.guess(space, config);
        let mut points = front.clone();
        points.push(c.clone());
        let mut gain = 0.0;
        for z in &draws {
            points.last_mut().expect("pushed")[score_at] = mean + sd * z;
            gain += (pareto::hypervolume(&points, &reference) - base).max(0.0);
        }
        gains[i] = gain / DRAWS as f64;
    }
    let top = gains.iter().copied().fold(0.0, f64::max);
    if top <= 0.0 {
        return first_costed;
    }
    gains.iter().position(|g| *g >= top).unwrap_or(first_costed)
}

/// The finished trials the guess learns from: configuration and score loss.
struct Observed<'a> {
    points: Vec<(&'a Config, f64)>,
    mean: f64,
    var: f64,
}

impl<'a> Observed<'a> {
    fn of(history: &'a [Observation], score_at: usize) -> Observed<'a> {
        let points: Vec<(&Config, f64)> = history
            .iter()
            .filter(|o| !o.infeasible())
            .filter_map(|o| {
                let y = match o.state {
                    TrialState::Complete => o.values.get(score_at).copied().or(o.loss),
                    TrialState::Pruned => o.intermediate.last().copied(),
                    _ => None,
                }?;
                y.is_finite().then_some((&o.config, y))
            })
            .collect();
        let n = points.len().max(1) as f64;
        let mean = points.iter().map(|p| p.1).sum::<f64>() / n;
        let var = points.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / n;
        Observed { points, mean, var }
    }

    /// Mean and standard deviation of the guessed score loss of `config`.
    fn guess(&self, space: &SearchSpace, config: &Config) -> (f64, f64) {
        let weights: Vec<f64> = self
            .points
            .iter()
            .map(|(c, _)| similarity(space, config, c))
            .collect();
        let total = weights.iter().sum::<f64>() + PRIOR_WEIGHT;
        let mean = (weights
            .iter()
            .zip(&self.points)
            .map(|(w, p)| w * p.1)
            .sum::<f64>()
            + PRIOR_WEIGHT * self.mean)
            / total;
        let var = (weights
            .iter()
            .zip(&self.points)
            .map(|(w, p)| w * (p.1 - mean).powi(2))
            .sum::<f64>()
            + PRIOR_WEIGHT * (self.var + (self.mean - mean).powi(2)))
            / total;
        (mean, var.max(0.0).sqrt())
    }
}

/// The product over the space's parameters of their kernels (see the module's notes).
fn similarity(space: &SearchSpace, a: &Config, b: &Config) -> f64 {
    space
        .params
        .iter()
        .map(|p| match (a.get(&p.name), b.get(&p.name)) {
            (None, None) => 1.0,
            (Some(x), Some(y)) => kernel(&p.dist, *x, *y),
            _ => CATEGORICAL_MISMATCH,
        })
        .product()
}

fn kernel(dist: &Distribution, x: ParamValue, y: ParamValue) -> f64 {
    let unit = |v: ParamValue| -> Option<f64> {
        let (low, high, log, v) = match (dist, v) {
            (Distribution::Int { low, high, log }, ParamValue::Int(v)) => {
                (*low as f64, *high as f64, *log, v as f64)
            }
            (Distribution::Float { low, high, log }, ParamValue::Float(v)) => {
                (*low, *high, *log, v)
            }
            _ => return None,
        };
        let f = |t: f64| {
            if log {
                t.max(f64::MIN_POSITIVE).ln()
            } else {
                t
            }
        };
        let width = f(high) - f(low);
        Some(if width > 0.0 {
            (f(v) - f(low)) / width
        } else {
            0.0
        })
    };
    match (unit(x), unit(y)) {
        (Some(u), Some(v)) => (-0.5 * ((u - v) / BANDWIDTH).powi(2)).exp(),
        _ if x == y => 1.0,
        _ => CATEGORICAL_MISMATCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn space() -> SearchSpace {
        let text = "(task: Classification, model: Mlp((depth: Range(1, 3), activation: Choice([Relu, Tanh]))))";
        SearchSpace::from_str_named(text, "t", "t.ron").expect("valid space")
    }

    fn config(depth: i64, act: usize) -> Config {
        Config::from([
            ("depth".to_string(), ParamValue::Int(depth)),
            ("activation".to_string(), ParamValue::Cat(act)),
        ])
    }

    fn done(number: usize, c: Config, score: f64, cost: f64) -> Observation {
        Observation {
            number,
            config: c,
            state: TrialState::Complete,
            loss: Some(score),
            intermediate: vec![score],
            values: vec![score, cost],
            constraints: Vec::new(),
        }
    }

    #[test]
    fn the_guess_follows_similar_trials() {
        let space = space();
        let history = vec![
            done(0, config(1, 0), -0.9, 1.0),
            done(1, config(1, 1), -0.2, 1.0),
            done(2, config(3, 1), -0.3, 3.0),
        ];
        let seen = Observed::of(&history, 0);
        let (relu, _) = seen.guess(&space, &config(1, 0));
        let (tanh, _) = seen.guess(&space, &config(1, 1));
        assert!(relu < -0.6 && tanh > -0.4, "relu {relu}, tanh {tanh}");
    }

    #[test]
    fn a_cheap_candidate_like_the_best_trial_beats_a_costly_one() {
        let space = space();
        // relu trials score well whatever their depth; depth sets the cost.
        let history = vec![
            done(0, config(3, 0), -0.9, 3.0),
            done(1, config(2, 1), -0.2, 2.0),
            done(2, config(3, 1), -0.25, 3.0),
        ];
        let candidates = vec![config(3, 1), config(3, 0), config(1, 0)];
        let costs = vec![
            Some(vec![f64::NAN, 3.0]),
            Some(vec![f64::NAN, 3.0]),
            Some(vec![f64::NAN, 1.0]),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(choose(&space, &history, &candidates, &costs, &mut rng), 2);
        // Without costs the candidate cannot be judged: the sampler's own choice stands.
        let none = vec![Some(vec![f64::NAN, 3.0]), None, None];
        assert_eq!(choose(&space, &history, &candidates, &none, &mut rng), 0);
        // Nothing finished yet: the sampler's own choice.
        assert_eq!(choose(&space, &[], &candidates, &costs, &mut rng), 0);
    }
}
