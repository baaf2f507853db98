//! The layer parts of the architecture language, one file each, listed once in [`PARTS`].
//!
//! A part declares its fields (name, default, check: [`ParamDecl`]s, read by the space file's
//! validation and by decoding alike) and builds its layers with the network [`Builder`]. Adding a
//! layer or block type is one new file here plus one line in [`PARTS`]; see
//! `search_spaces/README.md` for an example.

mod act;
mod batch_norm;
mod conv;
mod downsample;
mod dropout;
mod global_avg_pool;
mod identity;
mod linear;
mod pool;
mod separable_conv;
mod zero;

use crate::nn::{Builder, Chw, Layer, NnError};
use crate::space::params::{Channels, Lit, ParamDecl, PoolOp};
use crate::space::{Activation, Downsample as DownsampleHow};

/// Every layer part, by the name a space file writes.
pub static PARTS: &[&Part] = &[
    &linear::LINEAR,
    &conv::CONV,
    &separable_conv::SEPARABLE_CONV,
    &pool::POOL,
    &downsample::DOWNSAMPLE,
    &global_avg_pool::GLOBAL_AVG_POOL,
    &batch_norm::BATCH_NORM,
    &dropout::DROPOUT,
    &act::ACT,
    &identity::IDENTITY,
    &zero::ZERO,
];

/// The part named `name`.
pub fn find(name: &str) -> Option<&'static Part> {
    PARTS.iter().copied().find(|p| p.name == name)
}

/// Where a part is built: its path in the network and what surrounds it.
pub struct Ctx<'a> {
    pub path: &'a str,
    /// Whether a batch norm follows directly (a convolution then needs no bias).
    pub before_batch_norm: bool,
}

/// Appends a part's layers for input `x` and returns the output shape.
pub type BuildFn = fn(
    v: &Values,
    b: &mut Builder,
    out: &mut Vec<Layer>,
    x: Chw,
    ctx: &Ctx,
) -> Result<Chw, NnError>;

/// One layer or block type of the architecture language.
pub struct Part {
    /// The name written in a space file, e.g. `Conv`.
    pub name: &'static str,
    /// One line for `search_spaces/README.md` (a test keeps the two in step).
    pub about: &'static str,
    /// The fields, in the order positional arguments fill them.
    pub fields: &'static [&'static ParamDecl],
    pub build: BuildFn,
}

/// The sampled values of a part's fields; a field left out has its declared default.
pub struct Values<'a>(pub &'a [(String, Lit)]);

impl Values<'_> {
    pub fn lit(&self, decl: &ParamDecl) -> Lit {
        self.0
            .iter()
            .find(|(k, _)| k == decl.name)
            .map(|(_, v)| *v)
            .filter(|v| v.same_kind(&decl.kind()))
            .unwrap_or_else(|| decl.default.first())
    }

    pub fn usize(&self, decl: &ParamDecl) -> usize {
        match self.lit(decl) {
            Lit::Int(i) => i.max(0) as usize,
            _ => 0,
        }
    }

    pub fn float(&self, decl: &ParamDecl) -> f64 {
        match self.lit(decl) {
            Lit::Float(x) => x,
            Lit::Int(i) => i as f64,
            _ => 0.0,
        }
    }

    pub fn bool(&self, decl: &ParamDecl) -> bool {
        matches!(self.lit(decl), Lit::Bool(true))
    }

    pub fn activation(&self, decl: &ParamDecl) -> Activation {
        match self.lit(decl) {
            Lit::Activation(a) => a,
            _ => Activation::Relu,
        }
    }

    /// A channel count; `Same` and `Double` are relative to `input` channels.
    pub fn channels(&self, decl: &ParamDecl, input: usize) -> usize {
        match self.lit(decl) {
            Lit::Channels(c) => c.of(input),
            Lit::Int(i) => i.max(1) as usize,
            _ => input,
        }
    }

    pub fn pool(&self, decl: &ParamDecl) -> PoolOp {
        match self.lit(decl) {
            Lit::Pool(p) => p,
            _ => PoolOp::Max,
        }
    }

    pub fn downsample(&self, decl: &ParamDecl) -> DownsampleHow {
        match self.lit(decl) {
            Lit::Downsample(d) => d,
            _ => DownsampleHow::MaxPool,
        }
    }
}

impl Channels {
    /// The count for an input of `input` channels.
    pub fn of(self, input: usize) -> usize {
        match self {
            Channels::Same => input,
            Channels::Double => input.saturating_mul(2),
            Channels::Count(n) => n as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README row of a part: name, fields with defaults, what it does.
    fn row(p: &Part) -> String {
        let fields: Vec<String> = p
            .fields
            .iter()
            .map(|d| format!("{}: {}", d.name, d.default.first()))
            .collect();
        let fields = if fields.is_empty() {
            "-".to_string()
        } else {
            format!("`{}`", fields.join(", "))
        };
        format!("| `{}` | {fields} | {} |", p.name, p.about)
    }

    #[test]
    fn the_readme_table_lists_every_part_with_its_fields_and_defaults() {
        let readme = include_str!("../../search_spaces/README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| part | fields and defaults |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let want: Vec<String> = PARTS.iter().map(|p| row(p)).collect();
        assert_eq!(table, want, "the table should read:\n{}", want.join("\n"));
    }

    #[test]
    fn every_default_is_a_fixed_value_that_passes_its_check() {
        for p in PARTS {
            for d in p.fields {
                let crate::space::params::DefaultDom::Fixed(v) = d.default else {
                    panic!("{}.{}: a part's default is one value", p.name, d.name)
                };
                assert_eq!((d.check)(&v), Ok(()), "{}.{}", p.name, d.name);
            }
        }
    }
}
