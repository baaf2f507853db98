//! 2-D convolution with rectangular kernels, stride, padding and groups: batched im2col + GEMM,
//! and a direct kernel when each output channel reads a single input channel (depthwise).

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, CpuError, Gradients, PutTape, Tape, Tensor};

use super::conv_depthwise;
use super::conv_direct;
use super::conv_lanes;
use super::conv_spectral;
use super::conv_winograd;
use super::gemm::{gemm, View};
use super::scratch::{give_f32, take_f32};
use super::{make_output, put_grad, release_grad, take_grad, take_input, ParamRef};
use super::{Activations, Epilogue, Kept, OpError};

/// Shape of a convolution: input channels and size, output channels, kernel, stride, padding, groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dGeom {
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    pub groups: usize,
}

impl Conv2dGeom {
    /// Output height; only meaningful once [`Conv2dGeom::check`] passed.
    pub fn out_h(&self) -> usize {
        out_len(self.in_h, self.pad_h, self.kh, self.stride_h)
    }

    /// Output width; only meaningful once [`Conv2dGeom::check`] passed.
    pub fn out_w(&self) -> usize {
        out_len(self.in_w, self.pad_w, self.kw, self.stride_w)
    }

    /// Rejects geometries that have no valid output or split channels unevenly.
    pub fn check(&self) -> Result<(), OpError> {
        for (what, v) in [
            ("in_c", self.in_c),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("out_c", self.out_c),
            ("kh", self.kh),
            ("kw", self.kw),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
            ("groups", self.groups),
        ] {
            if v == 0 {
                return Err(OpError::Zero { what });
            }
        }
        check_window(
            self.kh,
            self.kw,
            self.in_h + 2 * self.pad_h,
            self.in_w + 2 * self.pad_w,
        )?;
        for (which, channels) in [("in_c", self.in_c), ("out_c", self.out_c)] {
            if channels % self.groups != 0 {
                return Err(OpError::GroupsDoNotDivide {
                    which,
                    channels,
                    groups: self.groups,
                });
            }
        }
        Ok(())
    }

    /// `(out_c, in_c / groups * kh * kw)`: one row of weights per output channel.
    pub fn weight_shape(&self) -> (usize, usize) {
        (self.out_c, self.in_c / self.groups * self.kh * self.kw)
    }

    /// Multiply-accumulates of one forward pass for one sample (bias excluded).
    pub fn macs_per_sample(&self) -> u64 {
        let (rows, cols) = self.weight_shape();
        (rows as u64) * (cols as u64) * (self.out_h() as u64) * (self.out_w() as u64)
    }

    pub(super) fn in_len(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }

    /// Values per sample of the output, `out_c * out_h * out_w`.
    pub(super) fn out_len(&self) -> usize {
        self.out_c * self.out_h() * self.out_w()
    }

    /// Floats per sample that the kernels this geometry takes (see [`Path`]) hold beside its
    /// input and output while a batch runs: what backward keeps (the input's tile transforms,
    /// its zero-bordered copy, a patch matrix) or, on the spectral path, the larger of the
    /// input's spectra (kept) and the output's (made in the forward pass). Only meaningful once
    /// [`Conv2dGeom::check`] passed.
    pub fn scratch_per_sample(&self) -> usize {
        Kind::of(self).scratch_per_sample(self)
    }
}

pub(crate) fn out_len(len: usize, pad: usize, k: usize, stride: usize) -> usize {
    (len + 2 * pad).saturating_sub(k) / stride.max(1) + 1
}

pub(crate) fn check_window(
    kh: usize,
    kw: usize,
    padded_h: usize,
    padded_w: usize,
) -> Result<(), OpError> {
    if kh > padded_h || kw > padded_w {
        return Err(OpError::KernelTooLarge {
            kh,
            kw,
            padded_h,
            padded_w,
        });
    }
    Ok(())
}

/// For one kernel offset along an axis, the output positions whose input falls inside the
/// image (the rest read padding): `lo..hi`. The reference kernels of the tests use it.
#[cfg(test)]
pub(crate) fn valid_range(
    offset: usize,
    pad: usize,
    stride: usize,
    in_len: usize,
    out_len: usize,
) -> (usize, usize) {
    // Output o reads input o * stride + offset - pad; it must lie in 0..in_len.
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    let hi = if in_len + pad <= offset {
        0
    } else {
        (in_len + pad - offset).div_ceil(stride)
    };
    (lo.min(out_len), hi.min(out_len).max(lo.min(out_len)))
}

