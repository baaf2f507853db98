//! Builds a [`Network`] from a sampled architecture, checking every shape before any tensor op,
//! and counts what a network would cost without building it ([`cost`]).

use super::layer::{Layer, Network};
use super::ops::{BatchNormState, Conv2dGeom, Pool2dGeom, PoolKind};
use super::{Mat, NnError, Vector};
use crate::data::InputShape;
use crate::space::{Activation, Architecture, BlockKind, CnnArch, Downsample, MlpArch};
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Builds the network for `arch` on inputs of `shape` with `n_outputs` outputs.
pub fn build_network(
    arch: &Architecture,
    shape: InputShape,
    n_outputs: usize,
    rng: &mut ChaCha8Rng,
    dev: &Cpu,
) -> Result<Network, NnError> {
    let mut b = Builder::new(rng, Some(dev));
    let layers = b.layers(arch, shape, n_outputs)?;
    Ok(Network {
        layers,
        n_inputs: shape.len(),
        n_outputs,
        param_count: b.params,
        macs: b.macs,
    })
}

/// What a network would cost, counted from its architecture alone: no weight is allocated, so a
/// candidate of any size can be measured (and refused) before it exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Trainable scalars.
    pub params: usize,
    /// Multiply-adds of one forward pass for one sample.
    pub macs: u64,
    /// Values one sample's forward pass produces (layer outputs and convolution patch matrices),
    /// all of which training keeps for the backward pass.
    pub activations: u64,
    /// The largest single layer output of one sample.
    pub largest_activation: u64,
}

impl Cost {
    /// Bytes that training `networks` networks in lockstep (one per fold) at `batch` samples a
    /// step needs at its peak, roughly: per network, weights, gradients and two optimiser moments
    /// per parameter; once, the step's activations with their gradients, and evaluation in chunks
    /// of `eval_batch` samples.
    pub fn training_bytes(&self, batch: usize, eval_batch: usize, networks: usize) -> u64 {
        let f32s = (self.params as u64)
            .saturating_mul(4)
            .saturating_mul(networks.max(1) as u64)
            .saturating_add(
                (batch as u64)
                    .saturating_mul(self.activations)
                    .saturating_mul(2),
            )
            .saturating_add(
                (eval_batch as u64)
                    .saturating_mul(self.largest_activation)
                    .saturating_mul(2),
            );
        f32s.saturating_mul(4)
    }
}

/// Counts the cost of `arch` on inputs of `shape` with `n_outputs` outputs, checking its shapes
/// as [`build_network`] does.
pub fn cost(arch: &Architecture, shape: InputShape, n_outputs: usize) -> Result<Cost, NnError> {
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut b = Builder::new(&mut rng, None);
    b.layers(arch, shape, n_outputs)?;
    Ok(Cost {
        params: b.params,
        macs: b.macs,
        activations: b.activations,
        largest_activation: b.largest,
    })
}

/// The shape of activations between layers of a convolutional network.
#[derive(Clone, Copy, Debug)]
struct Chw {
    c: usize,
    h: usize,
    w: usize,
}

impl Chw {
    fn hw(&self) -> usize {
        self.h * self.w
    }
}

/// Walks an architecture once; with a device it also makes the weights, without one it only
/// counts (every weight tensor is then empty).
struct Builder<'a> {
    rng: &'a mut ChaCha8Rng,
    dev: Option<&'a Cpu>,
    /// Makes the empty placeholder tensors of a counting walk.
    placeholder: Cpu,
    params: usize,
    macs: u64,
    activations: u64,
    largest: u64,
}

/// Initialisation gain: He for rectifiers, Glorot-like otherwise.
fn fan_scale(act: Activation, fan_in: usize, fan_out: usize) -> f64 {
    match act {
        Activation::Relu | Activation::LeakyRelu | Activation::Gelu => (6.0 / fan_in as f64).sqrt(),
        Activation::Sigmoid | Activation::Tanh => (6.0 / (fan_in + fan_out) as f64).sqrt(),
    }
}

