//! `Act(function)`: an element-wise activation.

use super::{Ctx, LayerPart, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{any, plain, DefaultDom, Lit, ParamDecl};
use crate::space::Activation;

pub struct Act;

pub static FUNCTION: ParamDecl = plain(
    "function",
    DefaultDom::Fixed(Lit::Activation(Activation::Relu)),
    any,
);

impl LayerPart for Act {
    fn name(&self) -> &'static str {
        "Act"
    }
    fn about(&self) -> &'static str {
        "activation: Relu, LeakyRelu, Sigmoid, Tanh or Gelu"
    }
    fn fields(&self) -> &'static [&'static ParamDecl] {
        static FIELDS: &[&ParamDecl] = &[&FUNCTION];
        FIELDS
    }
    fn build(
        &self,
        v: &Values,
        b: &mut Builder,
        out: &mut Vec<Layer>,
        x: Chw,
        _ctx: &Ctx,
    ) -> Result<Chw, NnError> {
        out.push(b.act(v.activation(&FUNCTION), x.len()));
        Ok(x)
    }
}
