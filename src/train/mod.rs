//! Training: the epoch loop, k-fold cross-validation in lockstep, early stopping and metrics.

mod early_stopping;
mod optim;
mod samples;
mod spare;
mod trainer;

pub use early_stopping::{EarlyStopping, Verdict};
pub use optim::Optimizer;
pub use samples::{FoldRows, Samples};
pub use spare::SparePools;
pub use trainer::{
    cross_validate, eval_rows, evaluate, fit, fit_samples, predict, predict_view, CvOutcome,
    Metrics, Stop, TargetScale, Trained, TrialError, EVAL_BATCH,
};
