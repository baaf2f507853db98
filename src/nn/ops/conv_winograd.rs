//! Stride-1 3x3 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin and Gray, 2015):
//! each 4x4 block of outputs ("tile") comes from the 6x6 inputs under it through 36 products
//! per channel pair instead of 144, plus a cheap transform of each tile in and out.
//!
//! The transforms are real-linear maps per tile, `V = Bᵀ d B` of the input, `U = G k Gᵀ` of each
//! 3x3 kernel and `y = Aᵀ (U ⊙ V) A` back; the channels are mixed by one real product per tile
//! position ("bin", 36 of them), `Y_e (tiles x out_c) = V_e (tiles x in_c) U_e (in_c x out_c)`,
//! over the tiles of a chunk of samples (see `CHUNK_FLOATS`). Each gradient is the exact
//! adjoint of those maps, as in `conv_spectral`. The planes are turned channels-last (one
//! sample at a time, zero-bordered) so that a tile's transform runs over 16 channels per
//! vector.
//!
//! It pays on maps larger than the spectral path's (3x3 kernels over 28x28 maps of 16 channels:
//! about a third of the direct kernel's multiply-adds); smaller maps keep their paths, and with
//! them the numbers they train to.

use super::conv::Conv2dGeom;
use super::gemm::View;
use super::scratch::{give_f32, take_f32};
use super::transpose::{transpose, transpose_strided};
use super::unpacked_gemm::real_product;

/// Tile positions, `6 x 6`: one channel-mixing product each.
const BINS: usize = 36;
/// Channels per vector in the tile transforms.
const LANES: usize = 16;
/// Use the path where its multiply-adds (estimated, transforms included) are at most this
/// fraction of the direct kernel's.
const MAX_COST_RATIO: f64 = 0.6;
/// Smallest output map side that takes the path: 12x12 maps and smaller stay on the spectral
/// and lanes paths (every digits network keeps its numbers).
const MIN_MAP: usize = 13;

/// `G`: `U = G k Gᵀ` for a 3x3 kernel `k`.
const G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The tiling of one geometry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// Tiles per column and per row: `ceil(out / 4)`.
    th: usize,
    tw: usize,
    /// The zero-bordered channels-last input, `(4 th + 2) x (4 tw + 2)` positions: every tile's
    /// 6x6 window lies inside it.
    hp: usize,
    wp: usize,
}

impl Layout {
    pub(super) fn new(g: &Conv2dGeom) -> Self {
        let (th, tw) = (g.out_h().div_ceil(4), g.out_w().div_ceil(4));
        Layout {
            th,
            tw,
            hp: 4 * th + 2,
            wp: 4 * tw + 2,
        }
    }

    fn tiles(&self) -> usize {
        self.th * self.tw
    }

    /// Floats per sample of the input's tile transforms, which backward keeps.
    pub(super) fn saved_per_sample(&self, g: &Conv2dGeom) -> usize {
        BINS * self.tiles() * g.in_c
    }
}

/// Multiply-adds per sample against the direct kernel's: 36 per tile and channel pair, and
/// about 150 per tile and input channel, 100 per tile and output channel for the transforms.
fn cost_ratio(g: &Conv2dGeom) -> f64 {
    let (ci, co) = (g.in_c as f64, g.out_c as f64);
    let tiles = Layout::new(g).tiles() as f64;
    let ours = tiles * (BINS as f64 * ci * co + 150.0 * ci + 100.0 * co);
    ours / ((g.out_h() * g.out_w() * 9) as f64 * ci * co)
}

/// Whether `g` takes this path: a 3x3 kernel, stride 1, one group, an output map of at least
/// 13x13, and tiles cheap enough against the direct kernel.
pub(super) fn applies(g: &Conv2dGeom) -> bool {
    g.groups == 1
        && (g.stride_h, g.stride_w, g.kh, g.kw) == (1, 1, 3, 3)
        && g.out_h() >= MIN_MAP
        && g.out_w() >= MIN_MAP
        && cost_ratio(g) <= MAX_COST_RATIO
}

