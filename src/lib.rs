//! `nas`: neural architecture search and hyper-parameter tuning on dfdx, as a library with a thin binary.

pub mod cli;
pub mod compare;
pub mod controller;
pub mod data;
pub mod export;
pub mod leaderboard;
pub mod nn;
pub mod objective;
pub mod pareto;
pub mod parts;
pub mod plot;
pub mod progress;
pub mod report;
pub mod search;
pub mod seed;
pub(crate) mod simd;
pub mod space;
pub mod study;
pub mod sys;
pub mod train;
pub mod trial_view;
