//! `Zero`: a `Cell` edge that carries nothing (NAS-Bench-201's "none").

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};

pub static ZERO: Part = Part {
    name: "Zero",
    about:
        "an edge of a `Cell` that carries nothing (NAS-Bench-201's \"none\"); only inside a `Cell`",
    fields: &[],
    build,
};

fn build(
    _v: &Values,
    _b: &mut Builder,
    _out: &mut Vec<Layer>,
    _x: Chw,
    ctx: &Ctx,
) -> Result<Chw, NnError> {
    // A cell drops its zero edges before building them.
    Err(NnError::Impossible(format!(
        "{}: `Zero` is an edge of a `Cell` and cannot stand elsewhere",
        ctx.path
    )))
}
