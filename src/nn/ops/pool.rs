//! Max and average pooling (rectangular windows, stride, padding) and global average pooling.

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, Tape};

use super::conv::{check_window, out_len};
use super::scratch::{give_f32, give_u8, give_usize, take_f32, take_u8, take_usize};
use super::simd::simd_fn;
use super::{make_output, release_grad, take_grad, take_input, Activations, OpError};

/// What a pooling window computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// The largest value of the window; padding never wins.
    Max,
    /// The mean of the window's values inside the input (padding is not counted).
    Avg,
}

/// Shape of a pooling layer: channels, input size, window, stride, padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    /// PyTorch's `ceil_mode`: the output size rounds up, so that the input's last rows or
    /// columns get a partial window of their own (`MaxPool2d(2, ceil_mode=True)` turns 7 into
    /// 4, where rounding down drops the seventh row and gives 3).
    pub ceil: bool,
}

impl Pool2dGeom {
    /// Output height; only meaningful once [`Pool2dGeom::check`] passed.
    pub fn out_h(&self) -> usize {
        pool_out_len(self.h, self.pad_h, self.kh, self.stride_h, self.ceil)
    }

    /// Output width; only meaningful once [`Pool2dGeom::check`] passed.
    pub fn out_w(&self) -> usize {
        pool_out_len(self.w, self.pad_w, self.kw, self.stride_w, self.ceil)
    }

    /// Rejects empty sizes, windows larger than the padded input, and padding past half a
    /// window (PyTorch's rule), which guarantees every window overlaps the input.
    pub fn check(&self) -> Result<(), OpError> {
        for (what, v) in [
            ("c", self.c),
            ("h", self.h),
            ("w", self.w),
            ("kh", self.kh),
            ("kw", self.kw),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
        ] {
            if v == 0 {
                return Err(OpError::Zero { what });
            }
        }
        if 2 * self.pad_h > self.kh || 2 * self.pad_w > self.kw {
            return Err(OpError::PoolPaddingTooLarge {
                pad_h: self.pad_h,
                pad_w: self.pad_w,
                kh: self.kh,
                kw: self.kw,
            });
        }
        check_window(
            self.kh,
            self.kw,
            self.h + 2 * self.pad_h,
            self.w + 2 * self.pad_w,
        )
    }

    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub(super) fn out_len(&self) -> usize {
        self.c * self.out_h() * self.out_w()
    }

    /// The input rows (or columns) window `o` covers, clipped to the input.
    #[inline]
    fn span(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
        let start = o * stride;
        let lo = start.saturating_sub(pad);
        let hi = (start + k).saturating_sub(pad).min(len);
        (lo, hi)
    }
}

/// PyTorch's `pooling_output_shape`: with `ceil`, rounded up, less the last window if it would
/// start past the input and its left padding.
fn pool_out_len(len: usize, pad: usize, k: usize, stride: usize, ceil: bool) -> usize {
    let floor = out_len(len, pad, k, stride);
    let whole = (len + 2 * pad)
        .saturating_sub(k)
        .is_multiple_of(stride.max(1));
    if ceil && !whole && floor * stride < len + pad {
        floor + 1
    } else {
        floor
    }
}

/// Max or average pooling of `(N, c*h*w)` activations into `(N, c*out_h*out_w)`.
///
/// # Panics
/// On any [`OpError`] from [`try_pool2d`]; check the geometry once with [`Pool2dGeom::check`].
pub fn pool2d<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    kind: PoolKind,
    g: &Pool2dGeom,
) -> Activations<T> {
    match try_pool2d(x, kind, g) {
        Ok(y) => y,
        Err(e) => panic!("pool2d: {e}"),
    }
}

