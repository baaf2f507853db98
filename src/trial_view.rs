//! One trial in full (`nas trial N`): its sampled values, its network layer by layer, each
//! fold's validation curve, its cost and why it ended, as a text report or JSON.

use crate::leaderboard;
use crate::nn::LayerTable;
use crate::search::{Rung, TrialState};
use crate::space::{short_float, thousands, ParamValue, SearchSpace};
use crate::study::{FoldCurve, Objectives, StudyMeta, TrialRecord};
use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use tabled::builder::Builder;
use tabled::settings::Style;

/// How to print a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Why a trial ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Ending {
    /// Cross-validation ran to its end: each fold stopped early (`early_stop`: the epoch its
    /// patience ran out) or trained `max_epochs`; `folds` is empty for a trial recorded before
    /// folds were.
    Complete {
        folds: Vec<FoldEnding>,
    },
    /// The scheduler stopped it after `epochs` epochs (at `rung`, where it says).
    Pruned {
        scheduler: String,
        epochs: usize,
        rung: Option<Rung>,
    },
    Failed {
        error: String,
    },
    /// Ctrl-C or SIGTERM.
    Interrupted,
    Running,
}

/// How one fold of a complete trial ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FoldEnding {
    /// Counted from 1.
    pub fold: usize,
    pub epochs: usize,
    pub best_epoch: usize,
    pub early_stop: Option<usize>,
}

/// What a trial cost.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TrialCost {
    pub params: usize,
    /// Multiply-adds per sample of one forward pass.
    pub macs: u64,
    pub seconds: f64,
    /// The epochs to retrain for (the mean of the folds' best epochs; for a pruned trial, the
    /// epochs it trained).
    pub epochs: usize,
    /// Epochs trained, summed over folds.
    pub epochs_trained: usize,
}

/// One row of the layer table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerView {
    pub path: String,
    pub kind: String,
    pub depth: usize,
    /// `64`, or `channels x height x width`.
    pub output: String,
    pub output_shape: [usize; 3],
    pub params: usize,
    pub macs: u64,
}

/// The network layer by layer, with its totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Layers {
    pub rows: Vec<LayerView>,
    pub total_params: usize,
    pub total_macs: u64,
}

/// Everything `nas trial` shows about one trial.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialView {
    pub study: String,
    pub trial: usize,
    pub state: String,
    /// `accuracy` or `rmse`.
    pub metric: String,
    /// Rank among the study's complete trials, as the leaderboard's: by mean CV score; with
    /// several objectives, by Pareto front, then by the first objective.
    pub rank: Option<usize>,
    pub complete_trials: usize,
    /// The trial's Pareto front in a study of several objectives (1: dominated by none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front: Option<usize>,
    /// The trial's value on each objective of a study of several (none where it has no value,
    /// as a pruned trial's score).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<ObjectiveValue>,
    pub cv_mean: Option<f64>,
    pub cv_std: Option<f64>,
    pub fold_scores: Vec<f64>,
    pub ended: Ending,
    /// [`TrialView::ended`] in words.
    pub ended_text: String,
    /// Every sampled value, choices by their label.
    pub config: serde_json::Map<String, Value>,
    pub max_epochs: Option<usize>,
    pub patience: Option<usize>,
    pub cost: TrialCost,
    /// The measured inference time, when the study measured it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<crate::study::Latency>,
    pub architecture: String,
    /// The network, when the study's space and data can still be read (else `layers_missing`
    /// says why not).
    pub layers: Option<Layers>,
    pub layers_missing: Option<String>,
    /// Each fold's validation loss and score per epoch (empty: not recorded, see
    /// `mean_at_best_epoch`).
    pub folds: Vec<FoldCurve>,
    /// Per epoch, the mean over folds of the score at each fold's best epoch so far (lowest
    /// validation loss): the value the scheduler judged.
    pub mean_at_best_epoch: Vec<f64>,
}

