//! Tree-structured Parzen estimator (TPE): model good and bad trials apart, sample where the
//! ratio of their densities is highest.
//!
//! Bergstra, Bardenet, Bengio and Kégl, "Algorithms for Hyper-Parameter Optimization",
//! NeurIPS 2011; defaults follow Optuna's `TPESampler` (Akiba et al., KDD 2019) as a guide.
//!
//! * Until `n_startup_trials` usable trials exist, configurations are drawn at random.
//! * Usable trials are ranked: completed trials by loss, then pruned trials (which reached
//!   fewer epochs, so they rank below every completed one), the longest-running first and ties
//!   broken by their last intermediate loss. Failed, running and interrupted trials are not ranked.
//! * The best `gamma(n) = min(ceil(0.1 n), 25)` ranked trials are "good" (l), the rest "bad" (g);
//!   running trials join the bad ones (Optuna's constant liar), without counting in `n`.
//! * On one objective the parameters that every finished trial holds (Optuna's intersection
//!   search space) are drawn jointly, as Optuna 5 does by default ("multivariate" TPE): l and g
//!   are mixtures of products with one component per trial, a candidate takes all of them from
//!   one component, and candidates are scored by the joint `log l - log g`. The other
//!   parameters, and all of them in a study of several objectives, are drawn one at a time
//!   ("univariate"), in the space's order, so conditions see the values chosen so far. Each
//!   parameter is modelled only from the trials in which it was active; a group with none of
//!   them is modelled by the prior alone.
//! * Numbers are modelled in (log) space as truncated Gaussian mixtures: one component per trial
//!   and one prior component (centre of the range, sigma = the range) of weight `prior_weight`.
//!   Bandwidths are the larger distance to the sorted neighbouring trials (the range ends bound
//!   the outermost ones; with two or more trials the outermost take their inner neighbour's
//!   distance alone, Optuna's `consider_endpoints=False`), clipped to
//!   `[range / min(100, 1 + components), range]`: the "magic clip" of Bergstra et al. that keeps
//!   a cluster of identical values from collapsing to a spike. Integers are modelled on
//!   `[low - 0.5, high + 0.5]`, rounded, and scored by the mass of their value's bin.
//! * Categoricals are mixtures as in Optuna 5: each trial's kernel puts `1 + p / (n + 1)` on its
//!   own choice and `p / (n + 1)` on the others (normalised; `p = prior_weight`, `n` trials),
//!   and a uniform prior kernel joins them with weight `p`.
//! * Trial weights are 1, except that with 25 or more trials in a group the older ones fade in
//!   linearly from `1/n` (the most recent 25 keep weight 1), as in Optuna's default.
//! * `n_ei_candidates` values (or joint draws) are drawn from l; the one maximising
//!   `log l(x) - log g(x)` (the expected-improvement criterion of the paper) is chosen.
//!
//! With several objectives (observations with more than one value) this is multi-objective TPE
//! (Ozaki, Tanigaki, Watanabe and Onishi, "Multiobjective Tree-Structured Parzen Estimator for
//! Computationally Expensive Optimization Problems", GECCO 2020), split as Optuna 5 splits it:
//! the good group takes whole Pareto fronts of the complete, feasible trials while they fit in
//! `gamma(n)`, the front that does not fit is cut by greedy hypervolume subset selection; then
//! pruned trials (ranked as above, on the score) and infeasible ones (least violation first) fill
//! what is left. Good trials weigh 1 each (Optuna 5 dropped the paper's hypervolume-contribution
//! weights); the bad group keeps the age weights.
//!
//! When the study's other objectives are known before training (`nas search` knows parameters,
//! multiply-adds and latency; [`Sampler::suggest_costed`]), each suggestion after the startup
//! trials weighs 48 candidates: the TPE choice, the choice of a split by the score alone, 14
//! draws from the two splits' good models and 32 uniform draws; `search::prescreen` keeps the
//! one whose known costs and guessed score promise the largest hypervolume improvement.

use super::prescreen::{self, Costs};
use super::{sample_uniform, sample_with, Observation, RandomSampler, Sampler, TrialState};
use crate::pareto;
use crate::space::{Config, Distribution, ParamValue, SearchSpace};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::cmp::Ordering;

/// Trials beyond this many in a group get weights fading with age.
const FLAT_WEIGHT_TRIALS: usize = 25;
/// Upper bound on gamma(n): at most this many trials count as good.
const MAX_GOOD: usize = 25;
/// Rejection-sampling attempts for one truncated Gaussian draw before falling back to uniform.
const MAX_REJECTIONS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TpeSampler {
    /// Random configurations before the model is used (Optuna: 10).
    pub n_startup_trials: usize,
    /// Candidates drawn from l(x) per parameter, or per joint draw (Optuna: 24).
    pub n_ei_candidates: usize,
    /// Weight of the prior component of every Parzen estimator (Optuna: 1.0).
    pub prior_weight: f64,
    /// On one objective, draw the parameters that every finished trial holds jointly, from one
    /// trial's kernels at a time (multivariate TPE, Optuna 5's default on one objective); the
    /// others, and every parameter in a study of several objectives, one at a time.
    pub multivariate: bool,
    /// Count running trials among the bad ones (Optuna's constant liar, its default since 5),
    /// so that workers asking at the same time are not all sent to the same place.
    pub constant_liar: bool,
    /// In a multi-objective study whose costs are known before training
    /// ([`Sampler::suggest_costed`], see `search::prescreen`): configurations drawn from the
    /// models (the TPE choice, then alternately from the score's split and from the Pareto
    /// split)...
    pub n_cost_candidates: usize,
    /// ...and drawn uniformly, weighed together by their expected hypervolume improvement. Both
    /// 0 (or 1 and 0) turns the prescreen off.
    pub n_random_candidates: usize,
}

impl Default for TpeSampler {
    fn default() -> Self {
        TpeSampler {
            n_startup_trials: 10,
            n_ei_candidates: 24,
            prior_weight: 1.0,
            multivariate: true,
            constant_liar: true,
            n_cost_candidates: 16,
            n_random_candidates: 32,
        }
    }
}

