//! Batch normalisation over channels of `(N, C*HW)` activations (BatchNorm2d, or BatchNorm1d with hw = 1).

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, Tape, Tensor};

use super::scratch::{give_f32, take_f32};
use super::simd::simd_fn;
use super::{make_output, release_grad, take_grad, take_input, ParamRef};
use super::{Activations, Epilogue, Kept, OpError, LEAKY_SLOPE};
use rayon::prelude::*;

/// Running statistics and hyper-parameters of one batch-norm layer (PyTorch's defaults in `new`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormState {
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    /// Weight of the newest batch in the running averages.
    pub momentum: f32,
    pub eps: f32,
}

impl BatchNormState {
    /// Fresh statistics for `c` channels: mean 0, variance 1, momentum 0.1, eps 1e-5.
    pub fn new(c: usize) -> Self {
        Self {
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

/// Normalises each channel, then scales by `gamma` and shifts by `beta`.
///
/// Training uses the batch's statistics over all `N * hw` values of a channel (biased variance)
/// and folds them into the running statistics (unbiased variance), as PyTorch does; evaluation
/// uses the running statistics.
///
/// # Panics
/// On any [`OpError`] from [`try_batch_norm`].
pub fn batch_norm<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    gamma: &Tensor<(usize,), f32, Cpu>,
    beta: &Tensor<(usize,), f32, Cpu>,
    c: usize,
    hw: usize,
    state: &mut BatchNormState,
    training: bool,
) -> Activations<T> {
    match try_batch_norm_act(x, gamma, beta, c, hw, state, training, None) {
        Ok(y) => y,
        Err(e) => panic!("batch_norm: {e}"),
    }
}

/// [`batch_norm`] with its errors returned. `state` is untouched when an error is returned.
pub fn try_batch_norm<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    gamma: &Tensor<(usize,), f32, Cpu>,
    beta: &Tensor<(usize,), f32, Cpu>,
    c: usize,
    hw: usize,
    state: &mut BatchNormState,
    training: bool,
) -> Result<Activations<T>, OpError> {
    try_batch_norm_act(x, gamma, beta, c, hw, state, training, None)
}

/// [`try_batch_norm`] followed by an activation, in one pass over the data while it is in
/// cache, and without a tensor (and gradient buffer) between the two.
#[allow(clippy::too_many_arguments)]
pub fn try_batch_norm_act<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    gamma: &impl ParamRef<(usize,)>,
    beta: &impl ParamRef<(usize,)>,
    c: usize,
    hw: usize,
    state: &mut BatchNormState,
    training: bool,
    act: Option<Epilogue>,
) -> Result<Activations<T>, OpError> {
    let (g, b) = (gamma.values().to_vec(), beta.values().to_vec());
    let (gamma, beta) = (gamma.key(), beta.key());
    check_sizes(x.shape().1, gamma.shape().0, beta.shape().0, c, hw, state)?;
    let expected = c * hw;
    let n = x.shape().0;
    let m = n * hw;
    if training && m < 2 {
        return Err(OpError::TooFewValuesPerChannel { got: m });
    }

    let input = take_input(x)?;
    let xs = input.data;

    let (mean, inv_std) = statistics(&xs, c, hw, state, training);

    // x_hat is what the backward pass needs, so it is kept instead of x.
    let mut x_hat = xs;
    // Every value is written below; the buffer is recycled once copied into the output tensor.
    let mut out = take_f32(n * expected);
    normalize_batch(&mut x_hat, &mut out, c, hw, &mean, &inv_std, &g, &b, act);
    let dev = input.tensor.device().clone();
    let gate = Gate::new(act, g, b);
    // Without a tape nothing will read x_hat (or the activation's output) again. Sigmoid's and
    // tanh's derivatives read what `Gate::keep` keeps; the tensor takes the output over.
    if !T::OWNS_TAPE {
        give_f32(x_hat);
        return Ok(make_output::<T>(&dev, out, n, expected)?.put_tape(input.tape));
    }
    let kept = gate.keep(&mut out);
    let y = make_output::<T>(&dev, out, n, expected)?;
    let mut tape = input.tape;
    let x_ghost = input.tensor.ghost();
    let y_ghost = y.ghost();
    let gamma = gamma.clone();
    let beta = beta.clone();
    tape.add_backward_op(move |grads| {
        let mut gy = take_grad!(grads, &y_ghost);
        kept.grad_in_place(&mut gy);
        // Per channel: sum(dy) and sum(dy * x_hat), shared by all three gradients.
        let (sum_dy, sum_dy_xhat) = grad_sums(&gy, &x_hat, c, hw, &gate);
        {
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            let inv_m = if training { 1.0 / m as f32 } else { 0.0 };
            for ((row_gx, row_gy), row_hat) in gx
                .chunks_exact_mut(expected)
                .zip(gy.chunks_exact(expected))
                .zip(x_hat.chunks_exact(expected))
            {
                if hw == 1 {
                    // Dense activations: one value per channel, so a loop over channels (a
                    // call per one-value row costs more than its arithmetic).
                    for ch in 0..c {
                        let (ga, be) = gate.affine(ch);
                        row_gx[ch] += grad_value(
                            row_gy[ch],
                            row_hat[ch],
                            ga,
                            be,
                            gate.slope,
                            ga * inv_std[ch],
                            sum_dy[ch] * inv_m,
                            sum_dy_xhat[ch] * inv_m,
                        );
                    }
                    continue;
                }
                for ch in 0..c {
                    let r = ch * hw..(ch + 1) * hw;
                    let (ga, be) = gate.affine(ch);
                    // In training the batch statistics depend on x too: the mean of dy and the
                    // projection of dy on x_hat come off (with the running ones, inv_m = 0).
                    input_grad(
                        &mut row_gx[r.clone()],
                        &row_gy[r.clone()],
                        &row_hat[r],
                        ga,
                        be,
                        gate.slope,
                        ga * inv_std[ch],
                        sum_dy[ch] * inv_m,
                        sum_dy_xhat[ch] * inv_m,
                    );
                }
            }
        }
        {
            let gg = grads.get_or_alloc_mut(&gamma)?;
            for (o, s) in gg.iter_mut().zip(&sum_dy_xhat) {
                *o += s;
            }
        }
        {
            let gb = grads.get_or_alloc_mut(&beta)?;
            for (o, s) in gb.iter_mut().zip(&sum_dy) {
                *o += s;
            }
        }
        release_grad(gy);
        kept.give();
        give_f32(x_hat);
        Ok(())
    });
    Ok(y.put_tape(tape))
}