/// Floats of the bins one chunk of samples holds at once (input's and output's): a chunk's
/// transforms and products stay in the core's own cache, where the bins of a whole batch
/// (7 MB for 64 samples of 16 channels over 28x28) made every product wait on memory.
const CHUNK_FLOATS: usize = 1 << 18;

/// Samples per chunk (at least one).
fn chunk_samples(g: &Conv2dGeom, l: &Layout) -> usize {
    (CHUNK_FLOATS / (BINS * l.tiles() * (g.in_c + g.out_c))).max(1)
}

/// Writes the output of a batch of `n` into `out` (every value) and returns the input's tile
/// transforms, which [`backward`] reads: chunk after chunk of samples, each chunk's bins one
/// after another. On several threads the chunks are split.
pub(super) fn forward(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Vec<f32> {
    let (ci, co, t) = (g.in_c, g.out_c, l.tiles());
    let (in_len, out_len) = (ci * g.in_h * g.in_w, g.out_len());
    let per = chunk_samples(g, l);
    let u = kernel_bins(g, w, true);
    let saved = l.saved_per_sample(g);
    let mut xs = take_f32(n * saved);
    // Chunk `j`: samples from `j * per`, their bins in `xc`, their outputs in `o`.
    let chunk = |j: usize, xc: &mut [f32], o: &mut [f32]| {
        let k = o.len() / out_len;
        let m = k * t;
        input_bins(g, l, k, &x[j * per * in_len..][..k * in_len], xc);
        let mut ys = take_f32(BINS * m * co);
        let xb = |e: usize| View::rows(&xc[e * m * ci..][..m * ci], ci);
        bin_products((m, ci, co), &xb, &u, &mut ys);
        output_planes(g, l, k, &ys, bias, o);
        give_f32(ys);
    };
    let chunks: Vec<_> = xs[..n * saved]
        .chunks_mut(per * saved)
        .zip(out[..n * out_len].chunks_mut(per * out_len))
        .collect();
    let split = super::par::parts(chunks.len(), n * t * BINS * ci * co) > 1;
    super::par::for_each_item(chunks, split, |j, (xc, o)| chunk(j, xc, o));
    give_f32(u);
    xs
}

/// Adds the weight's and (when asked) the input's gradients for the output gradient `gy`, from
/// the input's tile transforms `xs` that [`forward`] returned. On several threads the chunks
/// are split; each chunk's kernel gradient is summed from zero and the chunks' sums are added
/// onto zero in chunk order, so every thread count gives the same bits.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    xs: &[f32],
    w: &[f32],
    gy: &[f32],
    gw: &mut [f32],
    gx: Option<&mut [f32]>,
) {
    let (ci, co, t) = (g.in_c, g.out_c, l.tiles());
    let (in_len, out_len) = (ci * g.in_h * g.in_w, g.out_len());
    let per = chunk_samples(g, l);
    let chunks = n.div_ceil(per);
    // dV_e (tiles x ci) = dY_e (tiles x co) U_eᵀ, U stored co x ci.
    let u = match gx {
        Some(_) => kernel_bins(g, w, false),
        None => Vec::new(),
    };
    let du_len = BINS * ci * co;
    // Chunk `j`'s dU_e (ci x co) = V_eᵀ (ci x tiles) dY_e (tiles x co), into `du`.
    let chunk = |j: usize, du: &mut [f32], gxc: Option<&mut [f32]>| {
        let s0 = j * per;
        let k = per.min(n - s0);
        let m = k * t;
        // The adjoint of the output transform: the gradient of every bin's product.
        let mut dys = take_f32(BINS * m * co);
        grad_bins(g, l, k, &gy[s0 * out_len..][..k * out_len], &mut dys);
        let db = |e: usize| View::rows(&dys[e * m * co..][..m * co], co);
        if let Some(gxc) = gxc {
            let mut dxs = take_f32(BINS * m * ci);
            bin_products((m, co, ci), &db, &u, &mut dxs);
            input_grads(g, l, k, &dxs, gxc);
            give_f32(dxs);
        }
        let xc = &xs[s0 * t * BINS * ci..][..BINS * m * ci];
        let xt = |e: usize| View::transposed(&xc[e * m * ci..][..m * ci], ci);
        bin_products((ci, m, co), &xt, &dys, du);
        give_f32(dys);
    };
    let mut gx_chunks: Vec<Option<&mut [f32]>> = match gx {
        Some(v) => v[..n * in_len].chunks_mut(per * in_len).map(Some).collect(),
        None => (0..chunks).map(|_| None).collect(),
    };
    // The chunks go in waves, one slot each (a wave of one on one thread), and each wave's
    // slots are added onto `du` in chunk order: the same sums for any wave size, and memory
    // for a wave's slots only (a slot per chunk of a whole batch of 256 -> 256 channels
    // would be a gigabyte).
    let wave = super::par::parts(chunks, n * t * BINS * ci * co * 3);
    let mut du = take_f32(du_len);
    du.fill(0.0);
    let mut slots = take_f32(wave * du_len);
    for first in (0..chunks).step_by(wave) {
        let count = wave.min(chunks - first);
        let gxw = gx_chunks[first..first + count].iter_mut().map(Option::take);
        let work: Vec<_> = slots[..count * du_len]
            .chunks_exact_mut(du_len)
            .zip(gxw)
            .collect();
        super::par::for_each_item(work, count > 1, |i, (slot, gxc)| {
            chunk(first + i, slot, gxc)
        });
        for slot in slots[..count * du_len].chunks_exact(du_len) {
            for (d, v) in du.iter_mut().zip(slot) {
                *d += v;
            }
        }
    }
    give_f32(u);
    give_f32(slots);
    add_kernel_grads(g, &du, gw);
    give_f32(du);
}

