//! The leaderboard: trials ranked by mean cross-validation score (in a multi-objective study,
//! by Pareto front, then by the first objective), rendered with `tabled`.

use crate::search::TrialState;
use crate::space::{short_float, SearchSpace};
use crate::study::{Metric, Objectives, Storage, StudyError, TestResult, TrialRecord};
use clap::ValueEnum;
use serde::Serialize;
use std::cmp::Ordering;
use std::path::Path;
use tabled::builder::Builder;
use tabled::settings::Style;

/// How to print a leaderboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    #[value(alias = "md")]
    Markdown,
    Csv,
    Json,
}

/// A leaderboard column, as `--columns` and `--sort` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Column {
    /// Rank among complete trials: by mean CV score; with several objectives, by Pareto front,
    /// then by the first objective.
    Rank,
    /// Trial number.
    Trial,
    /// The network in one line.
    Architecture,
    /// Trainable parameters.
    Params,
    /// Multiply-adds per sample of one forward pass.
    Macs,
    /// Mean CV score (± std in tables; why a trial failed in its place).
    Score,
    /// Standard deviation of the folds' scores.
    Std,
    /// Epochs early stopping chose (epochs trained, for a pruned trial).
    Epochs,
    /// Seconds the trial took.
    Time,
    /// complete, pruned, failed, interrupted or running.
    State,
    /// Why the trial failed.
    Error,
    /// The Pareto front of a complete trial (1: dominated by none), under constrained
    /// domination: infeasible trials come in fronts behind every feasible one.
    Front,
    /// Milliseconds of inference per sample at batch 1 (measured when it is an objective or
    /// limited).
    Latency,
}

impl Column {
    /// The columns of a table when `--columns` is not given.
    pub const TABLE: &'static [Column] = &[
        Column::Rank,
        Column::Trial,
        Column::Architecture,
        Column::Params,
        Column::Macs,
        Column::Score,
        Column::Epochs,
        Column::Time,
        Column::State,
    ];
    /// The columns of a multi-objective study's table when `--columns` is not given.
    pub const TABLE_PARETO: &'static [Column] = &[
        Column::Rank,
        Column::Front,
        Column::Trial,
        Column::Architecture,
        Column::Params,
        Column::Macs,
        Column::Latency,
        Column::Score,
        Column::Epochs,
        Column::Time,
        Column::State,
    ];
    /// The columns of a multi-objective study's CSV file when `--columns` is not given.
    pub const CSV_PARETO: &'static [Column] = &[
        Column::Rank,
        Column::Front,
        Column::Trial,
        Column::State,
        Column::Architecture,
        Column::Params,
        Column::Macs,
        Column::Latency,
        Column::Score,
        Column::Std,
        Column::Epochs,
        Column::Time,
    ];
    /// The columns of a CSV file when `--columns` is not given.
    pub const CSV: &'static [Column] = &[
        Column::Rank,
        Column::Trial,
        Column::State,
        Column::Architecture,
        Column::Params,
        Column::Macs,
        Column::Score,
        Column::Std,
        Column::Epochs,
        Column::Time,
    ];

    /// The column's name in CSV headers and JSON rows (the [`Row`] field).
    pub fn key(&self) -> &'static str {
        match self {
            Column::Rank => "rank",
            Column::Trial => "trial",
            Column::Architecture => "architecture",
            Column::Params => "params",
            Column::Macs => "flops",
            Column::Score => "cv_mean",
            Column::Std => "cv_std",
            Column::Epochs => "epochs",
            Column::Time => "seconds",
            Column::State => "state",
            Column::Error => "error",
            Column::Front => "front",
            Column::Latency => "latency_ms",
        }
    }

    fn header(&self, metric: Metric) -> String {
        match self {
            Column::Macs => "MACs".into(),
            Column::Latency => "latency ms".into(),
            Column::Score => format!("cv {} (mean ± std)", metric.label()),
            Column::Std => "cv std".into(),
            Column::Time => "time".into(),
            c => c.key().into(),
        }
    }

    fn cell(&self, r: &Row) -> String {
        match self {
            Column::Rank => r.rank.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            Column::Trial => r.trial.to_string(),
            Column::Architecture => r.architecture.clone(),
            Column::Params => human(r.params as u64),
            Column::Macs => human(r.flops),
            Column::Score => cv_cell(r),
            Column::Std => r.cv_std.map_or_else(|| "-".into(), |s| format!("{s:.4}")),
            Column::Epochs => r.epochs.to_string(),
            Column::Time => format!("{:.1}s", r.seconds),
            Column::State => r.state.clone(),
            Column::Error => r.error.clone().unwrap_or_default(),
            Column::Front => r.front.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            Column::Latency => r.latency_ms.map_or_else(|| "-".into(), short_float),
        }
    }

    fn csv_cell(&self, r: &Row) -> String {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        let quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        match self {
            Column::Rank => r.rank.map(|x| x.to_string()).unwrap_or_default(),
            Column::Architecture => quoted(&r.architecture),
            Column::Params => r.params.to_string(),
            Column::Macs => r.flops.to_string(),
            Column::Score => opt(r.cv_mean),
            Column::Std => opt(r.cv_std),
            Column::Time => format!("{:.2}", r.seconds),
            Column::Error => r.error.as_deref().map(quoted).unwrap_or_default(),
            Column::Front => r.front.map(|x| x.to_string()).unwrap_or_default(),
            Column::Latency => opt(r.latency_ms),
            c => c.cell(r),
        }
    }
}