impl TpeSampler {
    pub fn new(n_startup_trials: usize, n_ei_candidates: usize) -> TpeSampler {
        TpeSampler {
            n_startup_trials,
            n_ei_candidates: n_ei_candidates.max(1),
            ..TpeSampler::default()
        }
    }
}

/// How many of `n` ranked trials count as good.
pub fn gamma(n: usize) -> usize {
    ((n as f64 * 0.1).ceil() as usize).min(MAX_GOOD)
}

/// A usable trial and its rank key (lower is better).
struct Ranked<'a> {
    number: usize,
    config: &'a Config,
    /// 0 for completed trials, 1 for pruned ones.
    class: u8,
    /// Minus the epochs a pruned trial reached (more epochs rank higher); 0 when completed.
    neg_steps: i64,
    value: f64,
}

fn rank(history: &[Observation]) -> Vec<Ranked<'_>> {
    let mut ranked: Vec<Ranked> = history
        .iter()
        .filter_map(|o| {
            let (class, neg_steps, value) = match (o.state, o.loss, o.intermediate.last()) {
                (TrialState::Complete, Some(l), _) => (0, 0, l),
                (TrialState::Pruned, _, Some(&l)) => (1, -(o.intermediate.len() as i64), l),
                _ => return None,
            };
            (!value.is_nan()).then_some(Ranked {
                number: o.number,
                config: &o.config,
                class,
                neg_steps,
                value,
            })
        })
        .collect();
    ranked.sort_by(|a, b| {
        (a.class, a.neg_steps)
            .cmp(&(b.class, b.neg_steps))
            .then(a.value.total_cmp(&b.value))
            .then(a.number.cmp(&b.number))
    });
    ranked
}

/// Weights of `n` observations sorted oldest first.
fn age_weights(n: usize) -> Vec<f64> {
    if n < FLAT_WEIGHT_TRIALS {
        return vec![1.0; n];
    }
    let ramp = n - FLAT_WEIGHT_TRIALS;
    let first = 1.0 / n as f64;
    (0..n)
        .map(|k| match ramp {
            0 => 1.0,
            1 if k == 0 => first,
            _ if k < ramp => first + (1.0 - first) * k as f64 / (ramp - 1) as f64,
            _ => 1.0,
        })
        .collect()
}

/// The trials of one side of the split: (number, configuration), and whether they all weigh 1
/// (else they fade with age, [`age_weights`]).
struct Group<'a> {
    members: Vec<(usize, &'a Config)>,
    flat: bool,
}

impl<'a> Group<'a> {
    fn aged(ranked: &[Ranked<'a>]) -> Group<'a> {
        Group {
            members: ranked.iter().map(|r| (r.number, r.config)).collect(),
            flat: false,
        }
    }
}

/// The configurations of `group` that `holds`, oldest trial first, with their weights (1 each,
/// or fading with age, [`age_weights`]).
fn members_holding<'a>(
    group: &Group<'a>,
    holds: impl Fn(&Config) -> bool,
) -> (Vec<&'a Config>, Vec<f64>) {
    let mut found: Vec<(usize, &Config)> = group
        .members
        .iter()
        .filter(|(_, c)| holds(c))
        .copied()
        .collect();
    found.sort_by_key(|(n, _)| *n);
    let w = if group.flat {
        vec![1.0; found.len()]
    } else {
        age_weights(found.len())
    };
    (found.into_iter().map(|(_, c)| c).collect(), w)
}

/// The values `name` took in `group` (where active and inside `dist`), oldest trial first,
/// with their weights.
fn values_of(group: &Group, name: &str, dist: &Distribution) -> (Vec<ParamValue>, Vec<f64>) {
    let (configs, w) = members_holding(group, |c| c.get(name).is_some_and(|v| dist.contains(v)));
    (
        configs
            .iter()
            .filter_map(|c| c.get(name).copied())
            .collect(),
        w,
    )
}

/// Whether the history is of a study with several objectives.
fn multi_objective(history: &[Observation]) -> bool {
    history.iter().any(|o| o.values.len() > 1)
}

/// The multi-objective split (see the module's notes): good and bad groups, or `None` while
/// fewer than `startup` trials are usable.
fn split_multi<'a>(history: &'a [Observation], startup: usize) -> Option<(Group<'a>, Group<'a>)> {
    let finite = |o: &Observation| !o.values.is_empty() && o.values.iter().all(|v| v.is_finite());
    let mut complete: Vec<&Observation> = Vec::new();
    let mut pruned: Vec<&Observation> = Vec::new();
    let mut infeasible: Vec<&Observation> = Vec::new();
    for o in history {
        match o.state {
            TrialState::Running | TrialState::Interrupted => {}
            _ if o.infeasible() => infeasible.push(o),
            TrialState::Complete if finite(o) => complete.push(o),
            TrialState::Pruned if o.intermediate.last().is_some_and(|l| !l.is_nan()) => {
                pruned.push(o)
            }
            _ => {}
        }
    }
    let n = complete.len() + pruned.len() + infeasible.len();
    if n < startup.max(1) {
        return None;
    }
    let mut left = gamma(n);
    let mut good: Vec<(usize, &Config)> = Vec::new();
    let mut bad: Vec<(usize, &Config)> = Vec::new();
    // Complete trials: whole fronts, then the front that does not fit cut by hypervolume.
    let losses: Vec<Vec<f64>> = complete.iter().map(|o| o.values.clone()).collect();
    let fronts = pareto::fronts(&losses, &vec![0.0; losses.len()]);
    let take = left.min(complete.len());
    let mut chosen = vec![false; complete.len()];
    let mut front = 0;
    let mut count = 0;
    loop {
        let members: Vec<usize> = (0..complete.len())
            .filter(|&i| fronts[i] == front)
            .collect();
        if members.is_empty() || count >= take {
            break;
        }
        if count + members.len() <= take {
            members.iter().for_each(|&i| chosen[i] = true);
            count += members.len();
        } else {
            let points: Vec<Vec<f64>> = members.iter().map(|&i| losses[i].clone()).collect();
            let reference = pareto::reference_point(&points);
            for k in pareto::greedy_subset(&points, take - count, &reference) {
                chosen[members[k]] = true;
            }
            count = take;
        }
        front += 1;
    }
    for (o, c) in complete.iter().zip(&chosen) {
        if *c {
            good.push((o.number, &o.config));
        } else {
            bad.push((o.number, &o.config));
        }
    }
    left -= count;
    // Pruned trials: the longest-running first, then by their last value on the score.
    pruned.sort_by(|a, b| {
        b.intermediate
            .len()
            .cmp(&a.intermediate.len())
            .then(
                a.intermediate
                    .last()
                    .unwrap_or(&f64::INFINITY)
                    .total_cmp(b.intermediate.last().unwrap_or(&f64::INFINITY)),
            )
            .then(a.number.cmp(&b.number))
    });
    infeasible.sort_by(|a, b| {
        pareto::violation(&a.constraints)
            .total_cmp(&pareto::violation(&b.constraints))
            .then(a.number.cmp(&b.number))
    });
    for o in pruned.into_iter().chain(infeasible) {
        if left > 0 {
            good.push((o.number, &o.config));
            left -= 1;
        } else {
            bad.push((o.number, &o.config));
        }
    }
    Some((
        Group {
            members: good,
            flat: true,
        },
        Group {
            members: bad,
            flat: false,
        },
    ))
}

