//! Direct convolution for stride 1 and one group, without an im2col matrix.
//!
//! Each input plane is copied once into a zero-bordered `hp x wp` plane, stored flat. Output
//! position `(oy, ox)` is then computed at flat index `t = oy * wp + ox`, and kernel tap `(i, j)`
//! of input channel `c` reads the padded input at `c * plane + t + i * wp + j`: the whole
//! convolution is a 1-D correlation over flat indices, so a block of consecutive outputs reads
//! consecutive inputs (plain vector loads, no gather and no unfolded copy). The `wp - ow` indices
//! at the end of each row are computed too and thrown away (2 of 30 for a 28-wide, 3x3 layer).
//!
//! The backward pass has the same shape: the input gradient is the correlation of the output
//! gradient (zero-bordered the same way) with the flipped, transposed kernel; the weight gradient
//! is a dot product over flat indices per (output channel, tap) pair.
//!
//! The inner blocks use AVX2 + FMA where the CPU has them (checked at run time) and plain Rust
//! otherwise; both compute the same sums in the same order up to floating-point contraction.

use super::conv::Conv2dGeom;
use super::scratch::{give_f32, lines_after_mut, take_f32, take_lines};

/// Output positions per block: two 16-lane AVX-512 vectors, or two blocks of two 8-lane AVX2
/// vectors.
pub(super) const NB: usize = 32;
/// Flat positions per step of the weight gradient: one AVX-512 vector, two AVX2 ones.
const QV: usize = 16;
/// Output channels per register block (four rows of two vectors: 8 accumulators). Three AVX2
/// vectors (12 accumulators, 3 inputs and a broadcast: all 16 registers) made the compiler
/// spill two accumulators to the stack on every tap. AVX-512 (32 registers) correlates eight
/// rows at a time (16 accumulators: 8x8 digits networks 4-10% faster, 28x28 unchanged); its
/// weight gradient keeps four rows of two taps (four taps were 4-8% slower).
const MR: usize = 4;
/// Flat positions the weight gradient sums over before it reduces its vector accumulators to
/// scalars: on small maps (8x8: 96 positions a sample) a per-sample reduction cost more than the
/// products, so several samples are summed in one pass. Maps of 256 flat positions or more
/// (14x14 and up) keep one sample a pass: larger passes left the cache (2048: 1.4x slower on
/// an 8x8 network) and 256 keeps the 28x28 benchmark's sums, and so its figures, unchanged.
const WG_POSITIONS: usize = 256;

/// The samples of one weight-gradient pass: `count` of them, `x` floats apart in the padded
/// input and `dy` floats apart in the output-gradient planes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunk {
    pub(super) count: usize,
    pub(super) x: usize,
    pub(super) dy: usize,
}

/// Whether [`forward`] and [`backward`] take this geometry: stride 1, one group, and not a 1x1
/// kernel without padding (there the input is already the GEMM's matrix).
pub(super) fn applies(g: &Conv2dGeom) -> bool {
    let pointwise = g.kh == 1 && g.kw == 1 && g.pad_h == 0 && g.pad_w == 0;
    g.groups == 1 && g.stride_h == 1 && g.stride_w == 1 && !pointwise
}

/// Sizes of the padded, flat layout of one geometry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// Padded width: the row stride of every flat plane.
    pub(super) wp: usize,
    /// Padded plane, `hp * wp`.
    pub(super) plane: usize,
    /// Flat output indices per channel, `oh * wp` (junk columns included).
    q: usize,
    /// `q` rounded up to whole register blocks.
    qpad: usize,
    /// Floats per padded sample: `in_c` planes and the slack the last block reads past them.
    pub(super) sample: usize,
    /// Leading zeros of each output-gradient plane: `(kh - 1) * wp + kw - 1`.
    pub(super) margin: usize,
    /// First flat index of the input gradient's interior, `pad_h * wp`.
    pub(super) dx_start: usize,
    /// Interior indices of the input gradient, `h * wp`, rounded up to whole blocks.
    dx_len: usize,
    /// Floats per output-gradient plane (margin, data, trailing zeros).
    pub(super) dy_plane: usize,
}

impl Layout {
    pub(super) fn new(g: &Conv2dGeom) -> Self {
        let wp = g.in_w + 2 * g.pad_w;
        let hp = g.in_h + 2 * g.pad_h;
        let plane = hp * wp;
        let q = g.out_h() * wp;
        let qpad = q.div_ceil(NB) * NB;
        // The last block of the last plane reads up to index
        // (in_c - 1) * plane + qpad - 1 + (kh - 1) * wp + kw - 1, and q + (kh - 1) * wp = plane.
        let sample = g.in_c * plane + (qpad - q) + g.kw;
        let margin = (g.kh - 1) * wp + g.kw - 1;
        let dx_start = g.pad_h * wp;
        let dx_len = (g.in_h * wp).div_ceil(NB) * NB;
        // Reads of the input-gradient correlation stay inside a plane for every interior index,
        // and the weight gradient reads `margin + q` rounded up to whole steps.
        let reads = dx_start + dx_len + (g.kh - 1) * wp + g.kw;
        // Whole 64-byte lines, so that when one plane's data starts on a line all do (see
        // `backward`).
        let dy_plane = (margin + q.div_ceil(QV) * QV).max(reads).div_ceil(16) * 16;
        Layout {
            wp,
            plane,
            q,
            qpad,
            sample,
            margin,
            dx_start,
            dx_len,
            dy_plane,
        }
    }

    /// Floats of the padded copy of a batch of `n`.
    pub(super) fn padded_len(&self, n: usize) -> usize {
        n * self.sample
    }
}