/// [`pool2d`] with its errors returned.
pub fn try_pool2d<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    kind: PoolKind,
    g: &Pool2dGeom,
) -> Result<Activations<T>, OpError> {
    g.check()?;
    let got = x.shape().1;
    if got != g.in_len() {
        return Err(OpError::InputWidth {
            got,
            expected: g.in_len(),
            what: format!("{}x{}x{}", g.c, g.h, g.w),
        });
    }
    let n = x.shape().0;
    let input = take_input(x)?;
    let geom = *g;
    // Every value is written below; the buffer is recycled once copied into the output tensor.
    let mut out = take_f32(n * g.out_len());
    // Max pooling remembers each window's winner (its place in a 2x2 window, else an index
    // into the input), so that backward needs neither the input nor a second search.
    let winners = match kind {
        PoolKind::Max => max_forward(&geom, &input.data, &mut out, T::OWNS_TAPE),
        PoolKind::Avg => {
            avg_forward(&geom, &input.data, &mut out);
            Winners::Index(Vec::new())
        }
    };
    give_f32(input.data);

    let dev = input.tensor.device().clone();
    let y = make_output::<T>(&dev, out, n, g.out_len())?;
    let mut tape = input.tape;
    let x_ghost = input.tensor.ghost();
    let y_ghost = y.ghost();
    tape.add_backward_op(move |grads| {
        let gy = take_grad!(grads, &y_ghost);
        {
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            match kind {
                PoolKind::Max => winners.backward(&geom, &gy, gx),
                PoolKind::Avg => avg_backward(&geom, &gy, gx),
            }
        }
        release_grad(gy);
        winners.give();
        Ok(())
    });
    Ok(y.put_tape(tape))
}

/// Each window's winner, which max pooling's backward pass routes the window's gradient to.
pub(super) enum Winners {
    /// The 2x2, stride 2 windows, every one whole: per window, its winner's place in it (0 and
    /// 1 the top row, 2 and 3 the bottom one), a byte where an index takes eight.
    Quad(Vec<u8>),
    /// Any other windows: per window, its winner's index into the input.
    Index(Vec<usize>),
}

impl Winners {
    /// Adds each window's gradient `gy` to its winner in `gx`.
    pub(super) fn backward(&self, g: &Pool2dGeom, gy: &[f32], gx: &mut [f32]) {
        match self {
            Winners::Index(w) => {
                for (&i, &d) in w.iter().zip(gy) {
                    gx[i] += d;
                }
            }
            Winners::Quad(codes) => quad_backward(g, codes, gy, gx, false),
        }
    }

    /// [`Winners::backward`] onto zeros, `gx` written whole: the bits of zeroing it first and
    /// adding (`0.0 + d`, so that a gradient of -0 lands as +0, as the addition gives), in one
    /// pass for the 2x2 windows.
    pub(super) fn backward_fresh(&self, g: &Pool2dGeom, gy: &[f32], gx: &mut [f32]) {
        match self {
            Winners::Index(_) => {
                gx.fill(0.0);
                self.backward(g, gy, gx);
            }
            Winners::Quad(codes) => quad_backward(g, codes, gy, gx, true),
        }
    }

    /// Hands the buffer back for reuse.
    pub(super) fn give(self) {
        match self {
            Winners::Quad(v) => give_u8(v),
            Winners::Index(v) => give_usize(v),
        }
    }
}

/// Writes each window's maximum; returns the winners when `keep` asks for them (else empty).
pub(super) fn max_forward(g: &Pool2dGeom, x: &[f32], out: &mut [f32], keep: bool) -> Winners {
    if quad(g) {
        Winners::Quad(max_forward_2x2(g, x, out, keep))
    } else {
        Winners::Index(max_forward_any(g, x, out, keep))
    }
}

