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

// ---------------------------------------------------------------------------------------------
// Convolution

#[allow(clippy::too_many_arguments)]
fn geom(
    in_c: usize,
    (in_h, in_w): (usize, usize),
    out_c: usize,
    (kh, kw): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    (pad_h, pad_w): (usize, usize),
    groups: usize,
) -> Conv2dGeom {
    Conv2dGeom {
        in_c,
        in_h,
        in_w,
        out_c,
        kh,
        kw,
        stride_h,
        stride_w,
        pad_h,
        pad_w,
        groups,
    }
}

struct Conv {
    g: Conv2dGeom,
}

impl OpUnderTest for Conv {
    fn run<T: Tape<f32, Cpu>>(&self, x: Act<T>, p: &Built) -> Act<T> {
        conv2d(x, &p.mats[0], p.vecs.first(), &self.g)
    }
}

fn conv_params(g: &Conv2dGeom, bias: bool, seed: u64) -> Params {
    let mut r = rng(seed);
    let (o, k) = g.weight_shape();
    Params {
        mats: vec![(uniform(&mut r, o * k), (o, k))],
        vecs: if bias {
            vec![uniform(&mut r, g.out_c)]
        } else {
            vec![]
        },
    }
}

/// The textbook seven loops, as the reference for the forward pass.
fn naive_conv(g: &Conv2dGeom, n: usize, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let cin_g = g.in_c / g.groups;
    let cout_g = g.out_c / g.groups;
    let k = cin_g * g.kh * g.kw;
    let mut out = Vec::with_capacity(n * g.out_c * oh * ow);
    for s in 0..n {
        for co in 0..g.out_c {
            let grp = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[co]);
                    for cl in 0..cin_g {
                        let ci = grp * cin_g + cl;
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (oy * g.stride_h + i) as isize - g.pad_h as isize;
                                let ix = (ox * g.stride_w + j) as isize - g.pad_w as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize
                                {
                                    continue;
                                }
                                let xv = x[s * g.in_c * g.in_h * g.in_w
                                    + ci * g.in_h * g.in_w
                                    + iy as usize * g.in_w
                                    + ix as usize];
                                acc += w[co * k + (cl * g.kh + i) * g.kw + j] * xv;
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    out
}

/// (batch, geometry, with bias) for every path: GEMM, 1x1, grouped, direct (one input channel per group).
fn conv_grid() -> Vec<(usize, Conv2dGeom, bool)> {
    vec![
        (2, geom(3, (5, 5), 4, (3, 3), (1, 1), (1, 1), 1), true),
        (2, geom(2, (7, 7), 3, (3, 3), (2, 2), (1, 1), 1), true),
        (3, geom(2, (6, 5), 3, (2, 3), (2, 1), (1, 0), 1), true),
        (2, geom(4, (5, 6), 6, (3, 3), (1, 1), (1, 1), 2), true),
        (2, geom(4, (6, 6), 4, (3, 3), (1, 1), (1, 1), 4), true),
        (2, geom(3, (7, 6), 3, (5, 3), (2, 2), (2, 1), 3), false),
        (2, geom(2, (5, 5), 4, (3, 3), (1, 1), (0, 0), 2), true),
        (2, geom(2, (1, 40), 3, (1, 5), (1, 2), (0, 2), 1), true),
        (3, geom(3, (1, 40), 3, (1, 3), (1, 1), (0, 1), 3), true),
        (2, geom(1, (8, 8), 4, (3, 3), (1, 1), (1, 1), 1), true),
        (2, geom(4, (3, 5), 6, (1, 1), (1, 1), (0, 0), 1), true),
        (2, geom(4, (3, 5), 6, (1, 1), (1, 1), (0, 0), 2), false),
        (3, geom(2, (5, 7), 2, (1, 1), (2, 2), (0, 0), 1), true),
        (3, geom(2, (3, 3), 2, (5, 5), (1, 1), (1, 1), 1), true),
        // Larger feature maps, and a batch of seven.
        (2, geom(2, (16, 17), 3, (3, 3), (1, 1), (1, 1), 1), true),
        (2, geom(3, (16, 16), 2, (1, 1), (1, 1), (0, 0), 1), true),
        (7, geom(2, (7, 7), 4, (3, 3), (1, 1), (1, 1), 1), true),
        // The direct kernel without a bias: batch norm hands it its gradient plane by plane.
        (3, geom(2, (14, 14), 3, (3, 3), (1, 1), (1, 1), 1), false),
    ]
}

fn conv_gradcheck(n: usize, g: Conv2dGeom, bias: bool) {
    g.check().expect("test geometry is valid");
    let x = uniform(&mut rng(20), n * g.in_c * g.in_h * g.in_w);
    gradcheck(&Conv { g }, x, n, conv_params(&g, bias, 21), 1e-2);
}

#[test]
fn conv2d_forward_matches_a_naive_direct_convolution_on_every_geometry() {
    let dev = Cpu::default();
    for (n, g, bias) in conv_grid() {
        let x = uniform(&mut rng(22), n * g.in_c * g.in_h * g.in_w);
        let p = conv_params(&g, bias, 23);
        let b = p.build(&dev);
        let y = conv2d(
            dev.tensor_from_vec(x.clone(), (n, g.in_c * g.in_h * g.in_w)),
            &b.mats[0],
            b.vecs.first(),
            &g,
        );
        assert_eq!(*y.shape(), (n, g.out_c * g.out_h() * g.out_w()), "{g:?}");
        let want = naive_conv(&g, n, &x, &p.mats[0].0, p.vecs.first().map(|v| &v[..]));
        for (i, (a, e)) in y.as_vec().iter().zip(&want).enumerate() {
            assert!((a - e).abs() < 1e-4, "{g:?} y[{i}] = {a}, want {e}");
        }
    }
}

#[test]
fn conv2d_with_padding_matches_finite_differences() {
    conv_gradcheck(2, geom(3, (5, 5), 4, (3, 3), (1, 1), (1, 1), 1), true);
}

#[test]
fn conv2d_with_stride_two_and_padding_matches_finite_differences() {
    conv_gradcheck(2, geom(2, (7, 7), 3, (3, 3), (2, 2), (1, 1), 1), true);
}

#[test]
fn conv2d_with_rectangular_kernel_and_uneven_stride_matches_finite_differences() {
    conv_gradcheck(3, geom(2, (6, 5), 3, (2, 3), (2, 1), (1, 0), 1), true);
}

#[test]
fn conv2d_with_two_groups_matches_finite_differences() {
    conv_gradcheck(2, geom(4, (5, 6), 6, (3, 3), (1, 1), (1, 1), 2), true);
}

#[test]
fn depthwise_conv2d_matches_finite_differences() {
    conv_gradcheck(2, geom(4, (6, 6), 4, (3, 3), (1, 1), (1, 1), 4), true);
}

#[test]
fn depthwise_conv2d_with_stride_two_rectangular_kernel_and_no_bias_matches_finite_differences() {
    conv_gradcheck(2, geom(3, (7, 6), 3, (5, 3), (2, 2), (2, 1), 3), false);
}

#[test]
fn grouped_conv2d_with_a_channel_multiplier_matches_finite_differences() {
    conv_gradcheck(2, geom(2, (5, 5), 4, (3, 3), (1, 1), (0, 0), 2), true);
}

#[test]
fn conv1d_over_a_height_one_signal_matches_finite_differences() {
    conv_gradcheck(2, geom(2, (1, 40), 3, (1, 5), (1, 2), (0, 2), 1), true);
}

#[test]
fn depthwise_conv1d_over_a_height_one_signal_matches_finite_differences() {
    conv_gradcheck(3, geom(3, (1, 40), 3, (1, 3), (1, 1), (0, 1), 3), true);
}

#[test]
fn conv2d_on_a_single_channel_image_matches_finite_differences() {
    conv_gradcheck(2, geom(1, (8, 8), 4, (3, 3), (1, 1), (1, 1), 1), true);
}

#[test]
fn pointwise_conv2d_matches_finite_differences() {
    conv_gradcheck(2, geom(4, (3, 5), 6, (1, 1), (1, 1), (0, 0), 1), true);
    conv_gradcheck(2, geom(4, (3, 5), 6, (1, 1), (1, 1), (0, 0), 2), false);
    conv_gradcheck(3, geom(2, (5, 7), 2, (1, 1), (2, 2), (0, 0), 1), true);
}

#[test]
fn conv2d_on_a_larger_feature_map_matches_finite_differences() {
    conv_gradcheck(2, geom(2, (16, 17), 3, (3, 3), (1, 1), (1, 1), 1), true);
    conv_gradcheck(2, geom(3, (16, 16), 2, (1, 1), (1, 1), (0, 0), 1), true);
}

#[test]
fn conv2d_over_a_batch_of_seven_matches_finite_differences() {
    conv_gradcheck(7, geom(2, (7, 7), 3, (3, 3), (1, 1), (1, 1), 1), true);
    conv_gradcheck(7, geom(4, (7, 7), 2, (1, 1), (1, 1), (0, 0), 2), false);
}

#[test]
fn conv2d_whose_kernel_covers_the_padded_input_matches_finite_differences() {
    conv_gradcheck(3, geom(2, (3, 3), 2, (5, 5), (1, 1), (1, 1), 1), true);
}

#[test]
fn conv2d_gradients_accumulate_into_an_input_shared_by_two_branches() {
    // y = conv(x) + bn(x): x's gradient must be the sum of both branches' contributions.
    struct Branches {
        g: Conv2dGeom,
    }
    impl OpUnderTest for Branches {
        fn run<T: Tape<f32, Cpu>>(&self, x: Act<T>, p: &Built) -> Act<T> {
            let mut state = BatchNormState::new(self.g.in_c);
            let hw = self.g.in_h * self.g.in_w;
            let a = conv2d(x.with_empty_tape(), &p.mats[0], p.vecs.first(), &self.g);
            let b = batch_norm(x, &p.vecs[1], &p.vecs[2], self.g.in_c, hw, &mut state, true);
            a + b
        }
    }
    let g = geom(2, (4, 4), 2, (3, 3), (1, 1), (1, 1), 1);
    let mut p = conv_params(&g, true, 24);
    p.vecs.extend(bn_params(2, 25).vecs);
    let x = uniform(&mut rng(26), 3 * 2 * 16);
    gradcheck(&Branches { g }, x, 3, p, 1e-2);
}

#[test]
fn conv_geometry_errors_say_what_is_wrong() {
    let too_big = geom(1, (3, 3), 1, (5, 5), (1, 1), (0, 0), 1);
    assert_eq!(
        too_big.check().map_err(|e| e.to_string()),
        Err("kernel 5x5 larger than padded input 3x3".to_string())
    );
    let uneven = geom(6, (4, 4), 8, (3, 3), (1, 1), (1, 1), 4);
    assert_eq!(
        uneven.check().map_err(|e| e.to_string()),
        Err("in_c 6 not divisible by groups 4".to_string())
    );
    let zero_stride = geom(2, (4, 4), 2, (3, 3), (0, 1), (1, 1), 1);
    assert_eq!(
        zero_stride.check().map_err(|e| e.to_string()),
        Err("stride_h must be positive".to_string())
    );
}

#[test]
fn try_conv2d_rejects_inputs_of_the_wrong_width() {
    let dev = Cpu::default();
    let g = geom(2, (4, 4), 3, (3, 3), (1, 1), (1, 1), 1);
    let p = conv_params(&g, true, 27).build(&dev);
    let x = dev.tensor_from_vec(vec![0.0; 2 * 30], (2, 30));
    let err = try_conv2d(x, &p.mats[0], p.vecs.first(), &g).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("input has 30 values per sample, expected 32 (2x4x4)")
    );
}

#[test]
fn conv_geometry_reports_output_size_weight_shape_and_macs() {
    let g = geom(4, (28, 28), 8, (3, 3), (2, 2), (1, 1), 2);
    assert_eq!((g.out_h(), g.out_w()), (14, 14));
    assert_eq!(g.weight_shape(), (8, 18));
    assert_eq!(g.macs_per_sample(), 8 * 18 * 14 * 14);
}

// ---------------------------------------------------------------------------------------------
// Pooling

fn pgeom(
    c: usize,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    (pad_h, pad_w): (usize, usize),
) -> Pool2dGeom {
    Pool2dGeom {
        c,
        h,
        w,
        kh,
        kw,
        stride_h,
        stride_w,
        pad_h,
        pad_w,
        ceil: false,
    }
}

struct Pool {
    kind: PoolKind,
    g: Pool2dGeom,
}

impl OpUnderTest for Pool {
    fn run<T: Tape<f32, Cpu>>(&self, x: Act<T>, _: &Built) -> Act<T> {
        pool2d(x, self.kind, &self.g)
    }
}

/// Reference pooling: max over in-bounds values, mean over in-bounds values (padding not counted).
fn naive_pool(kind: PoolKind, g: &Pool2dGeom, n: usize, x: &[f32]) -> Vec<f32> {
    let mut out = vec![];
    for s in 0..n {
        for c in 0..g.c {
            for oy in 0..g.out_h() {
                for ox in 0..g.out_w() {
                    let mut vals = vec![];
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let iy = (oy * g.stride_h + i) as isize - g.pad_h as isize;
                            let ix = (ox * g.stride_w + j) as isize - g.pad_w as isize;
                            if iy >= 0 && ix >= 0 && iy < g.h as isize && ix < g.w as isize {
                                vals.push(
                                    x[((s * g.c + c) * g.h + iy as usize) * g.w + ix as usize],
                                );
                            }
                        }
                    }
                    out.push(match kind {
                        PoolKind::Max => vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
                        PoolKind::Avg => vals.iter().sum::<f32>() / vals.len() as f32,
                    });
                }
            }
        }
    }
    out
}

