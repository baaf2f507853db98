//! Builds a [`Network`] from a sampled architecture, checking every shape before any tensor op.

use super::layer::{Layer, Network};
use super::ops::{BatchNormState, Conv2dGeom, Pool2dGeom, PoolKind};
use super::{NnError, Vector};
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
    let mut b = Builder {
        rng,
        dev,
        params: 0,
        macs: 0,
    };
    let layers = match arch {
        Architecture::Mlp(m) => b.mlp(m, shape.len(), n_outputs)?,
        Architecture::Cnn(c) => b.cnn(c, shape, n_outputs)?,
    };
    Ok(Network {
        layers,
        n_inputs: shape.len(),
        n_outputs,
        param_count: b.params,
        macs: b.macs,
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

struct Builder<'a> {
    rng: &'a mut ChaCha8Rng,
    dev: &'a Cpu,
    params: usize,
    macs: u64,
}

/// Initialisation gain: He for rectifiers, Glorot-like otherwise.
fn fan_scale(act: Activation, fan_in: usize, fan_out: usize) -> f64 {
    match act {
        Activation::Relu | Activation::LeakyRelu | Activation::Gelu => (6.0 / fan_in as f64).sqrt(),
        Activation::Sigmoid | Activation::Tanh => (6.0 / (fan_in + fan_out) as f64).sqrt(),
    }
}

impl Builder<'_> {
    fn uniform(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.gen_range(-bound..=bound) as f32)
            .collect()
    }

    fn vector(&mut self, values: Vec<f32>) -> Vector {
        self.params += values.len();
        let n = values.len();
        self.dev.tensor_from_vec(values, (n,))
    }

    fn linear(&mut self, n_in: usize, n_out: usize, act: Activation) -> Layer {
        let bound = fan_scale(act, n_in, n_out);
        let w = self.uniform(n_in * n_out, bound);
        self.params += w.len();
        self.macs += (n_in * n_out) as u64;
        Layer::Linear {
            w: self.dev.tensor_from_vec(w, (n_in, n_out)),
            b: self.vector(vec![0.0; n_out]),
        }
    }

    fn batch_norm(&mut self, c: usize, hw: usize) -> Layer {
        Layer::BatchNorm {
            gamma: self.vector(vec![1.0; c]),
            beta: self.vector(vec![0.0; c]),
            c,
            hw,
            state: BatchNormState::new(c),
        }
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
            layers.push(self.linear(width, h, m.activation));
            if m.batch_norm {
                layers.push(self.batch_norm(h, 1));
            }
            layers.push(Layer::Act(m.activation));
            if m.dropout > 0.0 {
                layers.push(Layer::Dropout(m.dropout));
            }
            width = h;
        }
        // The output layer is linear: Glorot scale keeps initial logits small.
        layers.push(self.linear(width, n_out, Activation::Tanh));
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
        let n = out_c * fan_in;
        let w = self.uniform(n, fan_scale(act, fan_in, out_c * kh * kw / groups));
        self.params += n;
        let out = Chw {
            c: out_c,
            h: geom.out_h(),
            w: geom.out_w(),
        };
        self.macs += (out.c * out.hw() * fan_in) as u64;
        let b = if bias {
            Some(self.vector(vec![0.0; out_c]))
        } else {
            None
        };
        let layer = Layer::Conv {
            w: self.dev.tensor_from_vec(w, (out_c, fan_in)),
            b,
            geom,
        };
        Ok((layer, out))
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
            layers.push(Layer::Act(a.activation));
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
        self.macs += (y.c * y.hw() * kh * kw) as u64;
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
                    layers.push(Layer::Act(a.activation));
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
            layers.push(Layer::Act(a.activation));
        }
        layers.push(Layer::GlobalAvgPool { c: x.c, hw: x.hw() });
        if a.dropout > 0.0 {
            layers.push(Layer::Dropout(a.dropout));
        }
        layers.push(self.linear(x.c, n_out, Activation::Tanh));
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
                    body.push(Layer::Act(a.activation));
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