/// [`max_forward`] for any windows: the winners as indices into the input.
fn max_forward_any(g: &Pool2dGeom, x: &[f32], out: &mut [f32], keep: bool) -> Vec<usize> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut winners = take_usize(if keep { out.len() } else { 0 });
    winners.clear();
    let planes = x.chunks_exact(g.h * g.w).zip(out.chunks_exact_mut(oh * ow));
    for (p, (plane, dst)) in planes.enumerate() {
        let base = p * g.h * g.w;
        for oy in 0..oh {
            let (ylo, yhi) = Pool2dGeom::span(oy, g.stride_h, g.pad_h, g.kh, g.h);
            for ox in 0..ow {
                let (xlo, xhi) = Pool2dGeom::span(ox, g.stride_w, g.pad_w, g.kw, g.w);
                let mut best = ylo * g.w + xlo;
                let mut best_v = plane[best];
                for iy in ylo..yhi {
                    for ix in xlo..xhi {
                        let v = plane[iy * g.w + ix];
                        // NaN wins, as in PyTorch, so that it is not silently dropped.
                        if v > best_v || (v.is_nan() && !best_v.is_nan()) {
                            best_v = v;
                            best = iy * g.w + ix;
                        }
                    }
                }
                dst[oy * ow + ox] = best_v;
                if keep {
                    winners.push(base + best);
                }
            }
        }
    }
    winners
}

simd_fn! {
    /// One row of 2x2 windows: the maxima of the pairs of `top` and `bottom` into `out`, their
    /// places (0 to 3) into `codes`; a tournament of selects, which compiles without branches
    /// (on real data the winner is random, so branches mispredict). Comparisons are false on
    /// NaN: returns whether some window's sum is NaN, for the caller to redo those windows.
    fn quad_row(top: &[f32], bottom: &[f32], out: &mut [f32], codes: &mut [u8]) -> bool {
        let n = out.len().min(codes.len());
        let (top, bottom) = (&top[..2 * n], &bottom[..2 * n]);
        let mut nan = false;
        for i in 0..n {
            let (t0, t1, b0, b1) = (top[2 * i], top[2 * i + 1], bottom[2 * i], bottom[2 * i + 1]);
            let (m1, k1) = if t1 > t0 { (t1, 1) } else { (t0, 0) };
            let (m2, k2) = if b1 > b0 { (b1, 3) } else { (b0, 2) };
            let (m, k) = if m2 > m1 { (m2, k2) } else { (m1, k1) };
            out[i] = m;
            codes[i] = k;
            nan |= (t0 + t1 + b0 + b1).is_nan();
        }
        nan
    }
}

simd_fn! {
    /// One row of 2x2 windows' gradients written whole: `0.0 + d` at each winner, 0 elsewhere.
    fn quad_row_fresh(top: &mut [f32], bottom: &mut [f32], d: &[f32], codes: &[u8]) {
        let n = d.len().min(codes.len());
        let (top, bottom) = (&mut top[..2 * n], &mut bottom[..2 * n]);
        for i in 0..n {
            let (v, k) = (0.0 + d[i], codes[i]);
            top[2 * i] = if k == 0 { v } else { 0.0 };
            top[2 * i + 1] = if k == 1 { v } else { 0.0 };
            bottom[2 * i] = if k == 2 { v } else { 0.0 };
            bottom[2 * i + 1] = if k == 3 { v } else { 0.0 };
        }
    }
}

/// One row of 2x2 windows' gradients added at their winners in `rows` (two input rows `w`
/// apart): the place computed from the code, as an index is, without a branch on it (the
/// winners are random, so branches would mispredict).
fn quad_row_add(rows: &mut [f32], w: usize, d: &[f32], codes: &[u8]) {
    for (i, (&d, &k)) in d.iter().zip(codes).enumerate() {
        let k = usize::from(k);
        rows[(k >> 1) * w + 2 * i + (k & 1)] += d;
    }
}

/// Whether `g`'s windows are the common 2x2, stride 2 ones, every one whole.
fn quad(g: &Pool2dGeom) -> bool {
    (g.kh, g.kw, g.stride_h, g.stride_w, g.pad_h, g.pad_w) == (2, 2, 2, 2, 0, 0)
        && 2 * g.out_h() <= g.h
        && 2 * g.out_w() <= g.w
}

