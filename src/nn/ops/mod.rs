//! Differentiable ops with our own CPU kernels, recorded on dfdx tapes (conv, pooling, batch norm).
//!
//! Every activation is a runtime-shaped `(N, C*H*W)` tensor: one row per sample, NCHW flattened.
//! Each op comes as `try_op` (typed [`OpError`]) and `op` (panics with that error), the way dfdx
//! pairs its own ops. Parameters come as [`ParamRef`]s: their values (read without a copy where a
//! [`Param`] holds them) and a tape-less tensor under whose id the backward pass accumulates the
//! gradient in dfdx's `Gradients`.

mod act;
mod add;
mod batch_norm;
mod conv;
mod conv_bn;
mod conv_depthwise;
mod conv_direct;
mod conv_lanes;
mod conv_spectral;
mod conv_winograd;
mod dft2;
mod error;
mod gemm;
mod linear;
mod math;
mod par;
mod param;
mod pool;
mod scratch;
use crate::simd;
mod transpose;
mod unpacked_gemm;

pub use act::try_activation;
pub use add::try_add;
pub use batch_norm::{batch_norm, try_batch_norm, try_batch_norm_act, BatchNormState};
pub use conv::{conv2d, try_conv2d, try_conv2d_fused, Conv2dGeom};
pub use conv_bn::{try_conv_bn_act, try_conv_bn_act_pool, Pooling};
pub use error::OpError;
pub use linear::{linear, try_linear, Epilogue};
use linear::{Kept, LEAKY_SLOPE};
pub use param::{Param, ParamRef};
pub use pool::{global_avg_pool, pool2d, try_global_avg_pool, try_pool2d, Pool2dGeom, PoolKind};

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, SplitTape, Tape, Tensor, TensorFromVec, ZerosTensor};
use dfdx::tensor_ops::ReshapeTo;

/// A batch of activations: `(N, features)`, row-major, one sample per row.
pub type Activations<T> = Tensor<(usize, usize), f32, Cpu, T>;

/// A tape-less input split from its tape, with a row-major copy of its values.
pub(crate) struct Input<T> {
    pub tensor: Tensor<(usize, usize), f32, Cpu>,
    pub tape: T,
    pub data: Vec<f32>,
}

/// Splits `x` from its tape and copies its values out.
///
/// dfdx keeps no public borrow of a tensor's buffer, so one memcpy is the cheapest read; making
/// the tensor contiguous first (free when it already is) makes that physical copy the logical one.
pub(crate) fn take_input<T: Tape<f32, Cpu>>(x: Activations<T>) -> Result<Input<T>, OpError> {
    let x = x.try_contiguous().map_err(OpError::Device)?;
    let (rows, cols) = *x.shape();
    let (tensor, tape) = x.split_tape();
    // Every value is overwritten by the copy; the buffer goes back to `scratch` when done.
    let mut data = scratch::take_f32(rows * cols);
    tensor.copy_into(&mut data);
    Ok(Input { tensor, tape, data })
}

/// A new tape-less `(rows, cols)` tensor on `dev` holding a copy of `data`.
///
/// The tensor comes from dfdx's allocator rather than wrapping a `Vec` of ours. With dfdx's cache
/// enabled (`Cache::enable_cache`) every dropped tensor's buffer goes into the cache, and only the
/// device's own allocations take buffers out again: a wrapped `Vec` would come from the system
/// allocator each time (fresh pages, page faults) and then stay in the cache for good (the input
/// batch alone once leaked 100 kB a step).
pub fn try_device_tensor(
    dev: &Cpu,
    data: &[f32],
    rows: usize,
    cols: usize,
) -> Result<Tensor<(usize, usize), f32, Cpu>, OpError> {
    let mut t = dev.try_zeros_like(&(rows, cols)).map_err(OpError::Device)?;
    t.copy_from(data);
    Ok(t)
}

/// [`try_device_tensor`], panicking with its error.
pub fn device_tensor(
    dev: &Cpu,
    data: &[f32],
    rows: usize,
    cols: usize,
) -> Tensor<(usize, usize), f32, Cpu> {
    match try_device_tensor(dev, data, rows, cols) {
        Ok(t) => t,
        Err(e) => panic!("device_tensor: {e}"),
    }
}

/// An op's output: a new tape-less `(rows, cols)` tensor holding `data`.
///
/// With a tape (`T::OWNS_TAPE`) the tensor takes `data` over, with neither a copy nor a zeroed
/// buffer from dfdx. The buffer goes into dfdx's cache when the tensor is dropped; what balances
/// that (see [`try_device_tensor`] for why it must be balanced) is the output's gradient, a buffer
/// of the same length that dfdx allocates from its cache and that the op's backward pass keeps
/// for reuse instead of putting it back ([`release_grad`]). Without a tape
/// there is no backward pass to do so, and `data` is copied and recycled.
pub(crate) fn make_output<T: Tape<f32, Cpu>>(
    dev: &Cpu,
    data: Vec<f32>,
    rows: usize,
    cols: usize,
) -> Result<Tensor<(usize, usize), f32, Cpu>, OpError> {
    if T::OWNS_TAPE {
        // A buffer longer than its data (the pool serves shorter requests from longer ones)
        // would be cut to length in dfdx's cache, and its long self allocated again for the
        // request it was kept for (resident memory grew every epoch): it goes back to the pool
        // at its full length, so that requests of this length stop picking it, and the tensor
        // takes an exact copy.
        let data = if data.capacity() > data.len() {
            let exact = scratch::exact_copy(&data);
            let mut long = data;
            long.resize(long.capacity(), 0.0);
            scratch::give_f32(long);
            exact
        } else {
            data
        };
        return dev
            .try_tensor_from_vec(data, (rows, cols))
            .map_err(OpError::Device);
    }
    let t = try_device_tensor(dev, &data, rows, cols)?;
    scratch::give_f32(data);
    Ok(t)
}

/// Copies a parameter's values out (parameters are small; a copy keeps the closures simple).
pub(crate) fn param_values<S: dfdx::shapes::Shape>(p: &Tensor<S, f32, Cpu>) -> Vec<f32> {
    let mut v = vec![0.0; p.shape().num_elements()];
    p.copy_into(&mut v);
    v
}

/// Moves a gradient out of `grads` (leaving it empty) so that another gradient can be borrowed
/// mutably at the same time; dfdx lends one at a time. Put it back with [`put_grad!`].
macro_rules! take_grad {
    ($grads:expr, $t:expr) => {
        std::mem::take(&mut **$grads.get_or_alloc_mut($t)?)
    };
}

/// Returns a gradient moved out with [`take_grad!`], so that later readers still find it.
macro_rules! put_grad {
    ($grads:expr, $t:expr, $g:expr) => {
        **$grads.get_or_alloc_mut($t)? = $g
    };
}

/// Ends a backward pass with the output's gradient `gy` (moved out with [`take_grad!`]): the
/// output tensor took the op's buffer over ([`make_output`]), so this buffer of the same length
/// is kept for reuse in exchange instead of going back to dfdx.
pub(crate) fn release_grad(gy: Vec<f32>) {
    scratch::give_f32(gy)
}

pub(crate) use {put_grad, take_grad};
