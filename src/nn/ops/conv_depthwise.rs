//! Depthwise convolution (one input channel per group) over zero-bordered flat planes, as
//! `conv_direct` does for full convolutions: each input plane is copied once into an `hp x wp`
//! plane, the stride-1 output `(y, x)` is computed at flat index `y * wp + x`, and tap `(i, j)`
//! reads the plane at that index plus `i * wp + j`. Every tap is then one pass of plain vector
//! loads over all of a plane's outputs (the junk columns at the end of each row included and
//! thrown away), where clipping each tap to the map left rows of 4 to 8 values on digits' 8x8
//! maps: the depthwise layers were 69% of a separable network's training time. A stride keeps
//! every `stride`-th output of the stride-1 one, and its output gradient enters the backward
//! pass spread onto the stride-1 grid with zeros between: up to four times the products at
//! stride 2, still fewer cycles than the clipped loops.
//!
//! Maps of at most 144 positions (digits' 8x8 and what downsampling leaves of it, 1x40 signals:
//! `conv_lanes`'s limit) take [`lanes`] instead: 16 samples in the vector lanes, as
//! `conv_lanes` does for full convolutions, where the flat planes' set-up per plane (border,
//! bias, copy out) cost more than the products on a 4x4 or 2x2 map (a 64-channel sigmoid
//! separable network over digits trained 12% faster).
//!
//! On both paths the output and the input gradient add the taps' terms in the order the
//! clipped loops did, so they are the same sums; the padding and the spread add zeros (`w *
//! +0`), which can turn a -0 the clipped loops keep into +0, the same on both paths. The weight
//! gradient sums over flat indices (or, in lanes, positions) in vector lanes, a different
//! order.

use super::conv::Conv2dGeom;
use super::conv_direct::place_rows;
use super::conv_lanes;
use super::scratch::{give_f32, take_f32};
use super::simd::simd_fn;

/// Flat positions per block: four AVX2 vectors, whose sums over a plane's taps are independent
/// chains.
const B: usize = 32;

/// Whether this path takes `g`: one input channel per group (several output channels each
/// allowed).
pub(super) fn applies(g: &Conv2dGeom) -> bool {
    g.in_c == g.groups && g.groups > 1
}

/// Sizes of the padded flat planes of one geometry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// Padded width: the row stride of every flat plane.
    wp: usize,
    /// Flat indices of the stride-1 output per plane, `(hp - kh + 1) * wp` rounded up to
    /// whole blocks.
    q: usize,
    /// Floats per padded plane: `hp * wp` and what the last block's taps read past it.
    plane: usize,
    /// Flat indices of the input gradient computed, from `pad_h * wp` (its first row): its
    /// `in_h` rows rounded up to whole blocks.
    dx_len: usize,
    /// Leading zeros of the output-gradient plane, `(kh - 1) * wp + kw - 1`: the input gradient
    /// at flat index `k` reads it at `k - offset(t)` for every tap `t`.
    margin: usize,
    /// Floats of the output-gradient plane: margin, data and the zeros the reads reach.
    dy_plane: usize,
    /// Maps of at most `conv_lanes::MAX_POSITIONS` take the lanes path ([`lanes`]); larger
    /// ones keep the flat planes, whose junk columns are then few.
    lanes: bool,
}

impl Layout {
    pub(super) fn new(g: &Conv2dGeom) -> Self {
        let wp = g.in_w + 2 * g.pad_w;
        let hp = g.in_h + 2 * g.pad_h;
        let q = ((hp - g.kh + 1) * wp).div_ceil(B) * B;
        let margin = (g.kh - 1) * wp + g.kw - 1;
        let dx_len = (g.in_h * wp).div_ceil(B) * B;
        let dx_end = g.pad_h * wp + dx_len;
        let plane = (hp * wp).max(q + margin).max(dx_end);
        let dy_plane = margin + q.max(dx_end);
        Layout {
            wp,
            q,
            plane,
            dx_len,
            margin,
            dy_plane,
            lanes: g.in_h * g.in_w <= conv_lanes::MAX_POSITIONS,
        }
    }

    /// Floats per sample of the zero-bordered input, which backward keeps (the lanes path
    /// rounds the batch up to whole groups of [`lanes::L`]).
    pub(super) fn padded_len(&self, g: &Conv2dGeom) -> usize {
        if self.lanes {
            g.in_c * lanes::plane(g, self)
        } else {
            g.in_c * self.plane
        }
    }

    /// Flat offset of tap `t` of a `kw`-wide kernel.
    fn offset(&self, t: usize, kw: usize) -> usize {
        tap_offset(t, kw, self.wp)
    }
}