/// The backward pass of the 2x2 windows from their codes: adds each window's gradient at its
/// winner, or (`fresh`) writes every value of `gx`, the winners' `0.0 + d` and zeros elsewhere
/// (the rows and columns no window covers too).
fn quad_backward(g: &Pool2dGeom, codes: &[u8], gy: &[f32], gx: &mut [f32], fresh: bool) {
    let (oh, ow) = (g.out_h(), g.out_w());
    // A code per gradient, a plane per window plane: else planes would be left unwritten.
    debug_assert_eq!(codes.len(), gy.len(), "max pooling: a code per window");
    debug_assert_eq!(
        gx.len() / (g.h * g.w),
        gy.len() / (oh * ow),
        "max pooling: planes"
    );
    let planes = gx
        .chunks_exact_mut(g.h * g.w)
        .zip(gy.chunks_exact(oh * ow).zip(codes.chunks_exact(oh * ow)));
    for (plane, (gp, cp)) in planes {
        for oy in 0..oh {
            let (d, k) = (&gp[oy * ow..][..ow], &cp[oy * ow..][..ow]);
            let rows = &mut plane[2 * oy * g.w..(2 * oy + 2) * g.w];
            if fresh {
                let (top, bottom) = rows.split_at_mut(g.w);
                quad_row_fresh(top, bottom, d, k);
                top[2 * ow..].fill(0.0);
                bottom[2 * ow..].fill(0.0);
            } else {
                quad_row_add(rows, g.w, d, k);
            }
        }
        if fresh {
            plane[2 * oh * g.w..].fill(0.0);
        }
    }
}

/// The mean of each plane of `hw` values of `x`, into `out`.
pub(super) fn channel_means(x: &[f32], hw: usize, out: &mut [f32]) {
    let inv = 1.0 / hw as f32;
    for (o, plane) in out.iter_mut().zip(x.chunks_exact(hw)) {
        *o = plane.iter().sum::<f32>() * inv;
    }
}

/// [`channel_means`]'s backward: each mean's gradient spread over its plane of `gx`, added.
pub(super) fn means_backward(gy: &[f32], hw: usize, gx: &mut [f32]) {
    let inv = 1.0 / hw as f32;
    for (plane, &d) in gx.chunks_exact_mut(hw).zip(gy) {
        for v in plane {
            *v += d * inv;
        }
    }
}

/// The first maximum of `c`, NaN winning (as in PyTorch) so that it is not silently dropped.
#[inline]
fn first_max(c: &[f32]) -> (f32, usize) {
    let (mut best, mut k) = (c[0], 0);
    for (i, &v) in c.iter().enumerate().skip(1) {
        if v > best || (v.is_nan() && !best.is_nan()) {
            best = v;
            k = i;
        }
    }
    (best, k)
}

/// The common 2x2, stride 2 window, every window whole: no bounds to clip, a row of windows at
/// a time ([`quad_row`]); the winners as codes when `keep` asks for them (else empty).
fn max_forward_2x2(g: &Pool2dGeom, x: &[f32], out: &mut [f32], keep: bool) -> Vec<u8> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut codes = take_u8(if keep { out.len() } else { 0 });
    // Without `keep`, the codes of one row at a time.
    let mut spare = vec![0u8; if keep { 0 } else { ow }];
    let planes = x.chunks_exact(g.h * g.w).zip(out.chunks_exact_mut(oh * ow));
    for (p, (plane, dst)) in planes.enumerate() {
        for oy in 0..oh {
            let top = &plane[2 * oy * g.w..2 * oy * g.w + 2 * ow];
            let bottom = &plane[(2 * oy + 1) * g.w..(2 * oy + 1) * g.w + 2 * ow];
            let row = &mut dst[oy * ow..(oy + 1) * ow];
            let ks: &mut [u8] = if keep {
                &mut codes[(p * oh + oy) * ow..][..ow]
            } else {
                &mut spare
            };
            if quad_row(top, bottom, row, ks) {
                // The windows holding a NaN (or infinities of both signs), the careful way.
                for (ox, o) in row.iter_mut().enumerate() {
                    let c = [
                        top[2 * ox],
                        top[2 * ox + 1],
                        bottom[2 * ox],
                        bottom[2 * ox + 1],
                    ];
                    if (c[0] + c[1] + c[2] + c[3]).is_nan() {
                        let (m, k) = first_max(&c);
                        *o = m;
                        ks[ox] = k as u8;
                    }
                }
            }
        }
    }
    codes
}

