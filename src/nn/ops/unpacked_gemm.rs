//! Matrix products without packing, for the spectral convolution and the dense layers (whose
//! products take `exact_product`, matrixmultiply's sums to the bit): complex ones over split
//! real and imaginary blocks (its many small per-frequency products, `m x k` by `k x n` with
//! `n` a multiple of 16, all from 16 to a few hundred) and real ones by a small row-major
//! table (its transforms), where a packing GEMM spends a third of its time copying operands.
//! The left operand is read by broadcasts, so any strides do; the right one is row-major.

use super::gemm::{gemm, View};
use super::scratch::{give_f32, take_f32};

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
        // The kernels read both parts of `a` with the real part's strides.
        let same_a = a.re.rs == a.im.rs && a.re.cs == a.im.cs;
        let inside = a.re.fits(m, k) && a.im.fits(m, k) && b.re.fits(k, n) && b.im.fits(k, n);
        assert!(inside, "product: operand too short");
        let avx512 = n % 16 == 0 && super::simd::has_avx512();
        let avx2 = n % 8 == 0 && super::simd::has_avx2_fma();
        if rows_b && same_a && m > 0 && k > 0 && (avx512 || avx2) {
            let ys = LeftSums::new(&a, sa, m, k);
            let left = ys.parts(&a);
            if avx512 {
                // SAFETY: the CPU has AVX-512F; the checks above bound every index read or
                // written (`b` row-major with rows `n` apart, `c` holds `m * n`), and `left`'s
                // parts span what `a`'s real part spans, with its strides.
                unsafe { avx512::product(m, k, n, &a, left, &b, sb, c_re, c_im) };
            } else {
                // SAFETY: as above, for AVX2 and FMA.
                unsafe { avx2::product(m, k, n, &a, left, &b, sb, c_re, c_im) };
            }
            ys.give();
            return;
        }
    }
    // (ar + sa i ai)(br + sb i bi): real ar br - sa sb ai bi, imaginary sb ar bi + sa ai br.
    gemm(m, k, n, 1.0, a.re, b.re, 0.0, c_re, n);
    gemm(m, k, n, -sa * sb, a.im, b.im, 1.0, c_re, n);
    gemm(m, k, n, sb, a.re, b.im, 0.0, c_im, n);
    gemm(m, k, n, sa, a.im, b.re, 1.0, c_im, n);
}

/// `c = a b + beta c` for `beta` 0 or 1, `a` being `m x k` (any strides) and `b` `k x n`
/// (row-major for the vector kernels, rows at least `n` apart); `c` is row-major with rows
/// `ldc` apart.
///
/// # Panics
/// If an operand is too short for its shape, or `beta` is neither 0 nor 1.
#[allow(clippy::too_many_arguments)]
pub(super) fn real_product(
    (m, k, n): (usize, usize, usize),
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(beta == 0.0 || beta == 1.0, "real_product: beta {beta}");
    #[cfg(target_arch = "x86_64")]
    {
        let rows_b = b.cs == 1 && b.rs >= n;
        if rows_b && m > 0 && k > 0 && n > 0 {
            assert!(
                a.fits(m, k) && b.fits(k, n) && (m - 1) * ldc + n <= c.len() && ldc >= n,
                "real_product: operand too short"
            );
            let add = beta == 1.0;
            if n % 16 == 0 && super::simd::has_avx512() {
                // SAFETY: the CPU has AVX-512F; the assert above bounds every index read or
                // written (`b` row-major with rows `n` apart).
                unsafe { avx512::real(m, k, n, &a, &b, add, c, ldc) };
                return;
            }
            if n % 8 == 0 && super::simd::has_avx2_fma() {
                // SAFETY: as above, for AVX2 and FMA.
                unsafe { avx2::real(m, k, n, &a, &b, add, c, ldc) };
                return;
            }
        }
    }
    gemm(m, k, n, 1.0, a, b, beta, c, ldc);
}

/// Depth of the chunks `matrixmultiply` sums its products in (its `S_KC`): each chunk from zero,
/// then added onto `c`.
const KC: usize = 256;

