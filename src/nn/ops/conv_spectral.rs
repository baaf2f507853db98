//! Stride-1 convolution through small discrete Fourier transforms: the planes are transformed
//! row by row then column by column (`dft2`, small matrix products over all planes), the
//! channels are mixed by one complex product per frequency, and the output is transformed back;
//! each gradient is the exact adjoint of those real-linear maps. It pays where kernels are
//! large against the maps: 5x5 on 8x8 or 4x4 maps (a seventh to a third of the direct kernel's
//! multiply-adds), 3x3 on maps up to about 14x14 (a third to two thirds).
//!
//! Circular correlation of size `N` equals the zero-padded one when `N >= in + pad` (taps left
//! of the map wrap onto zeros) and `N >= out + k - 1 - pad` (taps right of it do not wrap onto
//! data). With real inputs only the frequencies that are not conjugates of others are kept. A
//! spectrum holds, per frequency `b`, its real part then its imaginary part, each a row-major
//! `rows x channels` matrix: the layout the per-frequency products read without copies (one
//! block in cache at a time; one row per plane instead would spread each block over the whole
//! buffer).

use std::cell::RefCell;
use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::Arc;

use super::conv::Conv2dGeom;
use super::dft2::{self, Transform};
use super::gemm::View;
use super::scratch::{give_f32, take_f32};
use super::unpacked_gemm::{product, Operand};

/// Use the transforms when they need at most this fraction of the direct kernel's
/// multiply-adds. Set with dense transform tables (3x3 kernels over 8x8 maps of 32 channels
/// trained 6% faster this way, of 16 channels 6% slower) and kept for the separable passes,
/// which cut the ratio of the latter to 0.64: a digits network of such layers trains 13%
/// faster on this path than on the direct kernel, and the 28x28 trainer bench's CNN, whose
/// 3x3 layer from 16 to 32 channels over 14x14 maps now takes it, about 7%.
const MAX_COST_RATIO: f64 = 1.0;

/// The transforms of one geometry.
pub(super) struct Plan {
    /// Complex frequencies kept (`dft2`'s transforms of real planes).
    bins: usize,
    /// Input planes to spectra: x̂ = Σ x e^{-iθ}.
    x: Transform,
    /// Kernel taps to spectra: ŵ = Σ w e^{+iθ} at tap offsets `(i - pad, j - pad)`.
    w: Transform,
    /// Output gradients to spectra, `ĝy = s Σ gy e^{-iφ} / (N_h N_w)`, `s` 2 for each kept
    /// frequency whose conjugate is left out (its share) and 1 for those that are their own;
    /// its adjoint takes a spectrum back to the output, `y = Re Σ s ŷ e^{+iφ} / (N_h N_w)`.
    y: Transform,
    /// `N_h * N_w`: a constant `c` on every output is `c * N_h * N_w` at frequency 0.
    points: f32,
}

/// Circular sizes `(N_h, N_w)` at which the correlation of `g` needs no extra padding.
fn sizes(g: &Conv2dGeom) -> (usize, usize) {
    let n = |len: usize, pad: usize, out: usize, k: usize| {
        (len + pad).max((out + k - 1).saturating_sub(pad))
    };
    (
        n(g.in_h, g.pad_h, g.out_h(), g.kh),
        n(g.in_w, g.pad_w, g.out_w(), g.kw),
    )
}

/// Multiply-adds per sample of the transforms' way (both transforms' passes, three real
/// products per complex one) against the direct kernel's.
fn cost_ratio(g: &Conv2dGeom) -> f64 {
    let n = sizes(g);
    let (ci, co) = (g.in_c as f64, g.out_c as f64);
    let (fx, bins) = dft2::cost((g.in_h, g.in_w), n);
    let (fy, _) = dft2::cost((g.out_h(), g.out_w()), n);
    let spectral = fx as f64 * ci + 3.0 * bins as f64 * ci * co + fy as f64 * co;
    let direct = (g.out_h() * g.out_w() * g.kh * g.kw) as f64 * ci * co;
    spectral / direct
}

/// Values of one plane's spectrum under `g`'s transforms (its [`Plan`]'s, without building it).
pub(super) fn spectrum_len(g: &Conv2dGeom) -> usize {
    2 * dft2::cost((g.in_h, g.in_w), sizes(g)).1
}

/// Whether `g` takes this path: stride 1, one group, a kernel wider than 1x1, and transforms
/// cheap enough against the direct kernel.
pub(super) fn applies(g: &Conv2dGeom) -> bool {
    g.groups == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.kh * g.kw > 1
        && cost_ratio(g) <= MAX_COST_RATIO
}

