//! What every plot shares: its size, fonts, colours, and the title block above the chart.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width and height of a one-chart plot, in SVG pixels.
pub const SIZE: (u32, u32) = (960, 600);
/// The font of every text; PNG rendering maps it to a system sans-serif font.
pub const FONT: &str = "sans-serif";

/// Font sizes as plotters takes them (an SVG `font-size` is 1/1.24 of this).
pub const TITLE: f64 = 28.0;
pub const SUBTITLE: f64 = 17.0;
pub const AXIS: f64 = 19.0;
pub const TICKS: f64 = 16.0;
pub const LEGEND: f64 = 16.0;

pub const TRIAL: RGBColor = RGBColor(31, 119, 180);
pub const BEST: RGBColor = RGBColor(214, 39, 40);
pub const MUTED: RGBColor = RGBColor(150, 150, 150);
pub const TEXT: RGBColor = RGBColor(30, 30, 30);

/// Distinct line colours (matplotlib's tab10) for the top trials.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A drawing error as text.
pub fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Fills `root` white, draws the title and a line under it, and returns the area below.
pub fn header<'a>(root: &Area<'a>, title: &str, subtitle: &str) -> Result<Area<'a>, String> {
    root.fill(&WHITE).map_err(err)?;
    let (w, _) = root.dim_in_pixel();
    let center = Pos::new(HPos::Center, VPos::Top);
    let title_style = TextStyle::from((FONT, TITLE).into_font())
        .color(&TEXT)
        .pos(center);
    root.draw_text(title, &title_style, (w as i32 / 2, 12))
        .map_err(err)?;
    let sub_style = TextStyle::from((FONT, SUBTITLE).into_font())
        .color(&RGBColor(90, 90, 90))
        .pos(center);
    root.draw_text(subtitle, &sub_style, (w as i32 / 2, 46))
        .map_err(err)?;
    let (_, rest) = root.split_vertically(74);
    Ok(rest)
}

/// A message in the middle of an area that has nothing to plot.
pub fn note(area: &Area, message: &str) -> Result<(), String> {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, AXIS).into_font())
        .color(&MUTED)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(message, &style, (w as i32 / 2, h as i32 / 2))
        .map_err(err)
}

/// `[low, high]` widened by `pad` of its span on each side (or around a single value).
pub fn padded(low: f64, high: f64, pad: f64) -> (f64, f64) {
    let span = high - low;
    if span > 0.0 && span.is_finite() {
        (low - pad * span, high + pad * span)
    } else {
        let d = (low.abs() * 0.05).max(0.01);
        (low - d, high + d)
    }
}

/// A tick label for a count (trial number, epoch): the whole number, or nothing between two.
pub fn whole(x: f64) -> String {
    if (x - x.round()).abs() < 1e-6 && x.round() >= 0.0 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

/// How many ticks to ask for on an axis of counts from 0 to `last`: one per count while they
/// fit, else about ten.
pub fn count_ticks(last: f64) -> usize {
    (last.max(0.0) as usize + 2).min(11)
}

/// The range of `values`, padded by 6% on each side.
pub fn range_of(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then(|| padded(lo, hi, 0.06))
}

/// A score for a tick: four decimals for scores in [0, 1] such as accuracy, else three
/// significant digits.
pub fn score_tick(v: f64) -> String {
    if (-1.0..=1.0).contains(&v) {
        format!("{v:.3}")
    } else {
        super::short_number(v)
    }
}

/// The share of a [`SIZE`] chart's plotting area (about 830 x 430 pixels) that a legend of
/// these labels covers, with a little room around it.
pub fn legend_size<S: AsRef<str>>(labels: &[S]) -> (f64, f64) {
    let longest = labels
        .iter()
        .map(|l| l.as_ref().chars().count())
        .max()
        .unwrap_or(0);
    let w = longest as f64 * 8.5 + 70.0;
    let h = labels.len() as f64 * 24.0 + 30.0;
    ((w / 830.0).min(1.0), (h / 430.0).min(1.0))
}

/// The corner of the chart for a legend covering `size` (fractions of the chart's width and
/// height): the one whose box holds the fewest `points`, given as fractions too (y up); `prefer`
/// wins ties.
pub fn legend_corner(
    points: impl IntoIterator<Item = (f64, f64)>,
    size: (f64, f64),
    prefer: SeriesLabelPosition,
) -> SeriesLabelPosition {
    use SeriesLabelPosition::{LowerLeft, LowerRight, UpperLeft, UpperRight};
    let points: Vec<(f64, f64)> = points.into_iter().collect();
    let inside = |c: &SeriesLabelPosition| {
        let (right, upper) = match c {
            UpperLeft => (false, true),
            UpperRight => (true, true),
            LowerLeft => (false, false),
            _ => (true, false),
        };
        points
            .iter()
            .filter(|(x, y)| {
                (if right {
                    *x >= 1.0 - size.0
                } else {
                    *x <= size.0
                }) && (if upper {
                    *y >= 1.0 - size.1
                } else {
                    *y <= size.1
                })
            })
            .count()
    };
    let mut order = vec![prefer];
    for c in [LowerRight, UpperRight, LowerLeft, UpperLeft] {
        if !order.iter().any(|o| same(o, &c)) {
            order.push(c);
        }
    }
    order
        .into_iter()
        .min_by_key(|c| inside(c))
        .unwrap_or(LowerRight)
}

/// Draws the legend of `chart`'s labelled series in the corner that hides the fewest `points`
/// (fractions of the axes, y up), sized for `labels`; where scores climb (`higher_is_better`) the
/// lower right is preferred, else the upper right.
pub fn legend<'a, CT: CoordTranslate, S: AsRef<str>>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    points: impl IntoIterator<Item = (f64, f64)>,
    labels: &[S],
    higher_is_better: bool,
) -> Result<(), String> {
    let prefer = if higher_is_better {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    };
    let position = legend_corner(points, legend_size(labels), prefer);
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, LEGEND))
        .background_style(WHITE.mix(0.85))
        .border_style(MUTED)
        .draw()
        .map_err(err)
}

