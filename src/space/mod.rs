//! Search spaces: the RON schema, its validation and the sampling domains.
//!
//! A RON file is parsed into [`schema::SpaceFile`] (unchecked), then validated once into a
//! [`SearchSpace`]: a flat, ordered list of named parameters with their distributions and
//! activation conditions. Samplers only ever see the checked form; [`decode`] turns a sampled
//! [`Config`] into the architecture and training settings that the trainer builds.

pub mod arch;
pub mod decode;
mod error;
mod expand;
pub mod model;
pub mod params;
pub mod ron_tree;
pub mod schema;
mod size;

pub use decode::{
    Activation, Architecture, BlockKind, Candidate, CnnArch, Downsample, MlpArch, OptimizerKind,
    TrainSettings,
};
pub use error::SpaceError;
pub use size::SpaceSize;

use crate::data::Task;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// One categorical choice, kept as the user wrote it so it can be shown and journalled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choice {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Bool(b) => write!(f, "{b}"),
            Choice::Int(i) => write!(f, "{i}"),
            Choice::Float(x) => write!(f, "{x}"),
            Choice::Str(s) => f.write_str(s),
        }
    }
}

/// The distribution a parameter is drawn from (the same three kinds as Optuna's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Distribution {
    Int { low: i64, high: i64, log: bool },
    Float { low: f64, high: f64, log: bool },
    Categorical { choices: Vec<Choice> },
}

impl Distribution {
    /// Whether `v` is a value this distribution can produce.
    pub fn contains(&self, v: &ParamValue) -> bool {
        match (self, v) {
            (Distribution::Int { low, high, .. }, ParamValue::Int(x)) => low <= x && x <= high,
            (Distribution::Float { low, high, .. }, ParamValue::Float(x)) => {
                x.is_finite() && low <= x && x <= high
            }
            (Distribution::Categorical { choices }, ParamValue::Cat(i)) => *i < choices.len(),
            _ => false,
        }
    }

    /// Number of distinct values, where finite (used by grid search).
    pub fn cardinality(&self) -> Option<u64> {
        match self {
            Distribution::Int { low, high, .. } => Some((high - low + 1) as u64),
            Distribution::Float { low, high, .. } => (low == high).then_some(1),
            Distribution::Categorical { choices } => Some(choices.len() as u64),
        }
    }
}

/// A number shortened for tables: four significant digits, `0.2778`, `12.5`, `1.574e-3`.
pub fn short_float(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() {
        return x.to_string();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A count with its thousands separated: `12,345,678`.
pub fn thousands(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A sampled value: integers and floats as such, categorical ones as an index into the choices.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Cat(usize),
}

/// When a parameter exists: every condition must hold for the values sampled before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    /// The categorical parameter `param` took one of these choice indices.
    OneOf { param: String, choices: Vec<usize> },
    /// The integer parameter `param` is at least `min`.
    AtLeast { param: String, min: i64 },
}

impl Condition {
    pub fn parent(&self) -> &str {
        match self {
            Condition::OneOf { param, .. } | Condition::AtLeast { param, .. } => param,
        }
    }

    /// Evaluates the condition against the values sampled so far; an absent parent means false.
    pub fn holds(&self, config: &Config) -> bool {
        match self {
            Condition::OneOf { param, choices } => {
                matches!(config.get(param), Some(ParamValue::Cat(i)) if choices.contains(i))
            }
            Condition::AtLeast { param, min } => {
                matches!(config.get(param), Some(ParamValue::Int(v)) if *v >= *min)
            }
        }
    }
}

/// One searchable parameter of a checked space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub dist: Distribution,
    pub conditions: Vec<Condition>,
    /// The domain of the field it sets when the file leaves the field out; none for a choice
    /// between parts or a free `params` entry.
    #[serde(skip)]
    pub default: Option<params::DefaultDom>,
}

impl ParamSpec {
    pub fn is_active(&self, partial: &Config) -> bool {
        self.conditions.iter().all(|c| c.holds(partial))
    }
}

/// A sampled configuration: parameter name to value, for the active parameters only.
pub type Config = BTreeMap<String, ParamValue>;

/// Which model family a space describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    Mlp,
    Cnn,
    /// A model written in the architecture language ([`model`]).
    Net,
}

/// A validated search space. Parameters are ordered so that every parent precedes its children.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    /// The space's name (the file stem), used as the default study name.
    pub name: String,
    pub task: Task,
    /// The data set named in the file, if any.
    pub data: Option<String>,
    pub family: Family,
    /// The model of a space written in the architecture language.
    #[serde(skip)]
    pub net: Option<std::sync::Arc<model::NetSpace>>,
    pub params: Vec<ParamSpec>,
    /// The RON text the space was read from, kept so a study can refuse a changed space.
    pub source: String,
    /// The objectives the file names (`objectives: [Score, Latency]`); empty: the score alone.
    #[serde(default)]
    pub objectives: Vec<crate::objective::Objective>,
}

