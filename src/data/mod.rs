//! Data sets: IDX and CSV loaders, built-in data sets, standardisation, splits and folds.

/// Temporary until the data module lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Task {
    Classification,
    Regression,
}

/// Temporary until the data module lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}
impl InputShape {
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
impl std::fmt::Display for InputShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// Temporary until the data module lands.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Classes { labels: Vec<usize>, n_classes: usize },
    Values(Vec<f32>),
}
/// Temporary until the data module lands.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub shape: InputShape,
    pub features: Vec<f32>,
    pub targets: Targets,
    pub class_names: Vec<String>,
}
impl Dataset {
    pub fn len(&self) -> usize {
        match &self.targets {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn n_outputs(&self) -> usize {
        match &self.targets {
            Targets::Classes { n_classes, .. } => *n_classes,
            Targets::Values(_) => 1,
        }
    }
}

/// Temporary until the data module lands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Augment {
    pub shift: usize,
    pub hflip: bool,
    pub noise_std: f32,
}
impl Augment {
    pub fn is_identity(&self) -> bool {
        self.shift == 0 && !self.hflip && self.noise_std == 0.0
    }
    pub fn apply_batch(&self, _b: &mut [f32], _s: InputShape, _r: &mut impl rand::Rng) {}
}
