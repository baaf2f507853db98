//! `nas`: neural architecture search and hyper-parameter tuning on dfdx, as a library with a thin binary.

pub mod data;
pub mod nn;
pub mod search;
pub mod space;
pub mod study;
pub mod train;