/// Offset of tap `t` of a `kw`-wide kernel in a plane of rows `wp` apart.
fn tap_offset(t: usize, kw: usize, wp: usize) -> usize {
    t / kw * wp + t % kw
}

/// Writes the output of a batch of `n` into `out` (every value) and returns the padded input,
/// which [`backward`] reads.
pub(super) fn forward(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Vec<f32> {
    if l.lanes {
        return lanes::forward(g, l, n, x, w, bias, out);
    }
    let (hw, ohw, kk) = (g.in_h * g.in_w, g.out_h() * g.out_w(), g.kh * g.kw);
    let per = g.out_c / g.in_c;
    let first = g.pad_h * l.wp + g.pad_w;
    let offs: Vec<usize> = (0..kk).map(|t| l.offset(t, g.kw)).collect();
    let mut xpad = take_f32(n * l.padded_len(g));
    let mut acc = take_f32(l.q);
    let planes = x.chunks_exact(hw).zip(xpad.chunks_exact_mut(l.plane));
    for (p, (src, xp)) in planes.enumerate() {
        place_rows(xp, first, l.wp, src, g.in_w);
        let (s, ci) = (p / g.in_c, p % g.in_c);
        for co in ci * per..(ci + 1) * per {
            acc.fill(bias.map_or(0.0, |b| b[co]));
            correlate(&mut acc, xp, &w[co * kk..(co + 1) * kk], &offs);
            let dst = &mut out[(s * g.out_c + co) * ohw..][..ohw];
            let rows = acc.chunks(g.stride_h * l.wp);
            for (d, r) in dst.chunks_exact_mut(g.out_w()).zip(rows) {
                if g.stride_w == 1 {
                    d.copy_from_slice(&r[..g.out_w()]);
                } else {
                    for (o, v) in d.iter_mut().zip(r.iter().step_by(g.stride_w)) {
                        *o = *v;
                    }
                }
            }
        }
    }
    give_f32(acc);
    xpad
}

/// Adds the weight's gradient into `gw` and, when asked, the input's into `gx`, for the output
/// gradient `gy`, from the padded input `xpad` that [`forward`] returned.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    xpad: &[f32],
    w: &[f32],
    gy: &[f32],
    gw: &mut [f32],
    mut gx: Option<&mut [f32]>,
) {
    if l.lanes {
        return lanes::backward(g, l, n, xpad, w, gy, gw, gx);
    }
    let (hw, ohw, kk) = (g.in_h * g.in_w, g.out_h() * g.out_w(), g.kh * g.kw);
    let per = g.out_c / g.in_c;
    let first = g.pad_h * l.wp + g.pad_w;
    let offs: Vec<usize> = (0..kk).map(|t| l.offset(t, g.kw)).collect();
    // The input gradient at flat index `k` reads the output gradient at `k - offs[t]`, which
    // lies at `margin + k - offs[t]` in its plane: a correlation with these offsets.
    let back: Vec<usize> = offs.iter().map(|o| l.margin - o).collect();
    // Per output channel and tap, B partial sums of the weight gradient, reduced at the end.
    let mut partial = take_f32(g.out_c * kk * B);
    partial.fill(0.0);
    // One output-gradient plane in the flat layout after `margin` zeros, zeros in its junk
    // columns and past them.
    let mut dy_buf = take_f32(l.dy_plane);
    // One input-gradient plane, zero-bordered.
    let mut dx = take_f32(if gx.is_some() { l.plane } else { 0 });
    for (p, xp) in xpad.chunks_exact(l.plane).enumerate().take(n * g.in_c) {
        let (s, ci) = (p / g.in_c, p % g.in_c);
        let gx_plane = gx.as_deref_mut().map(|v| &mut v[p * hw..(p + 1) * hw]);
        // The taps add onto what the gradient holds, in the order the clipped loops added them.
        if let Some(src) = gx_plane.as_deref() {
            place_rows(&mut dx, first, l.wp, src, g.in_w);
        }
        for co in ci * per..(ci + 1) * per {
            let src = &gy[(s * g.out_c + co) * ohw..][..ohw];
            spread(g, l, src, &mut dy_buf);
            let dy = &dy_buf[l.margin..l.margin + l.q];
            weight_grad(&mut partial[co * kk * B..(co + 1) * kk * B], dy, xp, &offs);
            if gx_plane.is_some() {
                let rows = &mut dx[g.pad_h * l.wp..][..l.dx_len];
                let taps = &w[co * kk..(co + 1) * kk];
                correlate(rows, &dy_buf[g.pad_h * l.wp..], taps, &back);
            }
        }
        if let Some(dst) = gx_plane {
            for (d, r) in dst.chunks_exact_mut(g.in_w).zip(dx[first..].chunks(l.wp)) {
                d.copy_from_slice(&r[..g.in_w]);
            }
        }
    }
    for (o, l) in gw.iter_mut().zip(partial.chunks_exact(B)) {
        *o += l.iter().sum::<f32>();
    }
    for v in [partial, dy_buf, dx] {
        give_f32(v);
    }
}