/// 2-D convolution of `(N, in_c*in_h*in_w)` activations into `(N, out_c*out_h*out_w)`.
///
/// `weight` is `(out_c, in_c/groups * kh * kw)` (see [`Conv2dGeom::weight_shape`]), `bias` has
/// `out_c` values.
///
/// # Panics
/// On any [`OpError`] from [`try_conv2d`]; check the geometry once with [`Conv2dGeom::check`].
pub fn conv2d<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    weight: &impl ParamRef<(usize, usize)>,
    bias: Option<&impl ParamRef<(usize,)>>,
    g: &Conv2dGeom,
) -> Activations<T> {
    match try_conv2d(x, weight, bias, g) {
        Ok(y) => y,
        Err(e) => panic!("conv2d: {e}"),
    }
}

/// [`conv2d`] with its errors returned.
pub fn try_conv2d<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    weight: &impl ParamRef<(usize, usize)>,
    bias: Option<&impl ParamRef<(usize,)>>,
    g: &Conv2dGeom,
) -> Result<Activations<T>, OpError> {
    try_conv2d_fused(x, weight, bias, g, None, true)
}

/// [`try_conv2d`] followed by an activation applied in place, and with `input_grad` false no
/// gradient for `x` (the network's input batch needs none).
pub fn try_conv2d_fused<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    weight: &impl ParamRef<(usize, usize)>,
    bias: Option<&impl ParamRef<(usize,)>>,
    g: &Conv2dGeom,
    act: Option<Epilogue>,
    input_grad: bool,
) -> Result<Activations<T>, OpError> {
    let (w, b) = (weight.values(), bias.map(|b| b.values()));
    let (weight, bias) = (weight.key(), bias.map(|b| b.key()));
    let kernels = ConvKernels::new(g, x.shape().1, *weight.shape(), bias.map(|b| b.shape().0))?;
    let n = x.shape().0;
    let input = take_input(x)?;
    // Every value is written below; the buffer is recycled once copied into the output tensor.
    let mut out = take_f32(n * g.out_len());
    let input_data = kernels.forward(
        n,
        input.data,
        &w,
        b.as_ref().map(|b| b.as_slice()),
        &mut out,
    );
    let dev = input.tensor.device().clone();
    let len = g.out_len();
    if !T::OWNS_TAPE {
        if let Some(a) = act {
            a.apply(&mut out);
        }
        give_f32(input_data);
        return Ok(make_output::<T>(&dev, out, n, len)?.put_tape(input.tape));
    }
    // Backward needs the input (not the im2col matrices: rebuilding them is cheaper than
    // keeping them) and what the activation's derivative reads (`Kept`); the tensor takes the
    // output over, and the output's gradient is kept for reuse in exchange.
    let kept = Kept::apply(act, &mut out, false);
    let y = make_output::<T>(&dev, out, n, len)?;
    let saved = input_data;
    let mut tape = input.tape;
    let x_ghost = input.tensor.ghost();
    let y_ghost = y.ghost();
    let weight = weight.clone();
    let bias = bias.cloned();
    tape.add_backward_op(move |grads| {
        let mut gy = take_grad!(grads, &y_ghost);
        kept.grad_in_place(&mut gy);
        let gx = input_grad.then_some(grad_slice(|g| {
            g.get_or_alloc_mut(&x_ghost).map(|v| &mut ***v)
        }));
        kernels.backward(grads, n, &saved, &w, &gy, &weight, bias.as_ref(), gx)?;
        give_f32(saved);
        kept.give();
        release_grad(gy);
        Ok(())
    });
    Ok(y.put_tape(tape))
}

/// A checked convolution's kernels on plain buffers, shared by [`try_conv2d_fused`] and the
/// convolution fused with batch norm.
pub(super) struct ConvKernels {
    geom: Conv2dGeom,
    path: Path,
}

/// Which kernels a geometry takes, chosen once when it is checked.
enum Path {
    /// Stride 1, one group, a kernel large against the map: small Fourier transforms as GEMMs
    /// (`conv_spectral`); backward keeps the input's spectra instead of the input.
    Spectral(std::sync::Arc<conv_spectral::Plan>),
    /// Stride 1, one group, a 3x3 kernel over a map past 12x12 where the Fourier transforms do
    /// not pay (the spectral path is tried first): Winograd's F(4x4, 3x3) tiles
    /// (`conv_winograd`); backward keeps the input's tile transforms instead of the input,
    /// 36/16 of its size when the output map is whole tiles (up to 3.4 times on 13x13).
    Winograd(conv_winograd::Layout),
    /// Stride 1, one group, a map of at most 12x12: the direct kernel with samples in the vector
    /// lanes (`conv_lanes`); backward keeps the lanes copy instead of the input.
    Lanes(conv_direct::Layout),
    /// Stride 1, one group: the direct kernel over a zero-bordered copy, one sample at a time;
    /// backward keeps the copy instead of the input.
    Flat(conv_direct::Layout),
    /// One input channel per group, but not a plain single-channel conv (GEMM does that well):
    /// the direct kernel over zero-bordered planes (`conv_depthwise`; on maps of at most 144
    /// positions with samples in the vector lanes); backward keeps the bordered copy instead of
    /// the input.
    Depthwise(conv_depthwise::Layout),
    /// Everything else: im2col + GEMM.
    Gemm,
}