/// The size checks of [`try_batch_norm_act`]: `cols` values per sample in `c` channels of `hw`,
/// and `c` values in every parameter and statistic.
pub(super) fn check_sizes(
    cols: usize,
    gamma: usize,
    beta: usize,
    c: usize,
    hw: usize,
    state: &BatchNormState,
) -> Result<(), OpError> {
    if c == 0 {
        return Err(OpError::Zero { what: "channels" });
    }
    if hw == 0 {
        return Err(OpError::Zero {
            what: "values per channel (hw)",
        });
    }
    let expected = c * hw;
    let got = cols;
    if got != expected {
        return Err(OpError::InputWidth {
            got,
            expected,
            what: format!("{c} channels x {hw}"),
        });
    }
    for (what, len) in [
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", state.running_mean.len()),
        ("running_var", state.running_var.len()),
    ] {
        if len != c {
            return Err(OpError::ParamLen {
                what,
                got: len,
                expected: c,
            });
        }
    }
    Ok(())
}

/// Per channel, the mean and `1/sqrt(var + eps)` to normalise with: the batch's when training
/// (folded into the running statistics), else the running ones. `xs` is `(n, c*hw)`.
pub(super) fn statistics(
    xs: &[f32],
    c: usize,
    hw: usize,
    state: &mut BatchNormState,
    training: bool,
) -> (Vec<f32>, Vec<f32>) {
    let expected = c * hw;
    let m = xs.len() / expected * hw;
    if training {
        // Two passes in f64 (one-pass sums lose too much precision on large, offset inputs),
        // but over one sample's plane at a time, whose second pass then reads from the cache:
        // each plane's sum of squared deviations from its own mean, merged per channel with
        // the spread of the planes' means (Chan et al.). Two passes over the whole batch read
        // it from memory twice: 3.7% of a step of the trainer bench's CNN, against 2.3% now.
        let mut sums = vec![0.0f64; c];
        let mut devs = vec![0.0f64; c];
        // Each plane's sum and squared deviations (on several threads, the samples split),
        // then merged per channel in sample order: the same bits on any number of threads.
        let planes = xs.len() / hw.max(1);
        let mut per_plane = vec![(0.0f64, 0.0f64); planes];
        let plane_stats = |out: &mut [(f64, f64)], rows: &[f32]| plane_moments(rows, hw, out);
        let rows = xs.len() / expected;
        let parts = super::par::parts(rows, xs.len());
        if parts > 1 {
            let per = rows.div_ceil(parts);
            per_plane
                .par_chunks_mut(per * c)
                .zip(xs.par_chunks(per * expected))
                .for_each(super::par::in_caller_modes(
                    |(o, r): (&mut [(f64, f64)], &[f32])| plane_stats(o, r),
                ));
        } else {
            plane_stats(&mut per_plane, xs);
        }
        let mut plane_means = Vec::with_capacity(planes);
        for row in per_plane.chunks_exact(c) {
            for (ch, &(s, d)) in row.iter().enumerate() {
                sums[ch] += s;
                devs[ch] += d;
                plane_means.push(s / hw as f64);
            }
        }
        let mu: Vec<f64> = sums.iter().map(|&s| s / m as f64).collect();
        for means in plane_means.chunks_exact(c) {
            for ((d, &plane_mu), &mu) in devs.iter_mut().zip(means).zip(&mu) {
                let e = plane_mu - mu;
                *d += hw as f64 * e * e;
            }
        }
        let mean: Vec<f32> = mu.iter().map(|&v| v as f32).collect();
        let var: Vec<f32> = devs.iter().map(|&d| (d / m as f64) as f32).collect();
        let mom = state.momentum;
        let unbias = m as f32 / (m - 1) as f32;
        for ch in 0..c {
            state.running_mean[ch] = (1.0 - mom) * state.running_mean[ch] + mom * mean[ch];
            state.running_var[ch] = (1.0 - mom) * state.running_var[ch] + mom * var[ch] * unbias;
        }
        let inv_std = var.iter().map(|v| 1.0 / (v + state.eps).sqrt()).collect();
        (mean, inv_std)
    } else {
        let inv_std = state
            .running_var
            .iter()
            .map(|v| 1.0 / (v + state.eps).sqrt())
            .collect();
        (state.running_mean.clone(), inv_std)
    }
}

