//! Data sets: IDX and CSV loaders, built-in data sets, standardisation, splits, folds and augmentation.

mod augment;
mod builtin;
mod classes;
mod csv;
mod dataset;
mod error;
mod idx;
mod split;
mod standardize;

use std::path::{Path, PathBuf};

pub use augment::Augment;
pub use builtin::{load_builtin, BuiltinName};
pub use classes::check_classes;
pub use dataset::{DataSplit, Dataset, Features, InputShape, Row, Targets, Task, MAX_CLASSES};
pub use error::DataError;
pub use split::{kfold, train_test_split, Fold};
pub use standardize::{Standardizer, TargetScaler};

pub(crate) use csv::decode_utf8;
use csv::{load_csv, parse_csv, CsvSpec};
use idx::{find_part, load_dir, load_part, parse_part, Part};

/// Where a data set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    Builtin(BuiltinName),
    /// A directory of `train-*` (and optionally `t10k-*`) IDX files.
    IdxDir(PathBuf),
    Csv {
        train: PathBuf,
        test: Option<PathBuf>,
    },
}

impl DataSource {
    /// `digits` / `iris` / `diabetes` name a built-in data set, a directory an IDX directory,
    /// a `.csv` file a CSV training file, and `train.csv,test.csv` a CSV pair.
    /// Built-in names win over a directory of the same name; write `./digits` for the directory.
    pub fn parse(spec: &str) -> Result<DataSource, DataError> {
        let spec = spec.trim();
        if let Ok(name) = spec.parse::<BuiltinName>() {
            return Ok(DataSource::Builtin(name));
        }
        let is_csv = |p: &str| {
            Path::new(p)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        };
        if let Some((train, test)) = spec.split_once(',') {
            let (train, test) = (train.trim(), test.trim());
            if is_csv(train) && is_csv(test) {
                return Ok(DataSource::Csv {
                    train: PathBuf::from(train),
                    test: Some(PathBuf::from(test)),
                });
            }
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(DataSource::IdxDir(path.to_path_buf()));
        }
        if is_csv(spec) {
            return Ok(DataSource::Csv {
                train: path.to_path_buf(),
                test: None,
            });
        }
        Err(DataError::UnknownSource {
            spec: spec.to_string(),
            reason: if path.exists() {
                "a file that is not .csv (IDX data go in a directory of train-*/t10k-* files)"
                    .into()
            } else {
                "not a built-in data set (digits, iris, diabetes, signals), an existing directory or a .csv file".into()
            },
        })
    }
}

impl std::str::FromStr for DataSource {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        DataSource::parse(s)
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Builtin(name) => write!(f, "{name}"),
            DataSource::IdxDir(dir) => write!(f, "{}", dir.display()),
            DataSource::Csv { train, test: None } => write!(f, "{}", train.display()),
            DataSource::Csv {
                train,
                test: Some(test),
            } => write!(f, "{},{}", train.display(), test.display()),
        }
    }
}

/// Overrides for loading; the default infers everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// CSV column holding labels/targets (default: `label`, else `target`). Ignored for IDX data.
    pub target_column: Option<String>,
    /// Reshape each sample; must hold exactly the number of features.
    pub shape: Option<InputShape>,
    /// Force classification or regression.
    pub task: Option<Task>,
}

/// Loads a data set and, when it has one, its own test split (checked against the training part).
pub fn load(source: &DataSource, opts: &LoadOptions) -> Result<DataSplit, DataError> {
    // Each part comes with the name of the file holding its labels, for the errors below.
    let ((train, origin), test) = match source {
        DataSource::Builtin(name) => {
            let split = load_builtin(*name)?;
            let test = split.test.map(|t| (t, format!("{name} (test split)")));
            ((split.train, name.to_string()), test)
        }
        DataSource::IdxDir(dir) => {
            let parts = load_dir(dir)?;
            let origin = |p: &Path| p.display().to_string();
            (
                (parts.train.data, origin(&parts.train.targets)),
                parts.test.map(|t| (t.data, origin(&t.targets))),
            )
        }
        DataSource::Csv { train, test } => {
            let spec = CsvSpec {
                target_column: opts.target_column.as_deref(),
                task: opts.task,
                like: None,
            };
            let train_ds = load_csv(train, &spec)?;
            let train_ds = finish(train_ds, opts, &train.display().to_string())?;
            let test_ds = match test {
                Some(path) => Some(load_test_file(path, opts, &train_ds)?),
                None => None,
            };
            return Ok(DataSplit {
                train: train_ds,
                test: test_ds,
            });
        }
    };
    let train = finish(train, opts, &origin)?;
    let test = match test {
        Some((mut t, origin)) => {
            if let Some(task) = opts.task {
                t.targets = retask(t.targets, task, &origin)?;
            }
            Some(conform(t, &train, &origin)?)
        }
        None => None,
    };
    Ok(DataSplit { train, test })
}