/// Which [`Path`] a geometry takes, without what it builds (a spectral plan's tables).
#[derive(Clone, Copy)]
enum Kind {
    Spectral,
    Winograd,
    Lanes,
    Flat,
    Depthwise,
    Gemm,
}

impl Kind {
    /// The first path of [`Path`]'s list that applies to `g`.
    fn of(g: &Conv2dGeom) -> Kind {
        if conv_spectral::applies(g) {
            Kind::Spectral
        } else if conv_winograd::applies(g) {
            Kind::Winograd
        } else if conv_lanes::applies(g) {
            Kind::Lanes
        } else if conv_direct::applies(g) {
            Kind::Flat
        } else if conv_depthwise::applies(g) {
            Kind::Depthwise
        } else {
            Kind::Gemm
        }
    }

    /// See [`Conv2dGeom::scratch_per_sample`].
    fn scratch_per_sample(self, g: &Conv2dGeom) -> usize {
        match self {
            Kind::Spectral => conv_spectral::spectrum_len(g) * g.in_c.max(g.out_c),
            Kind::Winograd => conv_winograd::Layout::new(g).saved_per_sample(g),
            Kind::Lanes | Kind::Flat => conv_direct::Layout::new(g).padded_len(1),
            Kind::Depthwise => conv_depthwise::Layout::new(g).padded_len(g),
            Kind::Gemm => g.out_h() * g.out_w() * g.in_c * g.kh * g.kw,
        }
    }
}

impl Path {
    /// The kernels `g` takes, with what they need built.
    fn of(g: &Conv2dGeom) -> Path {
        match Kind::of(g) {
            Kind::Spectral => Path::Spectral(conv_spectral::plan(g)),
            Kind::Winograd => Path::Winograd(conv_winograd::Layout::new(g)),
            Kind::Lanes => Path::Lanes(conv_direct::Layout::new(g)),
            Kind::Flat => Path::Flat(conv_direct::Layout::new(g)),
            Kind::Depthwise => Path::Depthwise(conv_depthwise::Layout::new(g)),
            Kind::Gemm => Path::Gemm,
        }
    }
}

impl ConvKernels {
    /// Checks the geometry against the input width, the weight's shape and the bias's length.
    pub(super) fn new(
        g: &Conv2dGeom,
        got: usize,
        weight: (usize, usize),
        bias: Option<usize>,
    ) -> Result<Self, OpError> {
        g.check()?;
        if got != g.in_len() {
            return Err(OpError::InputWidth {
                got,
                expected: g.in_len(),
                what: format!("{}x{}x{}", g.in_c, g.in_h, g.in_w),
            });
        }
        let (wr, wc) = g.weight_shape();
        if weight != (wr, wc) {
            return Err(OpError::ParamLen {
                what: "conv weight",
                got: weight.0 * weight.1,
                expected: wr * wc,
            });
        }
        if let Some(b) = bias {
            if b != g.out_c {
                return Err(OpError::ParamLen {
                    what: "conv bias",
                    got: b,
                    expected: g.out_c,
                });
            }
        }

        Ok(ConvKernels {
            geom: *g,
            path: Path::of(g),
        })
    }

    /// Writes the output of a batch of `n` into `out` (every value) and returns what
    /// [`ConvKernels::backward`] reads: the input copy, its zero-bordered version, or its
    /// transforms (see [`Path`]).
    pub(super) fn forward(
        &self,
        n: usize,
        input: Vec<f32>,
        w: &[f32],
        b: Option<&[f32]>,
        out: &mut [f32],
    ) -> Vec<f32> {
        let g = &self.geom;
        match &self.path {
            Path::Spectral(p) => {
                let xs = conv_spectral::forward(g, p, n, &input, w, b, out);
                give_f32(input);
                xs
            }
            Path::Winograd(l) => {
                let xs = conv_winograd::forward(g, l, n, &input, w, b, out);
                give_f32(input);
                xs
            }
            Path::Lanes(l) => {
                let xl = conv_lanes::forward(g, l, n, &input, w, b, out);
                give_f32(input);
                xl
            }
            Path::Flat(l) => {
                let mut xpad = take_f32(l.padded_len(n));
                conv_direct::pad_input(g, l, &input, &mut xpad);
                give_f32(input);
                conv_direct::forward(g, l, n, &xpad, w, b, out);
                xpad
            }
            Path::Depthwise(l) => {
                let xpad = conv_depthwise::forward(g, l, n, &input, w, b, out);
                give_f32(input);
                xpad
            }
            Path::Gemm => {
                gemm_forward(g, &input, w, b, out);
                input
            }
        }
    }