impl SearchSpace {
    /// Reads and validates a RON file.
    pub fn from_file(path: &Path) -> Result<SearchSpace, SpaceError> {
        let bytes = std::fs::read(path).map_err(|e| SpaceError::Io {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "study".into());
        Self::from_bytes_named(&bytes, &name, &path.display().to_string())
    }

    /// Parses and validates the bytes of a RON file; text that is not UTF-8 is an error at the
    /// line and column of its first bad byte (which `read_to_string` would not say).
    pub fn from_bytes_named(
        bytes: &[u8],
        name: &str,
        file: &str,
    ) -> Result<SearchSpace, SpaceError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let good = &bytes[..e.valid_up_to()];
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // Counted in characters, as RON's own positions are.
            let col = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
            SpaceError::Invalid {
                file: file.to_string(),
                line: good.iter().filter(|&&b| b == b'\n').count() + 1,
                col,
                message: "not valid UTF-8 text (save the file as UTF-8)".into(),
            }
        })?;
        Self::from_str_named(text, name, file)
    }

    /// Parses and validates RON text; `file` is only used in error messages.
    pub fn from_str_named(text: &str, name: &str, file: &str) -> Result<SearchSpace, SpaceError> {
        let raw = schema::parse(text, file)?;
        raw.check(text, name, file)
    }

    /// The largest value `max_epochs` can take (the budget unit of schedulers).
    pub fn max_epochs(&self) -> usize {
        let high = match self.param("max_epochs").map(|p| &p.dist) {
            Some(Distribution::Int { high, .. }) => *high,
            Some(Distribution::Categorical { choices }) => choices
                .iter()
                .filter_map(|c| match c {
                    Choice::Int(i) => Some(*i),
                    _ => None,
                })
                .max()
                .unwrap_or(1),
            _ => 1,
        };
        high.max(1) as usize
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Whether `config` holds exactly the active parameters, each inside its distribution.
    pub fn validate_config(&self, config: &Config) -> Result<(), String> {
        let mut partial = Config::new();
        for p in &self.params {
            let active = p.is_active(&partial);
            match (active, config.get(&p.name)) {
                (true, Some(v)) if p.dist.contains(v) => {
                    partial.insert(p.name.clone(), *v);
                }
                (true, Some(v)) => return Err(format!("{} = {v:?} is outside its domain", p.name)),
                (true, None) => return Err(format!("{} is active but missing", p.name)),
                (false, Some(_)) => return Err(format!("{} is set but inactive", p.name)),
                (false, None) => {}
            }
        }
        if let Some(extra) = config.keys().find(|k| self.param(k).is_none()) {
            return Err(format!("{extra} is not a parameter of this space"));
        }
        Ok(())
    }

    /// Human-readable value of a parameter in a configuration.
    pub fn display_value(&self, name: &str, v: &ParamValue) -> String {
        match (self.param(name).map(|p| &p.dist), v) {
            (Some(Distribution::Categorical { choices }), ParamValue::Cat(i)) => choices
                .get(*i)
                .map(|c| c.to_string())
                .unwrap_or_else(|| format!("#{i}")),
            (_, ParamValue::Int(i)) => i.to_string(),
            (_, ParamValue::Float(x)) => format!("{x:.4e}"),
            (_, ParamValue::Cat(i)) => format!("#{i}"),
        }
    }

    /// The configuration as a name -> JSON value map (choices by label), for output files.
    pub fn config_json(&self, config: &Config) -> serde_json::Map<String, serde_json::Value> {
        config
            .iter()
            .map(|(k, v)| {
                let j = match (self.param(k).map(|p| &p.dist), v) {
                    (Some(Distribution::Categorical { choices }), ParamValue::Cat(i)) => {
                        match choices.get(*i) {
                            Some(c) => serde_json::to_value(c).unwrap_or(serde_json::Value::Null),
                            None => serde_json::Value::Null,
                        }
                    }
                    (_, ParamValue::Int(i)) => (*i).into(),
                    (_, ParamValue::Float(x)) => serde_json::Number::from_f64(*x)
                        .map(serde_json::Value::Number)
                        .unwrap_or(serde_json::Value::Null),
                    (_, ParamValue::Cat(i)) => (*i).into(),
                };
                (k.clone(), j)
            })
            .collect()
    }
}