fn pool_grid() -> Vec<(usize, Pool2dGeom)> {
    vec![
        (2, pgeom(3, (6, 6), (2, 2), (2, 2), (0, 0))),
        (3, pgeom(2, (7, 5), (3, 3), (2, 2), (1, 1))),
        (2, pgeom(2, (5, 6), (2, 3), (1, 2), (1, 1))),
        (2, pgeom(3, (1, 40), (1, 4), (1, 3), (0, 2))),
        (1, pgeom(1, (3, 3), (3, 3), (1, 1), (1, 1))),
    ]
}

#[test]
fn pooling_forward_matches_a_naive_implementation_on_every_geometry() {
    let dev = Cpu::default();
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for (n, g) in pool_grid() {
            g.check().expect("test geometry is valid");
            let x = uniform(&mut rng(30), n * g.c * g.h * g.w);
            let y = pool2d(
                dev.tensor_from_vec(x.clone(), (n, g.c * g.h * g.w)),
                kind,
                &g,
            );
            assert_eq!(*y.shape(), (n, g.c * g.out_h() * g.out_w()));
            let want = naive_pool(kind, &g, n, &x);
            for (i, (a, e)) in y.as_vec().iter().zip(&want).enumerate() {
                assert!(
                    (a - e).abs() < 1e-6,
                    "{kind:?} {g:?} y[{i}] = {a}, want {e}"
                );
            }
        }
    }
}

