//! The RON schema of a search-space file and its one-time validation into a [`SearchSpace`].
//!
//! Every field of a family is a domain: `Fixed(v)`, `Range(lo, hi)`, `LogRange(lo, hi)` or
//! `Choice([..])`. The fields of each part and their defaults are the declarations in
//! [`super::params`]; `search_spaces/README.md` lists them (a test keeps the two in step).

use super::model::NetSpace;
use super::params::{self, mlp, DefaultDom, Lit, ParamDecl, When};
use super::ron_tree::{self, Kind, Value};
use super::{Choice, Condition, Distribution, Family, ParamSpec, SearchSpace, SpaceError};
use crate::data::Task;
use crate::objective::Objective;
use ron::extensions::Extensions;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::marker::PhantomData;
use std::sync::OnceLock;

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
    /// Only with the architecture language (read with positions, see [`ModelSpace::Net`]).
    #[serde(default)]
    pub params: Option<IgnoredAny>,
    pub model: ModelSpace,
    #[serde(default)]
    pub train: TrainSpace,
    #[serde(default)]
    pub augment: AugmentSpace,
    /// What the search optimises (`[Score, Latency]`); empty: the score alone.
    #[serde(default)]
    pub objectives: Vec<Objective>,
}

/// A file whose model is written in the architecture language: serde checks everything but
/// `params` and `model`, which [`ron_tree`] reads with their positions.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetFile {
    task: Task,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    params: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<IgnoredAny>,
    #[serde(default)]
    train: TrainSpace,
    #[serde(default)]
    augment: AugmentSpace,
    #[serde(default)]
    objectives: Vec<Objective>,
}

#[derive(Clone, Debug, Deserialize)]
pub enum ModelSpace {
    Mlp(MlpSpace),
    Cnn(CnnSpace),
    /// The architecture language: the `model:` value and the `params:` map, as read with
    /// their positions. A file with `params` and no `model` declares free parameters, for an
    /// objective of the user's own (`nas::study::Study`).
    #[serde(skip)]
    Net(Option<Value>, Option<Value>),
}

/// The fields of one part (`Mlp((..))`, `Cnn((..))`, `train`, `augment`) as written, in the
/// order of the part's declaration table; `None` where a field is left out.
#[derive(Clone, Debug, PartialEq)]
pub struct Part<P> {
    pub written: Vec<Option<Dom<Lit>>>,
    part: PhantomData<P>,
}

impl<P> Default for Part<P> {
    fn default() -> Self {
        Part {
            written: Vec::new(),
            part: PhantomData,
        }
    }
}

impl<P: PartKind> Part<P> {
    /// The domain written for `decl`, a parameter of this part.
    pub fn get(&self, decl: &ParamDecl) -> Option<&Dom<Lit>> {
        let i = P::decls().iter().position(|d| std::ptr::eq(*d, decl))?;
        self.written.get(i)?.as_ref()
    }

    pub fn any_written(&self) -> bool {
        self.written.iter().any(Option::is_some)
    }
}

/// A part of the file: its declaration table and the struct name RON's messages use.
pub trait PartKind {
    const STRUCT: &'static str;
    fn decls() -> &'static [&'static ParamDecl];
    /// The field names, for serde's "expected one of" (which wants a `'static` slice).
    fn names() -> &'static [&'static str];
}

macro_rules! part_kind {
    ($($t:ident: $s:literal => $table:path),* $(,)?) => {$(
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $t;
        impl PartKind for $t {
            const STRUCT: &'static str = $s;
            fn decls() -> &'static [&'static ParamDecl] {
                $table
            }
            fn names() -> &'static [&'static str] {
                static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
                NAMES.get_or_init(|| $table.iter().map(|d| d.name).collect())
            }
        }
    )*};
}
part_kind!(
    MlpPart: "MlpSpace" => params::mlp::PART,
    CnnPart: "CnnSpace" => params::cnn::PART,
    TrainPart: "TrainSpace" => params::train::PART,
    AugmentPart: "AugmentSpace" => params::augment::PART,
);

