//! A fully connected layer `act(x W + b)` as one op: one GEMM whose output starts as the bias,
//! the activation applied in place, and a backward pass that skips the input's gradient when
//! nothing needs it (the network's input batch).

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, Tape};

use super::gemm::{gemm, View};
use super::math;
use super::scratch::{give_f32, give_u8, take_f32, take_u8};
use super::simd::simd_fn;
use super::OpError;
use super::{make_output, put_grad, release_grad, take_grad, take_input};
use super::{Activations, ParamRef};

/// An activation fused into the op: each one's derivative is a function of its output, so the
/// pre-activation values need not be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    Relu,
    /// Slope 0.01 below zero, as dfdx's `leakyrelu(x, 0.01)`.
    LeakyRelu,
    Sigmoid,
    Tanh,
}

/// Leaky ReLU's slope below zero.
pub(crate) const LEAKY_SLOPE: f32 = 0.01;

impl Epilogue {
    pub(crate) fn apply(self, y: &mut [f32]) {
        apply(self, y)
    }

    /// `gz = gy * act'(z)`, written from the output `y = act(z)`: what [`Kept::grad_in_place`]
    /// must give, bit for bit.
    #[cfg(test)]
    pub(crate) fn backward(self, y: &[f32], gy: &[f32], gz: &mut [f32]) {
        backward(self, y, gy, gz)
    }
}

/// `act` over `y` in place: the exponential ones with AVX-512 where the CPU has it (1.3-1.5x
/// on values in cache), the others with AVX2 (a stream, where AVX-512 gained nothing).
fn apply(act: Epilogue, y: &mut [f32]) {
    match act {
        Epilogue::Relu | Epilogue::LeakyRelu => apply_ramp(act, y),
        Epilogue::Sigmoid | Epilogue::Tanh => apply_exp(act, y),
    }
}

simd_fn! {
fn apply_ramp(act: Epilogue, y: &mut [f32]) {
    if act == Epilogue::Relu {
        y.iter_mut().for_each(|v| *v = v.max(0.0))
    } else {
        y.iter_mut().for_each(|v| {
            if *v <= 0.0 {
                *v *= LEAKY_SLOPE
            }
        })
    }
}
}

simd_fn! { avx512
fn apply_exp(act: Epilogue, y: &mut [f32]) {
    if act == Epilogue::Sigmoid {
        y.iter_mut().for_each(|v| *v = math::sigmoid(*v))
    } else {
        y.iter_mut().for_each(|v| *v = math::tanh(*v))
    }
}
}

#[cfg(test)]
simd_fn! {
fn backward(act: Epilogue, y: &[f32], gy: &[f32], gz: &mut [f32]) {
    let it = gz.iter_mut().zip(y.iter().zip(gy));
    match act {
        Epilogue::Relu => it.for_each(|(g, (&y, &d))| *g = if y > 0.0 { d } else { 0.0 }),
        Epilogue::LeakyRelu => {
            it.for_each(|(g, (&y, &d))| *g = if y > 0.0 { d } else { d * LEAKY_SLOPE })
        }
        Epilogue::Sigmoid => it.for_each(|(g, (&y, &d))| *g = d * y * (1.0 - y)),
        Epilogue::Tanh => it.for_each(|(g, (&y, &d))| *g = d * (1.0 - y * y)),
    }
}
}

simd_fn! {
/// `positive[i] = 1` where `y[i] > 0`, else 0: all a ramp's derivative needs of its output.
fn positives(y: &[f32], positive: &mut [u8]) {
    for (p, &v) in positive.iter_mut().zip(y) {
        *p = u8::from(v > 0.0);
    }
}
}

simd_fn! {
/// A ramp's [`Epilogue::backward`] in place, from which outputs were positive: the same values
/// as from the outputs themselves (`y > 0` is what [`backward`] tests).
fn ramp_backward(act: Epilogue, positive: &[u8], g: &mut [f32]) {
    debug_assert!(matches!(act, Epilogue::Relu | Epilogue::LeakyRelu));
    for (g, &p) in g.iter_mut().zip(positive) {
        if p == 0 {
            *g = if act == Epilogue::Relu { 0.0 } else { *g * LEAKY_SLOPE };
        }
    }
}
}

