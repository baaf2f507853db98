//! The RON schema of a search-space file and its one-time validation into a [`SearchSpace`].
//!
//! Every field of a family is a domain: `Fixed(v)`, `Range(lo, hi)`, `LogRange(lo, hi)` or
//! `Choice([..])`. Omitted fields take the defaults listed in `search_spaces/README.md`.

use super::decode::{Activation, BlockKind, Downsample, OptimizerName};
use super::{Choice, Condition, Distribution, Family, ParamSpec, SearchSpace, SpaceError};
use crate::data::Task;
use ron::extensions::Extensions;
use serde::Deserialize;

/// A sampling domain as written in RON.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub enum Dom<T> {
    Fixed(T),
    Range(T, T),
    LogRange(T, T),
    Choice(Vec<T>),
}

/// The whole file, before validation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceFile {
    pub task: Task,
    #[serde(default)]
    pub data: Option<String>,
    pub model: ModelSpace,
    #[serde(default)]
    pub train: TrainSpace,
    #[serde(default)]
    pub augment: AugmentSpace,
}

#[derive(Clone, Debug, Deserialize)]
pub enum ModelSpace {
    Mlp(MlpSpace),
    Cnn(CnnSpace),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpSpace {
    pub depth: Option<Dom<i64>>,
    pub width: Option<Dom<i64>>,
    pub per_layer_width: Option<Dom<bool>>,
    pub activation: Option<Dom<Activation>>,
    pub dropout: Option<Dom<f64>>,
    pub batch_norm: Option<Dom<bool>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnSpace {
    pub stages: Option<Dom<i64>>,
    pub blocks_per_stage: Option<Dom<i64>>,
    pub block: Option<Dom<BlockKind>>,
    pub width: Option<Dom<i64>>,
    pub growth_rate: Option<Dom<i64>>,
    pub expansion: Option<Dom<i64>>,
    pub kernel: Option<Dom<i64>>,
    pub downsample: Option<Dom<Downsample>>,
    pub activation: Option<Dom<Activation>>,
    pub dropout: Option<Dom<f64>>,
    pub batch_norm: Option<Dom<bool>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpace {
    pub optimizer: Option<Dom<OptimizerName>>,
    pub learning_rate: Option<Dom<f64>>,
    pub momentum: Option<Dom<f64>>,
    pub batch_size: Option<Dom<i64>>,
    pub weight_decay: Option<Dom<f64>>,
    pub max_epochs: Option<Dom<i64>>,
    pub patience: Option<Dom<i64>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSpace {
    pub shift: Option<Dom<i64>>,
    pub hflip: Option<Dom<bool>>,
    pub noise: Option<Dom<f64>>,
}

/// Parses RON text; syntax and type errors carry RON's own line and column.
pub fn parse(text: &str, file: &str) -> Result<SpaceFile, SpaceError> {
    if text.trim().is_empty() {
        // RON would ask for the opening `(` of an internal type's name.
        return Err(SpaceError::Invalid {
            file: file.to_string(),
            line: 1,
            col: 1,
            message: "the file is empty; a search space is a RON struct `(task: .., model: .., train: ..)`".into(),
        });
    }
    let opts = ron::Options::default().with_default_extension(Extensions::IMPLICIT_SOME);
    opts.from_str::<SpaceFile>(text).map_err(|e| {
        let (line, col) = (e.position.line, e.position.col);
        let message = match &e.code {
            // RON's own wording runs two words together and names our internal types.
            ron::Error::NoSuchStructField {
                expected, found, ..
            } => format!(
                "unknown field `{found}`; expected one of {}",
                expected
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            code => {
                let msg = lower_first(&code.to_string());
                // A type error points at the value; the field it belongs to says more.
                match key_before(text_line(text, line), col) {
                    Some(key) => format!("`{key}`: {msg}"),
                    None => msg,
                }
            }
        };
        SpaceError::Invalid {
            file: file.to_string(),
            line,
            col,
            message,
        }
    })
}

fn text_line(text: &str, line: usize) -> &str {
    text.lines().nth(line.saturating_sub(1)).unwrap_or("")
}

/// The field name written as `name:` before column `col` (1-based) of `line`, if any.
fn key_before(line: &str, col: usize) -> Option<String> {
    let before: String = line.chars().take(col.saturating_sub(1)).collect();
    let colon = before.rfind(':')?;
    let name: String = before[..colon]
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!name.is_empty()).then_some(name)
}

/// RON's messages start with a capital; ours, after the position, do not.
fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), chars.clone().next()) {
        (Some(c), Some(d)) if d.is_lowercase() => c.to_lowercase().chain(chars).collect(),
        _ => s.to_string(),
    }
}

/// A value type that can appear inside a domain.
trait DomValue: Clone + std::fmt::Debug {
    fn choice(&self) -> Choice;
    /// The distribution of `Range`/`LogRange`, or why this type has none.
    fn range(lo: &Self, hi: &Self, log: bool) -> Result<Distribution, String>;
}

impl DomValue for i64 {
    fn choice(&self) -> Choice {
        Choice::Int(*self)
    }
    fn range(lo: &i64, hi: &i64, log: bool) -> Result<Distribution, String> {
        if lo > hi {
            return Err(format!("empty range: low {lo} is above high {hi}"));
        }
        if log && *lo <= 0 {
            return Err(format!(
                "a log range must stay above 0, but it starts at {lo}"
            ));
        }
        Ok(Distribution::Int {
            low: *lo,
            high: *hi,
            log,
        })
    }
}

impl DomValue for f64 {
    fn choice(&self) -> Choice {
        Choice::Float(*self)
    }
    fn range(lo: &f64, hi: &f64, log: bool) -> Result<Distribution, String> {
        if !lo.is_finite() || !hi.is_finite() {
            return Err("range bounds must be finite numbers".into());
        }
        if lo > hi {
            return Err(format!("empty range: low {lo} is above high {hi}"));
        }
        if log && *lo <= 0.0 {
            return Err(format!(
                "a log range must stay above 0, but it starts at {lo}"
            ));
        }
        Ok(Distribution::Float {
            low: *lo,
            high: *hi,
            log,
        })
    }
}

impl DomValue for bool {
    fn choice(&self) -> Choice {
        Choice::Bool(*self)
    }
    fn range(_: &bool, _: &bool, _: bool) -> Result<Distribution, String> {
        Err("a true/false parameter takes Fixed(..) or Choice([..]), not a range".into())
    }
}

macro_rules! label_dom_value {
    ($($t:ty),*) => {$(
        impl DomValue for $t {
            fn choice(&self) -> Choice {
                Choice::Str(self.label().to_string())
            }
            fn range(_: &Self, _: &Self, _: bool) -> Result<Distribution, String> {
                Err("a named option takes Fixed(..) or Choice([..]), not a range".into())
            }
        }
    )*};
}
label_dom_value!(Activation, BlockKind, Downsample, OptimizerName);

/// Accumulates checked parameters, reporting errors at the key's position in the text.
struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    params: Vec<ParamSpec>,
}

