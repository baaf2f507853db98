//! Plots of a study drawn from its trial records alone: SVG by plotters, PNG rendered from that SVG.
//!
//! Five plots, one file each ([`PlotKind`]): the optimisation history, the learning curves of the
//! top trials, score against cost (parameters, or a multi-objective study's latency, parameters or
//! multiply-adds) with the Pareto front, parameter importance
//! ([`fanova`]) and a slice plot of the score against each parameter. They are written under
//! `results/<study>/plots/` at the end of `nas search`, by `nas plot`, and inlined in `nas report`.

mod curves;
pub mod fanova;
mod history;
mod importance;
mod pareto;
mod png;
mod slice;
mod style;

pub use importance::importances;
pub use pareto::cost_axis as pareto_cost_axis;
pub use png::{png_from_svg, system_fonts_found};

use crate::objective::Objective;
use crate::search::TrialState;
use crate::space::{Choice, Distribution, ParamValue, SearchSpace};
use crate::study::{Metric, TrialRecord};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a plot could not be made.
#[derive(Debug, Error)]
pub enum PlotError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("cannot draw the {plot} plot: {message}")]
    Draw { plot: &'static str, message: String },
    #[error("cannot render {plot} as PNG: {message}")]
    Png { plot: &'static str, message: String },
}

/// One kind of plot; each is written as `<file_stem>.svg` and `<file_stem>.png`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotKind {
    History,
    LearningCurves,
    Pareto,
    Importance,
    Slice,
}

impl PlotKind {
    pub const ALL: [PlotKind; 5] = [
        PlotKind::History,
        PlotKind::LearningCurves,
        PlotKind::Pareto,
        PlotKind::Importance,
        PlotKind::Slice,
    ];

    pub fn file_stem(&self) -> &'static str {
        match self {
            PlotKind::History => "history",
            PlotKind::LearningCurves => "learning_curves",
            PlotKind::Pareto => "pareto",
            PlotKind::Importance => "importance",
            PlotKind::Slice => "slice",
        }
    }

    /// The plot's title, as drawn at its top (the Pareto plot's names its cost axis:
    /// `pareto::title`).
    pub fn title(&self) -> &'static str {
        match self {
            PlotKind::History => "Optimisation history",
            PlotKind::LearningCurves => "Learning curves of the top trials",
            PlotKind::Pareto => "Score against size: the Pareto front",
            PlotKind::Importance => "Parameter importance (fANOVA on a random forest)",
            PlotKind::Slice => "Slice plot: the score against each parameter",
        }
    }
}

/// What the plots read: a study's trials and how they are scored.
#[derive(Clone, Copy)]
pub struct PlotInput<'a> {
    pub study: &'a str,
    pub metric: Metric,
    /// The study's objectives (`StudyMeta::objectives`; empty: the score alone). With several,
    /// the Pareto plot sets the score against the first cost objective and marks front 1.
    pub objectives: &'a [Objective],
    pub trials: &'a [TrialRecord],
    /// The study's space, for parameter domains and choice names; without it both are read off
    /// the trials.
    pub space: Option<&'a SearchSpace>,
    /// Seeds the random forest of the importance plot.
    pub seed: u64,
}

impl PlotInput<'_> {
    /// Complete trials with a finite score, as (trial, score).
    fn scored(&self) -> Vec<(&TrialRecord, f64)> {
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| t.cv_mean.filter(|m| m.is_finite()).map(|m| (t, m)))
            .collect()
    }

    /// "cv accuracy", "cv rmse" or "objective value".
    pub fn score_label(&self) -> String {
        match self.metric {
            Metric::Value(_) => "objective value".into(),
            m => format!("cv {}", m.label()),
        }
    }

    fn better_word(&self) -> &'static str {
        if self.metric.higher_is_better() {
            "higher is better"
        } else {
            "lower is better"
        }
    }

    /// The score of an intermediate value (the journal keeps them lower-is-better).
    fn score_of_intermediate(&self, v: f64) -> f64 {
        self.metric.to_loss(v)
    }

    /// "study `x`: N trials (a complete, b pruned, c failed)".
    fn counts(&self) -> String {
        let n = |s: TrialState| self.trials.iter().filter(|t| t.state == s).count();
        let mut parts = vec![format!("{} complete", n(TrialState::Complete))];
        for (s, word) in [
            (TrialState::Pruned, "pruned"),
            (TrialState::Failed, "failed"),
            (TrialState::Interrupted, "interrupted"),
            (TrialState::Running, "running"),
        ] {
            if n(s) > 0 {
                parts.push(format!("{} {word}", n(s)));
            }
        }
        format!(
            "study {}: {} trials ({})",
            self.study,
            self.trials.len(),
            parts.join(", ")
        )
    }
}

