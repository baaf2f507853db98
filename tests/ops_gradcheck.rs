//! Checks our differentiable ops against central finite differences and naive reference kernels.

use dfdx::prelude::*;
use nas::nn::ops::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Act<T> = Tensor<(usize, usize), f32, Cpu, T>;

/// The parameters an op under test uses: matrices (conv weights) and vectors (bias, gamma, beta).
#[derive(Clone)]
struct Params {
    mats: Vec<(Vec<f32>, (usize, usize))>,
    vecs: Vec<Vec<f32>>,
}

/// Tape-less parameter tensors built from [`Params`].
struct Built {
    mats: Vec<Tensor<(usize, usize), f32, Cpu>>,
    vecs: Vec<Tensor<(usize,), f32, Cpu>>,
}

impl Params {
    fn none() -> Self {
        Params {
            mats: vec![],
            vecs: vec![],
        }
    }
    fn build(&self, dev: &Cpu) -> Built {
        Built {
            mats: self
                .mats
                .iter()
                .map(|(v, s)| dev.tensor_from_vec(v.clone(), *s))
                .collect(),
            vecs: self
                .vecs
                .iter()
                .map(|v| dev.tensor_from_vec(v.clone(), (v.len(),)))
                .collect(),
        }
    }
    fn count(&self) -> usize {
        self.mats.len() + self.vecs.len()
    }
    fn slot(&mut self, k: usize) -> &mut Vec<f32> {
        if k < self.mats.len() {
            &mut self.mats[k].0
        } else {
            &mut self.vecs[k - self.mats.len()]
        }
    }
}