/// Maps a numeric distribution to the real line the mixture lives on, and back.
#[derive(Clone, Copy, Debug)]
struct Axis {
    low: f64,
    high: f64,
    log: bool,
}

impl Axis {
    fn of(dist: &Distribution) -> Option<Axis> {
        match *dist {
            Distribution::Int { low, high, log } => {
                let (l, h) = (low as f64 - 0.5, high as f64 + 0.5);
                let (l, h) = if log {
                    (l.max(0.5).ln(), h.ln())
                } else {
                    (l, h)
                };
                Some(Axis {
                    low: l,
                    high: h,
                    log,
                })
            }
            Distribution::Float { low, high, log } => {
                let (l, h) = if log {
                    (low.ln(), high.ln())
                } else {
                    (low, high)
                };
                Some(Axis {
                    low: l,
                    high: h,
                    log,
                })
            }
            Distribution::Categorical { .. } => None,
        }
    }

    fn axis_point(&self, v: ParamValue) -> f64 {
        let x = match v {
            ParamValue::Int(i) => i as f64,
            ParamValue::Float(x) => x,
            ParamValue::Cat(i) => i as f64,
        };
        if self.log {
            x.ln()
        } else {
            x
        }
    }

    /// An integer's bin `[v - 0.5, v + 0.5]` on the axis; `None` for a float.
    fn bin(&self, v: ParamValue) -> Option<(f64, f64)> {
        let ParamValue::Int(i) = v else { return None };
        let (a, b) = (i as f64 - 0.5, i as f64 + 0.5);
        Some(if self.log {
            (a.max(0.5).ln().max(self.low), b.ln())
        } else {
            (a, b)
        })
    }

    /// The value of the distribution nearest to axis point `t`.
    fn value(&self, t: f64, dist: &Distribution) -> ParamValue {
        let x = if self.log { t.exp() } else { t };
        match *dist {
            Distribution::Int { low, high, .. } => {
                ParamValue::Int((x.round() as i64).clamp(low, high))
            }
            Distribution::Float { low, high, .. } => ParamValue::Float(x.clamp(low, high)),
            Distribution::Categorical { .. } => ParamValue::Cat(0),
        }
    }
}

/// A Gaussian mixture truncated to `[low, high]`.
#[derive(Clone, Debug)]
struct Parzen {
    low: f64,
    high: f64,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// Normalised component weights.
    weights: Vec<f64>,
    /// Log of each component's mass inside `[low, high]`.
    log_mass: Vec<f64>,
}

