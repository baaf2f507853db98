//! Grid search: every point of a small discrete space, each once, in a seeded shuffled order.
//!
//! Conditional parameters are enumerated only where their conditions hold, so a conditional
//! subtree (say, per-layer widths under `per_layer_width = true`) expands into exactly the
//! configurations that [`SearchSpace::validate_config`] accepts.

use super::{Observation, Sampler, SearchError};
use crate::space::{Config, Distribution, ParamValue, SearchSpace};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// The most grid points a [`GridSampler`] will enumerate.
pub const MAX_GRID_POINTS: usize = 1_000_000;

/// Proposes the grid points in a shuffled order: the i-th suggestion is the i-th point, with
/// i = `history.len()`, skipping points already in the history; once every point has been
/// tried it starts over.
#[derive(Clone, Debug)]
pub struct GridSampler {
    /// Value indices of the active parameters of every point, in the space's order, flattened.
    digits: Vec<u32>,
    /// Where each point starts in `digits` (one extra entry closes the last point).
    starts: Vec<usize>,
    /// The visiting order, drawn from the study's RNG at the first suggestion.
    order: Option<Vec<u32>>,
}

impl GridSampler {
    /// Enumerates the grid of `space`; refuses continuous ranges and grids over
    /// [`MAX_GRID_POINTS`] points.
    pub fn new(space: &SearchSpace) -> Result<GridSampler, SearchError> {
        for p in &space.params {
            if let Distribution::Float { low, high, .. } = p.dist {
                if low < high {
                    return Err(SearchError::ContinuousParameter {
                        param: p.name.clone(),
                        low,
                        high,
                    });
                }
            }
        }
        let too_large = || SearchError::GridTooLarge {
            param: widest_param(space),
            limit: MAX_GRID_POINTS,
        };
        // Count first (cheaply, stopping at the limit), then store the points.
        let mut counter = Expansion {
            store: false,
            count: 0,
            digits: Vec::new(),
            starts: Vec::new(),
        };
        counter
            .expand(space, 0, &mut Config::new(), &mut Vec::new())
            .map_err(|()| too_large())?;
        let mut points = Expansion {
            store: true,
            count: 0,
            digits: Vec::new(),
            starts: Vec::with_capacity(counter.count + 1),
        };
        points.starts.push(0);
        points
            .expand(space, 0, &mut Config::new(), &mut Vec::new())
            .map_err(|()| too_large())?;
        Ok(GridSampler {
            digits: points.digits,
            starts: points.starts,
            order: None,
        })
    }

    /// Number of grid points.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn point(&self, i: usize) -> &[u32] {
        &self.digits[self.starts[i]..self.starts[i + 1]]
    }

    /// The configuration of grid point `i`.
    fn config(&self, space: &SearchSpace, i: usize) -> Config {
        let mut digits = self.point(i).iter();
        let mut config = Config::new();
        for p in &space.params {
            if p.is_active(&config) {
                // Every grid point holds one digit per parameter active in it, in order.
                let d = digits.next().copied().unwrap_or(0);
                config.insert(p.name.clone(), value_of(&p.dist, d));
            }
        }
        config
    }
}

/// A depth-first walk over the active parameters that counts, and optionally stores, points.
struct Expansion {
    store: bool,
    count: usize,
    digits: Vec<u32>,
    starts: Vec<usize>,
}

impl Expansion {
    /// Visits every completion of `partial` from parameter `at` on; `Err` past the limit.
    fn expand(
        &mut self,
        space: &SearchSpace,
        at: usize,
        partial: &mut Config,
        prefix: &mut Vec<u32>,
    ) -> Result<(), ()> {
        let Some(p) = space.params.get(at) else {
            if self.count >= MAX_GRID_POINTS {
                return Err(());
            }
            self.count += 1;
            if self.store {
                self.digits.extend_from_slice(prefix);
                self.starts.push(self.digits.len());
            }
            return Ok(());
        };
        if !p.is_active(partial) {
            return self.expand(space, at + 1, partial, prefix);
        }
        let n = match p.dist.cardinality() {
            Some(n) if n <= MAX_GRID_POINTS as u64 => n as u32,
            _ => return Err(()),
        };
        for d in 0..n {
            partial.insert(p.name.clone(), value_of(&p.dist, d));
            prefix.push(d);
            let r = self.expand(space, at + 1, partial, prefix);
            prefix.pop();
            r?;
        }
        partial.remove(&p.name);
        Ok(())
    }
}

