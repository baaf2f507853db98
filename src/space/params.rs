//! One declaration per parameter: its RON name, default domain, value check and condition.
//!
//! The RON schema ([`super::schema`]), validation and the decoder ([`super::decode`]) all read
//! these tables, so a name or default is written once; the decoder names a parameter by its
//! declaration (a Rust item), so a misspelt name does not compile instead of decoding as a default.

use super::decode::{Activation, BlockKind, Downsample, OptimizerName};
use super::Choice;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A channel count as a layer writes it: absolute, or relative to the layer's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channels {
    Same,
    Double,
    Count(i64),
}

/// Max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolOp {
    Max,
    Avg,
}

/// One literal value of a declaration; its variant is the parameter's value type.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Lit {
    Int(i64),
    Float(f64),
    Bool(bool),
    Activation(Activation),
    Block(BlockKind),
    Downsample(Downsample),
    Optimizer(OptimizerName),
    Channels(Channels),
    Pool(PoolOp),
}

impl Lit {
    /// The choice as journalled: named options by their lowercase label.
    pub fn choice(&self) -> Choice {
        match *self {
            Lit::Int(i) => Choice::Int(i),
            Lit::Float(x) => Choice::Float(x),
            Lit::Bool(b) => Choice::Bool(b),
            Lit::Activation(a) => Choice::Str(a.label().into()),
            Lit::Block(b) => Choice::Str(b.label().into()),
            Lit::Downsample(d) => Choice::Str(d.label().into()),
            Lit::Optimizer(o) => Choice::Str(o.label().into()),
            Lit::Channels(Channels::Count(n)) => Choice::Int(n),
            Lit::Channels(Channels::Same) => Choice::Str("same".into()),
            Lit::Channels(Channels::Double) => Choice::Str("double".into()),
            Lit::Pool(PoolOp::Max) => Choice::Str("max".into()),
            Lit::Pool(PoolOp::Avg) => Choice::Str("avg".into()),
        }
    }

    /// The value of this one's type written as the bare name `name` in a file (`Relu`, `Same`).
    pub fn named(&self, name: &str) -> Option<Lit> {
        fn find<T: Copy + fmt::Debug>(all: &[T], name: &str) -> Option<T> {
            all.iter().copied().find(|v| format!("{v:?}") == name)
        }
        match self {
            Lit::Activation(_) => find(Activation::ALL, name).map(Lit::Activation),
            Lit::Block(_) => find(BlockKind::ALL, name).map(Lit::Block),
            Lit::Downsample(_) => find(Downsample::ALL, name).map(Lit::Downsample),
            Lit::Optimizer(_) => find(OptimizerName::ALL, name).map(Lit::Optimizer),
            Lit::Channels(_) => find(&[Channels::Same, Channels::Double], name).map(Lit::Channels),
            Lit::Pool(_) => find(&[PoolOp::Max, PoolOp::Avg], name).map(Lit::Pool),
            Lit::Int(_) | Lit::Float(_) | Lit::Bool(_) => None,
        }
    }

    /// The value of this one's type that journals as `choice`.
    pub fn from_choice(&self, choice: &Choice) -> Option<Lit> {
        match (self, choice) {
            (Lit::Int(_), Choice::Int(i)) => Some(Lit::Int(*i)),
            (Lit::Float(_), Choice::Float(x)) => Some(Lit::Float(*x)),
            (Lit::Float(_), Choice::Int(i)) => Some(Lit::Float(*i as f64)),
            (Lit::Bool(_), Choice::Bool(b)) => Some(Lit::Bool(*b)),
            (Lit::Channels(_), Choice::Int(n)) => Some(Lit::Channels(Channels::Count(*n))),
            (_, Choice::Str(s)) => self
                .all_named()
                .into_iter()
                .find(|v| v.choice() == Choice::Str(s.clone())),
            _ => None,
        }
    }

