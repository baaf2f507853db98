//! Separable 2-D discrete Fourier transforms of many real planes at once, row by row then
//! column by column, each pass one small matrix product over all planes: a plane of `h x w`
//! values with `bins` complex frequencies kept over `bw` width frequencies costs
//! `h w 2bw + 2 bins 2h` multiply-adds (8x8 planes at 52 frequencies: 2,432), where one dense
//! table of all `nh x bw` costs `h w 2 nh bw` (7,680 at 10 x 6); a width frequency whose
//! table is real (0; `nw / 2` only where its table holds exact zeros, which `sin π` in floats
//! is not) skips its zero imaginary parts in both passes (2,272 at 10 x 10 points, 1,808 instead
//! of 1,952 at 9 x 9).
//!
//! A transform is given by one complex table per axis, `ah` (`h x nh`) and `aw` (`w x bw`):
//! [`Transform::analyse`] computes `S[fh, fw] = Σ ah[y][fh] aw[x][fw] X[y][x]` and
//! [`Transform::synthesise`] its adjoint, `X[y][x] = Re Σ conj(ah[y][fh] aw[x][fw]) S[fh, fw]`
//! (over real and imaginary parts as separate reals), each over the frequencies a real plane
//! needs (see [`Transform::new`]). Planes come row-major, one after another; a spectrum holds,
//! per kept frequency (by width frequency, then row frequency), its real part then its
//! imaginary part, each a row of `planes` values: the layout of `conv_spectral`'s
//! per-frequency products.

use super::gemm::View;
use super::scratch::{give_f32, take_f32};
use super::transpose::{transpose, transpose_strided};
use super::unpacked_gemm::real_product;

/// One separable transform, as the real matrices its passes multiply by.
pub(super) struct Transform {
    /// Plane rows and columns.
    h: usize,
    w: usize,
    /// Row frequencies kept in a column (`nh`; `nh / 2 + 1` in an edge column).
    nh: usize,
    /// Per width frequency kept (`bw = nw / 2 + 1` of them), whether it is an edge column.
    edges: Vec<bool>,
    /// Per width frequency, whether `aw[.][fw]` is real, every imaginary part exactly zero
    /// (`fw = 0`, and `nw / 2` where the table says so; `conv_spectral`'s tables hold `sin π`
    /// there, 1.2e-16, and rounding it to 0 changed trained numbers): the row pass gives that
    /// column no imaginary rows and the column pass reads its real rows only. The terms left
    /// out are exact zeros, so the sums are the same.
    real: Vec<bool>,
    /// The row pass, one row of `w` per part kept: per width frequency its real part of
    /// `aw[.][fw]`, then its imaginary part unless [`Transform::real`] says it is zero.
    rows: Vec<f32>,
    /// The column pass, `2 nh x 2 h`, a complex product as a real one: row `2 fh + p` gives part
    /// `p` of frequency `fh` from the columns `p' h + y`, part `p'` of row `y`.
    cols: Vec<f32>,
    /// The column pass of the edge columns: the first `nh / 2 + 1` frequencies of `cols`, those
    /// whose mirror is left out weighted by `mirror`.
    edge: Vec<f32>,
}

