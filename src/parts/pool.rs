//! `Pool(kind, size, stride)`: max or average pooling.

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{
    any, int_at_least_0, int_at_least_1, plain, DefaultDom, Lit, ParamDecl, PoolOp,
};

pub static KIND: ParamDecl = plain("kind", DefaultDom::Fixed(Lit::Pool(PoolOp::Max)), any);
pub static SIZE: ParamDecl = plain("size", DefaultDom::Fixed(Lit::Int(2)), int_at_least_1);
/// 0: the window size (windows do not overlap); a stride of 1 pads an odd window to keep the size.
pub static STRIDE: ParamDecl = plain("stride", DefaultDom::Fixed(Lit::Int(0)), int_at_least_0);

pub static POOL: Part = Part {
    name: "Pool",
    about: "max or average pooling (stride 0: the window size; stride 1 pads an odd window to keep the size)",
    fields: &[&KIND, &SIZE, &STRIDE],
    build,
};

fn build(
    v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    ctx: &Ctx,
) -> Result<Chw, NnError> {
    b.no_pending_stride(ctx.path, "Pool")?;
    let size = v.usize(&SIZE);
    let stride = match v.usize(&STRIDE) {
        0 => size,
        s => s,
    };
    let (layer, y) = b.pool(x, v.pool(&KIND), size, stride, false)?;
    out.push(layer);
    Ok(y)
}