    /// Adds the weight's, the bias's and (given where it lies) the input's gradients for the
    /// output gradient `gy`, from what [`ConvKernels::forward`] returned.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward(
        &self,
        grads: &mut Gradients<f32, Cpu>,
        n: usize,
        saved: &[f32],
        w: &[f32],
        gy: &[f32],
        weight: &Tensor<(usize, usize), f32, Cpu>,
        bias: Option<&Tensor<(usize,), f32, Cpu>>,
        gx: Option<
            impl for<'a> FnOnce(&'a mut Gradients<f32, Cpu>) -> Result<&'a mut [f32], CpuError>,
        >,
    ) -> Result<(), CpuError> {
        let g = &self.geom;
        if let Some(bias) = bias {
            let gb = grads.get_or_alloc_mut(bias)?;
            bias_grad(g, gy, gb);
        }
        // Both gradients are needed at once; the weight's is moved out while x's is borrowed.
        let mut gw = take_grad!(grads, weight);
        {
            let gx = match gx {
                Some(f) => Some(f(grads)?),
                None => None,
            };
            match &self.path {
                Path::Spectral(p) => conv_spectral::backward(g, p, n, saved, w, gy, &mut gw, gx),
                Path::Winograd(l) => conv_winograd::backward(g, l, n, saved, w, gy, &mut gw, gx),
                Path::Lanes(l) => conv_lanes::backward(g, l, n, saved, w, gy, &mut gw, gx),
                Path::Flat(l) => conv_direct::backward(g, l, n, saved, w, gy, &mut gw, gx),
                Path::Depthwise(l) => conv_depthwise::backward(g, l, n, saved, w, gy, &mut gw, gx),
                Path::Gemm => gemm_backward(g, saved, w, gy, &mut gw, gx),
            }
        }
        put_grad!(grads, weight, gw);
        Ok(())
    }
}

/// Where the input's gradient lies in a gradient store: a closure over a tensor's ghost (dfdx
/// keeps the ghost's type private, so it cannot be passed by name). This gives the closure its
/// signature, whose lifetimes the compiler does not infer.
pub(super) fn grad_slice<F>(f: F) -> F
where
    F: for<'a> FnOnce(&'a mut Gradients<f32, Cpu>) -> Result<&'a mut [f32], CpuError>,
{
    f
}

/// Whether the im2col matrix of a sample is the sample itself (1x1 kernel, stride 1, no padding).
fn col_is_input(g: &Conv2dGeom) -> bool {
    g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0
}

/// The padded plane [`im2col`] and [`col2im`] read and write: every input row and column a
/// kernel tap meets, the padding included, `(oh - 1) * stride + k` of each; `(hp, wp)`.
fn padded_plane(g: &Conv2dGeom) -> (usize, usize) {
    (
        (g.out_h() - 1) * g.stride_h + g.kh,
        (g.out_w() - 1) * g.stride_w + g.kw,
    )
}

/// How many of the input's rows and columns the padded plane holds, from the first: those past
/// the last tap's reach are never read.
/// None along both sides when none along one: a padding wider than the taps' reach (with a
/// stride past the kernel) leaves every tap on zeros.
fn interior(g: &Conv2dGeom, (hp, wp): (usize, usize)) -> (usize, usize) {
    let rows = g.in_h.min(hp.saturating_sub(g.pad_h));
    let cols = g.in_w.min(wp.saturating_sub(g.pad_w));
    if rows == 0 || cols == 0 {
        (0, 0)
    } else {
        (rows, cols)
    }
}

