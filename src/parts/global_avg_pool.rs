//! `GlobalAvgPool`: the mean of each channel over the whole map.

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};

pub static GLOBAL_AVG_POOL: Part = Part {
    name: "GlobalAvgPool",
    about: "the mean of each channel over the map (C x H x W -> C)",
    fields: &[],
    build,
};

fn build(
    _v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    ctx: &Ctx,
) -> Result<Chw, NnError> {
    b.no_pending_stride(ctx.path, "GlobalAvgPool")?;
    b.output(x.c);
    out.push(Layer::GlobalAvgPool { c: x.c, hw: x.hw() });
    Ok(Chw::flat(x.c))
}
