//! SGD (with momentum) and Adam over a network's parameters, updated in place where the
//! network holds them (`nn::ops::Param`).
//!
//! Each update is dfdx 0.13's, operation for operation in `f32` (its `sgd_kernel` and
//! `adam_kernel`, with the L2 weight decay this crate uses), so networks train to the same bits
//! as they did through dfdx's optimisers; the loops run over plain slices, which the compiler
//! vectorises (`crate::simd`: Adam, a square root and a division per value, in AVX-512 where the
//! CPU has it; SGD, a short streaming loop, in AVX2 at most; the same operations per lane).

use crate::nn::Network;
use crate::simd::simd_fn;
use crate::space::OptimizerKind;
use dfdx::prelude::*;

/// Adam's decay rates of the two moments and its `eps` (PyTorch's and dfdx's defaults).
const BETAS: [f32; 2] = [0.9, 0.999];
const EPS: f32 = 1e-8;

/// Optimiser state for one network: one or two moment buffers per parameter.
pub struct Optimizer {
    kind: OptimizerKind,
    lr: f64,
    weight_decay: f64,
    t: i32,
    m1: Vec<Vec<f32>>,
    m2: Vec<Vec<f32>>,
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
        net: &mut Network,
        grads: &mut Gradients<f32, Cpu>,
    ) -> Result<(), String> {
        self.t += 1;
        let (kind, t) = (self.kind, self.t);
        let (lr, weight_decay) = (self.lr as f32, self.weight_decay as f32);
        let decay = self.weight_decay > 0.0;
        let (m1, m2) = (&mut self.m1, &mut self.m2);
        let mut i = 0;
        let mut result = Ok(());
        net.visit_params(&mut |name, mut p, decays| {
            if result.is_err() {
                return;
            }
            if m1.len() <= i {
                let n = p.len();
                let zeros = || {
                    let mut v = Vec::new();
                    v.try_reserve_exact(n).ok().map(|()| {
                        v.resize(n, 0.0);
                        v
                    })
                };
                match (zeros(), zeros()) {
                    (Some(a), Some(b)) => {
                        m1.push(a);
                        m2.push(b);
                    }
                    _ => {
                        result = Err(format!("cannot allocate optimiser state for {name}"));
                        return;
                    }
                }
            }
            let wd = (decay && decays).then_some(weight_decay);
            let g = match p.grad(grads) {
                Ok(g) => g,
                Err(e) => {
                    result = Err(format!("update of {name} failed: {e:?}"));
                    return;
                }
            };
            let values = p.values_mut();
            match kind {
                OptimizerKind::Adam => adam(t, lr, wd, values, g, &mut m1[i], &mut m2[i]),
                OptimizerKind::Sgd { momentum } => {
                    let momentum = (momentum > 0.0).then_some(momentum as f32);
                    sgd(lr, momentum, wd, values, g, &mut m1[i])
                }
            }
            i += 1;
        });
        result
    }
}

simd_fn! { avx512
    /// One Adam step over `p` (dfdx's `adam_kernel` for `f32` with L2 decay `wd`). A square
    /// root and a division per value: AVX-512's 16 lanes pay here (unlike the short streaming
    /// loops of batch norm).
    fn adam(
        t: i32,
        lr: f32,
        wd: Option<f32>,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let [b1, b2] = BETAS;
        let (c1, c2) = ((1.0 - b1.powi(t)).recip(), (1.0 - b2.powi(t)).recip());
        let (d1, d2) = (1.0 - b1, 1.0 - b2);
        let moments = m.iter_mut().zip(v.iter_mut());
        for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(moments) {
            let g = match wd {
                Some(wd) => g + wd * *p,
                None => g,
            };
            *m = *m * b1 + g * d1;
            *v = *v * b2 + g * g * d2;
            let (m_hat, v_hat) = (*m * c1, *v * c2);
            *p -= lr * m_hat / (v_hat.sqrt() + EPS);
        }
    }
}

simd_fn! {
    /// One SGD step over `p` (dfdx's `sgd_kernel` for `f32`: classic momentum, L2 decay `wd`).
    fn sgd(
        lr: f32,
        momentum: Option<f32>,
        wd: Option<f32>,
        p: &mut [f32],
        g: &[f32],
        vel: &mut [f32],
    ) {
        for ((p, &g), v) in p.iter_mut().zip(g).zip(vel.iter_mut()) {
            let g = match wd {
                Some(wd) => g + wd * *p,
                None => g,
            };
            let step = match momentum {
                Some(u) => {
                    *v = g + u * *v;
                    *v * lr
                }
                None => g * lr,
            };
            *p -= step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::optim::{AdamConfig, Momentum, SgdConfig, WeightDecay};

    /// Several steps of each update give the bits of dfdx's own kernels, with and without
    /// weight decay and momentum.
    #[test]
    fn updates_match_dfdx_bit_for_bit() {
        let dev = Cpu::default();
        let n = 37;
        let start: Vec<f32> = (0..n)
            .map(|i| ((i * 17 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let grad = |step: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i + 3 * step) * 29 % 31) as f32 - 15.0) / 9.0)
                .collect()
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // A gradient in dfdx's own buffer type, as its optimisers take it.
        let dfdx_grad = |g: &[f32]| {
            let mut gb = dev.try_alloc_len(n).unwrap();
            gb.copy_from_slice(g);
            gb
        };
        for (lr, wd) in [(1e-3, None), (3e-2, Some(1e-3))] {
            // Adam.
            let mut theirs = dev.tensor_from_vec(start.clone(), (n,));
            let (mut m1, mut m2) = (dev.try_alloc_len(n).unwrap(), dev.try_alloc_len(n).unwrap());
            let (mut ours, mut a, mut b) = (start.clone(), vec![0.0; n], vec![0.0; n]);
            for t in 1..=5 {
                let g = grad(t as usize);
                let gb = dfdx_grad(&g);
                AdamConfig {
                    lr,
                    betas: [0.9, 0.999],
                    eps: 1e-8,
                    weight_decay: wd.map(WeightDecay::L2),
                }
                .try_update(t, &mut theirs, &mut m1, &mut m2, &gb)
                .unwrap();
                let wd = wd.map(|w| w as f32);
                adam(t, lr as f32, wd, &mut ours, &g, &mut a, &mut b);
            }
            assert_eq!(
                bits(&ours),
                bits(&theirs.as_vec()),
                "adam lr {lr} wd {wd:?}"
            );
            // SGD, with and without momentum.
            for momentum in [None, Some(0.9)] {
                let mut theirs = dev.tensor_from_vec(start.clone(), (n,));
                let mut vel_t = dev.try_alloc_len(n).unwrap();
                let (mut ours, mut vel) = (start.clone(), vec![0.0; n]);
                for step in 1..=5 {
                    let g = grad(step);
                    let gb = dfdx_grad(&g);
                    SgdConfig {
                        lr,
                        momentum: momentum.map(Momentum::Classic),
                        weight_decay: wd.map(WeightDecay::L2),
                    }
                    .try_update(&mut theirs, &mut vel_t, &gb)
                    .unwrap();
                    let (u, wd) = (momentum.map(|u| u as f32), wd.map(|w| w as f32));
                    sgd(lr as f32, u, wd, &mut ours, &g, &mut vel);
                }
                assert_eq!(bits(&ours), bits(&theirs.as_vec()), "sgd {momentum:?}");
            }
        }
    }
}
