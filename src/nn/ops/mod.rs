//! Differentiable ops with our own CPU kernels, recorded on dfdx tapes (conv, pooling, batch norm).