/// `a * b`, or an error naming what overflowed: sizes come from user-written spaces.
fn times(a: usize, b: usize, what: &str) -> Result<usize, NnError> {
    a.checked_mul(b)
        .ok_or_else(|| NnError::Impossible(format!("{what} is too large to count ({a} x {b})")))
}

impl<'a> Builder<'a> {
    fn new(rng: &'a mut ChaCha8Rng, dev: Option<&'a Cpu>) -> Builder<'a> {
        Builder {
            rng,
            dev,
            placeholder: Cpu::default(),
            params: 0,
            macs: 0,
            activations: 0,
            largest: 0,
        }
    }

    fn layers(
        &mut self,
        arch: &Architecture,
        shape: InputShape,
        n_outputs: usize,
    ) -> Result<Vec<Layer>, NnError> {
        match arch {
            Architecture::Mlp(m) => self.mlp(m, shape.len(), n_outputs),
            Architecture::Cnn(c) => self.cnn(c, shape, n_outputs),
        }
    }

    /// Counts one layer output of `n` values per sample.
    fn output(&mut self, n: usize) {
        self.activations = self.activations.saturating_add(n as u64);
        self.largest = self.largest.max(n as u64);
    }

    /// A `(rows, cols)` weight matrix drawn from U(-bound, bound).
    fn matrix(&mut self, rows: usize, cols: usize, bound: f64) -> Result<Mat, NnError> {
        let n = times(rows, cols, "a weight matrix")?;
        self.params = self.params.saturating_add(n);
        Ok(match self.dev {
            Some(dev) => {
                let w = (0..n)
                    .map(|_| self.rng.gen_range(-bound..=bound) as f32)
                    .collect();
                dev.tensor_from_vec(w, (rows, cols))
            }
            None => self.placeholder.tensor_from_vec(Vec::new(), (0, 0)),
        })
    }

    fn vector(&mut self, n: usize, value: f32) -> Vector {
        self.params = self.params.saturating_add(n);
        match self.dev {
            Some(dev) => dev.tensor_from_vec(vec![value; n], (n,)),
            None => self.placeholder.tensor_from_vec(Vec::new(), (0,)),
        }
    }

    fn linear(&mut self, n_in: usize, n_out: usize, act: Activation) -> Result<Layer, NnError> {
        let w = self.matrix(n_in, n_out, fan_scale(act, n_in, n_out))?;
        self.macs = self.macs.saturating_add((n_in * n_out) as u64);
        self.output(n_out);
        Ok(Layer::Linear {
            w,
            b: self.vector(n_out, 0.0),
        })
    }

    fn batch_norm(&mut self, c: usize, hw: usize) -> Layer {
        self.output(c.saturating_mul(hw));
        Layer::BatchNorm {
            gamma: self.vector(c, 1.0),
            beta: self.vector(c, 0.0),
            c,
            hw,
            state: BatchNormState::new(if self.dev.is_some() { c } else { 0 }),
        }
    }

    fn act(&mut self, a: Activation, n: usize) -> Layer {
        self.output(n);
        Layer::Act(a)
    }

    fn mlp(&mut self, m: &MlpArch, n_in: usize, n_out: usize) -> Result<Vec<Layer>, NnError> {
        if n_in == 0 || n_out == 0 {
            return Err(NnError::Impossible(format!(
                "a network needs inputs and outputs, got {n_in} -> {n_out}"
            )));
        }
        let mut layers = Vec::new();
        let mut width = n_in;
        for &h in &m.hidden {
            layers.push(self.linear(width, h, m.activation)?);
            if m.batch_norm {
                layers.push(self.batch_norm(h, 1));
            }
            layers.push(self.act(m.activation, h));
            if m.dropout > 0.0 {
                layers.push(Layer::Dropout(m.dropout));
            }
            width = h;
        }
        // The output layer is linear: Glorot scale keeps initial logits small.
        layers.push(self.linear(width, n_out, Activation::Tanh)?);
        Ok(layers)
    }

    /// A convolution with "same" padding along every dimension longer than one.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: Chw,
        out_c: usize,
        k: usize,
        stride: usize,
        groups: usize,
        bias: bool,
        act: Activation,
    ) -> Result<(Layer, Chw), NnError> {
        let (kh, sh) = if x.h == 1 { (1, 1) } else { (k, stride) };
        let (kw, sw) = if x.w == 1 { (1, 1) } else { (k, stride) };
        let geom = Conv2dGeom {
            in_c: x.c,
            in_h: x.h,
            in_w: x.w,
            out_c,
            kh,
            kw,
            stride_h: sh,
            stride_w: sw,
            pad_h: kh / 2,
            pad_w: kw / 2,
            groups,
        };
        geom.check()
            .map_err(|e| NnError::Impossible(e.to_string()))?;
        let fan_in = x.c / groups * kh * kw;
        let w = self.matrix(
            out_c,
            fan_in,
            fan_scale(act, fan_in, out_c * kh * kw / groups),
        )?;
        let out = Chw {
            c: out_c,
            h: geom.out_h(),
            w: geom.out_w(),
        };
        let out_n = times(out.c, out.hw(), "a feature map")?;
        self.macs = self
            .macs
            .saturating_add((out_n as u64).saturating_mul(fan_in as u64));
        // The output, and the patch matrix the convolution multiplies (kept for its backward).
        self.output(out_n);
        self.output(times(
            out.hw(),
            fan_in * groups,
            "a convolution's patch matrix",
        )?);
        let b = bias.then(|| self.vector(out_c, 0.0));
        Ok((Layer::Conv { w, b, geom }, out))
    }

    /// conv, then batch norm (or a bias), then the activation if any.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        layers: &mut Vec<Layer>,
        x: Chw,
        out_c: usize,
        k: usize,
        stride: usize,
        groups: usize,
        a: &CnnArch,
        act: bool,
    ) -> Result<Chw, NnError> {
        let (conv, y) = self.conv(x, out_c, k, stride, groups, !a.batch_norm, a.activation)?;
        layers.push(conv);
        if a.batch_norm {
            layers.push(self.batch_norm(y.c, y.hw()));
        }
        if act {
            layers.push(self.act(a.activation, y.c * y.hw()));
        }
        Ok(y)
    }

    fn pool(&mut self, x: Chw, kind: PoolKind) -> Result<(Layer, Chw), NnError> {
        let (kh, kw) = (if x.h == 1 { 1 } else { 2 }, if x.w == 1 { 1 } else { 2 });
        let geom = Pool2dGeom {
            c: x.c,
            h: x.h,
            w: x.w,
            kh,
            kw,
            stride_h: kh,
            stride_w: kw,
            pad_h: 0,
            pad_w: 0,
        };
        geom.check()
            .map_err(|e| NnError::Impossible(e.to_string()))?;
        let y = Chw {
            c: x.c,
            h: geom.out_h(),
            w: geom.out_w(),
        };
        self.macs = self.macs.saturating_add((y.c * y.hw() * kh * kw) as u64);
        self.output(y.c * y.hw());
        Ok((Layer::Pool { kind, geom }, y))
    }

    fn cnn(&mut self, a: &CnnArch, shape: InputShape, n_out: usize) -> Result<Vec<Layer>, NnError> {
        let mut x = Chw {
            c: shape.channels,
            h: shape.height,
            w: shape.width,
        };
        if x.c * x.h * x.w == 0 || n_out == 0 {
            return Err(NnError::Impossible(format!("empty input shape {shape}")));
        }
        let mut layers = Vec::new();
        x = self.conv_bn(&mut layers, x, a.width, a.kernel, 1, 1, a, true)?;
        for stage in 0..a.stages {
            let out_c = a.width << stage;
            let mut stride = 1;
            if stage > 0 {
                if x.h == 1 && x.w == 1 {
                    return Err(NnError::Impossible(format!(
                        "stage {} would downsample a 1x1 feature map ({} stages are too many for a {}x{} input)",
                        stage + 1,
                        a.stages,
                        shape.height,
                        shape.width
                    )));
                }
                let pool_kind = match a.downsample {
                    Downsample::MaxPool => Some(PoolKind::Max),
                    Downsample::AvgPool => Some(PoolKind::Avg),
                    Downsample::Stride if a.block == BlockKind::Dense => Some(PoolKind::Avg),
                    Downsample::Stride => None,
                };
                if a.block == BlockKind::Dense {
                    // DenseNet transition: BN, activation, 1x1 conv, then pooling.
                    if a.batch_norm {
                        layers.push(self.batch_norm(x.c, x.hw()));
                    }
                    layers.push(self.act(a.activation, x.c * x.hw()));
                    let (conv, y) = self.conv(x, out_c, 1, 1, 1, true, a.activation)?;
                    layers.push(conv);
                    x = y;
                }
                match pool_kind {
                    Some(kind) => {
                        let (p, y) = self.pool(x, kind)?;
                        layers.push(p);
                        x = y;
                    }
                    None => stride = 2,
                }
            }
            for block in 0..a.blocks_per_stage {
                let s = if block == 0 { stride } else { 1 };
                x = self.block(&mut layers, x, out_c, s, a)?;
            }
        }
        if a.block == BlockKind::Dense {
            if a.batch_norm {
                layers.push(self.batch_norm(x.c, x.hw()));
            }
            layers.push(self.act(a.activation, x.c * x.hw()));
        }
        self.output(x.c);
        layers.push(Layer::GlobalAvgPool { c: x.c, hw: x.hw() });
        if a.dropout > 0.0 {
            layers.push(Layer::Dropout(a.dropout));
        }
        layers.push(self.linear(x.c, n_out, Activation::Tanh)?);
        Ok(layers)
    }

    fn block(
        &mut self,
        layers: &mut Vec<Layer>,
        x: Chw,
        out_c: usize,
        stride: usize,
        a: &CnnArch,
    ) -> Result<Chw, NnError> {
        let k = a.kernel;
        match a.block {
            BlockKind::Plain => self.conv_bn(layers, x, out_c, k, stride, 1, a, true),
            BlockKind::Residual => {
                let mut body = Vec::new();
                let y = self.conv_bn(&mut body, x, out_c, k, stride, 1, a, true)?;
                let y = self.conv_bn(&mut body, y, out_c, k, 1, 1, a, false)?;
                let mut shortcut = Vec::new();
                if x.c != out_c || stride != 1 {
                    self.conv_bn(&mut shortcut, x, out_c, 1, stride, 1, a, false)?;
                }
                layers.push(Layer::Residual {
                    body,
                    shortcut,
                    act: Some(a.activation),
                });
                Ok(y)
            }
            BlockKind::Separable => {
                let mut body = Vec::new();
                let mut y = x;
                if a.expansion > 1 {
                    y = self.conv_bn(&mut body, y, x.c * a.expansion, 1, 1, 1, a, true)?;
                }
                y = self.conv_bn(&mut body, y, y.c, k, stride, y.c, a, true)?;
                // MobileNet v2 keeps the projection linear; v1 (no expansion) activates it.
                let y = self.conv_bn(&mut body, y, out_c, 1, 1, 1, a, a.expansion == 1)?;
                if a.expansion > 1 && stride == 1 && x.c == out_c {
                    layers.push(Layer::Residual {
                        body,
                        shortcut: Vec::new(),
                        act: None,
                    });
                } else {
                    layers.append(&mut body);
                }
                Ok(y)
            }
            BlockKind::Dense => {
                // Two dense layers per block; each sees every earlier output of the stage.
                let mut y = x;
                for _ in 0..2 {
                    let mut body = Vec::new();
                    if a.batch_norm {
                        body.push(self.batch_norm(y.c, y.hw()));
                    }
                    body.push(self.act(a.activation, y.c * y.hw()));
                    let (conv, g) = self.conv(y, a.growth_rate, k, 1, 1, true, a.activation)?;
                    body.push(conv);
                    layers.push(Layer::DenseGrow { body });
                    y = Chw {
                        c: y.c + g.c,
                        h: y.h,
                        w: y.w,
                    };
                }
                let _ = stride;
                Ok(y)
            }
        }
    }
}