impl Checker<'_> {
    fn err(&self, key: &str, message: String) -> SpaceError {
        SpaceError::at_key(self.text, self.file, key, format!("`{key}`: {message}"))
    }

    /// Converts a domain (or its default), checks every value with `valid`, and appends it.
    fn add<T: DomValue>(
        &mut self,
        key: &str,
        dom: &Option<Dom<T>>,
        default: Dom<T>,
        valid: impl Fn(&T) -> Result<(), String>,
        conditions: Vec<Condition>,
    ) -> Result<Distribution, SpaceError> {
        let dom = dom.clone().unwrap_or(default);
        let values: Vec<T> = match &dom {
            Dom::Fixed(v) => vec![v.clone()],
            Dom::Range(a, b) | Dom::LogRange(a, b) => vec![a.clone(), b.clone()],
            Dom::Choice(vs) => vs.clone(),
        };
        let dist = match &dom {
            Dom::Fixed(v) => Distribution::Categorical {
                choices: vec![v.choice()],
            },
            Dom::Range(a, b) => T::range(a, b, false).map_err(|m| self.err(key, m))?,
            Dom::LogRange(a, b) => T::range(a, b, true).map_err(|m| self.err(key, m))?,
            Dom::Choice(vs) if vs.is_empty() => {
                return Err(self.err(key, "Choice needs at least one value".into()))
            }
            Dom::Choice(vs) => Distribution::Categorical {
                choices: vs.iter().map(|v| v.choice()).collect(),
            },
        };
        for v in &values {
            valid(v).map_err(|m| self.err(key, m))?;
        }
        self.params.push(ParamSpec {
            name: key.to_string(),
            dist: dist.clone(),
            conditions,
        });
        Ok(dist)
    }

    /// The choice indices of categorical parameter `param` whose label is `label`.
    fn indices_of(&self, param: &str, label: &str) -> Vec<usize> {
        match self
            .params
            .iter()
            .find(|p| p.name == param)
            .map(|p| &p.dist)
        {
            Some(Distribution::Categorical { choices }) => choices
                .iter()
                .enumerate()
                .filter(|(_, c)| c.to_string() == label)
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The condition "`param` is `label`"; an error when `param` can never take that value,
    /// which would leave the dependent parameter `child` (written in the file) unused.
    fn when(
        &self,
        child: &str,
        child_written: bool,
        param: &str,
        label: &str,
    ) -> Result<Condition, SpaceError> {
        let choices = self.indices_of(param, label);
        if choices.is_empty() && child_written {
            return Err(self.err(
                child,
                format!(
                    "only applies when `{param}` is {label}, but `{param}` never takes {label}"
                ),
            ));
        }
        Ok(Condition::OneOf {
            param: param.to_string(),
            choices,
        })
    }

    fn max_int(&self, dist: &Distribution) -> i64 {
        match dist {
            Distribution::Int { high, .. } => *high,
            Distribution::Categorical { choices } => choices
                .iter()
                .filter_map(|c| match c {
                    Choice::Int(i) => Some(*i),
                    _ => None,
                })
                .max()
                .unwrap_or(0),
            Distribution::Float { .. } => 0,
        }
    }
}

fn at_least<T: PartialOrd + std::fmt::Display>(min: T) -> impl Fn(&T) -> Result<(), String> {
    move |v| {
        if *v >= min {
            Ok(())
        } else {
            Err(format!("{v} is below the smallest allowed value {min}"))
        }
    }
}

fn between(lo: f64, hi: f64) -> impl Fn(&f64) -> Result<(), String> {
    move |v| {
        if (lo..hi).contains(v) {
            Ok(())
        } else {
            Err(format!("{v} is outside [{lo}, {hi})"))
        }
    }
}

fn any<T>(_: &T) -> Result<(), String> {
    Ok(())
}

fn odd_kernel(v: &i64) -> Result<(), String> {
    if *v >= 1 && v % 2 == 1 {
        Ok(())
    } else {
        Err(format!(
            "kernel size {v} must be an odd number >= 1 (\"same\" padding)"
        ))
    }
}

impl SpaceFile {
    /// Validates the file once into a [`SearchSpace`]; nothing downstream re-checks it.
    pub fn check(&self, text: &str, name: &str, file: &str) -> Result<SearchSpace, SpaceError> {
        let mut c = Checker {
            text,
            file,
            params: Vec::new(),
        };
        let family = match &self.model {
            ModelSpace::Mlp(m) => {
                check_mlp(&mut c, m)?;
                Family::Mlp
            }
            ModelSpace::Cnn(m) => {
                check_cnn(&mut c, m)?;
                Family::Cnn
            }
        };
        check_train(&mut c, &self.train)?;
        if family == Family::Cnn {
            let a = &self.augment;
            c.add("shift", &a.shift, Dom::Fixed(0), at_least(0), vec![])?;
            c.add("hflip", &a.hflip, Dom::Fixed(false), any, vec![])?;
            c.add("noise", &a.noise, Dom::Fixed(0.0), at_least(0.0), vec![])?;
        } else if a_written(&self.augment) {
            return Err(c.err(
                "augment",
                "data augmentation applies to the Cnn family (image-shaped inputs)".into(),
            ));
        }
        Ok(SearchSpace {
            name: name.to_string(),
            task: self.task,
            data: self.data.clone(),
            family,
            params: c.params,
            source: text.to_string(),
        })
    }
}

fn a_written(a: &AugmentSpace) -> bool {
    a.shift.is_some() || a.hflip.is_some() || a.noise.is_some()
}

fn check_mlp(c: &mut Checker, m: &MlpSpace) -> Result<(), SpaceError> {
    let depth = c.add("depth", &m.depth, Dom::Range(1, 3), at_least(0), vec![])?;
    let max_depth = c.max_int(&depth);
    if max_depth > 64 {
        return Err(c.err(
            "depth",
            format!("{max_depth} hidden layers is more than 64"),
        ));
    }
    let width_default = Dom::Choice(vec![64, 128, 256]);
    c.add(
        "per_layer_width",
        &m.per_layer_width,
        Dom::Fixed(false),
        any,
        vec![],
    )?;
    let shared = c.when("width", false, "per_layer_width", "false")?;
    c.add(
        "width",
        &m.width,
        width_default.clone(),
        at_least(1),
        vec![shared],
    )?;
    let per_layer = c.when("per_layer_width", false, "per_layer_width", "true")?;
    if !matches!(&per_layer, Condition::OneOf { choices, .. } if choices.is_empty()) {
        for i in 1..=max_depth {
            let conds = vec![
                per_layer.clone(),
                Condition::AtLeast {
                    param: "depth".into(),
                    min: i,
                },
            ];
            let key = format!("width_{i}");
            // Per-layer widths share the domain written as `width`.
            let dom = m.width.clone().unwrap_or(width_default.clone());
            c.add(&key, &Some(dom), Dom::Fixed(1), at_least(1), conds)?;
        }
    }
    c.add(
        "activation",
        &m.activation,
        Dom::Fixed(Activation::Relu),
        any,
        vec![],
    )?;
    c.add(
        "dropout",
        &m.dropout,
        Dom::Fixed(0.0),
        between(0.0, 1.0),
        vec![],
    )?;
    c.add("batch_norm", &m.batch_norm, Dom::Fixed(false), any, vec![])?;
    Ok(())
}

fn check_cnn(c: &mut Checker, m: &CnnSpace) -> Result<(), SpaceError> {
    let stages = c.add("stages", &m.stages, Dom::Range(1, 3), at_least(1), vec![])?;
    if c.max_int(&stages) > 6 {
        return Err(c.err("stages", "at most 6 stages are supported".into()));
    }
    c.add(
        "blocks_per_stage",
        &m.blocks_per_stage,
        Dom::Range(1, 2),
        at_least(1),
        vec![],
    )?;
    c.add(
        "block",
        &m.block,
        Dom::Choice(vec![BlockKind::Plain, BlockKind::Residual]),
        any,
        vec![],
    )?;
    c.add(
        "width",
        &m.width,
        Dom::Choice(vec![16, 32]),
        at_least(1),
        vec![],
    )?;
    let dense = c.when("growth_rate", m.growth_rate.is_some(), "block", "dense")?;
    c.add(
        "growth_rate",
        &m.growth_rate,
        Dom::Choice(vec![8, 12]),
        at_least(1),
        vec![dense],
    )?;
    let sep = c.when("expansion", m.expansion.is_some(), "block", "separable")?;
    c.add(
        "expansion",
        &m.expansion,
        Dom::Fixed(1),
        at_least(1),
        vec![sep],
    )?;
    c.add("kernel", &m.kernel, Dom::Fixed(3), odd_kernel, vec![])?;
    c.add(
        "downsample",
        &m.downsample,
        Dom::Fixed(Downsample::MaxPool),
        any,
        vec![],
    )?;
    c.add(
        "activation",
        &m.activation,
        Dom::Fixed(Activation::Relu),
        any,
        vec![],
    )?;
    c.add(
        "dropout",
        &m.dropout,
        Dom::Fixed(0.0),
        between(0.0, 1.0),
        vec![],
    )?;
    c.add("batch_norm", &m.batch_norm, Dom::Fixed(true), any, vec![])?;
    Ok(())
}

fn check_train(c: &mut Checker, t: &TrainSpace) -> Result<(), SpaceError> {
    c.add(
        "optimizer",
        &t.optimizer,
        Dom::Fixed(OptimizerName::Adam),
        any,
        vec![],
    )?;
    c.add(
        "learning_rate",
        &t.learning_rate,
        Dom::Fixed(1e-3),
        |v: &f64| {
            if *v > 0.0 && *v <= 10.0 {
                Ok(())
            } else {
                Err(format!("learning rate {v} must be in (0, 10]"))
            }
        },
        vec![],
    )?;
    let sgd = c.when("momentum", t.momentum.is_some(), "optimizer", "sgd")?;
    c.add(
        "momentum",
        &t.momentum,
        Dom::Fixed(0.9),
        between(0.0, 1.0),
        vec![sgd],
    )?;
    c.add(
        "batch_size",
        &t.batch_size,
        Dom::Fixed(64),
        at_least(1),
        vec![],
    )?;
    c.add(
        "weight_decay",
        &t.weight_decay,
        Dom::Fixed(0.0),
        at_least(0.0),
        vec![],
    )?;
    c.add(
        "max_epochs",
        &t.max_epochs,
        Dom::Fixed(50),
        at_least(1),
        vec![],
    )?;
    c.add("patience", &t.patience, Dom::Fixed(5), at_least(1), vec![])?;
    Ok(())
}