#[test]
fn max_pool_never_picks_padding_even_when_every_value_is_negative() {
    let dev = Cpu::default();
    let g = pgeom(1, (2, 2), (2, 2), (1, 1), (1, 1));
    let y = pool2d(
        dev.tensor_from_vec(vec![-4.0, -3.0, -2.0, -1.0], (1, 4)),
        PoolKind::Max,
        &g,
    );
    assert_eq!(
        y.as_vec(),
        vec![-4.0, -3.0, -3.0, -2.0, -1.0, -1.0, -2.0, -1.0, -1.0]
    );
}

#[test]
fn avg_pool_leaves_padding_out_of_the_divisor() {
    let dev = Cpu::default();
    let g = pgeom(1, (2, 2), (2, 2), (2, 2), (1, 1));
    let y = pool2d(
        dev.tensor_from_vec(vec![1.0, 2.0, 3.0, 4.0], (1, 4)),
        PoolKind::Avg,
        &g,
    );
    assert_eq!(y.as_vec(), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn max_pool_with_stride_two_and_padding_matches_finite_differences() {
    for (n, g) in pool_grid() {
        let x = distinct(&mut rng(31), n * g.c * g.h * g.w);
        let op = Pool {
            kind: PoolKind::Max,
            g,
        };
        gradcheck(&op, x, n, Params::none(), 2e-3);
    }
}

#[test]
fn avg_pool_with_stride_two_and_padding_matches_finite_differences() {
    for (n, g) in pool_grid() {
        let x = uniform(&mut rng(32), n * g.c * g.h * g.w);
        let op = Pool {
            kind: PoolKind::Avg,
            g,
        };
        gradcheck(&op, x, n, Params::none(), 1e-2);
    }
}

struct Gap {
    c: usize,
    hw: usize,
}

impl OpUnderTest for Gap {
    fn run<T: Tape<f32, Cpu>>(&self, x: Act<T>, _: &Built) -> Act<T> {
        global_avg_pool(x, self.c, self.hw)
    }
}

#[test]
fn global_avg_pool_averages_each_channel_and_matches_finite_differences() {
    let dev = Cpu::default();
    let x: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
    let y = global_avg_pool(dev.tensor_from_vec(x, (2, 12)), 3, 4);
    assert_eq!(*y.shape(), (2, 3));
    assert_eq!(y.as_vec(), vec![1.5, 5.5, 9.5, 13.5, 17.5, 21.5]);
    let x = uniform(&mut rng(33), 3 * 5 * 7);
    gradcheck(&Gap { c: 5, hw: 7 }, x, 3, Params::none(), 1e-2);
}

#[test]
fn pool_geometry_errors_say_what_is_wrong() {
    assert_eq!(
        pgeom(1, (4, 4), (2, 2), (2, 2), (2, 0))
            .check()
            .map_err(|e| e.to_string()),
        Err("padding 2x0 more than half of kernel 2x2".to_string())
    );
    assert_eq!(
        pgeom(1, (1, 3), (2, 2), (1, 1), (0, 0))
            .check()
            .map_err(|e| e.to_string()),
        Err("kernel 2x2 larger than padded input 1x3".to_string())
    );
}

// ---------------------------------------------------------------------------------------------
// Inference

fn assert_tapeless(_: &Tensor<(usize, usize), f32, Cpu, NoneTape>) {}

#[test]
fn ops_without_a_tape_record_nothing_and_compute_the_same_values() {
    let dev = Cpu::default();
    let g = geom(2, (6, 6), 4, (3, 3), (1, 1), (1, 1), 1);
    let pg = pgeom(4, (6, 6), (2, 2), (2, 2), (0, 0));
    let p = conv_params(&g, true, 40);
    let bn = bn_params(4, 41);
    let (pb, bnb) = (p.build(&dev), bn.build(&dev));
    let x = dev.tensor_from_vec(uniform(&mut rng(42), 3 * 72), (3, 72));
    let net = |x: Act<NoneTape>, state: &mut BatchNormState| {
        let y = conv2d(x, &pb.mats[0], pb.vecs.first(), &g);
        let y = batch_norm(y, &bnb.vecs[0], &bnb.vecs[1], 4, 36, state, true);
        let y = pool2d(y, PoolKind::Max, &pg);
        global_avg_pool(y, 4, 9)
    };
    let mut state = BatchNormState::new(4);
    let y = net(x.clone(), &mut state);
    assert_tapeless(&y);
    // Training-mode batch norm still updates its statistics without a tape.
    assert_ne!(state, BatchNormState::new(4));

    let mut traced_state = BatchNormState::new(4);
    let traced = {
        let y = conv2d(x.leaky_trace(), &pb.mats[0], pb.vecs.first(), &g);
        let y = batch_norm(
            y,
            &bnb.vecs[0],
            &bnb.vecs[1],
            4,
            36,
            &mut traced_state,
            true,
        );
        let y = pool2d(y, PoolKind::Max, &pg);
        global_avg_pool(y, 4, 9)
    };
    assert_eq!(y.as_vec(), traced.as_vec());
    assert_eq!(state, traced_state);
    // With a tape, the backward pass reaches the parameters; without one there was nothing to run.
    let grads = traced.sum().backward();
    assert!(grads.get(&pb.mats[0]).as_vec().iter().any(|v| *v != 0.0));
}

#[test]
fn max_pool_lets_nan_win_like_pytorch_on_every_path() {
    let dev = Cpu::default();
    // The 2x2 / stride 2 fast path, then a 3x3 window through the general path.
    for g in [
        pgeom(1, (2, 4), (2, 2), (2, 2), (0, 0)),
        pgeom(1, (2, 4), (2, 3), (1, 1), (0, 1)),
    ] {
        let x = vec![1.0, 5.0, f32::NAN, 2.0, 3.0, 4.0, 0.0, -1.0];
        let y = pool2d(dev.tensor_from_vec(x.clone(), (1, 8)), PoolKind::Max, &g).as_vec();
        let want = naive_pool_nan(&g, &x);
        assert_eq!(y.len(), want.len());
        for (a, e) in y.iter().zip(&want) {
            assert!(
                a == e || (a.is_nan() && e.is_nan()),
                "{g:?}: {y:?} vs {want:?}"
            );
        }
    }
}

/// Max pooling where any NaN in a window makes the result NaN.
fn naive_pool_nan(g: &Pool2dGeom, x: &[f32]) -> Vec<f32> {
    let plain = naive_pool(PoolKind::Max, g, 1, x);
    let zeroed: Vec<f32> = x
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { 1.0 })
        .collect();
    // A window holds a NaN exactly when its minimum of the 0/1 mask is 0.
    let masks = naive_pool(
        PoolKind::Max,
        g,
        1,
        &zeroed.iter().map(|m| -m).collect::<Vec<_>>(),
    );
    plain
        .iter()
        .zip(masks)
        .map(|(&v, m)| if m == 0.0 { f32::NAN } else { v })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Fused linear layer

struct Lin {
    act: Option<Epilogue>,
}

impl OpUnderTest for Lin {
    fn run<T: Tape<f32, Cpu>>(&self, x: Act<T>, p: &Built) -> Act<T> {
        linear(x, &p.mats[0], &p.vecs[0], self.act, true)
    }
}

fn linear_params(k: usize, m: usize, seed: u64) -> Params {
    let mut r = rng(seed);
    Params {
        mats: vec![(uniform(&mut r, k * m), (k, m))],
        vecs: vec![uniform(&mut r, m)],
    }
}

const EPILOGUES: [Option<Epilogue>; 5] = [
    None,
    Some(Epilogue::Relu),
    Some(Epilogue::LeakyRelu),
    Some(Epilogue::Sigmoid),
    Some(Epilogue::Tanh),
];

#[test]
fn linear_with_every_fused_activation_matches_finite_differences() {
    for act in EPILOGUES {
        // Inputs away from zero kinks: with 1e-3 steps, no pre-activation crosses zero.
        let x = uniform(&mut rng(30), 5 * 7);
        gradcheck(&Lin { act }, x, 5, linear_params(7, 6, 31), 1e-3);
    }
}

#[test]
fn linear_forward_matches_dfdx_matmul_plus_bias_then_the_activation() {
    let dev = Cpu::default();
    let (n, k, m) = (9, 13, 11);
    let x = uniform(&mut rng(32), n * k);
    let p = linear_params(k, m, 33);
    let b = p.build(&dev);
    for act in EPILOGUES {
        let xt = dev.tensor_from_vec(x.clone(), (n, k));
        let y = linear(xt.clone(), &b.mats[0], &b.vecs[0], act, true);
        let z =
            xt.matmul(b.mats[0].clone()) + b.vecs[0].clone().broadcast_like::<_, Axis<0>>(&(n, m));
        let want = match act {
            None => z,
            Some(Epilogue::Relu) => z.relu(),
            Some(Epilogue::LeakyRelu) => leakyrelu(z, 0.01),
            Some(Epilogue::Sigmoid) => z.sigmoid(),
            Some(Epilogue::Tanh) => z.tanh(),
        };
        for (i, (a, e)) in y.as_vec().iter().zip(want.as_vec()).enumerate() {
            assert!((a - e).abs() < 1e-5, "{act:?} y[{i}] = {a}, want {e}");
        }
    }
}

#[test]
fn linear_without_input_gradient_still_trains_its_parameters() {
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(uniform(&mut rng(34), 4 * 3), (4, 3));
    let b = linear_params(3, 2, 35).build(&dev);
    let mut grads = linear(
        x.leaky_trace(),
        &b.mats[0],
        &b.vecs[0],
        Some(Epilogue::Tanh),
        false,
    )
    .sum()
    .backward();
    let with = linear(
        x.leaky_trace(),
        &b.mats[0],
        &b.vecs[0],
        Some(Epilogue::Tanh),
        true,
    )
    .sum()
    .backward();
    assert_eq!(
        grads.get(&b.mats[0]).as_vec(),
        with.get(&b.mats[0]).as_vec()
    );
    assert_eq!(
        grads.get(&b.vecs[0]).as_vec(),
        with.get(&b.vecs[0]).as_vec()
    );
    assert!(with.get(&x).as_vec().iter().any(|g| *g != 0.0));
    // Never written: a fresh, zeroed buffer (`get` would panic on a gradient nobody made).
    let untouched = grads.get_or_alloc_mut(&x).expect("allocates");
    assert!(untouched.iter().all(|g| *g == 0.0));
}

// ---------------------------------------------------------------------------------------------
// Activations fused into conv and batch norm: the same values and gradients as the op followed
// by dfdx's activation

fn dfdx_act<T: Tape<f32, Cpu>>(z: Act<T>, act: Epilogue) -> Act<T> {
    match act {
        Epilogue::Relu => z.relu(),
        Epilogue::LeakyRelu => leakyrelu(z, 0.01),
        Epilogue::Sigmoid => z.sigmoid(),
        Epilogue::Tanh => z.tanh(),
    }
}

type Traced = Act<OwnedTape<f32, Cpu>>;

/// Output and gradients (x first, then every parameter) of `sum(op(x) * r)`.
fn values_and_grads(
    run: &dyn Fn(Traced, &Built) -> Traced,
    x: &[f32],
    n: usize,
    p: &Params,
) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let b = p.build(&dev);
    let xt = dev.tensor_from_vec(x.to_vec(), (n, x.len() / n));
    let y = run(xt.leaky_trace(), &b);
    let r = dev.tensor_from_vec(uniform(&mut rng(98), y.shape().0 * y.shape().1), *y.shape());
    let out = y.as_vec();
    let g = (y * r).sum().backward();
    let mut all = vec![out, g.get(&xt).as_vec()];
    all.extend(b.mats.iter().map(|t| g.get(t).as_vec()));
    all.extend(b.vecs.iter().map(|t| g.get(t).as_vec()));
    all
}

fn assert_same(what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len());
    for (k, (u, v)) in a.iter().zip(b).enumerate() {
        for (i, (x, y)) in u.iter().zip(v).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{what}: part {k}[{i}] = {x}, want {y}"
            );
        }
    }
}

