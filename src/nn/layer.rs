//! Layers as plain data holding their parameters ([`super::ops::Param`]: values, and a tensor
//! naming the gradient), and their forward passes.

use super::ops::{self, BatchNormState, Conv2dGeom, Pool2dGeom, PoolKind};
use super::{Mat, MatParam, VecParam};
use crate::space::Activation;
use dfdx::prelude::*;

/// One layer of a network. Composite layers hold sub-layers.
pub enum Layer {
    /// `x W + b`, with `W` of shape (in, out).
    Linear {
        w: MatParam,
        b: VecParam,
    },
    Act(Activation),
    Dropout(f64),
    /// Batch norm over `c` channels of `hw` positions each (hw = 1 after dense layers).
    BatchNorm {
        gamma: VecParam,
        beta: VecParam,
        c: usize,
        hw: usize,
        state: BatchNormState,
    },
    Conv {
        w: MatParam,
        b: Option<VecParam>,
        geom: Conv2dGeom,
    },
    Pool {
        kind: PoolKind,
        geom: Pool2dGeom,
    },
    GlobalAvgPool {
        c: usize,
        hw: usize,
    },
    /// ResNet-style `act(body(x) + shortcut(x))`; an empty shortcut is the identity.
    Residual {
        body: Vec<Layer>,
        shortcut: Vec<Layer>,
        act: Option<Activation>,
    },
    /// DenseNet-style growth: `concat(x, body(x))` along channels.
    DenseGrow {
        body: Vec<Layer>,
    },
    /// A DAG of `nodes` nodes: node 0 is the input, node j sums the ops of the edges `(i, j, op)`
    /// into it (zeros when none), the last node is the output. Every op keeps the shape.
    Cell {
        nodes: usize,
        edges: Vec<(usize, usize, Vec<Layer>)>,
    },
}

/// A mutable view of one parameter, for optimisers and export.
pub enum ParamMut<'a> {
    Matrix(&'a mut MatParam),
    Vector(&'a mut VecParam),
}

impl ParamMut<'_> {
    pub fn len(&self) -> usize {
        self.values().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its shape: `[rows, cols]` or `[len]`.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            ParamMut::Matrix(m) => {
                let (r, c) = *m.shape();
                vec![r, c]
            }
            ParamMut::Vector(v) => vec![v.shape().0],
        }
    }

    pub fn values(&self) -> &[f32] {
        match self {
            ParamMut::Matrix(m) => m.values(),
            ParamMut::Vector(v) => v.values(),
        }
    }

    pub fn values_mut(&mut self) -> &mut [f32] {
        match self {
            ParamMut::Matrix(m) => m.values_mut(),
            ParamMut::Vector(v) => v.values_mut(),
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.values().to_vec()
    }

    pub fn copy_from(&mut self, src: &[f32]) {
        self.values_mut().copy_from_slice(src)
    }

    /// Its gradient in `grads` (allocated as zeros when the pass left none).
    pub fn grad<'g>(&self, grads: &'g mut Gradients<f32, Cpu>) -> Result<&'g mut [f32], CpuError> {
        Ok(match self {
            ParamMut::Matrix(m) => grads.get_or_alloc_mut(m.key())?,
            ParamMut::Vector(v) => grads.get_or_alloc_mut(v.key())?,
        })
    }
}

fn activate<T: Tape<f32, Cpu>>(x: Mat<T>, a: Activation) -> Mat<T> {
    match a {
        // dfdx computes these in place when it holds the only reference to `x`: cheaper than our
        // op, which copies in and out. For the transcendental ones our SIMD math wins.
        Activation::Relu => x.relu(),
        Activation::LeakyRelu => dfdx::tensor_ops::leakyrelu(x, 0.01),
        Activation::Gelu => x.fast_gelu(),
        Activation::Sigmoid => activation_op(x, ops::Epilogue::Sigmoid),
        Activation::Tanh => activation_op(x, ops::Epilogue::Tanh),
    }
}

fn activation_op<T: Tape<f32, Cpu>>(x: Mat<T>, e: ops::Epilogue) -> Mat<T> {
    ops::try_activation(x, e).unwrap_or_else(|e| panic!("activation: {e}"))
}

/// The activations a layer's op applies itself (GELU's derivative needs its input, not its output).
fn epilogue(a: Activation) -> Option<ops::Epilogue> {
    match a {
        Activation::Relu => Some(ops::Epilogue::Relu),
        Activation::LeakyRelu => Some(ops::Epilogue::LeakyRelu),
        Activation::Sigmoid => Some(ops::Epilogue::Sigmoid),
        Activation::Tanh => Some(ops::Epilogue::Tanh),
        Activation::Gelu => None,
    }
}

impl Layer {
    pub fn forward<T: Tape<f32, Cpu>>(&mut self, x: Mat<T>, train: bool) -> Mat<T> {
        self.forward_fused(x, train, None, true)
    }

