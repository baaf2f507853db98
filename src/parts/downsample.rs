//! `Downsample(how, ceil)`: halves the map by pooling, or by a stride of 2 in the next
//! convolution.

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{any, plain, DefaultDom, Lit, ParamDecl, PoolOp};
use crate::space::Downsample as How;

pub static HOW: ParamDecl = plain("how", DefaultDom::Fixed(Lit::Downsample(How::MaxPool)), any);
/// Pooling rounds an odd size up, as PyTorch's `ceil_mode=True` and as `Stride` do (7 -> 4);
/// by default it rounds down (7 -> 3).
pub static CEIL: ParamDecl = plain("ceil", DefaultDom::Fixed(Lit::Bool(false)), any);

pub static DOWNSAMPLE: Part = Part {
    name: "Downsample",
    about: "halves the map: MaxPool or AvgPool 2 (`ceil: true` rounds an odd size up), or Stride (the next convolution strides by 2)",
    fields: &[&HOW, &CEIL],
    build,
};

fn build(
    v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    ctx: &Ctx,
) -> Result<Chw, NnError> {
    if x.h == 1 && x.w == 1 {
        return Err(NnError::Impossible(
            "cannot downsample a 1x1 feature map (too many downsamplings for this input)".into(),
        ));
    }
    let op = match v.downsample(&HOW) {
        How::MaxPool => PoolOp::Max,
        How::AvgPool => PoolOp::Avg,
        How::Stride => {
            b.stride_next(2, ctx.path);
            return Ok(x);
        }
    };
    let (layer, y) = b.pool(x, op, 2, 2, v.bool(&CEIL))?;
    out.push(layer);
    Ok(y)
}