/// Builds the `(cin_g*kh*kw, oh*ow)` im2col matrix of one group of one sample: per channel
/// the plane is copied once into a zero-padded one, and each row of the matrix is then a
/// strided run of it per output row, without a bounds test per value (per value and with
/// the padding tested, the strided layers of a digits CNN spent a fifth of their time here).
fn im2col(g: &Conv2dGeom, x: &[f32], cin_g: usize, col: &mut [f32]) {
    let (h, w, oh, ow) = (g.in_h, g.in_w, g.out_h(), g.out_w());
    let p = oh * ow;
    let (hp, wp) = padded_plane(g);
    let (rows, cols) = interior(g, (hp, wp));
    let (sh, sw) = (g.stride_h, g.stride_w);
    let mut padded = take_f32(hp * wp);
    padded.fill(0.0);
    let mut row = 0;
    for ci in 0..cin_g {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for y in 0..rows {
            let at = (y + g.pad_h) * wp + g.pad_w;
            padded[at..at + cols].copy_from_slice(&plane[y * w..y * w + cols]);
        }
        for i in 0..g.kh {
            for j in 0..g.kw {
                let dst = &mut col[row * p..(row + 1) * p];
                for (oy, d) in dst.chunks_exact_mut(ow).enumerate() {
                    let src = &padded[(oy * sh + i) * wp + j..];
                    if sw == 1 {
                        d.copy_from_slice(&src[..ow]);
                    } else {
                        for (ox, v) in d.iter_mut().enumerate() {
                            *v = src[ox * sw];
                        }
                    }
                }
                row += 1;
            }
        }
    }
    give_f32(padded);
}

/// Adds a `(cin_g*kh*kw, oh*ow)` column gradient back onto one group of one sample, through a
/// padded plane as [`im2col`] reads: each input value gets its terms added in the same order
/// as straight onto the plane, starting from its value there, so the sums are the same.
fn col2im(g: &Conv2dGeom, col: &[f32], cin_g: usize, gx: &mut [f32]) {
    let (h, w, oh, ow) = (g.in_h, g.in_w, g.out_h(), g.out_w());
    let p = oh * ow;
    let (hp, wp) = padded_plane(g);
    let (rows, cols) = interior(g, (hp, wp));
    let (sh, sw) = (g.stride_h, g.stride_w);
    // What lands on the padding is dropped (it holds sums of the earlier channels' terms that
    // nothing reads); the interior starts from each plane in turn.
    let mut padded = take_f32(hp * wp);
    padded.fill(0.0);
    let mut row = 0;
    for ci in 0..cin_g {
        let plane = &mut gx[ci * h * w..(ci + 1) * h * w];
        for y in 0..rows {
            let at = (y + g.pad_h) * wp + g.pad_w;
            padded[at..at + cols].copy_from_slice(&plane[y * w..y * w + cols]);
        }
        for i in 0..g.kh {
            for j in 0..g.kw {
                let src = &col[row * p..(row + 1) * p];
                for (oy, s) in src.chunks_exact(ow).enumerate() {
                    let dst = &mut padded[(oy * sh + i) * wp + j..];
                    if sw == 1 {
                        for (d, v) in dst[..ow].iter_mut().zip(s) {
                            *d += v;
                        }
                    } else {
                        for (ox, v) in s.iter().enumerate() {
                            dst[ox * sw] += v;
                        }
                    }
                }
                row += 1;
            }
        }
        for y in 0..rows {
            let at = (y + g.pad_h) * wp + g.pad_w;
            plane[y * w..y * w + cols].copy_from_slice(&padded[at..at + cols]);
        }
    }
    give_f32(padded);
}

/// Fills `out` with the bias of each output channel, so GEMMs can accumulate onto it.
fn init_with_bias(g: &Conv2dGeom, bias: Option<&[f32]>, out: &mut [f32]) {
    if let Some(b) = bias {
        let p = g.out_h() * g.out_w();
        for sample in out.chunks_exact_mut(g.out_len()) {
            for (plane, &bv) in sample.chunks_exact_mut(p).zip(b) {
                plane.fill(bv);
            }
        }
    }
}

/// Whether a product whose output rows hold `p` values goes through its transpose, whose rows
/// hold `other`: where the unpacked kernels (`unpacked_gemm::exact_product`) cover the latter
/// but not the former (maps of 2x2 or 3x3 after strided layers, also 7x7 or 14x14), instead of
/// a packing GEMM that packed the whole weight for every sample. Each value is the same sum in
/// the same order either way, so the bits are the same.
fn by_transpose(p: usize, other: usize) -> bool {
    use super::unpacked_gemm::exact_width;
    exact_width(p).is_none() && exact_width(other).is_some()
}

