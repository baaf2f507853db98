//! Standardisation of features (per feature or per channel) and of regression targets, fitted on training data only.

use super::dataset::{Dataset, Targets};

/// Standard deviations below this are treated as a constant feature, which is then only centred.
const STD_FLOOR: f64 = 1e-6;

/// Subtracts a mean and divides by a standard deviation, per feature or per channel.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// `true`: one statistic per channel (images); `false`: one per feature value.
    pub per_channel: bool,
}

impl Standardizer {
    /// Statistics of `ds` (pass the training data only). Constant features get `std = 1`, so they become 0.
    pub fn fit(ds: &Dataset, per_channel: bool) -> Standardizer {
        Self::fit_samples(ds, (0..ds.len()).map(|i| ds.sample(i)), per_channel)
    }

    /// Statistics of the rows `rows` of `ds`, as [`Standardizer::fit`] of `ds.subset(rows)`
    /// gives them, without the copy.
    pub fn fit_rows(ds: &Dataset, rows: &[usize], per_channel: bool) -> Standardizer {
        Self::fit_samples(ds, rows.iter().map(|&i| ds.sample(i)), per_channel)
    }

    fn fit_samples<'a>(
        ds: &Dataset,
        samples: impl Iterator<Item = &'a [f32]> + Clone,
        per_channel: bool,
    ) -> Standardizer {
        let n_features = ds.n_features();
        let groups = if per_channel {
            ds.shape.channels
        } else {
            n_features
        };
        // Feature k belongs to group k / block.
        let block = if per_channel {
            ds.shape.height * ds.shape.width
        } else {
            1
        };
        let mut sum = vec![0f64; groups];
        let mut count = vec![0usize; groups];
        for x in samples.clone() {
            for (k, &v) in x.iter().enumerate() {
                sum[k / block] += f64::from(v);
                count[k / block] += 1;
            }
        }
        let mean: Vec<f64> = sum
            .iter()
            .zip(&count)
            .map(|(s, &c)| if c == 0 { 0.0 } else { s / c as f64 })
            .collect();
        let mut sq = vec![0f64; groups];
        for x in samples {
            for (k, &v) in x.iter().enumerate() {
                let d = f64::from(v) - mean[k / block];
                sq[k / block] += d * d;
            }
        }
        let std = sq
            .iter()
            .zip(&count)
            .map(|(s, &c)| {
                let sd = if c == 0 { 0.0 } else { (s / c as f64).sqrt() };
                if sd < STD_FLOOR {
                    1.0
                } else {
                    sd as f32
                }
            })
            .collect();
        Standardizer {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
            per_channel,
        }
    }

    /// Standardises every sample of `ds` in place.
    pub fn apply(&self, ds: &mut Dataset) {
        let n = ds.n_features();
        if n == 0 {
            return;
        }
        for x in ds.features.chunks_exact_mut(n) {
            self.apply_sample(x);
        }
    }

    /// Standardises one sample (CHW order) in place.
    pub fn apply_sample(&self, x: &mut [f32]) {
        let groups = self.mean.len();
        if groups == 0 {
            return;
        }
        debug_assert_eq!(
            x.len() % groups,
            0,
            "sample length does not match the standardizer"
        );
        let block = if self.per_channel {
            (x.len() / groups).max(1)
        } else {
            1
        };
        for (k, v) in x.iter_mut().enumerate() {
            let g = (k / block).min(groups - 1);
            *v = (*v - self.mean[g]) / self.std[g];
        }
    }
}

/// Standardises regression targets so that networks train on unit-scale values; `invert` gives original units back.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TargetScaler {
    pub mean: f32,
    pub std: f32,
}

impl Default for TargetScaler {
    fn default() -> Self {
        Self::identity()
    }
}

impl TargetScaler {
    pub fn identity() -> TargetScaler {
        TargetScaler {
            mean: 0.0,
            std: 1.0,
        }
    }

    /// Statistics of the targets of `ds` (training data only); the identity for classification.
    pub fn fit(ds: &Dataset) -> TargetScaler {
        match &ds.targets {
            Targets::Values(v) => Self::fit_values(v),
            Targets::Classes { .. } => Self::identity(),
        }
    }

    pub fn fit_values(values: &[f32]) -> TargetScaler {
        if values.is_empty() {
            return Self::identity();
        }
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = var.sqrt();
        TargetScaler {
            mean: mean as f32,
            std: if sd < STD_FLOOR { 1.0 } else { sd as f32 },
        }
    }

    /// Standardises the regression targets of `ds` in place; class labels are left alone.
    pub fn apply(&self, ds: &mut Dataset) {
        if let Targets::Values(v) = &mut ds.targets {
            for y in v.iter_mut() {
                *y = self.apply_value(*y);
            }
        }
    }

    pub fn apply_value(&self, y: f32) -> f32 {
        (y - self.mean) / self.std
    }

    /// Back to original units.
    pub fn invert(&self, y: f32) -> f32 {
        y * self.std + self.mean
    }

    pub fn invert_slice(&self, ys: &mut [f32]) {
        for y in ys {
            *y = self.invert(*y);
        }
    }
}
