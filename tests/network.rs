//! Whole networks built from sampled architectures: backprop agrees with finite differences for
//! every layer and block type, and a few optimiser steps lower the loss.

use dfdx::prelude::*;
use nas::data::InputShape;
use nas::nn::{build_network, Network};
use nas::space::{
    Activation, Architecture, BlockKind, CnnArch, Downsample, MlpArch, OptimizerKind,
};
use nas::train::Optimizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn mlp(act: Activation, bn: bool) -> Architecture {
    Architecture::Mlp(MlpArch {
        hidden: vec![7, 5],
        activation: act,
        dropout: 0.0,
        batch_norm: bn,
    })
}

fn cnn(block: BlockKind, downsample: Downsample, bn: bool, expansion: usize) -> Architecture {
    Architecture::Cnn(CnnArch {
        stages: 2,
        blocks_per_stage: 1,
        block,
        width: 4,
        growth_rate: 3,
        expansion,
        kernel: 3,
        downsample,
        activation: Activation::Tanh,
        dropout: 0.0,
        batch_norm: bn,
    })
}

fn random_input(n: usize, f: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n * f).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// loss = sum(out * r): a random linear functional of the outputs, computed in training mode.
fn loss_value(net: &mut Network, dev: &Cpu, x: &[f32], n: usize, r: &[f32]) -> f64 {
    let xt = dev.tensor_from_vec(x.to_vec(), (n, net.n_inputs));
    let out = net.forward(xt, true).as_vec();
    out.iter()
        .zip(r)
        .map(|(o, r)| (*o as f64) * (*r as f64))
        .sum()
}