thread_local! {
    /// Plans by geometry: a network asks for the same few on every step.
    static PLANS: RefCell<HashMap<[usize; 8], Arc<Plan>>> = RefCell::new(HashMap::new());
}

/// The plan of `g`, built on first use on this thread.
pub(super) fn plan(g: &Conv2dGeom) -> Arc<Plan> {
    let key = [
        g.in_h,
        g.in_w,
        g.kh,
        g.kw,
        g.pad_h,
        g.pad_w,
        g.out_h(),
        g.out_w(),
    ];
    PLANS.with(|p| {
        p.borrow_mut()
            .entry(key)
            .or_insert_with(|| Arc::new(Plan::new(g)))
            .clone()
    })
}

impl Plan {
    fn new(g: &Conv2dGeom) -> Plan {
        let (nh, nw) = sizes(g);
        // e^{i sign 2π f (p - shift) / n}, the phase reduced exactly before scaling. Half a turn
        // keeps `sin π` as computed (1.2e-16, not 0): rounding it changed trained numbers.
        let e = |n: usize, sign: f64, shift: usize| {
            move |p: usize, f: usize| {
                let turns = (f as isize * (p as isize - shift as isize)).rem_euclid(n as isize);
                let t = sign * 2.0 * PI * turns as f64 / n as f64;
                (t.cos(), t.sin())
            }
        };
        let n = (nh, nw);
        let x = Transform::new((g.in_h, g.in_w), n, &e(nh, -1.0, 0), &e(nw, -1.0, 0), 1.0);
        let (kernel_h, kernel_w) = (e(nh, 1.0, g.pad_h), e(nw, 1.0, g.pad_w));
        let w = Transform::new((g.kh, g.kw), n, &kernel_h, &kernel_w, 1.0);
        // Every kept frequency but the real-symmetric ones stands for its conjugate too: twice
        // the weight (the width table for the columns past 0, the transform in the edge ones).
        let (eh, ew) = (e(nh, -1.0, 0), e(nw, -1.0, 0));
        let y = Transform::new(
            (g.out_h(), g.out_w()),
            n,
            &|p, f| {
                let (c, s) = eh(p, f);
                (c / nh as f64, s / nh as f64)
            },
            &|p, f| {
                let twice = f != 0 && 2 * f != nw;
                let k = if twice { 2.0 } else { 1.0 } / nw as f64;
                let (c, s) = ew(p, f);
                (k * c, k * s)
            },
            2.0,
        );
        Plan {
            bins: x.bins(),
            x,
            w,
            y,
            points: (nh * nw) as f32,
        }
    }

    /// The kernels' spectra: `2 * bins` blocks of `out_c x in_c`, or of `in_c x out_c` when
    /// `by_input` (the weight holds `out_c x in_c` kernels).
    fn weight_spectra(&self, g: &Conv2dGeom, w: &[f32], by_input: bool) -> Vec<f32> {
        let (co, ci) = (g.out_c, g.in_c);
        let mut ws = take_f32(2 * self.bins * co * ci);
        if by_input {
            self.w.analyse_transposed((co, ci), w, &mut ws);
        } else {
            self.w.analyse(co * ci, w, &mut ws);
        }
        ws
    }
}

/// A spectrum's real and imaginary blocks by frequency.
type Spectra<'a> = dyn Fn(usize) -> [View<'a>; 2] + Sync + 'a;

/// One complex product per frequency: `c[f] = a[f] b[f]` (`m x k` by `k x n`), each operand
/// conjugated as asked; `a(f)` gives the real and imaginary views of `a[f]`, `b` and `c` are
/// laid out by frequency (module notes).
fn complex_products<'a>(
    bins: usize,
    (m, k, n): (usize, usize, usize),
    (a, conj_a): (&Spectra<'a>, bool),
    (b, conj_b): (&[f32], bool),
    c: &mut [f32],
) {
    let cl = m * n;
    // Each frequency's product is its own: on several threads the frequencies are split.
    let parts = super::par::parts(bins, bins * m * k * n * 3);
    if parts > 1 {
        use rayon::prelude::*;
        let per = bins.div_ceil(parts);
        c[..2 * bins * cl]
            .par_chunks_mut(2 * per * cl)
            .enumerate()
            .for_each(super::par::in_caller_modes(
                |(i, cp): (usize, &mut [f32])| {
                    let f0 = i * per;
                    let count = cp.len() / (2 * cl);
                    product_bins(f0..f0 + count, (m, k, n), (a, conj_a), (b, conj_b), cp);
                },
            ));
        return;
    }
    product_bins(0..bins, (m, k, n), (a, conj_a), (b, conj_b), c);
}