    /// Every named value of this one's type (none for numbers and booleans).
    fn all_named(&self) -> Vec<Lit> {
        match self {
            Lit::Activation(_) => Activation::ALL
                .iter()
                .map(|v| Lit::Activation(*v))
                .collect(),
            Lit::Block(_) => BlockKind::ALL.iter().map(|v| Lit::Block(*v)).collect(),
            Lit::Downsample(_) => Downsample::ALL
                .iter()
                .map(|v| Lit::Downsample(*v))
                .collect(),
            Lit::Optimizer(_) => OptimizerName::ALL
                .iter()
                .map(|v| Lit::Optimizer(*v))
                .collect(),
            Lit::Channels(_) => vec![
                Lit::Channels(Channels::Same),
                Lit::Channels(Channels::Double),
            ],
            Lit::Pool(_) => vec![Lit::Pool(PoolOp::Max), Lit::Pool(PoolOp::Avg)],
            Lit::Int(_) | Lit::Float(_) | Lit::Bool(_) => Vec::new(),
        }
    }

    /// What values of this type look like, for messages.
    pub fn expected(&self) -> String {
        let names = |all: Vec<String>| all.join(", ");
        match self {
            Lit::Int(_) => "an integer".into(),
            Lit::Float(_) => "a number".into(),
            Lit::Bool(_) => "true or false".into(),
            Lit::Activation(_) => names(Activation::ALL.iter().map(|v| format!("{v:?}")).collect()),
            Lit::Block(_) => names(BlockKind::ALL.iter().map(|v| format!("{v:?}")).collect()),
            Lit::Downsample(_) => names(Downsample::ALL.iter().map(|v| format!("{v:?}")).collect()),
            Lit::Optimizer(_) => names(
                OptimizerName::ALL
                    .iter()
                    .map(|v| format!("{v:?}"))
                    .collect(),
            ),
            Lit::Channels(_) => "a channel count, Same or Double".into(),
            Lit::Pool(_) => "Max, Avg".into(),
        }
    }

    /// Whether `other` is a value of the same type (the same variant).
    pub fn same_kind(&self, other: &Lit) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Written as in a RON file (`0.001`, `MaxPool`), as the README's table shows it.
impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Int(i) => write!(f, "{i}"),
            Lit::Float(x) => write!(f, "{x:?}"),
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::Activation(a) => write!(f, "{a:?}"),
            Lit::Block(b) => write!(f, "{b:?}"),
            Lit::Downsample(d) => write!(f, "{d:?}"),
            Lit::Optimizer(o) => write!(f, "{o:?}"),
            Lit::Channels(Channels::Count(n)) => write!(f, "{n}"),
            Lit::Channels(c) => write!(f, "{c:?}"),
            Lit::Pool(p) => write!(f, "{p:?}"),
        }
    }
}

/// The domain a parameter takes when its field is left out of the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DefaultDom {
    Fixed(Lit),
    Range(Lit, Lit),
    Choice(&'static [Lit]),
}

impl DefaultDom {
    /// The value a decoder falls back to when a configuration lacks the parameter: the fixed
    /// value, the low end of a range or the first choice (a configuration sampled from a checked
    /// space never lacks an active parameter; see the decoder's tests).
    pub fn first(&self) -> Lit {
        match self {
            DefaultDom::Fixed(v) | DefaultDom::Range(v, _) => *v,
            DefaultDom::Choice(vs) => vs[0],
        }
    }
}

impl fmt::Display for DefaultDom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultDom::Fixed(v) => write!(f, "Fixed({v})"),
            DefaultDom::Range(a, b) => write!(f, "Range({a}, {b})"),
            DefaultDom::Choice(vs) => {
                let vs: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
                write!(f, "Choice([{}])", vs.join(", "))
            }
        }
    }
}

/// A parameter that exists only while a categorical parent takes one value.
#[derive(Debug)]
pub struct When {
    pub parent: &'static ParamDecl,
    pub is: Lit,
    /// Whether writing the parameter in a file whose parent never takes `is` is an error: true
    /// unless the written domain is also used elsewhere (the MLP `width` feeds `width_1..`).
    pub unused_is_error: bool,
    /// What a candidate carries while the parameter is inactive (kept in `architecture.ron`).
    pub otherwise: Lit,
}

/// The largest integer the implementation supports, and what to say past it.
#[derive(Debug)]
pub struct Limit {
    pub most: i64,
    pub message: fn(i64) -> String,
}

/// Everything about one searchable parameter.
#[derive(Debug)]
pub struct ParamDecl {
    /// The RON field and the parameter's name in configurations and journals.
    pub name: &'static str,
    pub default: DefaultDom,
    /// Checks each value a domain names (range ends, choices).
    pub check: fn(&Lit) -> Result<(), String>,
    pub at_most: Option<Limit>,
    pub when: Option<&'static When>,
}

