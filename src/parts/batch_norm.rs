//! `BatchNorm(enabled)`: batch normalisation over channels (features after a `Linear`).

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{any, plain, DefaultDom, Lit, ParamDecl};

/// `false` leaves the layer out, so a whole network's batch norm can be one choice.
pub static ENABLED: ParamDecl = plain("enabled", DefaultDom::Fixed(Lit::Bool(true)), any);

pub static BATCH_NORM: Part = Part {
    name: "BatchNorm",
    about: "batch normalisation per channel; `enabled: false` leaves it out",
    fields: &[&ENABLED],
    build,
};

fn build(
    v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    _ctx: &Ctx,
) -> Result<Chw, NnError> {
    if v.bool(&ENABLED) {
        out.push(b.batch_norm(x.c, x.hw()));
    }
    Ok(x)
}
