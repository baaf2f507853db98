//! `exp`, `tanh` and the logistic function over slices, branch-free so that the compiler turns the
//! loops into SIMD code (libm's scalar `tanhf` once took a sixth of a CNN search's time).
//!
//! `exp` is the classic Cody-Waite range reduction `x = n ln 2 + r` with a degree-6 polynomial for
//! `e^r` on `|r| <= ln 2 / 2` (Cephes' `expf` coefficients), scaled by `2^n` through the exponent
//! bits: within 2 ulp of `f32::exp`. `tanh` uses an odd polynomial below 0.625 (Cephes' `tanhf`)
//! and `1 - 2 / (e^2x + 1)` above, within 2e-7 of `f32::tanh`.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two, so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Beyond these `e^x` is not a finite normal `f32`: clamping keeps the bit trick valid.
const EXP_MAX: f32 = 88.0;
const EXP_MIN: f32 = -87.0;
/// 1.5 * 2^23: floats near it have a spacing of 1.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x`, for any finite or infinite `x`; NaN stays NaN.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as printed
pub(crate) fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits: SIMD-friendly, where
    // `round()` and a float-to-int `as` (which saturates) are not.
    let t = xc * LOG2E + ROUNDER;
    let n = t - ROUNDER;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let e = p * r * r + r + 1.0;
    // 2^n, n in [-126, 127] after the clamp: n + 127 in the low bits of t, moved to the exponent
    // (the shift drops t's own exponent bits).
    let scale = f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    let y = e * scale;
    // NaN compares false and passes through; +-inf were clamped to the extremes above.
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `tanh(x)`.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as printed
pub(crate) fn tanh(x: f32) -> f32 {
    let a = x.abs();
    // Near zero: x + x^3 P(x^2), accurate where 1 - 2/(e^2x + 1) would cancel.
    let z = x * x;
    let small = x + x
        * z
        * ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1)
            * z
            - 3.333_328_2e-1);
    let large = (1.0 - 2.0 / (exp(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4)
    }

    #[test]
    fn exp_is_within_two_ulp_of_std_on_its_range() {
        for x in grid().map(|x| x * 8.0).filter(|x| x.abs() < 87.0) {
            let (got, want) = (exp(x), x.exp());
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, want {want} ({ulp} ulp)");
        }
    }

    /// The logistic function and `tanh` compiled for AVX-512 (which `linear::apply` takes
    /// where the CPU has it), for AVX2 + FMA and for plain x86-64 give the same bits: the
    /// operations are the same and nothing is contracted into fused multiply-adds.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_vector_width_gives_the_same_bits() {
        fn both(y: &mut [f32]) {
            for v in y.iter_mut() {
                *v = sigmoid(*v) + tanh(*v);
            }
        }
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn wide(y: &mut [f32]) {
            both(y)
        }
        #[target_feature(enable = "avx2,fma")]
        fn narrow(y: &mut [f32]) {
            both(y)
        }
        let x: Vec<f32> = grid().map(|x| x * 3.0).collect();
        let mut plain = x.clone();
        both(&mut plain);
        let mut runs = Vec::new();
        if crate::simd::has_avx2_fma() {
            let mut y = x.clone();
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { narrow(&mut y) };
            runs.push(("avx2", y));
            if crate::simd::has_avx512() {
                let mut y = x.clone();
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
                unsafe { wide(&mut y) };
                runs.push(("avx512", y));
            }
        }
        for (name, y) in runs {
            for ((a, b), x) in y.iter().zip(&plain).zip(&x) {
                assert_eq!(a.to_bits(), b.to_bits(), "{name} at {x}: {a} against {b}");
            }
        }
    }

    #[test]
    fn exp_saturates_and_keeps_nan() {
        assert!(exp(1000.0) > 1e38 && exp(1000.0).is_finite());
        assert!(exp(f32::INFINITY).is_finite());
        assert!(exp(-1000.0) < 1e-37);
        assert_eq!(exp(f32::NEG_INFINITY) * 0.0, 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_and_sigmoid_are_within_a_few_ulp_of_one_of_std() {
        for x in grid() {
            let (got, want) = (tanh(x), x.tanh());
            assert!((got - want).abs() <= 2e-7, "tanh({x}) = {got}, want {want}");
            let want = 1.0 / (1.0 + (-x).exp());
            let got = sigmoid(x);
            assert!(
                (got - want).abs() <= 2e-7,
                "sigmoid({x}) = {got}, want {want}"
            );
        }
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
        assert!(sigmoid(-200.0) < 1e-37);
        assert_eq!(sigmoid(200.0), 1.0);
    }
}
