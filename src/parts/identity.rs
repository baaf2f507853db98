//! `Identity`: passes its input on (a searchable skip, with `OneOf`).

use super::{Ctx, LayerPart, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::ParamDecl;

pub struct Identity;

impl LayerPart for Identity {
    fn name(&self) -> &'static str {
        "Identity"
    }
    fn about(&self) -> &'static str {
        "passes its input on (with `OneOf`, a searchable skip)"
    }
    fn fields(&self) -> &'static [&'static ParamDecl] {
        static FIELDS: &[&ParamDecl] = &[];
        FIELDS
    }
    fn build(
        &self,
        _v: &Values,
        _b: &mut Builder,
        _out: &mut Vec<Layer>,
        x: Chw,
        _ctx: &Ctx,
    ) -> Result<Chw, NnError> {
        Ok(x)
    }
}
