//! Score against cost (log axis), with the Pareto front of the two drawn as a step line: against
//! parameters in a study of the score alone, against the first cost objective (latency,
//! parameters or multiply-adds) in a multi-objective study, whose front-1 trials are marked.

use super::style::{self, err, AXIS, BEST, FONT, SIZE, TEXT, TICKS, TRIAL};
use super::{human_count, short_number, PlotInput, PlotKind};
use crate::objective::Objective;
use crate::study::{Metric, Objectives};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The trials on the front, as (cost, score, trial), cheapest first: each scores strictly better
/// than every trial that costs as much or less.
pub fn front(points: &[(f64, f64, usize)], metric: Metric) -> Vec<(f64, f64, usize)> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(metric.to_loss(a.1).total_cmp(&metric.to_loss(b.1)))
            .then(a.2.cmp(&b.2))
    });
    let mut out: Vec<(f64, f64, usize)> = Vec::new();
    for p in sorted {
        if out.last().is_none_or(|l| metric.better(p.1, l.1)) {
            out.push(p);
        }
    }
    out
}

/// The objective the score is plotted against: a multi-objective study's first cost objective,
/// else the parameter count.
pub fn cost_axis(objectives: &[Objective]) -> Objective {
    objectives
        .iter()
        .copied()
        .find(|o| *o != Objective::Score)
        .unwrap_or(Objective::Params)
}

/// The plot's title for a cost axis.
pub fn title(cost: Objective) -> &'static str {
    match cost {
        Objective::Latency => "Score against latency: the Pareto front",
        Objective::Macs => "Score against multiply-adds: the Pareto front",
        _ => PlotKind::Pareto.title(),
    }
}

fn axis_label(cost: Objective) -> &'static str {
    match cost {
        Objective::Latency => "latency, ms per sample at batch 1 (log scale)",
        Objective::Macs => "multiply-adds per sample (log scale)",
        _ => "trainable parameters (log scale)",
    }
}

fn cost_text(cost: Objective, x: f64) -> String {
    match cost {
        Objective::Latency => format!("{} ms", short_number(x)),
        _ => human_count(x),
    }
}