    /// The forward pass, with `act` applied by the layer's own op (linear, conv and batch-norm
    /// layers take one) and, with `input_grad` false, no gradient for `x` (linear and conv
    /// layers skip it).
    fn forward_fused<T: Tape<f32, Cpu>>(
        &mut self,
        x: Mat<T>,
        train: bool,
        act: Option<ops::Epilogue>,
        input_grad: bool,
    ) -> Mat<T> {
        match self {
            Layer::Linear { w, b } => ops::linear(x, w, b, act, input_grad),
            Layer::Act(a) => activate(x, *a),
            Layer::Dropout(p) => {
                if train && *p > 0.0 {
                    x.dropout(*p)
                } else {
                    x
                }
            }
            Layer::BatchNorm {
                gamma,
                beta,
                c,
                hw,
                state,
            } => ops::try_batch_norm_act(x, gamma, beta, *c, *hw, state, train, act)
                .unwrap_or_else(|e| panic!("batch_norm: {e}")),
            Layer::Conv { w, b, geom } => {
                ops::try_conv2d_fused(x, w, b.as_ref(), geom, act, input_grad)
                    .unwrap_or_else(|e| panic!("conv2d: {e}"))
            }
            Layer::Pool { kind, geom } => ops::pool2d(x, *kind, geom),
            Layer::GlobalAvgPool { c, hw } => ops::global_avg_pool(x, *c, *hw),
            Layer::Residual {
                body,
                shortcut,
                act,
            } => {
                let (x, tape) = x.split_tape();
                let f = run(body, x.clone().put_tape(tape), train);
                let (f, tape) = f.split_tape();
                let s = run(shortcut, x.put_tape(tape), train);
                let (s, tape) = s.split_tape();
                let y = ops::try_add(f.put_tape(tape), &s)
                    .unwrap_or_else(|e| panic!("residual sum: {e}"));
                match act {
                    Some(a) => activate(y, *a),
                    None => y,
                }
            }
            Layer::DenseGrow { body } => {
                let (x, tape) = x.split_tape();
                let f = run(body, x.clone().put_tape(tape), train);
                let (f, tape) = f.split_tape();
                (x.put_tape(tape), f).concat_along(Axis::<1>)
            }
            Layer::Cell { nodes, edges } => {
                let (x, mut tape) = x.split_tape();
                let zeros = || {
                    let shape = *x.shape();
                    x.device().zeros_like(&shape)
                };
                let mut outs: Vec<Option<Mat>> = vec![None; *nodes];
                outs[0] = Some(x.clone());
                for j in 1..*nodes {
                    let mut sum: Option<Mat> = None;
                    for (i, _, op) in edges.iter_mut().filter(|e| e.1 == j) {
                        let input = outs[*i].clone().unwrap_or_else(zeros);
                        let (y, t) = run(op, input.put_tape(tape), train).split_tape();
                        tape = t;
                        sum = Some(match sum {
                            None => y,
                            Some(s) => {
                                let (s, t) = (s.put_tape(tape) + y).split_tape();
                                tape = t;
                                s
                            }
                        });
                    }
                    outs[j] = sum;
                }
                let last = outs.pop().flatten().unwrap_or_else(zeros);
                last.put_tape(tape)
            }
        }
    }

    /// Visits every parameter in a fixed order with its path-like name.
    pub fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(String, ParamMut<'_>, bool)) {
        match self {
            Layer::Linear { w, b } => {
                f(format!("{prefix}.weight"), ParamMut::Matrix(w), true);
                f(format!("{prefix}.bias"), ParamMut::Vector(b), false);
            }
            Layer::BatchNorm { gamma, beta, .. } => {
                f(format!("{prefix}.gamma"), ParamMut::Vector(gamma), false);
                f(format!("{prefix}.beta"), ParamMut::Vector(beta), false);
            }
            Layer::Conv { w, b, .. } => {
                f(format!("{prefix}.weight"), ParamMut::Matrix(w), true);
                if let Some(b) = b {
                    f(format!("{prefix}.bias"), ParamMut::Vector(b), false);
                }
            }
            Layer::Residual { body, shortcut, .. } => {
                visit_all(body, &format!("{prefix}.body"), f);
                visit_all(shortcut, &format!("{prefix}.shortcut"), f);
            }
            Layer::DenseGrow { body } => visit_all(body, &format!("{prefix}.body"), f),
            Layer::Cell { edges, .. } => {
                for (i, j, op) in edges {
                    visit_all(op, &format!("{prefix}.edge{i}_{j}"), f);
                }
            }
            Layer::Act(_)
            | Layer::Dropout(_)
            | Layer::Pool { .. }
            | Layer::GlobalAvgPool { .. } => {}
        }
    }

