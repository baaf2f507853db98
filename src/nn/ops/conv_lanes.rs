//! Direct convolution for small maps (digits' 8x8 and what downsampling leaves of it), with
//! [`L`] samples in the vector lanes.
//!
//! [`super::conv_direct`] computes one sample at a time over flat positions `oy * wp + ox`: on an
//! 8x8 map a third of that work goes to the junk columns of each row, on 4x4 and 2x2 maps half
//! or more, with the rounding to whole register blocks. Here a group of `L` samples is stored
//! position-major with the samples innermost (`[c][y][x][sample]`, zero-bordered as there), so
//! that every position is one vector, and the same kernels run with every offset times `L`: the
//! forward and input-gradient correlations start their blocks on valid positions only, and the
//! weight gradient sums each output row as one pass of a [`Chunk`] (no junk columns; one vector
//! reduction per group). A batch that is not a multiple of `L` leaves the last group's spare
//! lanes zero: their output gradient is zero, so they add nothing.

use super::conv::Conv2dGeom;
use super::conv_direct::{self, correlate_at, flip_kernel, tap_offsets, weight_grad};
use super::conv_direct::{Chunk, Layout, NB};
use super::scratch::{give_f32, lines, lines_mut, take_lines};

/// Samples per vector group: one AVX-512 vector (two register blocks of `NB` are two positions).
pub(super) const L: usize = 16;
/// Input maps of at most this many positions take this path (12x12: digits' 8x8 and 1x40
/// signals' small stages; 14x14 and up keep one sample a pass, where junk columns are few).
pub(super) const MAX_POSITIONS: usize = 144;

/// Whether [`forward`] and [`backward`] take this geometry (see [`conv_direct::applies`]).
pub(super) fn applies(g: &Conv2dGeom) -> bool {
    conv_direct::applies(g) && g.in_h * g.in_w <= MAX_POSITIONS
}

/// Float offsets of the block starts that cover positions `(y, x)`, `y < rows`, `x < cols`, at
/// flat index `first + y * wp + x`, two positions a block (an odd row's last block also
/// computes the position after it, which is a junk column or the next row's first: the same
/// value either way).
fn pair_starts(rows: usize, cols: usize, wp: usize, first: usize) -> Vec<usize> {
    debug_assert_eq!(NB, 2 * L);
    let mut starts = Vec::with_capacity(rows * cols.div_ceil(2));
    for y in 0..rows {
        for x in (0..cols).step_by(2) {
            starts.push((first + y * wp + x) * L);
        }
    }
    starts
}

/// Tap offsets in floats of the lanes layout.
fn lane_offsets(channels: usize, plane: usize, g: &Conv2dGeom, wp: usize) -> Vec<usize> {
    let mut offs = tap_offsets(channels, plane, g.kh, g.kw, wp);
    for o in &mut offs {
        *o *= L;
    }
    offs
}

/// Floats of one group's copy of the input.
fn group_len(l: &Layout) -> usize {
    l.sample * L
}