/// `c = a b + beta c` for `beta` 0 or 1, `a` being `m x k` (any strides) and `b` `k x n` with
/// unit column stride, adding in exactly the order of `matrixmultiply::sgemm` (its AVX2 + FMA
/// and its AVX-512 kernels alike): each output sums its products from zero by fused
/// multiply-adds in chunks of [`KC`] along `k`, and each chunk's sum is added onto `c` (onto
/// zero for the first chunk when `beta` is 0; a sum from +0 is never -0, so the kernels'
/// different handling of that case cannot show). So it gives the same bits as the packing
/// GEMM it replaces, without the packing (1.03-1.16x its speed on the MLP's layer products).
/// Returns `false`, touching nothing, where the CPU lacks AVX2 + FMA, `n` is not a multiple of
/// the vector width or the shapes are empty: the caller falls back.
///
/// # Panics
/// If an operand is too short for its shape, or `beta` is neither 0 nor 1.
#[allow(clippy::too_many_arguments)]
pub(super) fn exact_product(
    (m, k, n): (usize, usize, usize),
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> bool {
    assert!(beta == 0.0 || beta == 1.0, "exact_product: beta {beta}");
    #[cfg(target_arch = "x86_64")]
    {
        if b.cs == 1 && m > 0 && k > 0 {
            let Some(vectors) = exact_width(n) else {
                return false;
            };
            assert!(
                a.fits(m, k) && b.fits(k, n) && (m - 1) * ldc + n <= c.len() && ldc >= n,
                "exact_product: operand too short"
            );
            let add = beta == 1.0;
            if vectors == 16 {
                // SAFETY: the CPU has AVX-512F; the assert above bounds every index read or
                // written (`b` with unit column stride and rows `b.rs` apart).
                unsafe { avx512::exact(m, k, n, &a, &b, add, c, ldc) };
            } else {
                // SAFETY: as above, for AVX2 and FMA.
                unsafe { avx2::exact(m, k, n, &a, &b, add, c, ldc) };
            }
            return true;
        }
    }
    let _ = (m, k, n, a, b, c, ldc);
    false
}

/// The vector width of [`exact_product`]'s kernels for output rows of `n` values: 16 with
/// AVX-512, 8 with AVX2 + FMA; `None` where neither covers `n` (or it is 0) and the product
/// falls back.
pub(super) fn exact_width(n: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if n > 0 && n.is_multiple_of(16) && super::simd::has_avx512() {
            return Some(16);
        }
        if n > 0 && n.is_multiple_of(8) && super::simd::has_avx2_fma() {
            return Some(8);
        }
    }
    let _ = n;
    None
}

/// What the complex kernels read of the left operand besides its real part `x`: `y = sa ai`
/// and `x + y`, over the span `a`'s real part covers with its strides. Computed once per
/// product instead of once per register block, where the scalar product and sum and the two
/// broadcasts from registers took the multiply-adds' ports (AVX-512: 34 uops a step where 18
/// are multiply-adds). The same operations on the same values: the same bits.
struct LeftSums {
    /// `sa ai`, when `sa` is not 1 (else `ai` itself is `y`).
    y: Option<Vec<f32>>,
    xy: Vec<f32>,
}

impl LeftSums {
    fn new(a: &Operand<'_>, sa: f32, m: usize, k: usize) -> Self {
        let span = (m - 1) * a.re.rs + (k - 1) * a.re.cs + 1;
        let (re, im) = (&a.re.data[..span], &a.im.data[..span]);
        let y = (sa != 1.0).then(|| {
            let mut y = take_f32(span);
            scale(im, sa, &mut y);
            y
        });
        let mut xy = take_f32(span);
        add(re, y.as_deref().unwrap_or(im), &mut xy);
        LeftSums { y, xy }
    }

    /// `y` and `x + y`, for the kernels.
    fn parts<'s>(&'s self, a: &'s Operand<'_>) -> (&'s [f32], &'s [f32]) {
        (self.y.as_deref().unwrap_or(a.im.data), &self.xy)
    }

    fn give(self) {
        if let Some(y) = self.y {
            give_f32(y);
        }
        give_f32(self.xy);
    }
}

super::simd::simd_fn! {
/// `out = s v`.
fn scale(v: &[f32], s: f32, out: &mut [f32]) {
    out.iter_mut().zip(v).for_each(|(o, &v)| *o = s * v);
}
}

