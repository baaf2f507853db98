//! In-memory data sets: samples as flat `f32` rows with a CHW shape, and their class labels or regression targets.

use std::fmt;
use std::str::FromStr;

use super::error::DataError;

/// What the targets of a data set are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Task {
    Classification,
    Regression,
}

/// The shape of one sample, channels x height x width; tabular data are `1x1xF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl InputShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }

    /// The shape of a flat feature vector: `1x1xF`.
    pub fn flat(features: usize) -> Self {
        Self::new(1, 1, features)
    }

    /// Number of values in one sample.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the sample is an image rather than a feature vector (more than one row).
    pub fn is_image(&self) -> bool {
        self.height > 1
    }
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

impl FromStr for InputShape {
    type Err = DataError;

    /// Parses `CxHxW`, `HxW` (one channel) or `F` (`1x1xF`).
    fn from_str(spec: &str) -> Result<Self, DataError> {
        let bad = |reason: &str| DataError::BadShape {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let mut dims = Vec::new();
        for part in spec.trim().split(['x', 'X']) {
            let d: usize = part
                .trim()
                .parse()
                .map_err(|_| bad(&format!("`{part}` is not a positive integer")))?;
            if d == 0 {
                return Err(bad("dimensions must be at least 1"));
            }
            dims.push(d);
        }
        let shape = match dims[..] {
            [w] => Self::new(1, 1, w),
            [h, w] => Self::new(1, h, w),
            [c, h, w] => Self::new(c, h, w),
            _ => return Err(bad("too many dimensions")),
        };
        shape
            .channels
            .checked_mul(shape.height)
            .and_then(|v| v.checked_mul(shape.width))
            .ok_or_else(|| bad("too large"))?;
        Ok(shape)
    }
}

/// Class labels (with the number of classes) or regression values, one per sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Classes {
        labels: Vec<usize>,
        n_classes: usize,
    },
    Values(Vec<f32>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn task(&self) -> Task {
        match self {
            Targets::Classes { .. } => Task::Classification,
            Targets::Values(_) => Task::Regression,
        }
    }

    fn subset(&self, idx: &[usize]) -> Targets {
        match self {
            Targets::Classes { labels, n_classes } => Targets::Classes {
                labels: idx.iter().map(|&i| labels[i]).collect(),
                n_classes: *n_classes,
            },
            Targets::Values(v) => Targets::Values(idx.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// A data set held in memory: `features` has `len() * shape.len()` values, one CHW sample after another.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub shape: InputShape,
    pub features: Vec<f32>,
    pub targets: Targets,
    /// One name per class for classification (`"0"`, `"1"`, ... when the labels were numbers); empty for regression.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn task(&self) -> Task {
        self.targets.task()
    }

    /// Values per sample.
    pub fn n_features(&self) -> usize {
        self.shape.len()
    }

    /// Outputs a network needs: the number of classes, or 1 for regression.
    pub fn n_outputs(&self) -> usize {
        match &self.targets {
            Targets::Classes { n_classes, .. } => *n_classes,
            Targets::Values(_) => 1,
        }
    }

    /// The number of classes, `None` for regression.
    pub fn n_classes(&self) -> Option<usize> {
        match &self.targets {
            Targets::Classes { n_classes, .. } => Some(*n_classes),
            Targets::Values(_) => None,
        }
    }

    /// The class labels, `None` for regression.
    pub fn labels(&self) -> Option<&[usize]> {
        match &self.targets {
            Targets::Classes { labels, .. } => Some(labels),
            Targets::Values(_) => None,
        }
    }

    /// Samples per class (empty for regression).
    pub fn class_counts(&self) -> Vec<usize> {
        match &self.targets {
            Targets::Classes { labels, n_classes } => {
                let mut counts = vec![0; *n_classes];
                for &l in labels {
                    if let Some(c) = counts.get_mut(l) {
                        *c += 1;
                    }
                }
                counts
            }
            Targets::Values(_) => Vec::new(),
        }
    }

    /// The values of sample `i`. Panics when `i >= len()`.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.n_features();
        &self.features[i * n..(i + 1) * n]
    }

    /// A new data set holding the samples at `idx`, in that order. Panics on an index `>= len()`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(idx.len() * self.n_features());
        for &i in idx {
            features.extend_from_slice(self.sample(i));
        }
        Dataset {
            name: self.name.clone(),
            shape: self.shape,
            features,
            targets: self.targets.subset(idx),
            class_names: self.class_names.clone(),
        }
    }

    /// Checks lengths, class labels and that every value is finite.
    pub fn validate(&self) -> Result<(), DataError> {
        let inconsistent = |reason: String| DataError::Inconsistent {
            name: self.name.clone(),
            reason,
        };
        if self.is_empty() {
            return Err(DataError::Empty {
                origin: self.name.clone(),
            });
        }
        let n_features = self.n_features();
        if n_features == 0 {
            return Err(DataError::NoFeatures {
                origin: self.name.clone(),
            });
        }
        if self.features.len() != self.len() * n_features {
            return Err(inconsistent(format!(
                "{} feature values for {} samples of shape {} (expected {})",
                self.features.len(),
                self.len(),
                self.shape,
                self.len() * n_features
            )));
        }
        for (k, &v) in self.features.iter().enumerate() {
            if !v.is_finite() {
                return Err(DataError::NonFinite {
                    origin: self.name.clone(),
                    at: format!("sample {}, feature {}", k / n_features, k % n_features),
                    value: v,
                });
            }
        }
        match &self.targets {
            Targets::Classes { labels, n_classes } => {
                if *n_classes == 0 {
                    return Err(inconsistent("zero classes".into()));
                }
                if !self.class_names.is_empty() && self.class_names.len() != *n_classes {
                    return Err(inconsistent(format!(
                        "{} class names for {} classes",
                        self.class_names.len(),
                        n_classes
                    )));
                }
                if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= *n_classes)
                {
                    return Err(DataError::LabelOutOfRange {
                        origin: self.name.clone(),
                        at: format!("sample {i}"),
                        label,
                        n_classes: *n_classes,
                    });
                }
            }
            Targets::Values(values) => {
                if let Some((i, &v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(DataError::NonFinite {
                        origin: self.name.clone(),
                        at: format!("target of sample {i}"),
                        value: v,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A loaded data set: its training part and, when it has one, its own test part.
#[derive(Clone, Debug)]
pub struct DataSplit {
    pub train: Dataset,
    pub test: Option<Dataset>,
}

/// More classes than this is taken to be a mistake (a regression target read as labels, say).
pub const MAX_CLASSES: usize = 1 << 16;

pub(crate) fn check_class_count(n_classes: usize, origin: &str) -> Result<(), DataError> {
    if n_classes > MAX_CLASSES {
        return Err(DataError::TooManyClasses {
            origin: origin.to_string(),
            n_classes,
            max: MAX_CLASSES,
        });
    }
    Ok(())
}

/// Default class names for integer labels: `"0"`, `"1"`, ...
pub(crate) fn numbered_class_names(n_classes: usize) -> Vec<String> {
    (0..n_classes).map(|c| c.to_string()).collect()
}