/// Which trials a leaderboard shows, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    Complete,
    Pruned,
    /// Failed and interrupted trials (both FAIL to Optuna).
    Failed,
    #[default]
    All,
}

impl StateFilter {
    pub fn keeps(&self, state: &str) -> bool {
        let is = |s: TrialState| state == s.label();
        match self {
            StateFilter::Complete => is(TrialState::Complete),
            StateFilter::Pruned => is(TrialState::Pruned),
            StateFilter::Failed => is(TrialState::Failed) || is(TrialState::Interrupted),
            StateFilter::All => true,
        }
    }
}

/// What `nas leaderboard` shows of the rows: which trials, in which order, how many, and which
/// columns (none: the format's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub state: StateFilter,
    pub sort: Column,
    pub top: Option<usize>,
    pub columns: Vec<Column>,
    /// Only the first Pareto front (`nas leaderboard --pareto`).
    pub pareto: bool,
}

impl Default for View {
    fn default() -> View {
        View {
            state: StateFilter::All,
            sort: Column::Rank,
            top: None,
            columns: Vec::new(),
            pareto: false,
        }
    }
}

/// One leaderboard line.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Rank among complete trials; none for pruned or failed ones.
    pub rank: Option<usize>,
    pub trial: usize,
    pub state: String,
    pub architecture: String,
    pub params: usize,
    /// Multiply-adds per sample of one forward pass.
    pub flops: u64,
    pub cv_mean: Option<f64>,
    pub cv_std: Option<f64>,
    pub epochs: usize,
    pub seconds: f64,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub error: Option<String>,
    /// The Pareto front, in a study of several objectives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front: Option<usize>,
    /// Measured inference milliseconds per sample at batch 1, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

/// Builds the rows: complete trials best first, then pruned ones (best last value first),
/// then failed and interrupted ones by trial number.
pub fn rows(trials: &[TrialRecord], metric: Metric, space: Option<&SearchSpace>) -> Vec<Row> {
    ranked_rows(trials, &Objectives::single(metric), space)
}

