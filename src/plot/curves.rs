//! Learning curves: the cross-validation score after each epoch of the top trials, the others
//! faint behind them.

use super::style::{self, err, AXIS, FONT, MUTED, PALETTE, SIZE, TICKS};
use super::{PlotInput, PlotKind};
use crate::search::TrialState;
use plotters::prelude::*;

/// Trials drawn in colour, best first.
pub const TOP: usize = 5;

pub fn draw(input: &PlotInput, out: &mut String) -> Result<(), String> {
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    let mut scored = input.scored();
    scored.sort_by(|a, b| {
        input
            .metric
            .to_loss(a.1)
            .total_cmp(&input.metric.to_loss(b.1))
            .then(a.0.number.cmp(&b.0.number))
    });
    let top: Vec<usize> = scored.iter().take(TOP).map(|(t, _)| t.number).collect();
    let curve = |t: &crate::study::TrialRecord| -> Vec<(f64, f64)> {
        t.intermediate
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1) as f64, input.score_of_intermediate(*v)))
            .filter(|p| p.1.is_finite())
            .collect()
    };
    let shown: Vec<&crate::study::TrialRecord> = input
        .trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Pruned))
        .filter(|t| !t.intermediate.is_empty())
        .collect();
    let epochs = shown
        .iter()
        .map(|t| t.intermediate.len())
        .max()
        .unwrap_or(0);
    // The axis spans the top trials after their first epoch and where every trial ended: the
    // first epochs of a regression can start ten times higher and flatten everything else.
    let focus = shown.iter().flat_map(|t| {
        let c = curve(t);
        let from = if top.contains(&t.number) && c.len() > 1 {
            1
        } else {
            c.len().saturating_sub(1)
        };
        c.into_iter().skip(from).map(|p| p.1)
    });
    let range = style::range_of(focus);
    let cut = range.is_some_and(|(y0, y1)| {
        shown
            .iter()
            .flat_map(|t| curve(t))
            .any(|p| p.1 < y0 || p.1 > y1)
    });
    let subtitle = format!(
        "the {} best of {} complete trials in colour, every other trial grey; {}{}",
        top.len(),
        scored.len(),
        input.better_word(),
        if cut {
            "; early epochs off the axis are cut"
        } else {
            ""
        }
    );
    let area = style::header(&root, PlotKind::LearningCurves.title(), &subtitle)?;
    let Some((y0, y1)) = range else {
        style::note(&area, "no trial has finished an epoch yet")?;
        return root.present().map_err(err);
    };
    let mut chart = ChartBuilder::on(&area)
        .margin(20)
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, y0..y1)
        .map_err(err)?;
    let score = input.score_label();
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(format!("{score} (mean of folds, best epoch so far)"))
        .axis_desc_style((FONT, AXIS))
        .label_style((FONT, TICKS))
        .x_labels(style::count_ticks(epochs as f64))
        .x_label_formatter(&|x| style::whole(*x))
        .y_label_formatter(&|y| style::score_tick(*y))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let mut others = shown.iter().filter(|t| !top.contains(&t.number)).peekable();
    if others.peek().is_some() {
        let mut labelled = false;
        for t in others {
            for part in style::clip_polyline(&curve(t), (y0, y1)) {
                let series = chart
                    .draw_series(LineSeries::new(part, MUTED.mix(0.6).stroke_width(1)))
                    .map_err(err)?;
                if !labelled {
                    series.label("other trials").legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], MUTED.stroke_width(2))
                    });
                    labelled = true;
                }
            }
        }
    }
    for (rank, (t, s)) in scored.iter().take(TOP).enumerate() {
        let color = PALETTE[rank % PALETTE.len()];
        let points = curve(t);
        let parts = style::clip_polyline(&points, (y0, y1));
        for (i, part) in parts.into_iter().enumerate() {
            let series = chart
                .draw_series(LineSeries::new(part, color.stroke_width(3)))
                .map_err(err)?;
            if i == 0 {
                series
                    .label(format!(
                        "#{} trial {} ({} {})",
                        rank + 1,
                        t.number,
                        score,
                        style::score_value(*s)
                    ))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                    });
            }
        }
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.1 >= y0 && p.1 <= y1)
                    .map(|&p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?;
    }
    let xr = (0.5, epochs as f64 + 0.5);
    style::legend(
        &mut chart,
        shown
            .iter()
            .flat_map(|t| curve(t))
            .filter(|p| p.1 >= y0 && p.1 <= y1)
            .map(|p| (style::frac(p.0, xr), style::frac(p.1, (y0, y1)))),
        &vec!["#1 trial 100 (cv accuracy 0.9999)"; top.len() + 1],
        input.metric.higher_is_better(),
    )?;
    root.present().map_err(err)
}
