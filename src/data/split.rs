//! Train/test splits and k-fold cross-validation folds, stratified by class for classification, driven by an explicit RNG.

use rand::seq::SliceRandom;
use rand::Rng;

use super::dataset::{Dataset, Targets};
use super::error::DataError;

/// One cross-validation fold: indices into the data set it was made from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fold {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
}

/// Validation share when `kfold` is asked for a single fold.
const SINGLE_FOLD_VALID_FRACTION: f64 = 0.2;

/// Indices of each class (one group holding everything for regression), each group shuffled.
fn shuffled_groups(ds: &Dataset, rng: &mut impl Rng) -> Vec<Vec<usize>> {
    let mut groups = match &ds.targets {
        Targets::Classes { labels, n_classes } => {
            let mut g = vec![Vec::new(); *n_classes];
            for (i, &l) in labels.iter().enumerate() {
                if l >= g.len() {
                    g.resize(l + 1, Vec::new());
                }
                g[l].push(i);
            }
            g
        }
        Targets::Values(v) => vec![(0..v.len()).collect()],
    };
    for g in &mut groups {
        g.shuffle(rng);
    }
    groups
}

/// Splits indices into (train, test), both sorted. Classification is stratified: each class
/// contributes `round(count * test_fraction)` samples to test, but always keeps one in train.
/// `test_fraction` is clamped to `[0, 1]`.
pub fn train_test_split(
    ds: &Dataset,
    test_fraction: f64,
    rng: &mut impl Rng,
) -> (Vec<usize>, Vec<usize>) {
    let fraction = if test_fraction.is_nan() {
        0.0
    } else {
        test_fraction.clamp(0.0, 1.0)
    };
    let mut train = Vec::new();
    let mut test = Vec::new();
    for group in shuffled_groups(ds, rng) {
        let n_test =
            ((group.len() as f64 * fraction).round() as usize).min(group.len().saturating_sub(1));
        test.extend_from_slice(&group[..n_test]);
        train.extend_from_slice(&group[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// `k` folds whose validation sets partition the samples (train = the rest).
/// Classification deals each class's shuffled indices round-robin over the folds, carrying on
/// where the previous class stopped, so fold sizes and per-class counts differ by at most one.
/// `k = 1` gives one stratified fold with 20% held out for validation.
pub fn kfold(ds: &Dataset, k: usize, rng: &mut impl Rng) -> Result<Vec<Fold>, DataError> {
    let n = ds.len();
    if k == 0 || k > n {
        return Err(DataError::BadFoldCount { k, n });
    }
    if k == 1 {
        let (train, valid) = train_test_split(ds, SINGLE_FOLD_VALID_FRACTION, rng);
        return Ok(vec![Fold { train, valid }]);
    }
    let mut fold_of = vec![0usize; n];
    let mut next = 0usize;
    for group in shuffled_groups(ds, rng) {
        for i in group {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    let folds = (0..k)
        .map(|f| {
            let (valid, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold_of[i] == f);
            Fold { train, valid }
        })
        .collect();
    Ok(folds)
}