/// [`rows`] for a study of any number of objectives: with several, complete trials come by
/// Pareto front (the front column), then by the first objective, then by trial number.
pub fn ranked_rows(
    trials: &[TrialRecord],
    objectives: &Objectives,
    space: Option<&SearchSpace>,
) -> Vec<Row> {
    let metric = objectives.metric();
    let multi = objectives.is_multi();
    let fronts = if multi {
        objectives.fronts(trials)
    } else {
        vec![None; trials.len()]
    };
    // (class, front, value, number): a multi-objective study's value is its first objective's.
    let key = |i: usize| -> (u8, usize, f64, usize) {
        let t = &trials[i];
        match (t.state, t.cv_mean, fronts[i]) {
            (TrialState::Complete, _, Some(f)) => {
                let first = objectives
                    .losses(t)
                    .and_then(|l| l.first().copied())
                    .unwrap_or(f64::INFINITY);
                (0, f, first, t.number)
            }
            (TrialState::Complete, Some(m), None) if m.is_finite() && !multi => {
                (0, 0, metric.to_loss(m), t.number)
            }
            (TrialState::Pruned, _, _) => (
                1,
                0,
                t.intermediate.last().copied().unwrap_or(f64::INFINITY),
                t.number,
            ),
            (TrialState::Running, _, _) => (3, 0, 0.0, t.number),
            _ => (2, 0, 0.0, t.number),
        }
    };
    let mut sorted: Vec<usize> = (0..trials.len()).collect();
    sorted.sort_by(|&a, &b| {
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
            .then(ka.3.cmp(&kb.3))
    });
    let mut rank = 0;
    sorted
        .into_iter()
        .map(|i| {
            let t = &trials[i];
            let ranked = key(i).0 == 0;
            if ranked {
                rank += 1;
            }
            Row {
                rank: ranked.then_some(rank),
                trial: t.number,
                state: t.state.label().to_string(),
                architecture: t.architecture.clone(),
                params: t.params,
                flops: t.macs,
                cv_mean: t.cv_mean,
                cv_std: t.cv_std,
                epochs: t.epochs,
                seconds: t.seconds,
                config: space.map(|s| s.config_json(&t.config)).unwrap_or_default(),
                error: t.error.clone(),
                front: fronts[i],
                latency_ms: t.latency.as_ref().map(|l| l.ms),
            }
        })
        .collect()
}

/// A count in a few characters, as the leaderboard shows it: 950, 12.3k, 4.56M.
pub(crate) fn human(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

fn cv_cell(r: &Row) -> String {
    match (r.cv_mean, r.cv_std) {
        (Some(m), Some(s)) => format!("{m:.4} ± {s:.4}"),
        _ => match &r.error {
            Some(e) if e.len() > 60 => format!("{}…", &e[..e.floor_char_boundary(60)]),
            Some(e) => e.clone(),
            None => "-".into(),
        },
    }
}

/// The rows `view` selects from `rows` (as [`rows`] ranks them), in its order: ties keep the rank
/// order. Scores sort best first, the other numbers smallest first, text alphabetically; trials
/// without the value come last.
pub fn select(rows: Vec<Row>, metric: Metric, view: &View) -> Vec<Row> {
    let mut rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| view.state.keeps(&r.state) && (!view.pareto || r.front == Some(1)))
        .collect();
    fn missing_last<T>(a: Option<T>, b: Option<T>, cmp: impl Fn(T, T) -> Ordering) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) => cmp(a, b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    rows.sort_by(|a, b| match view.sort {
        Column::Rank => Ordering::Equal,
        Column::Trial => a.trial.cmp(&b.trial),
        Column::Architecture => a.architecture.cmp(&b.architecture),
        Column::Params => a.params.cmp(&b.params),
        Column::Macs => a.flops.cmp(&b.flops),
        Column::Score => missing_last(finite(a.cv_mean), finite(b.cv_mean), |x, y| {
            metric.to_loss(x).total_cmp(&metric.to_loss(y))
        }),
        Column::Std => missing_last(finite(a.cv_std), finite(b.cv_std), |x, y| x.total_cmp(&y)),
        Column::Epochs => a.epochs.cmp(&b.epochs),
        Column::Time => a.seconds.total_cmp(&b.seconds),
        Column::State => a.state.cmp(&b.state),
        Column::Error => missing_last(a.error.as_ref(), b.error.as_ref(), |x, y| x.cmp(y)),
        Column::Front => missing_last(a.front, b.front, |x, y| x.cmp(&y)),
        Column::Latency => missing_last(finite(a.latency_ms), finite(b.latency_ms), |x, y| {
            x.total_cmp(&y)
        }),
    });
    rows.truncate(view.top.unwrap_or(rows.len()));
    rows
}

