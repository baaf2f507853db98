//! The training loop: mini-batches, losses, evaluation, k-fold cross-validation and final fits.

use super::{EarlyStopping, Optimizer, Verdict};
use crate::data::{Augment, Dataset, Targets};
use crate::nn::{build_network, Mat, Network};
use crate::search::Decision;
use crate::space::Candidate;
use dfdx::losses::{cross_entropy_with_logits_loss, mse_loss};
use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;

/// Why a trial did not produce a score.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TrialError {
    #[error("impossible architecture: {0}")]
    Impossible(String),
    #[error("diverged: the training loss became {value} in epoch {epoch} of fold {fold}")]
    Diverged {
        fold: usize,
        epoch: usize,
        value: f32,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Other(String),
}

/// Regression targets are trained standardised; this maps predictions back.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetScale {
    pub mean: f32,
    pub std: f32,
}

impl TargetScale {
    fn fit(values: &[f32]) -> TargetScale {
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|v| *v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|v| (*v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
        TargetScale {
            mean: mean as f32,
            std: std as f32,
        }
    }
}

/// Validation loss (the training criterion) and score (accuracy, or RMSE in target units).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub loss: f64,
    pub score: f64,
}

impl Metrics {
    /// The score turned lower-is-better: minus accuracy, or RMSE as is.
    pub fn objective(&self, classification: bool) -> f64 {
        if classification {
            -self.score
        } else {
            self.score
        }
    }
}

/// A trained network with what is needed to read its outputs.
pub struct Trained {
    pub net: Network,
    pub target: Option<TargetScale>,
    pub epochs: usize,
}

/// The result of k-fold cross-validation of one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvOutcome {
    /// Each fold's validation score at its best epoch.
    pub fold_scores: Vec<f64>,
    /// Each fold's best epoch (by validation loss).
    pub best_epochs: Vec<usize>,
    /// Epochs trained, summed over folds (the budget spent).
    pub budget: usize,
    /// Epochs of the longest-running fold.
    pub epochs_run: usize,
    /// Stopped by the scheduler before early stopping or the epoch limit.
    pub pruned: bool,
    /// Mean best-so-far objective (lower is better) over folds, per epoch.
    pub intermediate: Vec<f64>,
    pub param_count: usize,
    pub macs: u64,
}

impl CvOutcome {
    pub fn mean(&self) -> f64 {
        self.fold_scores.iter().sum::<f64>() / self.fold_scores.len().max(1) as f64
    }

