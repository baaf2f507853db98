//! Complex matrix products over split real and imaginary blocks, without packing: the many
//! small per-frequency products of the spectral convolution (`m x k` by `k x n` with `n` a
//! multiple of 16, all from 16 to a few hundred), where a packing GEMM spends a third of its
//! time copying operands.

use super::gemm::{gemm, View};

/// A complex operand: its real and imaginary blocks (equal strides) and whether it enters
/// conjugated.
#[derive(Clone, Copy)]
pub(super) struct Operand<'a> {
    pub re: View<'a>,
    pub im: View<'a>,
    pub conj: bool,
}

/// `c = a b` (every value of `c` written), `a` being `m x k` and `b` `k x n`; `c`'s real and
/// imaginary parts are row-major `m x n` blocks.
///
/// # Panics
/// If an operand is too short for its shape.
pub(super) fn product(
    (m, k, n): (usize, usize, usize),
    a: Operand<'_>,
    b: Operand<'_>,
    c_re: &mut [f32],
    c_im: &mut [f32],
) {
    assert!(
        c_re.len() >= m * n && c_im.len() >= m * n,
        "product: output too short"
    );
    let (sa, sb) = (sign(a.conj), sign(b.conj));
    #[cfg(target_arch = "x86_64")]
    {
        let rows_b = b.re.cs == 1 && b.im.cs == 1 && b.re.rs == n && b.im.rs == n;
        let fits = |v: &View<'_>, r: usize, c: usize| {
            r == 0 || c == 0 || (r - 1) * v.rs + (c - 1) * v.cs < v.data.len()
        };
        let inside =
            fits(&a.re, m, k) && fits(&a.im, m, k) && fits(&b.re, k, n) && fits(&b.im, k, n);
        assert!(inside, "product: operand too short");
        if rows_b && m > 0 && k > 0 {
            if n % 16 == 0 && super::simd::has_avx512() {
                // SAFETY: the CPU has AVX-512F; the checks above bound every index read or
                // written (`b` row-major with rows `n` apart, `c` holds `m * n`).
                unsafe { avx512::product(m, k, n, &a, sa, &b, sb, c_re, c_im) };
                return;
            }
            if n % 8 == 0 && super::simd::has_avx2_fma() {
                // SAFETY: as above, for AVX2 and FMA.
                unsafe { avx2::product(m, k, n, &a, sa, &b, sb, c_re, c_im) };
                return;
            }
        }
    }
    // (ar + sa i ai)(br + sb i bi): real ar br - sa sb ai bi, imaginary sb ar bi + sa ai br.
    gemm(m, k, n, 1.0, a.re, b.re, 0.0, c_re, n);
    gemm(m, k, n, -sa * sb, a.im, b.im, 1.0, c_re, n);
    gemm(m, k, n, sb, a.re, b.im, 0.0, c_im, n);
    gemm(m, k, n, sa, a.im, b.re, 1.0, c_im, n);
}

fn sign(conj: bool) -> f32 {
    if conj {
        -1.0
    } else {
        1.0
    }
}