/// `x_hat` (holding `x`, `(n, c*hw)`) normalised in place, and `out = act(gamma * x_hat + beta)`,
/// the activation applied to each channel's values while they are in cache.
#[allow(clippy::too_many_arguments)]
pub(super) fn normalize_batch(
    x_hat: &mut [f32],
    out: &mut [f32],
    c: usize,
    hw: usize,
    mean: &[f32],
    inv_std: &[f32],
    g: &[f32],
    b: &[f32],
    act: Option<Epilogue>,
) {
    let expected = c * hw;
    let parts = super::par::parts(x_hat.len() / expected.max(1), x_hat.len());
    if parts > 1 {
        // Rows on the pool's threads: each value is computed as on one.
        let per = (x_hat.len() / expected).div_ceil(parts) * expected;
        x_hat
            .par_chunks_mut(per)
            .zip(out.par_chunks_mut(per))
            .for_each(super::par::in_caller_modes(
                |(h, o): (&mut [f32], &mut [f32])| {
                    normalize_batch(h, o, c, hw, mean, inv_std, g, b, act)
                },
            ));
        return;
    }
    for (row_hat, row_out) in x_hat
        .chunks_exact_mut(expected)
        .zip(out.chunks_exact_mut(expected))
    {
        if hw == 1 {
            // Dense activations: the channels of a row at once, then its activation.
            for ch in 0..c {
                let h = (row_hat[ch] - mean[ch]) * inv_std[ch];
                row_hat[ch] = h;
                row_out[ch] = g[ch] * h + b[ch];
            }
            if let Some(a) = act {
                a.apply(row_out);
            }
            continue;
        }
        // The activation goes over spans of whole planes of at least `ACT_SPAN` floats, still in
        // cache: plane by plane, the small maps of digits networks (4x4, 2x2) left it to scalar
        // loops around each call (a 64-channel sigmoid network over 8x8 digits: 3-5% faster).
        let mut from = 0;
        for ch in 0..c {
            let (mu, is, ga, be) = (mean[ch], inv_std[ch], g[ch], b[ch]);
            let r = ch * hw..(ch + 1) * hw;
            normalize(
                &mut row_hat[r.clone()],
                &mut row_out[r.clone()],
                mu,
                is,
                ga,
                be,
            );
            if let Some(a) = act {
                if r.end - from >= ACT_SPAN || ch + 1 == c {
                    a.apply(&mut row_out[from..r.end]);
                    from = r.end;
                }
            }
        }
    }
}

/// How the backward pass of batch norm with a fused activation gets the gradient before the
/// activation. ReLU's and leaky ReLU's derivatives are a step at zero, so they are recomputed
/// from x_hat (`gamma * x_hat + beta` is the pre-activation, computed as in the forward pass)
/// while the sums read it anyway, and the output need not be kept; sigmoid's and tanh's come
/// from the saved output, a pass of their own.
pub(super) struct Gate {
    act: Option<Epilogue>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    /// The factor on the gradient where the pre-activation is not positive: 0 for ReLU, 0.01 for
    /// leaky ReLU, and 1 (the gradient unchanged) without an activation or once
    /// [`Gate::grad_from_output`] applied it.
    pub slope: f32,
}