fn avg_forward(g: &Pool2dGeom, x: &[f32], out: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for (plane, dst) in x.chunks_exact(g.h * g.w).zip(out.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let (ylo, yhi) = Pool2dGeom::span(oy, g.stride_h, g.pad_h, g.kh, g.h);
            for ox in 0..ow {
                let (xlo, xhi) = Pool2dGeom::span(ox, g.stride_w, g.pad_w, g.kw, g.w);
                let mut s = 0.0f32;
                for iy in ylo..yhi {
                    s += plane[iy * g.w + xlo..iy * g.w + xhi].iter().sum::<f32>();
                }
                dst[oy * ow + ox] = s / ((yhi - ylo) * (xhi - xlo)) as f32;
            }
        }
    }
}

fn avg_backward(g: &Pool2dGeom, gy: &[f32], gx: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for (plane, src) in gx.chunks_exact_mut(g.h * g.w).zip(gy.chunks_exact(oh * ow)) {
        for oy in 0..oh {
            let (ylo, yhi) = Pool2dGeom::span(oy, g.stride_h, g.pad_h, g.kh, g.h);
            for ox in 0..ow {
                let (xlo, xhi) = Pool2dGeom::span(ox, g.stride_w, g.pad_w, g.kw, g.w);
                let d = src[oy * ow + ox] / ((yhi - ylo) * (xhi - xlo)) as f32;
                for iy in ylo..yhi {
                    for v in &mut plane[iy * g.w + xlo..iy * g.w + xhi] {
                        *v += d;
                    }
                }
            }
        }
    }
}

/// Averages each channel's `hw` values: `(N, c*hw)` into `(N, c)`.
///
/// # Panics
/// On any [`OpError`] from [`try_global_avg_pool`].
pub fn global_avg_pool<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    c: usize,
    hw: usize,
) -> Activations<T> {
    match try_global_avg_pool(x, c, hw) {
        Ok(y) => y,
        Err(e) => panic!("global_avg_pool: {e}"),
    }
}