super::simd::simd_fn! {
/// `out = p + q`.
fn add(p: &[f32], q: &[f32], out: &mut [f32]) {
    for ((o, &p), &q) in out.iter_mut().zip(p).zip(q) {
        *o = p + q;
    }
}
}

fn sign(conj: bool) -> f32 {
    if conj {
        -1.0
    } else {
        1.0
    }
}

macro_rules! complex_kernels {
    ($name:ident, $feature:literal, $v:ty, $lanes:expr, $rows:expr, $crows:expr, $zero:ident,
     $load:ident, $set1:ident, $fma:ident, $add:ident, $sub:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            //! The register blocks of [`super::product`] for one instruction set.

            #[allow(unused_imports)]
            use std::arch::x86_64::*;

            use super::{Operand, View};

            /// Rows of `c` per register block of the complex product, twice as many where `c`
            /// is one vector wide (the blocks below go to 8).
            const R: usize = $crows;
            const _: () = assert!(R >= 1 && R <= 4);

            /// See [`super::product`]; the caller checks the CPU, the bounds, that `n` is a
            /// multiple of the lanes and that `b` is row-major.
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn product(
                m: usize,
                k: usize,
                n: usize,
                a: &Operand<'_>,
                (y, xy): (&[f32], &[f32]),
                b: &Operand<'_>,
                sb: f32,
                c_re: &mut [f32],
                c_im: &mut [f32],
            ) {
                let ar = a.re.data.as_ptr();
                let (ay, axy) = (y.as_ptr(), xy.as_ptr());
                let (rs, cs) = (a.re.rs, a.re.cs);
                let br = b.re.data.as_ptr();
                let bi = b.im.data.as_ptr();
                let cr = c_re.as_mut_ptr();
                let ci = c_im.as_mut_ptr();
                // One vector of columns: twice the rows, so that as many sums are in flight.
                let most = if n == $lanes { 2 * R } else { R };
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min(most);
                    let mut j = 0;
                    while j < n {
                        let two = n - j >= 2 * $lanes;
                        let args = (
                            ar.add(i * rs),
                            (ay.add(i * rs), axy.add(i * rs)),
                            rs,
                            cs,
                            br.add(j),
                            bi.add(j),
                            n,
                            k,
                        );
                        let out = (cr.add(i * n + j), ci.add(i * n + j));
                        macro_rules! by_shape {
                            ($conj:literal) => {
                                match (rows, two) {
                                    (8, _) => block::<8, 1, $conj>(args, out),
                                    (7, _) => block::<7, 1, $conj>(args, out),
                                    (6, _) => block::<6, 1, $conj>(args, out),
                                    (5, _) => block::<5, 1, $conj>(args, out),
                                    (4, true) => block::<4, 2, $conj>(args, out),
                                    (4, false) => block::<4, 1, $conj>(args, out),
                                    (3, true) => block::<3, 2, $conj>(args, out),
                                    (3, false) => block::<3, 1, $conj>(args, out),
                                    (2, true) => block::<2, 2, $conj>(args, out),
                                    (2, false) => block::<2, 1, $conj>(args, out),
                                    (_, true) => block::<1, 2, $conj>(args, out),
                                    (_, false) => block::<1, 1, $conj>(args, out),
                                }
                            };
                        }
                        if sb < 0.0 {
                            by_shape!(true)
                        } else {
                            by_shape!(false)
                        }
                        j += if two { 2 * $lanes } else { $lanes };
                    }
                    i += rows;
                }
            }

            /// Rows of `c` per register block of the real product.
            const RQ: usize = $rows + $rows / 2;
            /// Rows of `c` per register block when `c` is one vector wide.
            const RQ1: usize = 3 * $rows;
            // The row matches in `sweep` go up to 12 and 6 rows.
            const _: () = assert!(RQ1 <= 12 && RQ <= 6);

            /// See [`super::real_product`]; the caller checks the CPU, the bounds, that `n` is
            /// a multiple of the lanes and that `b`'s column stride is 1.
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn real(
                m: usize,
                k: usize,
                n: usize,
                a: &View<'_>,
                b: &View<'_>,
                add: bool,
                c: &mut [f32],
                ldc: usize,
            ) {
                let a = (a.data.as_ptr(), a.rs, a.cs);
                sweep::<false>(
                    (m, k, n),
                    a,
                    (b.data.as_ptr(), b.rs),
                    add,
                    c.as_mut_ptr(),
                    ldc,
                );
            }

            /// See [`super::exact_product`]; the caller checks the CPU, the bounds, that `n` is
            /// a multiple of the lanes and that `b`'s column stride is 1.
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn exact(
                m: usize,
                k: usize,
                n: usize,
                a: &View<'_>,
                b: &View<'_>,
                beta_one: bool,
                c: &mut [f32],
                ldc: usize,
            ) {
                let (ap, rs, cs) = (a.data.as_ptr(), a.rs, a.cs);
                let (bp, ldb) = (b.data.as_ptr(), b.rs);
                let mut k0 = 0;
                while k0 < k {
                    let kc = (k - k0).min(super::KC);
                    let a = (ap.add(k0 * cs), rs, cs);
                    let add = beta_one || k0 > 0;
                    sweep::<true>(
                        (m, kc, n),
                        a,
                        (bp.add(k0 * ldb), ldb),
                        add,
                        c.as_mut_ptr(),
                        ldc,
                    );
                    k0 += kc;
                }
            }

            /// Every register block of `c` (`m x n`) over `k` steps: `c = a b + c` (`add`) or
            /// `c = a b`; with `LATE` each block sums from zero and adds `c` at the end (see
            /// [`real_block`]).
            #[inline(always)]
            unsafe fn sweep<const LATE: bool>(
                (m, k, n): (usize, usize, usize),
                (ap, rs, cs): (*const f32, usize, usize),
                (bp, ldb): (*const f32, usize),
                add: bool,
                cp: *mut f32,
                ldc: usize,
            ) {
                let mut i = 0;
                if n == $lanes {
                    // One vector of columns: twice the rows, so that enough sums are in
                    // flight to hide the multiply-adds' latency. The products of Winograd's
                    // bins (196 tiles by 16 or 32 channels, in cache) ran at 157-162 GFLOP/s
                    // against 128-142 with 6 rows; a whole fixed-CNN trial moved within its
                    // noise. Each output's sum is the same.
                    while i < m {
                        let rows = (m - i).min(RQ1);
                        let args = (ap.add(i * rs), rs, cs, bp, ldb, k, add);
                        let out = cp.add(i * ldc);
                        match rows {
                            12 => real_block::<12, 1, LATE>(args, out, ldc),
                            11 => real_block::<11, 1, LATE>(args, out, ldc),
                            10 => real_block::<10, 1, LATE>(args, out, ldc),
                            9 => real_block::<9, 1, LATE>(args, out, ldc),
                            8 => real_block::<8, 1, LATE>(args, out, ldc),
                            7 => real_block::<7, 1, LATE>(args, out, ldc),
                            6 => real_block::<6, 1, LATE>(args, out, ldc),
                            5 => real_block::<5, 1, LATE>(args, out, ldc),
                            4 => real_block::<4, 1, LATE>(args, out, ldc),
                            3 => real_block::<3, 1, LATE>(args, out, ldc),
                            2 => real_block::<2, 1, LATE>(args, out, ldc),
                            _ => real_block::<1, 1, LATE>(args, out, ldc),
                        }
                        i += rows;
                    }
                    return;
                }
                while i < m {
                    let rows = (m - i).min(RQ);
                    let mut j = 0;
                    while j < n {
                        let jv = ((n - j) / $lanes).min(4);
                        let args = (ap.add(i * rs), rs, cs, bp.add(j), ldb, k, add);
                        let out = cp.add(i * ldc + j);
                        macro_rules! by_width {
                            ($r:literal) => {
                                match jv {
                                    4 => real_block::<$r, 4, LATE>(args, out, ldc),
                                    3 => real_block::<$r, 3, LATE>(args, out, ldc),
                                    2 => real_block::<$r, 2, LATE>(args, out, ldc),
                                    _ => real_block::<$r, 1, LATE>(args, out, ldc),
                                }
                            };
                        }
                        match rows {
                            6 => by_width!(6),
                            5 => by_width!(5),
                            4 => by_width!(4),
                            3 => by_width!(3),
                            2 => by_width!(2),
                            _ => by_width!(1),
                        }
                        j += jv * $lanes;
                    }
                    i += rows;
                }
            }

            /// `RR` rows by `J` vectors of `c`: per step of `k`, `J` vectors of `b` and one
            /// broadcast of `a` per row. The sums start from `c` (`add`) or zero; with `LATE`
            /// they start from zero and `c` is added at the end (`matrixmultiply`'s order).
            #[allow(clippy::type_complexity)]
            #[inline(always)]
            unsafe fn real_block<const RR: usize, const J: usize, const LATE: bool>(
                (a, rs, cs, b, ldb, k, add): (
                    *const f32,
                    usize,
                    usize,
                    *const f32,
                    usize,
                    usize,
                    bool,
                ),
                c: *mut f32,
                ldc: usize,
            ) {
                let mut acc = [[$zero(); J]; RR];
                if add && !LATE {
                    for r in 0..RR {
                        for jj in 0..J {
                            acc[r][jj] = $load(c.add(r * ldc + jj * $lanes));
                        }
                    }
                }
                for kk in 0..k {
                    let mut v = [$zero(); J];
                    for jj in 0..J {
                        v[jj] = $load(b.add(kk * ldb + jj * $lanes));
                    }
                    for r in 0..RR {
                        let x = $set1(*a.add(r * rs + kk * cs));
                        for jj in 0..J {
                            acc[r][jj] = $fma(x, v[jj], acc[r][jj]);
                        }
                    }
                }
                for r in 0..RR {
                    for jj in 0..J {
                        let p = c.add(r * ldc + jj * $lanes);
                        if add && LATE {
                            $store(p, $add(acc[r][jj], $load(p)));
                        } else {
                            $store(p, acc[r][jj]);
                        }
                    }
                }
            }

            /// `RR` rows by `J` vectors of `c`: per step of `k`, two vectors of `b` per column
            /// vector and three broadcasts of `a` per row. `CONJ`: `b` enters conjugated. Four
            /// rows of two vectors (24 sums; three rows until stop 34) cover the row counts of
            /// the spectral products (batches and channel counts, powers of two) without a
            /// remainder, and each load of `b` serves a third more multiply-adds: a 64-channel
            /// digits CNN trained 2.5% faster.
            #[allow(clippy::type_complexity)]
            #[inline(always)]
            unsafe fn block<const RR: usize, const J: usize, const CONJ: bool>(
                (ar, (ay, axy), rs, cs, br, bi, ldb, k): (
                    *const f32,
                    (*const f32, *const f32),
                    usize,
                    usize,
                    *const f32,
                    *const f32,
                    usize,
                    usize,
                ),
                (cr, ci): (*mut f32, *mut f32),
            ) {
                // Three real products per complex one (Gauss): t1 = x u, t2 = y v and
                // t3 = (x + y)(u + v) for (x + i y)(u + i v); real t1 - t2, imaginary t3 - t1 - t2.
                // Conjugated, `v = -bi`: t2 sums `y bi` instead, exactly `-t2` (negated values
                // round alike), and enters the last sums with its sign turned, which spares a
                // product a step on the multiply-adds' ports (1% on the digits CNN).
                let mut t1 = [[$zero(); J]; RR];
                let mut t2 = [[$zero(); J]; RR];
                let mut t3 = [[$zero(); J]; RR];
                for kk in 0..k {
                    let mut u = [$zero(); J];
                    let mut v = [$zero(); J];
                    let mut uv = [$zero(); J];
                    for jj in 0..J {
                        u[jj] = $load(br.add(kk * ldb + jj * $lanes));
                        v[jj] = $load(bi.add(kk * ldb + jj * $lanes));
                        uv[jj] = if CONJ {
                            $sub(u[jj], v[jj])
                        } else {
                            $add(u[jj], v[jj])
                        };
                    }
                    for r in 0..RR {
                        let at = r * rs + kk * cs;
                        let (xv, yv, xy) =
                            ($set1(*ar.add(at)), $set1(*ay.add(at)), $set1(*axy.add(at)));
                        for jj in 0..J {
                            t1[r][jj] = $fma(xv, u[jj], t1[r][jj]);
                            t2[r][jj] = $fma(yv, v[jj], t2[r][jj]);
                            t3[r][jj] = $fma(xy, uv[jj], t3[r][jj]);
                        }
                    }
                }
                let mut acc_r = [[$zero(); J]; RR];
                let mut acc_i = [[$zero(); J]; RR];
                for r in 0..RR {
                    for jj in 0..J {
                        if CONJ {
                            acc_r[r][jj] = $add(t1[r][jj], t2[r][jj]);
                            acc_i[r][jj] = $add($sub(t3[r][jj], t1[r][jj]), t2[r][jj]);
                        } else {
                            acc_r[r][jj] = $sub(t1[r][jj], t2[r][jj]);
                            acc_i[r][jj] = $sub($sub(t3[r][jj], t1[r][jj]), t2[r][jj]);
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
    1,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_sub_ps,
    _mm256_storeu_ps
);
complex_kernels!(
    avx512,
    "avx512f",
    __m512,
    16,
    4,
    4,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_sub_ps,
    _mm512_storeu_ps
);

#[cfg(test)]
mod tests {
    use super::*;

    fn val(len: usize, s: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(s) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    /// A row-major `m x k` matrix, or its `k x m` transpose read as `m x k`.
    fn left(d: &[f32], m: usize, k: usize, transposed: bool) -> View<'_> {
        if transposed {
            View::transposed(d, m)
        } else {
            View::rows(d, k)
        }
    }

    /// The complex kernels (dispatched, and AVX2 by name where the CPU has it) give the
    /// textbook values for every conjugation, a strided (transposed) left operand, row counts
    /// that leave remainders and widths of one and two vectors.
    #[test]
    fn complex_kernels_match_the_textbook_product() {
        for (m, k, n) in [
            (7, 5, 16),
            (19, 6, 16),
            (4, 9, 48),
            (13, 3, 32),
            (10, 2, 32),
            (1, 1, 64),
            (5, 4, 8),
        ] {
            for (ca, cb, trans) in [
                (false, false, false),
                (false, true, false),
                (true, true, true),
            ] {
                let (a_re, a_im) = (val(m * k, 1), val(m * k, 2));
                let (b_re, b_im) = (val(k * n, 3), val(k * n, 4));
                let a = Operand {
                    re: left(&a_re, m, k, trans),
                    im: left(&a_im, m, k, trans),
                    conj: ca,
                };
                let b = Operand {
                    re: View::rows(&b_re, n),
                    im: View::rows(&b_im, n),
                    conj: cb,
                };
                let (sa, sb) = (sign(ca), sign(cb));
                let mut runs = vec![("dispatch", vec![f32::NAN; m * n], vec![f32::NAN; m * n])];
                let (_, r0, i0) = &mut runs[0];
                product((m, k, n), a, b, r0, i0);
                #[cfg(target_arch = "x86_64")]
                if crate::simd::has_avx2_fma() {
                    let (mut r, mut i) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                    // SAFETY: the CPU has AVX2 and FMA; the shapes fit the buffers and `n` is
                    // a multiple of 8.
                    let ys = LeftSums::new(&a, sa, m, k);
                    unsafe { avx2::product(m, k, n, &a, ys.parts(&a), &b, sb, &mut r, &mut i) };
                    ys.give();
                    runs.push(("avx2", r, i));
                }
                for (kernel, got_r, got_i) in &runs {
                    for i in 0..m {
                        for j in 0..n {
                            let (mut er, mut ei) = (0.0f64, 0.0f64);
                            for kk in 0..k {
                                let at = |d: &[f32]| {
                                    (if trans { d[kk * m + i] } else { d[i * k + kk] }) as f64
                                };
                                let (xr, xi) = (at(&a_re), sa as f64 * at(&a_im));
                                let yr = b_re[kk * n + j] as f64;
                                let yi = sb as f64 * b_im[kk * n + j] as f64;
                                er += xr * yr - xi * yi;
                                ei += xr * yi + xi * yr;
                            }
                            let (u, v) = (got_r[i * n + j] as f64, got_i[i * n + j] as f64);
                            assert!(
                                (u - er).abs() < 1e-4 && (v - ei).abs() < 1e-4,
                                "{kernel} {m}x{k}x{n} ({i},{j}): {u} {v} vs {er} {ei}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The real kernels (dispatched, and AVX2 by name) give the textbook values, writing or
    /// adding, with a strided left operand, rows of `b` wider than `n`, rows of `c` `ldc` apart and
    /// widths of one to five vectors.
    #[test]
    fn real_kernels_match_the_textbook_product() {
        for (m, k, n, ldb, ldc) in [
            (7, 5, 16, 16, 16),
            (13, 9, 80, 80, 96),
            (1, 3, 64, 64, 64),
            (6, 2, 8, 8, 8),
            (9, 12, 32, 104, 40),
        ] {
            for (beta, trans) in [(0.0, false), (1.0, true)] {
                let a_data = val(m * k, 5);
                let a = left(&a_data, m, k, trans);
                let b = val((k - 1) * ldb + n, 6);
                let bv = View {
                    data: &b,
                    rs: ldb,
                    cs: 1,
                };
                let c0 = val((m - 1) * ldc + n, 7);
                let mut runs = vec![("dispatch", c0.clone())];
                real_product((m, k, n), a, bv, beta, &mut runs[0].1, ldc);
                #[cfg(target_arch = "x86_64")]
                if crate::simd::has_avx2_fma() {
                    let mut c = c0.clone();
                    // SAFETY: the CPU has AVX2 and FMA; the shapes fit the buffers and `n` is
                    // a multiple of 8.
                    unsafe { avx2::real(m, k, n, &a, &bv, beta == 1.0, &mut c, ldc) };
                    runs.push(("avx2", c));
                }
                for (kernel, c) in &runs {
                    for i in 0..m {
                        for j in 0..n {
                            let mut e = beta as f64 * c0[i * ldc + j] as f64;
                            for kk in 0..k {
                                let x = if trans {
                                    a_data[kk * m + i]
                                } else {
                                    a_data[i * k + kk]
                                };
                                e += x as f64 * b[kk * ldb + j] as f64;
                            }
                            let u = c[i * ldc + j] as f64;
                            assert!(
                                (u - e).abs() < 1e-4,
                                "{kernel} {m}x{k}x{n} ({i},{j}): {u} vs {e}"
                            );
                        }
                    }
                    // Columns between rows are left alone.
                    for i in 0..m.saturating_sub(1) {
                        assert_eq!(
                            c[i * ldc + n..(i + 1) * ldc],
                            c0[i * ldc + n..(i + 1) * ldc]
                        );
                    }
                }
            }
        }
    }

    /// `matrixmultiply::sgemm` itself, `c = a b + beta c`, with `b`'s rows `ldb` apart.
    #[allow(clippy::too_many_arguments)]
    fn packing_gemm(
        (m, k, n): (usize, usize, usize),
        a: View<'_>,
        b: &[f32],
        ldb: usize,
        beta: f32,
        c: &mut [f32],
        ldc: usize,
    ) {
        assert!(a.fits(m, k) && (k - 1) * ldb + n <= b.len() && (m - 1) * ldc + n <= c.len());
        // SAFETY: the assert above keeps every index of the three shapes inside the slices.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.data.as_ptr(),
                a.rs as isize,
                a.cs as isize,
                b.as_ptr(),
                ldb as isize,
                1,
                beta,
                c.as_mut_ptr(),
                ldc as isize,
                1,
            )
        }
    }

    /// The unpacked kernels that stand in for `matrixmultiply` give its very bits (signs of
    /// zero included), dispatched and AVX2 by name, over depths below, at and past its
    /// 256-deep chunks, row counts that leave remainders, widths of one to five vectors,
    /// strided operands and both `beta`s; and `gemm` takes them where they fit.
    #[test]
    fn exact_kernels_give_matrixmultiplys_bits() {
        for (m, k, n, ldb, ldc) in [
            (7, 5, 16, 16, 16),
            (13, 256, 80, 96, 88),
            (1, 257, 64, 64, 64),
            (6, 600, 8, 8, 8),
            (20, 784, 256, 256, 256),
            (9, 33, 48, 48, 56),
        ] {
            for (beta, trans) in [(0.0, false), (1.0, true), (1.0, false), (0.0, true)] {
                let a_data = val(m * k, 11);
                let a = left(&a_data, m, k, trans);
                let b = val((k - 1) * ldb + n, 12);
                let mut c0 = val((m - 1) * ldc + n, 13);
                c0[0] = -0.0;
                let mut want = c0.clone();
                packing_gemm((m, k, n), a, &b, ldb, beta, &mut want, ldc);
                let bv = View {
                    data: &b,
                    rs: ldb,
                    cs: 1,
                };
                let mut runs = Vec::new();
                let mut c = c0.clone();
                if exact_product((m, k, n), a, bv, beta, &mut c, ldc) {
                    runs.push(("dispatch", c));
                }
                let mut c = c0.clone();
                super::super::gemm::gemm(m, k, n, 1.0, a, bv, beta, &mut c, ldc);
                runs.push(("gemm", c));
                #[cfg(target_arch = "x86_64")]
                if crate::simd::has_avx2_fma() {
                    let mut c = c0.clone();
                    // SAFETY: the CPU has AVX2 and FMA; the shapes fit the buffers and `n` is
                    // a multiple of 8.
                    unsafe { avx2::exact(m, k, n, &a, &bv, beta == 1.0, &mut c, ldc) };
                    runs.push(("avx2", c));
                }
                #[cfg(target_arch = "x86_64")]
                assert!(
                    !crate::simd::has_avx2_fma() || runs.len() == 3,
                    "{m}x{k}x{n}: the unpacked kernel was not taken"
                );
                for (kernel, c) in &runs {
                    for i in 0..m {
                        for j in 0..n {
                            let (u, w) = (c[i * ldc + j], want[i * ldc + j]);
                            assert!(
                                u.to_bits() == w.to_bits(),
                                "{kernel} {m}x{k}x{n} beta {beta} ({i},{j}): {u:e} vs {w:e}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// `gemm` on a pool of several threads splits the rows of `c` and gives the bits of one
    /// thread, on the unpacked kernel and on the packing GEMM's fallback alike.
    #[test]
    fn gemm_rows_on_threads_keep_their_bits() {
        // (m, k, n, transposed right operand): the second takes `matrixmultiply`.
        for (m, k, n, tb) in [
            (128, 784, 256, false),
            (130, 256, 256, true),
            (77, 3000, 10, false),
        ] {
            for beta in [0.0, 1.0] {
                let a_data = val(m * k, 31);
                let b_data = val(k * n, 32);
                let a = View::rows(&a_data, k);
                let b = if tb {
                    View::transposed(&b_data, k)
                } else {
                    View::rows(&b_data, n)
                };
                let what = format!("{m}x{k}x{n} beta {beta}");
                crate::nn::ops::par::assert_same_bits_on_1_and_3_threads(&what, || {
                    let mut c = val(m * n, 33);
                    super::super::gemm::gemm(m, k, n, 1.0, a, b, beta, &mut c, n);
                    vec![c]
                });
            }
        }
    }

    /// The threads that compute part of a product take the caller's float modes: with
    /// subnormals flushed on the caller, every part flushes them (products of 1e-20 and 1e-20
    /// are subnormal, so every value is zero), on one thread and on three alike.
    #[test]
    fn gemm_parts_flush_subnormals_as_their_caller_does() {
        use crate::nn::denormals::FlushDenormals;
        // Enough rows that the pool's other threads take parts (each a few hundred microseconds).
        let (m, k, n) = (8192, 64, 256);
        let (a_data, b_data) = (vec![1e-20f32; m * k], vec![1e-20f32; k * n]);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let _flush = FlushDenormals::new();
                let mut c = vec![1.0f32; m * n];
                let (a, b) = (View::rows(&a_data, k), View::rows(&b_data, n));
                super::super::gemm::gemm(m, k, n, 1.0, a, b, 0.0, &mut c, n);
                c
            })
        };
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        for threads in [1, 3] {
            let c = run(threads);
            assert!(
                c.iter().all(|&v| v == 0.0),
                "{threads} threads: {:e}",
                c[m * n - 1]
            );
        }
    }
}