/// Writes every float of `dy`: `margin` zeros, then the output-gradient plane `src` on the
/// stride-1 grid (output `(oy, ox)` at `oy * stride_h * wp + ox * stride_w`), zeros elsewhere.
fn spread(g: &Conv2dGeom, l: &Layout, src: &[f32], dy: &mut [f32]) {
    if (g.stride_h, g.stride_w) == (1, 1) {
        place_rows(dy, l.margin, l.wp, src, g.out_w());
        return;
    }
    dy.fill(0.0);
    let rows = dy[l.margin..].chunks_mut(g.stride_h * l.wp);
    for (r, s) in rows.zip(src.chunks_exact(g.out_w())) {
        for (o, v) in r.iter_mut().step_by(g.stride_w).zip(s) {
            *o = *v;
        }
    }
}

simd_fn! {
/// `acc[k] += taps[t] * x[k + offs[t]]` for every tap in order, a block of `B` outputs at a
/// time held in registers: the output from the padded input, and the input gradient from the
/// output gradient.
fn correlate(acc: &mut [f32], x: &[f32], taps: &[f32], offs: &[usize]) {
    for (b, a) in acc.chunks_exact_mut(B).enumerate() {
        let mut r: [f32; B] = a.try_into().expect("B floats");
        for (&wv, &off) in taps.iter().zip(offs) {
            let xs: &[f32; B] = x[b * B + off..][..B].try_into().expect("B floats");
            for k in 0..B {
                r[k] += wv * xs[k];
            }
        }
        a.copy_from_slice(&r);
    }
}
}

simd_fn! {
/// Per tap `t`, `partial[t * B + k] += dy[j * B + k] * x[j * B + k + offs[t]]` over the blocks
/// `j`.
fn weight_grad(partial: &mut [f32], dy: &[f32], x: &[f32], offs: &[usize]) {
    for (l, &off) in partial.chunks_exact_mut(B).zip(offs) {
        let mut r: [f32; B] = l.try_into().expect("B floats");
        for (b, d) in dy.chunks_exact(B).enumerate() {
            let xs: &[f32; B] = x[b * B + off..][..B].try_into().expect("B floats");
            for k in 0..B {
                r[k] += d[k] * xs[k];
            }
        }
        l.copy_from_slice(&r);
    }
}
}

/// The depthwise kernel for small maps with [`lanes::L`] samples in the vector lanes, as
/// `conv_lanes` does for full convolutions: one pass of plain loads per tap and position, no
/// junk columns and no per-plane set-up (which the flat planes pay 64 times per sample on a
/// 64-channel layer: on digits' 4x4 and 2x2 maps more than the products).
mod lanes {
    use super::super::conv::Conv2dGeom;
    use super::super::scratch::{give_f32, lines, lines_mut, take_lines};
    use super::super::simd::simd_fn;
    use super::super::transpose::transpose_strided;
    use super::{tap_offset, Layout};

    /// Samples per group: `conv_lanes`'s, one AVX-512 vector.
    pub(super) use super::super::conv_lanes::L;

    /// Positions of the zero-bordered input plane, `hp x wp` (the flat planes' without their
    /// slack).
    pub(super) fn plane(g: &Conv2dGeom, l: &Layout) -> usize {
        (g.in_h + 2 * g.pad_h) * l.wp
    }

    /// Where [`weight_lanes`] reads: output rows and columns, strides, the widths of the input
    /// plane and of the output-gradient grid, and the grid position of output (0, 0).
    #[derive(Clone, Copy)]
    struct GridGeom {
        oh: usize,
        ow: usize,
        sh: usize,
        sw: usize,
        wp: usize,
        gwid: usize,
        first: usize,
    }

    /// The output-gradient grid: the stride-1 output's `oh1 x ow1` positions (the strided
    /// output at every `stride`-th, zeros between) bordered by `kh - 1` rows and `kw - 1`
    /// columns of zeros on every side; its rows and columns.
    pub(super) fn dy_grid(g: &Conv2dGeom, l: &Layout) -> (usize, usize) {
        let hp = g.in_h + 2 * g.pad_h;
        let (oh1, ow1) = (hp - g.kh + 1, l.wp - g.kw + 1);
        (oh1 + 2 * (g.kh - 1), ow1 + 2 * (g.kw - 1))
    }

