//! The size of a search space: how many configurations its discrete parameters make, counted
//! with their conditions and without enumerating them, and which parameters are continuous.
//!
//! Parameters are visited in order (parents before children) carrying, per assignment of the
//! parents that a later condition still reads, the number of ways to get there. A parameter no
//! condition reads multiplies the count by its number of values; a parent splits the assignment
//! by its value until its last reader is passed. So a space of many independent choices (cells
//! of 12 edges) costs a few states, where enumerating it would cost billions.

use super::{thousands, Condition, Distribution, SearchSpace};
use std::collections::HashMap;
use std::fmt;

/// The most parent assignments carried at once before counting gives up.
const MAX_STATES: usize = 1_000_000;

/// How large a space is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceSize {
    /// Configurations of the discrete parameters (each continuous one counted once); `None`
    /// when counting would carry too many parent assignments. Saturates at `u128::MAX`.
    pub discrete: Option<u128>,
    /// The parameters drawn from a continuous range, in the space's order.
    pub continuous: Vec<String>,
}

impl SpaceSize {
    /// The number of configurations, when it is finite and was counted.
    pub fn finite(&self) -> Option<u128> {
        self.discrete.filter(|_| self.continuous.is_empty())
    }
}

impl fmt::Display for SpaceSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = match self.discrete {
            Some(u128::MAX) => "more than 10^38".to_string(),
            Some(n) => thousands(n),
            None => "too many to count".to_string(),
        };
        match self.continuous.len() {
            0 => write!(f, "{count} configurations"),
            n => write!(
                f,
                "continuous ({n} continuous parameter{}: {}); the discrete ones make {count} combinations",
                if n == 1 { "" } else { "s" },
                self.continuous.join(", ")
            ),
        }
    }
}

/// Values of parents that conditions still read, by parameter index, sorted.
type State = Vec<(usize, i64)>;

fn holds(c: &Condition, state: &State, index: &HashMap<&str, usize>) -> bool {
    let value = |p: &str| {
        let i = index.get(p)?;
        state.iter().find(|(j, _)| j == i).map(|(_, v)| *v)
    };
    match c {
        Condition::OneOf { param, choices } => {
            value(param).is_some_and(|v| choices.iter().any(|c| *c as i64 == v))
        }
        Condition::AtLeast { param, min } => value(param).is_some_and(|v| v >= *min),
    }
}

impl SearchSpace {
    /// Counts the configurations the space can produce (each active parameter set to one of its
    /// values), with conditions; continuous parameters are listed rather than counted.
    pub fn size(&self) -> SpaceSize {
        let index: HashMap<&str, usize> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        // The last parameter whose conditions read each parameter.
        let mut last_reader: Vec<Option<usize>> = vec![None; self.params.len()];
        for (j, p) in self.params.iter().enumerate() {
            for c in &p.conditions {
                if let Some(&i) = index.get(c.parent()) {
                    last_reader[i] = Some(j);
                }
            }
        }
        let mut continuous = Vec::new();
        let mut states: HashMap<State, u128> = HashMap::from([(State::new(), 1)]);
        for (j, p) in self.params.iter().enumerate() {
            let mut next: HashMap<State, u128> = HashMap::new();
            for (state, count) in states {
                let active = p.conditions.iter().all(|c| holds(c, &state, &index));
                if !active {
                    *next.entry(state).or_default() += count;
                    continue;
                }
                if matches!(p.dist, Distribution::Float { low, high, .. } if low < high)
                    && !continuous.contains(&p.name)
                {
                    continuous.push(p.name.clone());
                }
                match (last_reader[j], &p.dist) {
                    (Some(_), Distribution::Categorical { choices }) => {
                        for v in 0..choices.len() as i64 {
                            add(&mut next, with(&state, j, v), count);
                        }
                    }
                    (Some(_), Distribution::Int { low, high, .. }) => {
                        for v in *low..=*high {
                            add(&mut next, with(&state, j, v), count);
                        }
                    }
                    (_, d) => {
                        let n = d.cardinality().unwrap_or(1).max(1) as u128;
                        add(&mut next, state, count.saturating_mul(n));
                    }
                }
                if next.len() > MAX_STATES {
                    return SpaceSize {
                        discrete: None,
                        continuous,
                    };
                }
            }
            // Parents no later condition reads are forgotten, merging what they told apart.
            states = HashMap::new();
            for (mut state, count) in next {
                state.retain(|(i, _)| last_reader[*i].is_some_and(|r| r > j));
                add(&mut states, state, count);
            }
        }
        SpaceSize {
            discrete: Some(states.values().fold(0u128, |a, c| a.saturating_add(*c))),
            continuous,
        }
    }
}

fn with(state: &State, i: usize, v: i64) -> State {
    let mut s = state.clone();
    s.push((i, v));
    s.sort_unstable();
    s
}

fn add(states: &mut HashMap<State, u128>, state: State, count: u128) {
    let e = states.entry(state).or_default();
    *e = e.saturating_add(count);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(text: &str) -> SearchSpace {
        SearchSpace::from_str_named(text, "t", "t.ron").expect("valid")
    }

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(0u64), "0");
        assert_eq!(thousands(999u64), "999");
        assert_eq!(thousands(1000u64), "1,000");
        assert_eq!(thousands(12_345_678u64), "12,345,678");
    }

    #[test]
    fn per_layer_widths_count_only_where_they_exist() {
        // depth 1..2; shared width (2) or one width per layer (2, or 2 x 2): 2 + 2 + 2 + 4 = 10,
        // times 2 activations; every other parameter is fixed.
        let s = space(
            "(task: Classification, model: Mlp((depth: Range(1, 2), width: Choice([8, 16]),
              per_layer_width: Choice([false, true]), activation: Choice([Relu, Tanh]))),
              train: (optimizer: Fixed(Adam), learning_rate: Fixed(0.01), weight_decay: Fixed(0.0)))",
        );
        let size = s.size();
        assert_eq!(size.continuous, Vec::<String>::new());
        assert_eq!(size.finite(), Some(20));
        assert_eq!(size.to_string(), "20 configurations");
    }

    #[test]
    fn a_continuous_parameter_is_named_and_the_discrete_ones_counted() {
        let s = space(
            "(task: Classification, model: Mlp((depth: Fixed(1), width: Fixed(8))),
              train: (optimizer: Choice([Adam, Sgd]), learning_rate: Fixed(0.01),
                      momentum: Range(0.8, 0.9), weight_decay: Fixed(0.0)))",
        );
        assert_eq!(s.size().continuous, ["momentum"]);
        assert_eq!(s.size().discrete, Some(2));
        assert!(s
            .size()
            .to_string()
            .starts_with("continuous (1 continuous parameter: momentum)"));
    }
}
