//! Stride-1 convolution through small discrete Fourier transforms, all as GEMMs: every plane
//! is transformed by one matrix product, the channels are mixed by one complex product per
//! frequency, and the output is transformed back; each gradient is the exact adjoint of those
//! real-linear maps. It pays where kernels are large against the maps (5x5 on 8x8 or 4x4 with
//! 32-64 channels: a quarter to two fifths of the direct kernel's multiply-adds).
//!
//! Circular correlation of size `N` equals the zero-padded one when `N >= in + pad` (taps left
//! of the map wrap onto zeros) and `N >= out + k - 1 - pad` (taps right of it do not wrap onto
//! data). With real inputs only `N_w / 2 + 1` width frequencies are kept. A spectrum holds, per
//! frequency `b`, its real part then its imaginary part, each a row-major `rows x channels`
//! matrix: the layout the per-frequency products read without copies (one block in cache at a
//! time; one row per plane instead would spread each block over the whole buffer).

use std::cell::RefCell;
use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::Arc;

use super::conv::Conv2dGeom;
use super::gemm::{gemm, View};
use super::scratch::{give_f32, take_f32};
use super::unpacked_gemm::{product, real_product, Operand};

/// Use the transforms when they need at most this fraction of the direct kernel's
/// multiply-adds: measured on digits networks, 3x3 kernels over 8x8 maps of 32 channels
/// (0.86) train 6% faster this way, over 8x8 maps of 16 channels (1.48) 6% slower.
const MAX_COST_RATIO: f64 = 1.0;

/// The transform matrices of one geometry.
pub(super) struct Plan {
    /// Complex frequencies kept, `N_h * (N_w / 2 + 1)`.
    bins: usize,
    /// Input plane to spectrum, `in_h * in_w` rows of `2 * bins`.
    fx: Vec<f32>,
    /// Its transpose, `2 * bins` rows of `in_h * in_w` (for the input's gradient).
    fxt: Vec<f32>,
    /// Kernel taps to spectrum, `kh * kw` rows of `2 * bins` (the correlation's phase).
    fw: Vec<f32>,
    /// Spectrum to output plane, `2 * bins` rows of `out_h * out_w`.
    fy: Vec<f32>,
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

/// Multiply-adds per sample of the transforms' way (three real products per complex one)
/// against the direct kernel's.
fn cost_ratio(g: &Conv2dGeom) -> f64 {
    let (nh, nw) = sizes(g);
    let bins = (nh * (nw / 2 + 1)) as f64;
    let (p, q) = ((g.in_h * g.in_w) as f64, (g.out_h() * g.out_w()) as f64);
    let (ci, co) = (g.in_c as f64, g.out_c as f64);
    let spectral = p * 2.0 * bins * ci + 3.0 * bins * ci * co + 2.0 * bins * q * co;
    let direct = q * (g.kh * g.kw) as f64 * ci * co;
    spectral / direct
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
        let bw = nw / 2 + 1;
        let bins = nh * bw;
        // The phase of frequency (fh, fw) at offset (y, x), reduced exactly before scaling.
        let phase = |fh: usize, fw: usize, y: isize, x: isize| {
            let a = (fh as isize * y).rem_euclid(nh as isize) as f64 / nh as f64;
            let b = (fw as isize * x).rem_euclid(nw as isize) as f64 / nw as f64;
            2.0 * PI * (a + b)
        };
        let table = |rows: usize, at: &dyn Fn(usize) -> (isize, isize), sign: f64| {
            let mut m = vec![0.0f32; rows * 2 * bins];
            for r in 0..rows {
                let (y, x) = at(r);
                for fh in 0..nh {
                    for fw in 0..bw {
                        let t = phase(fh, fw, y, x);
                        let b = fh * bw + fw;
                        m[r * 2 * bins + 2 * b] = t.cos() as f32;
                        m[r * 2 * bins + 2 * b + 1] = (sign * t.sin()) as f32;
                    }
                }
            }
            m
        };
        // x̂ = Σ x e^{-iθ}; ŵ = Σ w e^{+iθ} at tap offsets (i - pad, j - pad): their product
        // is the spectrum of the correlation.
        let fx = table(
            g.in_h * g.in_w,
            &|p| ((p / g.in_w) as isize, (p % g.in_w) as isize),
            -1.0,
        );
        let fw = table(
            g.kh * g.kw,
            &|t| {
                (
                    (t / g.kw) as isize - g.pad_h as isize,
                    (t % g.kw) as isize - g.pad_w as isize,
                )
            },
            1.0,
        );
        // y = Re Σ ŷ e^{+iφ} / (N_h N_w), each width frequency but 0 and N_w / 2 counted twice
        // for its conjugate.
        let (oh, ow) = (g.out_h(), g.out_w());
        let q = oh * ow;
        let mut fy = vec![0.0f32; 2 * bins * q];
        let scale = 1.0 / (nh * nw) as f64;
        for fh in 0..nh {
            for fwi in 0..bw {
                let b = fh * bw + fwi;
                let twice = fwi != 0 && 2 * fwi != nw;
                let s = if twice { 2.0 * scale } else { scale };
                for qi in 0..q {
                    let t = phase(fh, fwi, (qi / ow) as isize, (qi % ow) as isize);
                    fy[2 * b * q + qi] = (s * t.cos()) as f32;
                    fy[(2 * b + 1) * q + qi] = (-s * t.sin()) as f32;
                }
            }
        }
        // The input's table transposed, a right operand of the unpacked product.
        let (r, len) = (2 * bins, g.in_h * g.in_w);
        let mut fxt = vec![0.0f32; r * len];
        for p in 0..len {
            for c in 0..r {
                fxt[c * len + p] = fx[p * r + c];
            }
        }
        Plan {
            bins,
            fx,
            fxt,
            fw,
            fy,
            points: (nh * nw) as f32,
        }
    }