impl ParamDecl {
    /// The value type, from the default's first value (every value of a domain has one type).
    pub fn kind(&self) -> Lit {
        self.default.first()
    }
}

fn below(v: &dyn fmt::Display, min: &dyn fmt::Display) -> String {
    format!("{v} is below the smallest allowed value {min}")
}

pub(crate) fn any(_: &Lit) -> Result<(), String> {
    Ok(())
}

pub(crate) fn int_at_least_0(v: &Lit) -> Result<(), String> {
    match v {
        Lit::Int(i) if *i < 0 => Err(below(i, &0)),
        _ => Ok(()),
    }
}

pub(crate) fn int_at_least_1(v: &Lit) -> Result<(), String> {
    match v {
        Lit::Int(i) if *i < 1 => Err(below(i, &1)),
        _ => Ok(()),
    }
}

pub(crate) fn float_at_least_0(v: &Lit) -> Result<(), String> {
    match v {
        Lit::Float(x) if x.is_nan() || *x < 0.0 => Err(below(x, &0.0)),
        _ => Ok(()),
    }
}

/// A probability that leaves something: dropout and momentum in [0, 1).
pub(crate) fn unit_interval(v: &Lit) -> Result<(), String> {
    match v {
        Lit::Float(x) if !(0.0..1.0).contains(x) => Err(format!("{x} is outside [0, 1)")),
        _ => Ok(()),
    }
}

pub(crate) fn learning_rate(v: &Lit) -> Result<(), String> {
    match v {
        Lit::Float(x) if !(*x > 0.0 && *x <= 10.0) => {
            Err(format!("learning rate {x} must be in (0, 10]"))
        }
        _ => Ok(()),
    }
}

pub(crate) fn channels_at_least_1(v: &Lit) -> Result<(), String> {
    match v {
        Lit::Channels(Channels::Count(n)) if *n < 1 => Err(below(n, &1)),
        _ => Ok(()),
    }
}

pub(crate) fn odd_kernel(v: &Lit) -> Result<(), String> {
    match v {
        Lit::Int(k) if !(*k >= 1 && k % 2 == 1) => Err(format!(
            "kernel size {k} must be an odd number >= 1 (\"same\" padding)"
        )),
        _ => Ok(()),
    }
}

pub(crate) const fn plain(
    name: &'static str,
    default: DefaultDom,
    check: fn(&Lit) -> Result<(), String>,
) -> ParamDecl {
    ParamDecl {
        name,
        default,
        check,
        at_most: None,
        when: None,
    }
}

/// The MLP family, in RON field order.
pub mod mlp {
    use super::*;

    pub static DEPTH: ParamDecl = ParamDecl {
        at_most: Some(Limit {
            most: 64,
            message: |m| format!("{m} hidden layers is more than 64"),
        }),
        ..plain(
            "depth",
            DefaultDom::Range(Lit::Int(1), Lit::Int(3)),
            int_at_least_0,
        )
    };
    /// Also the domain of each per-layer width `width_1`, `width_2`, ...
    pub static WIDTH: ParamDecl = ParamDecl {
        when: Some(&When {
            parent: &PER_LAYER_WIDTH,
            is: Lit::Bool(false),
            unused_is_error: false,
            otherwise: Lit::Int(64),
        }),
        ..plain(
            "width",
            DefaultDom::Choice(&[Lit::Int(64), Lit::Int(128), Lit::Int(256)]),
            int_at_least_1,
        )
    };
    pub static PER_LAYER_WIDTH: ParamDecl =
        plain("per_layer_width", DefaultDom::Fixed(Lit::Bool(false)), any);
    pub static ACTIVATION: ParamDecl = plain(
        "activation",
        DefaultDom::Fixed(Lit::Activation(Activation::Relu)),
        any,
    );
    pub static DROPOUT: ParamDecl =
        plain("dropout", DefaultDom::Fixed(Lit::Float(0.0)), unit_interval);
    pub static BATCH_NORM: ParamDecl =
        plain("batch_norm", DefaultDom::Fixed(Lit::Bool(false)), any);

    pub static PART: &[&ParamDecl] = &[
        &DEPTH,
        &WIDTH,
        &PER_LAYER_WIDTH,
        &ACTIVATION,
        &DROPOUT,
        &BATCH_NORM,
    ];

