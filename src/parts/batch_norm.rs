//! `BatchNorm(enabled)`: batch normalisation over channels (features after a `Linear`).

use super::{Ctx, LayerPart, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{any, plain, DefaultDom, Lit, ParamDecl};

pub struct BatchNorm;

/// `false` leaves the layer out, so a whole network's batch norm can be one choice.
pub static ENABLED: ParamDecl = plain("enabled", DefaultDom::Fixed(Lit::Bool(true)), any);

impl LayerPart for BatchNorm {
    fn name(&self) -> &'static str {
        "BatchNorm"
    }
    fn about(&self) -> &'static str {
        "batch normalisation per channel; `enabled: false` leaves it out"
    }
    fn fields(&self) -> &'static [&'static ParamDecl] {
        static FIELDS: &[&ParamDecl] = &[&ENABLED];
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
        if v.bool(&ENABLED) {
            out.push(b.batch_norm(x.c, x.hw()));
        }
        Ok(x)
    }
}