/// Copies a batch of `(n, in_c*in_h*in_w)` inputs into the padded layout (`pad` must hold
/// [`Layout::padded_len`] floats; every one is written).
pub(super) fn pad_input(g: &Conv2dGeom, l: &Layout, x: &[f32], pad: &mut [f32]) {
    let (h, w) = (g.in_h, g.in_w);
    let first = g.pad_h * l.wp + g.pad_w;
    for (xs, ps) in x
        .chunks_exact(g.in_c * h * w)
        .zip(pad.chunks_exact_mut(l.sample))
    {
        let (planes, slack) = ps.split_at_mut(g.in_c * l.plane);
        for (src, dst) in xs.chunks_exact(h * w).zip(planes.chunks_exact_mut(l.plane)) {
            place_rows(dst, first, l.wp, src, w);
        }
        slack.fill(0.0);
    }
}

/// Writes every float of `dst`: the rows of `src` (`w` floats each) at `first`, `first +
/// stride`, ..., and zeros around and between them (only the zeros a row does not cover, not a
/// fill of the whole buffer first). The padded input and the output-gradient planes share it.
pub(super) fn place_rows(dst: &mut [f32], first: usize, stride: usize, src: &[f32], w: usize) {
    let mut at = 0;
    for (r, row) in src.chunks_exact(w).enumerate() {
        let start = first + r * stride;
        dst[at..start].fill(0.0);
        copy_row(&mut dst[start..start + w], row);
        at = start + w;
    }
    dst[at..].fill(0.0);
}

/// `dst.copy_from_slice(src)` for the short rows of an image, in blocks of 8 floats (the last
/// one overlapping the one before when the length is not a multiple of 8) that compile to
/// plain vector moves. A slice copy of unknown length is a call to memcpy, and so was a loop
/// over whole blocks (the compiler recognises it as one); clamping each block's start keeps
/// the loop from being one. (The calls were not what made the copies cost: a profile of the
/// trainer bench's CNN gave the rows the same share both ways.)
#[inline]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    const K: usize = 8;
    let n = dst.len();
    assert_eq!(n, src.len(), "copy_row: lengths differ");
    if n < K {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
        return;
    }
    for i in 0..n.div_ceil(K) {
        let at = (i * K).min(n - K);
        let s: &[f32; K] = src[at..at + K].try_into().expect("K floats");
        let d: &mut [f32; K] = (&mut dst[at..at + K]).try_into().expect("K floats");
        *d = *s;
    }
}

/// Forward pass over a padded batch: `out` is `(n, out_c*oh*ow)`, bias added when given.
pub(super) fn forward(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    xpad: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let offs = tap_offsets(g.in_c, l.plane, g.kh, g.kw, l.wp);
    let starts = whole_blocks(l.qpad);
    let out_len = g.out_c * oh * ow;
    let parts = super::par::parts(n, n * out_len * g.kh * g.kw * g.in_c);
    if parts > 1 {
        // Samples split across the pool's threads; each sample's output is the same.
        use rayon::prelude::*;
        let per = n.div_ceil(parts);
        out[..n * out_len]
            .par_chunks_mut(per * out_len)
            .enumerate()
            .for_each(super::par::in_caller_modes(
                |(i, o): (usize, &mut [f32])| {
                    let xs = &xpad[i * per * l.sample..];
                    forward_samples(g, l, o.len() / out_len, xs, w, bias, o, &offs, &starts);
                },
            ));
        return;
    }
    forward_samples(g, l, n, xpad, w, bias, out, &offs, &starts);
}

/// [`forward`] over `n` samples on the calling thread.
#[allow(clippy::too_many_arguments)]
fn forward_samples(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    xpad: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    offs: &[usize],
    starts: &[usize],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut flat = take_f32(g.out_c * l.qpad);
    for s in 0..n {
        let xs = &xpad[s * l.sample..(s + 1) * l.sample];
        correlate_at(g.out_c, offs, xs, w, &mut flat, l.qpad, starts);
        let ys = &mut out[s * g.out_c * oh * ow..(s + 1) * g.out_c * oh * ow];
        for (co, (dst, src)) in ys
            .chunks_exact_mut(oh * ow)
            .zip(flat.chunks_exact(l.qpad))
            .enumerate()
        {
            let b = bias.map_or(0.0, |b| b[co]);
            for (d, r) in dst.chunks_exact_mut(ow).zip(src.chunks_exact(l.wp)) {
                for (o, v) in d.iter_mut().zip(&r[..ow]) {
                    *o = v + b;
                }
            }
        }
    }
    give_f32(flat);
}