/// GEMM forward, one sample at a time: its im2col matrix (a few hundred KiB at most for the
/// layers we build) stays in cache between being written and being multiplied, which a whole
/// batch of them would not.
fn gemm_forward(g: &Conv2dGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    init_with_bias(g, bias, out);
    let beta = if bias.is_some() { 1.0 } else { 0.0 };
    let cin_g = g.in_c / g.groups;
    let cout_g = g.out_c / g.groups;
    let p = g.out_h() * g.out_w();
    let k = cin_g * g.kh * g.kw;
    let hw = g.in_h * g.in_w;
    let pointwise = col_is_input(g);
    // yᵀ (p x cout_g) = colᵀ Wᵀ where rows of p values are too short for the kernels: Wᵀ
    // copied row-major once per call, each sample's yᵀ transposed into place.
    let flip = by_transpose(p, cout_g);
    let mut wt = take_f32(if flip { g.groups * k * cout_g } else { 0 });
    let mut yt = take_f32(if flip { p * cout_g } else { 0 });
    if flip {
        for (wg, wtg) in w
            .chunks_exact(cout_g * k)
            .zip(wt.chunks_exact_mut(k * cout_g))
        {
            super::transpose::transpose(wg, cout_g, k, wtg, false);
        }
    }
    // im2col overwrites every value, so a recycled buffer needs no zeroing.
    let mut col = take_f32(if pointwise { 0 } else { k * p });
    for (xs, ys) in x
        .chunks_exact(g.in_len())
        .zip(out.chunks_exact_mut(g.out_len()))
    {
        for grp in 0..g.groups {
            let xg = &xs[grp * cin_g * hw..(grp + 1) * cin_g * hw];
            let b = if pointwise {
                xg
            } else {
                im2col(g, xg, cin_g, &mut col);
                &col
            };
            let yg = &mut ys[grp * cout_g * p..][..cout_g * p];
            if flip {
                if beta == 1.0 {
                    super::transpose::transpose(yg, cout_g, p, &mut yt, false);
                }
                gemm(
                    p,
                    k,
                    cout_g,
                    1.0,
                    View::transposed(b, p),
                    View::rows(&wt[grp * k * cout_g..], cout_g),
                    beta,
                    &mut yt,
                    cout_g,
                );
                super::transpose::transpose(&yt, p, cout_g, yg, false);
                continue;
            }
            gemm(
                cout_g,
                k,
                p,
                1.0,
                View::rows(&w[grp * cout_g * k..], k),
                View::rows(b, p),
                beta,
                yg,
                p,
            );
        }
    }
    give_f32(col);
    give_f32(wt);
    give_f32(yt);
}

/// GEMM backward, one sample at a time: dW += dY * col^T with the sample's im2col matrix
/// rebuilt (cheaper than keeping a batch of them), and dX += col2im(W^T * dY).
fn gemm_backward(
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    gy: &[f32],
    gw: &mut [f32],
    mut gx: Option<&mut [f32]>,
) {
    let cin_g = g.in_c / g.groups;
    let cout_g = g.out_c / g.groups;
    let p = g.out_h() * g.out_w();
    let k = cin_g * g.kh * g.kw;
    let hw = g.in_h * g.in_w;
    let pointwise = col_is_input(g);
    let scratch = if pointwise { 0 } else { k * p };
    let dscratch = if gx.is_some() { scratch } else { 0 };
    // dX's columns through their transpose, (gyᵀ W)ᵀ, where rows of p are too short (see
    // `by_transpose`); W is row-major already.
    let flip = gx.is_some() && by_transpose(p, k);
    // All are overwritten (im2col, the transposes, GEMMs with beta = 0) before being read.
    let (mut col, mut dcol) = (take_f32(scratch), take_f32(dscratch));
    let mut dt = take_f32(if flip { k * p } else { 0 });
    let samples = x.chunks_exact(g.in_len()).zip(gy.chunks_exact(g.out_len()));
    for (s, (xs, gys)) in samples.enumerate() {
        for grp in 0..g.groups {
            let xg = &xs[grp * cin_g * hw..(grp + 1) * cin_g * hw];
            let gyg = View::rows(&gys[grp * cout_g * p..], p);
            let b = if pointwise {
                xg
            } else {
                im2col(g, xg, cin_g, &mut col);
                &col
            };
            // dW += gy colᵀ, colᵀ through a row-major copy where the unpacked kernels take it.
            let gwg = &mut gw[grp * cout_g * k..];
            super::gemm::gemm_by_transposed_rows((cout_g, p, k), gyg, b, 1.0, gwg, k);
            let Some(gx) = gx.as_deref_mut() else {
                continue;
            };
            let at = s * g.in_len() + grp * cin_g * hw;
            let gxg = &mut gx[at..at + cin_g * hw];
            let wg = &w[grp * cout_g * k..];
            if flip {
                // dcolᵀ (p x k) = gyᵀ W, onto gxᵀ where the input is the columns.
                let beta = if pointwise { 1.0 } else { 0.0 };
                if pointwise {
                    super::transpose::transpose(gxg, k, p, &mut dt, false);
                }
                let gyt = View::transposed(&gys[grp * cout_g * p..], p);
                gemm(p, cout_g, k, 1.0, gyt, View::rows(wg, k), beta, &mut dt, k);
                if pointwise {
                    super::transpose::transpose(&dt, p, k, gxg, false);
                } else {
                    super::transpose::transpose(&dt, p, k, &mut dcol, false);
                    col2im(g, &dcol, cin_g, gxg);
                }
                continue;
            }
            let wt = View::transposed(wg, k);
            if pointwise {
                gemm(k, cout_g, p, 1.0, wt, gyg, 1.0, gxg, p);
            } else {
                gemm(k, cout_g, p, 1.0, wt, gyg, 0.0, &mut dcol, p);
                col2im(g, &dcol, cin_g, gxg);
            }
        }
    }
    give_f32(col);
    give_f32(dcol);
    give_f32(dt);
}

