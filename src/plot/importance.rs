//! The parameter importance plot: one bar per parameter, the share of the score's variance that
//! parameter explains alone, by fANOVA on a random forest ([`super::fanova`]).

use super::fanova::{self, Feature, TREES};
use super::style::{self, err, AXIS, FONT, SIZE, TEXT, TICKS, TRIAL};
use super::{ParamAxis, PlotInput, PlotKind, Scale};
use crate::seed::derive_seed;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Keeps the forest's random stream apart from every other use of the study seed.
const FOREST_SALT: u64 = 0xFA_0FA;

/// Complete trials below which no importance is measured: a forest fitted to two or three
/// points ranks parameters by chance.
pub const MIN_TRIALS: usize = 5;

/// The importance of each parameter that every complete trial holds and that can vary, most
/// important first (Optuna likewise measures only the parameters all its trials share). Empty
/// with fewer than [`MIN_TRIALS`] complete trials.
pub fn importances(input: &PlotInput) -> Vec<(String, f64)> {
    let scored = input.scored();
    if scored.len() < MIN_TRIALS {
        return Vec::new();
    }
    let axes: Vec<ParamAxis> = super::param_axes(input)
        .into_iter()
        .filter(|a| a.varies())
        .filter(|a| {
            scored
                .iter()
                .all(|(t, _)| t.config.get(&a.name).and_then(|v| a.position(v)).is_some())
        })
        .collect();
    if axes.is_empty() {
        return Vec::new();
    }
    let features: Vec<Feature> = axes
        .iter()
        .map(|a| match &a.scale {
            Scale::Linear { low, high } => Feature::Numeric {
                low: *low,
                high: *high,
            },
            // On its own scale, not in log space: Optuna's evaluator does the same
            // (`transform_log=False`), so both rank a study's parameters alike.
            Scale::Log { low, high } => Feature::Numeric {
                low: *low,
                high: *high,
            },
            Scale::Categories(c) => Feature::Categorical { n: c.len() },
        })
        .collect();
    let x: Vec<Vec<f64>> = scored
        .iter()
        .map(|(t, _)| {
            axes.iter()
                .map(|a| {
                    t.config
                        .get(&a.name)
                        .and_then(|v| a.position(v))
                        .unwrap_or(0.0)
                })
                .collect()
        })
        .collect();
    let y: Vec<f64> = scored.iter().map(|(_, s)| *s).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(input.seed, FOREST_SALT));
    let imp = fanova::importances(&features, &x, &y, &mut rng);
    let mut out: Vec<(String, f64)> = axes.into_iter().map(|a| a.name).zip(imp).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

pub fn draw(input: &PlotInput, out: &mut String) -> Result<(), String> {
    let imp = importances(input);
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    let subtitle = format!(
        "share of the {} variance each parameter explains alone; {TREES}-tree random forest fitted to {} complete trials",
        input.score_label(),
        input.scored().len()
    );
    let area = style::header(&root, PlotKind::Importance.title(), &subtitle)?;
    if imp.is_empty() {
        let n = input.scored().len();
        let why = if n < MIN_TRIALS {
            format!("needs at least {MIN_TRIALS} complete trials ({n} so far)")
        } else {
            "needs a parameter that every complete trial holds and that varies".to_string()
        };
        style::note(&area, &why)?;
        return root.present().map_err(err);
    }
    let n = imp.len();
    let longest = imp
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(4);
    let top = imp.first().map(|p| p.1).unwrap_or(1.0).max(0.05);
    let mut chart = ChartBuilder::on(&area)
        .margin(20)
        .x_label_area_size(56)
        .y_label_area_size((longest as u32 * 10 + 24).clamp(80, 360))
        .build_cartesian_2d(0.0..(top * 1.18).min(1.05), 0.0..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "importance (fANOVA main effect, share of {} variance)",
            input.score_label()
        ))
        .axis_desc_style((FONT, AXIS))
        .label_style((FONT, TICKS))
        .x_label_formatter(&|x| format!("{x:.2}"))
        .y_label_formatter(&|_| String::new())
        .disable_y_mesh()
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    // Most important at the top.
    let row = |i: usize| (n - 1 - i) as f64;
    chart
        .draw_series(imp.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new([(0.0, row(i) + 0.18), (*v, row(i) + 0.82)], TRIAL.filled())
        }))
        .map_err(err)?;
    let value_style = TextStyle::from((FONT, TICKS).into_font())
        .color(&TEXT)
        .pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(imp.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                format!("{v:.3}"),
                (*v + top * 0.01, row(i) + 0.5),
                value_style.clone(),
            )
        }))
        .map_err(err)?;
    // Parameter names beside their bars, in the label area left of the chart.
    let name_style = TextStyle::from((FONT, TICKS + 1.0).into_font())
        .color(&TEXT)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, (name, _)) in imp.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, row(i) + 0.5));
        root.draw_text(name, &name_style, (x - 10, y))
            .map_err(err)?;
    }
    root.present().map_err(err)
}