/// A bin's left operand.
type Bins<'a> = dyn Fn(usize) -> View<'a> + Sync + 'a;

/// `c_e = a_e b_e` for every bin `e` (`m x k` by `k x n`); `b` and `c` hold their bins one
/// after another, row-major.
fn bin_products<'a>((m, k, n): (usize, usize, usize), a: &Bins<'a>, b: &[f32], c: &mut [f32]) {
    let (bl, cl) = (k * n, m * n);
    for (e, c) in c[..BINS * cl].chunks_exact_mut(cl).enumerate() {
        real_product(
            (m, k, n),
            a(e),
            View::rows(&b[e * bl..][..bl], n),
            0.0,
            c,
            n,
        );
    }
}

/// The kernels' tile transforms `U = G k Gᵀ`, by bin: `in_c x out_c` blocks when `by_input`,
/// else `out_c x in_c`. Computed in double precision from the weight (`out_c x in_c x 3 x 3`).
fn kernel_bins(g: &Conv2dGeom, w: &[f32], by_input: bool) -> Vec<f32> {
    let (ci, co) = (g.in_c, g.out_c);
    let mut u = take_f32(BINS * ci * co);
    for (o, kernels) in w.chunks_exact(ci * 9).enumerate() {
        for (i, k) in kernels.chunks_exact(9).enumerate() {
            let at = if by_input { i * co + o } else { o * ci + i };
            for (e, v) in kernel_tile(k).into_iter().enumerate() {
                u[e * ci * co + at] = v as f32;
            }
        }
    }
    u
}

/// `G k Gᵀ` of one 3x3 kernel, row-major 6x6.
fn kernel_tile(k: &[f32]) -> [f64; BINS] {
    let mut t = [[0.0f64; 3]; 6];
    for (row, gr) in t.iter_mut().zip(&G) {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|b| gr[b] * f64::from(k[b * 3 + c])).sum();
        }
    }
    let mut u = [0.0; BINS];
    for (a, row) in t.iter().enumerate() {
        for (e, ge) in G.iter().enumerate() {
            u[a * 6 + e] = (0..3).map(|c| row[c] * ge[c]).sum();
        }
    }
    u
}

