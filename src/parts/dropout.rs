//! `Dropout(rate)`: zeroes a fraction of the values while training.

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{plain, unit_interval, DefaultDom, Lit, ParamDecl};

pub static RATE: ParamDecl = plain("rate", DefaultDom::Fixed(Lit::Float(0.0)), unit_interval);

pub static DROPOUT: Part = Part {
    name: "Dropout",
    about: "zeroes a fraction `rate` of the values while training (0: no layer)",
    fields: &[&RATE],
    build,
};

fn build(
    v: &Values,
    _b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    _ctx: &Ctx,
) -> Result<Chw, NnError> {
    let rate = v.float(&RATE);
    if rate > 0.0 {
        out.push(Layer::Dropout(rate));
    }
    Ok(x)
}
