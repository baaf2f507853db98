//! Parameter importance by fANOVA on a random forest, the method Optuna uses by default.
//!
//! A forest of 64 regression trees (bootstrap samples, every feature tried at every split, grown
//! until leaves are pure, as scikit-learn's `RandomForestRegressor` that Optuna fits) learns the
//! score from the parameters. Each tree is a piecewise-constant function over the parameter box,
//! so its functional ANOVA decomposition (Hutter, Hoos and Leyton-Brown, ICML 2014) is exact: a
//! parameter's importance in one tree is the variance of the tree's prediction marginalised over
//! every other parameter, divided by the tree's total variance. Importances are averaged over the
//! trees and normalised to sum to 1, as `optuna.importance.get_param_importances` does.
//!
//! Numeric parameters are measured over the whole domain the space gives them, on their own scale
//! (log-uniform ones too, as Optuna does). Categorical ones split by subsets of their choices (the
//! categories sorted by mean score, then the best prefix: the optimal subset split for
//! regression), each choice weighing the same; Optuna one-hot encodes them instead. On the same
//! studies both give importances within Optuna's own seed-to-seed spread (`tests/plots.rs`).

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Trees in the forest (Optuna's `n_trees`).
pub const TREES: usize = 64;
/// Deepest split (Optuna's `max_depth`).
const MAX_DEPTH: usize = 64;

/// The domain of one input of the forest.
#[derive(Clone, Debug, PartialEq)]
pub enum Feature {
    /// Values in `[low, high]`.
    Numeric { low: f64, high: f64 },
    /// Choice indices `0..n`, given as `f64` in the samples.
    Categorical { n: usize },
}

/// How a split sends a sample left.
#[derive(Clone, Debug, PartialEq)]
enum Rule {
    /// `x <= threshold`.
    AtMost(f64),
    /// The category is in the set.
    In(Vec<bool>),
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Leaf(f64),
    Split {
        feature: usize,
        rule: Rule,
        left: usize,
        right: usize,
    },
}

/// One regression tree; node 0 is the root.
#[derive(Clone, Debug)]
struct Tree {
    nodes: Vec<Node>,
}

/// The part of one feature's domain a leaf covers.
#[derive(Clone, Debug, PartialEq)]
enum Cover {
    Interval(f64, f64),
    Set(Vec<bool>),
}

/// A leaf with the box of the domain it covers.
struct Leaf {
    value: f64,
    cover: Vec<Cover>,
}

/// The importance of each feature, in `features` order, normalised to sum to 1 (all zero when the
/// score does not vary). `x` holds one row per sample; categorical values are choice indices.
/// Deterministic for a given `rng` state.
pub fn importances(
    features: &[Feature],
    x: &[Vec<f64>],
    y: &[f64],
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let d = features.len();
    let mut sum = vec![0.0; d];
    let mut counted = 0usize;
    if x.len() < 2 || d == 0 {
        return sum;
    }
    for _ in 0..TREES {
        let sample: Vec<usize> = (0..x.len()).map(|_| rng.gen_range(0..x.len())).collect();
        let tree = Tree::fit(features, x, y, sample, rng);
        let leaves = tree.leaves(features);
        if let Some(per_feature) = main_effects(features, &leaves) {
            for (s, v) in sum.iter_mut().zip(per_feature) {
                *s += v;
            }
            counted += 1;
        }
    }
    if counted == 0 {
        return sum;
    }
    let total: f64 = sum.iter().sum();
    if total > 0.0 {
        sum.iter_mut().for_each(|s| *s /= total);
    }
    sum
}

impl Tree {
    fn fit(
        features: &[Feature],
        x: &[Vec<f64>],
        y: &[f64],
        sample: Vec<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Tree {
        let mut tree = Tree { nodes: Vec::new() };
        tree.grow(features, x, y, sample, 0, rng);
        tree
    }

    /// Grows the subtree of `rows` and returns its node index.
    fn grow(
        &mut self,
        features: &[Feature],
        x: &[Vec<f64>],
        y: &[f64],
        rows: Vec<usize>,
        depth: usize,
        rng: &mut ChaCha8Rng,
    ) -> usize {
        let at = self.nodes.len();
        let mean = rows.iter().map(|&r| y[r]).sum::<f64>() / rows.len().max(1) as f64;
        self.nodes.push(Node::Leaf(mean));
        if rows.len() < 2 || depth >= MAX_DEPTH {
            return at;
        }
        // Features are tried in a random order and the first best split wins, so that a tie
        // (two parameters that separate the samples alike) goes to either, as in scikit-learn.
        let mut order: Vec<usize> = (0..features.len()).collect();
        order.shuffle(rng);
        let Some((feature, rule)) = best_split(features, &order, x, y, &rows) else {
            return at;
        };
        let (l, r): (Vec<usize>, Vec<usize>) =
            rows.iter().partition(|&&i| goes_left(&rule, x[i][feature]));
        let left = self.grow(features, x, y, l, depth + 1, rng);
        let right = self.grow(features, x, y, r, depth + 1, rng);
        self.nodes[at] = Node::Split {
            feature,
            rule,
            left,
            right,
        };
        at
    }

    /// Every leaf with the box it covers.
    fn leaves(&self, features: &[Feature]) -> Vec<Leaf> {
        let root: Vec<Cover> = features
            .iter()
            .map(|f| match f {
                Feature::Numeric { low, high } => Cover::Interval(*low, *high),
                Feature::Categorical { n } => Cover::Set(vec![true; *n]),
            })
            .collect();
        let mut out = Vec::new();
        let mut stack = vec![(0usize, root)];
        while let Some((i, cover)) = stack.pop() {
            match &self.nodes[i] {
                Node::Leaf(value) => out.push(Leaf {
                    value: *value,
                    cover,
                }),
                Node::Split {
                    feature,
                    rule,
                    left,
                    right,
                } => {
                    let (mut lc, mut rc) = (cover.clone(), cover);
                    match (rule, &mut lc[*feature], &mut rc[*feature]) {
                        (Rule::AtMost(t), Cover::Interval(_, lh), Cover::Interval(rl, _)) => {
                            *lh = lh.min(*t);
                            *rl = rl.max(*t);
                        }
                        (Rule::In(set), Cover::Set(ls), Cover::Set(rs)) => {
                            for (k, &inside) in set.iter().enumerate() {
                                if let (Some(a), Some(b)) = (ls.get_mut(k), rs.get_mut(k)) {
                                    *a = *a && inside;
                                    *b = *b && !inside;
                                }
                            }
                        }
                        _ => {}
                    }
                    stack.push((*left, lc));
                    stack.push((*right, rc));
                }
            }
        }
        out
    }
}

fn goes_left(rule: &Rule, v: f64) -> bool {
    match rule {
        Rule::AtMost(t) => v <= *t,
        Rule::In(set) => set.get(v as usize).copied().unwrap_or(false),
    }
}

/// The split of `rows` that most reduces the squared error, if any separates them; features
/// are tried in `order`.
fn best_split(
    features: &[Feature],
    order: &[usize],
    x: &[Vec<f64>],
    y: &[f64],
    rows: &[usize],
) -> Option<(usize, Rule)> {
    let n = rows.len() as f64;
    let total: f64 = rows.iter().map(|&r| y[r]).sum();
    let total_sq: f64 = rows.iter().map(|&r| y[r] * y[r]).sum();
    let parent_sse = total_sq - total * total / n;
    if parent_sse <= 1e-12 * total_sq.max(1.0) {
        return None;
    }
    let mut best: Option<(f64, usize, Rule)> = None;
    for &f in order {
        let feature = &features[f];
        // Ordered groups of samples: by value for numeric features, by mean score for categories.
        let mut groups: Vec<(f64, f64, f64)> = Vec::new(); // (key, sum, count)
        let mut keys: Vec<f64> = Vec::new();
        match feature {
            Feature::Numeric { .. } => {
                let mut sorted: Vec<(f64, f64)> = rows.iter().map(|&r| (x[r][f], y[r])).collect();
                sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
                for (v, t) in sorted {
                    match groups.last_mut() {
                        Some(g) if g.0 == v => {
                            g.1 += t;
                            g.2 += 1.0;
                        }
                        _ => groups.push((v, t, 1.0)),
                    }
                }
                keys.extend(groups.iter().map(|g| g.0));
            }
            Feature::Categorical { n: k } => {
                let mut acc = vec![(0.0, 0.0); *k];
                for &r in rows {
                    if let Some(a) = acc.get_mut(x[r][f] as usize) {
                        a.0 += y[r];
                        a.1 += 1.0;
                    }
                }
                let mut present: Vec<(usize, f64, f64)> = acc
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.1 > 0.0)
                    .map(|(c, a)| (c, a.0, a.1))
                    .collect();
                present.sort_by(|a, b| (a.1 / a.2).total_cmp(&(b.1 / b.2)).then(a.0.cmp(&b.0)));
                for (c, s, m) in present {
                    groups.push((c as f64, s, m));
                }
                keys.extend(groups.iter().map(|g| g.0));
            }
        }
        let (mut ls, mut lc) = (0.0, 0.0);
        for i in 0..groups.len().saturating_sub(1) {
            ls += groups[i].1;
            lc += groups[i].2;
            let (rs, rc) = (total - ls, n - lc);
            // Within-group squared error is the same for every split, so maximising the between
            // part (sum^2 / count on each side) minimises the total.
            let gain = ls * ls / lc + rs * rs / rc - total * total / n;
            if best.as_ref().is_none_or(|b| gain > b.0 + 1e-12) {
                let rule = match feature {
                    Feature::Numeric { .. } => Rule::AtMost(0.5 * (keys[i] + keys[i + 1])),
                    Feature::Categorical { n: k } => {
                        let mut set = vec![false; *k];
                        for key in &keys[..=i] {
                            set[*key as usize] = true;
                        }
                        Rule::In(set)
                    }
                };
                best = Some((gain, f, rule));
            }
        }
    }
    best.filter(|b| b.0 > 0.0).map(|(_, f, r)| (f, r))
}

/// The share of feature `f`'s domain a cover holds.
fn share(feature: &Feature, cover: &Cover) -> f64 {
    match (feature, cover) {
        (Feature::Numeric { low, high }, Cover::Interval(a, b)) if high > low => {
            ((b - a) / (high - low)).max(0.0)
        }
        (Feature::Numeric { .. }, Cover::Interval(..)) => 1.0,
        (Feature::Categorical { n }, Cover::Set(s)) => {
            s.iter().filter(|&&v| v).count() as f64 / (*n).max(1) as f64
        }
        _ => 0.0,
    }
}

/// Each feature's main-effect variance over the tree's total variance, or `None` for a tree that
/// predicts one value everywhere.
fn main_effects(features: &[Feature], leaves: &[Leaf]) -> Option<Vec<f64>> {
    let shares: Vec<Vec<f64>> = leaves
        .iter()
        .map(|l| {
            features
                .iter()
                .zip(&l.cover)
                .map(|(f, c)| share(f, c))
                .collect()
        })
        .collect();
    let volume: Vec<f64> = shares.iter().map(|s| s.iter().product()).collect();
    let mean: f64 = leaves.iter().zip(&volume).map(|(l, v)| l.value * v).sum();
    let total: f64 = leaves
        .iter()
        .zip(&volume)
        .map(|(l, v)| v * (l.value - mean).powi(2))
        .sum();
    if total <= 1e-15 * mean.abs().max(1.0).powi(2) {
        return None;
    }
    let effects = features
        .iter()
        .enumerate()
        .map(|(f, feature)| {
            // The cells of this feature's domain on which the marginal prediction is constant,
            // each as (a point inside it, its weight).
            let cells: Vec<(f64, f64)> = match feature {
                Feature::Numeric { low, high } => {
                    let mut cuts: Vec<f64> = vec![*low, *high];
                    for l in leaves {
                        if let Cover::Interval(a, b) = l.cover[f] {
                            cuts.extend([a, b]);
                        }
                    }
                    cuts.retain(|c| (*low..=*high).contains(c));
                    cuts.sort_by(f64::total_cmp);
                    cuts.dedup();
                    let width = high - low;
                    cuts.windows(2)
                        .map(|w| (0.5 * (w[0] + w[1]), (w[1] - w[0]) / width))
                        .collect()
                }
                Feature::Categorical { n } => {
                    (0..*n).map(|c| (c as f64, 1.0 / *n as f64)).collect()
                }
            };
            // Each leaf's value times the share of the other features' domain it covers.
            let weighted: Vec<f64> = leaves
                .iter()
                .zip(&shares)
                .map(|(l, s)| {
                    let others: f64 = s
                        .iter()
                        .enumerate()
                        .filter(|(g, _)| *g != f)
                        .map(|(_, v)| v)
                        .product();
                    l.value * others
                })
                .collect();
            cells
                .iter()
                .map(|&(point, weight)| {
                    let marginal: f64 = leaves
                        .iter()
                        .zip(&weighted)
                        .filter(|(l, _)| match &l.cover[f] {
                            Cover::Interval(a, b) => *a <= point && point <= *b,
                            Cover::Set(s) => s.get(point as usize).copied().unwrap_or(false),
                        })
                        .map(|(_, w)| w)
                        .sum();
                    weight * (marginal - mean).powi(2)
                })
                .sum::<f64>()
                / total
        })
        .collect();
    Some(effects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn grid(n: usize) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..n)
            .map(|_| {
                vec![
                    rng.gen_range(0.0..1.0),
                    rng.gen_range(0.0..1.0),
                    rng.gen_range(0..3) as f64,
                ]
            })
            .collect()
    }

    fn features() -> Vec<Feature> {
        vec![
            Feature::Numeric {
                low: 0.0,
                high: 1.0,
            },
            Feature::Numeric {
                low: 0.0,
                high: 1.0,
            },
            Feature::Categorical { n: 3 },
        ]
    }

    #[test]
    fn a_score_that_follows_one_parameter_gives_it_almost_all_the_importance() {
        let x = grid(60);
        let y: Vec<f64> = x.iter().map(|r| 3.0 * r[1]).collect();
        let imp = importances(&features(), &x, &y, &mut ChaCha8Rng::seed_from_u64(0));
        assert!(imp[1] > 0.9, "{imp:?}");
        assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{imp:?}");
    }

    #[test]
    fn a_categorical_parameter_that_sets_the_score_is_found() {
        let x = grid(60);
        let y: Vec<f64> = x
            .iter()
            .map(|r| [0.2, 0.9, 0.5][r[2] as usize] + 0.01 * r[0])
            .collect();
        let imp = importances(&features(), &x, &y, &mut ChaCha8Rng::seed_from_u64(0));
        assert!(imp[2] > 0.9, "{imp:?}");
    }

    #[test]
    fn two_additive_parameters_share_the_importance_by_their_variance() {
        // y = 2a + b: Var(2a) = 4 Var(b), so a holds about 0.8 of the variance.
        let x = grid(200);
        let y: Vec<f64> = x.iter().map(|r| 2.0 * r[0] + r[1]).collect();
        let imp = importances(&features(), &x, &y, &mut ChaCha8Rng::seed_from_u64(1));
        assert!(
            (imp[0] - 0.8).abs() < 0.1 && (imp[1] - 0.2).abs() < 0.1,
            "{imp:?}"
        );
        assert!(imp[2] < 0.05, "{imp:?}");
    }

    #[test]
    fn a_constant_score_gives_no_importance() {
        let x = grid(20);
        let imp = importances(
            &features(),
            &x,
            &[0.5; 20],
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        assert_eq!(imp, vec![0.0; 3]);
    }

    #[test]
    fn the_same_seed_gives_the_same_importances() {
        let x = grid(30);
        let y: Vec<f64> = x.iter().map(|r| r[0] * r[1] + r[2]).collect();
        let a = importances(&features(), &x, &y, &mut ChaCha8Rng::seed_from_u64(3));
        let b = importances(&features(), &x, &y, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, b);
    }
}
