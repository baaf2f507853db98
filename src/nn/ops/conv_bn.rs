//! A convolution, a batch norm and an activation as one op: the convolution's output and its
//! gradient never become tensors (no copy in or out of dfdx, no zeroed gradient buffer).

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, Tape};

use super::batch_norm::{
    check_sizes, grad_sums, input_grad_over_xhat, normalize_batch, statistics, BatchNormState, Gate,
};
use super::conv::{grad_slice, ConvKernels};
use super::pool::{channel_means, max_forward, means_backward, Winners};
use super::scratch::{give_f32, take_f32};
use super::{make_output, release_grad, take_grad, take_input, ParamRef};
use super::{Activations, Conv2dGeom, Epilogue, OpError, Pool2dGeom};

/// `act(batch_norm(conv2d(x)))`, the same values and gradients as [`super::try_conv2d_fused`]
/// followed by [`super::try_batch_norm_act`] over the convolution's `out_c` channels.
#[allow(clippy::too_many_arguments)]
pub fn try_conv_bn_act<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    weight: &impl ParamRef<(usize, usize)>,
    bias: Option<&impl ParamRef<(usize,)>>,
    g: &Conv2dGeom,
    gamma: &impl ParamRef<(usize,)>,
    beta: &impl ParamRef<(usize,)>,
    state: &mut BatchNormState,
    training: bool,
    act: Option<Epilogue>,
    input_grad: bool,
) -> Result<Activations<T>, OpError> {
    let bn = (gamma, beta, state, training, act);
    try_conv_bn_act_pool(x, weight, bias, g, bn, None, input_grad)
}

/// A batch norm (`gamma`, `beta`, its state, training or not) and the activation after it.
type BnAct<'a, G, B> = (&'a G, &'a B, &'a mut BatchNormState, bool, Option<Epilogue>);

/// A pooling that [`try_conv_bn_act_pool`] applies to its output.
#[derive(Clone, Copy, Debug)]
pub enum Pooling<'a> {
    /// Max pooling over these windows ([`super::try_pool2d`] with [`super::PoolKind::Max`]).
    Max(&'a Pool2dGeom),
    /// The mean of each channel ([`super::try_global_avg_pool`]).
    GlobalAvg,
}

/// What a pooled output's backward pass needs: the windows and their winners in the un-pooled
/// output, or nothing for means.
enum Pooled {
    Max(Pool2dGeom, Winners),
    Avg,
}