    /// Visits every batch-norm running statistic (not trained, but part of the model).
    pub fn visit_state(&mut self, prefix: &str, f: &mut dyn FnMut(String, &mut BatchNormState)) {
        match self {
            Layer::BatchNorm { state, .. } => f(format!("{prefix}.running"), state),
            Layer::Residual { body, shortcut, .. } => {
                for (i, l) in body.iter_mut().enumerate() {
                    l.visit_state(&format!("{prefix}.body.{i}"), f);
                }
                for (i, l) in shortcut.iter_mut().enumerate() {
                    l.visit_state(&format!("{prefix}.shortcut.{i}"), f);
                }
            }
            Layer::DenseGrow { body } => {
                for (i, l) in body.iter_mut().enumerate() {
                    l.visit_state(&format!("{prefix}.body.{i}"), f);
                }
            }
            Layer::Cell { edges, .. } => {
                for (i, j, op) in edges {
                    for (k, l) in op.iter_mut().enumerate() {
                        l.visit_state(&format!("{prefix}.edge{i}_{j}.{k}"), f);
                    }
                }
            }
            _ => {}
        }
    }
}

fn visit_all(layers: &mut [Layer], prefix: &str, f: &mut dyn FnMut(String, ParamMut<'_>, bool)) {
    for (i, l) in layers.iter_mut().enumerate() {
        l.visit(&format!("{prefix}.{i}"), f);
    }
}

/// Runs layers in sequence.
pub fn run<T: Tape<f32, Cpu>>(layers: &mut [Layer], x: Mat<T>, train: bool) -> Mat<T> {
    run_from(layers, x, train, true)
}

/// Runs layers in sequence: a convolution followed by batch norm runs as one op, and an
/// activation that follows a linear, conv or batch-norm layer is folded into its op; with
/// `input_grad` false the first layer does not compute `x`'s gradient.
fn run_from<T: Tape<f32, Cpu>>(
    layers: &mut [Layer],
    mut x: Mat<T>,
    train: bool,
    mut input_grad: bool,
) -> Mat<T> {
    let mut i = 0;
    while i < layers.len() {
        // A convolution followed by batch norm (and an activation it can apply) is one op.
        if let [Layer::Conv { w, b, geom }, Layer::BatchNorm {
            gamma, beta, state, ..
        }, rest @ ..] = &mut layers[i..]
        {
            let act = match rest.first() {
                Some(Layer::Act(a)) => epilogue(*a),
                _ => None,
            };
            // So is a max or global average pooling right after them.
            let pool = match rest.get(usize::from(act.is_some())) {
                Some(Layer::Pool {
                    kind: PoolKind::Max,
                    geom,
                }) => Some(ops::Pooling::Max(geom)),
                Some(Layer::GlobalAvgPool { c, hw })
                    if (*c, *hw) == (geom.out_c, geom.out_h() * geom.out_w()) =>
                {
                    Some(ops::Pooling::GlobalAvg)
                }
                _ => None,
            };
            x = ops::try_conv_bn_act_pool(
                x,
                w,
                b.as_ref(),
                geom,
                (&*gamma, &*beta, state, train, act),
                pool,
                input_grad,
            )
            .unwrap_or_else(|e| panic!("conv2d + batch_norm: {e}"));
            input_grad = true;
            i += 2 + usize::from(act.is_some()) + usize::from(pool.is_some());
            continue;
        }
        let fused = match (&layers[i], layers.get(i + 1)) {
            (
                Layer::Linear { .. } | Layer::Conv { .. } | Layer::BatchNorm { .. },
                Some(Layer::Act(a)),
            ) => epilogue(*a),
            _ => None,
        };
        x = layers[i].forward_fused(x, train, fused, input_grad);
        input_grad = true;
        i += if fused.is_some() { 2 } else { 1 };
    }
    x
}

/// A built network: layers, input and output sizes, and its cost.
pub struct Network {
    pub layers: Vec<Layer>,
    pub n_inputs: usize,
    pub n_outputs: usize,
    /// Number of trainable scalars.
    pub param_count: usize,
    /// Multiply-adds of one forward pass for one sample.
    pub macs: u64,
    /// Floats of the largest single layer output of one sample.
    pub largest_activation: u64,
}

impl Network {
    /// The network's output for a batch. No gradient flows into the batch itself: nothing
    /// trains the data.
    pub fn forward<T: Tape<f32, Cpu>>(&mut self, x: Mat<T>, train: bool) -> Mat<T> {
        run_from(&mut self.layers, x, train, false)
    }

    /// [`Network::forward`], with the gradient of the batch itself too (saliency maps, checks).
    pub fn forward_with_input_grad<T: Tape<f32, Cpu>>(&mut self, x: Mat<T>, train: bool) -> Mat<T> {
        run_from(&mut self.layers, x, train, true)
    }

    /// Visits every trainable parameter: name, tensor, and whether weight decay applies.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(String, ParamMut<'_>, bool)) {
        visit_all(&mut self.layers, "layers", f);
    }

    pub fn visit_state(&mut self, f: &mut dyn FnMut(String, &mut BatchNormState)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_state(&format!("layers.{i}"), f);
        }
    }

    /// All parameters and running statistics, by name, in a fixed order.
    pub fn snapshot(&mut self) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        self.visit_params(&mut |name, p, _| out.push((name, p.to_vec())));
        self.visit_state(&mut |name, s| {
            out.push((format!("{name}_mean"), s.running_mean.clone()));
            out.push((format!("{name}_var"), s.running_var.clone()));
        });
        out
    }
}