impl Parzen {
    fn fit(axis: &Axis, points: &[f64], weights: &[f64], prior_weight: f64) -> Parzen {
        let (low, high) = (axis.low, axis.high);
        let width = high - low;
        let mut mus: Vec<f64> = points.iter().map(|t| t.clamp(low, high)).collect();
        let n = mus.len();
        // Neighbour bandwidths over the sorted observations (the prior takes no part), the
        // range ends bounding the outermost; with two or more observations the outermost take
        // their inner neighbour's distance alone (Optuna's `consider_endpoints=False`).
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        let mut sigmas = vec![width; n];
        for (k, &i) in order.iter().enumerate() {
            let left = if k == 0 { low } else { mus[order[k - 1]] };
            let right = if k + 1 == n { high } else { mus[order[k + 1]] };
            sigmas[i] = (mus[i] - left).max(right - mus[i]);
        }
        if n >= 2 {
            let (first, second) = (order[0], order[1]);
            let (last, before) = (order[n - 1], order[n - 2]);
            sigmas[first] = mus[second] - mus[first];
            sigmas[last] = mus[last] - mus[before];
        }
        // The magic clip counts the prior among the kernels.
        let min_sigma = width / (2.0 + n as f64).min(100.0);
        for s in &mut sigmas {
            *s = s.clamp(min_sigma, width).max(f64::MIN_POSITIVE);
        }
        mus.push(0.5 * (low + high));
        sigmas.push(width.max(f64::MIN_POSITIVE));
        let w = mixture_weights(weights, prior_weight);
        let log_mass = mus
            .iter()
            .zip(&sigmas)
            .map(|(m, s)| log_normal_mass((low - m) / s, (high - m) / s))
            .collect();
        Parzen {
            low,
            high,
            mus,
            sigmas,
            weights: w,
            log_mass,
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        let k = pick_weighted(&self.weights, rng);
        self.sample_kernel(k, rng)
    }

    /// One draw from component `k` alone, truncated to the range.
    fn sample_kernel(&self, k: usize, rng: &mut ChaCha8Rng) -> f64 {
        for _ in 0..MAX_REJECTIONS {
            let z: f64 = rng.sample(StandardNormal);
            let t = self.mus[k] + z * self.sigmas[k];
            if (self.low..=self.high).contains(&t) {
                return t;
            }
        }
        rng.gen_range(self.low..=self.high)
    }

    /// The log density of component `k` at axis point `t` (inside the range).
    fn log_kernel(&self, k: usize, t: f64) -> f64 {
        let z = (t - self.mus[k]) / self.sigmas[k];
        -self.sigmas[k].ln()
            - 0.5 * z * z
            - self.log_mass[k]
            - 0.5 * (2.0 * std::f64::consts::PI).ln()
    }

    /// The log of component `k`'s density at value `v`, or for an integer its mass on the
    /// integer's bin `[v - 0.5, v + 0.5]` (Optuna's discrete truncated normals).
    fn log_kernel_at(&self, k: usize, axis: &Axis, v: ParamValue) -> f64 {
        match axis.bin(v) {
            Some((a, b)) => {
                let (m, s) = (self.mus[k], self.sigmas[k]);
                log_normal_mass((a - m) / s, (b - m) / s) - self.log_mass[k]
            }
            None => self.log_kernel(k, axis.axis_point(v).clamp(self.low, self.high)),
        }
    }

    #[cfg(test)]
    fn log_pdf(&self, t: f64) -> f64 {
        let terms: Vec<f64> = (0..self.mus.len())
            .map(|k| self.weights[k].ln() + self.log_kernel(k, t))
            .collect();
        log_sum_exp(&terms)
    }

    /// The mixture's log density at value `v` (log mass on its bin for an integer).
    fn log_prob(&self, axis: &Axis, v: ParamValue) -> f64 {
        let terms: Vec<f64> = (0..self.mus.len())
            .map(|k| self.weights[k].ln() + self.log_kernel_at(k, axis, v))
            .collect();
        log_sum_exp(&terms)
    }
}

/// The mixture weights of the observations' kernels and the prior's, normalised; the prior
/// alone when there are no observations (as Optuna's `_ParzenEstimator`).
fn mixture_weights(weights: &[f64], prior_weight: f64) -> Vec<f64> {
    if weights.is_empty() {
        return vec![1.0];
    }
    let mut w = weights.to_vec();
    w.push(prior_weight.max(0.0));
    let total: f64 = w.iter().sum();
    if total > 0.0 {
        w.iter_mut().for_each(|x| *x /= total);
    }
    w
}

/// The kernels of a categorical Parzen estimator (Optuna 5's): one per observation, which puts
/// `1 + p / (n + 1)` on its own choice and `p / (n + 1)` on every other one before normalising
/// (`p` the prior weight, `n` the observations), then the uniform prior's; with their weights
/// ([`mixture_weights`]). Observations outside the choices are left out.
fn categorical_kernels(
    n_choices: usize,
    (vs, ws): (&[ParamValue], &[f64]),
    prior_weight: f64,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let k = n_choices as f64;
    let obs: Vec<(usize, f64)> = vs
        .iter()
        .zip(ws)
        .filter_map(|(v, &w)| match v {
            ParamValue::Cat(i) if *i < n_choices => Some((*i, w)),
            _ => None,
        })
        .collect();
    let fill = prior_weight.max(0.0) / (obs.len() + 1) as f64;
    let row_total = 1.0 + k * fill;
    let mut rows: Vec<Vec<f64>> = obs
        .iter()
        .map(|&(i, _)| {
            (0..n_choices)
                .map(|j| (f64::from(u8::from(j == i)) + fill) / row_total)
                .collect()
        })
        .collect();
    rows.push(vec![1.0 / k; n_choices]);
    let w: Vec<f64> = obs.iter().map(|&(_, w)| w).collect();
    (rows, mixture_weights(&w, prior_weight))
}

/// The probability of each of `n_choices` under a categorical Parzen estimator: its kernels
/// ([`categorical_kernels`]) mixed by their weights.
fn categorical_pmf(n_choices: usize, obs: (&[ParamValue], &[f64]), prior_weight: f64) -> Vec<f64> {
    let (rows, mix) = categorical_kernels(n_choices, obs, prior_weight);
    let mut p = vec![0.0; n_choices];
    for (row, m) in rows.iter().zip(&mix) {
        p.iter_mut().zip(row).for_each(|(pj, r)| *pj += m * r);
    }
    p
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The complementary error function by the Chebyshev fit of Press, Teukolsky, Vetterling and
/// Flannery, "Numerical Recipes" (2nd ed., 1992, section 6.2): relative error below 1.2e-7
/// everywhere, so tail masses keep their digits.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Standard normal CDF.
#[cfg(test)]
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// `ln(Phi(b) - Phi(a))` for `a <= b`, from the tail the interval lies in (so a bin far out in
/// a tail keeps its relative precision); at least `ln(1e-300)`.
fn log_normal_mass(a: f64, b: f64) -> f64 {
    let upper = |x: f64| 0.5 * erfc(x / std::f64::consts::SQRT_2); // 1 - Phi(x)
    let mass = if a >= 0.0 {
        upper(a) - upper(b)
    } else if b <= 0.0 {
        upper(-b) - upper(-a)
    } else {
        1.0 - upper(-a) - upper(b)
    };
    mass.max(1e-300).ln()
}

/// An index drawn with probability proportional to `weights`.
fn pick_weighted(weights: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len().saturating_sub(1)
}

/// Whether the distribution has a single value (nothing to model).
fn single_value(dist: &Distribution) -> Option<ParamValue> {
    match *dist {
        Distribution::Int { low, high, .. } if low == high => Some(ParamValue::Int(low)),
        Distribution::Float { low, high, .. } if low >= high => Some(ParamValue::Float(low)),
        Distribution::Categorical { ref choices } if choices.len() == 1 => Some(ParamValue::Cat(0)),
        _ => None,
    }
}

/// One parameter of a [`Joint`] estimator: component `k` of the mixture draws it from its
/// `k`-th kernel.
enum Marginal {
    Numeric(Axis, Parzen),
    /// Each kernel's probabilities of the choices ([`categorical_kernels`]).
    Categorical(Vec<Vec<f64>>),
}

/// A mixture of products over several parameters (multivariate TPE, Optuna's
/// `_MixtureOfProductDistribution`): one component per observed trial, whose kernels sit on that
/// trial's values, and one of the priors; a draw takes every parameter from one component.
struct Joint {
    /// Indices into the space's parameters, with their marginals.
    marginals: Vec<(usize, Marginal)>,
    weights: Vec<f64>,
}

impl Joint {
    /// Fits the parameters `params` of `space` to the trials of `group` holding all of them.
    fn fit(space: &SearchSpace, params: &[usize], group: &Group, prior_weight: f64) -> Joint {
        let holds_all = |config: &Config| {
            params.iter().all(|&i| {
                let p = &space.params[i];
                config.get(&p.name).is_some_and(|v| p.dist.contains(v))
            })
        };
        let (members, w) = members_holding(group, holds_all);
        let marginals = params
            .iter()
            .map(|&i| {
                let p = &space.params[i];
                let values: Vec<ParamValue> = members
                    .iter()
                    .filter_map(|c| c.get(&p.name).copied())
                    .collect();
                let marginal = match (&p.dist, Axis::of(&p.dist)) {
                    (_, Some(axis)) => {
                        let points: Vec<f64> = values.iter().map(|v| axis.axis_point(*v)).collect();
                        Marginal::Numeric(axis, Parzen::fit(&axis, &points, &w, prior_weight))
                    }
                    // `Axis::of` has no axis for a categorical alone.
                    (dist, None) => {
                        let n = match dist {
                            Distribution::Categorical { choices } => choices.len(),
                            _ => 1,
                        };
                        Marginal::Categorical(categorical_kernels(n, (&values, &w), prior_weight).0)
                    }
                };
                (i, marginal)
            })
            .collect();
        Joint {
            marginals,
            weights: mixture_weights(&w, prior_weight),
        }
    }

    /// One draw: a component, then each parameter from that component's kernel.
    fn sample(&self, space: &SearchSpace, rng: &mut ChaCha8Rng) -> Vec<ParamValue> {
        let k = pick_weighted(&self.weights, rng);
        self.marginals
            .iter()
            .map(|(i, m)| match m {
                Marginal::Numeric(axis, parzen) => {
                    axis.value(parzen.sample_kernel(k, rng), &space.params[*i].dist)
                }
                Marginal::Categorical(rows) => ParamValue::Cat(pick_weighted(&rows[k], rng)),
            })
            .collect()
    }

    /// The log density of a draw (log mass in its discrete parameters).
    fn log_pdf(&self, x: &[ParamValue]) -> f64 {
        let terms: Vec<f64> = self
            .weights
            .iter()
            .enumerate()
            .map(|(k, w)| {
                w.ln()
                    + self
                        .marginals
                        .iter()
                        .zip(x)
                        .map(|((_, m), v)| match (m, v) {
                            (Marginal::Numeric(axis, parzen), v) => {
                                parzen.log_kernel_at(k, axis, *v)
                            }
                            (Marginal::Categorical(rows), ParamValue::Cat(c)) => {
                                rows[k].get(*c).map_or(f64::NEG_INFINITY, |p| p.ln())
                            }
                            (Marginal::Categorical(_), _) => f64::NEG_INFINITY,
                        })
                        .sum::<f64>()
            })
            .collect();
        log_sum_exp(&terms)
    }
}

/// The parameters (indices into the space) that every finished trial holds, with a value inside
/// their distribution, and that have more than one value: what multivariate TPE models jointly
/// (Optuna's intersection search space over complete and pruned trials; "finished" here means
/// ranked, [`rank`], which leaves out pruned trials without an intermediate value and NaN losses).
fn intersection(space: &SearchSpace, history: &[Observation]) -> Vec<usize> {
    let finished: Vec<&Config> = rank(history).iter().map(|r| r.config).collect();
    (0..space.params.len())
        .filter(|&i| {
            let p = &space.params[i];
            single_value(&p.dist).is_none()
                && !finished.is_empty()
                && finished
                    .iter()
                    .all(|c| c.get(&p.name).is_some_and(|v| p.dist.contains(v)))
        })
        .collect()
}

impl TpeSampler {
    fn suggest_numeric(
        &self,
        dist: &Distribution,
        axis: Axis,
        good: (&[ParamValue], &[f64]),
        bad: (&[ParamValue], &[f64]),
        rng: &mut ChaCha8Rng,
    ) -> ParamValue {
        let pts = |vs: &[ParamValue]| vs.iter().map(|v| axis.axis_point(*v)).collect::<Vec<_>>();
        let l = Parzen::fit(&axis, &pts(good.0), good.1, self.prior_weight);
        let g = Parzen::fit(&axis, &pts(bad.0), bad.1, self.prior_weight);
        let mut best: Option<(f64, ParamValue)> = None;
        for _ in 0..self.n_ei_candidates {
            let v = axis.value(l.sample(rng), dist);
            // Integers are scored by the mass of their rounded value's bin.
            let score = l.log_prob(&axis, v) - g.log_prob(&axis, v);
            if best.is_none_or(|(s, _)| score.total_cmp(&s) == Ordering::Greater) {
                best = Some((score, v));
            }
        }
        best.map_or_else(|| sample_uniform(dist, rng), |(_, v)| v)
    }

    fn suggest_categorical(
        &self,
        n_choices: usize,
        good: (&[ParamValue], &[f64]),
        bad: (&[ParamValue], &[f64]),
        rng: &mut ChaCha8Rng,
    ) -> ParamValue {
        let l = categorical_pmf(n_choices, good, self.prior_weight);
        let g = categorical_pmf(n_choices, bad, self.prior_weight);
        let mut best: Option<(f64, usize)> = None;
        for _ in 0..self.n_ei_candidates {
            let i = pick_weighted(&l, rng);
            let score = l[i].ln() - g[i].ln();
            if best.is_none_or(|(s, _)| score.total_cmp(&s) == Ordering::Greater) {
                best = Some((score, i));
            }
        }
        ParamValue::Cat(best.map_or(0, |(_, i)| i))
    }
}

impl TpeSampler {
    /// The good and bad groups of `history`, or `None` while the startup trials are drawn at
    /// random.
    fn split<'a>(&self, history: &'a [Observation]) -> Option<(Group<'a>, Group<'a>)> {
        let (good, mut bad) = if multi_objective(history) {
            split_multi(history, self.n_startup_trials)?
        } else {
            let ranked = rank(history);
            if ranked.len() < self.n_startup_trials.max(1) {
                return None;
            }
            let n_good = gamma(ranked.len());
            (
                Group::aged(&ranked[..n_good]),
                Group::aged(&ranked[n_good..]),
            )
        };
        self.lie(history, &mut bad);
        Some((good, bad))
    }

    /// With `constant_liar`, adds the running trials (those with a configuration) to `bad`.
    fn lie<'a>(&self, history: &'a [Observation], bad: &mut Group<'a>) {
        if self.constant_liar {
            bad.members.extend(
                history
                    .iter()
                    .filter(|o| o.state == TrialState::Running && !o.config.is_empty())
                    .map(|o| (o.number, &o.config)),
            );
        }
    }

