//! `Act(function)`: an element-wise activation.

use super::{Ctx, Part, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{any, plain, DefaultDom, Lit, ParamDecl};
use crate::space::Activation;

pub static FUNCTION: ParamDecl = plain(
    "function",
    DefaultDom::Fixed(Lit::Activation(Activation::Relu)),
    any,
);

pub static ACT: Part = Part {
    name: "Act",
    about: "activation: Relu, LeakyRelu, Sigmoid, Tanh or Gelu",
    fields: &[&FUNCTION],
    build,
};

fn build(
    v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    _ctx: &Ctx,
) -> Result<Chw, NnError> {
    out.push(b.act(v.activation(&FUNCTION), x.len()));
    Ok(x)
}