/// The `d`-th value of a discrete distribution.
fn value_of(dist: &Distribution, d: u32) -> ParamValue {
    match dist {
        Distribution::Int { low, .. } => ParamValue::Int(low + d as i64),
        Distribution::Float { low, .. } => ParamValue::Float(*low),
        Distribution::Categorical { .. } => ParamValue::Cat(d as usize),
    }
}

/// The grid digits of `config`, or `None` when it is not a point of the grid.
fn digits_of(space: &SearchSpace, config: &Config) -> Option<Vec<u32>> {
    space.validate_config(config).ok()?;
    let mut out = Vec::with_capacity(config.len());
    for p in &space.params {
        let Some(v) = config.get(&p.name) else {
            continue;
        };
        let d = match (&p.dist, v) {
            (Distribution::Int { low, .. }, ParamValue::Int(x)) => u32::try_from(x - low).ok()?,
            (Distribution::Float { .. }, ParamValue::Float(_)) => 0,
            (Distribution::Categorical { .. }, ParamValue::Cat(i)) => u32::try_from(*i).ok()?,
            _ => return None,
        };
        out.push(d);
    }
    Some(out)
}

/// The parameter with the most values: the first one to narrow when the grid is too large.
fn widest_param(space: &SearchSpace) -> String {
    space
        .params
        .iter()
        .max_by_key(|p| p.dist.cardinality().unwrap_or(u64::MAX))
        .map(|p| p.name.clone())
        .unwrap_or_default()
}

impl Sampler for GridSampler {
    fn name(&self) -> &'static str {
        "grid"
    }

    fn suggest(
        &mut self,
        space: &SearchSpace,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
    ) -> Config {
        let n = self.len();
        if n == 0 {
            return Config::new();
        }
        if self.order.is_none() {
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.shuffle(rng);
            self.order = Some(order);
        }
        let Some(order) = self.order.as_deref() else {
            return Config::new();
        };
        let tried: HashSet<Vec<u32>> = history
            .iter()
            .filter_map(|o| digits_of(space, &o.config))
            .collect();
        let start = history.len() % n;
        let pick = (0..n)
            .map(|k| order[(start + k) % n] as usize)
            .find(|&i| !tried.contains(self.point(i)))
            .unwrap_or(order[start] as usize);
        self.config(space, pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(model: &str) -> SearchSpace {
        let text = format!("(task: Classification, model: Mlp(({model})))");
        SearchSpace::from_str_named(&text, "t", "t.ron").expect("test space is valid")
    }

    #[test]
    fn conditional_widths_expand_only_where_active() {
        // depth 1..2, per_layer_width false -> 2 widths each; true -> 2 + 4 widths.
        let s = space(
            "depth: Range(1, 2), width: Choice([8, 16]), per_layer_width: Choice([false, true])",
        );
        let g = GridSampler::new(&s).expect("small grid");
        assert_eq!(g.len(), 2 * 2 + (2 + 4));
        for i in 0..g.len() {
            s.validate_config(&g.config(&s, i))
                .expect("grid point is valid");
        }
    }

    #[test]
    fn continuous_ranges_are_refused_by_name() {
        let s = space("dropout: Range(0.0, 0.5)");
        let e = GridSampler::new(&s).expect_err("continuous");
        assert!(e.to_string().contains("`dropout`"), "{e}");
    }

    #[test]
    fn a_float_range_of_one_value_counts_once() {
        let s = space("dropout: Range(0.25, 0.25), depth: Range(1, 3), width: Fixed(64)");
        assert_eq!(GridSampler::new(&s).expect("discrete").len(), 3);
    }
}