macro_rules! complex_kernels {
    ($name:ident, $feature:literal, $v:ty, $lanes:expr, $rows:expr, $zero:ident, $load:ident,
     $set1:ident, $fma:ident, $mul:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            //! The register blocks of [`super::product`] for one instruction set.

            #[allow(unused_imports)]
            use std::arch::x86_64::*;

            use super::Operand;

            /// Rows of `c` per register block.
            const R: usize = $rows;

            /// See [`super::product`]; the caller checks the CPU, the bounds, that `n` is a
            /// multiple of the lanes and that `b` is row-major.
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn product(
                m: usize,
                k: usize,
                n: usize,
                a: &Operand<'_>,
                sa: f32,
                b: &Operand<'_>,
                sb: f32,
                c_re: &mut [f32],
                c_im: &mut [f32],
            ) {
                let ar = a.re.data.as_ptr();
                let ai = a.im.data.as_ptr();
                let (rs, cs) = (a.re.rs, a.re.cs);
                let br = b.re.data.as_ptr();
                let bi = b.im.data.as_ptr();
                let cr = c_re.as_mut_ptr();
                let ci = c_im.as_mut_ptr();
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min(R);
                    let mut j = 0;
                    while j < n {
                        let two = n - j >= 2 * $lanes;
                        let args = (
                            ar.add(i * rs),
                            ai.add(i * rs),
                            rs,
                            cs,
                            sa,
                            br.add(j),
                            bi.add(j),
                            sb,
                            n,
                            k,
                        );
                        let out = (cr.add(i * n + j), ci.add(i * n + j));
                        match (rows, two) {
                            (4, true) => block::<4, 2>(args, out),
                            (4, false) => block::<4, 1>(args, out),
                            (3, true) => block::<3, 2>(args, out),
                            (3, false) => block::<3, 1>(args, out),
                            (2, true) => block::<2, 2>(args, out),
                            (2, false) => block::<2, 1>(args, out),
                            (_, true) => block::<1, 2>(args, out),
                            (_, false) => block::<1, 1>(args, out),
                        }
                        j += if two { 2 * $lanes } else { $lanes };
                    }
                    i += rows;
                }
            }

            /// `RR` rows by `J` vectors of `c`: per step of `k`, two vectors of `b` per column
            /// vector and three broadcasts of `a` per row.
            #[allow(clippy::type_complexity)]
            #[inline(always)]
            unsafe fn block<const RR: usize, const J: usize>(
                (ar, ai, rs, cs, sa, br, bi, sb, ldb, k): (
                    *const f32,
                    *const f32,
                    usize,
                    usize,
                    f32,
                    *const f32,
                    *const f32,
                    f32,
                    usize,
                    usize,
                ),
                (cr, ci): (*mut f32, *mut f32),
            ) {
                let mut acc_r = [[$zero(); J]; RR];
                let mut acc_i = [[$zero(); J]; RR];
                let sbv = $set1(sb);
                for kk in 0..k {
                    let mut vr = [$zero(); J];
                    let mut vi = [$zero(); J];
                    for jj in 0..J {
                        vr[jj] = $load(br.add(kk * ldb + jj * $lanes));
                        vi[jj] = $mul(sbv, $load(bi.add(kk * ldb + jj * $lanes)));
                    }
                    for r in 0..RR {
                        let x = *ar.add(r * rs + kk * cs);
                        let y = sa * *ai.add(r * rs + kk * cs);
                        let (xr, yi, nyi) = ($set1(x), $set1(y), $set1(-y));
                        for jj in 0..J {
                            acc_r[r][jj] = $fma(xr, vr[jj], acc_r[r][jj]);
                            acc_r[r][jj] = $fma(nyi, vi[jj], acc_r[r][jj]);
                            acc_i[r][jj] = $fma(xr, vi[jj], acc_i[r][jj]);
                            acc_i[r][jj] = $fma(yi, vr[jj], acc_i[r][jj]);
                        }
                    }
                }
                for r in 0..RR {
                    for jj in 0..J {
                        $store(cr.add(r * ldb + jj * $lanes), acc_r[r][jj]);
                        $store(ci.add(r * ldb + jj * $lanes), acc_i[r][jj]);
                    }
                }
            }
        }
    };
}

complex_kernels!(
    avx2,
    "avx2,fma",
    __m256,
    8,
    2,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_mul_ps,
    _mm256_storeu_ps
);
complex_kernels!(
    avx512,
    "avx512f",
    __m512,
    16,
    4,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps,
    _mm512_storeu_ps
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector kernels give the four real products' values for every conjugation, a
    /// strided (transposed) left operand, row counts that leave remainders and widths of one
    /// and two vectors.
    #[test]
    fn vector_kernels_match_four_real_products() {
        let val = |len: usize, s: u32| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    ((i as u32).wrapping_mul(2654435761).wrapping_add(s) % 1000) as f32 / 500.0
                        - 1.0
                })
                .collect()
        };
        for (m, k, n) in [(7, 5, 16), (4, 9, 48), (13, 3, 32), (1, 1, 64), (5, 4, 8)] {
            for (ca, cb, trans) in [
                (false, false, false),
                (false, true, false),
                (true, true, true),
            ] {
                let (a_re, a_im) = (val(m * k, 1), val(m * k, 2));
                let (b_re, b_im) = (val(k * n, 3), val(k * n, 4));
                let av = |d| {
                    if trans {
                        View::transposed(d, m)
                    } else {
                        View::rows(d, k)
                    }
                };
                let a = Operand {
                    re: av(&a_re[..]),
                    im: av(&a_im[..]),
                    conj: ca,
                };
                let b = Operand {
                    re: View::rows(&b_re, n),
                    im: View::rows(&b_im, n),
                    conj: cb,
                };
                let (mut got_r, mut got_i) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                product((m, k, n), a, b, &mut got_r, &mut got_i);
                let (sa, sb) = (sign(ca), sign(cb));
                for i in 0..m {
                    for j in 0..n {
                        let (mut er, mut ei) = (0.0f64, 0.0f64);
                        for kk in 0..k {
                            let at = |d: &[f32]| {
                                (if trans { d[kk * m + i] } else { d[i * k + kk] }) as f64
                            };
                            let (xr, xi) = (at(&a_re), sa as f64 * at(&a_im));
                            let (yr, yi) =
                                (b_re[kk * n + j] as f64, sb as f64 * b_im[kk * n + j] as f64);
                            er += xr * yr - xi * yi;
                            ei += xr * yi + xi * yr;
                        }
                        let (u, v) = (got_r[i * n + j] as f64, got_i[i * n + j] as f64);
                        assert!(
                            (u - er).abs() < 1e-4 && (v - ei).abs() < 1e-4,
                            "{m}x{k}x{n} ({i},{j})"
                        );
                    }
                }
            }
        }
    }
}