    pub fn std(&self) -> f64 {
        let m = self.mean();
        let n = self.fold_scores.len().max(1) as f64;
        (self
            .fold_scores
            .iter()
            .map(|s| (s - m).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    }

    /// The epochs to retrain for: the mean of the folds' best epochs.
    pub fn chosen_epochs(&self) -> usize {
        let n = self.best_epochs.len().max(1) as f64;
        ((self.best_epochs.iter().sum::<usize>() as f64 / n).round() as usize).max(1)
    }
}

const EVAL_CHUNK: usize = 1024;

/// Runs the network over `ds` in evaluation mode and returns the raw outputs, row-major.
pub fn predict(net: &mut Network, dev: &Cpu, ds: &Dataset) -> Vec<f32> {
    let n = ds.len();
    let f = ds.shape.len();
    let mut out = Vec::with_capacity(n * net.n_outputs);
    let rows: Vec<usize> = (0..n).collect();
    for chunk in rows.chunks(EVAL_CHUNK) {
        let x = batch(dev, &ds.features, f, chunk, None, &mut None);
        out.extend(net.forward(x, false).as_vec());
    }
    out
}

/// Loss and score of raw outputs against a data set's targets.
pub fn evaluate(outputs: &[f32], targets: &Targets, scale: Option<TargetScale>) -> Metrics {
    match targets {
        Targets::Classes { labels, n_classes } => {
            let k = *n_classes;
            let (mut loss, mut correct) = (0.0f64, 0usize);
            for (row, &y) in outputs.chunks(k).zip(labels) {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let lse = row
                    .iter()
                    .map(|v| ((v - max) as f64).exp())
                    .sum::<f64>()
                    .ln();
                loss += lse - (row[y] - max) as f64;
                let arg = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
                    )
                    .0;
                correct += usize::from(arg == y);
            }
            let n = labels.len().max(1) as f64;
            Metrics {
                loss: loss / n,
                score: correct as f64 / n,
            }
        }
        Targets::Values(values) => {
            let s = scale.unwrap_or(TargetScale {
                mean: 0.0,
                std: 1.0,
            });
            let mut sq = 0.0f64;
            for (p, y) in outputs.iter().zip(values) {
                let z = (y - s.mean) / s.std;
                sq += ((p - z) as f64).powi(2);
            }
            let mse = sq / values.len().max(1) as f64;
            Metrics {
                loss: mse,
                score: mse.sqrt() * s.std as f64,
            }
        }
    }
}

/// Copies the given rows into a batch tensor, augmenting them when asked.
fn batch(
    dev: &Cpu,
    features: &[f32],
    f: usize,
    rows: &[usize],
    augment: Option<(&Augment, &Dataset)>,
    rng: &mut Option<&mut ChaCha8Rng>,
) -> Mat {
    let mut buf = Vec::with_capacity(rows.len() * f);
    for &r in rows {
        buf.extend_from_slice(&features[r * f..(r + 1) * f]);
    }
    if let (Some((aug, ds)), Some(rng)) = (augment, rng.as_mut()) {
        aug.apply_batch(&mut buf, ds.shape, rng);
    }
    dev.tensor_from_vec(buf, (rows.len(), f))
}

/// One network being trained on one fold.
struct Run {
    dev: Cpu,
    net: Network,
    opt: Optimizer,
    rng: ChaCha8Rng,
    target: Option<TargetScale>,
    augment: Option<Augment>,
    batch_size: usize,
}

impl Run {
    fn new(cand: &Candidate, train: &Dataset, seed: u64) -> Result<Run, TrialError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dev = Cpu::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
        // Recycling buffers avoids page faults on every op (measured: about 2x on conv nets).
        dev.enable_cache();
        let net = build_network(&cand.arch, train.shape, train.n_outputs(), &mut rng, &dev)
            .map_err(|e| TrialError::Impossible(e.to_string()))?;
        let target = match &train.targets {
            Targets::Values(v) => Some(TargetScale::fit(v)),
            Targets::Classes { .. } => None,
        };
        let t = &cand.train;
        let a = t.augment;
        let augment = Augment {
            shift: a.shift,
            hflip: a.hflip,
            noise_std: a.noise as f32,
        };
        Ok(Run {
            opt: Optimizer::new(t.optimizer, t.learning_rate, t.weight_decay),
            dev,
            net,
            rng,
            target,
            augment: (!augment.is_identity()).then_some(augment),
            batch_size: t.batch_size,
        })
    }

    /// One pass over the training data; returns the mean training loss.
    fn epoch(&mut self, train: &Dataset) -> Result<f32, f32> {
        let n = train.len();
        let f = train.shape.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let (mut total, mut count) = (0.0f32, 0usize);
        for rows in order.chunks(self.batch_size) {
            // A batch of one gives batch norm no statistics to work with.
            if rows.len() < 2 && n >= 2 {
                continue;
            }
            let aug = self.augment.as_ref().map(|a| (a, train));
            let x = batch(
                &self.dev,
                &train.features,
                f,
                rows,
                aug,
                &mut Some(&mut self.rng),
            );
            let out = self.net.forward(x.leaky_trace(), true);
            let loss = match &train.targets {
                Targets::Classes { labels, n_classes } => {
                    let mut onehot = vec![0.0f32; rows.len() * n_classes];
                    for (i, &r) in rows.iter().enumerate() {
                        onehot[i * n_classes + labels[r]] = 1.0;
                    }
                    let y = self.dev.tensor_from_vec(onehot, (rows.len(), *n_classes));
                    cross_entropy_with_logits_loss(out, y)
                }
                Targets::Values(values) => {
                    let s = self.target.unwrap_or(TargetScale {
                        mean: 0.0,
                        std: 1.0,
                    });
                    let z: Vec<f32> = rows.iter().map(|&r| (values[r] - s.mean) / s.std).collect();
                    let y = self.dev.tensor_from_vec(z, (rows.len(), 1));
                    mse_loss(out, y)
                }
            };
            let value = loss.array();
            if !value.is_finite() {
                return Err(value);
            }
            let mut grads = loss.backward();
            self.opt
                .step(&self.dev, &mut self.net, &mut grads)
                .map_err(|_| f32::NAN)?;
            total += value * rows.len() as f32;
            count += rows.len();
        }
        Ok(total / count.max(1) as f32)
    }