/// [`global_avg_pool`] with its errors returned.
pub fn try_global_avg_pool<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    c: usize,
    hw: usize,
) -> Result<Activations<T>, OpError> {
    if c == 0 {
        return Err(OpError::Zero { what: "channels" });
    }
    if hw == 0 {
        return Err(OpError::Zero {
            what: "values per channel (hw)",
        });
    }
    let got = x.shape().1;
    if got != c * hw {
        return Err(OpError::InputWidth {
            got,
            expected: c * hw,
            what: format!("{c} channels x {hw}"),
        });
    }
    let n = x.shape().0;
    let input = take_input(x)?;
    let mut out = take_f32(n * c);
    channel_means(&input.data, hw, &mut out);
    give_f32(input.data);
    let dev = input.tensor.device().clone();
    let y = make_output::<T>(&dev, out, n, c)?;
    let mut tape = input.tape;
    let x_ghost = input.tensor.ghost();
    let y_ghost = y.ghost();
    tape.add_backward_op(move |grads| {
        let gy = take_grad!(grads, &y_ghost);
        {
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            means_backward(&gy, hw, gx);
        }
        release_grad(gy);
        Ok(())
    });
    Ok(y.put_tape(tape))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2x2 windows' codes give what the general windows' indices give, bit for bit: the
    /// maxima (ties to the first, NaN winning), the gradients added onto what a buffer holds,
    /// and the gradients written whole (a -0 gradient lands as +0, as added onto zeros; the
    /// rows and columns no window covers are zero). Even and odd maps, many planes.
    #[test]
    fn quad_codes_match_the_general_windows() {
        // Up to 34 windows a row, so that the vector loops run, not only their scalar rest.
        for (c, h, w) in [
            (3, 8, 8),
            (2, 7, 9),
            (1, 2, 2),
            (4, 5, 4),
            (2, 6, 68),
            (1, 3, 71),
        ] {
            let g = Pool2dGeom {
                c,
                h,
                w,
                kh: 2,
                kw: 2,
                stride_h: 2,
                stride_w: 2,
                pad_h: 0,
                pad_w: 0,
                ceil: false,
            };
            g.check().unwrap();
            assert!(quad(&g), "{g:?}");
            let n = 3;
            // Three values, neighbours mostly equal, so that windows tie within a row and
            // across rows.
            let mut x: Vec<f32> = (0..n * g.in_len())
                .map(|i| ((i / 2 * 5 + i % 2 * usize::from(i % 3 == 0)) % 3) as f32 - 1.0)
                .collect();
            let plane = g.h * g.w;
            // In the first plane's first windows: one all one value (its first place wins);
            // +0 against -0 (equal: the first wins); a NaN; two NaNs of other payloads (the
            // first wins); infinities of both signs.
            let windows: [[f32; 4]; 5] = [
                [1.0; 4],
                [0.0, -0.0, -0.0, 0.0],
                [2.0, f32::NAN, 5.0, -1.0],
                [
                    -1.0,
                    f32::from_bits(0x7fc0_0001),
                    3.0,
                    f32::from_bits(0xffc0_0002),
                ],
                [f32::INFINITY, 1.0, f32::NEG_INFINITY, f32::INFINITY],
            ];
            for (k, win) in windows.iter().enumerate().take(g.out_w()) {
                for (j, &v) in win.iter().enumerate() {
                    x[(j / 2) * g.w + 2 * k + j % 2] = v;
                }
            }
            // The last plane's last whole window holds a NaN too.
            x[n * plane - plane + (2 * g.out_h() - 1) * g.w + 2 * g.out_w() - 1] = f32::NAN;
            let m = n * g.out_len();
            let gy: Vec<f32> = (0..m)
                .map(|i| match i % 7 {
                    1 => -0.0,
                    5 => f32::NAN,
                    _ => i as f32 * 0.25 - 3.0,
                })
                .collect();
            let (mut want, mut got) = (vec![7.0; m], vec![7.0; m]);
            let indices = Winners::Index(max_forward_any(&g, &x, &mut want, true));
            let codes = max_forward(&g, &x, &mut got, true);
            assert!(matches!(codes, Winners::Quad(_)));
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{g:?} maxima");
            let held: Vec<f32> = (0..x.len()).map(|i| (i % 3) as f32 * 0.5).collect();
            let (mut want, mut got) = (held.clone(), held);
            indices.backward(&g, &gy, &mut want);
            codes.backward(&g, &gy, &mut got);
            assert_eq!(bits(&got), bits(&want), "{g:?} added");
            let mut want = vec![0.0; x.len()];
            indices.backward(&g, &gy, &mut want);
            let mut got = vec![f32::NAN; x.len()];
            codes.backward_fresh(&g, &gy, &mut got);
            assert_eq!(bits(&got), bits(&want), "{g:?} written whole");
            // Without `keep`, the same maxima and no winners.
            let mut plain = vec![7.0; m];
            let none = max_forward(&g, &x, &mut plain, false);
            assert_eq!(
                bits(&plain),
                bits(&got_maxima(&g, &x)),
                "{g:?} without keep"
            );
            assert!(matches!(none, Winners::Quad(ref v) if v.is_empty()));
        }
    }

    /// The maxima of the general windows' path, winners not kept.
    fn got_maxima(g: &Pool2dGeom, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len() / g.in_len() * g.out_len()];
        max_forward_any(g, x, &mut out, false);
        out
    }
}