/// `gw += Gᵀ dU G` for every kernel, `du` by bin in `in_c x out_c` blocks.
fn add_kernel_grads(g: &Conv2dGeom, du: &[f32], gw: &mut [f32]) {
    let (ci, co) = (g.in_c, g.out_c);
    for (o, kernels) in gw.chunks_exact_mut(ci * 9).enumerate() {
        for (i, k) in kernels.chunks_exact_mut(9).enumerate() {
            let d = |a: usize, e: usize| f64::from(du[(a * 6 + e) * ci * co + i * co + o]);
            // t = Gᵀ dU (3 x 6), then t G (3 x 3).
            let mut t = [[0.0f64; 6]; 3];
            for (b, row) in t.iter_mut().enumerate() {
                for (e, v) in row.iter_mut().enumerate() {
                    *v = (0..6).map(|a| G[a][b] * d(a, e)).sum();
                }
            }
            for (b, row) in t.iter().enumerate() {
                for c in 0..3 {
                    let v: f64 = (0..6).map(|e| row[e] * G[e][c]).sum();
                    k[b * 3 + c] += v as f32;
                }
            }
        }
    }
}

/// `L` lanes of one position: `L` consecutive channels.
type Lanes<const L: usize> = [f32; L];

#[inline(always)]
fn load<const L: usize>(s: &[f32], at: usize) -> Lanes<L> {
    s[at..at + L].try_into().expect("L floats")
}

#[inline(always)]
fn store<const L: usize>(s: &mut [f32], at: usize, v: Lanes<L>) {
    s[at..at + L].copy_from_slice(&v);
}

#[inline(always)]
fn add_to<const L: usize>(s: &mut [f32], at: usize, v: Lanes<L>) {
    for (o, x) in s[at..at + L].iter_mut().zip(v) {
        *o += x;
    }
}

/// `a + b`, lane by lane (each of these helpers is one vector instruction per vector of
/// lanes; a loop over the lanes with all the arithmetic inside it was not vectorised).
#[inline(always)]
fn add<const L: usize>(a: Lanes<L>, b: Lanes<L>) -> Lanes<L> {
    std::array::from_fn(|i| a[i] + b[i])
}

/// `a - b`, lane by lane.
#[inline(always)]
fn sub<const L: usize>(a: Lanes<L>, b: Lanes<L>) -> Lanes<L> {
    std::array::from_fn(|i| a[i] - b[i])
}

/// `k a`, lane by lane.
#[inline(always)]
fn mul<const L: usize>(k: f32, a: Lanes<L>) -> Lanes<L> {
    std::array::from_fn(|i| k * a[i])
}

/// `Bᵀ d` of six values per lane.
#[inline(always)]
fn bt<const L: usize>(d: [Lanes<L>; 6]) -> [Lanes<L>; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    let (a, b) = (sub(d4, mul(4.0, d2)), sub(d3, mul(4.0, d1)));
    let (c, e) = (sub(d4, d2), mul(2.0, sub(d3, d1)));
    [
        add(sub(mul(4.0, d0), mul(5.0, d2)), d4),
        add(a, b),
        sub(a, b),
        add(c, e),
        sub(c, e),
        add(sub(mul(4.0, d1), mul(5.0, d3)), d5),
    ]
}

/// `B v`, the adjoint of [`bt`].
#[inline(always)]
fn b_adj<const L: usize>(v: [Lanes<L>; 6]) -> [Lanes<L>; 6] {
    let [v0, v1, v2, v3, v4, v5] = v;
    let (p, q) = (sub(v2, v1), sub(v4, v3));
    [
        mul(4.0, v0),
        add(add(mul(4.0, p), mul(2.0, q)), mul(4.0, v5)),
        sub(sub(mul(-5.0, v0), mul(4.0, add(v1, v2))), add(v3, v4)),
        sub(sub(mul(-1.0, p), mul(2.0, q)), mul(5.0, v5)),
        add(add(add(v0, v1), add(v2, v3)), v4),
        v5,
    ]
}