    /// The spectra of `planes` row-major planes of `len` values (`x` is `planes x len`) by the
    /// table `f` (`len` rows of `2 * bins`), into `out` (`2 * bins` rows of `planes`).
    fn spectra(&self, f: &[f32], len: usize, planes: usize, x: &[f32], out: &mut [f32]) {
        let r = 2 * self.bins;
        gemm(
            r,
            len,
            planes,
            1.0,
            View::transposed(f, r),
            View::transposed(x, len),
            0.0,
            out,
            planes,
        );
    }

    /// The kernels' spectra: `2 * bins` blocks of `out_c x in_c`, or of `in_c x out_c` when
    /// `by_input` (the weight, `out_c x in_c` kernels, is reordered first: a tenth the copy).
    fn weight_spectra(&self, g: &Conv2dGeom, w: &[f32], by_input: bool) -> Vec<f32> {
        let (planes, taps) = (g.out_c * g.in_c, g.kh * g.kw);
        let mut ws = take_f32(2 * self.bins * planes);
        if by_input {
            let mut wt = take_f32(w.len());
            for (co, kernels) in w.chunks_exact(g.in_c * taps).enumerate() {
                for (ci, k) in kernels.chunks_exact(taps).enumerate() {
                    wt[(ci * g.out_c + co) * taps..][..taps].copy_from_slice(k);
                }
            }
            self.spectra(&self.fw, taps, planes, &wt, &mut ws);
            give_f32(wt);
        } else {
            self.spectra(&self.fw, taps, planes, w, &mut ws);
        }
        ws
    }
}

