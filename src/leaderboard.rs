//! The leaderboard: trials ranked by mean cross-validation score, rendered with `tabled`.

use crate::search::TrialState;
use crate::space::SearchSpace;
use crate::study::{Metric, Storage, StudyError, TestResult, TrialRecord};
use serde::Serialize;
use std::path::Path;
use std::str::FromStr;
use tabled::builder::Builder;
use tabled::settings::Style;

/// How to print a leaderboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "markdown" | "md" => Ok(Format::Markdown),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!(
                "unknown format `{s}` (expected table, markdown, csv or json)"
            )),
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
}

/// Builds the rows: complete trials best first, then pruned ones (best last value first),
/// then failed and interrupted ones by trial number.
pub fn rows(trials: &[TrialRecord], metric: Metric, space: Option<&SearchSpace>) -> Vec<Row> {
    let key = |t: &TrialRecord| -> (u8, f64, usize) {
        match (t.state, t.cv_mean) {
            (TrialState::Complete, Some(m)) if m.is_finite() => (0, metric.to_loss(m), t.number),
            (TrialState::Pruned, _) => (
                1,
                t.intermediate.last().copied().unwrap_or(f64::INFINITY),
                t.number,
            ),
            (TrialState::Running, _) => (3, 0.0, t.number),
            _ => (2, 0.0, t.number),
        }
    };
    let mut sorted: Vec<&TrialRecord> = trials.iter().collect();
    sorted.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then(ka.2.cmp(&kb.2))
    });
    let mut rank = 0;
    sorted
        .into_iter()
        .map(|t| {
            let ranked = key(t).0 == 0;
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
            }
        })
        .collect()
}

fn human(n: u64) -> String {
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

/// Renders rows; `top` keeps only the first N.
pub fn render(rows: &[Row], metric: Metric, format: Format, top: Option<usize>) -> String {
    let rows = &rows[..top.unwrap_or(rows.len()).min(rows.len())];
    match format {
        Format::Json => serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into()),
        Format::Csv => {
            let mut out = String::from(
                "rank,trial,state,architecture,params,flops,cv_mean,cv_std,epochs,seconds\n",
            );
            for r in rows {
                let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
                out.push_str(&format!(
                    "{},{},{},\"{}\",{},{},{},{},{},{:.2}\n",
                    r.rank.map(|x| x.to_string()).unwrap_or_default(),
                    r.trial,
                    r.state,
                    r.architecture.replace('"', "\"\""),
                    r.params,
                    r.flops,
                    opt(r.cv_mean),
                    opt(r.cv_std),
                    r.epochs,
                    r.seconds
                ));
            }
            out
        }
        Format::Table | Format::Markdown => {
            let mut b = Builder::default();
            b.push_record([
                "rank".to_string(),
                "trial".into(),
                "architecture".into(),
                "params".into(),
                "MACs".into(),
                format!("cv {} (mean ± std)", metric.label()),
                "epochs".into(),
                "time".into(),
                "state".into(),
            ]);
            for r in rows {
                b.push_record([
                    r.rank.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                    r.trial.to_string(),
                    r.architecture.clone(),
                    human(r.params as u64),
                    human(r.flops),
                    cv_cell(r),
                    r.epochs.to_string(),
                    format!("{:.1}s", r.seconds),
                    r.state.clone(),
                ]);
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
    let rows = rows(storage.trials(), metric, space);
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