simd_fn! { avx512
/// `act` over `y` in place for sigmoid and tanh, writing what their derivatives read into
/// `kept`: the output for sigmoid, the slope `1 - y²` for tanh. One pass where applying the
/// activation and then copying the output took two (and the copy a zeroed tensor).
fn apply_keeping(act: Epilogue, y: &mut [f32], kept: &mut [f32]) {
    if act == Epilogue::Sigmoid {
        for (v, k) in y.iter_mut().zip(kept.iter_mut()) {
            *v = math::sigmoid(*v);
            *k = *v;
        }
    } else {
        for (v, k) in y.iter_mut().zip(kept.iter_mut()) {
            *v = math::tanh(*v);
            *k = 1.0 - *v * *v;
        }
    }
}
}

simd_fn! {
/// What [`apply_keeping`] keeps, from outputs already computed.
fn keep_from_output(act: Epilogue, y: &[f32], kept: &mut [f32]) {
    if act == Epilogue::Sigmoid {
        kept.copy_from_slice(y)
    } else {
        kept.iter_mut().zip(y).for_each(|(k, &v)| *k = 1.0 - v * v)
    }
}
}

simd_fn! {
/// `g = g * act'(z)` in place for sigmoid and tanh, from what [`apply_keeping`] kept: the same
/// bits as [`backward`] from the output.
fn kept_backward(act: Epilogue, kept: &[f32], g: &mut [f32]) {
    if act == Epilogue::Sigmoid {
        g.iter_mut().zip(kept).for_each(|(g, &y)| *g = *g * y * (1.0 - y))
    } else {
        g.iter_mut().zip(kept).for_each(|(g, &s)| *g *= s)
    }
}
}

/// What an op keeps of its fused activation for the backward pass, so that the output tensor
/// can take the output buffer over (no copy): which outputs were positive for the ramps, the
/// output for sigmoid, the slope `1 - y²` for tanh.
pub(crate) enum Kept {
    /// No activation.
    Nothing,
    Positive(Epilogue, Vec<u8>),
    Values(Epilogue, Vec<f32>),
}

impl Kept {
    /// Applies `act` to `y` in place (unless `applied`: `y` holds the outputs already) and keeps
    /// what its derivative needs.
    pub(crate) fn apply(act: Option<Epilogue>, y: &mut [f32], applied: bool) -> Kept {
        match act {
            None => Kept::Nothing,
            Some(a @ (Epilogue::Relu | Epilogue::LeakyRelu)) => {
                if !applied {
                    apply_ramp(a, y);
                }
                let mut positive = take_u8(y.len());
                positives(y, &mut positive);
                Kept::Positive(a, positive)
            }
            Some(a @ (Epilogue::Sigmoid | Epilogue::Tanh)) => {
                let mut kept = take_f32(y.len());
                if applied {
                    keep_from_output(a, y, &mut kept);
                } else {
                    apply_keeping(a, y, &mut kept);
                }
                Kept::Values(a, kept)
            }
        }
    }

    /// The output's gradient `g` turned in place into the gradient before the activation: the
    /// same bits as [`Epilogue::backward`] from the output.
    pub(crate) fn grad_in_place(&self, g: &mut [f32]) {
        match self {
            Kept::Nothing => {}
            Kept::Positive(a, positive) => ramp_backward(*a, positive, g),
            Kept::Values(a, kept) => kept_backward(*a, kept, g),
        }
    }

    /// Gives the buffers back for reuse.
    pub(crate) fn give(self) {
        match self {
            Kept::Nothing => {}
            Kept::Positive(_, p) => give_u8(p),
            Kept::Values(_, v) => give_f32(v),
        }
    }
}