    /// The per-layer width of hidden layer `i` (1-based), drawn from the `width` domain.
    pub fn layer_width(i: i64) -> String {
        format!("{}_{i}", WIDTH.name)
    }
}

/// The CNN family, in RON field order.
pub mod cnn {
    use super::*;

    pub static STAGES: ParamDecl = ParamDecl {
        at_most: Some(Limit {
            most: 6,
            message: |_| "at most 6 stages are supported".into(),
        }),
        ..plain(
            "stages",
            DefaultDom::Range(Lit::Int(1), Lit::Int(3)),
            int_at_least_1,
        )
    };
    pub static BLOCKS_PER_STAGE: ParamDecl = plain(
        "blocks_per_stage",
        DefaultDom::Range(Lit::Int(1), Lit::Int(2)),
        int_at_least_1,
    );
    pub static BLOCK: ParamDecl = plain(
        "block",
        DefaultDom::Choice(&[
            Lit::Block(BlockKind::Plain),
            Lit::Block(BlockKind::Residual),
        ]),
        any,
    );
    pub static WIDTH: ParamDecl = plain(
        "width",
        DefaultDom::Choice(&[Lit::Int(16), Lit::Int(32)]),
        int_at_least_1,
    );
    pub static GROWTH_RATE: ParamDecl = ParamDecl {
        when: Some(&When {
            parent: &BLOCK,
            is: Lit::Block(BlockKind::Dense),
            unused_is_error: true,
            otherwise: Lit::Int(12),
        }),
        ..plain(
            "growth_rate",
            DefaultDom::Choice(&[Lit::Int(8), Lit::Int(12)]),
            int_at_least_1,
        )
    };
    pub static EXPANSION: ParamDecl = ParamDecl {
        when: Some(&When {
            parent: &BLOCK,
            is: Lit::Block(BlockKind::Separable),
            unused_is_error: true,
            // No inverted residual: what a separable block with the default does.
            otherwise: Lit::Int(1),
        }),
        ..plain("expansion", DefaultDom::Fixed(Lit::Int(1)), int_at_least_1)
    };
    pub static KERNEL: ParamDecl = plain("kernel", DefaultDom::Fixed(Lit::Int(3)), odd_kernel);
    pub static DOWNSAMPLE: ParamDecl = plain(
        "downsample",
        DefaultDom::Fixed(Lit::Downsample(Downsample::MaxPool)),
        any,
    );
    pub static ACTIVATION: ParamDecl = plain(
        "activation",
        DefaultDom::Fixed(Lit::Activation(Activation::Relu)),
        any,
    );
    pub static DROPOUT: ParamDecl =
        plain("dropout", DefaultDom::Fixed(Lit::Float(0.0)), unit_interval);
    pub static BATCH_NORM: ParamDecl = plain("batch_norm", DefaultDom::Fixed(Lit::Bool(true)), any);

    pub static PART: &[&ParamDecl] = &[
        &STAGES,
        &BLOCKS_PER_STAGE,
        &BLOCK,
        &WIDTH,
        &GROWTH_RATE,
        &EXPANSION,
        &KERNEL,
        &DOWNSAMPLE,
        &ACTIVATION,
        &DROPOUT,
        &BATCH_NORM,
    ];
}

/// Training settings (`train: (..)`), in RON field order.
pub mod train {
    use super::*;

    pub static OPTIMIZER: ParamDecl = plain(
        "optimizer",
        DefaultDom::Fixed(Lit::Optimizer(OptimizerName::Adam)),
        any,
    );
    pub static LEARNING_RATE: ParamDecl = plain(
        "learning_rate",
        DefaultDom::Fixed(Lit::Float(1e-3)),
        learning_rate,
    );
    pub static MOMENTUM: ParamDecl = ParamDecl {
        when: Some(&When {
            parent: &OPTIMIZER,
            is: Lit::Optimizer(OptimizerName::Sgd),
            unused_is_error: true,
            otherwise: Lit::Float(0.9),
        }),
        ..plain(
            "momentum",
            DefaultDom::Fixed(Lit::Float(0.9)),
            unit_interval,
        )
    };
    pub static BATCH_SIZE: ParamDecl = plain(
        "batch_size",
        DefaultDom::Fixed(Lit::Int(64)),
        int_at_least_1,
    );
    pub static WEIGHT_DECAY: ParamDecl = plain(
        "weight_decay",
        DefaultDom::Fixed(Lit::Float(0.0)),
        float_at_least_0,
    );
    pub static MAX_EPOCHS: ParamDecl = plain(
        "max_epochs",
        DefaultDom::Fixed(Lit::Int(50)),
        int_at_least_1,
    );
    pub static PATIENCE: ParamDecl =
        plain("patience", DefaultDom::Fixed(Lit::Int(5)), int_at_least_1);