/// `Aᵀ m` of six values per lane: four outputs.
#[inline(always)]
fn at<const L: usize>(m: [Lanes<L>; 6]) -> [Lanes<L>; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (s12, d12) = (add(m1, m2), sub(m1, m2));
    let (s34, d34) = (add(m3, m4), sub(m3, m4));
    [
        add(add(m0, s12), s34),
        add(d12, mul(2.0, d34)),
        add(s12, mul(4.0, s34)),
        add(add(d12, mul(8.0, d34)), m5),
    ]
}

/// `A g`, the adjoint of [`at`]: six values from four.
#[inline(always)]
fn a_adj<const L: usize>(g: [Lanes<L>; 4]) -> [Lanes<L>; 6] {
    let [g0, g1, g2, g3] = g;
    let (e, f) = (add(g0, g2), add(g1, g3));
    let (p, q) = (add(g0, mul(4.0, g2)), add(mul(2.0, g1), mul(8.0, g3)));
    [g0, add(e, f), sub(e, f), add(p, q), sub(p, q), g3]
}

/// Where one tile's bins go: bin `e`'s lanes at `e * bin + at`.
#[derive(Clone, Copy)]
struct Bin {
    at: usize,
    bin: usize,
}

/// A tile of a channels-last plane: position `(i, j)`'s lanes at `at + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct Window {
    at: usize,
    rs: usize,
    cs: usize,
}

// The tile transforms below write each 1-D transform's outputs down a column of a local
// array and then read it by rows: indexed loops, which clippy would have as iterators. The
// iterator forms tried (`map` over the columns, `from_fn` gathers) made the fixed CNN of the
// trainer bench 5-25% slower, all of it in these functions. The four share their shape (a 1-D
// transform down the columns, then along the rows); one generic function taking the transform
// and closures to read and write the lanes made the same trial 17% slower (4.71-4.80 s against
// 4.00-4.06 s), so each stays written out.

/// `V = Bᵀ d B` of the 6x6 window `p` at `w`, into the bins of `x`.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn input_tile<const L: usize>(p: &[f32], w: Window, x: &mut [f32], b: Bin) {
    let mut t = [[[0.0; L]; 6]; 6];
    for j in 0..6 {
        let d = std::array::from_fn(|i| load::<L>(p, w.at + i * w.rs + j * w.cs));
        for (r, v) in bt(d).into_iter().enumerate() {
            t[r][j] = v;
        }
    }
    for (r, row) in t.into_iter().enumerate() {
        for (e, v) in bt(row).into_iter().enumerate() {
            store(x, (r * 6 + e) * b.bin + b.at, v);
        }
    }
}

/// `dd = B dV Bᵀ` of one tile's bins in `dx`, added onto the 6x6 window of `p` at `w`.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn input_grad_tile<const L: usize>(dx: &[f32], b: Bin, p: &mut [f32], w: Window) {
    let mut t = [[[0.0; L]; 6]; 6];
    for e in 0..6 {
        let v = std::array::from_fn(|r| load::<L>(dx, (r * 6 + e) * b.bin + b.at));
        for (i, d) in b_adj(v).into_iter().enumerate() {
            t[i][e] = d;
        }
    }
    for (i, row) in t.into_iter().enumerate() {
        for (j, d) in b_adj(row).into_iter().enumerate() {
            add_to(p, w.at + i * w.rs + j * w.cs, d);
        }
    }
}

/// `y = Aᵀ M A` of one tile's bins in `ys`, plus `bias`, into the 4x4 window of `q` at `w`.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn output_tile<const L: usize>(ys: &[f32], b: Bin, bias: Lanes<L>, q: &mut [f32], w: Window) {
    let mut s = [[[0.0; L]; 6]; 4];
    for e in 0..6 {
        let m = std::array::from_fn(|r| load::<L>(ys, (r * 6 + e) * b.bin + b.at));
        for (a, v) in at(m).into_iter().enumerate() {
            s[a][e] = v;
        }
    }
    for (a, row) in s.into_iter().enumerate() {
        for (c, v) in at(row).into_iter().enumerate() {
            store(q, w.at + a * w.rs + c * w.cs, add(v, bias));
        }
    }
}