/// `act(x W + b)` for `x` of shape `(n, in)`, `W` of `(in, out)` and `b` of `(out,)`.
///
/// With `input_grad` false the backward pass leaves `x`'s gradient alone: for the network's
/// input batch it would be a whole extra GEMM thrown away.
pub fn try_linear<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    weight: &impl ParamRef<(usize, usize)>,
    bias: &impl ParamRef<(usize,)>,
    act: Option<Epilogue>,
    input_grad: bool,
) -> Result<Activations<T>, OpError> {
    let (weight_values, bias_values) = (weight.values(), bias.values());
    let (weight, bias) = (weight.key(), bias.key());
    let (n, k) = *x.shape();
    let (wr, m) = *weight.shape();
    if wr != k {
        return Err(OpError::InputWidth {
            got: k,
            expected: wr,
            what: format!("a linear layer of {wr} inputs"),
        });
    }
    if bias.shape().0 != m {
        return Err(OpError::ParamLen {
            what: "linear bias",
            got: bias.shape().0,
            expected: m,
        });
    }
    if weight_values.len() != wr * m || bias_values.len() != m {
        return Err(OpError::ParamLen {
            what: "linear weight or bias values",
            got: weight_values.len() + bias_values.len(),
            expected: wr * m + m,
        });
    }
    let input = take_input(x)?;
    let (w, b) = (weight_values, bias_values);
    // Every value is written: each row starts as the bias, then the GEMM adds x W.
    let mut out = take_f32(n * m);
    for row in out.chunks_exact_mut(m.max(1)) {
        row.copy_from_slice(&b);
    }
    gemm(
        n,
        k,
        m,
        1.0,
        View::rows(&input.data, k),
        View::rows(&w, m),
        1.0,
        &mut out,
        m,
    );
    let dev = input.tensor.device().clone();
    if !T::OWNS_TAPE {
        if let Some(a) = act {
            a.apply(&mut out);
        }
        give_f32(input.data);
        return Ok(make_output::<T>(&dev, out, n, m)?.put_tape(input.tape));
    }
    // The weights are only read again for the input's gradient.
    let w = input_grad.then_some(w);
    // Backward needs the input (for W's gradient) and what the activation's derivative is a
    // function of (`Kept`); the tensor takes the output over, and the output's gradient is
    // kept for reuse in exchange.
    let saved_x = input.data;
    let kept = Kept::apply(act, &mut out, false);
    let y = make_output::<T>(&dev, out, n, m)?;
    let mut tape = input.tape;
    let x_ghost = input.tensor.ghost();
    let y_ghost = y.ghost();
    let weight = weight.clone();
    let bias = bias.clone();
    tape.add_backward_op(move |grads| {
        let mut gy = take_grad!(grads, &y_ghost);
        kept.grad_in_place(&mut gy);
        let gz: &[f32] = &gy;
        {
            let gb = grads.get_or_alloc_mut(&bias)?;
            for row in gz.chunks_exact(m.max(1)) {
                gb.iter_mut().zip(row).for_each(|(g, v)| *g += v);
            }
        }
        let mut gw = take_grad!(grads, &weight);
        gemm(
            k,
            n,
            m,
            1.0,
            View::transposed(&saved_x, k),
            View::rows(gz, m),
            1.0,
            &mut gw,
            m,
        );
        put_grad!(grads, &weight, gw);
        if let Some(w) = &w {
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            input_grad_product((n, k, m), gz, w, gx);
        }
        give_f32(saved_x);
        kept.give();
        release_grad(gy);
        Ok(())
    });
    Ok(y.put_tape(tape))
}

/// The input's gradient of a linear layer: `gx += gz Wᵀ` for `gz` of shape `(n, m)` and `W` of
/// `(k, m)`, `gx` being `(n, k)`; `Wᵀ` goes through a row-major copy where the unpacked kernels
/// take it (`gemm_by_transposed_rows`).
fn input_grad_product((n, k, m): (usize, usize, usize), gz: &[f32], w: &[f32], gx: &mut [f32]) {
    super::gemm::gemm_by_transposed_rows((n, m, k), View::rows(gz, m), w, 1.0, gx, k);
}