#[allow(clippy::too_many_arguments)]
/// Backward pass over a padded batch: adds the weight gradient into `gw` and, when asked, the
/// input gradient into `gx` (`(n, in_c*in_h*in_w)`).
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
    // The input gradient correlates with the flipped, transposed kernel.
    let wflip = if gx.is_some() {
        flip_kernel(g, w)
    } else {
        Vec::new()
    };
    let ctx = Pass {
        g,
        l,
        x_offs: tap_offsets(g.in_c, l.plane, g.kh, g.kw, l.wp),
        dy_offs: tap_offsets(g.out_c, l.dy_plane, g.kh, g.kw, l.wp),
        dx_starts: whole_blocks(l.dx_len),
        // The planes of several samples at once when a sample's map is small (see
        // `WG_POSITIONS`).
        per: (WG_POSITIONS / l.q.max(1)).clamp(1, n.max(1)),
        wflip,
    };
    let per = ctx.per;
    let in_len = g.in_c * g.in_h * g.in_w;
    let passes = n.div_ceil(per);
    let w_len = g.out_c * g.kh * g.kw * g.in_c;
    let work = n * g.out_c * g.out_h() * g.out_w() * g.kh * g.kw * g.in_c;
    let parts = super::par::parts(passes, work);
    if parts <= 1 {
        let mut bufs = ctx.buffers();
        for s0 in (0..n).step_by(per) {
            let m = per.min(n - s0);
            let gxs = gx
                .as_deref_mut()
                .map(|v| &mut v[s0 * in_len..(s0 + m) * in_len]);
            ctx.run(s0, m, xpad, gy, gw, gxs, &mut bufs);
        }
        ctx.give(bufs);
        give_f32(ctx.wflip);
        return;
    }
    // Runs of passes on the pool's threads, one run each. Each pass's weight-gradient sums go
    // to a slot of their own (from zero) and are added onto `gw` in pass order afterwards, the
    // order of the one-thread loop: the same bits (up to the sign of a zero gradient). The
    // slots of at most `MAX_SLOT_FLOATS` at a time: a large layer goes in several rounds.
    use rayon::prelude::*;
    let round = (MAX_SLOT_FLOATS / w_len.max(1)).clamp(parts, passes);
    let mut slots = take_f32(round * w_len);
    for first in (0..passes).step_by(round) {
        let count = round.min(passes - first);
        let run = count.div_ceil(parts);
        let s_first = first * per;
        let s_end = ((first + count) * per).min(n);
        let mut gx_runs: Vec<Option<&mut [f32]>> = match gx.as_deref_mut() {
            Some(v) => v[s_first * in_len..s_end * in_len]
                .chunks_mut(run * per * in_len)
                .map(Some)
                .collect(),
            None => (0..count.div_ceil(run)).map(|_| None).collect(),
        };
        slots[..count * w_len]
            .par_chunks_mut(run * w_len)
            .zip(gx_runs.par_iter_mut())
            .enumerate()
            .for_each(super::par::in_caller_modes(
                |(j, (slot_run, gxs)): (usize, (&mut [f32], &mut Option<&mut [f32]>))| {
                    let mut bufs = ctx.buffers();
                    let mut gxs = gxs.as_deref_mut();
                    for (q, slot) in slot_run.chunks_exact_mut(w_len).enumerate() {
                        slot.fill(0.0);
                        let s0 = s_first + (j * run + q) * per;
                        let m = per.min(n - s0);
                        let gx1 = gxs
                            .as_deref_mut()
                            .map(|v| &mut v[q * per * in_len..][..m * in_len]);
                        ctx.run(s0, m, xpad, gy, slot, gx1, &mut bufs);
                    }
                    ctx.give(bufs);
                },
            ));
        for slot in slots[..count * w_len].chunks_exact(w_len) {
            for (o, v) in gw.iter_mut().zip(slot) {
                *o += v;
            }
        }
    }
    give_f32(slots);
    give_f32(ctx.wflip);
}

/// Floats of per-pass weight-gradient slots a multi-threaded [`backward`] holds at once.
const MAX_SLOT_FLOATS: usize = 1 << 21;

/// What every pass of [`backward`] shares.
struct Pass<'a> {
    g: &'a Conv2dGeom,
    l: &'a Layout,
    x_offs: Vec<usize>,
    dy_offs: Vec<usize>,
    dx_starts: Vec<usize>,
    /// Samples per pass.
    per: usize,
    wflip: Vec<f32>,
}

/// One thread's scratch for the passes of [`backward`]: the output-gradient planes (on 64-byte
/// lines) and one sample's input-gradient planes.
struct PassBuffers {
    dy: Vec<f32>,
    dx: Vec<f32>,
}

impl Pass<'_> {
    fn buffers(&self) -> PassBuffers {
        let dy_sample = self.g.out_c * self.l.dy_plane;
        let with_dx = !self.wflip.is_empty();
        PassBuffers {
            dy: take_lines(self.per * dy_sample),
            dx: take_f32(if with_dx {
                self.g.in_c * self.l.dx_len
            } else {
                0
            }),
        }
    }

    fn give(&self, b: PassBuffers) {
        give_f32(b.dy);
        give_f32(b.dx);
    }

    /// Samples `s0..s0 + m`: adds their weight gradient into `gw` and, when given, writes
    /// their input gradient into `gx` (theirs only: `m` samples).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        s0: usize,
        m: usize,
        xpad: &[f32],
        gy: &[f32],
        gw: &mut [f32],
        gx: Option<&mut [f32]>,
        bufs: &mut PassBuffers,
    ) {
        let (g, l) = (self.g, self.l);
        let (oh, ow) = (g.out_h(), g.out_w());
        let dy_sample = g.out_c * l.dy_plane;
        let in_len = g.in_c * g.in_h * g.in_w;
        let out_len = g.out_c * oh * ow;
        // Every float of the output-gradient planes is written: margins and junk columns as
        // zeros. Each plane's data (past its margin) starts on a 64-byte line: the weight
        // gradient then loads the output gradient with aligned vector loads, which never
        // straddle two lines.
        let dy = lines_after_mut(&mut bufs.dy, self.per * dy_sample, l.margin);
        let dyc = &mut dy[..m * dy_sample];
        for (src, dst) in gy[s0 * out_len..(s0 + m) * out_len]
            .chunks_exact(oh * ow)
            .zip(dyc.chunks_exact_mut(l.dy_plane))
        {
            place_rows(dst, l.margin, l.wp, src, ow);
        }
        let xs = &xpad[s0 * l.sample..(s0 + m) * l.sample];
        let chunk = Chunk {
            count: m,
            x: l.sample,
            dy: dy_sample,
        };
        weight_grad(
            g.out_c,
            &self.x_offs,
            xs,
            dyc,
            l.dy_plane,
            l.margin,
            l.q,
            chunk,
            gw,
        );
        let Some(gx) = gx else {
            return;
        };
        for (j, dys) in dyc.chunks_exact(dy_sample).enumerate() {
            let dys = &dys[l.dx_start..];
            let dx = &mut bufs.dx;
            correlate_at(
                g.in_c,
                &self.dy_offs,
                dys,
                &self.wflip,
                dx,
                l.dx_len,
                &self.dx_starts,
            );
            let gxs = &mut gx[j * in_len..(j + 1) * in_len];
            for (dst, src) in gxs
                .chunks_exact_mut(g.in_h * g.in_w)
                .zip(dx.chunks_exact(l.dx_len))
            {
                for (d, r) in dst.chunks_exact_mut(g.in_w).zip(src.chunks_exact(l.wp)) {
                    for (o, v) in d.iter_mut().zip(&r[g.pad_w..]) {
                        *o += v;
                    }
                }
            }
        }
    }
}