impl Transform {
    /// The transform of `h x w` planes by the tables `ah[y][fh]` and `aw[x][fw]` (complex
    /// values as `(re, im)`, in `f64` until stored) over `nh x nw` points.
    ///
    /// Only the frequencies a real plane needs are kept. Width frequencies stop at `nw / 2`:
    /// the others are the conjugates of these. In the edge columns (`fw` 0 and, for an even
    /// `nw`, `nw / 2`, their own mirrors) row frequencies stop at `nh / 2`, for the same reason:
    /// `S[nh - fh, fw] = conj(S[fh, fw])`. A synthesis that stands for the whole sum weights
    /// each kept frequency whose mirror is left out by 2: `mirror` 2 in the edge columns (the
    /// width table carries the other columns' weight), 1 for a plain analysis.
    pub fn new(
        (h, w): (usize, usize),
        (nh, nw): (usize, usize),
        ah: &dyn Fn(usize, usize) -> (f64, f64),
        aw: &dyn Fn(usize, usize) -> (f64, f64),
        mirror: f64,
    ) -> Transform {
        let bw = nw / 2 + 1;
        let mut rows = Vec::with_capacity(2 * bw * w);
        let mut real = Vec::with_capacity(bw);
        for fw in 0..bw {
            let (re, im): (Vec<f32>, Vec<f32>) = (0..w)
                .map(|x| {
                    let (re, im) = aw(x, fw);
                    (re as f32, im as f32)
                })
                .unzip();
            let is_real = im.iter().all(|&v| v == 0.0);
            rows.extend(re);
            if !is_real {
                rows.extend(im);
            }
            real.push(is_real);
        }
        let ld = 2 * h;
        let table = |count: usize, weight: &dyn Fn(usize) -> f64| {
            let mut m = vec![0.0f32; 2 * count * ld];
            for fh in 0..count {
                for y in 0..h {
                    let (re, im) = ah(y, fh);
                    let (re, im) = ((weight(fh) * re) as f32, (weight(fh) * im) as f32);
                    // (re + i im)(ur + i ui): real re ur - im ui, imaginary im ur + re ui.
                    m[2 * fh * ld + y] = re;
                    m[2 * fh * ld + h + y] = -im;
                    m[(2 * fh + 1) * ld + y] = im;
                    m[(2 * fh + 1) * ld + h + y] = re;
                }
            }
            m
        };
        let half = nh / 2 + 1;
        let cols = table(nh, &|_| 1.0);
        // fh in 1..=(nh - 1) / 2 has its mirror nh - fh beyond nh / 2; 0 and nh / 2 are their own.
        let edge = table(half, &|fh| {
            if fh != 0 && 2 * fh != nh {
                mirror
            } else {
                1.0
            }
        });
        let edges = (0..bw).map(|fw| edge_column(fw, nw)).collect();
        Transform {
            h,
            w,
            nh,
            edges,
            real,
            rows,
            cols,
            edge,
        }
    }

    /// Complex frequencies kept.
    pub fn bins(&self) -> usize {
        self.columns().map(|(_, count, _)| count).sum()
    }

    /// Values of a spectrum per plane.
    pub fn spectrum_len(&self) -> usize {
        2 * self.bins()
    }

    /// Per width frequency: the column table, its row frequencies and the spectrum's first
    /// row (frequencies are ordered by width frequency, then row frequency).
    fn columns(&self) -> impl Iterator<Item = (&[f32], usize, usize)> {
        self.edges.iter().scan(0, move |first, &edge| {
            let (table, count): (&[f32], _) = if edge {
                (&self.edge, self.nh / 2 + 1)
            } else {
                (&self.cols, self.nh)
            };
            let at = *first;
            *first += 2 * count;
            Some((table, count, at))
        })
    }

    /// Per width frequency: its parts in the row pass (1 where [`Transform::real`], else 2)
    /// and the first of its rows there.
    fn parts(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.real.iter().scan(0, |first, &real| {
            let parts = if real { 1 } else { 2 };
            let at = *first;
            *first += parts;
            Some((parts, at))
        })
    }

    /// Rows of the row pass: the parts of every width frequency.
    fn row_parts(&self) -> usize {
        self.rows.len() / self.w
    }

    /// The spectra of `planes` planes `x` (`planes x h w`) into `out` (`2 bins` rows of
    /// `planes`, every value written).
    pub fn analyse(&self, planes: usize, x: &[f32], out: &mut [f32]) {
        self.analyse_in(Order::Same, planes, x, out)
    }

    /// [`Transform::analyse`] of `rows x cols` planes (plane `r cols + c`), their spectra in
    /// the transposed order (column `c rows + r`): a convolution's kernels, stored by output
    /// channel, analysed by input channel. The planes are gathered where they are turned
    /// planes-last anyway, so the order costs no copy.
    pub fn analyse_transposed(&self, (rows, cols): (usize, usize), x: &[f32], out: &mut [f32]) {
        self.analyse_in(Order::Transposed { rows, cols }, rows * cols, x, out)
    }