impl Gate {
    pub(super) fn new(act: Option<Epilogue>, gamma: Vec<f32>, beta: Vec<f32>) -> Self {
        let slope = match act {
            Some(Epilogue::Relu) => 0.0,
            Some(Epilogue::LeakyRelu) => LEAKY_SLOPE,
            Some(Epilogue::Sigmoid | Epilogue::Tanh) | None => 1.0,
        };
        Gate {
            act,
            gamma,
            beta,
            slope,
        }
    }

    /// What the backward pass reads of the output `y` (the activation applied): for sigmoid and
    /// tanh, whose derivatives are taken from it (`Kept::grad_in_place`, before the sums);
    /// nothing for the ramps, whose [`Gate::slope`] is applied from x_hat.
    pub(super) fn keep(&self, y: &mut [f32]) -> Kept {
        if matches!(self.act, Some(Epilogue::Sigmoid | Epilogue::Tanh)) {
            Kept::apply(self.act, y, true)
        } else {
            Kept::Nothing
        }
    }

    /// Channel `ch`'s gamma and beta.
    pub(super) fn affine(&self, ch: usize) -> (f32, f32) {
        (self.gamma[ch], self.beta[ch])
    }
}

/// Per channel, `sum(dz)` and `sum(dz * x_hat)` over a `(n, c*hw)` batch, `dz` the gradient
/// before the activation (see [`Gate`]): beta's and gamma's gradients, and two terms of the input's.
pub(super) fn grad_sums(
    gy: &[f32],
    x_hat: &[f32],
    c: usize,
    hw: usize,
    gate: &Gate,
) -> (Vec<f32>, Vec<f32>) {
    let expected = c * hw;
    let mut sum_dy = vec![0.0f32; c];
    let mut sum_dy_xhat = vec![0.0f32; c];
    let rows = gy.len() / expected.max(1);
    let parts = super::par::parts(rows, gy.len());
    if hw > 1 {
        // Each plane's two sums (on the pool's threads, the samples split), then added per
        // channel in sample order: the same bits on any number of threads.
        let mut per_plane = vec![(0.0f32, 0.0f32); rows * c];
        let per = rows.div_ceil(parts.max(1)).max(1);
        let sums = |(part, o): (usize, &mut [(f32, f32)])| {
            let at = part * per * expected;
            let (d, h) = (&gy[at..][..o.len() * hw], &x_hat[at..][..o.len() * hw]);
            let (gamma, beta) = (&gate.gamma[..], &gate.beta[..]);
            debug_assert!(gamma.len() == c && beta.len() == c, "one gate per channel");
            sums_per_plane(d, h, hw, gamma, beta, gate.slope, o);
        };
        if parts > 1 {
            per_plane
                .par_chunks_mut(per * c)
                .enumerate()
                .for_each(super::par::in_caller_modes(sums));
        } else {
            sums((0, &mut per_plane));
        }
        for row in per_plane.chunks_exact(c) {
            for (ch, &(s1, s2)) in row.iter().enumerate() {
                sum_dy[ch] += s1;
                sum_dy_xhat[ch] += s2;
            }
        }
        return (sum_dy, sum_dy_xhat);
    }
    for (row_gy, row_hat) in gy.chunks_exact(expected).zip(x_hat.chunks_exact(expected)) {
        for ch in 0..c {
            let (ga, be) = gate.affine(ch);
            let z = gated(row_gy[ch], row_hat[ch], ga, be, gate.slope);
            sum_dy[ch] += z;
            sum_dy_xhat[ch] += z * row_hat[ch];
        }
    }
    (sum_dy, sum_dy_xhat)
}

/// The input gradient written over `x_hat` (which nothing reads afterwards): per channel
/// `gamma * inv_std * (dz - mean(dz) - x_hat * mean(dz * x_hat))` in training (the batch
/// statistics depend on x too), `gamma * inv_std * dz` with the running statistics; `dz` is the
/// gradient before the activation (see [`Gate`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn input_grad_over_xhat(
    x_hat: &mut [f32],
    gy: &[f32],
    c: usize,
    hw: usize,
    gate: &Gate,
    inv_std: &[f32],
    sum_dy: &[f32],
    sum_dy_xhat: &[f32],
    training: bool,
) {
    let expected = c * hw;
    let inv_m = if training {
        1.0 / (x_hat.len() / expected * hw) as f32
    } else {
        0.0
    };
    let rows = x_hat.len() / expected.max(1);
    let parts = super::par::parts(rows, x_hat.len());
    if parts > 1 {
        // Rows on the pool's threads (each value as on one); `training` is passed on as the
        // `1/m` of the whole batch.
        let per = rows.div_ceil(parts) * expected;
        x_hat
            .par_chunks_mut(per)
            .zip(gy.par_chunks(per))
            .for_each(super::par::in_caller_modes(
                |(h, d): (&mut [f32], &[f32])| {
                    input_grad_rows(h, d, c, hw, gate, inv_std, sum_dy, sum_dy_xhat, inv_m)
                },
            ));
        return;
    }
    input_grad_rows(x_hat, gy, c, hw, gate, inv_std, sum_dy, sum_dy_xhat, inv_m);
}