    /// The TPE choice given the split: on one objective with `multivariate`, the parameters of
    /// [`intersection`] jointly (the best of `n_ei_candidates` draws from l by `l / g`), then
    /// the rest one at a time; otherwise every parameter one at a time.
    fn choose(
        &self,
        space: &SearchSpace,
        history: &[Observation],
        (good, bad): (&Group, &Group),
        rng: &mut ChaCha8Rng,
    ) -> Config {
        let mut fixed = Config::new();
        let joint = if self.multivariate && !multi_objective(history) {
            intersection(space, history)
        } else {
            Vec::new()
        };
        if !joint.is_empty() {
            let l = Joint::fit(space, &joint, good, self.prior_weight);
            let g = Joint::fit(space, &joint, bad, self.prior_weight);
            let mut best: Option<(f64, Vec<ParamValue>)> = None;
            for _ in 0..self.n_ei_candidates.max(1) {
                let x = l.sample(space, rng);
                let score = l.log_pdf(&x) - g.log_pdf(&x);
                if best
                    .as_ref()
                    .is_none_or(|(s, _)| score.total_cmp(s) == Ordering::Greater)
                {
                    best = Some((score, x));
                }
            }
            if let Some((_, x)) = best {
                for ((i, _), v) in l.marginals.iter().zip(x) {
                    fixed.insert(space.params[*i].name.clone(), v);
                }
            }
        }
        self.sample_groups(space, (good, bad), true, &fixed, rng)
    }