    fn analyse_in(&self, order: Order, planes: usize, x: &[f32], out: &mut [f32]) {
        let len = self.h * self.w;
        assert!(
            x.len() >= planes * len && out.len() >= self.spectrum_len() * planes,
            "analyse: buffer too short"
        );
        let chunks = planes.div_ceil(CHUNK);
        let parts = super::par::parts(chunks, planes * self.cost_per_plane());
        if parts > 1 {
            // Chunks on the pool's threads, each into a block of its own (`pc` columns), then
            // copied into their columns of `out`: the same values as on one thread.
            use rayon::prelude::*;
            let rows = self.spectrum_len();
            let blocks: Vec<Vec<f32>> = (0..chunks)
                .into_par_iter()
                .map(super::par::in_caller_modes(|i: usize| {
                    let p0 = i * CHUNK;
                    let pc = (planes - p0).min(CHUNK);
                    let mut block = take_f32(rows * pc);
                    self.analyse_chunk(order, p0, pc, x, &mut block, 0, pc);
                    block
                }))
                .collect();
            out[..rows * planes]
                .par_chunks_mut(planes)
                .enumerate()
                .for_each(|(r, row)| {
                    for (i, block) in blocks.iter().enumerate() {
                        let p0 = i * CHUNK;
                        let pc = (planes - p0).min(CHUNK);
                        row[p0..p0 + pc].copy_from_slice(&block[r * pc..(r + 1) * pc]);
                    }
                });
            for b in blocks {
                give_f32(b);
            }
            return;
        }
        for p0 in (0..planes).step_by(CHUNK) {
            let pc = (planes - p0).min(CHUNK);
            self.analyse_chunk(order, p0, pc, x, out, p0, planes);
        }
    }

    /// Multiply-adds per plane of one transform, counting the zero imaginary parts of real width
    /// frequencies that the passes skip: a bound, for how many threads a batch of planes pays.
    fn cost_per_plane(&self) -> usize {
        self.h * self.w * 2 * self.edges.len() + self.spectrum_len() * 2 * self.h
    }

    /// [`Transform::analyse`] of planes `p0..p0 + pc` (in `order`) into the columns
    /// `at0..at0 + pc` of `out`, whose rows are `ld` apart.
    #[allow(clippy::too_many_arguments)]
    fn analyse_chunk(
        &self,
        order: Order,
        p0: usize,
        pc: usize,
        x: &[f32],
        out: &mut [f32],
        at0: usize,
        ld: usize,
    ) {
        let (h, w, r) = (self.h, self.w, self.row_parts());
        let len = h * w;
        let (mut xt, mut u) = (take_f32(len * pc), take_f32(r * h * pc));
        // Planes last: each pass then multiplies a small table by rows of `pc` values.
        match order {
            Order::Same => transpose(
                &x[p0 * len..][..pc * len],
                pc,
                len,
                &mut xt[..len * pc],
                false,
            ),
            Order::Transposed { rows, cols } => {
                // Runs of spectrum columns `c rows + r` of one `c`: planes `cols` apart.
                let mut j = p0;
                while j < p0 + pc {
                    let (c, r) = (j / rows, j % rows);
                    let run = (rows - r).min(p0 + pc - j);
                    transpose_strided(
                        &x[(r * cols + c) * len..],
                        (run, len),
                        cols * len,
                        &mut xt[j - p0..],
                        pc,
                        false,
                    );
                    j += run;
                }
            }
        }
        // Row pass, per row y: u[j h + y] = rows[j] xt[y w .. y w + w], j over the kept parts.
        for y in 0..h {
            real_product(
                (r, w, pc),
                View::rows(&self.rows, w),
                View::rows(&xt[y * w * pc..][..w * pc], pc),
                0.0,
                &mut u[y * pc..],
                h * pc,
            );
        }
        // Column pass, per width frequency: the complex rows of u by the column table (by its
        // real columns alone where u's imaginary rows are zero).
        for ((table, count, at), (parts, first)) in self.columns().zip(self.parts()) {
            real_product(
                (2 * count, parts * h, pc),
                View::rows(table, 2 * h),
                View::rows(&u[first * h * pc..][..parts * h * pc], pc),
                0.0,
                &mut out[at * ld + at0..],
                ld,
            );
        }
        give_f32(xt);
        give_f32(u);
    }

