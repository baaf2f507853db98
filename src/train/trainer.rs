//! The training loop: mini-batches, losses, evaluation, k-fold cross-validation and final fits.

use super::samples::{FoldRows, Samples};
use super::spare::SparePools;
use super::{EarlyStopping, Optimizer, Verdict};
use crate::data::{Augment, Dataset, Targets};
use crate::nn::denormals::FlushDenormals;
use crate::nn::ops::device_tensor;
use crate::nn::{build_network, Network};
use crate::progress::FoldEpoch;
use crate::search::Decision;
use crate::space::Candidate;
use crate::study::FoldCurve;
use dfdx::losses::{cross_entropy_with_logits_loss, mse_loss};
use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;

/// `90s`, `5m`, `2h 5m`: how a timeout was given, roughly.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{:.0}s", d.as_secs_f64()),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// When training must end early: the shared cancel flag (Ctrl-C, SIGTERM) or the trial's deadline.
#[derive(Clone, Copy, Debug)]
pub struct Stop<'a> {
    cancel: &'a AtomicBool,
    deadline: Option<(Instant, Duration)>,
}

impl<'a> Stop<'a> {
    /// Ends when `cancel` is set.
    pub fn on(cancel: &'a AtomicBool) -> Stop<'a> {
        Stop {
            cancel,
            deadline: None,
        }
    }

    /// Ends when `cancel` is set or `timeout` (if any) has passed from now.
    pub fn with_timeout(cancel: &'a AtomicBool, timeout: Option<Duration>) -> Stop<'a> {
        Stop {
            cancel,
            deadline: timeout.map(|t| (Instant::now() + t, t)),
        }
    }

    /// `Err` with the reason once training must end.
    pub fn check(&self) -> Result<(), TrialError> {
        // Also where a fold waits while a candidate's latency is measured.
        crate::nn::latency::pause_point();
        if self.cancel.load(Ordering::Relaxed) {
            return Err(TrialError::Interrupted);
        }
        match self.deadline {
            Some((at, t)) if Instant::now() >= at => Err(TrialError::TimedOut(t)),
            _ => Ok(()),
        }
    }
}

/// Steps between two looks at the [`Stop`] signal inside an epoch.
const STOP_CHECK_STEPS: usize = 16;

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
    #[error("timed out after {} (--trial-timeout)", human_duration(*.0))]
    TimedOut(Duration),
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
    /// Each fold's validation loss and score per epoch, and how it ended.
    pub curves: Vec<FoldCurve>,
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

/// The most samples evaluated at once (no gradients are kept, so this can be large).
pub const EVAL_BATCH: usize = 1024;

/// Floats the widest layer output of one evaluation chunk may hold (1 MiB): a chunk of 1,024
/// images of 28x28 with 16 channels held 51 MB a layer, out of every cache, and evaluation ran
/// at half training's speed per sample (9% of a fixed CNN's trial time, against 5% at 41
/// samples a chunk). Measured again at stop 33, whole trials: that CNN took 3.79-3.88 s at 16
/// or 20 samples a chunk and 3.88-3.98 s at 41; a 64-channel digits CNN (8x8 maps) 5.73-5.74 s
/// at 64 and 5.82 s at 32, each chunk recomputing its kernels' spectra.
const EVAL_CHUNK_FLOATS: u64 = 256 * 1024;

/// Samples evaluated at once by a network whose widest layer output is `largest` floats a
/// sample: as many as [`EVAL_CHUNK_FLOATS`] allows, between 16 and [`EVAL_BATCH`]. Evaluation
/// treats every sample alone (batch norm uses its running statistics), so the chunk size
/// changes the speed, not the outputs.
pub fn eval_rows(largest: u64) -> usize {
    (EVAL_CHUNK_FLOATS / largest.max(1)).clamp(16, EVAL_BATCH as u64) as usize
}

/// Runs the network over `ds` in evaluation mode and returns the raw outputs, row-major.
pub fn predict(net: &mut Network, dev: &Cpu, ds: &Dataset) -> Vec<f32> {
    predict_samples(net, dev, Samples::all(ds), &mut Vec::new())
}

/// [`predict`] over a view of a data set; `buf` is reused for the input batches.
fn predict_samples(net: &mut Network, dev: &Cpu, samples: Samples, buf: &mut Vec<f32>) -> Vec<f32> {
    // The same float modes as in training (see nn::denormals).
    let _flush = FlushDenormals::new();
    let n = samples.len();
    let f = samples.data.n_features();
    let mut out = Vec::with_capacity(n * net.n_outputs);
    let positions: Vec<usize> = (0..n).collect();
    for chunk in positions.chunks(eval_rows(net.largest_activation)) {
        samples.gather(chunk, buf);
        let x = device_tensor(dev, buf, chunk.len(), f);
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

/// dfdx's buffer cache for one training run, enabled for the run's life and emptied at its end.
///
/// Recycling buffers avoids page faults on every op (measured: about 2x on conv nets), but
/// dfdx never frees what its cache holds, not even when the device is dropped (its cache has no
/// `Drop`): without this guard every trial leaked every buffer it had used. Declared first in
/// [`Run`], it is dropped first, so the network's and optimiser's buffers are freed, not cached.
struct BufferCache(Cpu);

impl BufferCache {
    fn new(dev: &Cpu) -> BufferCache {
        dev.enable_cache();
        BufferCache(dev.clone())
    }

    /// Frees what the cache holds now (it stays enabled).
    fn trim(&self) {
        self.0.empty_cache();
    }
}

impl Drop for BufferCache {
    fn drop(&mut self) {
        self.0.disable_cache();
    }
}

/// One network being trained on one fold.
struct Run {
    cache: BufferCache,
    dev: Cpu,
    net: Network,
    opt: Optimizer,
    rng: ChaCha8Rng,
    target: Option<TargetScale>,
    augment: Option<Augment>,
    batch_size: usize,
    /// Reused for every input batch and every one-hot target batch.
    buf: Vec<f32>,
    targets_buf: Vec<f32>,
}

impl Run {
    fn new(cand: &Candidate, train: Samples, seed: u64) -> Result<Run, TrialError> {
        crate::sys::keep_freed_memory();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dev = Cpu::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
        let cache = BufferCache::new(&dev);
        let data = train.data;
        let net = build_network(&cand.arch, data.shape, data.n_outputs(), &mut rng, &dev)
            .map_err(|e| TrialError::Impossible(e.to_string()))?;
        let target = train.values().map(|v| TargetScale::fit(&v));
        let t = &cand.train;
        let a = t.augment;
        let augment = Augment {
            shift: a.shift,
            hflip: a.hflip,
            noise_std: a.noise as f32,
        };
        Ok(Run {
            cache,
            opt: Optimizer::new(t.optimizer, t.learning_rate, t.weight_decay),
            dev,
            net,
            rng,
            target,
            augment: (!augment.is_identity()).then_some(augment),
            batch_size: t.batch_size,
            buf: Vec::new(),
            targets_buf: Vec::new(),
        })
    }

    /// One pass over the training data; returns the mean training loss. `fold` and `epoch`
    /// (1-based; fold 0 is a final fit) name a divergence.
    fn epoch(
        &mut self,
        train: Samples,
        stop: Stop,
        fold: usize,
        epoch: usize,
    ) -> Result<f32, TrialError> {
        let diverged = |value: f32| TrialError::Diverged { fold, epoch, value };
        // Subnormal gradients late in training would run in microcode (see nn::denormals).
        let _flush = FlushDenormals::new();
        let n = train.len();
        let f = train.data.n_features();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let (mut total, mut count) = (0.0f32, 0usize);
        for (step, rows) in order.chunks(self.batch_size).enumerate() {
            if step % STOP_CHECK_STEPS == 0 {
                stop.check()?;
            }
            // A batch of one gives batch norm no statistics to work with.
            if rows.len() < 2 && n >= 2 {
                continue;
            }
            train.gather(rows, &mut self.buf);
            if let Some(aug) = &self.augment {
                aug.apply_batch(&mut self.buf, train.data.shape, &mut self.rng);
            }
            let x = device_tensor(&self.dev, &self.buf, rows.len(), f);
            let out = self.net.forward(x.leaky_trace(), true);
            let y = &mut self.targets_buf;
            y.clear();
            let loss = match &train.data.targets {
                Targets::Classes { labels, n_classes } => {
                    y.resize(rows.len() * n_classes, 0.0);
                    for (i, &r) in rows.iter().enumerate() {
                        y[i * n_classes + labels[train.row(r)]] = 1.0;
                    }
                    let y = device_tensor(&self.dev, y, rows.len(), *n_classes);
                    cross_entropy_with_logits_loss(out, y)
                }
                Targets::Values(values) => {
                    let s = self.target.unwrap_or(TargetScale {
                        mean: 0.0,
                        std: 1.0,
                    });
                    y.extend(
                        rows.iter()
                            .map(|&r| (values[train.row(r)] - s.mean) / s.std),
                    );
                    let y = device_tensor(&self.dev, y, rows.len(), 1);
                    mse_loss(out, y)
                }
            };
            let value = loss.array();
            if !value.is_finite() {
                return Err(diverged(value));
            }
            let mut grads = loss.backward();
            self.opt
                .step(&mut self.net, &mut grads)
                .map_err(|_| diverged(f32::NAN))?;
            total += value * rows.len() as f32;
            count += rows.len();
        }
        // Whatever the cache gathered beyond one step's needs (a last, smaller batch; evaluation
        // chunks) is freed once an epoch rather than kept for the rest of the run.
        self.cache.trim();
        Ok(total / count.max(1) as f32)
    }

    fn evaluate(&mut self, ds: Samples, targets: &Targets) -> Metrics {
        let out = predict_samples(&mut self.net, &self.dev, ds, &mut self.buf);
        evaluate(&out, targets, self.target)
    }
}

/// Per-fold state of cross-validation.
///
/// Only the best epoch's metrics are kept, not its weights: cross-validation scores a
/// configuration, and the model that is kept (final fit, export) is retrained on all non-test
/// data for the epochs early stopping chose.
struct FoldState {
    run: Run,
    stop: EarlyStopping,
    best_metrics: Option<Metrics>,
    epochs: usize,
    done: bool,
    curve: FoldCurve,
}

/// Trains one network per fold, epoch by epoch in lockstep, with early stopping on each fold's
/// validation loss. After every epoch `on_epoch(epoch, objective)` gets the mean best-so-far
/// objective (lower is better) and may prune the trial; `on_fold` hears of each fold's epoch as
/// it ends (on the thread that trained it: the live display, which must be cheap). An epoch
/// with more than one fold to train borrows a pool from `spare` if one is free (a search's
/// workers that have no trial left give theirs) and trains its folds there too.
#[allow(clippy::too_many_arguments)]
pub fn cross_validate(
    cand: &Candidate,
    data: &Dataset,
    folds: &[FoldRows],
    seed: u64,
    on_epoch: &mut dyn FnMut(usize, f64) -> Decision,
    on_fold: &(dyn Fn(FoldEpoch) + Sync),
    stop: Stop,
    spare: &SparePools,
) -> Result<CvOutcome, TrialError> {
    let classification = matches!(data.targets, Targets::Classes { .. });
    let views: Vec<(Samples, Samples, Targets)> = folds
        .iter()
        .map(|f| {
            let valid = Samples::rows(data, &f.valid, &f.scaler);
            let targets = valid.targets();
            (Samples::rows(data, &f.train, &f.scaler), valid, targets)
        })
        .collect();
    let mut states = Vec::with_capacity(folds.len());
    for (i, (train, _, _)) in views.iter().enumerate() {
        states.push(FoldState {
            run: Run::new(cand, *train, seed.wrapping_add(i as u64 * 0x1000_0001))?,
            stop: EarlyStopping::new(cand.train.patience),
            best_metrics: None,
            epochs: 0,
            done: false,
            curve: FoldCurve::default(),
        });
    }
    let (param_count, macs) = states
        .first()
        .map(|s| (s.run.net.param_count, s.run.net.macs))
        .unwrap_or((0, 0));
    let mut intermediate = Vec::new();
    let mut pruned = false;
    let n_folds = folds.len();
    for epoch in 1..=cand.train.max_epochs {
        if states.iter().all(|s| s.done) {
            break;
        }
        let train_fold = |fold: usize, s: &mut FoldState| -> Result<Option<Metrics>, TrialError> {
            if s.done {
                return Ok(None);
            }
            let (train, valid, targets) = &views[fold];
            // Training, as latency measurements see it: they pause it (see nn::latency).
            let _training = crate::nn::latency::training();
            stop.check()?;
            s.run.epoch(*train, stop, fold + 1, epoch)?;
            let m = s.run.evaluate(*valid, targets);
            on_fold(FoldEpoch {
                fold: fold + 1,
                folds: n_folds,
                epoch,
                max_epochs: cand.train.max_epochs,
                valid_loss: m.loss,
            });
            Ok(Some(m))
        };
        // The folds are independent networks: on a trial of several threads, or with a pool
        // lent by a worker that has no trial left, they train at once, each as it would alone
        // (results do not depend on the thread count).
        let training = states.iter().filter(|s| !s.done).count();
        let loan = (training > 1).then(|| spare.lend()).flatten();
        let epochs: Vec<Result<Option<Metrics>, TrialError>> = match &loan {
            Some(loan) => loan.share(&mut states, train_fold),
            None => states
                .par_iter_mut()
                .enumerate()
                .map(|(fold, s)| train_fold(fold, s))
                .collect(),
        };
        drop(loan);
        for (fold, (s, m)) in states.iter_mut().zip(epochs).enumerate() {
            let Some(m) = m? else { continue };
            s.epochs = epoch;
            if !m.loss.is_finite() {
                return Err(TrialError::Diverged {
                    fold: fold + 1,
                    epoch,
                    value: m.loss as f32,
                });
            }
            s.curve.loss.push(m.loss);
            s.curve.score.push(m.score);
            match s.stop.update(epoch, m.loss) {
                Verdict::Improved => s.best_metrics = Some(m),
                Verdict::Wait => {}
                Verdict::Stop => {
                    s.done = true;
                    s.curve.stopped_early = Some(epoch);
                }
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
        curves: states
            .into_iter()
            .map(|s| FoldCurve {
                best_epoch: s.stop.best_epoch(),
                ..s.curve
            })
            .collect(),
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
    fit_samples(cand, Samples::all(train), epochs, seed, cancel)
}

/// [`fit`] on a view of a data set (all rows standardised on the fly, without a copy).
pub fn fit_samples(
    cand: &Candidate,
    train: Samples,
    epochs: usize,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<(Trained, Cpu), TrialError> {
    let stop = Stop::on(cancel);
    let mut run = Run::new(cand, train, seed)?;
    for epoch in 1..=epochs.max(1) {
        stop.check()?;
        run.epoch(train, stop, 0, epoch)?;
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

/// [`predict`] on a view of a data set.
pub fn predict_view(net: &mut Network, dev: &Cpu, samples: Samples) -> Vec<f32> {
    predict_samples(net, dev, samples, &mut Vec::new())
}
