//! `SeparableConv(channels, kernel, expansion, stride, activation, batch_norm)`: MobileNet's
//! depthwise-separable block.

use super::conv::{CHANNELS, KERNEL, STRIDE};
use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{any, int_at_least_1, plain, DefaultDom, Lit, ParamDecl};
use crate::space::Activation;

/// Channels of the inner layers relative to the input; above 1, an inverted residual.
pub static EXPANSION: ParamDecl =
    plain("expansion", DefaultDom::Fixed(Lit::Int(1)), int_at_least_1);
pub static ACTIVATION: ParamDecl = plain(
    "activation",
    DefaultDom::Fixed(Lit::Activation(Activation::Relu)),
    any,
);
pub static BATCH_NORM: ParamDecl = plain("batch_norm", DefaultDom::Fixed(Lit::Bool(true)), any);

pub static SEPARABLE_CONV: Part = Part {
    name: "SeparableConv",
    about: "MobileNet block: [1x1 expansion], depthwise kxk, pointwise 1x1, each with batch norm and activation",
    fields: &[&CHANNELS,
            &KERNEL,
            &EXPANSION,
            &STRIDE,
            &ACTIVATION,
            &BATCH_NORM,],
    build,
};

fn build(
    v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    _ctx: &Ctx,
) -> Result<Chw, NnError> {
    let stride = v.usize(&STRIDE) * b.take_stride();
    let out_c = v.channels(&CHANNELS, x.c);
    let (k, e) = (v.usize(&KERNEL), v.usize(&EXPANSION).max(1));
    let (act, bn) = (v.activation(&ACTIVATION), v.bool(&BATCH_NORM));
    let mut body = Vec::new();
    let mut y = x;
    if e > 1 {
        y = b.conv_bn(&mut body, y, x.c * e, 1, 1, 1, bn, Some(act))?;
    }
    y = b.conv_bn(&mut body, y, y.c, k, stride, y.c, bn, Some(act))?;
    // MobileNet v2 keeps the projection linear; v1 (no expansion) activates it.
    let last_act = (e == 1).then_some(act);
    let y = b.conv_bn(&mut body, y, out_c, 1, 1, 1, bn, last_act)?;
    if e > 1 && stride == 1 && x.c == out_c {
        out.push(Layer::Residual {
            body,
            shortcut: Vec::new(),
            act: None,
        });
    } else {
        out.append(&mut body);
    }
    Ok(y)
}
