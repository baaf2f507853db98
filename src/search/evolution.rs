//! Regularized (aging) evolution: tournament selection over a sliding window of recent trials.
//!
//! Real, Aggarwal, Huang and Le, "Regularized Evolution for Image Classifier Architecture
//! Search", AAAI 2019. The population is the `population` most recently finished trials, so
//! every configuration eventually ages out however good it looked; a child is its tournament
//! winner with exactly one active parameter mutated. Under a pruning scheduler most trials end
//! pruned: they stay in the population but lose every tournament against a completed trial, and
//! among themselves the one that trained longest wins, then the lower loss.

use super::{sample_uniform, sample_with, Observation, RandomSampler, Sampler, TrialState};
use crate::space::{Config, Distribution, ParamValue, SearchSpace};
use rand::seq::index;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Gaussian mutations of a float move by this fraction of the (log) range, as one sigma.
const FLOAT_SIGMA: f64 = 0.15;
/// Log-scaled integers move by about this fraction of their value per step.
const LOG_INT_STEP: f64 = 0.2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvolutionSampler {
    /// P: how many of the most recent finished (complete or pruned) trials form the population.
    pub population: usize,
    /// S: how many population members compete in each tournament.
    pub sample_size: usize,
}

impl Default for EvolutionSampler {
    fn default() -> Self {
        EvolutionSampler {
            // Smaller than the paper's (P = 100, S = 25 over thousands of trials): a search of a
            // few dozen trials should spend most of them evolving, not filling the population.
            population: 10,
            sample_size: 3,
        }
    }
}

impl EvolutionSampler {
    /// Population size `population` (P) and tournament size `sample_size` (S), each at least 1;
    /// S is capped at P.
    pub fn new(population: usize, sample_size: usize) -> EvolutionSampler {
        let population = population.max(1);
        EvolutionSampler {
            population,
            sample_size: sample_size.clamp(1, population),
        }
    }
}

impl Sampler for EvolutionSampler {
    fn name(&self) -> &'static str {
        "evolution"
    }

    fn suggest(
        &mut self,
        space: &SearchSpace,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
    ) -> Config {
        // (number, rank key, config); a smaller key is fitter.
        let mut done: Vec<(usize, (u8, i64, f64), &Config)> = history
            .iter()
            .filter_map(|o| {
                let rank = match o.state {
                    TrialState::Complete => 0,
                    TrialState::Pruned => 1,
                    _ => return None,
                };
                let depth = -(o.intermediate.len() as i64);
                o.loss
                    .filter(|l| !l.is_nan())
                    .map(|l| (o.number, (rank, depth, l), &o.config))
            })
            .filter(|(_, _, c)| space.validate_config(c).is_ok())
            .collect();
        if done.len() < self.population {
            return RandomSampler.suggest(space, history, rng);
        }
        // Aging: only the P most recent finished trials (by trial number) stay alive.
        done.sort_by_key(|(n, _, _)| *n);
        let alive = &done[done.len() - self.population..];
        let s = self.sample_size.min(alive.len());
        let parent = index::sample(rng, alive.len(), s)
            .into_iter()
            .map(|i| &alive[i])
            .min_by(|a, b| {
                (a.1 .0, a.1 .1)
                    .cmp(&(b.1 .0, b.1 .1))
                    .then(a.1 .2.total_cmp(&b.1 .2))
                    .then(a.0.cmp(&b.0))
            })
            .map(|(_, _, c)| *c);
        match parent {
            Some(parent) => mutate(space, parent, rng),
            None => RandomSampler.suggest(space, history, rng),
        }
    }
}

/// Whether a distribution can take more than one value (only those are worth mutating).
fn mutable(dist: &Distribution) -> bool {
    match dist {
        Distribution::Int { low, high, .. } => high > low,
        Distribution::Float { low, high, .. } => high > low,
        Distribution::Categorical { choices } => choices.len() > 1,
    }
}

/// The parent with one mutable active parameter changed, conditional parameters re-resolved:
/// parameters still active keep the parent's value, newly active ones are drawn at random.
pub fn mutate(space: &SearchSpace, parent: &Config, rng: &mut ChaCha8Rng) -> Config {
    let candidates: Vec<usize> = space
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| parent.contains_key(&p.name) && mutable(&p.dist))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return parent.clone();
    }
    let target = candidates[rng.gen_range(0..candidates.len())];
    sample_with(space, |i, _| {
        let p = &space.params[i];
        match parent.get(&p.name) {
            Some(old) if i == target => mutate_value(&p.dist, *old, rng),
            Some(old) if p.dist.contains(old) => *old,
            _ => sample_uniform(&p.dist, rng),
        }
    })
}

/// A value different from `old` (where the distribution allows), near it for numbers.
fn mutate_value(dist: &Distribution, old: ParamValue, rng: &mut ChaCha8Rng) -> ParamValue {
    match (dist, old) {
        (Distribution::Int { low, high, log }, ParamValue::Int(v)) if high > low => {
            let v = v.clamp(*low, *high);
            if rng.gen_bool(0.5) {
                // A fresh draw keeps large jumps possible; retried so it differs from `v`.
                for _ in 0..16 {
                    if let ParamValue::Int(w) = sample_uniform(dist, rng) {
                        if w != v {
                            return ParamValue::Int(w);
                        }
                    }
                }
            }
            let step = if *log {
                ((v as f64 * LOG_INT_STEP).round() as i64).max(1)
            } else {
                1
            };
            let up = if v - step < *low {
                true
            } else if v + step > *high {
                false
            } else {
                rng.gen_bool(0.5)
            };
            let w = if up { v + step } else { v - step };
            ParamValue::Int(w.clamp(*low, *high))
        }
        (Distribution::Float { low, high, log }, ParamValue::Float(x)) if high > low => {
            let to = |x: f64| if *log { x.ln() } else { x };
            let from = |t: f64| if *log { t.exp() } else { t };
            let (a, b) = (to(*low), to(*high));
            let t = to(x.clamp(*low, *high));
            for _ in 0..16 {
                let z: f64 = rng.sample(StandardNormal);
                let y = from((t + z * FLOAT_SIGMA * (b - a)).clamp(a, b)).clamp(*low, *high);
                if y != x {
                    return ParamValue::Float(y);
                }
            }
            ParamValue::Float(x.clamp(*low, *high))
        }
        (Distribution::Categorical { choices }, ParamValue::Cat(i)) if choices.len() > 1 => {
            let j = rng.gen_range(0..choices.len() - 1);
            ParamValue::Cat(if j >= i { j + 1 } else { j })
        }
        _ => sample_uniform(dist, rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn mlp() -> SearchSpace {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/search_spaces/mlp.ron"
        ))
        .expect("mlp.ron is readable");
        SearchSpace::from_str_named(&text, "mlp", "mlp.ron").expect("mlp.ron is valid")
    }

    #[test]
    fn a_child_differs_from_its_parent_in_exactly_one_sampled_parameter_or_its_subtree() {
        let space = mlp();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let parent = RandomSampler.suggest(&space, &[], &mut rng);
            let child = mutate(&space, &parent, &mut rng);
            space.validate_config(&child).expect("child is valid");
            assert_ne!(child, parent);
            // Parameters present in both and unconditional: at most one changed.
            let changed = space
                .params
                .iter()
                .filter(|p| p.conditions.is_empty())
                .filter(|p| parent.get(&p.name) != child.get(&p.name))
                .count();
            assert!(changed <= 1, "{parent:?} -> {child:?}");
        }
    }
}