/// [`input_grad_over_xhat`] over whole rows on the calling thread, `inv_m` being `1/m` of the
/// batch (0 with the running statistics).
#[allow(clippy::too_many_arguments)]
fn input_grad_rows(
    x_hat: &mut [f32],
    gy: &[f32],
    c: usize,
    hw: usize,
    gate: &Gate,
    inv_std: &[f32],
    sum_dy: &[f32],
    sum_dy_xhat: &[f32],
    inv_m: f32,
) {
    let expected = c * hw;
    for (row_hat, row_gy) in x_hat
        .chunks_exact_mut(expected)
        .zip(gy.chunks_exact(expected))
    {
        if hw == 1 {
            for ch in 0..c {
                let (ga, be) = gate.affine(ch);
                row_hat[ch] = grad_value(
                    row_gy[ch],
                    row_hat[ch],
                    ga,
                    be,
                    gate.slope,
                    ga * inv_std[ch],
                    sum_dy[ch] * inv_m,
                    sum_dy_xhat[ch] * inv_m,
                );
            }
            continue;
        }
        for ch in 0..c {
            let r = ch * hw..(ch + 1) * hw;
            let (ga, be) = gate.affine(ch);
            input_grad_in_place(
                &mut row_hat[r.clone()],
                &row_gy[r],
                ga,
                be,
                gate.slope,
                ga * inv_std[ch],
                sum_dy[ch] * inv_m,
                sum_dy_xhat[ch] * inv_m,
            );
        }
    }
}

/// Lanes of the reductions below: independent partial sums the compiler can keep in SIMD
/// registers (a single running sum must be added in order, one value at a time).
const LANES: usize = 8;

simd_fn! {
/// Per plane of `rows` (runs of `hw`), its sum and its sum of squared deviations from its own
/// mean (`sum_f64`, then `sum_sq_dev_f64` about `sum / hw`, the tests' references), into
/// `out`: the same operations in the same order per plane (the same bits), [`PLANES`] planes side by side so
/// that their chains of additions overlap (a plane at a time, a plane of 8x8 was one chain of
/// sixteen dependent additions a pass).
fn plane_moments(rows: &[f32], hw: usize, out: &mut [(f64, f64)]) {
    let whole = hw / LANES;
    let done = whole * LANES;
    for (g, o) in out.chunks_mut(PLANES).enumerate() {
        let p0 = g * PLANES;
        let plane = |q: usize| &rows[(p0 + q) * hw..][..hw];
        let mut acc = [[0.0f64; LANES]; PLANES];
        for k in 0..whole {
            for (q, a) in acc.iter_mut().enumerate().take(o.len()) {
                let v = &plane(q)[k * LANES..][..LANES];
                for (a, &x) in a.iter_mut().zip(v) {
                    *a += x as f64;
                }
            }
        }
        let mut sums = [0.0f64; PLANES];
        for (q, s) in sums.iter_mut().enumerate().take(o.len()) {
            // `iter().sum()` from the first lane (no lane's sum is -0: each starts at +0), and
            // the tail summed as `sum_f64` sums it.
            let lanes = acc[q][1..].iter().fold(acc[q][0], |t, &a| t + a);
            let tail: f64 = plane(q)[done..].iter().map(|&x| x as f64).sum();
            *s = lanes + tail;
        }
        let mus = sums.map(|s| s / hw as f64);
        let mut acc = [[0.0f64; LANES]; PLANES];
        for k in 0..whole {
            for (q, a) in acc.iter_mut().enumerate().take(o.len()) {
                let mu = mus[q];
                let v = &plane(q)[k * LANES..][..LANES];
                for (a, &x) in a.iter_mut().zip(v) {
                    let d = x as f64 - mu;
                    *a += d * d;
                }
            }
        }
        for (q, o) in o.iter_mut().enumerate() {
            let mu = mus[q];
            let lanes = acc[q][1..].iter().fold(acc[q][0], |t, &a| t + a);
            let tail: f64 = plane(q)[done..]
                .iter()
                .map(|&x| (x as f64 - mu) * (x as f64 - mu))
                .sum();
            *o = (sums[q], lanes + tail);
        }
    }
}
}

