//! Typed errors for op geometry, input shapes and parameter sizes.

use dfdx::tensor::CpuError;

/// Why an op refused its arguments (or, rarely, why the device failed).
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    /// A size, channel count or stride that must be at least 1 is 0.
    #[error("{what} must be positive")]
    Zero { what: &'static str },
    /// The window does not fit even once into the (padded) input.
    #[error("kernel {kh}x{kw} larger than padded input {padded_h}x{padded_w}")]
    KernelTooLarge {
        kh: usize,
        kw: usize,
        padded_h: usize,
        padded_w: usize,
    },
    /// Grouped convolution splits channels evenly.
    #[error("{which} {channels} not divisible by groups {groups}")]
    GroupsDoNotDivide {
        which: &'static str,
        channels: usize,
        groups: usize,
    },
    /// Pooling padding past half the window would create windows of padding only.
    #[error("padding {pad_h}x{pad_w} more than half of kernel {kh}x{kw}")]
    PoolPaddingTooLarge {
        pad_h: usize,
        pad_w: usize,
        kh: usize,
        kw: usize,
    },
    /// The input's per-sample width disagrees with the geometry.
    #[error("input has {got} values per sample, expected {expected} ({what})")]
    InputWidth {
        got: usize,
        expected: usize,
        what: String,
    },
    /// A parameter tensor has the wrong number of values.
    #[error("{what} has {got} values, expected {expected}")]
    ParamLen {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// Batch statistics need at least two values per channel (the unbiased variance divides by m - 1).
    #[error("batch norm in training needs more than one value per channel, got {got}")]
    TooFewValuesPerChannel { got: usize },
    /// The device could not allocate or build a tensor.
    #[error("device error: {0}")]
    Device(CpuError),
}