const ACTS: [Epilogue; 4] = [
    Epilogue::Relu,
    Epilogue::LeakyRelu,
    Epilogue::Sigmoid,
    Epilogue::Tanh,
];

#[test]
fn conv_with_a_fused_activation_matches_conv_then_the_activation() {
    for (n, g, bias) in conv_grid() {
        let x = uniform(&mut rng(40), n * g.in_c * g.in_h * g.in_w);
        let p = conv_params(&g, bias, 41);
        for act in ACTS {
            let fused = values_and_grads(
                &|x, b| {
                    try_conv2d_fused(x, &b.mats[0], b.vecs.first(), &g, Some(act), true).unwrap()
                },
                &x,
                n,
                &p,
            );
            let composed = values_and_grads(
                &|x, b| dfdx_act(conv2d(x, &b.mats[0], b.vecs.first(), &g), act),
                &x,
                n,
                &p,
            );
            assert_same(&format!("{g:?} {act:?}"), &fused, &composed);
        }
    }
}

#[test]
fn batch_norm_with_a_fused_activation_matches_batch_norm_then_the_activation() {
    for &(n, c, hw, training) in &[(4, 3, 9, true), (5, 4, 1, true), (3, 2, 4, false)] {
        let x = uniform(&mut rng(42), n * c * hw);
        let p = bn_params(c, 43);
        for act in ACTS {
            let run_fused = |x, b: &Built| {
                let mut s = BatchNormState::new(c);
                try_batch_norm_act(
                    x,
                    &b.vecs[0],
                    &b.vecs[1],
                    c,
                    hw,
                    &mut s,
                    training,
                    Some(act),
                )
                .unwrap()
            };
            let run_composed = |x, b: &Built| {
                let mut s = BatchNormState::new(c);
                dfdx_act(
                    batch_norm(x, &b.vecs[0], &b.vecs[1], c, hw, &mut s, training),
                    act,
                )
            };
            let fused = values_and_grads(&run_fused, &x, n, &p);
            let composed = values_and_grads(&run_composed, &x, n, &p);
            assert_same(
                &format!("bn n={n} c={c} hw={hw} {act:?}"),
                &fused,
                &composed,
            );
        }
    }
}