    /// A configuration from the two groups: the values in `fixed` (a joint draw) as they are, each
    /// other parameter the best of `n_ei_candidates` draws from l(x) by `l / g` (`pick`), or one
    /// draw from l(x) (not `pick`: a candidate for the cost prescreen).
    fn sample_groups(
        &self,
        space: &SearchSpace,
        (good, bad): (&Group, &Group),
        pick: bool,
        fixed: &Config,
        rng: &mut ChaCha8Rng,
    ) -> Config {
        let draws = if pick { self.n_ei_candidates } else { 1 };
        let model = TpeSampler {
            n_ei_candidates: draws,
            ..*self
        };
        sample_with(space, |i, _| {
            let p = &space.params[i];
            if let Some(v) = fixed
                .get(&p.name)
                .copied()
                .or_else(|| single_value(&p.dist))
            {
                return v;
            }
            let (gv, gw) = values_of(good, &p.name, &p.dist);
            let (bv, bw) = values_of(bad, &p.name, &p.dist);
            match (&p.dist, Axis::of(&p.dist)) {
                (Distribution::Categorical { choices }, _) => {
                    model.suggest_categorical(choices.len(), (&gv, &gw), (&bv, &bw), rng)
                }
                (dist, Some(axis)) => {
                    model.suggest_numeric(dist, axis, (&gv, &gw), (&bv, &bw), rng)
                }
                (dist, None) => sample_uniform(dist, rng),
            }
        })
    }
}