pub type MlpSpace = Part<MlpPart>;
pub type CnnSpace = Part<CnnPart>;
pub type TrainSpace = Part<TrainPart>;
pub type AugmentSpace = Part<AugmentPart>;

impl<'de, P: PartKind> Deserialize<'de> for Part<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(P::STRUCT, P::names(), PartVisitor(PhantomData::<P>))
    }
}

/// Reads a part as serde's derive would read a struct of `Option<Dom<T>>` fields with
/// `deny_unknown_fields` and `default`, each `T` taken from the declaration.
struct PartVisitor<P>(PhantomData<P>);

impl<'de, P: PartKind> Visitor<'de> for PartVisitor<P> {
    type Value = Part<P>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "struct {}", P::STRUCT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part<P>, A::Error> {
        let decls = P::decls();
        let mut written: Vec<Option<Dom<Lit>>> = vec![None; decls.len()];
        let mut seen = vec![false; decls.len()];
        while let Some(i) = map.next_key_seed(FieldSeed(P::names()))? {
            if seen[i] {
                return Err(de::Error::duplicate_field(decls[i].name));
            }
            seen[i] = true;
            written[i] = map.next_value_seed(DomSeed(decls[i].kind()))?;
        }
        Ok(Part {
            written,
            part: PhantomData,
        })
    }
}

/// A field name, as its index in the part's table.
struct FieldSeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        self.0
            .iter()
            .position(|n| *n == v)
            .ok_or_else(|| E::unknown_field(v, self.0))
    }
}

/// A domain whose values have the type of `kind`'s variant.
struct DomSeed(Lit);

impl<'de> DeserializeSeed<'de> for DomSeed {
    type Value = Option<Dom<Lit>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        fn read<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
            d: D,
            lit: fn(T) -> Lit,
        ) -> Result<Option<Dom<Lit>>, D::Error> {
            Ok(Option::<Dom<T>>::deserialize(d)?.map(|dom| dom.map(lit)))
        }
        match self.0 {
            Lit::Int(_) => read(d, Lit::Int),
            Lit::Float(_) => read(d, Lit::Float),
            Lit::Bool(_) => read(d, Lit::Bool),
            Lit::Activation(_) => read(d, Lit::Activation),
            Lit::Block(_) => read(d, Lit::Block),
            Lit::Downsample(_) => read(d, Lit::Downsample),
            Lit::Optimizer(_) => read(d, Lit::Optimizer),
            Lit::Channels(_) | Lit::Pool(_) => Err(de::Error::custom(
                "channel counts and pool kinds belong to the architecture language",
            )),
        }
    }
}

impl<T> Dom<T> {
    fn map<U>(self, f: impl Fn(T) -> U) -> Dom<U> {
        match self {
            Dom::Fixed(v) => Dom::Fixed(f(v)),
            Dom::Range(a, b) => Dom::Range(f(a), f(b)),
            Dom::LogRange(a, b) => Dom::LogRange(f(a), f(b)),
            Dom::Choice(vs) => Dom::Choice(vs.into_iter().map(f).collect()),
        }
    }
}

