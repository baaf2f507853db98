//! Runtime-shaped neural networks on dfdx tensors: our own differentiable ops, layers and networks.
//!
//! dfdx's `nn` modules need compile-time sizes, so a sampled architecture is built here as a
//! tree of [`Layer`]s holding their parameters ([`ops::Param`]: the values in our own memory,
//! and a dfdx tensor of runtime shape naming each gradient). Activations are always
//! `(batch, features)` matrices; image tensors are NCHW flattened per sample.

mod build;
pub mod denormals;
pub mod latency;
mod layer;
pub mod ops;

pub use build::{build_network, cost, layer_table, Builder, Chw, Cost, LayerRow, LayerTable};
pub use layer::{Layer, Network, ParamMut};

use dfdx::prelude::{Cpu, NoneTape, Tensor};
use thiserror::Error;

/// A batch of activations: `(batch, features)`.
pub type Mat<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
/// A vector (bias, batch-norm scale or shift) as a tensor.
pub type Vector = Tensor<(usize,), f32, Cpu>;
/// A weight matrix parameter.
pub type MatParam = ops::Param<(usize, usize)>;
/// A vector parameter (bias, batch-norm scale or shift).
pub type VecParam = ops::Param<(usize,)>;

/// Why an architecture cannot be built for the given input.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum NnError {
    #[error("impossible architecture: {0}")]
    Impossible(String),
}
