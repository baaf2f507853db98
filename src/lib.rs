//! `nas`: neural architecture search and hyper-parameter tuning on dfdx, as a library with a thin binary.

pub mod data;
pub mod search;
pub mod nn;
pub mod space;