/// `dM = A dy Aᵀ` of the 4x4 window of `q` at `w`, into the bins of `dys`.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn grad_tile<const L: usize>(q: &[f32], w: Window, dys: &mut [f32], b: Bin) {
    let mut t = [[[0.0; L]; 4]; 6];
    for c in 0..4 {
        let g = std::array::from_fn(|a| load::<L>(q, w.at + a * w.rs + c * w.cs));
        for (r, v) in a_adj(g).into_iter().enumerate() {
            t[r][c] = v;
        }
    }
    for (r, row) in t.into_iter().enumerate() {
        for (e, v) in a_adj(row).into_iter().enumerate() {
            store(dys, (r * 6 + e) * b.bin + b.at, v);
        }
    }
}

/// Runs `$body` for every tile of sample `$s` and every run of `$lanes` channels (from channel
/// `$c`, at window `$w` of a channels-last plane with rows `$rs` apart, and bins `$b`): whole
/// vectors of [`LANES`], then the channels past them one at a time. A macro, not a function
/// taking a closure: a closure is compiled on its own, without the caller's vector
/// instructions (this path's transforms ran 4x slower so).
macro_rules! each_tile {
    ($l:expr, $s:expr, $channels:expr, $rs:expr, $bin:expr,
     |$w:ident, $b:ident, $c:pat, $lanes:ident| $body:block) => {{
        let (l, channels) = ($l, $channels);
        let whole = channels / LANES * LANES;
        for ty in 0..l.th {
            for tx in 0..l.tw {
                let at = 4 * ty * $rs + 4 * tx * channels;
                let m = ($s * l.tiles() + ty * l.tw + tx) * channels;
                let mut c = 0;
                while c < channels {
                    let $w = Window { at: at + c, rs: $rs, cs: channels };
                    let $b = Bin { at: m + c, bin: $bin };
                    let $c = c;
                    if c < whole {
                        const $lanes: usize = LANES;
                        $body
                        c += LANES;
                    } else {
                        const $lanes: usize = 1;
                        $body
                        c += 1;
                    }
                }
            }
        }
    }};
}

super::simd::simd_fn! { avx512
/// The tile transforms of the inputs of `n` samples (`n x in_c x h x w`), by bin: `n tiles x
/// in_c` blocks.
fn input_bins(g: &Conv2dGeom, l: &Layout, n: usize, x: &[f32], xs: &mut [f32]) {
    let (ci, hw, iw) = (g.in_c, g.in_h * g.in_w, g.in_w);
    let bin = n * l.tiles() * ci;
    // Borders stay zero: each sample writes the interior only, row by row.
    let mut p = take_f32(l.hp * l.wp * ci);
    p.fill(0.0);
    let rs = l.wp * ci;
    for s in 0..n {
        let xs_s = &x[s * ci * hw..][..ci * hw];
        for y in 0..g.in_h {
            let row = &mut p[((y + g.pad_h) * l.wp + g.pad_w) * ci..];
            transpose_strided(&xs_s[y * iw..], (ci, iw), hw, row, ci, false);
        }
        each_tile!(l, s, ci, rs, bin, |w, b, _, L| {
            input_tile::<L>(&p, w, xs, b);
        });
    }
    give_f32(p);
}
}

super::simd::simd_fn! { avx512
/// The outputs of `n` samples (`n x out_c x oh x ow`, every value) from the bins' products,
/// plus the bias.
fn output_planes(
    g: &Conv2dGeom,
    l: &Layout,
    n: usize,
    ys: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (co, oh, ow) = (g.out_c, g.out_h(), g.out_w());
    let bin = n * l.tiles() * co;
    let (qh, qw) = (4 * l.th, 4 * l.tw);
    let crop = (qh, qw) != (oh, ow);
    let mut q = take_f32(qh * qw * co);
    let mut zeros = take_f32(if bias.is_some() { 0 } else { co });
    zeros.fill(0.0);
    let bias = bias.unwrap_or(&zeros);
    let rs = qw * co;
    for s in 0..n {
        each_tile!(l, s, co, rs, bin, |w, b, c, L| {
            output_tile::<L>(ys, b, load(bias, c), &mut q, w);
        });
        let dst = &mut out[s * co * oh * ow..][..co * oh * ow];
        if crop {
            for y in 0..oh {
                transpose_strided(&q[y * rs..], (ow, co), co, &mut dst[y * ow..], oh * ow, false);
            }
        } else {
            transpose(&q, qh * qw, co, dst, false);
        }
    }
    give_f32(q);
    give_f32(zeros);
}
}

