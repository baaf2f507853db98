//! Errors raised while building a sampler or scheduler from the user's choices.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum SearchError {
    #[error(
        "grid search needs discrete parameters, but `{param}` is a continuous range \
         [{low}, {high}]; write it as Choice([..]) or Fixed(..), or use another strategy"
    )]
    ContinuousParameter { param: String, low: f64, high: f64 },
    #[error(
        "the grid has more than {limit} points (the limit is reached while enumerating \
         `{param}`); narrow the space or use another strategy"
    )]
    GridTooLarge { param: String, limit: usize },
    #[error(
        "unknown search strategy `{0}` (expected random, grid, evolution, tpe, nsga2 or motpe)"
    )]
    UnknownStrategy(String),
    #[error("unknown scheduler `{0}` (expected fifo, asha or hyperband)")]
    UnknownScheduler(String),
}