impl Sampler for TpeSampler {
    fn name(&self) -> &'static str {
        "tpe"
    }

    fn suggest(
        &mut self,
        space: &SearchSpace,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
    ) -> Config {
        match self.split(history) {
            Some((good, bad)) => self.choose(space, history, (&good, &bad), rng),
            None => RandomSampler.suggest(space, history, rng),
        }
    }

    /// Multi-objective TPE with costs known before training: candidates from the Pareto split
    /// (its TPE choice first), from a split by the score alone (its TPE choice first) and from
    /// the whole space, of which `search::prescreen` keeps the one of the largest expected
    /// hypervolume improvement. The startup trials stay random, as without costs.
    fn suggest_costed(
        &mut self,
        space: &SearchSpace,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
        costs: &mut dyn FnMut(&Config) -> Costs,
    ) -> Config {
        let Some((good, bad)) = self.split(history) else {
            return RandomSampler.suggest(space, history, rng);
        };
        let first = self.choose(space, history, (&good, &bad), rng);
        if !multi_objective(history) || self.n_cost_candidates + self.n_random_candidates <= 1 {
            return first;
        }
        // The score alone: the hypervolume also grows with the best score, whatever its cost.
        let ranked = rank(history);
        let n_good = gamma(ranked.len());
        let mut by_score = (
            Group::aged(&ranked[..n_good]),
            Group::aged(&ranked[n_good..]),
        );
        self.lie(history, &mut by_score.1);
        let mut candidates = vec![first];
        let none = Config::new();
        for k in 1..self.n_cost_candidates {
            let c = if k % 2 == 1 {
                self.sample_groups(space, (&by_score.0, &by_score.1), k == 1, &none, rng)
            } else {
                self.sample_groups(space, (&good, &bad), false, &none, rng)
            };
            candidates.push(c);
        }
        for _ in 0..self.n_random_candidates {
            candidates.push(RandomSampler.suggest(space, history, rng));
        }
        let known: Vec<Costs> = candidates.iter().map(costs).collect();
        let i = prescreen::choose(space, history, &candidates, &known, rng);
        candidates.swap_remove(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The estimators are Optuna 5's: bandwidths, mixture weights, densities and categorical
    /// probabilities as its `_ParzenEstimator` computes them (prior weight 1, magic clip, no
    /// endpoints; the expected values printed by Optuna 5.0.0 for these observations).
    #[test]
    fn estimators_match_optuna() {
        let axis = Axis {
            low: 0.0,
            high: 1.0,
            log: false,
        };
        // Observations, then Optuna's centres, bandwidths and density at 0.4.
        type Case<'a> = (&'a [f64], &'a [f64], &'a [f64], f64);
        let cases: [Case; 3] = [
            (&[0.3], &[0.3, 0.5], &[0.7, 1.0], 1.0744100726936454),
            (
                &[0.2, 0.5, 0.9],
                &[0.2, 0.5, 0.9, 0.5],
                &[0.3, 0.4, 0.4, 1.0],
                1.1181754672458621,
            ),
            (
                &[0.1, 0.1, 0.15, 0.7],
                &[0.1, 0.1, 0.15, 0.7, 0.5],
                &[1.0 / 6.0, 1.0 / 6.0, 0.55, 0.55, 1.0],
                0.9142687925304781,
            ),
        ];
        for (obs, mus, sigmas, pdf) in cases {
            let p = Parzen::fit(&axis, obs, &vec![1.0; obs.len()], 1.0);
            for (got, want) in p.mus.iter().zip(mus).chain(p.sigmas.iter().zip(sigmas)) {
                assert!((got - want).abs() < 1e-12, "{obs:?}: {got} vs {want}");
            }
            assert_eq!(p.weights.len(), obs.len() + 1);
            assert!((p.log_pdf(0.4).exp() - pdf).abs() < 1e-5, "{obs:?}");
        }
        let cat = |v: &[usize]| v.iter().map(|&i| ParamValue::Cat(i)).collect::<Vec<_>>();
        let one = categorical_pmf(3, (&cat(&[0]), &[1.0]), 1.0);
        let many_obs = cat(&[0, 0, 1, 2, 2, 2, 1, 0, 2]);
        let many = categorical_pmf(3, (&many_obs, &[1.0; 9]), 1.0);
        let want = [
            [0.4666666666666666, 0.2666666666666667, 0.2666666666666667],
            [0.3333333333333333, 0.2564102564102564, 0.41025641025641035],
        ];
        for (got, want) in [one, many].iter().zip(want) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
            }
        }
        assert_eq!(categorical_pmf(4, (&[], &[]), 1.0), vec![0.25; 4]);
    }

    /// A space of the given parameters (no conditions), from the MLP short form's shell.
    fn space_of(params: Vec<(&str, Distribution)>) -> SearchSpace {
        let text = "(task: Classification, model: Mlp(()))";
        let mut space = SearchSpace::from_str_named(text, "t", "t.ron").expect("valid space");
        space.params = params
            .into_iter()
            .map(|(name, dist)| crate::space::ParamSpec {
                name: name.into(),
                dist,
                conditions: vec![],
                default: None,
            })
            .collect();
        space
    }

    /// A complete trial of a study of one objective.
    fn done(number: usize, config: Config, loss: f64) -> Observation {
        Observation {
            number,
            config,
            state: TrialState::Complete,
            loss: Some(loss),
            intermediate: vec![],
            values: vec![loss],
            constraints: vec![],
        }
    }

    /// The joint estimator is Optuna 5's multivariate `_ParzenEstimator`: a mixture of products
    /// of the per-parameter kernels, integers scored by their bin's mass (values printed by
    /// Optuna 5.0.0 for these observations).
    #[test]
    fn the_joint_estimator_matches_optuna() {
        let width =
            SearchSpace::from_str_named("(task: Classification, model: Mlp(()))", "t", "t.ron")
                .expect("valid space")
                .params
                .into_iter()
                .find(|p| p.name == "width")
                .expect("the short form has a width")
                .dist;
        let space = space_of(vec![
            (
                "x",
                Distribution::Float {
                    low: 0.0,
                    high: 1.0,
                    log: false,
                },
            ),
            (
                "n",
                Distribution::Int {
                    low: 1,
                    high: 3,
                    log: false,
                },
            ),
            ("c", width),
        ]);
        let point = |x: f64, n: i64, c: usize| {
            Config::from([
                ("x".to_string(), ParamValue::Float(x)),
                ("n".to_string(), ParamValue::Int(n)),
                ("c".to_string(), ParamValue::Cat(c)),
            ])
        };
        let configs = [point(0.2, 1, 0), point(0.5, 3, 1), point(0.9, 2, 1)];
        let group = Group {
            members: configs.iter().enumerate().collect(),
            flat: false,
        };
        let joint = Joint::fit(&space, &[0, 1, 2], &group, 1.0);
        let cases = [
            ((0.4, 2, 1), -1.6790163042361141),
            ((0.85, 1, 0), -2.759582943069648),
            ((0.0, 3, 2), -3.1584594278430953),
        ];
        for ((x, n, c), want) in cases {
            let v = [ParamValue::Float(x), ParamValue::Int(n), ParamValue::Cat(c)];
            let got = joint.log_pdf(&v);
            assert!((got - want).abs() < 1e-5, "{v:?}: {got} vs {want}");
        }
        // One integer alone: the mass of each value's bin.
        let ints = Joint::fit(&space, &[1], &group, 1.0);
        let want = [
            -1.1604251946806707,
            -0.9853885190056955,
            -1.1604251946806707,
        ];
        for (n, want) in (1..=3).zip(want) {
            let got = ints.log_pdf(&[ParamValue::Int(n)]);
            assert!((got - want).abs() < 1e-5, "{n}: {got} vs {want}");
        }
    }

    /// Two good trials with opposite values of two parameters: multivariate TPE keeps each
    /// good trial's values together; one parameter at a time mixes them as often as not.
    #[test]
    fn multivariate_draws_keep_a_good_trials_values_together() {
        let space = space_of(vec![
            (
                "a",
                Distribution::Float {
                    low: 0.0,
                    high: 1.0,
                    log: false,
                },
            ),
            (
                "b",
                Distribution::Float {
                    low: 0.0,
                    high: 1.0,
                    log: false,
                },
            ),
        ]);
        let point = |a: f64, b: f64| {
            Config::from([
                ("a".to_string(), ParamValue::Float(a)),
                ("b".to_string(), ParamValue::Float(b)),
            ])
        };
        // Good: (0.1, 0.9) and (0.9, 0.1); bad: the other two corners and the middle.
        let mut history = vec![done(0, point(0.1, 0.9), 0.0), done(1, point(0.9, 0.1), 0.0)];
        for k in 0..18 {
            let (a, b) = match k % 3 {
                0 => (0.1, 0.1),
                1 => (0.9, 0.9),
                _ => (0.5, 0.5),
            };
            let jitter = 0.01 * (k / 3) as f64;
            history.push(done(2 + k, point(a + jitter, b - jitter), 1.0));
        }
        let paired = |multivariate: bool| {
            let mut tpe = TpeSampler {
                multivariate,
                ..TpeSampler::default()
            };
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let n = 200;
            let hits = (0..n)
                .filter(|_| {
                    let c = tpe.suggest(&space, &history, &mut rng);
                    match (c.get("a"), c.get("b")) {
                        (Some(ParamValue::Float(a)), Some(ParamValue::Float(b))) => {
                            (a - 0.5) * (b - 0.5) < 0.0
                        }
                        other => panic!("missing parameters: {other:?}"),
                    }
                })
                .count();
            hits as f64 / n as f64
        };
        let (joint, apart) = (paired(true), paired(false));
        assert!(joint > 0.85, "multivariate kept {joint} of the pairs");
        assert!(apart < 0.8, "one at a time kept {apart} of the pairs");
    }

    /// A running trial counts as bad (constant liar): a second worker asking while the first
    /// trains near the best trial is sent further away from it.
    #[test]
    fn running_trials_count_as_bad() {
        let space = space_of(vec![(
            "a",
            Distribution::Float {
                low: 0.0,
                high: 1.0,
                log: false,
            },
        )]);
        let point = |a: f64| Config::from([("a".to_string(), ParamValue::Float(a))]);
        let mut history: Vec<Observation> = (0..10)
            .map(|k| {
                let a = 0.05 + 0.1 * k as f64;
                done(k, point(a), (a - 0.6).abs())
            })
            .collect();
        history.push(Observation {
            number: 10,
            config: point(0.6),
            state: TrialState::Running,
            loss: None,
            intermediate: vec![],
            values: vec![],
            constraints: vec![],
        });
        let gap = |constant_liar: bool| {
            let mut tpe = TpeSampler {
                constant_liar,
                ..TpeSampler::default()
            };
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            let n = 60;
            (0..n)
                .map(|_| match tpe.suggest(&space, &history, &mut rng).get("a") {
                    Some(ParamValue::Float(a)) => (a - 0.6).abs(),
                    other => panic!("a missing: {other:?}"),
                })
                .sum::<f64>()
                / n as f64
        };
        let (lying, ignoring) = (gap(true), gap(false));
        assert!(lying > ignoring + 0.01, "{lying} vs {ignoring}");
    }

    #[test]
    fn suggestions_concentrate_near_the_good_trials() {
        let text = "(task: Classification, model: Mlp((dropout: Range(0.0, 0.9))))";
        let space = SearchSpace::from_str_named(text, "t", "t.ron").expect("valid space");
        let history: Vec<Observation> = (0..30)
            .map(|k| {
                let x = k as f64 * 0.03;
                let mut config =
                    RandomSampler.suggest(&space, &[], &mut ChaCha8Rng::seed_from_u64(0));
                config.insert("dropout".into(), ParamValue::Float(x));
                Observation {
                    number: k,
                    config,
                    state: TrialState::Complete,
                    loss: Some((x - 0.6).powi(2)),
                    intermediate: vec![],
                    values: vec![(x - 0.6).powi(2)],
                    constraints: vec![],
                }
            })
            .collect();
        let mut tpe = TpeSampler::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 50;
        let mean_gap: f64 = (0..n)
            .map(
                |_| match tpe.suggest(&space, &history, &mut rng).get("dropout") {
                    Some(ParamValue::Float(x)) => (x - 0.6).abs(),
                    other => panic!("dropout missing: {other:?}"),
                },
            )
            .sum::<f64>()
            / n as f64;
        // Uniform draws on [0, 0.9] would be 0.25 away on average.
        assert!(mean_gap < 0.1, "{mean_gap}");
    }

    #[test]
    fn failed_and_running_trials_are_ignored_and_pruned_ones_rank_last() {
        let obs = |number, state, loss: Option<f64>, intermediate: Vec<f64>| Observation {
            number,
            config: Config::new(),
            state,
            loss,
            intermediate,
            values: loss.into_iter().collect(),
            constraints: vec![],
        };
        let history = vec![
            obs(0, TrialState::Pruned, None, vec![0.1]),
            obs(1, TrialState::Complete, Some(0.5), vec![]),
            obs(2, TrialState::Failed, None, vec![0.0]),
            obs(3, TrialState::Running, None, vec![0.0]),
            obs(4, TrialState::Pruned, None, vec![0.9, 0.8]),
            obs(5, TrialState::Complete, Some(0.2), vec![]),
        ];
        let order: Vec<usize> = rank(&history).iter().map(|r| r.number).collect();
        assert_eq!(order, [5, 1, 4, 0]);
    }

    #[test]
    fn gamma_takes_a_tenth_rounded_up_and_at_most_25() {
        assert_eq!(gamma(1), 1);
        assert_eq!(gamma(10), 1);
        assert_eq!(gamma(11), 2);
        assert_eq!(gamma(1000), 25);
    }

    #[test]
    fn the_normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((normal_cdf(-1.96) - 0.024_997_895).abs() < 1e-6);
    }

    #[test]
    fn old_trials_fade_only_past_25() {
        assert_eq!(age_weights(24), vec![1.0; 24]);
        let w = age_weights(40);
        assert!((w[0] - 1.0 / 40.0).abs() < 1e-12);
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
        assert_eq!(w[15..], [1.0; 25]);
    }

    #[test]
    fn a_truncated_mixture_integrates_to_one() {
        let axis = Axis {
            low: 0.0,
            high: 1.0,
            log: false,
        };
        let p = Parzen::fit(&axis, &[0.1, 0.15, 0.9], &[1.0, 1.0, 1.0], 1.0);
        let n = 10_000;
        let integral: f64 = (0..n)
            .map(|k| p.log_pdf((k as f64 + 0.5) / n as f64).exp() / n as f64)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
    }
}
