//! `Linear(units)`: a fully connected layer; a feature map is flattened first.

use super::{Ctx, LayerPart, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{int_at_least_1, plain, DefaultDom, Lit, ParamDecl};

pub struct Linear;

pub static UNITS: ParamDecl = plain("units", DefaultDom::Fixed(Lit::Int(64)), int_at_least_1);

impl LayerPart for Linear {
    fn name(&self) -> &'static str {
        "Linear"
    }
    fn about(&self) -> &'static str {
        "fully connected layer x W + b (a feature map is flattened first)"
    }
    fn fields(&self) -> &'static [&'static ParamDecl] {
        static FIELDS: &[&ParamDecl] = &[&UNITS];
        FIELDS
    }
    fn build(
        &self,
        v: &Values,
        b: &mut Builder,
        out: &mut Vec<Layer>,
        x: Chw,
        ctx: &Ctx,
    ) -> Result<Chw, NnError> {
        b.no_pending_stride(ctx.path, self.name())?;
        let units = v.usize(&UNITS);
        out.push(b.linear(x.len(), units, ctx.hint)?);
        Ok(Chw::flat(units))
    }
}