super::simd::simd_fn! { avx512
/// The adjoint output transforms of the output gradients of `n` samples, by bin: `n tiles x
/// out_c` blocks.
fn grad_bins(g: &Conv2dGeom, l: &Layout, n: usize, gy: &[f32], dys: &mut [f32]) {
    let (co, oh, ow) = (g.out_c, g.out_h(), g.out_w());
    let bin = n * l.tiles() * co;
    let (qh, qw) = (4 * l.th, 4 * l.tw);
    let crop = (qh, qw) != (oh, ow);
    let mut q = take_f32(qh * qw * co);
    // Outputs past the map (cropped in forward) have no gradient: zero, once.
    if crop {
        q.fill(0.0);
    }
    let rs = qw * co;
    for s in 0..n {
        let src = &gy[s * co * oh * ow..][..co * oh * ow];
        if crop {
            for y in 0..oh {
                transpose_strided(&src[y * ow..], (co, ow), oh * ow, &mut q[y * rs..], co, false);
            }
        } else {
            transpose(src, co, oh * ow, &mut q, false);
        }
        each_tile!(l, s, co, rs, bin, |w, b, _, L| {
            grad_tile::<L>(&q, w, dys, b);
        });
    }
    give_f32(q);
}
}

super::simd::simd_fn! { avx512
/// `gx +=` the adjoint input transforms of the bins `dxs` of `n` samples (`n x in_c x h x w`).
fn input_grads(g: &Conv2dGeom, l: &Layout, n: usize, dxs: &[f32], gx: &mut [f32]) {
    let (ci, hw, iw) = (g.in_c, g.in_h * g.in_w, g.in_w);
    let bin = n * l.tiles() * ci;
    let mut p = take_f32(l.hp * l.wp * ci);
    let rs = l.wp * ci;
    for s in 0..n {
        // Tiles overlap by two rows and columns: their windows are added.
        p.fill(0.0);
        each_tile!(l, s, ci, rs, bin, |w, b, _, L| {
            input_grad_tile::<L>(dxs, b, &mut p, w);
        });
        let gxs = &mut gx[s * ci * hw..][..ci * hw];
        for y in 0..g.in_h {
            let row = &p[((y + g.pad_h) * l.wp + g.pad_w) * ci..];
            transpose_strided(row, (iw, ci), ci, &mut gxs[y * iw..], hw, true);
        }
    }
    give_f32(p);
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::conv_direct::tests::{assert_threads_keep_bits, geom, Reference};

    /// `Bᵀ`'s coefficients: `V = Bᵀ d B` (rows are tile positions, columns inputs).
    const BT: [[f32; 6]; 6] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];

    /// The lane transforms are the matrices of the module notes and their adjoints.
    #[test]
    fn transforms_are_the_matrices_and_their_adjoints() {
        let at_m: [[f32; 6]; 4] = [
            [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
            [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
            [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
        ];
        for i in 0..6 {
            let unit: [[f32; 1]; 6] = std::array::from_fn(|k| [f32::from(u8::from(k == i))]);
            let v = bt(unit);
            let d = b_adj(unit);
            let m = at(unit);
            for r in 0..6 {
                assert_eq!(v[r][0], BT[r][i], "Bᵀ[{r}][{i}]");
                assert_eq!(d[r][0], BT[i][r], "B[{r}][{i}]");
            }
            for r in 0..4 {
                assert_eq!(m[r][0], at_m[r][i], "Aᵀ[{r}][{i}]");
            }
        }
        for (i, row) in at_m.iter().enumerate() {
            let unit: [[f32; 1]; 4] = std::array::from_fn(|k| [f32::from(u8::from(k == i))]);
            for (r, (m, want)) in a_adj(unit).iter().zip(row).enumerate() {
                assert_eq!(m[0], *want, "A[{r}][{i}]");
            }
        }
    }

    /// The tiles give the direct kernel's outputs and gradients: maps that are and are not
    /// whole tiles, no padding and padding of 2, channel counts of whole vectors and not,
    /// with and without bias. Within 1e-4 of each result's root mean square: against sums in
    /// double precision, 16 channels over 28x28 maps are off by at most 1.3e-5 of it (the direct
    /// kernel by 1.8e-6); the input transforms' coefficients up to 5, and the output's up to 8,
    /// cost those bits.
    #[test]
    fn tiles_match_the_direct_kernels() {
        let geoms = [
            (16, (28, 28), 16, (3, 3), (1, 1)),
            (3, (13, 15), 5, (3, 3), (1, 1)),
            (17, (14, 17), 20, (3, 3), (0, 0)),
            (16, (16, 16), 32, (3, 3), (2, 2)),
            (1, (6, 6), 1, (3, 3), (1, 1)),
        ];
        for (in_c, hw, out_c, k, pad) in geoms {
            let g = geom(in_c, hw, out_c, k, pad);
            g.check().unwrap();
            let l = Layout::new(&g);
            for (n, bias) in [(1, true), (3, false), (8, true)] {
                let r = Reference::new(&g, n, bias, 0.5);
                let mut got = vec![f32::NAN; n * g.out_len()];
                let xs = forward(&g, &l, n, &r.x, &r.w, r.b.as_deref(), &mut got);
                let (mut got_w, mut got_x) = (vec![r.init; r.w.len()], vec![r.init; r.x.len()]);
                backward(&g, &l, n, &xs, &r.w, &r.gy, &mut got_w, Some(&mut got_x));
                r.check_rms(&g, n, 1e-4, [&got, &got_w, &got_x]);
            }
        }
    }

    /// An empty batch writes nothing and adds nothing.
    #[test]
    fn an_empty_batch_is_nothing_to_do() {
        let g = geom(16, (28, 28), 16, (3, 3), (1, 1));
        let l = Layout::new(&g);
        let w = vec![0.5; 16 * 16 * 9];
        let xs = forward(&g, &l, 0, &[], &w, None, &mut []);
        let mut gw = vec![0.25; w.len()];
        backward(&g, &l, 0, &xs, &w, &[], &mut gw, Some(&mut []));
        assert!(xs.is_empty() && gw.iter().all(|v| *v == 0.25));
    }

    /// On a pool of several threads the chunks of samples are split: output, transforms and
    /// gradients keep the bits of one thread.
    #[test]
    fn threads_keep_every_bit() {
        let g = geom(16, (28, 28), 16, (3, 3), (1, 1));
        assert!(applies(&g));
        let l = Layout::new(&g);
        // Several chunks, the last one short.
        let n = 2 * chunk_samples(&g, &l) + 1;
        assert_threads_keep_bits(
            "winograd",
            &g,
            n,
            |x, w, b, y| forward(&g, &l, n, x, w, Some(b), y),
            |xs, w, gy, gw, gx| backward(&g, &l, n, xs, w, gy, gw, Some(gx)),
        );
    }

    /// The path is taken by 3x3 kernels over maps past 12x12 with enough channels, and left
    /// to the other paths elsewhere.
    #[test]
    fn applies_to_large_maps_of_3x3_kernels() {
        assert!(applies(&geom(16, (28, 28), 16, (3, 3), (1, 1))));
        assert!(applies(&geom(32, (14, 14), 32, (3, 3), (1, 1))));
        assert!(!applies(&geom(1, (28, 28), 16, (3, 3), (1, 1))));
        assert!(!applies(&geom(16, (8, 8), 16, (3, 3), (1, 1))));
        assert!(!applies(&geom(16, (12, 12), 16, (3, 3), (1, 1))));
        assert!(!applies(&geom(16, (28, 28), 16, (5, 5), (2, 2))));
    }
}