/// An op under test, runnable with or without a tape.
trait OpUnderTest {
    fn run<T: Tape<f32, Cpu>>(&self, x: Act<T>, p: &Built) -> Act<T>;
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn uniform(r: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

/// Distinct values at least 0.01 apart, so that finite differences never swap a max-pool winner.
fn distinct(r: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.01).collect();
    for i in (1..n).rev() {
        let j = r.gen_range(0..=i);
        v.swap(i, j);
    }
    v
}

fn loss_of(y: &[f32], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

fn assert_close(what: &str, analytic: &[f32], numeric: &[(usize, f64)]) {
    for &(i, num) in numeric {
        let a = analytic[i] as f64;
        let tol = 2e-3 + 1e-2 * a.abs().max(num.abs());
        assert!(
            (a - num).abs() <= tol,
            "{what}[{i}]: analytic {a} vs finite differences {num}"
        );
    }
}

/// Indices to probe: all of them for small tensors, an even spread of about 150 otherwise.
fn probes(len: usize) -> Vec<usize> {
    let step = len.div_ceil(150).max(1);
    (0..len).step_by(step).chain([len - 1]).collect()
}

/// Compares the gradients of `sum(op(x) * r)` w.r.t. x and every parameter with central differences.
fn gradcheck<O: OpUnderTest>(op: &O, x: Vec<f32>, n: usize, params: Params, eps: f32) {
    let dev = Cpu::seed_from_u64(0);
    let d = x.len() / n;
    let built = params.build(&dev);
    let xt = dev.tensor_from_vec(x.clone(), (n, d));
    let y = op.run(xt.leaky_trace(), &built);
    let out_len = y.shape().0 * y.shape().1;
    let rv = uniform(&mut rng(99), out_len);
    let rt = dev.tensor_from_vec(rv.clone(), *y.shape());
    let grads = (y * rt).sum().backward();
    let gx = grads.get(&xt).as_vec();
    let gp: Vec<Vec<f32>> = built
        .mats
        .iter()
        .map(|t| grads.get(t).as_vec())
        .chain(built.vecs.iter().map(|t| grads.get(t).as_vec()))
        .collect();

    let eval = |x: &[f32], p: &Params| -> f64 {
        let b = p.build(&dev);
        let y = op.run(dev.tensor_from_vec(x.to_vec(), (n, d)), &b);
        loss_of(&y.as_vec(), &rv)
    };
    let h = eps as f64;
    let numeric_x: Vec<(usize, f64)> = probes(x.len())
        .into_iter()
        .map(|i| {
            let mut xp = x.clone();
            xp[i] += eps;
            let mut xm = x.clone();
            xm[i] -= eps;
            (i, (eval(&xp, &params) - eval(&xm, &params)) / (2.0 * h))
        })
        .collect();
    assert_close("d/dx", &gx, &numeric_x);
    for (k, g) in gp.iter().enumerate() {
        let len = params.clone().slot(k).len();
        let numeric: Vec<(usize, f64)> = probes(len)
            .into_iter()
            .map(|i| {
                let mut pp = params.clone();
                pp.slot(k)[i] += eps;
                let mut pm = params.clone();
                pm.slot(k)[i] -= eps;
                (i, (eval(&x, &pp) - eval(&x, &pm)) / (2.0 * h))
            })
            .collect();
        assert_close(&format!("d/dparam{k}"), g, &numeric);
    }
    assert_eq!(gp.len(), params.count());
}

// ---------------------------------------------------------------------------------------------
// Batch norm

struct Bn {
    c: usize,
    hw: usize,
    training: bool,
    state: BatchNormState,
}

impl OpUnderTest for Bn {
    fn run<T: Tape<f32, Cpu>>(&self, x: Act<T>, p: &Built) -> Act<T> {
        // A fresh copy per run, so that finite differences all see the same running statistics.
        let mut state = self.state.clone();
        batch_norm(
            x,
            &p.vecs[0],
            &p.vecs[1],
            self.c,
            self.hw,
            &mut state,
            self.training,
        )
    }
}

fn bn_params(c: usize, seed: u64) -> Params {
    let mut r = rng(seed);
    Params {
        mats: vec![],
        vecs: vec![
            (0..c).map(|_| r.gen_range(0.5f32..1.5)).collect(),
            uniform(&mut r, c),
        ],
    }
}

#[test]
fn batch_norm_2d_in_training_matches_finite_differences() {
    for &(n, c, hw) in &[(4, 3, 9), (2, 2, 25), (3, 5, 7)] {
        let bn = Bn {
            c,
            hw,
            training: true,
            state: BatchNormState::new(c),
        };
        let x = uniform(&mut rng(1), n * c * hw);
        gradcheck(&bn, x, n, bn_params(c, 2), 1e-2);
    }
}

#[test]
fn batch_norm_1d_for_mlps_matches_finite_differences() {
    let bn = Bn {
        c: 6,
        hw: 1,
        training: true,
        state: BatchNormState::new(6),
    };
    let x = uniform(&mut rng(3), 5 * 6);
    gradcheck(&bn, x, 5, bn_params(6, 4), 1e-2);
}

fn eval_state(c: usize) -> BatchNormState {
    let mut r = rng(5);
    BatchNormState {
        running_mean: uniform(&mut r, c),
        running_var: (0..c).map(|_| r.gen_range(0.5f32..2.0)).collect(),
        momentum: 0.1,
        eps: 1e-5,
    }
}

#[test]
fn batch_norm_in_eval_mode_matches_finite_differences() {
    let bn = Bn {
        c: 3,
        hw: 4,
        training: false,
        state: eval_state(3),
    };
    let x = uniform(&mut rng(6), 2 * 3 * 4);
    gradcheck(&bn, x, 2, bn_params(3, 7), 1e-2);
}

#[test]
fn batch_norm_in_eval_mode_normalises_with_running_statistics() {
    let dev = Cpu::default();
    let (n, c, hw) = (2, 3, 4);
    let mut state = eval_state(c);
    let before = state.clone();
    let p = bn_params(c, 8);
    let x = uniform(&mut rng(9), n * c * hw);
    let b = p.build(&dev);
    let y = batch_norm(
        dev.tensor_from_vec(x.clone(), (n, c * hw)),
        &b.vecs[0],
        &b.vecs[1],
        c,
        hw,
        &mut state,
        false,
    )
    .as_vec();
    assert_eq!(state, before, "eval mode must not touch running statistics");
    for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
        let ch = (i / hw) % c;
        let want = p.vecs[0][ch] * (xi - before.running_mean[ch])
            / (before.running_var[ch] + before.eps).sqrt()
            + p.vecs[1][ch];
        assert!((want - yi).abs() < 1e-5, "y[{i}] = {yi}, want {want}");
    }
}

#[test]
fn batch_norm_in_training_updates_running_statistics_like_pytorch() {
    let dev = Cpu::default();
    let (n, c, hw) = (3, 2, 2);
    let x: Vec<f32> = (0..n * c * hw).map(|i| (i * i) as f32 * 0.1).collect();
    let mut state = BatchNormState::new(c);
    let p = bn_params(c, 10).build(&dev);
    let y = batch_norm(
        dev.tensor_from_vec(x.clone(), (n, c * hw)),
        &p.vecs[0],
        &p.vecs[1],
        c,
        hw,
        &mut state,
        true,
    );
    let yv = y.as_vec();
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|s| (0..hw).map(move |k| (s, k)))
            .map(|(s, k)| x[s * c * hw + ch * hw + k] as f64)
            .collect();
        let m = vals.len() as f64;
        let mean = vals.iter().sum::<f64>() / m;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
        let want_rm = 0.1 * mean;
        let want_rv = 0.9 + 0.1 * var * m / (m - 1.0);
        assert!((state.running_mean[ch] as f64 - want_rm).abs() < 1e-4);
        assert!((state.running_var[ch] as f64 - want_rv).abs() < 1e-3 * want_rv);
        // Normalised with the biased variance: each channel of y has mean beta and std gamma.
        let ys: Vec<f64> = (0..n)
            .flat_map(|s| (0..hw).map(move |k| (s, k)))
            .map(|(s, k)| yv[s * c * hw + ch * hw + k] as f64)
            .collect();
        let ymean = ys.iter().sum::<f64>() / m;
        assert!((ymean - p.vecs[1].as_vec()[ch] as f64).abs() < 1e-4);
    }
}

#[test]
fn batch_norm_rejects_a_single_value_per_channel_in_training() {
    let dev = Cpu::default();
    let p = bn_params(2, 11).build(&dev);
    let mut state = BatchNormState::new(2);
    let err = try_batch_norm(
        dev.tensor_from_vec(vec![1.0, 2.0], (1, 2)),
        &p.vecs[0],
        &p.vecs[1],
        2,
        1,
        &mut state,
        true,
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("batch norm in training needs more than one value per channel, got 1")
    );
    assert_eq!(state, BatchNormState::new(2));
}