/// Forward pass: `out` is `(n, out_c*oh*ow)` (every value written), bias added when given.
/// Returns the lanes copy of the input, which [`backward`] reads.
pub(super) fn forward(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Vec<f32> {
    let (h, wd, oh, ow) = (g.in_h, g.in_w, g.out_h(), g.out_w());
    let gl = group_len(l);
    let groups = n.div_ceil(L);
    // Every buffer of this layout starts on a 64-byte line: its vectors are at multiples of
    // `L` floats, so all their loads and stores are then aligned.
    let mut xl_buf = take_lines(groups * gl);
    let xl = lines_mut(&mut xl_buf, groups * gl);
    xl.fill(0.0);
    let in_len = g.in_c * h * wd;
    for (s, xs) in x.chunks_exact(in_len).enumerate().take(n) {
        let base = (s / L) * gl + s % L;
        for (c, plane) in xs.chunks_exact(h * wd).enumerate() {
            for (y, row) in plane.chunks_exact(wd).enumerate() {
                let at = c * l.plane + (y + g.pad_h) * l.wp + g.pad_w;
                for (xx, v) in row.iter().enumerate() {
                    xl[base + (at + xx) * L] = *v;
                }
            }
        }
    }
    let offs = lane_offsets(g.in_c, l.plane, g, l.wp);
    let starts = pair_starts(oh, ow, l.wp, 0);
    let stride = (oh * l.wp + 2) * L;
    let mut ol_buf = take_lines(g.out_c * stride);
    let ol = lines_mut(&mut ol_buf, g.out_c * stride);
    let out_len = g.out_c * oh * ow;
    for (gi, xg) in xl.chunks_exact(gl).enumerate() {
        correlate_at(g.out_c, &offs, xg, w, ol, stride, &starts);
        for lane in 0..L.min(n - gi * L) {
            let ys = &mut out[(gi * L + lane) * out_len..][..out_len];
            for (co, plane) in ys.chunks_exact_mut(oh * ow).enumerate() {
                let b = bias.map_or(0.0, |b| b[co]);
                let src = &ol[co * stride + lane..];
                for (oy, row) in plane.chunks_exact_mut(ow).enumerate() {
                    for (ox, o) in row.iter_mut().enumerate() {
                        *o = src[(oy * l.wp + ox) * L] + b;
                    }
                }
            }
        }
    }
    give_f32(ol_buf);
    xl_buf
}

/// Backward pass over the lanes copy [`forward`] returned (the whole buffer): adds the weight
/// gradient into `gw` and, when asked, the input gradient into `gx` (`(n, in_c*in_h*in_w)`).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    xl: &[f32],
    w: &[f32],
    gy: &[f32],
    gw: &mut [f32],
    mut gx: Option<&mut [f32]>,
) {
    let (h, wd, oh, ow) = (g.in_h, g.in_w, g.out_h(), g.out_w());
    let x_offs = lane_offsets(g.in_c, l.plane, g, l.wp);
    let dy_offs = lane_offsets(g.out_c, l.dy_plane, g, l.wp);
    // The input gradient correlates with the flipped, transposed kernel.
    let wflip = if gx.is_some() {
        flip_kernel(g, w)
    } else {
        Vec::new()
    };
    let dx_starts = pair_starts(h, wd, l.wp, g.pad_w);
    let dx_stride = (h * l.wp + 2) * L;
    let dy_len = g.out_c * l.dy_plane * L;
    let mut dy_buf = take_lines(dy_len);
    let dy = lines_mut(&mut dy_buf, dy_len);
    let dx_len = if gx.is_some() { g.in_c * dx_stride } else { 0 };
    let mut dx_buf = take_lines(dx_len);
    let dx = lines_mut(&mut dx_buf, dx_len);
    let xl = lines(xl, n.div_ceil(L) * group_len(l));
    let (in_len, out_len) = (g.in_c * h * wd, g.out_c * oh * ow);
    // Each output row is one pass of the weight gradient: `ow` positions, `wp` apart.
    let rows = Chunk {
        count: oh,
        x: l.wp * L,
        dy: l.wp * L,
    };
    for (gi, xg) in xl.chunks_exact(group_len(l)).enumerate() {
        let lanes = L.min(n - gi * L);
        // Margins, junk columns and spare lanes are zeros.
        dy.fill(0.0);
        for lane in 0..lanes {
            let gys = &gy[(gi * L + lane) * out_len..][..out_len];
            for (co, plane) in gys.chunks_exact(oh * ow).enumerate() {
                let dst = &mut dy[(co * l.dy_plane + l.margin) * L + lane..];
                for (oy, row) in plane.chunks_exact(ow).enumerate() {
                    for (ox, v) in row.iter().enumerate() {
                        dst[(oy * l.wp + ox) * L] = *v;
                    }
                }
            }
        }
        let (stride, margin) = (l.dy_plane * L, l.margin * L);
        weight_grad(g.out_c, &x_offs, xg, dy, stride, margin, ow * L, rows, gw);
        let Some(gx) = gx.as_deref_mut() else {
            continue;
        };
        let dys = &dy[l.dx_start * L..];
        correlate_at(g.in_c, &dy_offs, dys, &wflip, dx, dx_stride, &dx_starts);
        for lane in 0..lanes {
            let gxs = &mut gx[(gi * L + lane) * in_len..][..in_len];
            for (ci, plane) in gxs.chunks_exact_mut(h * wd).enumerate() {
                let src = &dx[ci * dx_stride + g.pad_w * L + lane..];
                for (y, row) in plane.chunks_exact_mut(wd).enumerate() {
                    for (xx, o) in row.iter_mut().enumerate() {
                        *o += src[(y * l.wp + xx) * L];
                    }
                }
            }
        }
    }
    give_f32(dy_buf);
    give_f32(dx_buf);
    give_f32(wflip);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::conv_direct::tests::{geom, Reference};

    /// The lanes path gives the outputs and gradients of the one-sample-at-a-time path, for
    /// batches that fill their groups and batches that do not, odd and even widths, kernels
    /// of 1 to 5 taps and 1-D signals.
    #[test]
    fn lanes_match_the_flat_kernels() {
        let geoms = [
            (2, (8, 8), 3, (3, 3), (1, 1)),
            (3, (8, 8), 5, (5, 5), (2, 2)),
            (4, (4, 4), 2, (3, 3), (1, 1)),
            (2, (3, 5), 3, (3, 3), (1, 1)),
            (3, (2, 2), 4, (5, 5), (2, 2)),
            (2, (1, 9), 3, (1, 5), (0, 2)),
            (2, (5, 7), 3, (3, 1), (0, 0)),
        ];
        for (in_c, hw, out_c, k, pad) in geoms {
            let g = geom(in_c, hw, out_c, k, pad);
            g.check().unwrap();
            assert!(applies(&g), "{g:?}");
            let l = Layout::new(&g);
            for n in [1, 16, 21, 35] {
                let r = Reference::new(&g, n, true, 0.0);
                let mut got = vec![f32::NAN; n * g.out_len()];
                let xl = forward(&g, &l, n, &r.x, &r.w, r.b.as_deref(), &mut got);
                let (mut got_w, mut got_x) = (vec![r.init; r.w.len()], vec![r.init; r.x.len()]);
                backward(&g, &l, n, &xl, &r.w, &r.gy, &mut got_w, Some(&mut got_x));
                r.check(&g, n, 1e-3, [&got, &got_w, &got_x]);
            }
        }
    }
}
