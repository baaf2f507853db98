//! Standardisation of features (per feature or per channel) and of regression targets, fitted on training data only.

use super::dataset::{Dataset, InputShape, Row, Targets};
use crate::simd::simd_fn;

/// Standard deviations below this are treated as a constant feature, which is then only centred.
const STD_FLOOR: f64 = 1e-6;

/// `x` in blocks of `block` values (the last one shorter when `block` does not divide it).
fn blocks_of(x: Row<'_>, block: usize) -> impl Iterator<Item = Row<'_>> {
    let (len, block) = (x.len(), block.max(1));
    (0..len)
        .step_by(block)
        .map(move |s| x.slice(s..(s + block).min(len)))
}

/// Subtracts a mean and divides by a standard deviation, per feature or per channel.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// `true`: one statistic per channel (images); `false`: one per feature value.
    pub per_channel: bool,
}

impl Standardizer {
    /// Whether inputs of `shape` are standardised per channel, whatever network reads them: images
    /// get one mean and deviation per channel (an MLP's too, as the peer's `search.py` does),
    /// other inputs one per feature. Per pixel, digits' border pixels, zero in nearly every image,
    /// were blown up to large values where they were not: 200 random MLPs of the peer's space
    /// reached 0.97 in 10.5% of trials that way, 18.0% per channel.
    pub fn per_channel_for(shape: &InputShape) -> bool {
        shape.is_image()
    }

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
        samples: impl Iterator<Item = Row<'a>> + Clone,
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
        // By runs of `block` features (one group each), in the same order as feature by feature.
        for x in samples.clone() {
            for ((s, c), run) in sum
                .iter_mut()
                .zip(count.iter_mut())
                .zip(blocks_of(x, block))
            {
                run.for_each(|v| *s += f64::from(v));
                *c += run.len();
            }
        }
        let mean: Vec<f64> = sum
            .iter()
            .zip(&count)
            .map(|(s, &c)| if c == 0 { 0.0 } else { s / c as f64 })
            .collect();
        let mut sq = vec![0f64; groups];
        for x in samples {
            for ((q, m), run) in sq.iter_mut().zip(&mean).zip(blocks_of(x, block)) {
                run.for_each(|v| {
                    let d = f64::from(v) - m;
                    *q += d * d;
                });
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

    /// Standardises every sample of `ds` in place (values stored as bytes become floats: four
    /// times their memory).
    pub fn apply(&self, ds: &mut Dataset) {
        let n = ds.n_features();
        if n == 0 {
            return;
        }
        let floats = ds.features.floats_mut();
        if self.mean.is_empty() {
            return;
        }
        let mut copy = Vec::with_capacity(n);
        for x in floats.chunks_exact_mut(n) {
            copy.clear();
            copy.extend_from_slice(x);
            self.scale_values(&copy, x);
        }
    }

    /// Standardises one sample (CHW order) in place.
    pub fn apply_sample(&self, x: &mut [f32]) {
        if self.mean.is_empty() {
            return;
        }
        let copy = x.to_vec();
        self.scale_values(&copy, x);
    }

    /// Appends one sample (CHW order) to `out`, standardised: the values of
    /// [`Self::apply_sample`], written in one pass (a batch is gathered this way, not copied
    /// and then scaled).
    pub fn extend_standardized(&self, x: Row<'_>, out: &mut Vec<f32>) {
        match x {
            Row::Floats(x) => self.extend_values(x, out),
            Row::Bytes(x) => self.extend_values(x, out),
        }
    }

    /// [`Self::extend_standardized`] of values stored as `T` ([`Widen`]); the divisions run in
    /// the CPU's widest vectors (`crate::simd`), the same operations per value.
    #[inline]
    fn extend_values<T: Widen>(&self, x: &[T], out: &mut Vec<f32>) {
        if self.mean.is_empty() {
            out.extend(x.iter().map(|v| v.widen()));
            return;
        }
        let start = out.len();
        out.resize(start + x.len(), 0.0);
        self.scale_values(x, &mut out[start..]);
    }

    /// `(v - m) / sd` of every value of `x` (a sample in CHW order, stored as `T`) into `out`,
    /// by its feature's or its channel's statistics: the one loop every way of standardising
    /// goes through.
    fn scale_values<T: Widen>(&self, x: &[T], out: &mut [f32]) {
        if self.per_feature(x.len()) {
            T::scale(x, &self.mean, &self.std, out);
        } else {
            for (range, m, sd) in self.runs(x.len()) {
                T::scale_run(&x[range.clone()], m, sd, &mut out[range]);
            }
        }
    }

    /// One statistic per value of a sample of `len`: scaled as three zipped slices, which the
    /// compiler vectorises (a run per value does not).
    fn per_feature(&self, len: usize) -> bool {
        !self.per_channel && self.mean.len() == len
    }

    /// The runs of a sample of `len` values that share a mean and a deviation, with them: value
    /// k is in group k / block, the last group taking any rest.
    fn runs(&self, len: usize) -> impl Iterator<Item = (std::ops::Range<usize>, f32, f32)> + '_ {
        let groups = self.mean.len();
        debug_assert!(
            groups > 0 && len.is_multiple_of(groups),
            "sample length does not match the standardizer"
        );
        let block = if self.per_channel {
            (len / groups.max(1)).max(1)
        } else {
            1
        };
        (0..len).step_by(block).enumerate().map(move |(g, start)| {
            let g = g.min(groups.saturating_sub(1));
            (start..(start + block).min(len), self.mean[g], self.std[g])
        })
    }
}

/// A stored value type of features: widened to `f32`, and standardised into `out` (`(v - m) /
/// sd`, a division per value) per feature or by one mean and deviation.
trait Widen: Copy {
    fn widen(self) -> f32;
    fn scale(x: &[Self], mean: &[f32], std: &[f32], out: &mut [f32]);
    fn scale_run(x: &[Self], mean: f32, std: f32, out: &mut [f32]);
}

/// Implements [`Widen`] for a type whose values widen by `f32::from`, its loops compiled for
/// the CPU's widest vectors.
macro_rules! widen {
    ($t:ty, $scale:ident, $scale_run:ident) => {
        impl Widen for $t {
            #[inline]
            fn widen(self) -> f32 {
                f32::from(self)
            }
            fn scale(x: &[Self], mean: &[f32], std: &[f32], out: &mut [f32]) {
                $scale(x, mean, std, out)
            }
            fn scale_run(x: &[Self], mean: f32, std: f32, out: &mut [f32]) {
                $scale_run(x, mean, std, out)
            }
        }
        simd_fn! { avx512
            fn $scale(x: &[$t], mean: &[f32], std: &[f32], out: &mut [f32]) {
                let stats = mean.iter().zip(std);
                for ((o, &v), (m, sd)) in out.iter_mut().zip(x).zip(stats) {
                    *o = (f32::from(v) - m) / sd;
                }
            }
        }
        simd_fn! { avx512
            fn $scale_run(x: &[$t], mean: f32, std: f32, out: &mut [f32]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (f32::from(v) - mean) / std;
                }
            }
        }
    };
}
widen!(f32, scale_floats, scale_float_run);
widen!(u8, scale_bytes, scale_byte_run);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Features, InputShape};

    /// Three channels of 2x2 over five samples, values far from zero and uneven.
    fn images() -> Dataset {
        let n = 5;
        Dataset {
            name: "images".into(),
            shape: InputShape::new(3, 2, 2),
            features: (0..n * 12)
                .map(|i| 100.0 + (i as f32 * 0.37).sin() * (1 + i % 7) as f32)
                .collect::<Vec<_>>()
                .into(),
            targets: Targets::Classes {
                labels: vec![0; n],
                n_classes: 1,
            },
            class_names: vec!["a".into()],
        }
    }

    /// The statistics and standardised values, bit for bit, of the textbook loops (value `k` of
    /// a sample in group `k / block`): the runs are an implementation detail only.
    #[test]
    fn runs_give_the_same_bits_as_value_by_value() {
        let ds = images();
        for per_channel in [true, false] {
            let s = Standardizer::fit(&ds, per_channel);
            let (groups, block) = if per_channel { (3, 4) } else { (12, 1) };
            let mut sum = vec![0f64; groups];
            for x in ds.features.to_f32().chunks(12) {
                for (k, &v) in x.iter().enumerate() {
                    sum[k / block] += f64::from(v);
                }
            }
            let count = (ds.len() * block) as f64;
            let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
            let mut sq = vec![0f64; groups];
            for x in ds.features.to_f32().chunks(12) {
                for (k, &v) in x.iter().enumerate() {
                    let d = f64::from(v) - mean[k / block];
                    sq[k / block] += d * d;
                }
            }
            let want_mean: Vec<f32> = mean.iter().map(|m| *m as f32).collect();
            let want_std: Vec<f32> = sq.iter().map(|q| (q / count).sqrt() as f32).collect();
            assert_eq!(s.mean, want_mean, "per_channel {per_channel}");
            assert_eq!(s.std, want_std, "per_channel {per_channel}");
            let mut x = ds.features.to_f32()[12..24].to_vec();
            let want: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(k, v)| (v - want_mean[k / block]) / want_std[k / block])
                .collect();
            let mut gathered = vec![7.0];
            s.extend_standardized(Row::Floats(&x), &mut gathered);
            assert_eq!(
                gathered[0], 7.0,
                "per_channel {per_channel}: appended, not replaced"
            );
            assert_eq!(gathered[1..], want, "per_channel {per_channel}: gathered");
            s.apply_sample(&mut x);
            assert_eq!(x, want, "per_channel {per_channel}");
        }
    }

    /// Bytes give the statistics and standardised values of the same values stored as floats,
    /// bit for bit, per channel and per feature.
    #[test]
    fn bytes_standardise_as_the_floats_they_stand_for() {
        let n = 7;
        let bytes: Vec<u8> = (0..n * 12).map(|i| ((i * 37 + 11) % 256) as u8).collect();
        let floats = images_of(Features::Floats(
            bytes.iter().map(|&b| f32::from(b)).collect(),
        ));
        let packed = images_of(Features::Bytes(bytes));
        for per_channel in [true, false] {
            let (a, b) = (
                Standardizer::fit(&floats, per_channel),
                Standardizer::fit(&packed, per_channel),
            );
            assert_eq!(a, b, "per_channel {per_channel}");
            let rows = [4, 0, 6];
            assert_eq!(
                Standardizer::fit_rows(&floats, &rows, per_channel),
                Standardizer::fit_rows(&packed, &rows, per_channel)
            );
            let (mut x, mut y) = (Vec::new(), Vec::new());
            for i in 0..n {
                a.extend_standardized(floats.sample(i), &mut x);
                a.extend_standardized(packed.sample(i), &mut y);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x), bits(&y), "per_channel {per_channel}");
            let mut applied = packed.clone();
            a.apply(&mut applied);
            assert_eq!(applied.features, x, "per_channel {per_channel}");
        }
    }

    /// Samples long enough for the vector loops (3 channels of 7x7): each standardised value
    /// is the scalar `(v - mean) / std` to the bit, from bytes and floats, per channel and per
    /// feature.
    #[test]
    fn vector_loops_give_the_scalar_bits() {
        let (n, len) = (5, 147);
        let bytes: Vec<u8> = (0..n * len).map(|i| ((i * 53 + 7) % 256) as u8).collect();
        let floats: Vec<f32> = bytes.iter().map(|&b| f32::from(b) * 0.37 - 11.0).collect();
        for (features, values) in [
            (
                Features::Bytes(bytes.clone()),
                bytes.iter().map(|&b| f32::from(b)).collect(),
            ),
            (Features::Floats(floats.clone()), floats.clone()),
        ] {
            let ds = Dataset {
                shape: InputShape::new(3, 7, 7),
                features,
                ..images()
            };
            for per_channel in [true, false] {
                let s = Standardizer::fit(&ds, per_channel);
                let block = if per_channel { 49 } else { 1 };
                let mut got = Vec::new();
                for i in 0..n {
                    s.extend_standardized(ds.sample(i), &mut got);
                }
                let want: Vec<u32> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let g = i % len / block;
                        ((v - s.mean[g]) / s.std[g]).to_bits()
                    })
                    .collect();
                let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "per_channel {per_channel}");
            }
        }
    }

    fn images_of(features: Features) -> Dataset {
        let n = features.len() / 12;
        Dataset {
            name: "bytes".into(),
            shape: InputShape::new(3, 2, 2),
            features,
            targets: Targets::Classes {
                labels: vec![0; n],
                n_classes: 1,
            },
            class_names: vec!["a".into()],
        }
    }
}