/// The SVG text of one plot.
pub fn svg(kind: PlotKind, input: &PlotInput) -> Result<String, PlotError> {
    let mut out = String::new();
    let drawn = match kind {
        PlotKind::History => history::draw(input, &mut out),
        PlotKind::LearningCurves => curves::draw(input, &mut out),
        PlotKind::Pareto => pareto::draw(input, &mut out),
        PlotKind::Importance => importance::draw(input, &mut out),
        PlotKind::Slice => slice::draw(input, &mut out),
    };
    drawn.map_err(|message| PlotError::Draw {
        plot: kind.file_stem(),
        message,
    })?;
    Ok(out)
}

/// Writes every plot as SVG and PNG into `<study_dir>/plots/` and returns the files written.
pub fn write_all(study_dir: &Path, input: &PlotInput) -> Result<Vec<PathBuf>, PlotError> {
    let dir = study_dir.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| PlotError::Io {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    // Drawn side by side (rendering and encoding the PNGs is most of the time), written in order:
    // the plots before a failing one are written and its error is the one returned, as one by one.
    let drawn: Vec<Result<_, PlotError>> = PlotKind::ALL
        .par_iter()
        .map(|&kind| {
            let svg = svg(kind, input)?;
            let png = png_from_svg(&svg).map_err(|message| PlotError::Png {
                plot: kind.file_stem(),
                message,
            })?;
            Ok((kind, svg, png))
        })
        .collect();
    let mut written = Vec::new();
    for drawn in drawn {
        let (kind, svg, png) = drawn?;
        for (ext, bytes) in [("svg", svg.as_bytes()), ("png", png.as_slice())] {
            let path = dir.join(format!("{}.{ext}", kind.file_stem()));
            write_replacing(&path, bytes)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so that a reader
/// never sees half a plot.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| PlotError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// How one parameter's values are laid along an axis.
#[derive(Clone, Debug, PartialEq)]
enum Scale {
    Linear {
        low: f64,
        high: f64,
    },
    /// Log-uniform: values are shown (and weighed by the importance) in log space.
    Log {
        low: f64,
        high: f64,
    },
    /// Choice names, shown at 0, 1, 2...
    Categories(Vec<String>),
}

/// A parameter as the slice plot and the importance see it.
#[derive(Clone, Debug)]
struct ParamAxis {
    name: String,
    scale: Scale,
    /// Whether the values are whole numbers.
    integer: bool,
}

impl ParamAxis {
    /// The position of `v` on this axis (a choice's index for categories), if it fits.
    fn position(&self, v: &ParamValue) -> Option<f64> {
        match (&self.scale, v) {
            (Scale::Categories(_), ParamValue::Cat(i)) => Some(*i as f64),
            (Scale::Log { .. }, ParamValue::Int(i)) if *i > 0 => Some(*i as f64),
            (Scale::Log { .. }, ParamValue::Float(x)) if *x > 0.0 => Some(*x),
            (Scale::Linear { .. }, ParamValue::Int(i)) => Some(*i as f64),
            (Scale::Linear { .. }, ParamValue::Float(x)) if x.is_finite() => Some(*x),
            _ => None,
        }
    }

    /// Whether the parameter can take more than one value.
    fn varies(&self) -> bool {
        match &self.scale {
            Scale::Linear { low, high } | Scale::Log { low, high } => high > low,
            Scale::Categories(c) => c.len() > 1,
        }
    }
}

/// The parameters that some scored trial holds, in the space's order (else by name), with their
/// domains: the space's when it is known, else the range of the values seen.
fn param_axes(input: &PlotInput) -> Vec<ParamAxis> {
    let scored = input.scored();
    let seen = |name: &str| scored.iter().any(|(t, _)| t.config.contains_key(name));
    let mut names: Vec<String> = match input.space {
        Some(space) => space
            .params
            .iter()
            .map(|p| p.name.clone())
            .filter(|n| seen(n))
            .collect(),
        None => Vec::new(),
    };
    // Parameters the trials hold but the space does not name (a space changed with --force).
    let mut extra: Vec<String> = scored
        .iter()
        .flat_map(|(t, _)| t.config.keys().cloned())
        .filter(|k| !names.contains(k))
        .collect();
    extra.sort();
    extra.dedup();
    names.extend(extra);
    names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<ParamValue> = scored
                .iter()
                .filter_map(|(t, _)| t.config.get(&name).copied())
                .collect();
            let dist = input
                .space
                .and_then(|s| s.param(&name))
                .map(|p| p.dist.clone());
            let scale = scale_of(dist.as_ref(), &values)?;
            let integer = match &dist {
                Some(d) => matches!(d, Distribution::Int { .. }),
                None => values.iter().all(|v| matches!(v, ParamValue::Int(_))),
            };
            Some(ParamAxis {
                name,
                scale,
                integer,
            })
        })
        .collect()
}

fn scale_of(dist: Option<&Distribution>, values: &[ParamValue]) -> Option<Scale> {
    let seen = || {
        let xs: Vec<f64> = values
            .iter()
            .filter_map(|v| match v {
                ParamValue::Int(i) => Some(*i as f64),
                ParamValue::Float(x) if x.is_finite() => Some(*x),
                _ => None,
            })
            .collect();
        let low = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let high = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (low <= high).then_some((low, high))
    };
    match dist {
        Some(Distribution::Categorical { choices }) => Some(Scale::Categories(
            choices.iter().map(Choice::to_string).collect(),
        )),
        Some(Distribution::Int { low, high, log }) => {
            Some(numeric(*low as f64, *high as f64, *log))
        }
        Some(Distribution::Float { low, high, log }) => Some(numeric(*low, *high, *log)),
        None => match values.first()? {
            ParamValue::Cat(_) => {
                let n = values
                    .iter()
                    .filter_map(|v| match v {
                        ParamValue::Cat(i) => Some(*i + 1),
                        _ => None,
                    })
                    .max()?;
                Some(Scale::Categories((0..n).map(|i| format!("#{i}")).collect()))
            }
            _ => seen().map(|(low, high)| Scale::Linear { low, high }),
        },
    }
}

fn numeric(low: f64, high: f64, log: bool) -> Scale {
    if log && low > 0.0 {
        Scale::Log { low, high }
    } else {
        Scale::Linear { low, high }
    }
}

/// A count of parameters in a few characters: 950, 12.3k, 4.56M.
pub(crate) fn human_count(n: f64) -> String {
    let a = n.abs();
    if a >= 1e9 {
        format!("{:.3}G", n / 1e9)
    } else if a >= 1e6 {
        trim(format!("{:.2}", n / 1e6)) + "M"
    } else if a >= 1e3 {
        trim(format!("{:.1}", n / 1e3)) + "k"
    } else {
        format!("{n:.0}")
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A tick value of a parameter axis: integers as such, others to 3 significant digits.
pub(crate) fn short_number(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if x.fract() == 0.0 && a < 1e6 {
        format!("{x:.0}")
    } else if (1e-2..1e4).contains(&a) {
        trim(format!(
            "{:.*}",
            (2 - a.log10().floor() as i32).max(0) as usize,
            x
        ))
    } else {
        let s = format!("{x:.2e}");
        match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim(m.to_string())),
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_numbers_are_short() {
        assert_eq!(human_count(950.0), "950");
        assert_eq!(human_count(12_345.0), "12.3k");
        assert_eq!(human_count(2_000.0), "2k");
        assert_eq!(human_count(4_560_000.0), "4.56M");
        assert_eq!(short_number(0.001), "1e-3");
        assert_eq!(short_number(0.0316), "0.0316");
        assert_eq!(short_number(64.0), "64");
        assert_eq!(short_number(0.5), "0.5");
    }
}
