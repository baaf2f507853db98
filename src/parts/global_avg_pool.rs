//! `GlobalAvgPool`: the mean of each channel over the whole map.

use super::{Ctx, LayerPart, Values};
use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::ParamDecl;

pub struct GlobalAvgPool;

impl LayerPart for GlobalAvgPool {
    fn name(&self) -> &'static str {
        "GlobalAvgPool"
    }
    fn about(&self) -> &'static str {
        "the mean of each channel over the map (C x H x W -> C)"
    }
    fn fields(&self) -> &'static [&'static ParamDecl] {
        static FIELDS: &[&ParamDecl] = &[];
        FIELDS
    }
    fn build(
        &self,
        _v: &Values,
        b: &mut Builder,
        out: &mut Vec<Layer>,
        x: Chw,
        ctx: &Ctx,
    ) -> Result<Chw, NnError> {
        b.no_pending_stride(ctx.path, self.name())?;
        b.output(x.c);
        out.push(Layer::GlobalAvgPool { c: x.c, hw: x.hw() });
        Ok(Chw::flat(x.c))
    }
}