/// Loads held-out data (a CSV file, or an IDX directory: its `t10k-*` files, else its `train-*` files)
/// and checks it against the training data `like`: same number of features, same task, known classes.
pub fn load_test_file(
    path: &Path,
    opts: &LoadOptions,
    like: &Dataset,
) -> Result<Dataset, DataError> {
    let origin = path.display().to_string();
    let ds = if path.is_dir() {
        let files = match find_part(path, Part::Test)? {
            Some(files) => files,
            None => find_part(path, Part::Train)?.ok_or_else(|| DataError::MissingFile {
                dir: path.to_path_buf(),
                expected: "t10k-* or train-* IDX files (images/features and labels/targets)".into(),
            })?,
        };
        let mut ds = load_part(&like.name, &files)?;
        if let Some(task) = opts.task {
            ds.targets = retask(ds.targets, task, &origin)?;
        }
        ds
    } else if path.exists() {
        let spec = CsvSpec {
            target_column: opts.target_column.as_deref(),
            task: Some(opts.task.unwrap_or(like.task())),
            like: Some(like),
        };
        load_csv(path, &spec)?
    } else {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
        });
    };
    conform(ds, like, &origin)
}

/// Parses CSV training data held in memory as [`load`] reads a `.csv` file; `path` names the
/// file in errors (with row and column). Lets the parser be tested and fuzzed without files.
pub fn parse_csv_bytes(
    bytes: &[u8],
    path: &Path,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    let spec = CsvSpec {
        target_column: opts.target_column.as_deref(),
        task: opts.task,
        like: None,
    };
    let ds = parse_csv(decode_utf8(bytes, path)?, path, &spec)?;
    finish(ds, opts, &path.display().to_string())
}

/// Parses IDX training data held in memory (a features file and a labels/targets file) as
/// [`load`] reads an IDX directory; the paths name the files in errors, and a conventional
/// name such as `train-labels-idx1-ubyte` fixes the magic number its file must carry.
pub fn parse_idx_bytes(
    features: &[u8],
    features_path: &Path,
    targets: &[u8],
    targets_path: &Path,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    let name = features_path
        .parent()
        .map_or_else(|| "data".to_string(), idx::dataset_name);
    let ds = parse_part(&name, features, features_path, targets, targets_path)?;
    finish(ds, opts, &targets_path.display().to_string())
}

/// Applies the shape and task overrides, then validates training data; `origin` names the file
/// holding the labels when the data turn out to have a single class.
fn finish(mut ds: Dataset, opts: &LoadOptions, origin: &str) -> Result<Dataset, DataError> {
    if let Some(shape) = opts.shape {
        if shape.len() != ds.n_features() {
            return Err(DataError::ShapeMismatch {
                shape,
                expected: shape.len(),
                found: ds.n_features(),
            });
        }
        ds.shape = shape;
    }
    if let Some(task) = opts.task {
        // The labels file, not the data set's name: the error must say which file to fix.
        ds.targets = retask(ds.targets, task, origin)?;
        if task == Task::Regression {
            ds.class_names.clear();
        } else if ds.class_names.is_empty() {
            ds.class_names = dataset::numbered_class_names(ds.n_outputs());
        }
    }
    ds.validate()?;
    classes::require_two_classes(&ds, origin)?;
    Ok(ds)
}

/// Turns class labels into values or integral values into class labels.
fn retask(targets: Targets, task: Task, origin: &str) -> Result<Targets, DataError> {
    match (targets, task) {
        (Targets::Classes { labels, .. }, Task::Regression) => Ok(Targets::Values(
            labels.into_iter().map(|l| l as f32).collect(),
        )),
        (Targets::Values(values), Task::Classification) => {
            let mut labels = Vec::with_capacity(values.len());
            for (i, v) in values.into_iter().enumerate() {
                if !(v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f32) {
                    return Err(DataError::NotAClassLabel {
                        origin: origin.to_string(),
                        at: format!("sample {i}"),
                        value: v.to_string(),
                    });
                }
                labels.push(v as usize);
            }
            let n_classes = labels.iter().max().map_or(0, |m| m + 1);
            dataset::check_class_count(n_classes, origin)?;
            Ok(Targets::Classes { labels, n_classes })
        }
        (same, _) => Ok(same),
    }
}

/// Makes held-out data look like the training data: its shape, task, classes and class names.
fn conform(mut ds: Dataset, like: &Dataset, origin: &str) -> Result<Dataset, DataError> {
    if ds.n_features() != like.n_features() {
        return Err(DataError::FeatureMismatch {
            origin: origin.to_string(),
            expected: like.n_features(),
            found: ds.n_features(),
        });
    }
    if ds.task() != like.task() {
        return Err(DataError::TaskMismatch {
            origin: origin.to_string(),
            expected: like.task(),
            found: ds.task(),
        });
    }
    ds.shape = like.shape;
    ds.name = like.name.clone();
    if let (Targets::Classes { labels, n_classes }, Some(like_classes)) =
        (&mut ds.targets, like.n_classes())
    {
        if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= like_classes) {
            return Err(DataError::LabelOutOfRange {
                origin: origin.to_string(),
                at: format!("sample {i}"),
                label,
                n_classes: like_classes,
            });
        }
        *n_classes = like_classes;
        ds.class_names = like.class_names.clone();
    }
    ds.validate()?;
    Ok(ds)
}