/// One complex product per frequency: `c[f] = a[f] b[f]` (`m x k` by `k x n`), each operand
/// conjugated as asked; `a(f)` gives the real and imaginary views of `a[f]`, `b` and `c` are
/// laid out by frequency (module notes).
fn complex_products<'a>(
    bins: usize,
    (m, k, n): (usize, usize, usize),
    (a, conj_a): (&dyn Fn(usize) -> [View<'a>; 2], bool),
    (b, conj_b): (&[f32], bool),
    c: &mut [f32],
) {
    let (bl, cl) = (k * n, m * n);
    for f in 0..bins {
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
        let (cr, ci) = c[2 * f * cl..][..2 * cl].split_at_mut(cl);
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
    let (len_in, len_out) = (g.in_h * g.in_w, g.out_h() * g.out_w());
    let r = 2 * p.bins;
    let mut xs = take_f32(r * n * ci);
    p.spectra(&p.fx, len_in, n * ci, x, &mut xs);
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
    // y (n co x len_out) = ŷᵀ (n co x 2 bins) fy.
    real_product(
        (n * co, r, len_out),
        View::transposed(&ys, n * co),
        View::rows(&p.fy, len_out),
        0.0,
        out,
        len_out,
    );
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
    let (len_in, len_out) = (g.in_h * g.in_w, g.out_h() * g.out_w());
    let (r, taps) = (2 * p.bins, g.kh * g.kw);
    // The adjoint of the inverse transform: ĝy = fy gyᵀ, 2 bins x (n co).
    let mut gys = take_f32(r * n * co);
    gemm(
        r,
        len_out,
        n * co,
        1.0,
        View::rows(&p.fy, len_out),
        View::transposed(gy, len_out),
        0.0,
        &mut gys,
        n * co,
    );
    if let Some(gx) = gx {
        let ws = p.weight_spectra(g, w, false);
        // ĝx (n x ci) = ĝy (n x co) conj(ŵ)ᵀ, ŵ stored out_c x in_c.
        let mut gxs = take_f32(r * n * ci);
        let gb = |f| block(&gys, f, n, co);
        complex_products(p.bins, (n, co, ci), (&gb, false), (&ws, true), &mut gxs);
        give_f32(ws);
        // gx (n ci x len_in) += ĝxᵀ fxᵀ.
        real_product(
            (n * ci, r, len_in),
            View::transposed(&gxs, n * ci),
            View::rows(&p.fxt, len_in),
            1.0,
            gx,
            len_in,
        );
        give_f32(gxs);
    }
    // ĝw (co x ci) = ĝyᵀ (co x n) conj(x̂) (n x ci).
    let mut gws = take_f32(r * co * ci);
    let nc = n * co;
    let gb = |f: usize| [0, 1].map(|part| View::transposed(&gys[(2 * f + part) * nc..][..nc], co));
    complex_products(p.bins, (co, n, ci), (&gb, false), (xs, true), &mut gws);
    give_f32(gys);
    // gw (co ci x taps) += ĝwᵀ fwᵀ.
    gemm(
        co * ci,
        r,
        taps,
        1.0,
        View::transposed(&gws, co * ci),
        View::transposed(&p.fw, r),
        1.0,
        gw,
        taps,
    );
    give_f32(gws);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::conv_direct::tests::{geom, Reference};

    /// The transforms give the direct kernel's outputs and gradients: same and valid padding,
    /// odd and even circular sizes, kernels larger than the map, rectangular kernels, 1-D
    /// signals, channel counts for the vector kernels and the fallback, with and without bias.
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
            for (n, bias) in [(1, true), (5, false), (16, true)] {
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

    /// The path is taken where it saves work (5x5 kernels over 8x8 and 4x4 maps, 3x3 over
    /// 4x4 maps and over 8x8 maps of 64 channels) and left where it does not (3x3 over 8x8
    /// maps of 16 channels or a large map, stride 2).
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
        assert!(!applies(&g(16, 8, 3, 1)));
        assert!(applies(&g(16, 4, 3, 1)));
        assert!(!applies(&g(16, 28, 3, 1)));
        assert!(!applies(&g(64, 8, 5, 2)));
    }
}
