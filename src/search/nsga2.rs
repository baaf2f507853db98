//! NSGA-II: a generational genetic algorithm that keeps the best Pareto fronts, spread out.
//!
//! Deb, Pratap, Agarwal and Meyarivan, "A Fast and Elitist Multiobjective Genetic Algorithm:
//! NSGA-II", IEEE TEC 2002, with its constrained domination (a feasible trial beats every
//! infeasible one; infeasible ones compare by total violation), and Optuna's `NSGAIISampler`
//! as a guide for the variation operators.
//!
//! The sampler keeps no state: generations are read from the history, so a resumed study or a
//! fresh process makes the same suggestions. Finished trials in trial-number order form
//! generations of `population` trials each (complete and pruned trials with their values,
//! pruned ones with the score they reached; candidates rejected before training by a
//! constraint, with their violation); the first generation is the parent population, and each
//! later full generation competes with it for the next (fronts in order, the last front that
//! does not fit cut by crowding distance). Trials of the generation still filling are the
//! children being evaluated. A child's two parents are each the winner of a binary tournament
//! (lower front, then larger crowding distance); with probability `crossover_prob` each
//! parameter comes from either parent (uniform crossover, `swapping_prob`), else the child
//! copies the first parent; then each parameter is drawn anew from its distribution with
//! probability `1 / parameters` (`mutation_prob`). Parameters that become active without a
//! parent value are drawn at random.

use super::{sample_uniform, sample_with, Observation, RandomSampler, Sampler, TrialState};
use crate::pareto;
use crate::space::{Config, SearchSpace};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nsga2Sampler {
    /// Trials per generation (Optuna: 50; here 10, as searches run tens of trials).
    pub population: usize,
    /// Probability that a child mixes its two parents (Optuna: 0.9).
    pub crossover_prob: f64,
    /// Probability that a parameter comes from the second parent in a crossover (Optuna: 0.5).
    pub swapping_prob: f64,
    /// Probability that a parameter is drawn anew; `None`: 1 / the parent's parameter count.
    pub mutation_prob: Option<f64>,
}

impl Default for Nsga2Sampler {
    fn default() -> Self {
        Nsga2Sampler {
            population: 10,
            crossover_prob: 0.9,
            swapping_prob: 0.5,
            mutation_prob: None,
        }
    }
}

impl Nsga2Sampler {
    /// Generations of `population` trials (at least 2), other settings as Optuna's.
    pub fn new(population: usize) -> Nsga2Sampler {
        Nsga2Sampler {
            population: population.max(2),
            ..Nsga2Sampler::default()
        }
    }
}

/// A finished trial as NSGA-II sees it.
struct Member<'a> {
    number: usize,
    config: &'a Config,
    /// Losses of every objective; empty for a candidate rejected before training.
    losses: &'a [f64],
    violation: f64,
}

fn members(history: &[Observation]) -> Vec<Member<'_>> {
    let mut out: Vec<Member> = history
        .iter()
        .filter_map(|o| {
            let violation = pareto::violation(&o.constraints);
            let finished = matches!(o.state, TrialState::Complete | TrialState::Pruned);
            let scored = !o.values.is_empty() && o.values.iter().all(|v| v.is_finite());
            let usable = (finished && scored) || (o.state == TrialState::Failed && violation > 0.0);
            usable.then_some(Member {
                number: o.number,
                config: &o.config,
                losses: if scored { &o.values } else { &[] },
                violation,
            })
        })
        .collect();
    out.sort_by_key(|m| m.number);
    out
}

/// Fronts (0 first) and crowding distances of `pool`, under constrained domination.
fn rank(pool: &[&Member]) -> (Vec<usize>, Vec<f64>) {
    let width = pool.iter().map(|m| m.losses.len()).max().unwrap_or(0);
    // Infeasible members compare by violation alone; their losses (maybe none) are not read.
    let losses: Vec<Vec<f64>> = pool
        .iter()
        .map(|m| {
            if m.losses.len() == width {
                m.losses.to_vec()
            } else {
                vec![f64::INFINITY; width]
            }
        })
        .collect();
    let violations: Vec<f64> = pool
        .iter()
        .map(|m| {
            if m.losses.len() == width {
                m.violation
            } else {
                // Scored nothing and broke no constraint cannot happen (see `members`); a
                // member without values ranks behind every scored one.
                m.violation.max(f64::MIN_POSITIVE)
            }
        })
        .collect();
    let fronts = pareto::fronts(&losses, &violations);
    let mut crowding = vec![0.0; pool.len()];
    let n_fronts = fronts.iter().max().map_or(0, |f| f + 1);
    for f in 0..n_fronts {
        let idx: Vec<usize> = (0..pool.len())
            .filter(|&i| fronts[i] == f && violations[i] <= 0.0)
            .collect();
        let points: Vec<&[f64]> = idx.iter().map(|&i| losses[i].as_slice()).collect();
        for (k, d) in idx.iter().zip(pareto::crowding_distance(&points)) {
            crowding[*k] = d;
        }
    }
    (fronts, crowding)
}

