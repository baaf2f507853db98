//! Runtime-shaped neural networks on dfdx tensors: our own differentiable ops, layers and networks.

pub mod ops;
