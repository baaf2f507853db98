//! `Zero`: a `Cell` edge that carries nothing (NAS-Bench-201's "none").

use super::{Ctx, LayerPart, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::ParamDecl;

pub struct Zero;

impl LayerPart for Zero {
    fn name(&self) -> &'static str {
        "Zero"
    }
    fn about(&self) -> &'static str {
        "an edge of a `Cell` that carries nothing (NAS-Bench-201's \"none\"); only inside a `Cell`"
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
        _x: Chw,
        ctx: &Ctx,
    ) -> Result<Chw, NnError> {
        // A cell drops its zero edges before building them.
        Err(NnError::Impossible(format!(
            "{}: `Zero` is an edge of a `Cell` and cannot stand elsewhere",
            ctx.path
        )))
    }
}
