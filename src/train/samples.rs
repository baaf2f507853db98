//! Rows of a data set seen through a standardiser: what one fold trains or validates on, without a copy.
//!
//! Cross-validation used to copy the data into every fold, standardised (k folds hold k copies of
//! the data, 560 MB for MNIST with 3 folds). A fold is now a list of row numbers and its own
//! standardiser; a batch is gathered from the shared raw data and standardised as it is copied.

use crate::data::{Dataset, Standardizer, Targets};

/// A fold of cross-validation: which rows train, which validate, and the training rows' statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldRows {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    /// Fitted on `train` only, applied to both.
    pub scaler: Standardizer,
}

/// The rows `rows` of `data`, standardised by `scaler` when there is one.
#[derive(Clone, Copy)]
pub struct Samples<'a> {
    pub data: &'a Dataset,
    rows: Option<&'a [usize]>,
    scaler: Option<&'a Standardizer>,
}

impl<'a> Samples<'a> {
    /// Every row of `data`, as it is.
    pub fn all(data: &'a Dataset) -> Samples<'a> {
        Samples {
            data,
            rows: None,
            scaler: None,
        }
    }

    /// Every row of `data`, standardised by `scaler`.
    pub fn scaled(data: &'a Dataset, scaler: &'a Standardizer) -> Samples<'a> {
        Samples {
            data,
            rows: None,
            scaler: Some(scaler),
        }
    }

    /// The rows `rows` of `data`, standardised by `scaler`.
    pub fn rows(data: &'a Dataset, rows: &'a [usize], scaler: &'a Standardizer) -> Samples<'a> {
        Samples {
            data,
            rows: Some(rows),
            scaler: Some(scaler),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.map_or(self.data.len(), <[usize]>::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row of `data` behind position `i` of this view.
    pub fn row(&self, i: usize) -> usize {
        self.rows.map_or(i, |r| r[i])
    }

    /// Copies the samples at positions `idx` into `out` (cleared first), standardised.
    pub fn gather(&self, idx: &[usize], out: &mut Vec<f32>) {
        let f = self.data.n_features();
        out.clear();
        out.reserve(idx.len() * f);
        for &i in idx {
            let x = self.data.sample(self.row(i));
            match self.scaler {
                Some(s) => s.extend_standardized(x, out),
                None => x.extend_into(out),
            }
        }
    }

    /// The targets of this view, in its order (labels and values are small beside features).
    pub fn targets(&self) -> Targets {
        match &self.data.targets {
            Targets::Classes { labels, n_classes } => Targets::Classes {
                labels: (0..self.len()).map(|i| labels[self.row(i)]).collect(),
                n_classes: *n_classes,
            },
            Targets::Values(_) => Targets::Values(self.values().unwrap_or_default()),
        }
    }

    /// The regression targets of this view, in its order; `None` for class labels.
    pub fn values(&self) -> Option<Vec<f32>> {
        match &self.data.targets {
            Targets::Values(v) => Some((0..self.len()).map(|i| v[self.row(i)]).collect()),
            Targets::Classes { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::InputShape;

    fn tiny() -> Dataset {
        Dataset {
            name: "tiny".into(),
            shape: InputShape::flat(2),
            features: vec![0.0, 10.0, 1.0, 20.0, 2.0, 30.0, 3.0, 40.0].into(),
            targets: Targets::Classes {
                labels: vec![0, 1, 0, 1],
                n_classes: 2,
            },
            class_names: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn a_view_gathers_exactly_what_a_standardised_subset_copy_holds() {
        let ds = tiny();
        let rows = vec![3, 1];
        let mut copy = ds.subset(&rows);
        let scaler = Standardizer::fit(&copy, false);
        scaler.apply(&mut copy);
        let view = Samples::rows(&ds, &rows, &scaler);
        let mut out = Vec::new();
        view.gather(&[0, 1], &mut out);
        assert_eq!(copy.features, out);
        assert_eq!(view.targets(), copy.targets);
    }

    /// A data set stored as bytes gathers the floats of the same data stored as floats, with
    /// and without a standardiser.
    #[test]
    fn bytes_gather_what_floats_gather() {
        let (mut floats, mut bytes) = (tiny(), tiny());
        // Values past 127 too: a byte read as signed would differ there.
        floats.features = vec![0.0, 10.0, 255.0, 20.0, 128.0, 130.0, 3.0, 200.0].into();
        bytes.features =
            crate::data::Features::Bytes(floats.features.iter().map(|v| v as u8).collect());
        let rows = vec![3, 1, 2];
        let scaler = Standardizer::fit_rows(&floats, &rows, false);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Samples::rows(&floats, &rows, &scaler).gather(&[2, 0, 1], &mut a);
        Samples::rows(&bytes, &rows, &scaler).gather(&[2, 0, 1], &mut b);
        assert_eq!(a, b);
        Samples::all(&floats).gather(&[3, 0], &mut a);
        Samples::all(&bytes).gather(&[3, 0], &mut b);
        assert_eq!(a, vec![3.0, 200.0, 0.0, 10.0]);
        assert_eq!(a, b);
    }
}
