//! SGD (with momentum) and Adam over a network's parameters, reusing dfdx's update kernels.

use crate::nn::{Network, ParamMut};
use crate::space::OptimizerKind;
use dfdx::optim::{AdamConfig, Momentum, SgdConfig, WeightDecay};
use dfdx::prelude::*;

type Buf = <Cpu as Storage<f32>>::Vec;

/// Optimiser state for one network: one or two moment buffers per parameter.
pub struct Optimizer {
    kind: OptimizerKind,
    lr: f64,
    weight_decay: f64,
    t: i32,
    m1: Vec<Buf>,
    m2: Vec<Buf>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, lr: f64, weight_decay: f64) -> Self {
        Optimizer {
            kind,
            lr,
            weight_decay,
            t: 0,
            m1: Vec::new(),
            m2: Vec::new(),
        }
    }

    /// Applies one update from `grads`; L2 weight decay applies to weights, not biases or norms.
    pub fn step(
        &mut self,
        dev: &Cpu,
        net: &mut Network,
        grads: &mut Gradients<f32, Cpu>,
    ) -> Result<(), String> {
        self.t += 1;
        let decay = (self.weight_decay > 0.0).then_some(WeightDecay::L2(self.weight_decay));
        let (kind, lr, t) = (self.kind, self.lr, self.t);
        let (m1, m2) = (&mut self.m1, &mut self.m2);
        let mut i = 0;
        let mut result = Ok(());
        net.visit_params(&mut |name, p, decays| {
            if result.is_err() {
                return;
            }
            if m1.len() <= i {
                let n = p.len();
                match (dev.try_alloc_len(n), dev.try_alloc_len(n)) {
                    (Ok(a), Ok(b)) => {
                        m1.push(a);
                        m2.push(b);
                    }
                    _ => {
                        result = Err(format!("cannot allocate optimiser state for {name}"));
                        return;
                    }
                }
            }
            let wd = if decays { decay } else { None };
            let r = match p {
                ParamMut::Matrix(w) => update(kind, lr, wd, t, w, &mut m1[i], &mut m2[i], grads),
                ParamMut::Vector(v) => update(kind, lr, wd, t, v, &mut m1[i], &mut m2[i], grads),
            };
            if let Err(e) = r {
                result = Err(format!("update of {name} failed: {e:?}"));
            }
            i += 1;
        });
        result
    }
}

#[allow(clippy::too_many_arguments)]
fn update<S: Shape>(
    kind: OptimizerKind,
    lr: f64,
    weight_decay: Option<WeightDecay>,
    t: i32,
    param: &mut Tensor<S, f32, Cpu>,
    m1: &mut Buf,
    m2: &mut Buf,
    grads: &mut Gradients<f32, Cpu>,
) -> Result<(), CpuError> {
    let g: &Buf = grads.get_or_alloc_mut(&*param)?;
    match kind {
        OptimizerKind::Adam => AdamConfig {
            lr,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay,
        }
        .try_update(t, param, m1, m2, g),
        OptimizerKind::Sgd { momentum } => SgdConfig {
            lr,
            momentum: (momentum > 0.0).then_some(Momentum::Classic(momentum)),
            weight_decay,
        }
        .try_update(param, m1, g),
    }
}
