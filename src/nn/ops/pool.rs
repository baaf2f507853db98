//! Max and average pooling (rectangular windows, stride, padding) and global average pooling.

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, Tape};

use super::conv::{check_window, out_len};
use super::scratch::{give_f32, give_usize, take_f32, take_usize};
use super::{make_output, put_grad, release_grad, take_grad, take_input, Activations, OpError};

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
    // Max pooling remembers each window's winner (an index into the input), so that backward
    // needs neither the input nor a second search.
    let winners = match kind {
        PoolKind::Max => max_forward(&geom, &input.data, &mut out, T::OWNS_TAPE),
        PoolKind::Avg => {
            avg_forward(&geom, &input.data, &mut out);
            Vec::new()
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
                PoolKind::Max => max_backward(&winners, &gy, gx),
                PoolKind::Avg => avg_backward(&geom, &gy, gx),
            }
        }
        release_grad!(grads, &y_ghost, gy, true);
        give_usize(winners);
        Ok(())
    });
    Ok(y.put_tape(tape))
}

/// Writes each window's maximum; returns the winners' input indices when `keep` asks for them.
pub(super) fn max_forward(g: &Pool2dGeom, x: &[f32], out: &mut [f32], keep: bool) -> Vec<usize> {
    if (g.kh, g.kw, g.stride_h, g.stride_w, g.pad_h, g.pad_w) == (2, 2, 2, 2, 0, 0)
        && 2 * g.out_h() <= g.h
        && 2 * g.out_w() <= g.w
    {
        return max_forward_2x2(g, x, out, keep);
    }
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

/// Max pooling's backward: each window's gradient `gy` added at its winner's index in `gx`.
pub(super) fn max_backward(winners: &[usize], gy: &[f32], gx: &mut [f32]) {
    for (&i, &d) in winners.iter().zip(gy) {
        gx[i] += d;
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

/// The common 2x2, stride 2 window, every window whole: no bounds to clip and a tournament of
/// selects, which compiles without branches (on real data the winner is random, so branches
/// mispredict).
fn max_forward_2x2(g: &Pool2dGeom, x: &[f32], out: &mut [f32], keep: bool) -> Vec<usize> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut winners = take_usize(if keep { out.len() } else { 0 });
    let mut ks = vec![0u8; ow];
    let planes = x.chunks_exact(g.h * g.w).zip(out.chunks_exact_mut(oh * ow));
    for (p, (plane, dst)) in planes.enumerate() {
        for oy in 0..oh {
            let top = &plane[2 * oy * g.w..2 * oy * g.w + 2 * ow];
            let bottom = &plane[(2 * oy + 1) * g.w..(2 * oy + 1) * g.w + 2 * ow];
            let row = &mut dst[oy * ow..(oy + 1) * ow];
            for (((o, k), t), b) in row
                .iter_mut()
                .zip(ks.iter_mut())
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                let (m1, k1) = if t[1] > t[0] { (t[1], 1) } else { (t[0], 0) };
                let (m2, k2) = if b[1] > b[0] { (b[1], 3) } else { (b[0], 2) };
                let (m, mk) = if m2 > m1 { (m2, k2) } else { (m1, k1) };
                *o = m;
                *k = mk;
            }
            // Comparisons are false on NaN, so windows holding one are redone the careful way.
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
            if keep {
                let base = p * g.h * g.w + 2 * oy * g.w;
                let dst_w = &mut winners[(p * oh + oy) * ow..(p * oh + oy + 1) * ow];
                for (ox, (wn, &k)) in dst_w.iter_mut().zip(&ks).enumerate() {
                    let k = k as usize;
                    *wn = base + (k / 2) * g.w + 2 * ox + k % 2;
                }
            }
        }
    }
    winners
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
        release_grad!(grads, &y_ghost, gy, true);
        Ok(())
    });
    Ok(y.put_tape(tape))
}