simd_fn! {
/// The sum of `v`, in f64.
#[cfg(test)]
fn sum_f64(v: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&x| x as f64).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}
}

simd_fn! {
/// The sum of `(v - mu)^2`, in f64.
#[cfg(test)]
fn sum_sq_dev_f64(v: &[f32], mu: f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&x| (x as f64 - mu) * (x as f64 - mu)).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let d = x as f64 - mu;
            *a += d * d;
        }
    }
    acc.iter().sum::<f64>() + tail
}
}

simd_fn! {
/// `x_hat = (x - mu) * inv_std` in place, and `out = gamma * x_hat + beta`.
fn normalize(x_hat: &mut [f32], out: &mut [f32], mu: f32, inv_std: f32, gamma: f32, beta: f32) {
    for (h, o) in x_hat.iter_mut().zip(out) {
        *h = (*h - mu) * inv_std;
        *o = gamma * *h + beta;
    }
}
}

/// Floats of the spans [`normalize_batch`] applies an activation to at once.
const ACT_SPAN: usize = 1024;

/// Lanes of the f32 reductions: four AVX2 vectors, so that four sums are in flight at once
/// (one vector's chain of dependent additions waits on the adder's latency).
const SUM_LANES: usize = 32;

/// The gradient before the activation: `dy` where the pre-activation `gamma * h + beta` is
/// positive, `slope * dy` elsewhere (see [`Gate`]).
#[inline(always)]
fn gated(d: f32, h: f32, gamma: f32, beta: f32, slope: f32) -> f32 {
    if gamma * h + beta > 0.0 {
        d
    } else {
        slope * d
    }
}

/// One value of the input gradient: `k * (dz - mean_dy - x_hat * mean_dy_xhat)` for `dz` the
/// gated `dy` (see [`gated`]), `k = gamma * inv_std`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn grad_value(
    d: f32,
    h: f32,
    gamma: f32,
    beta: f32,
    slope: f32,
    k: f32,
    mean_dy: f32,
    mean_dy_xhat: f32,
) -> f32 {
    k * (gated(d, h, gamma, beta, slope) - mean_dy - h * mean_dy_xhat)
}

/// Planes whose sums [`sums_per_plane`] finishes side by side.
const PLANES: usize = 8;

simd_fn! {
#[allow(clippy::too_many_arguments)]
/// `sums_dy_dy_xhat` (the tests' reference) of every plane (a run of `hw` values; plane `i` of
/// channel `i % c`, `c` the length of `gamma`) of `dy` and `x_hat` into `out`, by the same
/// operations in the same order per plane (the same bits). The last steps of each plane, the sums over the
/// lanes and the values past the last whole run of lanes, are one chain of additions; a plane
/// at a time they took most of the time on maps of 8x8 and less, [`PLANES`] side by side
/// they overlap.
fn sums_per_plane(
    dy: &[f32],
    x_hat: &[f32],
    hw: usize,
    gamma: &[f32],
    beta: &[f32],
    slope: f32,
    out: &mut [(f32, f32)],
) {
    let c = gamma.len();
    let done = hw / SUM_LANES * SUM_LANES;
    for (g, o) in out.chunks_mut(PLANES).enumerate() {
        let p0 = g * PLANES;
        // Each plane's gate, by its channel.
        let gate: [(f32, f32); PLANES] =
            std::array::from_fn(|q| (gamma[(p0 + q) % c], beta[(p0 + q) % c]));
        // Per lane, its sums for each plane of the group.
        let mut lanes1 = [[0.0f32; PLANES]; SUM_LANES];
        let mut lanes2 = [[0.0f32; PLANES]; SUM_LANES];
        for q in 0..o.len() {
            let (d, h) = (&dy[(p0 + q) * hw..][..done], &x_hat[(p0 + q) * hw..][..done]);
            let (ga, be) = gate[q];
            let (mut a1, mut a2) = ([0.0f32; SUM_LANES], [0.0f32; SUM_LANES]);
            for (d, h) in d.chunks_exact(SUM_LANES).zip(h.chunks_exact(SUM_LANES)) {
                for l in 0..SUM_LANES {
                    let z = gated(d[l], h[l], ga, be, slope);
                    a1[l] += z;
                    a2[l] += z * h[l];
                }
            }
            for l in 0..SUM_LANES {
                lanes1[l][q] = a1[l];
                lanes2[l][q] = a2[l];
            }
        }
        // The lanes in order, from the first (no lane sum is -0: each starts at +0).
        let (mut s1, mut s2) = (lanes1[0], lanes2[0]);
        for l in 1..SUM_LANES {
            for q in 0..PLANES {
                s1[q] += lanes1[l][q];
                s2[q] += lanes2[l][q];
            }
        }
        for t in done..hw {
            for q in 0..o.len() {
                let at = (p0 + q) * hw + t;
                let (ga, be) = gate[q];
                let z = gated(dy[at], x_hat[at], ga, be, slope);
                s1[q] += z;
                s2[q] += z * x_hat[at];
            }
        }
        for (q, o) in o.iter_mut().enumerate() {
            *o = (s1[q], s2[q]);
        }
    }
}
}