pub fn draw(input: &PlotInput, out: &mut String) -> Result<(), String> {
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    let objectives = Objectives::new(input.objectives, input.metric);
    let cost = cost_axis(input.objectives);
    let points: Vec<(f64, f64, usize)> = input
        .scored()
        .iter()
        .filter_map(|(t, s)| Some((objectives.value(cost, t)?, *s, t.number)))
        .filter(|p| p.0 > 0.0)
        .collect();
    // A multi-objective study's own front 1 (every objective, constraints respected); the step
    // line is the front of the two axes among them (the same trials with two objectives).
    let multi = objectives.is_multi();
    let first: Vec<usize> = if multi {
        objectives
            .best_trials(input.trials)
            .iter()
            .map(|t| t.number)
            .collect()
    } else {
        Vec::new()
    };
    let candidates: Vec<(f64, f64, usize)> = points
        .iter()
        .copied()
        .filter(|p| !multi || first.contains(&p.2))
        .collect();
    let front = front(&candidates, input.metric);
    let on_front = |n: usize| front.iter().any(|f| f.2 == n);
    let marked = |n: usize| on_front(n) || first.contains(&n);
    let subtitle = if multi {
        format!(
            "{} of {} complete trials on front 1 of ({}), {} of them on the step line",
            first.len(),
            points.len(),
            crate::objective::names(objectives.list()),
            front.len()
        )
    } else {
        format!(
            "{} of {} complete trials on the front: the best {} for their size ({})",
            front.len(),
            points.len(),
            input.score_label(),
            input.better_word()
        )
    };
    let area = style::header(&root, title(cost), &subtitle)?;
    let Some((y0, y1)) = style::range_of(points.iter().map(|p| p.1)) else {
        style::note(&area, "no complete trial yet")?;
        return root.present().map_err(err);
    };
    let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.0).fold(0.0, f64::max);
    let (x0, x1) = (lo / 1.5, hi * 1.5);
    let mut chart = ChartBuilder::on(&area)
        .margin(20)
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(
            (x0..x1)
                .log_scale()
                .with_key_points(style::log_ticks(x0, x1)),
            y0..y1,
        )
        .map_err(err)?;
    let score = input.score_label();
    chart
        .configure_mesh()
        .x_desc(axis_label(cost))
        .y_desc(format!("{score} (mean over folds)"))
        .axis_desc_style((FONT, AXIS))
        .label_style((FONT, TICKS))
        .x_label_formatter(&|x| match cost {
            Objective::Latency => short_number(*x),
            _ => human_count(*x),
        })
        .y_label_formatter(&|y| style::score_tick(*y))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            points
                .iter()
                .filter(|p| !marked(p.2))
                .map(|p| Circle::new((p.0, p.1), 5, TRIAL.mix(0.7).filled())),
        )
        .map_err(err)?
        .label("complete trial")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, TRIAL.filled()));
    // The front as a staircase: a trial's score holds until a costlier trial beats it.
    let mut steps = Vec::new();
    for (i, p) in front.iter().enumerate() {
        if i > 0 {
            steps.push((p.0, front[i - 1].1));
        }
        steps.push((p.0, p.1));
    }
    if let Some(last) = front.last() {
        steps.push((x1, last.1));
    }
    let line_label = match cost {
        Objective::Latency => "Pareto front (most score for least latency)",
        Objective::Macs => "Pareto front (most score for fewest multiply-adds)",
        _ => "Pareto front (most score for fewest parameters)",
    };
    chart
        .draw_series(LineSeries::new(steps, BEST.stroke_width(2)))
        .map_err(err)?
        .label(line_label)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BEST.stroke_width(2)));
    let mut labels = vec!["complete trial", line_label];
    let dots = chart
        .draw_series(
            points
                .iter()
                .filter(|p| marked(p.2))
                .map(|p| Circle::new((p.0, p.1), 7, BEST.filled())),
        )
        .map_err(err)?;
    if multi {
        dots.label("front 1 (every objective)")
            .legend(|(x, y)| Circle::new((x + 10, y), 7, BEST.filled()));
        labels.push("front 1 (every objective)");
    }
    // Labels alternate above and below the front so that neighbours do not overlap.
    let above = TextStyle::from((FONT, TICKS).into_font())
        .color(&TEXT)
        .pos(Pos::new(HPos::Left, VPos::Bottom));
    let below = above.pos(Pos::new(HPos::Left, VPos::Top));
    chart
        .draw_series(front.iter().enumerate().map(|(i, p)| {
            let (style, dy) = if i % 2 == 0 {
                (above.clone(), -8)
            } else {
                (below.clone(), 8)
            };
            EmptyElement::at((p.0, p.1))
                + Text::new(
                    format!("trial {} ({})", p.2, cost_text(cost, p.0)),
                    (8, dy),
                    style,
                )
        }))
        .map_err(err)?;
    let lx = |x: f64| style::frac(x.ln(), (x0.ln(), x1.ln()));
    style::legend(
        &mut chart,
        points.iter().map(|p| (lx(p.0), style::frac(p.1, (y0, y1)))),
        &labels,
        input.metric.higher_is_better(),
    )?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_keeps_trials_no_smaller_trial_beats() {
        let pts = [
            (100.0, 0.80, 0),
            (200.0, 0.90, 1),
            (150.0, 0.70, 2), // beaten by trial 0, smaller and better
            (400.0, 0.90, 3), // ties trial 1 with more parameters
            (800.0, 0.95, 4),
        ];
        let f: Vec<usize> = front(&pts, Metric::Accuracy).iter().map(|p| p.2).collect();
        assert_eq!(f, vec![0, 1, 4]);
        // For RMSE lower is better: trial 2 (0.70) beats the larger trials 1, 3 and ties none.
        let f: Vec<usize> = front(&pts, Metric::Rmse).iter().map(|p| p.2).collect();
        assert_eq!(f, vec![0, 2]);
    }

    #[test]
    fn the_score_is_plotted_against_the_first_cost_objective_else_parameters() {
        use Objective::*;
        assert_eq!(cost_axis(&[]), Params);
        assert_eq!(cost_axis(&[Score]), Params);
        assert_eq!(cost_axis(&[Score, Latency]), Latency);
        assert_eq!(cost_axis(&[Score, Macs, Params]), Macs);
    }
}