/// [`complex_products`] for the frequencies `fs`, whose products `c` holds from its start.
fn product_bins<'a>(
    fs: std::ops::Range<usize>,
    (m, k, n): (usize, usize, usize),
    (a, conj_a): (&Spectra<'a>, bool),
    (b, conj_b): (&[f32], bool),
    c: &mut [f32],
) {
    let (bl, cl) = (k * n, m * n);
    let f0 = fs.start;
    for f in fs {
        let [re, im] = a(f);
        let a = Operand {
            re,
            im,
            conj: conj_a,
        };
        let b = Operand {
            re: View::rows(&b[2 * f * bl..][..bl], n),
            im: View::rows(&b[(2 * f + 1) * bl..][..bl], n),
            conj: conj_b,
        };
        let (cr, ci) = c[2 * (f - f0) * cl..][..2 * cl].split_at_mut(cl);
        product((m, k, n), a, b, cr, ci);
    }
}

/// The real and imaginary `rows x cols` blocks of frequency `f` of a spectrum laid out by
/// frequency.
fn block(s: &[f32], f: usize, rows: usize, cols: usize) -> [View<'_>; 2] {
    let l = rows * cols;
    [0, 1].map(|part| View::rows(&s[(2 * f + part) * l..][..l], cols))
}

/// Writes the output of a batch of `n` into `out` (every value) and returns the input's
/// spectra, which [`backward`] reads.
pub(super) fn forward(
    g: &Conv2dGeom,
    p: &Plan,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Vec<f32> {
    let (ci, co) = (g.in_c, g.out_c);
    let r = 2 * p.bins;
    let mut xs = take_f32(r * n * ci);
    p.x.analyse(n * ci, x, &mut xs);
    let ws = p.weight_spectra(g, w, true);
    // ŷ (n x co) = x̂ (n x ci) ŵ (ci x co).
    let mut ys = take_f32(r * n * co);
    let xb = |f| block(&xs, f, n, ci);
    complex_products(p.bins, (n, ci, co), (&xb, false), (&ws, false), &mut ys);
    give_f32(ws);
    // The bias enters at frequency 0 (the first real block), so every output gets it.
    if let Some(b) = bias {
        for row in ys[..n * co].chunks_exact_mut(co) {
            for (v, &bv) in row.iter_mut().zip(b) {
                *v += bv * p.points;
            }
        }
    }
    p.y.synthesise(n * co, &ys, false, out);
    give_f32(ys);
    xs
}

/// Adds the weight's and (when asked) the input's gradients for the output gradient `gy`,
/// from the input's spectra `xs` that [`forward`] returned.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    g: &Conv2dGeom,
    p: &Plan,
    n: usize,
    xs: &[f32],
    w: &[f32],
    gy: &[f32],
    gw: &mut [f32],
    gx: Option<&mut [f32]>,
) {
    let (ci, co) = (g.in_c, g.out_c);
    let r = 2 * p.bins;
    // The adjoint of the output's synthesis: ĝy, 2 bins x (n co).
    let mut gys = take_f32(r * n * co);
    p.y.analyse(n * co, gy, &mut gys);
    if let Some(gx) = gx {
        let ws = p.weight_spectra(g, w, false);
        // ĝx (n x ci) = ĝy (n x co) conj(ŵ)ᵀ, ŵ stored out_c x in_c.
        let mut gxs = take_f32(r * n * ci);
        let gb = |f| block(&gys, f, n, co);
        complex_products(p.bins, (n, co, ci), (&gb, false), (&ws, true), &mut gxs);
        give_f32(ws);
        // gx += the adjoint of the input's analysis.
        p.x.synthesise(n * ci, &gxs, true, gx);
        give_f32(gxs);
    }
    // ĝw (co x ci) = ĝyᵀ (co x n) conj(x̂) (n x ci).
    let mut gws = take_f32(r * co * ci);
    let nc = n * co;
    let gb = |f: usize| [0, 1].map(|part| View::transposed(&gys[(2 * f + part) * nc..][..nc], co));
    complex_products(p.bins, (co, n, ci), (&gb, false), (xs, true), &mut gws);
    give_f32(gys);
    // gw += the adjoint of the kernels' analysis.
    p.w.synthesise(co * ci, &gws, true, gw);
    give_f32(gws);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::conv_direct::tests::{assert_threads_keep_bits, geom, Reference};

    /// On a pool of several threads the transforms split their chunks of planes and the
    /// products their frequencies: output, spectra and gradients keep the bits of one thread.
    #[test]
    fn threads_keep_every_bit() {
        let g = geom(32, (8, 8), 32, (3, 3), (1, 1));
        assert!(applies(&g));
        let (n, p) = (70, plan(&g));
        assert_threads_keep_bits(
            "spectral",
            &g,
            n,
            |x, w, b, y| forward(&g, &p, n, x, w, Some(b), y),
            |xs, w, gy, gw, gx| backward(&g, &p, n, xs, w, gy, gw, Some(gx)),
        );
    }

    /// The transforms give the direct kernel's outputs and gradients: same and valid padding,
    /// odd and even circular sizes, kernels larger than the map, rectangular kernels, 1-D
    /// signals, channel counts for the vector kernels and the fallback, with and without bias,
    /// batches of 1 to 37 (more planes than one of `dft2`'s chunks, and odd plane counts).
    #[test]
    fn transforms_match_the_direct_kernels() {
        let geoms = [
            (3, (8, 8), 5, (5, 5), (2, 2)),
            (4, (4, 4), 3, (5, 5), (2, 2)),
            (2, (2, 2), 3, (5, 5), (2, 2)),
            (3, (8, 8), 2, (3, 3), (1, 1)),
            (2, (5, 7), 3, (3, 5), (1, 2)),
            (2, (6, 6), 2, (3, 3), (0, 0)),
            (2, (1, 9), 3, (1, 5), (0, 2)),
            // Channel counts that take the vector kernels (multiples of 16).
            (16, (4, 4), 32, (3, 3), (1, 1)),
            (32, (8, 8), 16, (5, 5), (2, 2)),
        ];
        for (in_c, hw, out_c, k, pad) in geoms {
            let g = geom(in_c, hw, out_c, k, pad);
            g.check().unwrap();
            let p = plan(&g);
            for (n, bias) in [(1, true), (5, false), (16, true), (37, false)] {
                // Gradients are added to what the buffers hold.
                let r = Reference::new(&g, n, bias, 0.5);
                let mut got = vec![f32::NAN; n * g.out_len()];
                let xs = forward(&g, &p, n, &r.x, &r.w, r.b.as_deref(), &mut got);
                let (mut got_w, mut got_x) = (vec![r.init; r.w.len()], vec![r.init; r.x.len()]);
                backward(&g, &p, n, &xs, &r.w, &r.gy, &mut got_w, Some(&mut got_x));
                r.check(&g, n, 1e-4, [&got, &got_w, &got_x]);
            }
        }
    }

    /// The spectrum length counted without a plan (for a network's memory, see
    /// `Conv2dGeom::scratch_per_sample`) is the plan's, on odd and even circular sizes.
    #[test]
    fn spectra_are_counted_as_long_as_the_plans_make_them() {
        for (in_c, hw, out_c, k, pad) in [
            (64, (8, 8), 64, (5, 5), (2, 2)),
            (32, (8, 8), 64, (3, 3), (1, 1)),
            (16, (4, 4), 16, (5, 5), (2, 2)),
            (16, (14, 14), 32, (3, 3), (1, 1)),
        ] {
            let g = geom(in_c, hw, out_c, k, pad);
            assert!(applies(&g), "{g:?}");
            assert_eq!(spectrum_len(&g), plan(&g).x.spectrum_len(), "{g:?}");
            assert_eq!(g.scratch_per_sample(), spectrum_len(&g) * in_c.max(out_c));
        }
    }

    /// The path is taken where it saves work (5x5 kernels over 8x8 and 4x4 maps, 3x3 over
    /// 4x4, 8x8 and 14x14 maps) and left where it does not (3x3 over 28x28 maps of 16
    /// channels, stride 2).
    #[test]
    fn applies_where_the_transforms_are_cheaper() {
        let g = |c: usize, hw: usize, k: usize, stride: usize| Conv2dGeom {
            in_c: c,
            in_h: hw,
            in_w: hw,
            out_c: c,
            kh: k,
            kw: k,
            stride_h: stride,
            stride_w: stride,
            pad_h: k / 2,
            pad_w: k / 2,
            groups: 1,
        };
        assert!(applies(&g(64, 8, 5, 1)));
        assert!(applies(&g(64, 4, 5, 1)));
        assert!(applies(&g(16, 8, 5, 1)));
        assert!(applies(&g(64, 8, 3, 1)));
        assert!(applies(&g(16, 8, 3, 1)));
        assert!(applies(&g(32, 14, 3, 1)));
        assert!(applies(&g(16, 4, 3, 1)));
        assert!(!applies(&g(16, 28, 3, 1)));
        assert!(!applies(&g(64, 8, 5, 2)));
    }
}