/// [`try_conv_bn_act`] followed by `pool` (its input the op's output): the same values and
/// gradients as the pooling op after it, without the un-pooled output as a tensor (no copy into
/// dfdx and back out for the pooling, no zeroed gradient buffer).
#[allow(clippy::too_many_arguments)]
pub fn try_conv_bn_act_pool<T: Tape<f32, Cpu>, G: ParamRef<(usize,)>, B: ParamRef<(usize,)>>(
    x: Activations<T>,
    weight: &impl ParamRef<(usize, usize)>,
    bias: Option<&impl ParamRef<(usize,)>>,
    g: &Conv2dGeom,
    (gamma, beta, state, training, act): BnAct<'_, G, B>,
    pool: Option<Pooling<'_>>,
    input_grad: bool,
) -> Result<Activations<T>, OpError> {
    let (w, b) = (weight.values(), bias.map(|b| b.values()));
    let (gv, bv) = (gamma.values().to_vec(), beta.values().to_vec());
    let (weight, bias) = (weight.key(), bias.map(|b| b.key()));
    let (gamma, beta) = (gamma.key(), beta.key());
    let kernels = ConvKernels::new(g, x.shape().1, *weight.shape(), bias.map(|b| b.shape().0))?;
    let (c, hw) = (g.out_c, g.out_h() * g.out_w());
    check_sizes(c * hw, gamma.shape().0, beta.shape().0, c, hw, state)?;
    let n = x.shape().0;
    if training && n * hw < 2 {
        return Err(OpError::TooFewValuesPerChannel { got: n * hw });
    }
    if let Some(Pooling::Max(p)) = pool {
        p.check()?;
        if (p.c, p.h, p.w) != (c, g.out_h(), g.out_w()) {
            return Err(OpError::InputWidth {
                got: c * hw,
                expected: p.c * p.h * p.w,
                what: format!("a {}x{}x{} max pooling", p.c, p.h, p.w),
            });
        }
    }
    let input = take_input(x)?;
    // The convolution's output, normalised in place into x_hat; both buffers are written whole.
    let mut x_hat = take_f32(n * c * hw);
    let saved = kernels.forward(
        n,
        input.data,
        &w,
        b.as_ref().map(|b| b.as_slice()),
        &mut x_hat,
    );
    let (mean, inv_std) = statistics(&x_hat, c, hw, state, training);
    let mut out = take_f32(n * c * hw);
    normalize_batch(&mut x_hat, &mut out, c, hw, &mean, &inv_std, &gv, &bv, act);
    let dev = input.tensor.device().clone();
    // Pooled, the output is the windows' maxima (backward routes their gradients back through
    // the winners, places in the windows of `out`) or the channels' means.
    let (pooled, winners) = match pool {
        Some(Pooling::Max(p)) => {
            let mut pooled = take_f32(n * p.out_len());
            let winners = max_forward(p, &out, &mut pooled, T::OWNS_TAPE);
            (Some((pooled, p.out_len())), Some(Pooled::Max(*p, winners)))
        }
        Some(Pooling::GlobalAvg) => {
            let mut means = take_f32(n * c);
            channel_means(&out, hw, &mut means);
            (Some((means, c)), Some(Pooled::Avg))
        }
        None => (None, None),
    };
    if !T::OWNS_TAPE {
        let y = match pooled {
            Some((p, len)) => {
                give_f32(out);
                make_output::<T>(&dev, p, n, len)?
            }
            None => make_output::<T>(&dev, out, n, c * hw)?,
        };
        give_f32(saved);
        give_f32(x_hat);
        return Ok(y.put_tape(input.tape));
    }
    let gate = Gate::new(act, gv, bv);
    // Sigmoid's and tanh's derivatives read what `Gate::keep` keeps of the output; the tensor
    // takes the output over (or, pooled, the output goes back and the tensor takes the pooled
    // values).
    let kept = gate.keep(&mut out);
    let y = match pooled {
        Some((p, len)) => {
            give_f32(out);
            make_output::<T>(&dev, p, n, len)?
        }
        None => make_output::<T>(&dev, out, n, c * hw)?,
    };
    let mut tape = input.tape;
    let x_ghost = input.tensor.ghost();
    let y_ghost = y.ghost();
    let (weight, bias) = (weight.clone(), bias.cloned());
    let (gamma, beta) = (gamma.clone(), beta.clone());
    tape.add_backward_op(move |grads| {
        let mut gy_out = take_grad!(grads, &y_ghost);
        // The pooling's backward, onto zeros as into a fresh gradient: each maximum's gradient
        // to its winner, each mean's spread over its plane.
        let mut gy_unpooled = winners.as_ref().map(|pooled| {
            let mut g = take_f32(n * c * hw);
            match pooled {
                Pooled::Max(p, w) => w.backward_fresh(p, &gy_out, &mut g),
                Pooled::Avg => {
                    g.fill(0.0);
                    means_backward(&gy_out, hw, &mut g)
                }
            }
            g
        });
        let gy: &mut [f32] = gy_unpooled.as_deref_mut().unwrap_or(&mut gy_out);
        kept.grad_in_place(gy);
        let gy: &[f32] = gy;
        let (sum_dy, sum_dy_xhat) = grad_sums(gy, &x_hat, c, hw, &gate);
        for (p, sums) in [(&gamma, &sum_dy_xhat), (&beta, &sum_dy)] {
            for (o, s) in grads.get_or_alloc_mut(p)?.iter_mut().zip(sums) {
                *o += s;
            }
        }
        // From here on x_hat holds the gradient of the convolution's output.
        let mut x_hat = x_hat;
        let (sd, sdx) = (&sum_dy, &sum_dy_xhat);
        input_grad_over_xhat(&mut x_hat, gy, c, hw, &gate, &inv_std, sd, sdx, training);
        let gx = input_grad.then_some(grad_slice(|g| {
            g.get_or_alloc_mut(&x_ghost).map(|v| &mut ***v)
        }));
        kernels.backward(grads, n, &saved, &w, &x_hat, &weight, bias.as_ref(), gx)?;
        release_grad(gy_out);
        for v in [saved, x_hat] {
            give_f32(v);
        }
        if let Some(b) = gy_unpooled {
            give_f32(b);
        }
        kept.give();
        if let Some(Pooled::Max(_, w)) = winners {
            w.give();
        }
        Ok(())
    });
    Ok(y.put_tape(tape))
}