#[test]
fn conv_batch_norm_and_activation_as_one_op_match_the_three_ops() {
    for (n, g, bias) in conv_grid() {
        let x = uniform(&mut rng(46), n * g.in_c * g.in_h * g.in_w);
        let c = g.out_c;
        let mut p = conv_params(&g, bias, 47);
        // Parameters: conv weight; then conv bias (if any), gamma, beta.
        p.vecs.extend(bn_params(c, 48).vecs);
        let k = p.vecs.len() - 2;
        let hw = g.out_h() * g.out_w();
        for training in [true, false] {
            if training && n * hw < 2 {
                continue;
            }
            for act in std::iter::once(None).chain(ACTS.map(Some)) {
                let (s1, s2) = (
                    std::cell::RefCell::new(BatchNormState::new(c)),
                    std::cell::RefCell::new(BatchNormState::new(c)),
                );
                // Running statistics away from their defaults, so that evaluation uses them.
                for s in [&s1, &s2] {
                    let mut s = s.borrow_mut();
                    s.running_mean = uniform(&mut rng(49), c);
                    s.running_var = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
                }
                let fused = values_and_grads(
                    &|x, b| {
                        let conv_b = if bias { b.vecs.first() } else { None };
                        let (gamma, beta) = (&b.vecs[k], &b.vecs[k + 1]);
                        let mut s = s1.borrow_mut();
                        try_conv_bn_act(
                            x, &b.mats[0], conv_b, &g, gamma, beta, &mut s, training, act, true,
                        )
                        .unwrap()
                    },
                    &x,
                    n,
                    &p,
                );
                let composed = values_and_grads(
                    &|x, b| {
                        let conv_b = if bias { b.vecs.first() } else { None };
                        let (gamma, beta) = (&b.vecs[k], &b.vecs[k + 1]);
                        let mut s = s2.borrow_mut();
                        let y = conv2d(x, &b.mats[0], conv_b, &g);
                        let y = batch_norm(y, gamma, beta, c, hw, &mut s, training);
                        match act {
                            Some(a) => dfdx_act(y, a),
                            None => y,
                        }
                    },
                    &x,
                    n,
                    &p,
                );
                let what = format!("{g:?} training={training} {act:?}");
                assert_same(&what, &fused, &composed);
                assert_eq!(*s1.borrow(), *s2.borrow(), "{what}: running statistics");
            }
        }
    }
}