    /// Writes the output of a batch of `n` into `out` (every value) and returns the bordered
    /// input in lanes (`[group][c][y][x][lane]`), which [`backward`] reads. Each output adds
    /// the bias and then the taps' terms in order, as the flat planes do: the same sums.
    pub(super) fn forward(
        g: &Conv2dGeom,
        l: &Layout,
        n: usize,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> Vec<f32> {
        let (oh, ow, kk) = (g.out_h(), g.out_w(), g.kh * g.kw);
        let per = g.out_c / g.in_c;
        let (in_len, out_len) = (g.in_len(), g.out_len());
        let pl = plane(g, l);
        let gl = g.in_c * pl * L;
        let groups = n.div_ceil(L);
        let mut xl_buf = take_lines(groups * gl);
        let xl = lines_mut(&mut xl_buf, groups * gl);
        xl.fill(0.0);
        // Tap offsets in positions of the bordered plane.
        let offs: Vec<usize> = (0..kk).map(|t| tap_offset(t, g.kw, l.wp)).collect();
        let ohw = oh * ow;
        let tmp_len = ohw.max(g.in_h * g.in_w) * L;
        let mut tmp_buf = take_lines(tmp_len);
        for (gi, xg) in xl.chunks_exact_mut(gl).enumerate() {
            let (s0, count) = (gi * L, L.min(n - gi * L));
            let tmp = lines_mut(&mut tmp_buf, tmp_len);
            if count < L {
                // Spare lanes stay zero (they meet zero gradients in backward).
                tmp.fill(0.0);
            }
            to_lanes(g, l, &x[s0 * in_len..], count, xg, tmp);
            for co in 0..g.out_c {
                let xc = &xg[co / per * pl * L..][..pl * L];
                let taps = &w[co * kk..(co + 1) * kk];
                let b = bias.map_or(0.0, |b| b[co]);
                for oy in 0..oh {
                    let acc = &mut tmp[oy * ow * L..][..ow * L];
                    let first = oy * g.stride_h * l.wp;
                    correlate_row(acc, xc, taps, &offs, first, g.stride_w, b);
                }
                // Lanes back to samples: out[s][co][..].
                let dst = &mut out[s0 * out_len + co * ohw..];
                transpose_strided(tmp, (ohw, count), L, dst, out_len, false);
            }
        }
        give_f32(tmp_buf);
        xl_buf
    }

    /// Group `count` samples of `x` (`(count, in_c*h*w)`) into `xg`'s bordered planes, lanes
    /// innermost (the borders and spare lanes left as they are: zero), a plane at a time
    /// through `tmp` (`h w` vectors).
    fn to_lanes(
        g: &Conv2dGeom,
        l: &Layout,
        x: &[f32],
        count: usize,
        xg: &mut [f32],
        tmp: &mut [f32],
    ) {
        let (in_len, hw, row) = (g.in_len(), g.in_h * g.in_w, g.in_w * L);
        let pl = plane(g, l);
        for c in 0..g.in_c {
            transpose_strided(&x[c * hw..], (count, hw), in_len, tmp, L, false);
            for y in 0..g.in_h {
                let at = c * pl + (y + g.pad_h) * l.wp + g.pad_w;
                xg[at * L..][..row].copy_from_slice(&tmp[y * row..][..row]);
            }
        }
    }

    simd_fn! { avx512
    /// One output row in lanes: `acc[ox]` = `b` plus, tap by tap in order, the tap times the
    /// input at `first + ox * stride + offs[t]` (positions of the bordered plane `xc`).
    fn correlate_row(
        acc: &mut [f32],
        xc: &[f32],
        taps: &[f32],
        offs: &[usize],
        first: usize,
        stride: usize,
        b: f32,
    ) {
        for (ox, a) in acc.chunks_exact_mut(L).enumerate() {
            let mut r = [b; L];
            let at = first + ox * stride;
            for (&wv, &off) in taps.iter().zip(offs) {
                let xs: &[f32; L] = xc[(at + off) * L..][..L].try_into().expect("L floats");
                for k in 0..L {
                    r[k] += wv * xs[k];
                }
            }
            a.copy_from_slice(&r);
        }
    }
    }

    /// Adds the weight's gradient into `gw` and, when asked, the input's into `gx`, from the
    /// lanes copy `xl` that [`forward`] returned. The input gradient adds the taps' terms onto
    /// what `gx` holds in the flat planes' order (the same sums); the weight gradient sums
    /// each tap's products over positions in the lanes, then the lanes, a different order.
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
        let (oh, ow, kk) = (g.out_h(), g.out_w(), g.kh * g.kw);
        let per = g.out_c / g.in_c;
        let (in_len, out_len) = (g.in_len(), g.out_len());
        let pl = plane(g, l);
        let gl = g.in_c * pl * L;
        let (gh, gwid) = dy_grid(g, l);
        let grid = gh * gwid;
        let xl = lines(xl, n.div_ceil(L) * gl);
        let dy_len = g.out_c * grid * L;
        let mut dy_buf = take_lines(dy_len);
        let dy = lines_mut(&mut dy_buf, dy_len);
        let mut sums_buf = take_lines(g.out_c * kk * L);
        let sums = lines_mut(&mut sums_buf, g.out_c * kk * L);
        sums.fill(0.0);
        let (hw, ohw) = (g.in_h * g.in_w, oh * ow);
        let tmp_len = hw.max(ohw) * L;
        let mut tmp_buf = take_lines(tmp_len);
        // Tap offsets: in the input plane for the weight gradient; in the output-gradient
        // grid, from the input position's, for the input gradient (`D(y - i, x - j)` sits at
        // `(y - i + kh - 1, x - j + kw - 1)`: the offset of the mirrored tap `kk - 1 - t`).
        let x_offs: Vec<usize> = (0..kk).map(|t| tap_offset(t, g.kw, l.wp)).collect();
        let back: Vec<usize> = (0..kk)
            .map(|t| tap_offset(kk - 1 - t, g.kw, gwid))
            .collect();
        // The output gradient on the stride-1 grid, bordered; zeros elsewhere (spare lanes
        // included: they add nothing). Every group writes the same positions, all lanes.
        dy.fill(0.0);
        let grid_geom = GridGeom {
            oh,
            ow,
            sh: g.stride_h,
            sw: g.stride_w,
            wp: l.wp,
            gwid,
            first: (g.kh - 1) * gwid + g.kw - 1,
        };
        for (gi, xg) in xl.chunks_exact(gl).enumerate() {
            let (s0, count) = (gi * L, L.min(n - gi * L));
            let tmp = lines_mut(&mut tmp_buf, tmp_len);
            if count < L {
                tmp.fill(0.0);
            }
            for co in 0..g.out_c {
                let src = &gy[s0 * out_len + co * ohw..];
                transpose_strided(src, (count, ohw), out_len, tmp, L, false);
                for oy in 0..oh {
                    let at = co * grid + (oy * g.stride_h + g.kh - 1) * gwid + g.kw - 1;
                    let row = &tmp[oy * ow * L..][..ow * L];
                    if g.stride_w == 1 {
                        dy[at * L..][..ow * L].copy_from_slice(row);
                    } else {
                        for (ox, v) in row.chunks_exact(L).enumerate() {
                            dy[(at + ox * g.stride_w) * L..][..L].copy_from_slice(v);
                        }
                    }
                }
            }
            for co in 0..g.out_c {
                let xc = &xg[co / per * pl * L..][..pl * L];
                let dyc = &dy[co * grid * L..][..grid * L];
                weight_lanes(
                    &mut sums[co * kk * L..][..kk * L],
                    xc,
                    dyc,
                    &x_offs,
                    &grid_geom,
                );
            }
            let Some(gx) = gx.as_deref_mut() else {
                continue;
            };
            for ci in 0..g.in_c {
                let taps = &w[ci * per * kk..(ci + 1) * per * kk];
                let dys = &dy[ci * per * grid * L..][..per * grid * L];
                let gxs = &mut gx[s0 * in_len + ci * hw..];
                // What the gradient holds, in lanes; the taps' terms; back.
                transpose_strided(gxs, (count, hw), in_len, tmp, L, false);
                for y in 0..g.in_h {
                    let acc = &mut tmp[y * g.in_w * L..][..g.in_w * L];
                    let first = (y + g.pad_h) * gwid + g.pad_w;
                    input_row(acc, dys, taps, &back, first, grid);
                }
                transpose_strided(tmp, (hw, count), L, gxs, in_len, false);
            }
        }
        for (o, s) in gw.iter_mut().zip(sums.chunks_exact(L)) {
            *o += s.iter().sum::<f32>();
        }
        for v in [dy_buf, sums_buf, tmp_buf] {
            give_f32(v);
        }
    }

