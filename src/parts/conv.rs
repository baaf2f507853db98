//! `Conv(channels, kernel, stride)`: a convolution with "same" padding.

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{
    channels_at_least_1, int_at_least_1, odd_kernel, plain, Channels, DefaultDom, Lit, ParamDecl,
};

/// Output channels: a count, or `Same` / `Double` the input's.
pub static CHANNELS: ParamDecl = plain(
    "channels",
    DefaultDom::Fixed(Lit::Channels(Channels::Same)),
    channels_at_least_1,
);
pub static KERNEL: ParamDecl = plain("kernel", DefaultDom::Fixed(Lit::Int(3)), odd_kernel);
pub static STRIDE: ParamDecl = plain("stride", DefaultDom::Fixed(Lit::Int(1)), int_at_least_1);

pub static CONV: Part = Part {
    name: "Conv",
    about: "convolution, \"same\" padding, no bias before a batch norm (1-D on 1xL inputs)",
    fields: &[&CHANNELS, &KERNEL, &STRIDE],
    build,
};

fn build(
    v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    ctx: &Ctx,
) -> Result<Chw, NnError> {
    let stride = v.usize(&STRIDE) * b.take_stride();
    let c = v.channels(&CHANNELS, x.c);
    let (conv, y) = b.conv(x, c, v.usize(&KERNEL), stride, 1, !ctx.before_batch_norm)?;
    out.push(conv);
    Ok(y)
}