impl From<DefaultDom> for Dom<Lit> {
    fn from(d: DefaultDom) -> Dom<Lit> {
        match d {
            DefaultDom::Fixed(v) => Dom::Fixed(v),
            DefaultDom::Range(a, b) => Dom::Range(a, b),
            DefaultDom::Choice(vs) => Dom::Choice(vs.to_vec()),
        }
    }
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
    // The short forms are read by serde as they always were; any other model is the language.
    let parsed = ron_tree::parse(text);
    let tree = parsed.as_ref().ok();
    let model = tree.and_then(|t| t.field("model"));
    let is_net = match model.map(|m| &m.kind) {
        Some(Kind::Call { name, .. }) => !matches!(name.as_str(), "Mlp" | "Cnn" | ""),
        Some(Kind::Ident(_)) => true,
        _ => false,
    };
    // Parameters without a model are free ones, read with the language's reader.
    let free = tree.is_some_and(|t| t.field("params").is_some()) && model.is_none();
    match (tree, model) {
        (Some(tree), model) if is_net || free => {
            let f: NetFile = deserialize(text, file)?;
            Ok(SpaceFile {
                task: f.task,
                data: f.data,
                params: None,
                model: ModelSpace::Net(model.cloned(), tree.field("params").cloned()),
                train: f.train,
                augment: f.augment,
                objectives: f.objectives,
            })
        }
        _ => {
            let f: SpaceFile = match (deserialize(text, file), &parsed) {
                (Ok(f), _) => f,
                // A syntax error with a model in the language: serde, reading the model as a
                // short form, would only say that it is not `Mlp` or `Cnn`; the value tree's
                // reader says what is wrong, where.
                (Err(_), Err(pe)) if !short_form_model(text) => {
                    return Err(SpaceError::Invalid {
                        file: file.to_string(),
                        line: pe.pos.line,
                        col: pe.pos.col,
                        message: pe.message.clone(),
                    });
                }
                (Err(e), _) => return Err(e),
            };
            if f.params.is_some() {
                return Err(SpaceError::at_key(
                    text,
                    file,
                    "params",
                    "`params`: shared parameters belong to a model written in the architecture language, not to `Mlp((..))` or `Cnn((..))`".into(),
                ));
            }
            Ok(f)
        }
    }
}

/// Whether the text after the first `model:` key starts with `Mlp` or `Cnn` (found without the
/// value tree, for files the tree reader rejects).
fn short_form_model(text: &str) -> bool {
    let Some((line, col)) = super::error::find_key(text, "model") else {
        return false;
    };
    let rest: String = text
        .lines()
        .skip(line - 1)
        .collect::<Vec<_>>()
        .join("\n")
        .chars()
        .skip(col - 1 + "model".len())
        .collect();
    let rest = rest.trim_start().trim_start_matches(':').trim_start();
    rest.starts_with("Mlp") || rest.starts_with("Cnn")
}

