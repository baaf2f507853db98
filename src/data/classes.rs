//! Degenerate classification data: one class (an error) and classes too small for cross-validation (warnings).

use super::dataset::{Dataset, Targets};
use super::error::DataError;

/// The classes that have at least one sample, as (label, count).
fn present(labels: &[usize], n_classes: usize) -> Vec<(usize, usize)> {
    let mut counts = vec![0usize; n_classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l) {
            *c += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .filter(|&(_, n)| n > 0)
        .collect()
}

fn class_name(ds: &Dataset, label: usize) -> String {
    ds.class_names
        .get(label)
        .cloned()
        .unwrap_or_else(|| label.to_string())
}

/// Refuses classification data whose samples all carry one class: any model reaches accuracy
/// 1.0 on it, so a search would report a perfect score that means nothing. `origin` names the
/// file in the error.
pub(crate) fn require_two_classes(ds: &Dataset, origin: &str) -> Result<(), DataError> {
    let Targets::Classes { labels, n_classes } = &ds.targets else {
        return Ok(());
    };
    match present(labels, *n_classes)[..] {
        [] => Err(DataError::Empty {
            origin: origin.to_string(),
        }),
        [(label, _)] => Err(DataError::OneClass {
            origin: origin.to_string(),
            class: class_name(ds, label),
        }),
        _ => Ok(()),
    }
}

/// Checks classification data before it is cut into `folds` cross-validation folds; the
/// warnings do not name the data (the caller knows where it came from).
///
/// One class is an error (see [`DataError::OneClass`]); each class with fewer samples than
/// folds gives a warning naming it, since some validation folds will hold none of it and its
/// accuracy is then measured on fewer folds than the others. Regression data pass unchanged.
pub fn check_classes(ds: &Dataset, folds: usize) -> Result<Vec<String>, DataError> {
    require_two_classes(ds, &ds.name)?;
    let Targets::Classes { labels, n_classes } = &ds.targets else {
        return Ok(Vec::new());
    };
    let mut counts = vec![0usize; *n_classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l) {
            *c += 1;
        }
    }
    let mut warnings = Vec::new();
    for (label, &n) in counts.iter().enumerate() {
        let name = class_name(ds, label);
        if n == 0 {
            // Integer labels with a gap (0, 2, ...) make an empty class the network still predicts.
            warnings.push(format!(
                "class `{name}` has no samples (the labels skip it)"
            ));
        } else if n < folds {
            warnings.push(format!(
                "class `{name}` has {n} sample{}, fewer than the {folds} folds: some validation folds hold none of it",
                if n == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(warnings)
}
