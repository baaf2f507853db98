//! The slice plot: one panel per parameter, each complete trial's score against the value it
//! took (choices as categories, log-uniform parameters on a log axis), later trials darker.

use super::style::{self, err, AXIS, FONT, TEXT, TICKS};
use super::{short_number, ParamAxis, PlotInput, PlotKind, Scale};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const PANEL: (u32, u32) = (320, 270);
const HEADER: u32 = 74;
const EARLY: RGBColor = RGBColor(170, 205, 235);
const LATE: RGBColor = RGBColor(8, 48, 107);

/// The colour of the `i`-th of `n` trials in time: light for early, dark for late.
fn shade(i: usize, n: usize) -> RGBColor {
    let t = if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        1.0
    };
    let mix = |a: u8, b: u8| (a as f64 + t * (b as f64 - a as f64)).round() as u8;
    RGBColor(
        mix(EARLY.0, LATE.0),
        mix(EARLY.1, LATE.1),
        mix(EARLY.2, LATE.2),
    )
}

/// The plot's pixel size for `n` parameters.
fn size(n: usize) -> (u32, u32, usize) {
    let cols = n.clamp(1, 3);
    let rows = n.div_ceil(cols).max(1);
    (PANEL.0 * cols as u32, HEADER + PANEL.1 * rows as u32, cols)
}

pub fn draw(input: &PlotInput, out: &mut String) -> Result<(), String> {
    let (axes, fixed): (Vec<ParamAxis>, Vec<ParamAxis>) = super::param_axes(input)
        .into_iter()
        .partition(|a| a.varies());
    let (w, h, cols) = size(axes.len());
    // The header needs the width of three panels to fit its text.
    let root = SVGBackend::with_string(out, (w.max(PANEL.0 * 3), h)).into_drawing_area();
    let mut scored = input.scored();
    scored.sort_by_key(|(t, _)| t.number);
    let fixed = match fixed.len() {
        0 => String::new(),
        1 => "; 1 fixed parameter not shown".to_string(),
        n => format!("; {n} fixed parameters not shown"),
    };
    let subtitle = format!(
        "{} complete trials, later trials darker; {}{fixed}",
        scored.len(),
        input.better_word()
    );
    let area = style::header(&root, PlotKind::Slice.title(), &subtitle)?;
    let Some((y0, y1)) = style::range_of(scored.iter().map(|p| p.1)) else {
        style::note(&area, "no complete trial yet")?;
        return root.present().map_err(err);
    };
    if axes.is_empty() {
        style::note(&area, "the study has no parameter that varies")?;
        return root.present().map_err(err);
    }
    let (area, _) = area.split_horizontally(w);
    let rows = axes.len().div_ceil(cols);
    let panels = area.split_evenly((rows, cols));
    let n = scored.len();
    for (axis, panel) in axes.iter().zip(panels.iter()) {
        let points: Vec<(f64, f64, usize)> = scored
            .iter()
            .enumerate()
            .filter_map(|(i, (t, s))| {
                let v = t.config.get(&axis.name).and_then(|v| axis.position(v))?;
                Some((v, *s, i))
            })
            .collect();
        draw_panel(
            &root,
            panel,
            axis,
            &points,
            n,
            (y0, y1),
            &input.score_label(),
        )?;
    }
    root.present().map_err(err)
}

/// A deterministic offset in [-0.18, 0.18] that keeps points of one choice apart.
fn jitter(i: usize) -> f64 {
    ((i as f64 * 0.618_034).fract() - 0.5) * 0.36
}

fn draw_panel(
    root: &style::Area,
    panel: &style::Area,
    axis: &ParamAxis,
    points: &[(f64, f64, usize)],
    n: usize,
    (y0, y1): (f64, f64),
    score: &str,
) -> Result<(), String> {
    let (x0, x1, desc) = match &axis.scale {
        Scale::Linear { low, high } => {
            let (a, b) = style::padded(*low, *high, 0.06);
            (a, b, "value")
        }
        Scale::Log { low, high } => {
            let (a, b) = style::padded(low.log10(), high.log10(), 0.06);
            (a, b, "value (log scale)")
        }
        Scale::Categories(c) => (-0.5, c.len() as f64 - 0.5, "choice"),
    };
    let mut chart = ChartBuilder::on(panel)
        .caption(&axis.name, (FONT, AXIS + 1.0).into_font().color(&TEXT))
        .margin(10)
        .margin_right(18)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let log = matches!(axis.scale, Scale::Log { .. });
    let categories = matches!(axis.scale, Scale::Categories(_));
    // A few whole values (depth 1 to 3) are labelled one by one, never at 1.5.
    let whole = match axis.scale {
        Scale::Linear { low, high } if axis.integer => Some((high - low) as usize + 1),
        _ => None,
    };
    let x_fmt = |x: &f64| {
        if categories || (whole.is_some() && x.fract().abs() > 1e-9) {
            String::new()
        } else if log {
            short_number(10f64.powf(*x))
        } else {
            short_number(*x)
        }
    };
    let x_labels = match whole {
        _ if categories => 0,
        Some(n) if n <= 8 => n,
        _ => 5,
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(desc)
        .y_desc(score)
        .axis_desc_style((FONT, TICKS))
        .label_style((FONT, TICKS - 2.0))
        .x_labels(x_labels)
        .y_labels(5)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|y| style::score_tick(*y))
        .light_line_style(WHITE.mix(0.0));
    if categories {
        mesh.disable_x_mesh();
    }
    mesh.draw().map_err(err)?;
    let place = |(v, _, i): &(f64, f64, usize)| match axis.scale {
        Scale::Categories(_) => v + jitter(*i),
        Scale::Log { .. } => v.log10(),
        Scale::Linear { .. } => *v,
    };
    chart
        .draw_series(
            points
                .iter()
                .map(|p| Circle::new((place(p), p.1), 4, shade(p.2, n).filled())),
        )
        .map_err(err)?;
    if let Scale::Categories(names) = &axis.scale {
        let style = TextStyle::from((FONT, TICKS - 2.0).into_font())
            .color(&TEXT)
            .pos(Pos::new(HPos::Center, VPos::Top));
        let room = (PANEL.0 as usize - 90) / names.len().max(1) / 7;
        for (i, name) in names.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64, y0));
            root.draw_text(&shorten(name, room.max(3)), &style, (x, y + 6))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// `s` cut to `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