/// serde's reading of the file, its errors at RON's line and column in our words.
fn deserialize<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, SpaceError> {
    let opts = ron::Options::default().with_default_extension(Extensions::IMPLICIT_SOME);
    opts.from_str::<T>(text).map_err(|e| {
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

/// The distribution of `Range`/`LogRange` for values of `lo`'s type, or why that type has none.
fn range(lo: &Lit, hi: &Lit, log: bool) -> Result<Distribution, String> {
    match (*lo, *hi) {
        (Lit::Int(lo), Lit::Int(hi)) => {
            if lo > hi {
                return Err(format!("empty range: low {lo} is above high {hi}"));
            }
            if log && lo <= 0 {
                return Err(format!(
                    "a log range must stay above 0, but it starts at {lo}"
                ));
            }
            Ok(Distribution::Int {
                low: lo,
                high: hi,
                log,
            })
        }
        (Lit::Float(lo), Lit::Float(hi)) => {
            if !lo.is_finite() || !hi.is_finite() {
                return Err("range bounds must be finite numbers".into());
            }
            if lo > hi {
                return Err(format!("empty range: low {lo} is above high {hi}"));
            }
            if log && lo <= 0.0 {
                return Err(format!(
                    "a log range must stay above 0, but it starts at {lo}"
                ));
            }
            Ok(Distribution::Float {
                low: lo,
                high: hi,
                log,
            })
        }
        (Lit::Bool(_), _) => {
            Err("a true/false parameter takes Fixed(..) or Choice([..]), not a range".into())
        }
        _ => Err("a named option takes Fixed(..) or Choice([..]), not a range".into()),
    }
}

/// The distribution of a domain of `decl`'s values, every value it names checked against
/// `decl` (a `Fixed` value is a one-choice categorical, as journals have always had it).
pub(super) fn dom_dist(dom: &Dom<Lit>, decl: &ParamDecl) -> Result<Distribution, String> {
    let values: Vec<Lit> = match dom {
        Dom::Fixed(v) => vec![*v],
        Dom::Range(a, b) | Dom::LogRange(a, b) => vec![*a, *b],
        Dom::Choice(vs) => vs.clone(),
    };
    let dist = match dom {
        Dom::Fixed(v) => Distribution::Categorical {
            choices: vec![v.choice()],
        },
        Dom::Range(a, b) => range(a, b, false)?,
        Dom::LogRange(a, b) => range(a, b, true)?,
        Dom::Choice(vs) if vs.is_empty() => return Err("Choice needs at least one value".into()),
        Dom::Choice(vs) => Distribution::Categorical {
            choices: vs.iter().map(Lit::choice).collect(),
        },
    };
    for v in &values {
        (decl.check)(v)?;
    }
    if let Some(limit) = &decl.at_most {
        let max = max_int(&dist);
        if max > limit.most {
            return Err((limit.message)(max));
        }
    }
    Ok(dist)
}

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

    /// Converts a domain, checks every value it names against `decl`, and appends it as `key`.
    fn add(
        &mut self,
        key: &str,
        decl: &ParamDecl,
        dom: &Dom<Lit>,
        conditions: Vec<Condition>,
    ) -> Result<Distribution, SpaceError> {
        let dist = dom_dist(dom, decl).map_err(|m| self.err(key, m))?;
        self.params.push(ParamSpec {
            name: key.to_string(),
            dist: dist.clone(),
            conditions,
            default: Some(decl.default),
        });
        Ok(dist)
    }

    /// The condition "`parent` is `is`"; an error when the parent can never take that value and
    /// the dependent parameter `decl` is written in the file, where it would go unused.
    fn when(&self, decl: &ParamDecl, when: &When, written: bool) -> Result<Condition, SpaceError> {
        let parent = when.parent.name;
        let is = when.is.choice();
        let choices: Vec<usize> = match self.param(parent).map(|p| &p.dist) {
            Some(Distribution::Categorical { choices }) => choices
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == is)
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        };
        if choices.is_empty() && written && when.unused_is_error {
            return Err(self.err(
                decl.name,
                format!("only applies when `{parent}` is {is}, but `{parent}` never takes {is}"),
            ));
        }
        Ok(Condition::OneOf {
            param: parent.to_string(),
            choices,
        })
    }

    fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Adds every parameter of a part in table order, except that a conditional parameter
    /// written before its parent follows the parent (samplers need parents first).
    fn part<P: PartKind>(&mut self, part: &Part<P>) -> Result<(), SpaceError> {
        let mut waiting: Vec<&'static ParamDecl> = Vec::new();
        for &decl in P::decls() {
            let parent_missing = decl
                .when
                .is_some_and(|w| self.param(w.parent.name).is_none());
            if parent_missing {
                waiting.push(decl);
                continue;
            }
            self.declared(part, decl)?;
            let (ready, rest): (Vec<_>, Vec<_>) = waiting
                .into_iter()
                .partition(|w| w.when.is_some_and(|w| std::ptr::eq(w.parent, decl)));
            waiting = rest;
            for w in ready {
                self.declared(part, w)?;
            }
        }
        Ok(())
    }

    /// Adds `decl` with the domain written in `part` or its default.
    fn declared<P: PartKind>(
        &mut self,
        part: &Part<P>,
        decl: &'static ParamDecl,
    ) -> Result<(), SpaceError> {
        let written = part.get(decl);
        let dom = written.cloned().unwrap_or_else(|| decl.default.into());
        let conditions = match decl.when {
            Some(w) => vec![self.when(decl, w, written.is_some())?],
            None => Vec::new(),
        };
        self.add(decl.name, decl, &dom, conditions)?;
        if std::ptr::eq(decl, &mlp::WIDTH) {
            self.layer_widths(&dom)?;
        }
        Ok(())
    }

    /// `width_1..width_D` for the deepest network, when widths may be drawn per layer; each
    /// shares the domain of `width` and exists while the network is at least that deep.
    fn layer_widths(&mut self, width: &Dom<Lit>) -> Result<(), SpaceError> {
        let per_layer = When {
            parent: &mlp::PER_LAYER_WIDTH,
            is: Lit::Bool(true),
            unused_is_error: false,
            otherwise: Lit::Bool(false),
        };
        let per_layer = self.when(&mlp::PER_LAYER_WIDTH, &per_layer, false)?;
        if matches!(&per_layer, Condition::OneOf { choices, .. } if choices.is_empty()) {
            return Ok(());
        }
        let max_depth = self.param(mlp::DEPTH.name).map_or(0, |p| max_int(&p.dist));
        for i in 1..=max_depth {
            let conds = vec![
                per_layer.clone(),
                Condition::AtLeast {
                    param: mlp::DEPTH.name.into(),
                    min: i,
                },
            ];
            self.add(&mlp::layer_width(i), &mlp::WIDTH, width, conds)?;
        }
        Ok(())
    }
}

pub(super) fn max_int(dist: &Distribution) -> i64 {
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

impl SpaceFile {
    /// Validates the file once into a [`SearchSpace`]; nothing downstream re-checks it.
    pub fn check(&self, text: &str, name: &str, file: &str) -> Result<SearchSpace, SpaceError> {
        let mut c = Checker {
            text,
            file,
            params: Vec::new(),
        };
        let mut net = None;
        let family = match &self.model {
            ModelSpace::Mlp(m) => {
                c.part(m)?;
                Family::Mlp
            }
            ModelSpace::Cnn(m) => {
                c.part(m)?;
                Family::Cnn
            }
            ModelSpace::Net(model, params) => {
                let (n, specs) = NetSpace::read(model.as_ref(), params.as_ref(), file)?;
                c.params = specs;
                net = Some(std::sync::Arc::new(n));
                Family::Net
            }
        };
        let n_model = c.params.len();
        // Free parameters alone (no model): training settings only where the file writes them.
        let free = net.as_ref().is_some_and(|n| !n.has_model());
        if !free || self.train.any_written() {
            c.part(&self.train)?;
        }
        if free {
            if self.augment.any_written() {
                c.part(&self.augment)?;
            }
        } else if family != Family::Mlp {
            c.part(&self.augment)?;
        } else if self.augment.any_written() {
            return Err(c.err(
                "augment",
                "data augmentation applies to image-shaped inputs (the Cnn family or the architecture language)".into(),
            ));
        }
        // A model parameter named like a training setting would share its journal entry.
        for p in &c.params[..n_model] {
            if c.params[n_model..].iter().any(|q| q.name == p.name) {
                let message = format!(
                    "`{}` is also a training or augmentation setting; name it otherwise",
                    p.name
                );
                // Point at the model's declaration, not at the setting (which may be unwritten).
                return Err(match net.as_ref().and_then(|n| n.origin(&p.name)) {
                    Some(pos) => SpaceError::Invalid {
                        file: file.to_string(),
                        line: pos.line,
                        col: pos.col,
                        message,
                    },
                    None => c.err(&p.name, message),
                });
            }
        }
        crate::objective::check(&self.objectives).map_err(|m| c.err("objectives", m))?;
        Ok(SearchSpace {
            name: name.to_string(),
            task: self.task,
            data: self.data.clone(),
            family,
            net,
            params: c.params,
            source: text.to_string(),
            objectives: self.objectives.clone(),
        })
    }
}
