//! In-memory data sets: samples as flat rows (floats, or bytes) with a CHW shape, and their class labels or regression targets.

use std::borrow::Cow;
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

/// The feature values of a data set, one sample after another: 32-bit floats, or bytes where
/// the file stores bytes (IDX images), each the value `0..=255` it stands for.
///
/// Bytes hold MNIST in 47 MB instead of 188, and a batch gathered from them reads a quarter of
/// the memory (the fixed MLP of the trainer bench, 28x28: its trial 0.5-2.1% faster). A byte
/// widens to exactly the float the loader would have stored, so what trains is the same either
/// way, bit for bit. Equality compares values, however they are stored.
#[derive(Clone, Debug)]
pub enum Features {
    Floats(Vec<f32>),
    Bytes(Vec<u8>),
}

/// One sample's values, borrowed from [`Features`].
#[derive(Clone, Copy, Debug)]
pub enum Row<'a> {
    Floats(&'a [f32]),
    Bytes(&'a [u8]),
}

impl Features {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Features::Floats(v) => v.len(),
            Features::Bytes(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values `start..end`. Panics when out of range.
    pub fn row(&self, start: usize, end: usize) -> Row<'_> {
        match self {
            Features::Floats(v) => Row::Floats(&v[start..end]),
            Features::Bytes(v) => Row::Bytes(&v[start..end]),
        }
    }

    /// Every value as a float.
    pub fn iter(&self) -> impl Iterator<Item = f32> + '_ {
        self.row(0, self.len()).iter()
    }

    /// Every value as a float, borrowed where they are floats already.
    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        match self {
            Features::Floats(v) => Cow::Borrowed(v),
            Features::Bytes(v) => Cow::Owned(v.iter().map(|&b| f32::from(b)).collect()),
        }
    }

    /// Every value as a float, moved where they are floats already.
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            Features::Floats(v) => v,
            Features::Bytes(v) => v.iter().map(|&b| f32::from(b)).collect(),
        }
    }

    /// The first value that is not finite, with its index (bytes always are).
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        match self {
            Features::Floats(v) => v.iter().copied().enumerate().find(|(_, v)| !v.is_finite()),
            Features::Bytes(_) => None,
        }
    }

    /// The values as floats, to change in place (bytes are widened first).
    pub fn floats_mut(&mut self) -> &mut Vec<f32> {
        if let Features::Bytes(b) = self {
            *self = Features::Floats(b.iter().map(|&b| f32::from(b)).collect());
        }
        match self {
            Features::Floats(v) => v,
            Features::Bytes(_) => unreachable!("widened above"),
        }
    }

    /// Appends `src`'s values, kept as bytes where both are bytes.
    fn extend_from(&mut self, src: Row<'_>) {
        match (self, src) {
            (Features::Bytes(out), Row::Bytes(b)) => out.extend_from_slice(b),
            (out, src) => src.extend_into(out.floats_mut()),
        }
    }
}

impl From<Vec<f32>> for Features {
    fn from(v: Vec<f32>) -> Self {
        Features::Floats(v)
    }
}

impl FromIterator<f32> for Features {
    fn from_iter<I: IntoIterator<Item = f32>>(iter: I) -> Self {
        Features::Floats(iter.into_iter().collect())
    }
}

impl PartialEq for Features {
    fn eq(&self, other: &Self) -> bool {
        self.row(0, self.len()) == other.row(0, other.len())
    }
}

impl PartialEq<Vec<f32>> for Features {
    fn eq(&self, other: &Vec<f32>) -> bool {
        self.row(0, self.len()) == Row::Floats(other)
    }
}

impl PartialEq<Features> for Vec<f32> {
    fn eq(&self, other: &Features) -> bool {
        other == self
    }
}

impl<'a> Row<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Row::Floats(v) => v.len(),
            Row::Bytes(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values `range` of this row.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Row<'a> {
        match *self {
            Row::Floats(v) => Row::Floats(&v[range]),
            Row::Bytes(v) => Row::Bytes(&v[range]),
        }
    }

    /// The values as floats.
    pub fn iter(&self) -> impl Iterator<Item = f32> + 'a {
        let (floats, bytes): (&'a [f32], &'a [u8]) = match *self {
            Row::Floats(v) => (v, &[]),
            Row::Bytes(v) => (&[], v),
        };
        floats
            .iter()
            .copied()
            .chain(bytes.iter().map(|&b| f32::from(b)))
    }

    /// Calls `f` with each value as a float, in order (one loop per storage type, where
    /// [`Row::iter`] checks which at every value).
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(f32)) {
        match *self {
            Row::Floats(v) => v.iter().for_each(|&x| f(x)),
            Row::Bytes(v) => v.iter().for_each(|&b| f(f32::from(b))),
        }
    }

    /// Value `i` as a float. Panics when `i >= len()`.
    pub fn get(&self, i: usize) -> f32 {
        match *self {
            Row::Floats(v) => v[i],
            Row::Bytes(v) => f32::from(v[i]),
        }
    }

    /// Appends the values to `out` as floats.
    pub fn extend_into(&self, out: &mut Vec<f32>) {
        match *self {
            Row::Floats(v) => out.extend_from_slice(v),
            Row::Bytes(v) => out.extend(v.iter().map(|&b| f32::from(b))),
        }
    }
}

/// Rows are equal when their values are, however they are stored.
impl PartialEq for Row<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

/// A data set held in memory: `features` has `len() * shape.len()` values, one CHW sample after another.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub shape: InputShape,
    pub features: Features,
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
    pub fn sample(&self, i: usize) -> Row<'_> {
        let n = self.n_features();
        self.features.row(i * n, (i + 1) * n)
    }

    /// A new data set holding the samples at `idx`, in that order (bytes stay bytes). Panics on
    /// an index `>= len()`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let len = idx.len() * self.n_features();
        let mut features = match self.features {
            Features::Floats(_) => Features::Floats(Vec::with_capacity(len)),
            Features::Bytes(_) => Features::Bytes(Vec::with_capacity(len)),
        };
        for &i in idx {
            features.extend_from(self.sample(i));
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
        if let Some((k, v)) = self.features.first_non_finite() {
            return Err(DataError::NonFinite {
                origin: self.name.clone(),
                at: format!("sample {}, feature {}", k / n_features, k % n_features),
                value: v,
            });
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