/// Renders rows; `top` keeps only the first N.
pub fn render(rows: &[Row], metric: Metric, format: Format, top: Option<usize>) -> String {
    let rows = &rows[..top.unwrap_or(rows.len()).min(rows.len())];
    render_columns(rows, metric, format, &[])
}

/// Renders rows with `columns` in that order (none: the format's own; JSON then writes whole rows).
pub fn render_columns(rows: &[Row], metric: Metric, format: Format, columns: &[Column]) -> String {
    // A multi-objective study's rows have fronts, and show them with the latency.
    let pareto = rows.iter().any(|r| r.front.is_some());
    let pick = |default: &'static [Column], multi: &'static [Column]| match columns {
        [] if pareto => multi,
        [] => default,
        c => c,
    };
    match format {
        Format::Json if columns.is_empty() => {
            serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into())
        }
        Format::Json => {
            let picked: Vec<Picked> = rows
                .iter()
                .map(|r| {
                    let whole = serde_json::to_value(r).unwrap_or_default();
                    Picked(
                        columns
                            .iter()
                            .map(|c| (c.key(), whole[c.key()].clone()))
                            .collect(),
                    )
                })
                .collect();
            serde_json::to_string_pretty(&picked).unwrap_or_else(|_| "[]".into())
        }
        Format::Csv => {
            let columns = pick(Column::CSV, Column::CSV_PARETO);
            let line = |cells: Vec<String>| format!("{}\n", cells.join(","));
            let mut out = line(columns.iter().map(|c| c.key().to_string()).collect());
            for r in rows {
                out.push_str(&line(columns.iter().map(|c| c.csv_cell(r)).collect()));
            }
            out
        }
        Format::Table | Format::Markdown => {
            let columns = pick(Column::TABLE, Column::TABLE_PARETO);
            let mut b = Builder::default();
            b.push_record(columns.iter().map(|c| c.header(metric)));
            for r in rows {
                b.push_record(columns.iter().map(|c| c.cell(r)));
            }
            let mut t = b.build();
            if format == Format::Table {
                t.with(Style::rounded());
            } else {
                t.with(Style::markdown());
            }
            t.to_string()
        }
    }
}

/// Some fields of a row, written as a JSON object in the order `--columns` names them.
struct Picked(Vec<(&'static str, serde_json::Value)>);

impl Serialize for Picked {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The labelled test-set line printed under a leaderboard.
pub fn test_line(t: &TestResult) -> String {
    format!(
        "TEST SET (held out, never used by the search): trial {} retrained on {} samples for {} epochs -> test {} {:.4} on {} samples",
        t.trial,
        t.train_samples,
        t.epochs,
        t.metric.label(),
        t.test_score,
        t.test_samples
    )
}

/// Writes a study's leaderboards into `dir`: `leaderboard.txt` (the table, with the test-set line
/// when there is one), `leaderboard.json` and `leaderboard.csv`. Returns the table.
pub fn save(
    dir: &Path,
    storage: &dyn Storage,
    space: Option<&SearchSpace>,
) -> Result<String, StudyError> {
    let metric = storage.meta().metric;
    let rows = ranked_rows(storage.trials(), &Objectives::of(storage.meta()), space);
    let mut table = render(&rows, metric, Format::Table, None);
    if let Some(t) = storage.test_result() {
        table.push('\n');
        table.push_str(&test_line(t));
    }
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| StudyError::Io {
            path,
            message: e.to_string(),
        })
    };
    write("leaderboard.txt", &format!("{table}\n"))?;
    write(
        "leaderboard.json",
        &render(&rows, metric, Format::Json, None),
    )?;
    write("leaderboard.csv", &render(&rows, metric, Format::Csv, None))?;
    Ok(table)
}