    pub static PART: &[&ParamDecl] = &[
        &OPTIMIZER,
        &LEARNING_RATE,
        &MOMENTUM,
        &BATCH_SIZE,
        &WEIGHT_DECAY,
        &MAX_EPOCHS,
        &PATIENCE,
    ];
}

/// Image augmentation (`augment: (..)`, CNN family only), in RON field order.
pub mod augment {
    use super::*;

    pub static SHIFT: ParamDecl = plain("shift", DefaultDom::Fixed(Lit::Int(0)), int_at_least_0);
    pub static HFLIP: ParamDecl = plain("hflip", DefaultDom::Fixed(Lit::Bool(false)), any);
    pub static NOISE: ParamDecl = plain(
        "noise",
        DefaultDom::Fixed(Lit::Float(0.0)),
        float_at_least_0,
    );

    pub static PART: &[&ParamDecl] = &[&SHIFT, &HFLIP, &NOISE];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `(section, parameter, default)` rows of the defaults table in `search_spaces/README.md`.
    fn readme_rows() -> Vec<(String, String, String)> {
        let readme = include_str!("../../search_spaces/README.md");
        let ticked = |cell: &str| cell.split('`').nth(1).map(str::to_string);
        let mut section = String::new();
        let mut rows = Vec::new();
        for line in readme
            .lines()
            .skip_while(|l| !l.starts_with("| section |"))
            .skip(2)
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 5 {
                break;
            }
            if let Some(s) = ticked(cells[1]) {
                section = s;
            }
            let (Some(name), Some(default)) = (ticked(cells[2]), ticked(cells[3])) else {
                panic!("README row without a `parameter` and a `default`: {line}");
            };
            rows.push((section.clone(), name, default));
        }
        rows
    }

    #[test]
    fn the_readme_table_lists_every_declared_parameter_with_its_default() {
        let parts = [
            ("Mlp((..))", mlp::PART),
            ("Cnn((..))", cnn::PART),
            ("train: (..)", train::PART),
            ("augment: (..)", augment::PART),
        ];
        let declared: Vec<(String, String, String)> = parts
            .iter()
            .flat_map(|(section, part)| {
                part.iter().map(|d| {
                    (
                        section.to_string(),
                        d.name.to_string(),
                        d.default.to_string(),
                    )
                })
            })
            .collect();
        assert_eq!(readme_rows(), declared);
    }

    #[test]
    fn every_value_of_a_declaration_has_the_type_of_its_first() {
        for part in [mlp::PART, cnn::PART, train::PART, augment::PART] {
            for d in part {
                let values: Vec<Lit> = match d.default {
                    DefaultDom::Fixed(v) => vec![v],
                    DefaultDom::Range(a, b) => vec![a, b],
                    DefaultDom::Choice(vs) => vs.to_vec(),
                };
                let mut more = values.clone();
                if let Some(w) = d.when {
                    more.push(w.otherwise);
                    assert!(w.is.same_kind(&w.parent.kind()), "{}", d.name);
                }
                for v in more {
                    assert!(v.same_kind(&d.kind()), "{}: {v:?}", d.name);
                }
                for v in values {
                    assert_eq!(
                        (d.check)(&v),
                        Ok(()),
                        "{}: default {v:?} fails its check",
                        d.name
                    );
                }
            }
        }
    }

    #[test]
    fn names_are_unique_within_a_space() {
        // One flat configuration holds a family's parameters, the training settings and the
        // augmentation, so a name may appear once across all three.
        for family in [mlp::PART, cnn::PART] {
            let mut names: Vec<&str> = [family, train::PART, augment::PART]
                .iter()
                .flat_map(|p| p.iter().map(|d| d.name))
                .collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n);
        }
    }
}