/// The kernel flipped in both axes, input and output channels swapped (a scratch buffer): row
/// ci, column (co, i', j') holds `w[co][ci][kh-1-i'][kw-1-j']`.
pub(super) fn flip_kernel(g: &Conv2dGeom, w: &[f32]) -> Vec<f32> {
    let kk = g.kh * g.kw;
    let mut wflip = take_f32(g.in_c * g.out_c * kk);
    for ci in 0..g.in_c {
        for co in 0..g.out_c {
            for t in 0..kk {
                wflip[(ci * g.out_c + co) * kk + t] = w[(co * g.in_c + ci) * kk + kk - 1 - t];
            }
        }
    }
    wflip
}

/// Flat offset of every tap `(c, i, j)`, in weight-column order: `c * plane + i * wp + j`.
pub(super) fn tap_offsets(
    channels: usize,
    plane: usize,
    kh: usize,
    kw: usize,
    wp: usize,
) -> Vec<usize> {
    let mut offs = Vec::with_capacity(channels * kh * kw);
    for c in 0..channels {
        for i in 0..kh {
            for j in 0..kw {
                offs.push(c * plane + i * wp + j);
            }
        }
    }
    offs
}

/// Block starts covering `0..len` (`len` a multiple of [`NB`]): the whole rows of the flat
/// layout, for [`correlate_at`].
fn whole_blocks(len: usize) -> Vec<usize> {
    assert_eq!(len % NB, 0, "correlate: length not in whole blocks");
    (0..len).step_by(NB).collect()
}

/// `out[r * stride + t + u] = sum_k wt[r * K + k] * inp[offs[k] + t + u]` for `r < rows`, every
/// block start `t` in `starts` and `u < NB` (`K = offs.len()`); other outputs are left alone.
///
/// # Panics
/// If a slice is shorter than those indices need: the vector kernel reads without bounds checks.
pub(super) fn correlate_at(
    rows: usize,
    offs: &[usize],
    inp: &[f32],
    wt: &[f32],
    out: &mut [f32],
    stride: usize,
    starts: &[usize],
) {
    let kk = offs.len();
    let Some(last) = starts.iter().max().map(|t| t + NB) else {
        return;
    };
    if rows == 0 {
        return;
    }
    assert!(wt.len() >= rows * kk, "correlate: weights too short");
    assert!(
        last <= stride && out.len() >= (rows - 1) * stride + last,
        "correlate: output too short"
    );
    let reach = offs.iter().max().map_or(0, |m| m + last);
    assert!(inp.len() >= reach, "correlate: input too short");
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::has_avx512() {
            // SAFETY: the CPU has AVX-512F; the asserts above bound every index the kernel uses.
            unsafe { avx512::correlate(rows, offs, inp, wt, out, stride, starts) };
            return;
        }
        if super::simd::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA; the asserts above bound every index used.
            unsafe { avx2::correlate(rows, offs, inp, wt, out, stride, starts) };
            return;
        }
    }
    correlate_portable(rows, offs, inp, wt, out, stride, starts);
}

/// [`correlate_at`] in plain Rust.
fn correlate_portable(
    rows: usize,
    offs: &[usize],
    inp: &[f32],
    wt: &[f32],
    out: &mut [f32],
    stride: usize,
    starts: &[usize],
) {
    let kk = offs.len();
    for r in 0..rows {
        for &t in starts {
            let o = &mut out[r * stride + t..r * stride + t + NB];
            o.fill(0.0);
            for (k, &off) in offs.iter().enumerate() {
                let wv = wt[r * kk + k];
                for (d, x) in o.iter_mut().zip(&inp[off + t..off + t + NB]) {
                    *d += wv * x;
                }
            }
        }
    }
}

/// `gw[r * K + k] += sum_s sum_t dy[s * chunk.dy + r * stride + margin + t] * x[s * chunk.x +
/// offs[k] + t]` for `r < rows`, `k < K`, `s < chunk.count` and `t` below `q` rounded up to whole
/// [`QV`] steps (the planes are zero there).
///
/// # Panics
/// If a slice is shorter than those indices need: the vector kernel reads without bounds checks.
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_grad(
    rows: usize,
    offs: &[usize],
    x: &[f32],
    dy: &[f32],
    stride: usize,
    margin: usize,
    q: usize,
    chunk: Chunk,
    gw: &mut [f32],
) {
    let kk = offs.len();
    let qv = q.div_ceil(QV) * QV;
    assert!(gw.len() >= rows * kk, "weight_grad: gradient too short");
    if rows == 0 || chunk.count == 0 {
        return;
    }
    let last = chunk.count - 1;
    assert!(
        dy.len() >= last * chunk.dy + (rows - 1) * stride + margin + qv,
        "weight_grad: output gradient too short"
    );
    let reach = offs.iter().max().map_or(0, |m| m + qv);
    assert!(
        x.len() >= last * chunk.x + reach,
        "weight_grad: input too short"
    );
    let dy = &dy[margin..];
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::has_avx512() {
            // SAFETY: the CPU has AVX-512F; the asserts above bound every index used.
            unsafe { avx512::weight_grad(rows, offs, x, dy, stride, qv, chunk, gw) };
            return;
        }
        if super::simd::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA; the asserts above bound every index used.
            unsafe { avx2::weight_grad(rows, offs, x, dy, stride, qv, chunk, gw) };
            return;
        }
    }
    weight_grad_portable(rows, offs, x, dy, stride, qv, chunk, gw);
}