/// The `n` survivors of `pool`: whole fronts in order, the last one cut by crowding distance
/// (larger first, then the older trial).
fn survivors<'a, 'b>(pool: Vec<&'b Member<'a>>, n: usize) -> Vec<&'b Member<'a>> {
    let (fronts, crowding) = rank(&pool);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.sort_by(|&a, &b| {
        fronts[a]
            .cmp(&fronts[b])
            .then(crowding[b].total_cmp(&crowding[a]))
            .then(pool[a].number.cmp(&pool[b].number))
    });
    order.truncate(n);
    order.sort_by_key(|&i| pool[i].number);
    order.into_iter().map(|i| pool[i]).collect()
}

impl Nsga2Sampler {
    /// The parent population after the last full generation.
    fn parents<'a, 'b>(&self, members: &'b [Member<'a>]) -> Vec<&'b Member<'a>> {
        let n = self.population.max(2);
        let mut parents: Vec<&Member> = members[..n].iter().collect();
        let mut start = n;
        while start + n <= members.len() {
            let mut pool = parents;
            pool.extend(&members[start..start + n]);
            parents = survivors(pool, n);
            start += n;
        }
        parents
    }
}

impl Sampler for Nsga2Sampler {
    fn name(&self) -> &'static str {
        "nsga2"
    }

    fn suggest(
        &mut self,
        space: &SearchSpace,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
    ) -> Config {
        let members = members(history);
        if members.len() < self.population.max(2) {
            return RandomSampler.suggest(space, history, rng);
        }
        let parents = self.parents(&members);
        let (fronts, crowding) = rank(&parents);
        let tournament = |rng: &mut ChaCha8Rng| {
            let a = rng.gen_range(0..parents.len());
            let mut b = rng.gen_range(0..parents.len() - 1);
            if b >= a {
                b += 1;
            }
            let a_wins =
                fronts[a] < fronts[b] || (fronts[a] == fronts[b] && crowding[a] >= crowding[b]);
            parents[if a_wins { a } else { b }].config
        };
        let first = tournament(rng);
        let second = tournament(rng);
        let crossover = rng.gen::<f64>() < self.crossover_prob;
        let mutation = self
            .mutation_prob
            .unwrap_or(1.0 / first.len().max(1) as f64);
        sample_with(space, |i, _| {
            let p = &space.params[i];
            let inside = |c: &Config| c.get(&p.name).filter(|v| p.dist.contains(v)).copied();
            let swap = crossover && rng.gen::<f64>() < self.swapping_prob;
            let inherited = if swap {
                inside(second).or_else(|| inside(first))
            } else {
                inside(first).or_else(|| crossover.then(|| inside(second)).flatten())
            };
            match inherited {
                Some(v) if rng.gen::<f64>() >= mutation => v,
                _ => sample_uniform(&p.dist, rng),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(number: usize, losses: &[f64], violation: f64) -> (usize, Vec<f64>, f64) {
        (number, losses.to_vec(), violation)
    }

    #[test]
    fn survivors_are_whole_fronts_then_the_most_spread_out() {
        let config = Config::new();
        let raw = [
            member(0, &[0.0, 4.0], 0.0),
            member(1, &[1.0, 3.0], 0.0),
            member(2, &[2.0, 2.0], 0.0),
            member(3, &[3.0, 1.0], 0.0),
            member(4, &[4.0, 0.0], 0.0),
            member(5, &[5.0, 5.0], 0.0),
            // Dominates everything but breaks a constraint.
            member(6, &[-1.0, -1.0], 0.5),
        ];
        let ms: Vec<Member> = raw
            .iter()
            .map(|(n, l, v)| Member {
                number: *n,
                config: &config,
                losses: l,
                violation: *v,
            })
            .collect();
        let pool: Vec<&Member> = ms.iter().collect();
        let kept: Vec<usize> = survivors(pool, 3).iter().map(|m| m.number).collect();
        // Front 1 is trials 0-4; its extremes (0, 4) have infinite crowding, then the middle
        // one's neighbours are furthest apart... all interior ones tie at 1.0: the oldest wins.
        assert_eq!(kept, [0, 1, 4]);
        let pool: Vec<&Member> = ms.iter().collect();
        let kept: Vec<usize> = survivors(pool, 6).iter().map(|m| m.number).collect();
        assert_eq!(kept, [0, 1, 2, 3, 4, 5], "the infeasible one goes last");
    }
}
