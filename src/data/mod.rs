//! Data sets: IDX and CSV loaders, built-in data sets, standardisation, splits and folds.

/// Temporary until the data module lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Task {
    Classification,
    Regression,
}