/// [`weight_grad`] in plain Rust (`dy` starts past the margin).
#[allow(clippy::too_many_arguments)]
fn weight_grad_portable(
    rows: usize,
    offs: &[usize],
    x: &[f32],
    dy: &[f32],
    stride: usize,
    qv: usize,
    chunk: Chunk,
    gw: &mut [f32],
) {
    let kk = offs.len();
    for r in 0..rows {
        for (k, &off) in offs.iter().enumerate() {
            let mut s = 0.0f32;
            for j in 0..chunk.count {
                let d = &dy[j * chunk.dy + r * stride..][..qv];
                let xs = &x[j * chunk.x + off..][..qv];
                s += d.iter().zip(xs).map(|(a, b)| a * b).sum::<f32>();
            }
            gw[r * kk + k] += s;
        }
    }
}

macro_rules! vector_kernels {
    ($name:ident, $feature:literal, $v:ty, $lanes:expr, $cr:expr, $zero:ident, $load:ident, $set1:ident,
     $fma:ident, $store:ident, $hsum:ident) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            //! The register blocks of [`super::correlate_at`] and [`super::weight_grad`] for one
            //! instruction set.

            use super::lanes::*;
            use super::{Chunk, MR, NB};

            /// Output positions per register block: two vectors.
            const B: usize = 2 * $lanes;
            /// Output rows per register block of the correlation.
            const CR: usize = $cr;

            /// See [`super::correlate_at`]; callers check the bounds and the CPU.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn correlate(
                rows: usize,
                offs: &[usize],
                inp: &[f32],
                wt: &[f32],
                out: &mut [f32],
                len: usize,
                starts: &[usize],
            ) {
                let kk = offs.len();
                let mut r = 0;
                while r < rows {
                    let m = (rows - r).min(CR);
                    let w = wt.as_ptr().add(r * kk);
                    let o = out.as_mut_ptr().add(r * len);
                    // A start covers `NB` positions: one block of AVX-512, two of AVX2.
                    for t in starts.iter().flat_map(|&t| (t..t + NB).step_by(B)) {
                        let x = inp.as_ptr().add(t);
                        match m {
                            8 => block::<8>(offs, x, w, kk, o.add(t), len),
                            7 => block::<7>(offs, x, w, kk, o.add(t), len),
                            6 => block::<6>(offs, x, w, kk, o.add(t), len),
                            5 => block::<5>(offs, x, w, kk, o.add(t), len),
                            4 => block::<4>(offs, x, w, kk, o.add(t), len),
                            3 => block::<3>(offs, x, w, kk, o.add(t), len),
                            2 => block::<2>(offs, x, w, kk, o.add(t), len),
                            _ => block::<1>(offs, x, w, kk, o.add(t), len),
                        }
                    }
                    r += m;
                }
            }

            /// `R` output rows by [`B`] positions: every tap loads two vectors of input and broadcasts
            /// one weight per row.
            #[inline(always)]
            unsafe fn block<const R: usize>(
                offs: &[usize],
                x: *const f32,
                w: *const f32,
                kk: usize,
                out: *mut f32,
                len: usize,
            ) {
                let mut acc = [[$zero(); 2]; R];
                for (k, &off) in offs.iter().enumerate() {
                    let p = x.add(off);
                    let x0 = $load(p);
                    let x1 = $load(p.add($lanes));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let wv = $set1(*w.add(r * kk + k));
                        a[0] = $fma(wv, x0, a[0]);
                        a[1] = $fma(wv, x1, a[1]);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    let o = out.add(r * len);
                    $store(o, a[0]);
                    $store(o.add($lanes), a[1]);
                }
            }

            /// See [`super::weight_grad`] (`dy` already past the margin, `qv` a multiple of the lanes).
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn weight_grad(
                rows: usize,
                offs: &[usize],
                x: &[f32],
                dy: &[f32],
                stride: usize,
                qv: usize,
                chunk: Chunk,
                gw: &mut [f32],
            ) {
                let kk = offs.len();
                let mut r = 0;
                while r < rows {
                    let m = (rows - r).min(MR);
                    let d = dy.as_ptr().add(r * stride);
                    let g = gw.as_mut_ptr().add(r * kk);
                    let x = x.as_ptr();
                    let mut k = 0;
                    while k < kk {
                        let kc = (kk - k).min(2);
                        let (o, g) = (&offs[k..], g.add(k));
                        match (m, kc) {
                            (4, 2) => wblock::<4, 2>(o, x, d, stride, qv, chunk, g, kk),
                            (4, 1) => wblock::<4, 1>(o, x, d, stride, qv, chunk, g, kk),
                            (3, 2) => wblock::<3, 2>(o, x, d, stride, qv, chunk, g, kk),
                            (3, 1) => wblock::<3, 1>(o, x, d, stride, qv, chunk, g, kk),
                            (2, 2) => wblock::<2, 2>(o, x, d, stride, qv, chunk, g, kk),
                            (2, 1) => wblock::<2, 1>(o, x, d, stride, qv, chunk, g, kk),
                            (1, 2) => wblock::<1, 2>(o, x, d, stride, qv, chunk, g, kk),
                            (1, 1) => wblock::<1, 1>(o, x, d, stride, qv, chunk, g, kk),
                            _ => unreachable!("weight_grad: block {m}x{kc}"),
                        }
                        k += kc;
                    }
                    r += m;
                }
            }

            /// `R` output channels by `K` taps, 8 flat positions per step, summed across lanes at the end.
            #[allow(clippy::too_many_arguments)]
            #[inline(always)]
            unsafe fn wblock<const R: usize, const K: usize>(
                offs: &[usize],
                x: *const f32,
                dy: *const f32,
                stride: usize,
                qv: usize,
                chunk: Chunk,
                gw: *mut f32,
                kk: usize,
            ) {
                let mut acc = [[$zero(); K]; R];
                for j in 0..chunk.count {
                    let xj = x.add(j * chunk.x);
                    let dyj = dy.add(j * chunk.dy);
                    let mut xs = [xj; K];
                    for (p, off) in xs.iter_mut().zip(offs) {
                        *p = xj.add(*off);
                    }
                    for t in (0..qv).step_by($lanes) {
                        let mut d: [$v; R] = [$zero(); R];
                        for (r, v) in d.iter_mut().enumerate() {
                            *v = $load(dyj.add(r * stride + t));
                        }
                        for (c, p) in xs.iter().enumerate() {
                            let xv = $load(p.add(t));
                            for (r, a) in acc.iter_mut().enumerate() {
                                a[c] = $fma(d[r], xv, a[c]);
                            }
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    for (c, v) in a.iter().enumerate() {
                        *gw.add(r * kk + c) += $hsum(*v);
                    }
                }
            }
        }
    };
}