/// Pooling fused into the convolution with batch norm and activation gives the bits of the op
/// followed by `pool2d` or `global_avg_pool`: outputs, every gradient and the running
/// statistics, for 2x2 max windows (the fast path), 3x3 ones with padding and channel means,
/// every activation, in training and evaluation.
#[test]
fn pooling_fused_into_conv_batch_norm_keeps_every_bit() {
    let bits = |v: &[Vec<f32>]| -> Vec<Vec<u32>> {
        v.iter()
            .map(|p| p.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    let mut cases = 0;
    for (n, g, bias) in conv_grid() {
        let (c, oh, ow) = (g.out_c, g.out_h(), g.out_w());
        let hw = oh * ow;
        let x = uniform(&mut rng(50), n * g.in_c * g.in_h * g.in_w);
        let mut p = conv_params(&g, bias, 51);
        p.vecs.extend(bn_params(c, 52).vecs);
        let k = p.vecs.len() - 2;
        // Along a dimension of one value the window is one value, as the builder makes it.
        let along = |len: usize, k: usize, s: usize, pad: usize| {
            if len == 1 {
                (1, 1, 0)
            } else {
                (k, s, pad)
            }
        };
        // `None`: global average pooling.
        for window in [Some((2, 2, 0)), Some((3, 2, 1)), None] {
            let pool = window.map(|(kk, ss, pp)| {
                let (kh, sh, ph) = along(oh, kk, ss, pp);
                let (kw, sw, pw) = along(ow, kk, ss, pp);
                pgeom(c, (oh, ow), (kh, kw), (sh, sw), (ph, pw))
            });
            if pool.is_some_and(|p| p.check().is_err()) {
                continue;
            }
            for training in [true, false] {
                if training && n * hw < 2 {
                    continue;
                }
                for act in std::iter::once(None).chain(ACTS.map(Some)) {
                    let states = [0, 1].map(|_| {
                        let mut s = BatchNormState::new(c);
                        s.running_mean = uniform(&mut rng(53), c);
                        s.running_var = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
                        std::cell::RefCell::new(s)
                    });
                    let run = |fused: bool| {
                        values_and_grads(
                            &|x, b| {
                                let conv_b = if bias { b.vecs.first() } else { None };
                                let (gamma, beta) = (&b.vecs[k], &b.vecs[k + 1]);
                                let mut s = states[usize::from(fused)].borrow_mut();
                                if fused {
                                    let bn = (gamma, beta, &mut *s, training, act);
                                    let pooling = match &pool {
                                        Some(p) => Pooling::Max(p),
                                        None => Pooling::GlobalAvg,
                                    };
                                    try_conv_bn_act_pool(
                                        x,
                                        &b.mats[0],
                                        conv_b,
                                        &g,
                                        bn,
                                        Some(pooling),
                                        true,
                                    )
                                    .unwrap()
                                } else {
                                    let y = try_conv_bn_act(
                                        x, &b.mats[0], conv_b, &g, gamma, beta, &mut s, training,
                                        act, true,
                                    )
                                    .unwrap();
                                    match &pool {
                                        Some(p) => pool2d(y, PoolKind::Max, p),
                                        None => global_avg_pool(y, c, hw),
                                    }
                                }
                            },
                            &x,
                            n,
                            &p,
                        )
                    };
                    let (fused, composed) = (run(true), run(false));
                    let what = format!("{g:?} {pool:?} training={training} {act:?}");
                    assert_eq!(bits(&fused), bits(&composed), "{what}");
                    assert_eq!(
                        *states[0].borrow(),
                        *states[1].borrow(),
                        "{what}: statistics"
                    );
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 150, "only {cases} cases ran");
}

#[test]
fn conv_without_input_gradient_computes_the_same_parameter_gradients() {
    for (n, g, bias) in conv_grid() {
        let x = uniform(&mut rng(44), n * g.in_c * g.in_h * g.in_w);
        let p = conv_params(&g, bias, 45);
        let dev = Cpu::default();
        let b = p.build(&dev);
        let xt = dev.tensor_from_vec(x.clone(), (n, x.len() / n));
        let run = |input_grad| {
            try_conv2d_fused(
                xt.leaky_trace(),
                &b.mats[0],
                b.vecs.first(),
                &g,
                None,
                input_grad,
            )
            .unwrap()
            .sum()
            .backward()
        };
        let (mut without, with) = (run(false), run(true));
        assert_eq!(
            without.get(&b.mats[0]).as_vec(),
            with.get(&b.mats[0]).as_vec(),
            "{g:?}"
        );
        assert!(with.get(&xt).as_vec().iter().any(|v| *v != 0.0), "{g:?}");
        let untouched = without.get_or_alloc_mut(&xt).expect("allocates");
        assert!(untouched.iter().all(|v| *v == 0.0), "{g:?}");
    }
}

#[test]
fn activation_op_matches_dfdx_activations_in_values_and_gradients() {
    let x = uniform(&mut rng(46), 6 * 50)
        .into_iter()
        .map(|v| v * 6.0)
        .collect::<Vec<_>>();
    for act in ACTS {
        let ours = values_and_grads(
            &|x, _| try_activation(x, act).unwrap(),
            &x,
            6,
            &Params::none(),
        );
        let theirs = values_and_grads(&|x, _| dfdx_act(x, act), &x, 6, &Params::none());
        assert_same(&format!("{act:?}"), &ours, &theirs);
    }
}

/// The residual sum gives dfdx's sum bit for bit: the output and both inputs' gradients.
#[test]
fn residual_sum_matches_dfdx_bit_for_bit() {
    let dev = Cpu::default();
    let (n, f) = (3, 37);
    let a = dev.tensor_from_vec(uniform(&mut rng(60), n * f), (n, f));
    let b = dev.tensor_from_vec(uniform(&mut rng(61), n * f), (n, f));
    let r = dev.tensor_from_vec(uniform(&mut rng(62), n * f), (n, f));
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let run = |ours: bool| {
        // One tape through both inputs, as in a residual block.
        let (at, tape) = a.leaky_trace().split_tape();
        let (bt, tape) = b.clone().put_tape(tape).split_tape();
        let at = at.put_tape(tape);
        let y = if ours {
            try_add(at, &bt).unwrap()
        } else {
            at + bt
        };
        let out = bits(y.as_vec());
        let g = (y * r.clone()).sum().backward();
        (out, bits(g.get(&a).as_vec()), bits(g.get(&b).as_vec()))
    };
    let (ours, theirs) = (run(true), run(false));
    assert_eq!(ours, theirs);
    assert!(ours.2.iter().any(|&v| v != 0), "b has a gradient");
}
