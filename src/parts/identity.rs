//! `Identity`: passes its input on (a searchable skip, with `OneOf`).

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};

pub static IDENTITY: Part = Part {
    name: "Identity",
    about: "passes its input on (with `OneOf`, a searchable skip)",
    fields: &[],
    build,
};

fn build(
    _v: &Values,
    _b: &mut Builder,
    _out: &mut Vec<Layer>,
    x: Chw,
    _ctx: &Ctx,
) -> Result<Chw, NnError> {
    Ok(x)
}
