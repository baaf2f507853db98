//! The optimisation history: each trial's score by trial number, and the best score so far.

use super::style::{self, err, AXIS, BEST, FONT, MUTED, SIZE, TICKS, TRIAL};
use super::{PlotInput, PlotKind};
use crate::search::TrialState;
use plotters::prelude::*;

pub fn draw(input: &PlotInput, out: &mut String) -> Result<(), String> {
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    let subtitle = format!("{}; {}", input.counts(), input.better_word());
    let area = style::header(&root, PlotKind::History.title(), &subtitle)?;
    let complete: Vec<(f64, f64)> = input
        .scored()
        .iter()
        .map(|(t, s)| (t.number as f64, *s))
        .collect();
    // A pruned trial is shown at the score it had when it was stopped.
    let pruned: Vec<(f64, f64)> = input
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Pruned)
        .filter_map(|t| {
            let v = input.score_of_intermediate(*t.intermediate.last()?);
            v.is_finite().then_some((t.number as f64, v))
        })
        .collect();
    let failed: Vec<f64> = input
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .map(|t| t.number as f64)
        .collect();
    let Some((y0, y1)) = style::range_of(complete.iter().chain(&pruned).map(|p| p.1)) else {
        style::note(&area, "no trial has a score yet")?;
        return root.present().map_err(err);
    };
    let last = input.trials.iter().map(|t| t.number).max().unwrap_or(0) as f64;
    let mut chart = ChartBuilder::on(&area)
        .margin(20)
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5..last + 0.5, y0..y1)
        .map_err(err)?;
    let score = input.score_label();
    chart
        .configure_mesh()
        .x_desc("trial number")
        .y_desc(format!("{score} (mean over folds)"))
        .axis_desc_style((FONT, AXIS))
        .label_style((FONT, TICKS))
        .x_labels(style::count_ticks(last))
        .x_label_formatter(&|x| style::whole(*x))
        .y_label_formatter(&|y| style::score_tick(*y))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;

    // The best score so far, as a step line from the first complete trial to the last trial.
    let mut steps: Vec<(f64, f64)> = Vec::new();
    let mut best: Option<f64> = None;
    let mut sorted = complete.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    for &(n, s) in &sorted {
        if best.is_none_or(|b| input.metric.better(s, b)) {
            if let Some(b) = best {
                steps.push((n, b));
            }
            best = Some(s);
            steps.push((n, s));
        }
    }
    if let Some(b) = best {
        steps.push((last + 0.5, b));
    }
    if !pruned.is_empty() {
        chart
            .draw_series(
                pruned
                    .iter()
                    .map(|&p| Circle::new(p, 5, MUTED.stroke_width(2))),
            )
            .map_err(err)?
            .label("pruned trial (score when stopped)")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, MUTED.stroke_width(2)));
    }
    chart
        .draw_series(complete.iter().map(|&p| Circle::new(p, 5, TRIAL.filled())))
        .map_err(err)?
        .label("complete trial")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, TRIAL.filled()));
    chart
        .draw_series(LineSeries::new(steps, BEST.stroke_width(3)))
        .map_err(err)?
        .label("best so far")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BEST.stroke_width(3)));
    if !failed.is_empty() {
        // Failed trials have no score: marked along the bottom edge.
        let y = y0 + 0.02 * (y1 - y0);
        chart
            .draw_series(
                failed
                    .iter()
                    .map(|&n| Cross::new((n, y), 5, BLACK.stroke_width(2))),
            )
            .map_err(err)?
            .label("failed trial (no score)")
            .legend(|(x, y)| Cross::new((x + 10, y), 5, BLACK.stroke_width(2)));
    }
    let xr = (-0.5, last + 0.5);
    let mut labels = vec!["complete trial", "best so far"];
    if !pruned.is_empty() {
        labels.push("pruned trial (score when stopped)");
    }
    if !failed.is_empty() {
        labels.push("failed trial");
    }
    style::legend(
        &mut chart,
        complete
            .iter()
            .chain(&pruned)
            .map(|p| (style::frac(p.0, xr), style::frac(p.1, (y0, y1)))),
        &labels,
        input.metric.higher_is_better(),
    )?;
    root.present().map_err(err)
}