/// One objective's value of a trial, named as Optuna's `study:metric_names` names it
/// (`cv accuracy`, `latency ms`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectiveValue {
    pub name: String,
    pub value: Option<f64>,
}

impl TrialView {
    /// The view of `trial` of a study; `space` is the study's space (if it still reads) and
    /// `layers` the trial's network on the study's data, or why it cannot be shown.
    pub fn new(
        meta: &StudyMeta,
        trials: &[TrialRecord],
        trial: &TrialRecord,
        space: Option<&SearchSpace>,
        layers: Result<LayerTable, String>,
    ) -> TrialView {
        let metric = meta.metric;
        let study = Objectives::of(meta);
        let ranked = leaderboard::ranked_rows(trials, &study, None);
        let row = ranked.iter().find(|r| r.trial == trial.number);
        let rank = row.and_then(|r| r.rank);
        let objectives = if study.is_multi() {
            study
                .names()
                .into_iter()
                .zip(study.list())
                .map(|(name, o)| ObjectiveValue {
                    name,
                    value: study.value(*o, trial),
                })
                .collect()
        } else {
            Vec::new()
        };
        let settings = space.map(|s| s.decode(&trial.config).train);
        let ended = ending(trial, &meta.scheduler);
        let (layers, layers_missing) = match layers {
            Ok(t) => (Some(layers_view(&t)), None),
            Err(e) => (None, Some(e)),
        };
        TrialView {
            study: meta.name.clone(),
            trial: trial.number,
            state: trial.state.label().to_string(),
            metric: metric.label().to_string(),
            rank,
            complete_trials: ranked.iter().filter(|r| r.rank.is_some()).count(),
            front: row.and_then(|r| r.front),
            objectives,
            cv_mean: trial.cv_mean,
            cv_std: trial.cv_std,
            fold_scores: trial.fold_scores.clone(),
            ended_text: ending_text(&ended, settings.as_ref().map(|s| s.patience)),
            ended,
            config: config_json(space, trial),
            max_epochs: settings.as_ref().map(|s| s.max_epochs),
            patience: settings.as_ref().map(|s| s.patience),
            cost: TrialCost {
                params: trial.params,
                macs: trial.macs,
                seconds: trial.seconds,
                epochs: trial.epochs,
                epochs_trained: trial.budget,
            },
            latency: trial.latency.clone(),
            architecture: trial.architecture.clone(),
            layers,
            layers_missing,
            folds: trial.curves.clone(),
            mean_at_best_epoch: trial
                .intermediate
                .iter()
                .map(|v| metric.to_loss(*v))
                .collect(),
        }
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into()),
            Format::Table => self.text(),
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let score = match (self.cv_mean, self.cv_std) {
            (Some(m), Some(s)) => format!(", cv {} {m:.4} ± {s:.4}", self.metric),
            _ => String::new(),
        };
        let front = self
            .front
            .map(|f| format!(", Pareto front {f}"))
            .unwrap_or_default();
        let rank = self
            .rank
            .map(|r| {
                format!(
                    " (rank {r} of {} complete trials{front})",
                    self.complete_trials
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "trial {} of study `{}`: {}{score}{rank}",
            self.trial, self.study, self.state
        );
        if !self.fold_scores.is_empty() {
            let scores: Vec<String> = self.fold_scores.iter().map(|s| format!("{s:.4}")).collect();
            let when = match self.ended {
                Ending::Complete { .. } => "",
                _ => " (at each fold's best epoch so far)",
            };
            let _ = writeln!(
                out,
                "fold scores ({}){when}: {}",
                self.metric,
                scores.join(", ")
            );
        }
        if !self.objectives.is_empty() {
            let values: Vec<String> = self
                .objectives
                .iter()
                .map(|o| {
                    let v = o.value.map_or_else(|| "-".into(), short_float);
                    format!("{} {v}", o.name)
                })
                .collect();
            let _ = writeln!(out, "objectives: {}", values.join(", "));
        }
        let _ = writeln!(out, "ended: {}", self.ended_text);
        let c = &self.cost;
        let retrain = match self.ended {
            Ending::Complete { .. } => format!(
                "; early stopping chose {} (the epochs of a retraining)",
                epochs(c.epochs)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "cost: {} parameters, {} multiply-adds per sample, {:.1}s, {} trained over all folds{retrain}",
            thousands(c.params as u64),
            thousands(c.macs),
            c.seconds,
            epochs(c.epochs_trained),
        );
        if let Some(l) = &self.latency {
            let _ = writeln!(
                out,
                "latency: {} ms per sample at batch 1 (spread {:.1}%, wall clock {} ms), {} ms per sample at batch {}",
                short_float(l.ms),
                100.0 * l.spread,
                short_float(l.wall_ms),
                short_float(l.batch_ms),
                l.batch
            );
        }
        let _ = writeln!(out, "architecture: {}", self.architecture);

        let _ = writeln!(out, "\nsampled values");
        let mut b = Builder::default();
        b.push_record(["parameter", "value"]);
        for (k, v) in &self.config {
            b.push_record([k.clone(), value_text(v)]);
        }
        let _ = writeln!(out, "{}", b.build().with(Style::rounded()));

        match (&self.layers, &self.layers_missing) {
            (Some(l), _) => {
                let _ = writeln!(out, "\nnetwork, layer by layer");
                let _ = writeln!(out, "{}", layer_table_text(l));
            }
            (None, Some(why)) => {
                let _ = writeln!(out, "\nnetwork: cannot be shown: {why}");
            }
            (None, None) => {}
        }

        let _ = writeln!(out, "\n{}", self.curves_text());
        out.trim_end().to_string()
    }

    /// The validation curves, one row per epoch: each fold's loss and score, then the mean best
    /// score so far.
    fn curves_text(&self) -> String {
        let epochs = self
            .folds
            .iter()
            .map(FoldCurve::epochs)
            .max()
            .unwrap_or(0)
            .max(self.mean_at_best_epoch.len());
        if epochs == 0 {
            return "validation curves: none (the trial trained no epoch)".into();
        }
        let mut b = Builder::default();
        let mut header = vec!["epoch".to_string()];
        for i in 1..=self.folds.len() {
            header.push(format!("fold {i} loss"));
            header.push(format!("fold {i} {}", self.metric));
        }
        header.push(format!("mean {} at best epochs", self.metric));
        b.push_record(header);
        let cell = |xs: &[f64], e: usize, best: bool| {
            xs.get(e - 1)
                .map(|v| format!("{v:.4}{}", if best { " *" } else { "" }))
                .unwrap_or_default()
        };
        for e in 1..=epochs {
            let mut row = vec![e.to_string()];
            for f in &self.folds {
                let best = f.best_epoch == e;
                row.push(cell(&f.loss, e, best));
                row.push(cell(&f.score, e, best));
            }
            row.push(cell(&self.mean_at_best_epoch, e, false));
            b.push_record(row);
        }
        let note = if self.folds.is_empty() {
            "\n(each fold's curve was not recorded for this trial: its journal predates them)"
        } else {
            "\n* the fold's best epoch (lowest validation loss), whose score is the fold's score; the last\n  column averages the folds' scores at their best epochs so far (what the scheduler judged)"
        };
        format!(
            "validation curves, per epoch\n{}{note}",
            b.build().with(Style::rounded())
        )
    }
}

fn ending(t: &TrialRecord, scheduler: &str) -> Ending {
    match t.state {
        TrialState::Complete => Ending::Complete {
            folds: t
                .curves
                .iter()
                .enumerate()
                .map(|(i, c)| FoldEnding {
                    fold: i + 1,
                    epochs: c.epochs(),
                    best_epoch: c.best_epoch,
                    early_stop: c.stopped_early,
                })
                .collect(),
        },
        TrialState::Pruned => Ending::Pruned {
            scheduler: scheduler.to_string(),
            epochs: t.epochs,
            rung: t.pruned_at,
        },
        TrialState::Failed => Ending::Failed {
            error: t
                .error
                .clone()
                .unwrap_or_else(|| "no reason recorded".into()),
        },
        TrialState::Interrupted => Ending::Interrupted,
        TrialState::Running => Ending::Running,
    }
}

fn ending_text(e: &Ending, patience: Option<usize>) -> String {
    match e {
        Ending::Complete { folds } if folds.is_empty() => {
            "complete (how each fold stopped was not recorded for this trial)".into()
        }
        Ending::Complete { folds } => {
            let patience = patience
                .map(|p| format!(", patience {p}"))
                .unwrap_or_default();
            let each: Vec<String> = folds
                .iter()
                .map(|f| match f.early_stop {
                    Some(k) => format!(
                        "fold {} early stop at epoch {k} (best epoch {})",
                        f.fold, f.best_epoch
                    ),
                    None => format!(
                        "fold {} trained all {} (max_epochs; best epoch {})",
                        f.fold,
                        epochs(f.epochs),
                        f.best_epoch
                    ),
                })
                .collect();
            format!("complete{patience}: {}", each.join("; "))
        }
        Ending::Pruned {
            scheduler,
            rung: Some(r),
            ..
        } => {
            let bracket = r
                .bracket
                .map(|b| format!(" in bracket {b}"))
                .unwrap_or_default();
            format!(
                "pruned by {scheduler}{bracket} at rung {} (after {}): not among the best at that rung",
                r.rung,
                epochs(r.epochs)
            )
        }
        Ending::Pruned {
            scheduler,
            epochs: n,
            ..
        } => format!("pruned by {scheduler} after {}", epochs(*n)),
        Ending::Failed { error } => format!("failed: {error}"),
        Ending::Interrupted => "interrupted (Ctrl-C or SIGTERM) while it trained".into(),
        Ending::Running => "still running (or lost by a process that died)".into(),
    }
}

/// The configuration with choices by label; without the space, values as recorded.
fn config_json(space: Option<&SearchSpace>, t: &TrialRecord) -> serde_json::Map<String, Value> {
    match space {
        Some(s) => s.config_json(&t.config),
        None => t
            .config
            .iter()
            .map(|(k, v)| {
                let j = match v {
                    ParamValue::Int(i) => Value::from(*i),
                    ParamValue::Float(x) => Value::from(*x),
                    ParamValue::Cat(i) => Value::from(format!("choice #{i}")),
                };
                (k.clone(), j)
            })
            .collect(),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => n.as_f64().map(short_float).unwrap_or_default(),
        v => v.to_string(),
    }
}

fn layers_view(t: &LayerTable) -> Layers {
    Layers {
        rows: t
            .rows
            .iter()
            .map(|r| LayerView {
                path: r.path.clone(),
                kind: r.kind.clone(),
                depth: r.depth,
                output: r.output.label(),
                output_shape: [r.output.c, r.output.h, r.output.w],
                params: r.params,
                macs: r.macs,
            })
            .collect(),
        total_params: t.cost.params,
        total_macs: t.cost.macs,
    }
}

fn layer_table_text(l: &Layers) -> String {
    let mut b = Builder::default();
    b.push_record(["layer", "kind", "output", "params", "MACs"]);
    for r in &l.rows {
        b.push_record([
            format!("{}{}", "  ".repeat(r.depth), r.path),
            r.kind.clone(),
            r.output.clone(),
            thousands(r.params as u64),
            thousands(r.macs),
        ]);
    }
    b.push_record([
        "total".to_string(),
        String::new(),
        String::new(),
        thousands(l.total_params as u64),
        thousands(l.total_macs),
    ]);
    b.build().with(Style::rounded()).to_string()
}

/// `1 epoch`, `3 epochs`.
fn epochs(n: usize) -> String {
    if n == 1 {
        "1 epoch".into()
    } else {
        format!("{n} epochs")
    }
}