/// [`try_linear`], panicking with its error.
pub fn linear<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    weight: &impl ParamRef<(usize, usize)>,
    bias: &impl ParamRef<(usize,)>,
    act: Option<Epilogue>,
    input_grad: bool,
) -> Activations<T> {
    match try_linear(x, weight, bias, act, input_grad) {
        Ok(y) => y,
        Err(e) => panic!("linear: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The input's gradient through the transposed copy gives the packing GEMM's bits on the
    /// strided weights, onto a gradient that already holds values, for the layer shapes of the
    /// MLPs (a sum of 10, 256 and 300 products: `matrixmultiply` sums in chunks of 256).
    #[test]
    fn input_grads_through_the_copy_give_the_packing_gemms_bits() {
        for (n, k, m) in [(128, 256, 10), (128, 256, 256), (33, 24, 300), (7, 16, 5)] {
            let val = |i: usize, s: f32| ((i as f32 * s).sin() * 3.0).powi(3);
            let gz: Vec<f32> = (0..n * m).map(|i| val(i, 0.71)).collect();
            let w: Vec<f32> = (0..k * m).map(|i| val(i, 1.37)).collect();
            let start: Vec<f32> = (0..n * k).map(|i| val(i, 0.19)).collect();
            let mut got = start.clone();
            input_grad_product((n, k, m), &gz, &w, &mut got);
            let mut want = start;
            // SAFETY: `gz` is `n x m`, `w` `k x m` read transposed and `want` `n x k`, all
            // row-major and exactly that long.
            unsafe {
                matrixmultiply::sgemm(
                    n,
                    m,
                    k,
                    1.0,
                    gz.as_ptr(),
                    m as isize,
                    1,
                    w.as_ptr(),
                    1,
                    m as isize,
                    1.0,
                    want.as_mut_ptr(),
                    k as isize,
                    1,
                );
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{n} x {k} x {m}");
            // The copy is taken where the unpacked kernels run (the last shape stays packed).
            #[cfg(target_arch = "x86_64")]
            if crate::simd::has_avx2_fma() {
                let pays = super::super::gemm::transposed_copy_pays(n, k);
                assert_eq!(pays, n >= 16, "{n} x {k} x {m}");
            }
        }
    }

    /// Zeros of both signs, NaN, infinities, subnormals and plain values.
    const SPECIALS: [f32; 9] = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 4.0,
        -f32::MIN_POSITIVE / 4.0,
        1.5,
        -2.25,
    ];

    /// Every activation applied with what it keeps (`Kept::apply`, fused or from outputs
    /// already computed) gives the bits of `apply` and of the derivative from the output, on
    /// zeros of both signs, NaN, infinities, subnormals and values where tanh switches formula.
    #[test]
    fn kept_gives_the_bits_of_the_derivative_from_the_output() {
        let specials: Vec<f32> = SPECIALS
            .iter()
            .copied()
            .chain([0.624, 0.625, -0.7, 9.0, -30.0])
            .collect();
        let k = specials.len();
        let z: Vec<f32> = (0..37 * k)
            .map(|i| specials[i % k] + (i / k) as f32 * 0.0625 * specials[(i / k) % k])
            .collect();
        let gy: Vec<f32> = (0..z.len()).map(|i| specials[(i * 7) % k]).collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for act in [
            Epilogue::Relu,
            Epilogue::LeakyRelu,
            Epilogue::Sigmoid,
            Epilogue::Tanh,
        ] {
            let mut y = z.clone();
            act.apply(&mut y);
            let mut want = vec![7.0; y.len()];
            act.backward(&y, &gy, &mut want);
            for applied in [false, true] {
                let mut out = if applied { y.clone() } else { z.clone() };
                let kept = Kept::apply(Some(act), &mut out, applied);
                assert_eq!(bits(&out), bits(&y), "{act:?} output, applied {applied}");
                let mut got = gy.clone();
                kept.grad_in_place(&mut got);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{act:?} gradient, applied {applied}"
                );
                kept.give();
            }
        }
    }

    /// The ramps' derivative from which outputs were positive gives the bits of their derivative
    /// from the outputs themselves, zeros of both signs, NaN, infinities and subnormals included.
    #[test]
    fn ramp_bytes_give_the_bits_of_the_derivative_from_the_outputs() {
        let specials = SPECIALS;
        let y: Vec<f32> = specials
            .iter()
            .flat_map(|&a| specials.iter().map(move |_| a))
            .collect();
        let gy: Vec<f32> = specials
            .iter()
            .flat_map(|_| specials.iter().copied())
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for act in [Epilogue::Relu, Epilogue::LeakyRelu] {
            let mut want = vec![7.0; y.len()];
            act.backward(&y, &gy, &mut want);
            let mut positive = vec![9; y.len()];
            positives(&y, &mut positive);
            let mut got = gy.clone();
            ramp_backward(act, &positive, &mut got);
            assert_eq!(bits(&got), bits(&want), "{act:?}");
        }
    }
}