/// Lane sums for the weight gradient.
#[cfg(target_arch = "x86_64")]
mod lanes {
    pub(super) use std::arch::x86_64::*;

    #[inline(always)]
    pub(super) unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    pub(super) unsafe fn hsum512(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
}

vector_kernels!(
    avx2,
    "avx2,fma",
    __m256,
    8,
    MR,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps,
    hsum256
);
vector_kernels!(
    avx512,
    "avx512f",
    __m512,
    16,
    8,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps,
    hsum512
);

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A stride-1, one-group geometry (shared with the lanes and spectral kernels' tests).
    pub(in crate::nn::ops) fn geom(
        in_c: usize,
        hw: (usize, usize),
        out_c: usize,
        k: (usize, usize),
        pad: (usize, usize),
    ) -> Conv2dGeom {
        Conv2dGeom {
            in_c,
            in_h: hw.0,
            in_w: hw.1,
            out_c,
            kh: k.0,
            kw: k.1,
            stride_h: 1,
            stride_w: 1,
            pad_h: pad.0,
            pad_w: pad.1,
            groups: 1,
        }
    }

    /// Deterministic test values in [-1, 1) (shared with the lanes kernels' tests).
    pub(in crate::nn::ops) fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    /// For another kernel's threads test: its forward (`x, w, bias, out` -> what backward
    /// keeps) and backward (`kept, w, gy, gw, gx`) over a batch of `n` from [`values`] give the
    /// same bits on a pool of one thread and of three.
    pub(in crate::nn::ops) fn assert_threads_keep_bits(
        what: &str,
        g: &Conv2dGeom,
        n: usize,
        forward: impl Fn(&[f32], &[f32], &[f32], &mut [f32]) -> Vec<f32> + Sync,
        backward: impl Fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]) + Sync,
    ) {
        let x = values(n * g.in_c * g.in_h * g.in_w, 41);
        let w = values(g.out_c * g.in_c * g.kh * g.kw, 42);
        let b = values(g.out_c, 43);
        let gy = values(n * g.out_len(), 44);
        crate::nn::ops::par::assert_same_bits_on_1_and_3_threads(what, || {
            let mut y = vec![0.0; gy.len()];
            let kept = forward(&x, &w, &b, &mut y);
            let mut gw = values(w.len(), 45);
            let mut gx = values(x.len(), 46);
            backward(&kept, &w, &gy, &mut gw, &mut gx);
            vec![y, kept, gw, gx]
        });
    }

    /// A batch of `n` for another stride-1 kernel to match: input, weight, bias (or none) and
    /// output gradient from [`values`], with this module's output and gradients (the gradient
    /// buffers start at `init`, as the other kernel's must).
    pub(in crate::nn::ops) struct Reference {
        pub x: Vec<f32>,
        pub w: Vec<f32>,
        pub b: Option<Vec<f32>>,
        pub gy: Vec<f32>,
        pub init: f32,
        out: Vec<f32>,
        gw: Vec<f32>,
        gx: Vec<f32>,
    }

    impl Reference {
        pub(in crate::nn::ops) fn new(g: &Conv2dGeom, n: usize, bias: bool, init: f32) -> Self {
            let l = Layout::new(g);
            let x = values(n * g.in_c * g.in_h * g.in_w, 1);
            let w = values(g.out_c * g.in_c * g.kh * g.kw, 2);
            let b = bias.then(|| values(g.out_c, 3));
            let gy = values(n * g.out_len(), 4);
            let mut xp = vec![0.0; l.padded_len(n)];
            pad_input(g, &l, &x, &mut xp);
            let mut out = vec![0.0; n * g.out_len()];
            forward(g, &l, n, &xp, &w, b.as_deref(), &mut out);
            let (mut gw, mut gx) = (vec![init; w.len()], vec![init; x.len()]);
            backward(g, &l, n, &xp, &w, &gy, &mut gw, Some(&mut gx));
            Reference {
                x,
                w,
                b,
                gy,
                init,
                out,
                gw,
                gx,
            }
        }

        /// Asserts that `got` (output, weight gradient, input gradient) is within `tol`
        /// (relative, plus as much absolute) of this reference.
        pub(in crate::nn::ops) fn check(
            &self,
            g: &Conv2dGeom,
            n: usize,
            tol: f32,
            got: [&[f32]; 3],
        ) {
            self.check_within(g, n, tol, got, |_| (1.0, 1.0));
        }

        /// Asserts that every value of `got` is within `tol` times the root mean square of its
        /// list in this reference.
        pub(in crate::nn::ops) fn check_rms(
            &self,
            g: &Conv2dGeom,
            n: usize,
            tol: f32,
            got: [&[f32]; 3],
        ) {
            self.check_within(g, n, tol, got, |want| {
                let rms = (want.iter().map(|v| v * v).sum::<f32>() / want.len() as f32).sqrt();
                (rms, 0.0)
            });
        }

        /// Asserts that each value `u` of `got` is within `tol (base + rel |v|)` of this
        /// reference's `v`, `(base, rel)` given per list by `scale`.
        fn check_within(
            &self,
            g: &Conv2dGeom,
            n: usize,
            tol: f32,
            got: [&[f32]; 3],
            scale: impl Fn(&[f32]) -> (f32, f32),
        ) {
            let want = [&self.out, &self.gw, &self.gx];
            for ((what, a), e) in ["output", "weight gradient", "input gradient"]
                .iter()
                .zip(got)
                .zip(want)
            {
                assert_eq!(a.len(), e.len(), "{what} length");
                let (base, rel) = scale(e);
                for (i, (u, v)) in a.iter().zip(e.iter()).enumerate() {
                    assert!(
                        (u - v).abs() <= tol * (base + rel * v.abs()),
                        "{g:?} n={n} {what}[{i}]: {u} vs {v}"
                    );
                }
            }
        }
    }

    /// The vector kernels and the portable ones agree on odd row counts and tap counts.
    #[test]
    fn vector_and_portable_kernels_agree() {
        for (rows, taps) in [(1, 1), (3, 9), (4, 5), (7, 18), (16, 27)] {
            let len = 2 * NB;
            let offs: Vec<usize> = (0..taps).map(|k| k * 3 + k / 2).collect();
            let inp = values(offs.iter().max().unwrap() + len + 8, 1);
            let wt = values(rows * taps, 2);
            let mut want = vec![0.0; rows * len];
            let starts = whole_blocks(len);
            correlate_portable(rows, &offs, &inp, &wt, &mut want, len, &starts);
            // The weight gradient sums three samples in one pass; the reference, one at a time.
            let stride = len + 8;
            let chunk = Chunk {
                count: 3,
                x: inp.len() + 5,
                dy: rows * stride + 3,
            };
            let xs = values(3 * chunk.x, 1);
            let dy = values(3 * chunk.dy, 3);
            let mut want_g = vec![0.5; rows * taps];
            for j in 0..3 {
                let one = Chunk { count: 1, ..chunk };
                let (x1, d1) = (&xs[j * chunk.x..], &dy[j * chunk.dy..]);
                weight_grad_portable(rows, &offs, x1, d1, stride, len, one, &mut want_g);
            }
            let mut one_pass = vec![0.5; rows * taps];
            weight_grad_portable(rows, &offs, &xs, &dy, stride, len, chunk, &mut one_pass);
            // Every kernel this CPU can run, not only the one `correlate` picks.
            let mut got: Vec<(&str, Vec<f32>, Vec<f32>)> = Vec::new();
            #[cfg(target_arch = "x86_64")]
            for (name, ok) in [
                ("avx2", crate::simd::has_avx2_fma()),
                ("avx512", crate::simd::has_avx512()),
            ] {
                if !ok {
                    continue;
                }
                let mut a = vec![0.0; rows * len];
                let mut ga = vec![0.5; rows * taps];
                // SAFETY: the CPU has the features; the sizes are those `correlate` checks.
                unsafe {
                    if name == "avx2" {
                        avx2::correlate(rows, &offs, &inp, &wt, &mut a, len, &starts);
                        avx2::weight_grad(rows, &offs, &xs, &dy, stride, len, chunk, &mut ga);
                    } else {
                        avx512::correlate(rows, &offs, &inp, &wt, &mut a, len, &starts);
                        avx512::weight_grad(rows, &offs, &xs, &dy, stride, len, chunk, &mut ga);
                    }
                }
                got.push((name, a, ga));
            }
            let mut a = vec![0.0; rows * len];
            let mut ga = vec![0.5; rows * taps];
            correlate_at(rows, &offs, &inp, &wt, &mut a, len, &starts);
            weight_grad(rows, &offs, &xs, &dy, stride, 0, len, chunk, &mut ga);
            got.push(("dispatched", a, ga));
            got.push(("portable", want.clone(), one_pass));
            for (name, a, ga) in got {
                for (x, y) in a.iter().zip(&want) {
                    assert!(
                        (x - y).abs() < 1e-4,
                        "{name} correlate {rows}x{taps}: {x} vs {y}"
                    );
                }
                for (x, y) in ga.iter().zip(&want_g) {
                    assert!(
                        (x - y).abs() < 1e-3,
                        "{name} weight_grad {rows}x{taps}: {x} vs {y}"
                    );
                }
            }
        }
    }

    /// Row copies of every length up to a few blocks copy exactly the row, and nothing past it.
    #[test]
    fn copy_row_copies_every_length_exactly() {
        for n in 0..41 {
            let src = values(n, 7);
            let mut dst = vec![f32::NAN; n + 3];
            copy_row(&mut dst[1..n + 1], &src);
            assert!(
                dst[0].is_nan() && dst[n + 1..].iter().all(|v| v.is_nan()),
                "{n}"
            );
            assert_eq!(&dst[1..n + 1], &src[..], "{n}");
        }
    }

    /// Placed rows land at their offsets and every other float of the buffer is zero, whatever
    /// the buffer held before.
    #[test]
    fn place_rows_writes_rows_and_zeros_everywhere_else() {
        for (w, rows, first, stride, len) in [(3, 2, 4, 5, 16), (8, 3, 0, 8, 24), (9, 1, 1, 12, 10)]
        {
            let src = values(w * rows, 3);
            let mut dst = vec![f32::NAN; len];
            place_rows(&mut dst, first, stride, &src, w);
            let mut want = vec![0.0; len];
            for r in 0..rows {
                let at = first + r * stride;
                want[at..at + w].copy_from_slice(&src[r * w..(r + 1) * w]);
            }
            assert_eq!(dst, want, "w {w} rows {rows}");
        }
    }

    /// On a small map the weight gradient sums several samples per pass (and the batch ends in a
    /// partial pass): the gradients equal those of one sample at a time.
    #[test]
    fn backward_over_a_batch_equals_the_sum_over_its_samples() {
        for (g, n) in [
            (geom(2, (3, 3), 3, (3, 3), (1, 1)), 0),
            (geom(16, (14, 14), 32, (3, 3), (1, 1)), 0),
            (geom(16, (14, 14), 32, (3, 3), (1, 1)), 63),
        ] {
            batch_and_samples_agree(g, n);
        }
    }

    fn batch_and_samples_agree(g: Conv2dGeom, n: usize) {
        let l = Layout::new(&g);
        let per = (WG_POSITIONS / l.q).max(1);
        let n = if n == 0 { 2 * per + 3 } else { n };
        let in_len = g.in_c * g.in_h * g.in_w;
        let out_len = g.out_c * g.out_h() * g.out_w();
        let x = values(n * in_len, 8);
        let w = values(g.out_c * g.in_c * g.kh * g.kw, 9);
        let gy = values(n * out_len, 10);
        let mut xp = vec![0.0; l.padded_len(n)];
        pad_input(&g, &l, &x, &mut xp);
        let mut gw = vec![0.0; w.len()];
        let mut gx = vec![0.0; x.len()];
        backward(&g, &l, n, &xp, &w, &gy, &mut gw, Some(&mut gx));
        let mut want_w = vec![0.0; w.len()];
        for s in 0..n {
            let mut xp1 = vec![0.0; l.padded_len(1)];
            pad_input(&g, &l, &x[s * in_len..(s + 1) * in_len], &mut xp1);
            let mut gx1 = vec![0.0; in_len];
            let gy1 = &gy[s * out_len..(s + 1) * out_len];
            backward(&g, &l, 1, &xp1, &w, gy1, &mut want_w, Some(&mut gx1));
            assert_eq!(&gx[s * in_len..(s + 1) * in_len], &gx1[..], "sample {s}");
        }
        for (a, b) in gw.iter().zip(&want_w) {
            assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// On a pool of several threads the forward and backward passes split the batch (the
    /// backward in runs of passes, a partial one at the end) and give the bits of one thread:
    /// a 28x28 map (one sample a pass), a 14x14 one (several) and a layer whose weight
    /// gradients take two rounds of slots.
    #[test]
    fn threads_split_the_batch_without_changing_a_bit() {
        for (g, n) in [
            (geom(16, (28, 28), 16, (3, 3), (1, 1)), 13),
            (geom(16, (14, 14), 32, (3, 3), (1, 1)), 37),
            (geom(256, (4, 4), 256, (3, 3), (1, 1)), 37),
        ] {
            let l = Layout::new(&g);
            let in_len = g.in_c * g.in_h * g.in_w;
            let out_len = g.out_c * g.out_h() * g.out_w();
            let x = values(n * in_len, 18);
            let w = values(g.out_c * g.in_c * g.kh * g.kw, 19);
            let b = values(g.out_c, 20);
            let gy = values(n * out_len, 21);
            let mut xp = vec![0.0; l.padded_len(n)];
            pad_input(&g, &l, &x, &mut xp);
            let what = format!("{}x{} maps, {n} samples", g.in_h, g.in_w);
            crate::nn::ops::par::assert_same_bits_on_1_and_3_threads(&what, || {
                let mut y = vec![0.0; n * out_len];
                forward(&g, &l, n, &xp, &w, Some(&b), &mut y);
                let mut gw = values(w.len(), 22);
                let mut gx = values(x.len(), 23);
                backward(&g, &l, n, &xp, &w, &gy, &mut gw, Some(&mut gx));
                let mut gw_only = values(w.len(), 22);
                backward(&g, &l, n, &xp, &w, &gy, &mut gw_only, None);
                vec![y, gw, gx, gw_only]
            });
        }
    }

    /// Layout reads stay inside the buffers for the geometries the networks build.
    #[test]
    fn layouts_cover_every_read() {
        for g in [
            geom(1, (28, 28), 16, (3, 3), (1, 1)),
            geom(16, (14, 14), 32, (5, 5), (2, 2)),
            geom(3, (1, 40), 8, (1, 5), (0, 2)),
            geom(2, (5, 7), 3, (3, 1), (0, 0)),
        ] {
            g.check().unwrap();
            let l = Layout::new(&g);
            let n = 2;
            let x = values(n * g.in_c * g.in_h * g.in_w, 4);
            let mut xp = vec![f32::NAN; l.padded_len(n)];
            pad_input(&g, &l, &x, &mut xp);
            assert!(
                xp.iter().all(|v| v.is_finite()),
                "{g:?}: padding left a value unwritten"
            );
            let w = values(g.out_c * g.in_c * g.kh * g.kw, 5);
            let mut y = vec![0.0; n * g.out_c * g.out_h() * g.out_w()];
            forward(&g, &l, n, &xp, &w, None, &mut y);
            let gy = values(y.len(), 6);
            let mut gw = vec![0.0; w.len()];
            let mut gx = vec![0.0; x.len()];
            backward(&g, &l, n, &xp, &w, &gy, &mut gw, Some(&mut gx));
            assert!(y.iter().chain(&gw).chain(&gx).all(|v| v.is_finite()));
        }
    }
}