    /// The adjoint of [`Transform::analyse`]: the planes (`planes x h w`) of the spectra `s`,
    /// written into `x` or added to it (`add`).
    pub fn synthesise(&self, planes: usize, s: &[f32], add: bool, x: &mut [f32]) {
        let len = self.h * self.w;
        assert!(
            x.len() >= planes * len && s.len() >= self.spectrum_len() * planes,
            "synthesise: buffer too short"
        );
        let chunks = planes.div_ceil(CHUNK);
        let parts = super::par::parts(chunks, planes * self.cost_per_plane());
        if parts > 1 {
            // Chunks on the pool's threads: each writes its own planes of `x`.
            use rayon::prelude::*;
            x[..planes * len]
                .par_chunks_mut(CHUNK * len)
                .enumerate()
                .for_each(super::par::in_caller_modes(
                    |(i, xc): (usize, &mut [f32])| {
                        let p0 = i * CHUNK;
                        self.synthesise_chunk(planes, p0, xc.len() / len, s, add, xc);
                    },
                ));
            return;
        }
        for p0 in (0..planes).step_by(CHUNK) {
            let pc = (planes - p0).min(CHUNK);
            self.synthesise_chunk(planes, p0, pc, s, add, &mut x[p0 * len..][..pc * len]);
        }
    }

    /// [`Transform::synthesise`] of planes `p0..p0 + pc` (of `planes`) into `x` (theirs only).
    fn synthesise_chunk(
        &self,
        planes: usize,
        p0: usize,
        pc: usize,
        s: &[f32],
        add: bool,
        x: &mut [f32],
    ) {
        let (h, w, r) = (self.h, self.w, self.row_parts());
        let len = h * w;
        let (mut v, mut xt) = (take_f32(r * h * pc), take_f32(len * pc));
        // Column pass transposed, per width frequency: v[j h + y] for its parts j (the real
        // one alone where the row pass has no imaginary row: that part would meet zeros).
        for ((table, count, at), (parts, first)) in self.columns().zip(self.parts()) {
            let spectrum = View {
                data: &s[at * planes + p0..],
                rs: planes,
                cs: 1,
            };
            real_product(
                (parts * h, 2 * count, pc),
                View::transposed(table, 2 * h),
                spectrum,
                0.0,
                &mut v[first * h * pc..][..parts * h * pc],
                pc,
            );
        }
        // Row pass transposed, per row y: xt[y w + x] = Σ rows[j][x] v[j h + y].
        for y in 0..h {
            let row = View {
                data: &v[y * pc..],
                rs: h * pc,
                cs: 1,
            };
            real_product(
                (w, r, pc),
                View::transposed(&self.rows, w),
                row,
                0.0,
                &mut xt[y * w * pc..][..w * pc],
                pc,
            );
        }
        transpose(&xt[..len * pc], len, pc, &mut x[..pc * len], add);
        give_f32(v);
        give_f32(xt);
    }
}

/// The order of the planes an analysis reads, against its spectrum's columns.
#[derive(Clone, Copy)]
enum Order {
    /// Column `p` is plane `p`.
    Same,
    /// Column `c rows + r` is plane `r cols + c` of `rows x cols`.
    Transposed { rows: usize, cols: usize },
}

/// Multiply-adds per plane of either pass pair of `h x w` planes over `nh x nw` points, and
/// the complex frequencies kept (see [`Transform::new`]).
pub(super) fn cost((h, w): (usize, usize), (nh, nw): (usize, usize)) -> (usize, usize) {
    let bw = nw / 2 + 1;
    let bins = (0..bw)
        .map(|fw| if edge_column(fw, nw) { nh / 2 + 1 } else { nh })
        .sum::<usize>();
    (h * w * 2 * bw + 2 * bins * 2 * h, bins)
}

/// Whether width frequency `fw` of `nw` points is its own mirror (0, and `nw / 2` for an even
/// `nw`): its column keeps the row frequencies up to `nh / 2` only.
fn edge_column(fw: usize, nw: usize) -> bool {
    fw == 0 || 2 * fw == nw
}