simd_fn! {
/// `(sum(dz), sum(dz * x_hat))` for `dz` the gated `dy` (see [`gated`]), one plane: the
/// order of [`sums_per_plane`]'s sums, which the tests hold it to.
#[cfg(test)]
fn sums_dy_dy_xhat(dy: &[f32], x_hat: &[f32], gamma: f32, beta: f32, slope: f32) -> (f32, f32) {
    let (mut a1, mut a2) = ([0.0f32; SUM_LANES], [0.0f32; SUM_LANES]);
    let chunks = dy.chunks_exact(SUM_LANES).zip(x_hat.chunks_exact(SUM_LANES));
    for (d, h) in chunks {
        for l in 0..SUM_LANES {
            let z = gated(d[l], h[l], gamma, beta, slope);
            a1[l] += z;
            a2[l] += z * h[l];
        }
    }
    let done = dy.len() / SUM_LANES * SUM_LANES;
    let (mut s1, mut s2) = (a1.iter().sum::<f32>(), a2.iter().sum::<f32>());
    for (&d, &h) in dy[done..].iter().zip(&x_hat[done..]) {
        let z = gated(d, h, gamma, beta, slope);
        s1 += z;
        s2 += z * h;
    }
    (s1, s2)
}
}

simd_fn! {
/// `gx += k * (dz - mean_dy - x_hat * mean_dy_xhat)` for `dz` the gated `dy`: the input gradient.
#[allow(clippy::too_many_arguments)]
fn input_grad(
    gx: &mut [f32],
    dy: &[f32],
    x_hat: &[f32],
    gamma: f32,
    beta: f32,
    slope: f32,
    k: f32,
    mean_dy: f32,
    mean_dy_xhat: f32,
) {
    for ((o, &d), &h) in gx.iter_mut().zip(dy).zip(x_hat) {
        *o += grad_value(d, h, gamma, beta, slope, k, mean_dy, mean_dy_xhat);
    }
}
}

