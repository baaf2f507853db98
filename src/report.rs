//! `report.html`: one self-contained page on a study (settings, leaderboard, plots as inline SVG,
//! the best trial's layers) that opens in any browser without a network.

use crate::leaderboard::{self, Row};
use crate::nn::LayerTable;
use crate::plot::{self, human_count, short_number, PlotError, PlotInput, PlotKind};
use crate::search::TrialState;
use crate::space::SearchSpace;
use crate::study::{Metric, Objectives, StudyMeta, TestResult, TrialRecord};
use std::fmt::Write as _;

/// What a report shows.
pub struct Report<'a> {
    pub meta: &'a StudyMeta,
    pub trials: &'a [TrialRecord],
    pub test: Option<&'a TestResult>,
    pub space: Option<&'a SearchSpace>,
    /// The best trial's layer table, or why there is none.
    pub layers: Result<LayerTable, String>,
}

/// `s` with the five characters that HTML gives a meaning escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; color: #1e1e1e;
       max-width: 1200px; margin: 0 auto; padding: 24px 32px 64px; line-height: 1.45; }
h1 { margin-bottom: 4px; } h2 { margin-top: 40px; border-bottom: 2px solid #e5e5e5; padding-bottom: 4px; }
.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 12px 0; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e5e5e5; text-align: left; vertical-align: top; }
th { background: #f3f5f8; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff4d6; }
tr.failed td, tr.pruned td, tr.interrupted td { color: #777; }
table.settings th { background: none; width: 14em; }
.config { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12px; color: #444; }
figure { margin: 24px 0; }
figure svg { width: 100%; height: auto; max-width: 960px; display: block; border: 1px solid #eee; }
figure.wide svg { max-width: 100%; }
figcaption { color: #555; font-size: 14px; margin-top: 6px; max-width: 960px; }
pre { background: #f6f8fa; padding: 12px; overflow-x: auto; font-size: 13px; }
.scroll { overflow: auto; max-height: 640px; border: 1px solid #eee; }
nav a { margin-right: 16px; }
";

/// The page.
pub fn render(r: &Report) -> Result<String, PlotError> {
    let meta = r.meta;
    let metric = meta.metric;
    let objectives = Objectives::of(meta);
    // With several objectives: the first front's best on the first objective, as `nas export`.
    let best = objectives.best(r.trials);
    let score = match metric {
        Metric::Value(_) => "value".to_string(),
        m => format!("cv {}", m.label()),
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>nas report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&meta.name)
    );
    let _ = writeln!(h, "<h1>Study <code>{}</code></h1>", escape(&meta.name));
    let lead = match best {
        Some(b) => format!(
            "Best trial: <b>{}</b>, {score} <b>{}</b>{} over {} folds ({}).",
            b.number,
            b.cv_mean.map(|m| format!("{m:.4}")).unwrap_or_default(),
            b.cv_std.map(|s| format!(" ± {s:.4}")).unwrap_or_default(),
            meta.folds,
            escape(&b.architecture)
        ),
        None => "No trial has completed yet.".to_string(),
    };
    let _ = writeln!(h, "<p class=\"lead\">{lead}</p>");
    if let Some(t) = r.test {
        let _ = writeln!(
            h,
            "<p class=\"lead\">{}</p>",
            escape(&leaderboard::test_line(t))
        );
    }
    let _ = writeln!(
        h,
        "<nav><a href=\"#settings\">Settings</a><a href=\"#leaderboard\">Leaderboard</a><a href=\"#plots\">Plots</a><a href=\"#best\">Best trial</a></nav>"
    );

    settings(&mut h, r);
    leaderboard_table(&mut h, r.trials, &objectives, r.space, &score);

    let _ = writeln!(h, "<h2 id=\"plots\">Plots</h2>");
    let input = PlotInput {
        study: &meta.name,
        metric,
        objectives: &meta.objectives,
        trials: r.trials,
        space: r.space,
        seed: meta.seed,
    };
    for kind in PlotKind::ALL {
        let svg = plot::svg(kind, &input)?;
        let start = svg.find("<svg").unwrap_or(0);
        let wide = if kind == PlotKind::Slice {
            " class=\"wide\""
        } else {
            ""
        };
        let _ = writeln!(
            h,
            "<figure id=\"plot-{}\"{wide}>\n{}\n<figcaption>{}</figcaption>\n</figure>",
            kind.file_stem(),
            &svg[start..],
            escape(&caption(kind, &input))
        );
    }

    best_section(&mut h, r, best, &score);
    let _ = writeln!(
        h,
        "<p class=\"lead\">Written by nas {} (<code>nas report</code>). <code>nas search</code> and <code>nas plot</code> write the same plots as SVG and PNG files under <code>plots/</code>.</p>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    Ok(h)
}

fn caption(kind: PlotKind, input: &PlotInput) -> String {
    if kind == PlotKind::Pareto && input.objectives.len() > 1 {
        let cost = plot::pareto_cost_axis(input.objectives);
        return format!(
            "Score against {}, an objective of this study. The red step line: the trials no cheaper trial beats on score; red dots: the trials on front 1 of every objective ({}), dominated by no other trial on all of them.",
            cost.key(),
            crate::objective::names(input.objectives)
        );
    }
    match kind {
        PlotKind::History => "Each trial's mean cross-validation score in the order trials were created, and the best score so far. Pruned trials are shown at the score they had when the scheduler stopped them.",
        PlotKind::LearningCurves => "The mean over folds of each fold's score at its best epoch so far, after every epoch: the value the scheduler reads.",
        PlotKind::Pareto => "Score against model size. Red: trials that no smaller trial beats on score.",
        PlotKind::Importance => "fANOVA (Hutter et al., 2014) on a random forest of 64 regression trees fitted to the complete trials, as Optuna's default importance evaluator: the share of the score's variance each parameter explains on its own. Only parameters that every complete trial has are measured.",
        PlotKind::Slice => "Each complete trial's score against the value each parameter took; later trials are darker.",
    }
    .into()
}

fn settings(h: &mut String, r: &Report) {
    let meta = r.meta;
    let count = |s: TrialState| r.trials.iter().filter(|t| t.state == s).count();
    let seconds: f64 = r.trials.iter().map(|t| t.seconds).sum();
    let direction = if meta.metric.higher_is_better() {
        "higher is better"
    } else {
        "lower is better"
    };
    let folds = if meta.folds == 1 {
        "1 (one stratified validation split)".to_string()
    } else {
        format!("{} (k-fold cross-validation)", meta.folds)
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("space file", meta.space_file.clone()),
        ("data", meta.data.clone()),
        ("task", format!("{:?}", meta.task).to_lowercase()),
        ("metric", format!("{} ({direction})", meta.metric.label())),
        (
            "objectives",
            crate::objective::names(Objectives::of(meta).list()),
        ),
        ("sampler", meta.strategy.clone()),
        ("scheduler", meta.scheduler.clone()),
        ("seed", meta.seed.to_string()),
        ("folds", folds),
        (
            "trials",
            format!(
                "{} ({} complete, {} pruned, {} failed, {} interrupted)",
                r.trials.len(),
                count(TrialState::Complete),
                count(TrialState::Pruned),
                count(TrialState::Failed),
                count(TrialState::Interrupted)
            ),
        ),
        (
            "training time",
            format!("{seconds:.1} s, summed over trials"),
        ),
    ];
    if let Some(input) = r
        .layers
        .as_ref()
        .ok()
        .and_then(|t| t.rows.iter().find(|l| l.path == "input"))
    {
        rows.push(("input shape", input.output.label()));
    }
    let _ = writeln!(
        h,
        "<h2 id=\"settings\">Settings</h2>\n<table class=\"settings\" id=\"settings-table\">"
    );
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    }
    let _ = writeln!(
        h,
        "</table>\n<details><summary>Search space ({})</summary>\n<pre>{}</pre>\n</details>",
        escape(&meta.space_file),
        escape(&meta.space_source)
    );
}

fn config_text(r: &Row) -> String {
    r.config
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(x) if !n.is_i64() && !n.is_u64() => format!("{k}={}", short_number(x)),
                _ => format!("{k}={n}"),
            },
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn leaderboard_table(
    h: &mut String,
    trials: &[TrialRecord],
    objectives: &Objectives,
    space: Option<&SearchSpace>,
    score: &str,
) {
    let metric = objectives.metric();
    let rows = leaderboard::ranked_rows(trials, objectives, space);
    // A multi-objective study ranks by Pareto front, and shows it with the measured latency.
    let multi = objectives.is_multi();
    let _ = writeln!(
        h,
        "<h2 id=\"leaderboard\">Leaderboard</h2>\n<div class=\"scroll\"><table id=\"leaderboard-table\">\n<thead><tr>\
         <th class=\"num\">rank</th>{}<th class=\"num\">trial</th><th>state</th><th>architecture</th>\
         <th class=\"num\">params</th><th class=\"num\">MACs</th>{}<th class=\"num\">{} (mean ± std)</th>\
         <th class=\"num\">epochs</th><th class=\"num\">time</th><th>configuration</th></tr></thead>\n<tbody>",
        if multi { "<th class=\"num\">front</th>" } else { "" },
        if multi { "<th class=\"num\">latency ms</th>" } else { "" },
        escape(score)
    );
    for r in &rows {
        let class = if r.rank == Some(1) {
            "best".to_string()
        } else {
            escape(&r.state)
        };
        let pruned_at = || {
            let t = trials.iter().find(|t| t.number == r.trial)?;
            let last = t.intermediate.last()?;
            Some(format!(
                "{:.4} when pruned after epoch {}",
                metric.to_loss(*last),
                t.intermediate.len()
            ))
        };
        let cv = match (r.cv_mean, r.cv_std, &r.error) {
            (Some(m), Some(s), _) => format!("{m:.4} ± {s:.4}"),
            (Some(m), None, _) => format!("{m:.4}"),
            (None, _, Some(e)) => e.clone(),
            _ if r.state == TrialState::Pruned.label() => pruned_at().unwrap_or_else(|| "-".into()),
            _ => "-".into(),
        };
        let (mut front, mut latency) = (String::new(), String::new());
        if multi {
            let dash = || "-".to_string();
            let cell = |v: String| format!("<td class=\"num\">{v}</td>");
            front = cell(r.front.map_or_else(dash, |f| f.to_string()));
            latency = cell(r.latency_ms.map_or_else(dash, short_number));
        }
        let _ = writeln!(
            h,
            "<tr class=\"{class}\"><td class=\"num\">{}</td>{front}<td class=\"num\">{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td>{latency}<td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{:.1}s</td><td class=\"config\">{}</td></tr>",
            r.rank.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            r.trial,
            escape(&r.state),
            escape(&r.architecture),
            human_count(r.params as f64),
            human_count(r.flops as f64),
            escape(&cv),
            r.epochs,
            r.seconds,
            escape(&config_text(r))
        );
    }
    let _ = writeln!(h, "</tbody></table></div>");
}

fn best_section(h: &mut String, r: &Report, best: Option<&TrialRecord>, score: &str) {
    let _ = writeln!(h, "<h2 id=\"best\">Best trial</h2>");
    let Some(b) = best else {
        let _ = writeln!(h, "<p>No trial has completed yet.</p>");
        return;
    };
    let _ = writeln!(
        h,
        "<p>Trial {}: {score} {} ({} epochs chosen by early stopping, {:.1} s).</p>\n<table id=\"best-config\"><thead><tr><th>parameter</th><th>value</th></tr></thead><tbody>",
        b.number,
        b.cv_mean.map(|m| format!("{m:.4}")).unwrap_or_default(),
        b.epochs,
        b.seconds
    );
    for (k, v) in &b.config {
        let value = match (v, r.space) {
            (crate::space::ParamValue::Float(x), _) => short_number(*x),
            (_, Some(s)) => s.display_value(k, v),
            (crate::space::ParamValue::Int(i), None) => i.to_string(),
            (crate::space::ParamValue::Cat(i), None) => format!("choice #{i}"),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(k),
            escape(&value)
        );
    }
    let _ = writeln!(h, "</tbody></table>");
    let _ = writeln!(h, "<h3>Layers</h3>");
    match &r.layers {
        Ok(table) => {
            let _ = writeln!(
                h,
                "<table id=\"layer-table\"><thead><tr><th>layer</th><th>kind</th><th>output shape</th><th class=\"num\">parameters</th><th class=\"num\">MACs</th></tr></thead><tbody>"
            );
            for l in &table.rows {
                let _ = writeln!(
                    h,
                    "<tr><td style=\"padding-left: {:.1}em\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    0.6 + 1.2 * l.depth as f64,
                    escape(&l.path),
                    escape(&l.kind),
                    l.output.label(),
                    l.params,
                    l.macs
                );
            }
            let _ = writeln!(
                h,
                "</tbody><tfoot><tr><th colspan=\"3\">total</th><th class=\"num\">{}</th><th class=\"num\">{}</th></tr></tfoot></table>",
                table.cost.params, table.cost.macs
            );
        }
        Err(why) => {
            let _ = writeln!(h, "<p>No layer table: {}</p>", escape(why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<a href=\"x\">O'Neil & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }
}