    fn evaluate(&mut self, ds: &Dataset) -> Metrics {
        let out = predict(&mut self.net, &self.dev, ds);
        evaluate(&out, &ds.targets, self.target)
    }
}

/// Per-fold state of cross-validation.
struct FoldState {
    run: Run,
    stop: EarlyStopping,
    best: Vec<(String, Vec<f32>)>,
    best_metrics: Option<Metrics>,
    epochs: usize,
    done: bool,
}

/// Trains one network per fold, epoch by epoch in lockstep, with early stopping on each fold's
/// validation loss. After every epoch `on_epoch(epoch, objective)` gets the mean best-so-far
/// objective (lower is better) and may prune the trial.
pub fn cross_validate(
    cand: &Candidate,
    folds: &[(Dataset, Dataset)],
    seed: u64,
    on_epoch: &mut dyn FnMut(usize, f64) -> Decision,
    cancel: &AtomicBool,
) -> Result<CvOutcome, TrialError> {
    let classification = folds
        .first()
        .is_some_and(|(t, _)| matches!(t.targets, Targets::Classes { .. }));
    let mut states = Vec::with_capacity(folds.len());
    for (i, (train, _)) in folds.iter().enumerate() {
        states.push(FoldState {
            run: Run::new(cand, train, seed.wrapping_add(i as u64 * 0x1000_0001))?,
            stop: EarlyStopping::new(cand.train.patience),
            best: Vec::new(),
            best_metrics: None,
            epochs: 0,
            done: false,
        });
    }
    let (param_count, macs) = states
        .first()
        .map(|s| (s.run.net.param_count, s.run.net.macs))
        .unwrap_or((0, 0));
    let mut intermediate = Vec::new();
    let mut pruned = false;
    for epoch in 1..=cand.train.max_epochs {
        if states.iter().all(|s| s.done) {
            break;
        }
        for (fold, (s, (train, valid))) in states.iter_mut().zip(folds).enumerate() {
            if s.done {
                continue;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(TrialError::Interrupted);
            }
            s.run.epoch(train).map_err(|value| TrialError::Diverged {
                fold: fold + 1,
                epoch,
                value,
            })?;
            s.epochs = epoch;
            let m = s.run.evaluate(valid);
            if !m.loss.is_finite() {
                return Err(TrialError::Diverged {
                    fold: fold + 1,
                    epoch,
                    value: m.loss as f32,
                });
            }
            match s.stop.update(epoch, m.loss) {
                Verdict::Improved => {
                    s.best = s.run.net.snapshot();
                    s.best_metrics = Some(m);
                }
                Verdict::Wait => {}
                Verdict::Stop => s.done = true,
            }
        }
        let objective = states
            .iter()
            .filter_map(|s| s.best_metrics.map(|m| m.objective(classification)))
            .sum::<f64>()
            / states.len().max(1) as f64;
        intermediate.push(objective);
        if on_epoch(epoch, objective) == Decision::Prune {
            pruned = true;
            break;
        }
    }
    Ok(CvOutcome {
        fold_scores: states
            .iter()
            .map(|s| s.best_metrics.map(|m| m.score).unwrap_or(f64::NAN))
            .collect(),
        best_epochs: states.iter().map(|s| s.stop.best_epoch().max(1)).collect(),
        budget: states.iter().map(|s| s.epochs).sum(),
        epochs_run: states.iter().map(|s| s.epochs).max().unwrap_or(0),
        pruned,
        intermediate,
        param_count,
        macs,
    })
}

/// Trains a candidate on all of `train` for exactly `epochs` epochs (the final model).
pub fn fit(
    cand: &Candidate,
    train: &Dataset,
    epochs: usize,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<(Trained, Cpu), TrialError> {
    let mut run = Run::new(cand, train, seed)?;
    for epoch in 1..=epochs.max(1) {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrialError::Interrupted);
        }
        run.epoch(train).map_err(|value| TrialError::Diverged {
            fold: 0,
            epoch,
            value,
        })?;
    }
    Ok((
        Trained {
            net: run.net,
            target: run.target,
            epochs,
        },
        run.dev,
    ))
}