/// Planes per pass: a chunk's intermediate buffers (about 100 values a plane for 8x8 planes)
/// stay in the core's own cache, where all planes at once (4,096 for a batch of 64 by 64
/// channels) spill to memory between passes. A multiple of the vector widths.
const CHUNK: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense transform of one plane at the kept frequencies, straight from the definition,
    /// in `f64`: all `nh` row frequencies but in the edge columns (0 and `nw / 2`), which
    /// stop at `nh / 2`.
    fn dense(
        (h, w): (usize, usize),
        (nh, nw): (usize, usize),
        ah: &dyn Fn(usize, usize) -> (f64, f64),
        aw: &dyn Fn(usize, usize) -> (f64, f64),
        x: &[f32],
    ) -> Vec<(f64, f64)> {
        let mut s = Vec::new();
        for fw in 0..nw / 2 + 1 {
            let edge = fw == 0 || 2 * fw == nw;
            for fh in 0..if edge { nh / 2 + 1 } else { nh } {
                let (mut re, mut im) = (0.0, 0.0);
                for y in 0..h {
                    for xi in 0..w {
                        let (a, b) = ah(y, fh);
                        let (c, d) = aw(xi, fw);
                        let v = f64::from(x[y * w + xi]);
                        re += (a * c - b * d) * v;
                        im += (a * d + b * c) * v;
                    }
                }
                s.push((re, im));
            }
        }
        s
    }

    /// Analysis matches the definition for plane counts on and off the vector kernels, and
    /// synthesis is its adjoint: <analyse(x), s> = <x, synthesise(s)>, added onto what `x`
    /// held when asked.
    #[test]
    fn passes_match_the_definition_and_synthesis_is_the_adjoint() {
        let e = |n: usize, sign: f64, scale: f64| {
            move |p: usize, f: usize| {
                let t = sign * 2.0 * std::f64::consts::PI * ((p * f) % n) as f64 / n as f64;
                (scale * t.cos(), scale * t.sin())
            }
        };
        for ((h, w), (nh, nw), planes) in [
            ((8, 8), (10, 10), 32),
            ((8, 8), (10, 10), 600),
            ((5, 7), (6, 9), 3),
            ((4, 4), (6, 6), 16),
            ((1, 9), (1, 12), 5),
        ] {
            let (ah, aw) = (e(nh, -1.0, 1.0), e(nw, 1.0, 0.5));
            let t = Transform::new((h, w), (nh, nw), &ah, &aw, 1.0);
            assert_eq!(cost((h, w), (nh, nw)).1, t.bins(), "{h}x{w} bins");
            let len = h * w;
            let x: Vec<f32> = (0..planes * len)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            let mut s = vec![f32::NAN; t.spectrum_len() * planes];
            t.analyse(planes, &x, &mut s);
            for p in 0..planes {
                let want = dense((h, w), (nh, nw), &ah, &aw, &x[p * len..][..len]);
                assert_eq!(want.len(), t.bins());
                for (b, (re, im)) in want.into_iter().enumerate() {
                    let (gr, gi) = (s[2 * b * planes + p], s[(2 * b + 1) * planes + p]);
                    assert!((f64::from(gr) - re).abs() < 1e-4, "{h}x{w} re {b}");
                    assert!((f64::from(gi) - im).abs() < 1e-4, "{h}x{w} im {b}");
                }
            }
            let g: Vec<f32> = (0..s.len())
                .map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0)
                .collect();
            let mut back = vec![0.25f32; x.len()];
            t.synthesise(planes, &g, true, &mut back);
            let dot = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(&u, &v)| f64::from(u) * f64::from(v))
                    .sum::<f64>()
            };
            let lhs = dot(&s, &g);
            let rhs = dot(&x, &back) - 0.25 * x.iter().map(|&v| f64::from(v)).sum::<f64>();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} {rhs}");
            let mut fresh = vec![f32::NAN; x.len()];
            t.synthesise(planes, &g, false, &mut fresh);
            for (a, b) in fresh.iter().zip(&back) {
                assert!((a + 0.25 - b).abs() < 1e-5);
            }
        }
    }

    /// The real width frequencies' imaginary rows (0, and `nw / 2` for an even `nw`) are left
    /// out of both passes, and the terms so skipped were exact zeros: the same bits as the
    /// transform with those rows kept (zeros multiplied through both passes), for the analysis
    /// and the synthesis.
    #[test]
    fn the_real_column_skips_only_zeros() {
        // Half a turn exactly -1 (unlike `conv_spectral`'s tables), so that both edge columns
        // of an even width are real and skipped.
        let e = |n: usize, sign: f64| {
            move |p: usize, f: usize| {
                if 2 * (p * f % n) == n {
                    return (-1.0, 0.0);
                }
                let t = sign * 2.0 * std::f64::consts::PI * ((p * f) % n) as f64 / n as f64;
                (t.cos(), t.sin())
            }
        };
        for ((h, w), (nh, nw), planes) in [((8, 8), (10, 10), 300), ((8, 8), (9, 9), 40)] {
            let t = Transform::new((h, w), (nh, nw), &e(nh, -1.0), &e(nw, -1.0), 2.0);
            for (fw, &real) in t.real.iter().enumerate() {
                assert_eq!(real, fw == 0 || 2 * fw == nw, "{nw}: frequency {fw}");
            }
            // The same transform with every imaginary row kept, zero or not.
            let mut rows = Vec::new();
            for (parts, first) in t.parts() {
                rows.extend_from_slice(&t.rows[first * w..][..parts * w]);
                if parts == 1 {
                    rows.extend(std::iter::repeat_n(0.0, w));
                }
            }
            let full = Transform {
                real: vec![false; t.real.len()],
                rows,
                edges: t.edges.clone(),
                cols: t.cols.clone(),
                edge: t.edge.clone(),
                ..t
            };
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            let mut a = vec![f32::NAN; full.spectrum_len() * planes];
            let mut b = a.clone();
            let t = Transform::new((h, w), (nh, nw), &e(nh, -1.0), &e(nw, -1.0), 2.0);
            t.analyse(planes, &x, &mut a);
            full.analyse(planes, &x, &mut b);
            assert!(a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()));
            let (mut xa, mut xb) = (vec![0.5f32; x.len()], vec![0.5f32; x.len()]);
            t.synthesise(planes, &a, true, &mut xa);
            full.synthesise(planes, &b, true, &mut xb);
            assert!(xa.iter().zip(&xb).all(|(u, v)| u.to_bits() == v.to_bits()));
        }
    }

    /// The transposed analysis gives the bits of a plain analysis of the reordered planes:
    /// grids within one chunk, across chunks, and with runs cut by a chunk's end.
    #[test]
    fn transposed_order_is_the_reordered_analysis() {
        let e = |n: usize| {
            move |p: usize, f: usize| {
                let t = -2.0 * std::f64::consts::PI * ((p * f) % n) as f64 / n as f64;
                (t.cos(), t.sin())
            }
        };
        for ((h, w), (nh, nw), (rows, cols)) in [
            ((5, 5), (10, 10), (64, 64)),
            ((3, 3), (9, 9), (3, 5)),
            ((5, 5), (12, 12), (300, 2)),
            ((3, 3), (10, 10), (7, 40)),
        ] {
            let t = Transform::new((h, w), (nh, nw), &e(nh), &e(nw), 1.0);
            let len = h * w;
            let planes = rows * cols;
            let x: Vec<f32> = (0..planes * len)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            let mut reordered = vec![0.0; x.len()];
            for r in 0..rows {
                for c in 0..cols {
                    reordered[(c * rows + r) * len..][..len]
                        .copy_from_slice(&x[(r * cols + c) * len..][..len]);
                }
            }
            let mut want = vec![f32::NAN; t.spectrum_len() * planes];
            t.analyse(planes, &reordered, &mut want);
            let mut got = vec![f32::NAN; want.len()];
            t.analyse_transposed((rows, cols), &x, &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{rows}x{cols} planes of {h}x{w}");
        }
    }
}
