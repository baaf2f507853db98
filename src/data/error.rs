//! The one error type of the data module: every variant names the file (or data set) and what is wrong.

use std::path::PathBuf;

use super::dataset::{InputShape, Task};

/// Everything that can go wrong while reading, checking or splitting data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {err}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },

    #[error("missing file in {}: expected {expected}", dir.display())]
    MissingFile { dir: PathBuf, expected: String },

    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },

    #[error("{}: wrong magic number: expected 0x{expected:08X}, found 0x{found:08X}", path.display())]
    BadMagic {
        path: PathBuf,
        expected: u32,
        found: u32,
    },

    #[error("{}: not an IDX file (magic number 0x{found:08X}): {reason}", path.display())]
    BadIdxHeader {
        path: PathBuf,
        found: u32,
        reason: String,
    },

    #[error("{}: truncated file: expected {expected} bytes, found {actual}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error("{}: file has {actual} bytes but its header describes {expected}", path.display())]
    TrailingBytes {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error(
        "sample counts disagree: {} holds {n_features} samples but {} holds {n_targets} labels/targets",
        features.display(),
        targets.display()
    )]
    CountMismatch {
        features: PathBuf,
        n_features: usize,
        targets: PathBuf,
        n_targets: usize,
    },

    #[error("{}: row {row}, column {column} (`{name}`): `{value}` is not a number", path.display())]
    NotANumber {
        path: PathBuf,
        /// 1-based line number in the file, the header being row 1.
        row: usize,
        /// 1-based column number.
        column: usize,
        name: String,
        value: String,
    },

    #[error("{}: row {row} has {found} fields but the header has {expected}", path.display())]
    RaggedRow {
        path: PathBuf,
        row: usize,
        expected: usize,
        found: usize,
    },

    #[error("{}: no `{wanted}` column (columns are: {columns})", path.display())]
    MissingColumn {
        path: PathBuf,
        wanted: String,
        columns: String,
    },

    #[error("{}: duplicate column name `{name}`", path.display())]
    DuplicateColumn { path: PathBuf, name: String },

    #[error("{origin}: no feature columns besides the label/target column")]
    NoFeatures { origin: String },

    #[error("{origin}: class label {label} at {at} is out of range: there are {n_classes} classes (0..{n_classes})")]
    LabelOutOfRange {
        origin: String,
        at: String,
        label: usize,
        n_classes: usize,
    },

    #[error("{origin}: class `{label}` at {at} does not occur in the training data (known classes: {known})")]
    UnknownClass {
        origin: String,
        at: String,
        label: String,
        known: String,
    },

    #[error(
        "{origin}: `{value}` at {at} is not a usable class label (use names or integers >= 0)"
    )]
    NotAClassLabel {
        origin: String,
        at: String,
        value: String,
    },

    #[error("{origin}: {n_classes} classes is more than the {max} allowed; is this a regression target?")]
    TooManyClasses {
        origin: String,
        n_classes: usize,
        max: usize,
    },

    #[error("{origin}: non-finite value {value} at {at}")]
    NonFinite {
        origin: String,
        at: String,
        value: f32,
    },

    #[error("{origin}: every sample is of class `{class}`; classification needs at least two classes (is this a regression target?)")]
    OneClass { origin: String, class: String },

    #[error("{}: row {row}, column {column}: not valid UTF-8 text (save the file as UTF-8)", path.display())]
    NotUtf8 {
        path: PathBuf,
        /// 1-based line number in the file.
        row: usize,
        /// 1-based field number on that line.
        column: usize,
    },

    #[error("{origin}: the data set is empty")]
    Empty { origin: String },

    #[error("shape {shape} holds {expected} values but the data have {found} features per sample")]
    ShapeMismatch {
        shape: InputShape,
        expected: usize,
        found: usize,
    },

    #[error("invalid shape `{spec}`: {reason} (expected CxHxW, HxW or F, e.g. 1x8x8)")]
    BadShape { spec: String, reason: String },

    #[error("unknown data source `{spec}`: {reason}")]
    UnknownSource { spec: String, reason: String },

    #[error("{origin}: {found} features per sample, but the training data have {expected}")]
    FeatureMismatch {
        origin: String,
        expected: usize,
        found: usize,
    },

    #[error("{origin}: task is {found:?} but the training data are {expected:?}")]
    TaskMismatch {
        origin: String,
        expected: Task,
        found: Task,
    },

    #[error("cannot make {k} folds from {n} samples (need 1 <= k <= n)")]
    BadFoldCount { k: usize, n: usize },

    #[error("data set `{name}` is inconsistent: {reason}")]
    Inconsistent { name: String, reason: String },

    #[error("invalid augmentation: {reason}")]
    BadAugment { reason: String },
}