fn check_gradients(arch: &Architecture, shape: InputShape, n_out: usize, what: &str) {
    let dev = Cpu::seed_from_u64(0);
    // Seed chosen so that no max-pool window sits within eps of a tie (a kink, not a bug).
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut net = build_network(arch, shape, n_out, &mut rng, &dev).unwrap();
    let n = 4;
    let x = random_input(n, shape.len(), &mut rng);
    let r: Vec<f32> = (0..n * n_out).map(|_| rng.gen_range(-1.0..1.0)).collect();

    let xt = dev.tensor_from_vec(x.clone(), (n, shape.len()));
    let out = net.forward(xt.leaky_trace(), true);
    let rt = dev.tensor_from_vec(r.clone(), (n, n_out));
    let loss = (out * rt).sum();
    let mut grads = loss.backward();
    let mut analytic: Vec<(String, Vec<f32>)> = Vec::new();
    net.visit_params(&mut |name, p, _| {
        let g = p.grad(&mut grads).unwrap().to_vec();
        analytic.push((name, g));
    });
    assert!(!analytic.is_empty());

    // Small enough that a step rarely crosses a max-pool tie: behind a batch norm a weight's
    // step moves the normalised map by eps / (the weights' scale), and PyTorch's initial scale,
    // 1/sqrt(fan_in), is small (1e-3 crossed a tie on most seeds once it was the default).
    let eps = 2e-4f32;
    let mut checked = 0;
    for (pi, (name, g)) in analytic.iter().enumerate() {
        // A few entries of every parameter tensor.
        let len = g.len();
        for k in [0, len / 2, len - 1] {
            let mut values = Vec::new();
            net.visit_params(&mut |_, p, _| values.push(p.to_vec()));
            let set = |net: &mut Network, v: f32| {
                let mut i = 0;
                net.visit_params(&mut |_, mut p, _| {
                    if i == pi {
                        let mut w = values[pi].clone();
                        w[k] = v;
                        p.copy_from(&w);
                    }
                    i += 1;
                });
            };
            let w0 = values[pi][k];
            set(&mut net, w0 + eps);
            let up = loss_value(&mut net, &dev, &x, n, &r);
            set(&mut net, w0 - eps);
            let down = loss_value(&mut net, &dev, &x, n, &r);
            set(&mut net, w0);
            let numeric = (up - down) / (2.0 * eps as f64);
            let a = g[k] as f64;
            let tol = 2e-2 * numeric.abs().max(a.abs()).max(1e-1);
            assert!(
                (numeric - a).abs() <= tol,
                "{what}: d loss / d {name}[{k}]: backprop {a} vs finite differences {numeric}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "{what}: only {checked} entries checked");
}

#[test]
fn mlp_layers_match_finite_differences_for_every_activation() {
    for act in [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
    ] {
        for bn in [false, true] {
            let shape = InputShape::new(1, 1, 6);
            check_gradients(&mlp(act, bn), shape, 3, &format!("mlp {act:?} bn={bn}"));
        }
    }
}

#[test]
fn linear_model_without_hidden_layers_matches_finite_differences() {
    let arch = Architecture::Mlp(MlpArch {
        hidden: vec![],
        activation: Activation::Relu,
        dropout: 0.0,
        batch_norm: false,
    });
    check_gradients(&arch, InputShape::new(1, 1, 5), 2, "linear");
}

#[test]
fn every_block_type_matches_finite_differences_end_to_end() {
    let shape = InputShape::new(2, 6, 6);
    for block in [
        BlockKind::Plain,
        BlockKind::Residual,
        BlockKind::Dense,
        BlockKind::Separable,
    ] {
        for (down, bn) in [(Downsample::MaxPool, true), (Downsample::Stride, false)] {
            let what = format!("{block:?} {down:?} bn={bn}");
            check_gradients(&cnn(block, down, bn, 1), shape, 3, &what);
        }
    }
    let what = "separable with inverted residual";
    check_gradients(
        &cnn(BlockKind::Separable, Downsample::AvgPool, true, 2),
        shape,
        3,
        what,
    );
}

#[test]
fn cnn_on_a_one_dimensional_signal_matches_finite_differences() {
    let shape = InputShape::new(1, 1, 12);
    check_gradients(
        &cnn(BlockKind::Residual, Downsample::MaxPool, true, 1),
        shape,
        2,
        "1-D",
    );
}

#[test]
fn every_block_type_trains_a_few_steps_with_falling_loss() {
    let shape = InputShape::new(1, 8, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 32;
    let x = random_input(n, shape.len(), &mut rng);
    let labels: Vec<usize> = (0..n).map(|i| i % 4).collect();
    let mut onehot = vec![0.0f32; n * 4];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * 4 + l] = 1.0;
    }
    for block in [
        BlockKind::Plain,
        BlockKind::Residual,
        BlockKind::Dense,
        BlockKind::Separable,
    ] {
        let dev = Cpu::seed_from_u64(0);
        let arch = cnn(block, Downsample::MaxPool, true, 2);
        let mut net = build_network(&arch, shape, 4, &mut rng, &dev).unwrap();
        let mut opt = Optimizer::new(OptimizerKind::Adam, 1e-2, 0.0);
        let mut losses = Vec::new();
        for _ in 0..15 {
            let xt = dev.tensor_from_vec(x.clone(), (n, shape.len()));
            let y = dev.tensor_from_vec(onehot.clone(), (n, 4));
            let out = net.forward(xt.leaky_trace(), true);
            let loss = dfdx::losses::cross_entropy_with_logits_loss(out, y);
            losses.push(loss.array());
            let mut grads = loss.backward();
            opt.step(&mut net, &mut grads).unwrap();
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(
            last < 0.7 * first,
            "{block:?}: loss went from {first} to {last}: {losses:?}"
        );
    }
}

#[test]
fn too_many_stages_for_the_input_is_an_impossible_architecture() {
    let dev = Cpu::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut arch = cnn(BlockKind::Plain, Downsample::MaxPool, true, 1);
    if let Architecture::Cnn(c) = &mut arch {
        c.stages = 5;
    }
    let err = match build_network(&arch, InputShape::new(1, 8, 8), 10, &mut rng, &dev) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("5 stages on 8x8 should be impossible"),
    };
    assert!(err.contains("impossible architecture"), "{err}");
}

/// Asserts that every value of `values` lies within PyTorch's bound `1/sqrt(fan_in)` and that the
/// draws fill it (not He's sqrt(6/fan_in) nor a narrower rule; the smallest tensor checked, 10
/// biases, misses half the bound with probability 0.1%).
fn assert_fills_pytorch_bound(name: &str, values: &[f32], fan_in: usize) {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(largest <= bound, "{name}: {largest} above {bound}");
    assert!(largest > 0.5 * bound, "{name}: {largest} far below {bound}");
}

/// Weights and biases start as PyTorch's `Linear` and `Conv2d` defaults do: uniform on
/// `[-1/sqrt(fan_in), 1/sqrt(fan_in)]` whatever activation follows; batch norm at gamma 1, beta 0.
#[test]
fn initial_parameters_follow_pytorchs_default_bounds() {
    let dev = Cpu::seed_from_u64(0);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for activation in [Activation::Relu, Activation::Tanh] {
        // 64 inputs -> 40 -> 30 -> 10: weight and bias of each layer, fan-ins 64, 40, 30.
        let arch = Architecture::Mlp(MlpArch {
            hidden: vec![40, 30],
            activation,
            dropout: 0.0,
            batch_norm: false,
        });
        let shape = InputShape::new(1, 8, 8);
        let mut net = build_network(&arch, shape, 10, &mut rng, &dev).unwrap();
        let params = net.snapshot();
        let fans = [64, 64, 40, 40, 30, 30];
        assert_eq!(params.len(), fans.len(), "{params:?}");
        for ((name, values), fan_in) in params.iter().zip(fans) {
            assert_fills_pytorch_bound(name, values, fan_in);
        }
    }
    // A convolution's fan-in is in-channels x kernel area; batch norm starts at 1 and 0.
    let arch = cnn(BlockKind::Plain, Downsample::MaxPool, true, 1);
    let mut net = build_network(&arch, InputShape::new(2, 6, 6), 3, &mut rng, &dev).unwrap();
    let params = net.snapshot();
    let (name, stem) = &params[0];
    assert_fills_pytorch_bound(name, stem, 2 * 3 * 3);
    let (gamma, beta) = (&params[1].1, &params[2].1);
    assert!(gamma.iter().all(|g| *g == 1.0) && beta.iter().all(|b| *b == 0.0));
}

/// Evaluation's chunks are sized by the widest layer output, not by what a convolution keeps
/// for backward: a 64-channel network over 8x8 maps with 5x5 kernels (the CNN searches'
/// favourite) once counted its im2col patch matrix (64 x 25 values per position, 25 times its
/// output) and evaluated 16 samples at a time, recomputing each layer's kernel spectra every 16.
#[test]
fn evaluation_chunks_follow_the_widest_layer_output() {
    let arch = Architecture::Cnn(CnnArch {
        stages: 1,
        blocks_per_stage: 1,
        block: BlockKind::Residual,
        width: 64,
        growth_rate: 3,
        expansion: 1,
        kernel: 5,
        downsample: Downsample::MaxPool,
        activation: Activation::Relu,
        dropout: 0.0,
        batch_norm: true,
    });
    let cost = nas::nn::cost(&arch, InputShape::new(1, 8, 8), 10).unwrap();
    assert_eq!(cost.largest_activation, 64 * 8 * 8);
    assert_eq!(nas::train::eval_rows(cost.largest_activation), 64);
    // Training still counts what the convolutions keep beside their outputs.
    assert!(cost.activations > 4 * 64 * 8 * 8, "{}", cost.activations);
}
