//! `Linear(units)`: a fully connected layer; a feature map is flattened first.

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{int_at_least_1, plain, DefaultDom, Lit, ParamDecl};

pub static UNITS: ParamDecl = plain("units", DefaultDom::Fixed(Lit::Int(64)), int_at_least_1);

pub static LINEAR: Part = Part {
    name: "Linear",
    about: "fully connected layer x W + b (a feature map is flattened first)",
    fields: &[&UNITS],
    build,
};

fn build(
    v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    ctx: &Ctx,
) -> Result<Chw, NnError> {
    b.no_pending_stride(ctx.path, "Linear")?;
    let units = v.usize(&UNITS);
    out.push(b.linear(x.len(), units)?);
    Ok(Chw::flat(units))
}
