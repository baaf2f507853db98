//! A bounds-checked front to `matrixmultiply::sgemm` (single-threaded, any strides), which takes
//! the unpacked kernels of `unpacked_gemm` where they give the same bits.

/// A read-only strided matrix view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix whose rows are `cols` apart.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns, without copying.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }
    /// Whether every element of a `rows x cols` matrix lies inside the slice.
    pub(crate) fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Whether [`gemm_by_transposed_rows`] copies its right operand: `m` rows of 16 or more, and
/// output rows of `n` values that the unpacked kernels cover; else the copy would only feed the
/// packing GEMM (or cost too much against `m k n` multiply-adds).
pub(crate) fn transposed_copy_pays(m: usize, n: usize) -> bool {
    m >= 16 && super::unpacked_gemm::exact_width(n).is_some()
}

/// `c = a bᵀ + beta c` for `a` `m x k` and `b` row-major `n x k` (its transpose `k x n` the
/// right operand): through a row-major copy of `bᵀ` where [`transposed_copy_pays`], so that the
/// unpacked kernels (which read the right operand by rows) take it instead of a packing GEMM on
/// the transposed view. Both sum each value's `k` products in the same order: the same bits.
/// The copy costs `k n` moves against `m k n` multiply-adds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_by_transposed_rows(
    (m, k, n): (usize, usize, usize),
    a: View<'_>,
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if !transposed_copy_pays(m, n) {
        gemm(m, k, n, 1.0, a, View::transposed(b, k), beta, c, ldc);
        return;
    }
    let mut bt = super::scratch::take_f32(k * n);
    super::transpose::transpose(&b[..n * k], n, k, &mut bt, false);
    gemm(m, k, n, 1.0, a, View::rows(&bt, n), beta, c, ldc);
    super::scratch::give_f32(bt);
}

/// `c = alpha * a * b + beta * c`, where `a` is m x k, `b` is k x n and `c` is row-major m x n
/// with rows `ldc` apart.
///
/// # Panics
/// If a view is too short for its shape: the unsafe call below relies on it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(a.fits(m, k) && b.fits(k, n), "gemm operand too short");
    assert!(
        m == 0 || n == 0 || (m - 1) * ldc + n <= c.len(),
        "gemm output too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    let parts = super::par::parts(m, m * k * n);
    if parts > 1 {
        // Row blocks of `c` on the pool's threads: every value is the same sum in the same
        // order whichever block computes it, so the bits do not depend on the threads.
        let rows = m.div_ceil(parts);
        use rayon::prelude::*;
        c.par_chunks_mut(rows * ldc)
            .enumerate()
            .for_each(super::par::in_caller_modes(
                |(i, cb): (usize, &mut [f32])| {
                    let r0 = i * rows;
                    let a = View {
                        data: &a.data[r0 * a.rs..],
                        rs: a.rs,
                        cs: a.cs,
                    };
                    serial(rows.min(m - r0), k, n, alpha, a, b, beta, cb, ldc);
                },
            ));
        return;
    }
    serial(m, k, n, alpha, a, b, beta, c, ldc);
}

/// [`gemm`] on the calling thread.
#[allow(clippy::too_many_arguments)]
fn serial(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    // The same sums without packing where a vector kernel fits: bit for bit what the call
    // below gives.
    if alpha == 1.0
        && (beta == 0.0 || beta == 1.0)
        && super::unpacked_gemm::exact_product((m, k, n), a, b, beta, c, ldc)
    {
        return;
    }
    // SAFETY: every index the kernel touches is (r * rs + c * cs) with r, c within the shapes
    // above, which the asserts keep inside the slices; `c` is borrowed mutably, so it aliases
    // neither `a` nor `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}