simd_fn! {
/// [`input_grad`] written over `x_hat` instead of added to a gradient.
#[allow(clippy::too_many_arguments)]
fn input_grad_in_place(
    x_hat: &mut [f32],
    dy: &[f32],
    gamma: f32,
    beta: f32,
    slope: f32,
    k: f32,
    mean_dy: f32,
    mean_dy_xhat: f32,
) {
    for (h, &d) in x_hat.iter_mut().zip(dy) {
        *h = grad_value(d, *h, gamma, beta, slope, k, mean_dy, mean_dy_xhat);
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a pool of several threads the statistics, the normalisation, the gradient sums and
    /// the input gradient split the batch and keep the bits of one thread.
    #[test]
    fn threads_keep_every_bit() {
        let (n, c, hw) = (67, 16, 784);
        let v = |len: usize, s: u32| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    ((i as u32).wrapping_mul(2654435761).wrapping_add(s) % 1000) as f32 / 250.0
                        - 2.0
                })
                .collect()
        };
        let x = v(n * c * hw, 1);
        let gy = v(n * c * hw, 2);
        let (gamma, beta) = (v(c, 3), v(c, 4));
        crate::nn::ops::par::assert_same_bits_on_1_and_3_threads("batch norm", || {
            let mut state = BatchNormState::new(c);
            let (mean, inv_std) = statistics(&x, c, hw, &mut state, true);
            let mut x_hat = x.clone();
            let mut out = vec![0.0; x.len()];
            let act = Some(Epilogue::Relu);
            normalize_batch(
                &mut x_hat, &mut out, c, hw, &mean, &inv_std, &gamma, &beta, act,
            );
            let gate = Gate::new(act, gamma.clone(), beta.clone());
            let (s1, s2) = grad_sums(&gy, &x_hat, c, hw, &gate);
            let mut gx = x_hat.clone();
            input_grad_over_xhat(&mut gx, &gy, c, hw, &gate, &inv_std, &s1, &s2, true);
            let mut run_stats = state.running_mean.clone();
            run_stats.extend(&state.running_var);
            vec![mean, inv_std, x_hat, out, s1, s2, gx, run_stats]
        });
    }

    /// The batch's mean and variance per channel, merged from the samples' planes, equal a
    /// two-pass computation in f64 over the whole channel, also on values far from zero whose
    /// planes have different means (where a one-pass sum of squares loses every digit).
    #[test]
    fn plane_by_plane_statistics_equal_two_passes_over_the_channel() {
        let (n, c, hw) = (5, 3, 37);
        let mut x = vec![0.0f32; n * c * hw];
        let mut state = 12345u64;
        for (i, v) in x.iter_mut().enumerate() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let (s, ch) = (i / (c * hw), i / hw % c);
            *v = 1.0e4 * ch as f32 + 3.0 * s as f32 + noise;
        }
        let mut bn = BatchNormState::new(c);
        let (mean, inv_std) = statistics(&x, c, hw, &mut bn, true);
        for ch in 0..c {
            let vals: Vec<f64> = (0..n)
                .flat_map(|s| &x[(s * c + ch) * hw..(s * c + ch + 1) * hw])
                .map(|&v| v as f64)
                .collect();
            let mu = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / vals.len() as f64;
            let want = (1.0 / (var + bn.eps as f64).sqrt()) as f32;
            assert_eq!(mean[ch], mu as f32, "channel {ch} mean");
            let rel = ((inv_std[ch] - want) / want).abs();
            assert!(rel < 1e-6, "channel {ch}: {} against {want}", inv_std[ch]);
        }
    }

    /// The sums of many planes side by side give each plane's own sums to the bit, on maps
    /// shorter and longer than the lanes, groups cut short, with and without a gate.
    #[test]
    fn plane_sums_side_by_side_keep_each_planes_bits() {
        for hw in [2, 4, 16, 31, 32, 33, 64, 100] {
            for planes in [1, 7, 8, 9, 20] {
                for slope in [0.0, 1.0] {
                    let c = 3;
                    let val = |i: usize, m: usize| ((i * m % 37) as f32 - 18.0) / 9.0;
                    let dy: Vec<f32> = (0..planes * hw).map(|i| val(i, 7)).collect();
                    let xh: Vec<f32> = (0..planes * hw).map(|i| val(i, 11)).collect();
                    let (gamma, beta) = ([0.5, -1.5, 2.0], [0.25, 0.0, -0.75]);
                    let mut got = vec![(f32::NAN, f32::NAN); planes];
                    sums_per_plane(&dy, &xh, hw, &gamma, &beta, slope, &mut got);
                    for (i, &(s1, s2)) in got.iter().enumerate() {
                        let r = i * hw..(i + 1) * hw;
                        let (g, b) = (gamma[i % c], beta[i % c]);
                        let (w1, w2) = sums_dy_dy_xhat(&dy[r.clone()], &xh[r], g, b, slope);
                        let what = format!("hw {hw} planes {planes} slope {slope} plane {i}");
                        assert_eq!(
                            (s1.to_bits(), s2.to_bits()),
                            (w1.to_bits(), w2.to_bits()),
                            "{what}"
                        );
                    }
                }
            }
        }
    }

    /// The planes' moments side by side give each plane's own, to the bit: maps shorter and
    /// longer than the lanes, groups cut short, -0 and large offsets among the values.
    #[test]
    fn plane_moments_side_by_side_keep_each_planes_bits() {
        for hw in [1, 2, 4, 7, 8, 9, 16, 49, 64, 100] {
            for planes in [1, 7, 8, 9, 20] {
                let rows: Vec<f32> = (0..planes * hw)
                    .map(|i| match i % 11 {
                        0 => -0.0,
                        3 => 1.0e4 + (i % 5) as f32,
                        _ => ((i * 7 % 37) as f32 - 18.0) / 9.0,
                    })
                    .collect();
                let mut got = vec![(f64::NAN, f64::NAN); planes];
                plane_moments(&rows, hw, &mut got);
                for (i, &(s, d)) in got.iter().enumerate() {
                    let plane = &rows[i * hw..(i + 1) * hw];
                    let ws = sum_f64(plane);
                    let wd = sum_sq_dev_f64(plane, ws / hw as f64);
                    let what = format!("hw {hw} planes {planes} plane {i}");
                    assert_eq!(
                        (s.to_bits(), d.to_bits()),
                        (ws.to_bits(), wd.to_bits()),
                        "{what}"
                    );
                }
            }
        }
    }
}