fn bias_grad(g: &Conv2dGeom, gy: &[f32], gb: &mut [f32]) {
    let p = g.out_h() * g.out_w();
    for sample in gy.chunks_exact(g.out_len()) {
        for (plane, o) in sample.chunks_exact(p).zip(gb.iter_mut()) {
            *o += sum(plane);
        }
    }
}

/// Sum with eight independent partial sums, so that the compiler may vectorise it (a single
/// running f32 sum has to stay in order).
#[inline]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let a8 = a.chunks_exact(8);
    let tail: f32 = a8.remainder().iter().sum();
    for c in a8 {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::conv_direct::tests::geom;

    /// The input value tap `(i, j)` of output `(oy, ox)` reads, if inside the plane.
    fn tap(g: &Conv2dGeom, (i, j): (usize, usize), (oy, ox): (usize, usize)) -> Option<usize> {
        let iy = (oy * g.stride_h + i).checked_sub(g.pad_h)?;
        let ix = (ox * g.stride_w + j).checked_sub(g.pad_w)?;
        (iy < g.in_h && ix < g.in_w).then_some(iy * g.in_w + ix)
    }

    /// im2col reads, and col2im adds onto, what the definition says, to the bit: the column
    /// gradient's terms land on each input value in row order, starting from its value.
    #[test]
    fn columns_match_the_definition() {
        let cases = [
            // (h, w, k, stride, pad)
            (8, 8, (5, 5), (2, 2), (2, 2)),
            (8, 8, (3, 3), (2, 2), (1, 1)),
            (7, 9, (3, 5), (3, 2), (0, 2)),
            (4, 4, (5, 5), (1, 1), (2, 2)),
            (3, 5, (5, 3), (2, 1), (2, 0)),
            (6, 6, (1, 1), (2, 2), (0, 0)),
            (5, 5, (2, 2), (3, 3), (1, 1)),
            // Padding past the taps' reach on one side: every tap meets zeros there.
            (4, 1, (1, 1), (1, 5), (0, 2)),
            (1, 6, (1, 3), (4, 2), (3, 1)),
        ];
        for (h, w, (kh, kw), (sh, sw), (ph, pw)) in cases {
            let g = Conv2dGeom {
                stride_h: sh,
                stride_w: sw,
                ..geom(3, (h, w), 1, (kh, kw), (ph, pw))
            };
            g.check().unwrap();
            let (oh, ow, plane) = (g.out_h(), g.out_w(), h * w);
            let x: Vec<f32> = (0..3 * plane).map(|v| v as f32 * 0.37 - 1.0).collect();
            let mut col = vec![f32::NAN; 3 * kh * kw * oh * ow];
            im2col(&g, &x, 3, &mut col);
            let dy: Vec<f32> = (0..col.len())
                .map(|v| (v % 13) as f32 * 0.1 + 0.01)
                .collect();
            let mut gx: Vec<f32> = (0..x.len()).map(|v| (v % 7) as f32 * 0.3).collect();
            let mut want_gx = gx.clone();
            col2im(&g, &dy, 3, &mut gx);
            let mut row = 0;
            for c in 0..3 {
                for i in 0..kh {
                    for j in 0..kw {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let at = row * oh * ow + oy * ow + ox;
                                let read = tap(&g, (i, j), (oy, ox));
                                let want = read.map_or(0.0, |r| x[c * plane + r]);
                                assert_eq!(col[at].to_bits(), want.to_bits(), "{g:?} {at}");
                                if let Some(r) = read {
                                    want_gx[c * plane + r] += dy[at];
                                }
                            }
                        }
                        row += 1;
                    }
                }
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&gx), bits(&want_gx), "{g:?}");
        }
    }

    /// The im2col path through the transposed products (output rows of 4 values) gives the
    /// bits of the straight products: output with and without a bias, the input's gradient
    /// (columns and pointwise, where it adds onto what is there) and the weight's, in one group
    /// and in two.
    #[test]
    fn transposed_products_keep_the_bits() {
        if super::super::unpacked_gemm::exact_width(16).is_none() {
            return; // no vector kernels on this CPU: nothing goes through the transposes
        }
        let square = |in_c, h, k, stride, pad, out_c, groups| Conv2dGeom {
            stride_h: stride,
            stride_w: stride,
            groups,
            ..geom(in_c, (h, h), out_c, (k, k), (pad, pad))
        };
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let cases = [
            (square(16, 4, 3, 2, 1, 32, 1), true),
            (square(32, 2, 1, 1, 0, 16, 1), true),
            (square(32, 4, 3, 2, 1, 64, 2), false),
            (square(64, 2, 1, 1, 0, 32, 2), false),
        ];
        for (g, with_bias) in cases {
            g.check().unwrap();
            let (n, p) = (3, g.out_h() * g.out_w());
            let (cin_g, cout_g) = (g.in_c / g.groups, g.out_c / g.groups);
            let (k, hw) = (cin_g * g.kh * g.kw, g.in_h * g.in_w);
            assert!(p == 4 && by_transpose(p, cout_g) && by_transpose(p, k));
            let val = |len: usize, m: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| ((i * m % 23) as f32 - 11.0) / 7.0)
                    .collect()
            };
            let (x, w, b) = (val(n * g.in_len(), 5), val(g.out_c * k, 7), val(g.out_c, 3));
            let bias = with_bias.then_some(&b[..]);
            let gy = val(n * g.out_len(), 11);
            // The straight products, sample by sample and group by group.
            let mut want = vec![0.0; n * g.out_len()];
            init_with_bias(&g, bias, &mut want);
            let beta = if with_bias { 1.0 } else { 0.0 };
            let (mut want_gw, mut want_gx) = (val(g.out_c * k, 13), val(x.len(), 17));
            let (mut got_gw, mut got_gx) = (want_gw.clone(), want_gx.clone());
            let mut col = vec![0.0; k * p];
            let mut dcol = vec![0.0; k * p];
            for s in 0..n {
                for grp in 0..g.groups {
                    let xs = &x[s * g.in_len() + grp * cin_g * hw..][..cin_g * hw];
                    let gys = View::rows(&gy[s * g.out_len() + grp * cout_g * p..], p);
                    let cols: &[f32] = if col_is_input(&g) {
                        xs
                    } else {
                        im2col(&g, xs, cin_g, &mut col);
                        &col
                    };
                    let wg = &w[grp * cout_g * k..][..cout_g * k];
                    let ys = &mut want[s * g.out_len() + grp * cout_g * p..][..cout_g * p];
                    let (wr, cr) = (View::rows(wg, k), View::rows(cols, p));
                    gemm(cout_g, k, p, 1.0, wr, cr, beta, ys, p);
                    let (colt, gwg) = (View::transposed(cols, p), &mut want_gw[grp * cout_g * k..]);
                    gemm(cout_g, p, k, 1.0, gys, colt, 1.0, gwg, k);
                    let gxs = &mut want_gx[s * g.in_len() + grp * cin_g * hw..][..cin_g * hw];
                    let wt = View::transposed(wg, k);
                    if col_is_input(&g) {
                        gemm(k, cout_g, p, 1.0, wt, gys, 1.0, gxs, p);
                    } else {
                        gemm(k, cout_g, p, 1.0, wt, gys, 0.0, &mut dcol, p);
                        col2im(&g, &dcol, cin_g, gxs);
                    }
                }
            }
            let mut got = vec![f32::NAN; want.len()];
            gemm_forward(&g, &x, &w, bias, &mut got);
            assert_eq!(bits(&got), bits(&want), "{g:?} output");
            gemm_backward(&g, &x, &w, &gy, &mut got_gw, Some(&mut got_gx));
            assert_eq!(bits(&got_gw), bits(&want_gw), "{g:?} weight gradient");
            assert_eq!(bits(&got_gx), bits(&want_gx), "{g:?} input gradient");
        }
    }
}