    simd_fn! { avx512
    /// One row of the input gradient in lanes: onto `acc[x]`, per output channel of the
    /// input channel (`per` of them, `grid` apart in `dys`) and tap in order, the tap times
    /// the output gradient at `first + x + back[t]`.
    fn input_row(
        acc: &mut [f32],
        dys: &[f32],
        taps: &[f32],
        back: &[usize],
        first: usize,
        grid: usize,
    ) {
        let kk = back.len();
        for (xx, a) in acc.chunks_exact_mut(L).enumerate() {
            let mut r: [f32; L] = (&*a).try_into().expect("L floats");
            for (p, tp) in taps.chunks_exact(kk).enumerate() {
                for (&wv, &off) in tp.iter().zip(back) {
                    let at = p * grid + first + xx + off;
                    let ds: &[f32; L] = dys[at * L..][..L].try_into().expect("L floats");
                    for k in 0..L {
                        r[k] += wv * ds[k];
                    }
                }
            }
            a.copy_from_slice(&r);
        }
    }
    }

    simd_fn! { avx512
    /// Per tap, onto `sums[t]` (one vector of lanes): the output gradient at each output
    /// position times the input under that tap.
    fn weight_lanes(sums: &mut [f32], xc: &[f32], dyc: &[f32], offs: &[usize], geo: &GridGeom) {
        let GridGeom {
            oh,
            ow,
            sh,
            sw,
            wp,
            gwid,
            first,
        } = *geo;
        for (s, &off) in sums.chunks_exact_mut(L).zip(offs) {
            let mut r: [f32; L] = (&*s).try_into().expect("L floats");
            for oy in 0..oh {
                for ox in 0..ow {
                    let d = first + oy * sh * gwid + ox * sw;
                    let at = oy * sh * wp + ox * sw + off;
                    let ds: &[f32; L] = dyc[d * L..][..L].try_into().expect("L floats");
                    let xs: &[f32; L] = xc[at * L..][..L].try_into().expect("L floats");
                    for k in 0..L {
                        r[k] += ds[k] * xs[k];
                    }
                }
            }
            s.copy_from_slice(&r);
        }
    }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::conv::valid_range;

    // The loops this module replaced, clipped to the map at every tap, kept as its reference.

    /// The input channel that output channel `co` reads when every group has one input channel.
    #[inline]
    fn source_channel(g: &Conv2dGeom, co: usize) -> usize {
        co / (g.out_c / g.groups)
    }

    /// Direct forward for one input channel per group: a GEMM with k = kh*kw would spend more time
    /// packing than multiplying.
    fn direct_forward(
        g: &Conv2dGeom,
        n: usize,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let (h, wd, oh, ow) = (g.in_h, g.in_w, g.out_h(), g.out_w());
        let kk = g.kh * g.kw;
        for s in 0..n {
            let xs = &x[s * g.in_len()..(s + 1) * g.in_len()];
            let ys = &mut out[s * g.out_len()..(s + 1) * g.out_len()];
            for (co, dst) in ys.chunks_exact_mut(oh * ow).enumerate() {
                let ci = source_channel(g, co);
                let plane = &xs[ci * h * wd..(ci + 1) * h * wd];
                dst.fill(bias.map_or(0.0, |b| b[co]));
                for i in 0..g.kh {
                    let (ylo, yhi) = valid_range(i, g.pad_h, g.stride_h, h, oh);
                    for j in 0..g.kw {
                        let (xlo, xhi) = valid_range(j, g.pad_w, g.stride_w, wd, ow);
                        if xlo == xhi {
                            continue;
                        }
                        let wv = w[co * kk + i * g.kw + j];
                        for oy in ylo..yhi {
                            let iy = oy * g.stride_h + i - g.pad_h;
                            let src = &plane[iy * wd..(iy + 1) * wd];
                            let d = &mut dst[oy * ow + xlo..oy * ow + xhi];
                            let ix0 = xlo * g.stride_w + j - g.pad_w;
                            if g.stride_w == 1 {
                                for (o, v) in d.iter_mut().zip(&src[ix0..ix0 + (xhi - xlo)]) {
                                    *o += wv * v;
                                }
                            } else {
                                for (k, o) in d.iter_mut().enumerate() {
                                    *o += wv * src[ix0 + k * g.stride_w];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn direct_weight_grad(g: &Conv2dGeom, n: usize, x: &[f32], gy: &[f32], gw: &mut [f32]) {
        let (h, wd, oh, ow) = (g.in_h, g.in_w, g.out_h(), g.out_w());
        let kk = g.kh * g.kw;
        for s in 0..n {
            let xs = &x[s * g.in_len()..(s + 1) * g.in_len()];
            let gys = &gy[s * g.out_len()..(s + 1) * g.out_len()];
            for (co, gplane) in gys.chunks_exact(oh * ow).enumerate() {
                let ci = source_channel(g, co);
                let plane = &xs[ci * h * wd..(ci + 1) * h * wd];
                for i in 0..g.kh {
                    let (ylo, yhi) = valid_range(i, g.pad_h, g.stride_h, h, oh);
                    for j in 0..g.kw {
                        let (xlo, xhi) = valid_range(j, g.pad_w, g.stride_w, wd, ow);
                        if xlo == xhi {
                            continue;
                        }
                        let mut acc = 0.0f32;
                        for oy in ylo..yhi {
                            let iy = oy * g.stride_h + i - g.pad_h;
                            let src = &plane[iy * wd..(iy + 1) * wd];
                            let d = &gplane[oy * ow + xlo..oy * ow + xhi];
                            let ix0 = xlo * g.stride_w + j - g.pad_w;
                            if g.stride_w == 1 {
                                acc += dot(d, &src[ix0..ix0 + d.len()]);
                            } else {
                                for (k, dv) in d.iter().enumerate() {
                                    acc += dv * src[ix0 + k * g.stride_w];
                                }
                            }
                        }
                        gw[co * kk + i * g.kw + j] += acc;
                    }
                }
            }
        }
    }

    fn direct_input_grad(g: &Conv2dGeom, n: usize, w: &[f32], gy: &[f32], gx: &mut [f32]) {
        let (h, wd, oh, ow) = (g.in_h, g.in_w, g.out_h(), g.out_w());
        let kk = g.kh * g.kw;
        for s in 0..n {
            let gxs = &mut gx[s * g.in_len()..(s + 1) * g.in_len()];
            let gys = &gy[s * g.out_len()..(s + 1) * g.out_len()];
            for (co, gplane) in gys.chunks_exact(oh * ow).enumerate() {
                let ci = source_channel(g, co);
                let plane = &mut gxs[ci * h * wd..(ci + 1) * h * wd];
                for i in 0..g.kh {
                    let (ylo, yhi) = valid_range(i, g.pad_h, g.stride_h, h, oh);
                    for j in 0..g.kw {
                        let (xlo, xhi) = valid_range(j, g.pad_w, g.stride_w, wd, ow);
                        if xlo == xhi {
                            continue;
                        }
                        let wv = w[co * kk + i * g.kw + j];
                        for oy in ylo..yhi {
                            let iy = oy * g.stride_h + i - g.pad_h;
                            let dst = &mut plane[iy * wd..(iy + 1) * wd];
                            let d = &gplane[oy * ow + xlo..oy * ow + xhi];
                            let ix0 = xlo * g.stride_w + j - g.pad_w;
                            if g.stride_w == 1 {
                                for (o, v) in dst[ix0..ix0 + d.len()].iter_mut().zip(d) {
                                    *o += wv * v;
                                }
                            } else {
                                for (k, v) in d.iter().enumerate() {
                                    dst[ix0 + k * g.stride_w] += wv * v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn depthwise(
        c: usize,
        hw: (usize, usize),
        per: usize,
        k: (usize, usize),
        pad: (usize, usize),
    ) -> Conv2dGeom {
        Conv2dGeom {
            in_c: c,
            in_h: hw.0,
            in_w: hw.1,
            out_c: c * per,
            kh: k.0,
            kw: k.1,
            stride_h: 1,
            stride_w: 1,
            pad_h: pad.0,
            pad_w: pad.1,
            groups: c,
        }
    }

    fn strided(g: Conv2dGeom, (sh, sw): (usize, usize)) -> Conv2dGeom {
        Conv2dGeom {
            stride_h: sh,
            stride_w: sw,
            ..g
        }
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The flat planes and the lanes give the clipped loops' output and input gradient bit for
    /// bit, and their weight gradient within rounding: same and valid padding, kernels larger
    /// than the map, rectangular kernels and maps, 1-D signals, channel multipliers, strides,
    /// with and without bias, batches of one group and of several (a partial last one),
    /// gradients added onto what the buffers hold.
    #[test]
    fn flat_planes_and_lanes_match_the_clipped_loops() {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let geoms = [
            depthwise(3, (8, 8), 1, (5, 5), (2, 2)),
            depthwise(4, (8, 8), 1, (3, 3), (1, 1)),
            depthwise(2, (4, 4), 1, (5, 5), (2, 2)),
            depthwise(2, (2, 2), 1, (5, 5), (2, 2)),
            depthwise(2, (5, 7), 2, (3, 5), (1, 2)),
            depthwise(3, (6, 6), 1, (3, 3), (0, 0)),
            depthwise(2, (1, 40), 1, (1, 5), (0, 2)),
            depthwise(2, (14, 14), 3, (3, 3), (1, 1)),
            // Strided: even and odd maps, 2 and 3, one axis only.
            strided(depthwise(3, (8, 8), 1, (5, 5), (2, 2)), (2, 2)),
            strided(depthwise(2, (7, 7), 1, (3, 3), (1, 1)), (2, 2)),
            strided(depthwise(2, (9, 10), 2, (3, 3), (1, 1)), (3, 2)),
            strided(depthwise(2, (1, 40), 1, (1, 5), (0, 2)), (1, 2)),
            strided(depthwise(2, (4, 4), 1, (5, 5), (2, 2)), (2, 2)),
        ];
        for (g, lanes) in geoms.iter().flat_map(|&g| [(g, false), (g, true)]) {
            g.check().unwrap();
            assert!(applies(&g));
            // Both paths on every geometry (the layout picks by the map's size).
            let l = Layout {
                lanes,
                ..Layout::new(&g)
            };
            for (n, bias) in [(1, true), (3, false), (16, true), (17, true), (35, false)] {
                let x = values(n * g.in_len(), 1);
                let w = values(g.out_c * g.kh * g.kw, 2);
                let b = bias.then(|| values(g.out_c, 3));
                let gy = values(n * g.out_len(), 4);
                let mut want = vec![f32::NAN; n * g.out_len()];
                direct_forward(&g, n, &x, &w, b.as_deref(), &mut want);
                let mut got = vec![f32::NAN; n * g.out_len()];
                // The scratch buffers the lanes path takes, full of NaN: spare lanes of a
                // partial group must not carry them into any value.
                let (gh, gwid) = lanes::dy_grid(&g, &l);
                let kk = g.kh * g.kw;
                let tmp = (g.in_h * g.in_w).max(g.out_h() * g.out_w()) * lanes::L;
                let lens = [tmp, g.out_c * gh * gwid * lanes::L, g.out_c * kk * lanes::L];
                let bordered = n.div_ceil(lanes::L) * g.in_c * lanes::plane(&g, &l) * lanes::L;
                poison(&[&lens[..], &[bordered]].concat());
                let xpad = forward(&g, &l, n, &x, &w, b.as_deref(), &mut got);
                assert_eq!(bits(&got), bits(&want), "{g:?} lanes {lanes} n={n}: output");
                let (mut want_w, mut want_x) = (vec![0.5; w.len()], vec![0.5; x.len()]);
                direct_weight_grad(&g, n, &x, &gy, &mut want_w);
                direct_input_grad(&g, n, &w, &gy, &mut want_x);
                let (mut got_w, mut got_x) = (vec![0.5; w.len()], vec![0.5; x.len()]);
                poison(&lens);
                backward(&g, &l, n, &xpad, &w, &gy, &mut got_w, Some(&mut got_x));
                assert_eq!(
                    bits(&got_x),
                    bits(&want_x),
                    "{g:?} lanes {lanes} n={n}: input gradient"
                );
                // Sums of `n * oh * ow` f32 products in other orders: rounding grows with them.
                let terms = (n * g.out_h() * g.out_w()) as f32;
                let scale = (terms / 200.0).sqrt().max(1.0);
                for (i, (u, v)) in got_w.iter().zip(&want_w).enumerate() {
                    let tol = 1e-5 * scale * (1.0 + v.abs());
                    assert!(
                        (u - v).abs() <= tol,
                        "{g:?} lanes {lanes} n={n}: weight gradient [{i}] {u} vs {v}"
                    );
                }
                // Without the input's gradient the weight's is the same.
                let mut only_w = vec![0.5; w.len()];
                backward(&g, &l, n, &xpad, &w, &gy, &mut only_w, None);
                assert_eq!(
                    only_w, got_w,
                    "{g:?} lanes {lanes} n={n}: weight gradient alone"
                );
            }
        }
    }

    /// Leaves buffers of these lengths (as `take_lines` asks for them) full of NaN in the
    /// scratch pool, where the next requests of the same lengths find them.
    fn poison(lens: &[usize]) {
        use crate::nn::ops::scratch::{give_f32, take_lines};
        let bufs: Vec<Vec<f32>> = lens
            .iter()
            .map(|&len| {
                let mut v = take_lines(len);
                v.fill(f32::NAN);
                v
            })
            .collect();
        bufs.into_iter().for_each(give_f32);
    }

    /// Dot product with eight independent partial sums, so that the compiler may vectorise it
    /// (a single running f32 sum has to stay in order).
    #[inline]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = a8
            .remainder()
            .iter()
            .zip(b8.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (ca, cb) in a8.zip(b8) {
            for k in 0..8 {
                acc[k] += ca[k] * cb[k];
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}