fn same(a: &SeriesLabelPosition, b: &SeriesLabelPosition) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Where a value lies between `low` and `high`, as a fraction.
pub fn frac(v: f64, (low, high): (f64, f64)) -> f64 {
    if high > low {
        (v - low) / (high - low)
    } else {
        0.5
    }
}

/// Tick values 1, 2, 5 x 10^k inside `[low, high]` (powers of ten alone over a wide range).
pub fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    if !(low > 0.0 && high > low) {
        return Vec::new();
    }
    let wide = (high / low).log10() > 4.0;
    let steps: &[f64] = if wide { &[1.0] } else { &[1.0, 2.0, 5.0] };
    let mut out = Vec::new();
    let mut decade = 10f64.powf(low.log10().floor());
    while decade <= high {
        for s in steps {
            let v = s * decade;
            if v >= low && v <= high {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

/// The parts of a polyline inside `y0 <= y <= y1`, cut where it leaves and enters the band (a
/// point outside would otherwise be drawn on the chart's edge).
pub fn clip_polyline(points: &[(f64, f64)], (y0, y1): (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let inside = |p: &(f64, f64)| p.1 >= y0 && p.1 <= y1;
    // Where the segment a -> b crosses the level y.
    let cross = |a: (f64, f64), b: (f64, f64), y: f64| {
        let t = (y - a.1) / (b.1 - a.1);
        (a.0 + t * (b.0 - a.0), y)
    };
    let mut parts: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (i, &p) in points.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| points[j]);
        match (prev, inside(&p)) {
            (None, true) => current.push(p),
            (None, false) => {}
            (Some(a), true) => {
                if !inside(&a) {
                    let level = if a.1 > y1 { y1 } else { y0 };
                    current.push(cross(a, p, level));
                }
                current.push(p);
            }
            (Some(a), false) => {
                if inside(&a) {
                    let level = if p.1 > y1 { y1 } else { y0 };
                    current.push(cross(a, p, level));
                    parts.push(std::mem::take(&mut current));
                } else if (a.1 > y1 && p.1 < y0) || (a.1 < y0 && p.1 > y1) {
                    // Straight through the band.
                    let (first, second) = if a.1 > y1 { (y1, y0) } else { (y0, y1) };
                    parts.push(vec![cross(a, p, first), cross(a, p, second)]);
                }
            }
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// A score for a label: four decimals for scores in [-1, 1], else four significant digits.
pub fn score_value(v: f64) -> String {
    let a = v.abs();
    if a <= 1.0 {
        format!("{v:.4}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_polyline_is_cut_where_it_leaves_the_band() {
        let line = [(0.0, 5.0), (1.0, 0.5), (2.0, 0.0), (3.0, -5.0), (4.0, 0.5)];
        let parts = clip_polyline(&line, (-1.0, 1.0));
        let round = |v: &Vec<(f64, f64)>| -> Vec<(f64, f64)> {
            v.iter()
                .map(|p| ((p.0 * 100.0).round() / 100.0, p.1))
                .collect()
        };
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(
            round(&parts[0]),
            vec![(0.89, 1.0), (1.0, 0.5), (2.0, 0.0), (2.2, -1.0)]
        );
        assert_eq!(round(&parts[1]), vec![(3.73, -1.0), (4.0, 0.5)]);
        assert_eq!(
            clip_polyline(&[(0.0, 9.0), (1.0, -9.0)], (-1.0, 1.0)).len(),
            1
        );
    }

    #[test]
    fn scores_keep_four_digits() {
        assert_eq!(score_value(0.97333), "0.9733");
        assert_eq!(score_value(52.5312), "52.53");
        assert_eq!(score_value(130.25), "130.2");
    }
}
