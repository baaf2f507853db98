//! The architecture language: parts that compose, read from a space file's `model:` and
//! `params:`, checked into parameters with conditions, and resolved per configuration into a
//! [`Node`] tree.
//!
//! Layer parts come from `src/parts`; the structure parts are `Sequential([..])`,
//! `Repeat(times, body)`, `OneOf([..])`, `Residual(body)`, `Dense(body, layers)`,
//! `Cell(nodes, ops)` and `Named("name", part)`. A field takes a value, a domain (`Fixed`, `Range`,
//! `LogRange`, `Choice`) or `Param("name")`, a shared entry of `params: {..}`; an entry that is a
//! part is a template, used where a part goes. Parameter names are paths in the tree
//! (`stage.1.conv2.kernel`), or the shared entry's name.

use super::arch::{Edge, Node};
use super::params::{
    any, int_at_least_0, int_at_least_1, plain, DefaultDom, Limit, Lit, ParamDecl,
};
use super::ron_tree::{Args, Kind, Pos, Value};
use super::schema::{dom_dist, Dom};
use super::{Choice, Condition, Config, Distribution, ParamSpec, ParamValue, SpaceError};
use crate::parts::{self, Part as LayerPart};
use std::fmt;

/// `Repeat(times, ..)`: how many copies of the body, each with its own parameters.
pub static REPEAT_TIMES: ParamDecl = ParamDecl {
    at_most: Some(Limit {
        most: 64,
        message: |m| format!("{m} repetitions is more than 64"),
    }),
    ..plain("times", DefaultDom::Fixed(Lit::Int(1)), int_at_least_0)
};
/// `Dense(.., layers)`: how many layers a dense block stacks.
pub static DENSE_LAYERS: ParamDecl = ParamDecl {
    at_most: Some(Limit {
        most: 64,
        message: |m| format!("{m} dense layers is more than 64"),
    }),
    ..plain("layers", DefaultDom::Fixed(Lit::Int(2)), int_at_least_1)
};
/// `Cell(nodes, ..)`: nodes of the DAG, the input included.
pub static CELL_NODES: ParamDecl = plain("nodes", DefaultDom::Fixed(Lit::Int(4)), cell_nodes);

/// The types of free parameters (a file with `params` and no `model`).
static FREE_INT: ParamDecl = plain("value", DefaultDom::Fixed(Lit::Int(0)), any);
static FREE_FLOAT: ParamDecl = plain("value", DefaultDom::Fixed(Lit::Float(0.0)), any);
static FREE_BOOL: ParamDecl = plain("value", DefaultDom::Fixed(Lit::Bool(false)), any);

fn cell_nodes(v: &Lit) -> Result<(), String> {
    match v {
        Lit::Int(n) if !(2..=8).contains(n) => Err(format!(
            "a cell has 2 to 8 nodes (the input is one), not {n}"
        )),
        _ => Ok(()),
    }
}

/// The structure parts and what their arguments are, in positional order.
const STRUCTURE: &[(&str, &[&str])] = &[
    ("Sequential", &["parts"]),
    ("Repeat", &["times", "body"]),
    ("OneOf", &["options", "choice"]),
    ("Residual", &["body"]),
    ("Dense", &["body", "layers"]),
    ("Cell", &["nodes", "ops"]),
    ("Named", &["name", "part"]),
];

/// A layer part, compared by name.
#[derive(Clone, Copy)]
struct PartRef(&'static LayerPart);

impl PartialEq for PartRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl fmt::Debug for PartRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

/// A field's value as written.
#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Const(Lit),
    Dom(Dom<Lit>),
    Shared(String),
}

#[derive(Clone, Debug)]
struct Field {
    decl: &'static ParamDecl,
    expr: Expr,
    pos: Pos,
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.decl, other.decl) && self.expr == other.expr && self.pos == other.pos
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Part {
    pos: Pos,
    ast: Ast,
}

#[derive(Clone, Debug, PartialEq)]
enum Ast {
    Layer {
        part: PartRef,
        fields: Vec<Field>,
    },
    Sequential(Vec<Part>),
    Repeat {
        times: Field,
        body: Box<Part>,
    },
    OneOf {
        options: Vec<(String, Part)>,
        choice: Option<(String, Pos)>,
    },
    Residual(Box<Part>),
    Dense {
        body: Box<Part>,
        layers: Field,
    },
    Cell {
        nodes: usize,
        ops: Vec<(String, Part)>,
    },
    Named(String, Box<Part>),
    Template(String),
}

/// How a shared parameter is used, fixed by its first use.
#[derive(Clone, Debug, PartialEq)]
enum Shared {
    /// A field value of the type of `kind`: a constant or a domain.
    Value { kind: Lit, expr: Expr },
    /// The choice of a `OneOf`: option labels.
    Labels(Vec<Choice>),
}

/// The checked model of a space: its tree, its templates and its shared parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpace {
    /// Whether the file has a `model` (without one, `params` are free parameters).
    has_model: bool,
    root: Part,
    templates: Vec<(String, Part)>,
    shared: Vec<(String, Shared)>,
    /// Where each parameter is declared: its field, `OneOf`, `Cell` or `params` entry.
    origins: Vec<(String, Pos)>,
}

fn snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.extend(c.to_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

impl Part {
    /// The name a part gets in a path: its `Named` name, template name or kind.
    fn kind(&self) -> String {
        match &self.ast {
            Ast::Layer { part, .. } => snake(part.0.name),
            Ast::Sequential(_) => "sequential".into(),
            Ast::Repeat { .. } => "repeat".into(),
            Ast::OneOf { .. } => "one_of".into(),
            Ast::Residual(_) => "residual".into(),
            Ast::Dense { .. } => "dense".into(),
            Ast::Cell { .. } => "cell".into(),
            Ast::Named(n, _) | Ast::Template(n) => n.clone(),
        }
    }
}

/// Path segments of the parts of a sequence: `Named` names as written, others their kind
/// numbered among siblings of that kind (`conv1`, `conv2`, `residual1`).
fn segments(parts: &[Part]) -> Vec<String> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    parts
        .iter()
        .map(|p| match &p.ast {
            Ast::Named(n, _) => n.clone(),
            _ => {
                let k = p.kind();
                let n = match seen.iter_mut().find(|(s, _)| *s == k) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        seen.push((k.clone(), 1));
                        1
                    }
                };
                format!("{k}{n}")
            }
        })
        .collect()
}

/// Option labels: `Named` names, else kinds, numbered when a kind repeats.
fn labels(parts: &[Part]) -> Vec<String> {
    let kinds: Vec<String> = parts.iter().map(Part::kind).collect();
    let segs = segments(parts);
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| match &p.ast {
            Ast::Named(n, _) => n.clone(),
            _ if kinds.iter().filter(|k| **k == kinds[i]).count() == 1 => kinds[i].clone(),
            _ => segs[i].clone(),
        })
        .collect()
}

/// Reads the language from the spanned RON tree, reporting errors at their positions.
struct Reader<'a> {
    file: &'a str,
    /// Names of `params` entries that are parts (templates) and that are domains.
    templates: Vec<String>,
    domains: Vec<String>,
}

impl Reader<'_> {
    fn err(&self, pos: Pos, message: impl Into<String>) -> SpaceError {
        SpaceError::Invalid {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }

    /// Arguments by slot: positional in order, or by name; unknown, repeated or extra ones are
    /// errors. `what` names the part in messages.
    fn slots<'v>(
        &self,
        what: &str,
        args: &'v Args,
        names: &[&str],
    ) -> Result<Vec<Option<(Pos, &'v Value)>>, SpaceError> {
        let mut out: Vec<Option<(Pos, &Value)>> = vec![None; names.len()];
        match args {
            Args::Positional(vs) => {
                if vs.len() > names.len() {
                    return Err(self.err(
                        vs[names.len()].pos,
                        format!(
                            "`{what}` takes at most {} argument{} ({}), not {}",
                            names.len(),
                            if names.len() == 1 { "" } else { "s" },
                            names.join(", "),
                            vs.len()
                        ),
                    ));
                }
                for (slot, v) in out.iter_mut().zip(vs) {
                    *slot = Some((v.pos, v));
                }
            }
            Args::Named(fs) => {
                for (k, kpos, v) in fs {
                    let Some(i) = names.iter().position(|n| n == k) else {
                        let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                        return Err(self.err(
                            *kpos,
                            if names.is_empty() {
                                format!("unknown field `{k}`: `{what}` has no fields")
                            } else {
                                format!(
                                    "unknown field `{k}` of `{what}`; expected one of {}",
                                    list.join(", ")
                                )
                            },
                        ));
                    };
                    if out[i].is_some() {
                        return Err(self.err(*kpos, format!("`{k}` is written twice")));
                    }
                    out[i] = Some((*kpos, v));
                }
            }
        }
        Ok(out)
    }

    fn required<'v>(
        &self,
        what: &str,
        pos: Pos,
        slot: Option<(Pos, &'v Value)>,
        name: &str,
    ) -> Result<&'v Value, SpaceError> {
        slot.map(|(_, v)| v)
            .ok_or_else(|| self.err(pos, format!("`{what}` needs its `{name}`")))
    }

    fn list<'v>(&self, v: &'v Value, what: &str) -> Result<&'v [Value], SpaceError> {
        match &v.kind {
            Kind::List(items) => Ok(items),
            _ => Err(self.err(
                v.pos,
                format!("{what} is a list `[..]`, not {}", v.describe()),
            )),
        }
    }

    fn string(&self, v: &Value, what: &str) -> Result<String, SpaceError> {
        match &v.kind {
            Kind::Str(s) if !s.is_empty() && !s.contains(['.', ' ']) => Ok(s.clone()),
            Kind::Str(s) => Err(self.err(
                v.pos,
                format!("{what} \"{s}\" must be a non-empty name without dots or spaces"),
            )),
            _ => Err(self.err(
                v.pos,
                format!("{what} is a string \"..\", not {}", v.describe()),
            )),
        }
    }

    fn part(&self, v: &Value) -> Result<Part, SpaceError> {
        let (name, args) = match &v.kind {
            Kind::Ident(n) => (n.as_str(), None),
            Kind::Call { name, args } if !name.is_empty() => (name.as_str(), Some(args)),
            _ => {
                return Err(self.err(
                    v.pos,
                    format!(
                        "expected a part such as `Conv(..)` or `Sequential([..])`, found {}",
                        v.describe()
                    ),
                ))
            }
        };
        let empty = Args::Positional(Vec::new());
        let args = args.unwrap_or(&empty);
        let ast = match STRUCTURE.iter().find(|(n, _)| *n == name) {
            Some((_, names)) => {
                if matches!(v.kind, Kind::Ident(_)) {
                    return Err(self.err(
                        v.pos,
                        format!("`{name}` needs arguments: `{name}({})`", names.join(", ")),
                    ));
                }
                self.structure(name, v.pos, args, names)?
            }
            None if name == "Param" => {
                let (n, pos) = self.param_name(v.pos, args)?;
                if self.domains.contains(&n) {
                    return Err(self.err(
                        pos,
                        format!("`{n}` in `params` is a domain; a part is expected here"),
                    ));
                }
                if !self.templates.contains(&n) {
                    return Err(self.err(pos, self.no_such_param(&n)));
                }
                Ast::Template(n)
            }
            None => {
                let Some(part) = parts::find(name) else {
                    let mut known: Vec<&str> = parts::PARTS.iter().map(|p| p.name).collect();
                    known.extend(STRUCTURE.iter().map(|(n, _)| *n));
                    return Err(self.err(
                        v.pos,
                        format!("unknown part `{name}`; the parts are {}", known.join(", ")),
                    ));
                };
                let decls = part.fields;
                let names: Vec<&str> = decls.iter().map(|d| d.name).collect();
                let s = self.slots(name, args, &names)?;
                let mut fields = Vec::new();
                for (decl, slot) in decls.iter().zip(s) {
                    if let Some((_, val)) = slot {
                        fields.push(Field {
                            decl,
                            expr: self.expr(val, decl)?,
                            pos: val.pos,
                        });
                    }
                }
                Ast::Layer {
                    part: PartRef(part),
                    fields,
                }
            }
        };
        Ok(Part { pos: v.pos, ast })
    }

    /// The name in `Param("name")` (whose arguments are `args`) and where it is written.
    fn param_name(&self, pos: Pos, args: &Args) -> Result<(String, Pos), SpaceError> {
        let a = self.slots("Param", args, &["name"])?;
        let r = self.required("Param", pos, a[0], "name")?;
        Ok((self.string(r, "a parameter name")?, r.pos))
    }

    fn no_such_param(&self, n: &str) -> String {
        let mut all: Vec<String> = self.domains.clone();
        all.extend(self.templates.iter().cloned());
        if all.is_empty() {
            format!("no parameter `{n}`: the file has no `params: {{..}}`")
        } else {
            format!(
                "no parameter `{n}` in `params: {{..}}` (it has {})",
                all.iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }

    fn structure(
        &self,
        name: &str,
        pos: Pos,
        args: &Args,
        names: &[&str],
    ) -> Result<Ast, SpaceError> {
        let s = self.slots(name, args, names)?;
        let req = |i: usize| self.required(name, pos, s[i], names[i]);
        let count = |i: usize, decl: &'static ParamDecl| -> Result<Field, SpaceError> {
            match s[i] {
                Some((_, v)) => Ok(Field {
                    decl,
                    expr: self.expr(v, decl)?,
                    pos: v.pos,
                }),
                None => Ok(Field {
                    decl,
                    expr: Expr::Const(decl.default.first()),
                    pos,
                }),
            }
        };
        Ok(match name {
            "Sequential" => {
                let items = self.list(req(0)?, "`Sequential`'s argument")?;
                let parts = items
                    .iter()
                    .map(|v| self.part(v))
                    .collect::<Result<Vec<_>, _>>()?;
                self.unique_names(&parts)?;
                Ast::Sequential(parts)
            }
            "Repeat" => Ast::Repeat {
                times: count(0, &REPEAT_TIMES)?,
                body: Box::new(self.part(req(1)?)?),
            },
            "Dense" => Ast::Dense {
                body: Box::new(self.part(req(0)?)?),
                layers: count(1, &DENSE_LAYERS)?,
            },
            "Residual" => Ast::Residual(Box::new(self.part(req(0)?)?)),
            "Named" => {
                let n = self.string(req(0)?, "a part's name")?;
                Ast::Named(n, Box::new(self.part(req(1)?)?))
            }
            "OneOf" => {
                let options = self.options(req(0)?, "`OneOf`'s options")?;
                let choice = match s[1] {
                    None => None,
                    Some((_, v)) => match &v.kind {
                        Kind::Call { name, args } if name == "Param" => {
                            let (n, pos) = self.param_name(v.pos, args)?;
                            if !self.domains.contains(&n) {
                                return Err(self.err(pos, self.no_such_param(&n)));
                            }
                            Some((n, pos))
                        }
                        _ => {
                            return Err(self.err(
                                v.pos,
                                format!(
                                    "a `OneOf`'s `choice` is `Param(\"name\")` of a shared choice of option labels, not {}",
                                    v.describe()
                                ),
                            ))
                        }
                    },
                };
                Ast::OneOf { options, choice }
            }
            "Cell" => {
                let nodes = count(0, &CELL_NODES)?;
                let Expr::Const(Lit::Int(n)) = nodes.expr else {
                    return Err(self.err(
                        nodes.pos,
                        "a cell's `nodes` is a fixed number (its edges are the searched part)",
                    ));
                };
                Ast::Cell {
                    nodes: n as usize,
                    ops: self.options(req(1)?, "a cell's `ops`")?,
                }
            }
            _ => unreachable!("every structure part is read"),
        })
    }

    /// A non-empty list of parts, each with its label.
    fn options(&self, v: &Value, what: &str) -> Result<Vec<(String, Part)>, SpaceError> {
        let items = self.list(v, what)?;
        if items.is_empty() {
            return Err(self.err(v.pos, format!("{what} need at least one part")));
        }
        let parts = items
            .iter()
            .map(|v| self.part(v))
            .collect::<Result<Vec<_>, _>>()?;
        self.unique_names(&parts)?;
        Ok(labels(&parts).into_iter().zip(parts).collect())
    }

    fn unique_names(&self, parts: &[Part]) -> Result<(), SpaceError> {
        for (i, p) in parts.iter().enumerate() {
            if let Ast::Named(n, _) = &p.ast {
                // Reported at the second of two `Named` parts, or at the `Named` part whose name
                // is also a numbered sibling's (`conv1`).
                let segs = segments(parts);
                let clash = parts[..i]
                    .iter()
                    .any(|q| matches!(&q.ast, Ast::Named(m, _) if m == n))
                    || segs
                        .iter()
                        .enumerate()
                        .any(|(j, s)| j != i && s == n && !matches!(parts[j].ast, Ast::Named(..)));
                if clash {
                    return Err(self.err(
                        p.pos,
                        format!("two parts side by side are both called `{n}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A field's value: a literal, `Fixed`/`Range`/`LogRange`/`Choice`, or `Param("name")`.
    fn expr(&self, v: &Value, decl: &'static ParamDecl) -> Result<Expr, SpaceError> {
        if let Kind::Call { name, args } = &v.kind {
            if name == "Param" {
                let (n, pos) = self.param_name(v.pos, args)?;
                if self.templates.contains(&n) {
                    return Err(self.err(
                        pos,
                        format!("`{n}` in `params` is a part; `{}` takes a value", decl.name),
                    ));
                }
                if !self.domains.contains(&n) {
                    return Err(self.err(pos, self.no_such_param(&n)));
                }
                return Ok(Expr::Shared(n));
            }
        }
        self.domain(v, decl)
    }

    /// A domain or a bare value of `decl`'s type, its values checked.
    fn domain(&self, v: &Value, decl: &ParamDecl) -> Result<Expr, SpaceError> {
        let at = |pos: Pos, m: String| self.err(pos, format!("`{}`: {m}", decl.name));
        let lit = |v: &Value| -> Result<Lit, SpaceError> {
            let kind = decl.kind();
            let l = match (&kind, &v.kind) {
                (Lit::Int(_), Kind::Int(i)) => Some(Lit::Int(*i)),
                (Lit::Float(_), Kind::Int(i)) => Some(Lit::Float(*i as f64)),
                (Lit::Float(_), Kind::Float(x)) => Some(Lit::Float(*x)),
                (Lit::Bool(_), Kind::Bool(b)) => Some(Lit::Bool(*b)),
                (Lit::Channels(_), Kind::Int(i)) => {
                    Some(Lit::Channels(super::params::Channels::Count(*i)))
                }
                (_, Kind::Ident(n)) => kind.named(n),
                _ => None,
            };
            let l = l.ok_or_else(|| {
                at(
                    v.pos,
                    format!("expected {}, found {}", kind.expected(), v.describe()),
                )
            })?;
            (decl.check)(&l).map_err(|m| at(v.pos, m))?;
            // A bound on counts holds for constants too, not only for searched domains.
            if let (Some(limit), Lit::Int(n)) = (&decl.at_most, l) {
                if n > limit.most {
                    return Err(at(v.pos, (limit.message)(n)));
                }
            }
            Ok(l)
        };
        let dom_args = |name: &str, args: &Args, n: usize| -> Result<Vec<Lit>, SpaceError> {
            match args {
                Args::Positional(vs) if vs.len() == n => vs.iter().map(lit).collect(),
                _ => Err(at(
                    v.pos,
                    format!("`{name}` takes {n} value{}", if n == 1 { "" } else { "s" }),
                )),
            }
        };
        let dom = match &v.kind {
            Kind::Call { name, args } => match name.as_str() {
                "Fixed" => return Ok(Expr::Const(dom_args(name, args, 1)?[0])),
                "Range" | "LogRange" => {
                    let ab = dom_args(name, args, 2)?;
                    if name == "Range" {
                        Dom::Range(ab[0], ab[1])
                    } else {
                        Dom::LogRange(ab[0], ab[1])
                    }
                }
                "Choice" => match args {
                    Args::Positional(vs) if vs.len() == 1 => {
                        let items = self.list(&vs[0], "`Choice`'s argument")?;
                        Dom::Choice(items.iter().map(lit).collect::<Result<_, _>>()?)
                    }
                    _ => return Err(at(v.pos, "`Choice` takes one list `[..]`".into())),
                },
                _ => {
                    return Err(at(
                        v.pos,
                        format!(
                            "expected a value, `Fixed(..)`, `Range(..)`, `LogRange(..)`, `Choice([..])` or `Param(\"..\")`, found {}",
                            v.describe()
                        ),
                    ))
                }
            },
            _ => return Ok(Expr::Const(lit(v)?)),
        };
        dom_dist(&dom, decl).map_err(|m| at(v.pos, m))?;
        Ok(Expr::Dom(dom))
    }
}

/// Whether a `params` entry is a part (a template) rather than a domain.
fn is_part(v: &Value) -> bool {
    match &v.kind {
        Kind::Call { name, .. } => !matches!(
            name.as_str(),
            "Fixed" | "Range" | "LogRange" | "Choice" | ""
        ),
        Kind::Ident(n) => parts::find(n).is_some(),
        _ => false,
    }
}

/// Walks the tree once to declare every parameter with its conditions.
struct Declarer<'a> {
    net: &'a NetSpace,
    raw: &'a [(String, Pos, Value)],
    reader: &'a Reader<'a>,
    out: Vec<Entry>,
    /// The conditions of each use of each shared parameter.
    uses: Vec<(String, Vec<Vec<Condition>>)>,
    shared: Vec<(String, Shared)>,
    stack: Vec<String>,
    origins: Vec<(String, Pos)>,
}

enum Entry {
    Local(ParamSpec),
    Shared(String, Distribution),
}

impl Declarer<'_> {
    fn local(
        &mut self,
        name: String,
        decl: &ParamDecl,
        dom: &Dom<Lit>,
        conds: &[Condition],
        pos: Pos,
    ) -> Result<Distribution, SpaceError> {
        let dist = dom_dist(dom, decl).map_err(|m| self.reader.err(pos, m))?;
        self.origins.push((name.clone(), pos));
        self.out.push(Entry::Local(ParamSpec {
            name,
            dist: dist.clone(),
            conditions: conds.to_vec(),
            default: Some(decl.default),
        }));
        Ok(dist)
    }

    /// Records a use of shared parameter `name` as a value of `decl`; returns its distribution
    /// (`None` when it is a constant).
    fn use_value(
        &mut self,
        name: &str,
        decl: &'static ParamDecl,
        conds: &[Condition],
        pos: Pos,
    ) -> Result<Option<Distribution>, SpaceError> {
        let kind = decl.kind();
        let expr = match self.shared.iter().find(|(n, _)| n == name) {
            Some((_, Shared::Value { kind: k, expr })) => {
                if !k.same_kind(&kind) {
                    return Err(self.reader.err(
                        pos,
                        format!(
                            "`{name}` is used here as `{}` ({}) but earlier as a value of another type ({})",
                            decl.name,
                            kind.expected(),
                            k.expected()
                        ),
                    ));
                }
                expr.clone()
            }
            Some((_, Shared::Labels(_))) => {
                return Err(self.reader.err(
                    pos,
                    format!(
                        "`{name}` chooses a `OneOf`'s option and cannot also be `{}`",
                        decl.name
                    ),
                ))
            }
            None => {
                let (_, key_pos, raw) = self.raw.iter().find(|(n, _, _)| n == name).expect("read");
                let expr = match self.reader.domain(raw, decl) {
                    Ok(Expr::Shared(_)) | Err(_) => {
                        // Report the first use's field: the domain is read for that use.
                        return Err(match self.reader.domain(raw, decl) {
                            Err(SpaceError::Invalid {
                                message, line, col, ..
                            }) => self.reader.err(
                                Pos { line, col },
                                format!(
                                    "{message} (as used at line {}, column {})",
                                    pos.line, pos.col
                                ),
                            ),
                            Err(e) => e,
                            Ok(_) => self
                                .reader
                                .err(raw.pos, "a shared parameter cannot refer to another"),
                        });
                    }
                    Ok(e) => e,
                };
                self.shared.push((
                    name.to_string(),
                    Shared::Value {
                        kind,
                        expr: expr.clone(),
                    },
                ));
                if let Expr::Dom(d) = &expr {
                    let dist = dom_dist(d, decl).map_err(|m| self.reader.err(raw.pos, m))?;
                    self.origins.push((name.to_string(), *key_pos));
                    self.out.push(Entry::Shared(name.to_string(), dist));
                }
                expr
            }
        };
        // Every use checks its own field's rule (a kernel must be odd, channels positive).
        {
            let values = match &expr {
                Expr::Const(l) | Expr::Dom(Dom::Fixed(l)) => vec![*l],
                Expr::Dom(Dom::Range(a, b) | Dom::LogRange(a, b)) => vec![*a, *b],
                Expr::Dom(Dom::Choice(vs)) => vs.clone(),
                Expr::Shared(_) => Vec::new(),
            };
            for v in values {
                (decl.check)(&v).map_err(|m| {
                    self.reader
                        .err(pos, format!("`{}`: `{name}` takes {v}: {m}", decl.name))
                })?;
            }
        }
        self.record(name, conds);
        Ok(match &expr {
            Expr::Dom(d) => Some(dom_dist(d, decl).map_err(|m| self.reader.err(pos, m))?),
            _ => None,
        })
    }

    /// A `params` entry of a file without a model: a parameter of the user's own objective,
    /// its type read from its values (integers, numbers, booleans, or names as labels).
    fn free(&mut self, name: &str, pos: Pos, v: &Value) -> Result<(), SpaceError> {
        if is_part(v) {
            return Err(self.reader.err(
                v.pos,
                format!("`{name}` is a part, but the file has no `model` to use it in"),
            ));
        }
        let values: Vec<&Value> = match &v.kind {
            Kind::Call {
                name: n,
                args: Args::Positional(a),
            } => match (n.as_str(), a.as_slice()) {
                ("Choice", [list]) => match &list.kind {
                    Kind::List(items) => items.iter().collect(),
                    _ => vec![list],
                },
                (_, a) => a.iter().collect(),
            },
            _ => vec![v],
        };
        let floats = values.iter().any(|x| matches!(x.kind, Kind::Float(_)));
        let decl: &'static ParamDecl = match values.first().map(|x| &x.kind) {
            Some(Kind::Int(_) | Kind::Float(_)) if floats => &FREE_FLOAT,
            Some(Kind::Int(_)) => &FREE_INT,
            Some(Kind::Bool(_)) => &FREE_BOOL,
            _ => {
                let choices = label_choices(v).ok_or_else(|| {
                    self.reader.err(
                        v.pos,
                        format!("`{name}`: a free parameter is `Range(lo, hi)`, `LogRange(lo, hi)`, `Choice([..])` or `Fixed(v)` of numbers, booleans or names"),
                    )
                })?;
                self.shared
                    .push((name.to_string(), Shared::Labels(choices.clone())));
                self.origins.push((name.to_string(), pos));
                self.out.push(Entry::Shared(
                    name.to_string(),
                    Distribution::Categorical { choices },
                ));
                self.record(name, &[]);
                return Ok(());
            }
        };
        // The message names the parameter, not the placeholder field of its type.
        let expr = self.reader.domain(v, decl).map_err(|e| match e {
            SpaceError::Invalid {
                file,
                line,
                col,
                message,
            } => SpaceError::Invalid {
                file,
                line,
                col,
                message: message.replacen("`value`", &format!("`{name}`"), 1),
            },
            e => e,
        })?;
        let dom = match &expr {
            Expr::Const(l) => Dom::Fixed(*l),
            Expr::Dom(d) => d.clone(),
            Expr::Shared(_) => {
                return Err(self
                    .reader
                    .err(v.pos, "a shared parameter cannot refer to another"))
            }
        };
        let dist = dom_dist(&dom, decl).map_err(|m| self.reader.err(v.pos, m))?;
        self.shared.push((
            name.to_string(),
            Shared::Value {
                kind: decl.kind(),
                expr,
            },
        ));
        self.origins.push((name.to_string(), pos));
        self.out.push(Entry::Shared(name.to_string(), dist));
        self.record(name, &[]);
        Ok(())
    }

    fn record(&mut self, name: &str, conds: &[Condition]) {
        match self.uses.iter_mut().find(|(n, _)| n == name) {
            Some((_, u)) => u.push(conds.to_vec()),
            None => self.uses.push((name.to_string(), vec![conds.to_vec()])),
        }
    }

    /// The conditions under which each copy of a counted part exists: copy k needs a count of
    /// at least k + 1.
    fn count(
        &mut self,
        f: &Field,
        path: &str,
        conds: &[Condition],
    ) -> Result<Vec<Vec<Condition>>, SpaceError> {
        let (name, dist) = match &f.expr {
            Expr::Const(Lit::Int(n)) => return Ok(vec![conds.to_vec(); (*n).max(0) as usize]),
            Expr::Const(_) => return Ok(Vec::new()),
            Expr::Dom(d) => {
                let name = join(path, f.decl.name);
                let dist = self.local(name.clone(), f.decl, d, conds, f.pos)?;
                (name, dist)
            }
            Expr::Shared(n) => match self.use_value(n, f.decl, conds, f.pos)? {
                Some(dist) => (n.clone(), dist),
                None => {
                    let n = match self.shared.iter().find(|(s, _)| s == n) {
                        Some((
                            _,
                            Shared::Value {
                                expr: Expr::Const(Lit::Int(n)),
                                ..
                            },
                        )) => *n,
                        _ => 0,
                    };
                    return Ok(vec![conds.to_vec(); n.max(0) as usize]);
                }
            },
        };
        let max = super::schema::max_int(&dist);
        Ok((1..=max)
            .map(|k| {
                let c = match &dist {
                    Distribution::Categorical { choices } => Condition::OneOf {
                        param: name.clone(),
                        choices: choices
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| matches!(c, Choice::Int(v) if *v >= k))
                            .map(|(i, _)| i)
                            .collect(),
                    },
                    _ => Condition::AtLeast {
                        param: name.clone(),
                        min: k,
                    },
                };
                let mut v = conds.to_vec();
                v.push(c);
                v
            })
            .collect())
    }

    /// Declares the options of a choice named `param` (a new one over `labels`, or a shared
    /// one), each under the condition that it is chosen.
    fn choose(
        &mut self,
        path: &str,
        options: &[(String, Part)],
        shared: Option<&(String, Pos)>,
        conds: &[Condition],
        at: Pos,
    ) -> Result<(), SpaceError> {
        let labels: Vec<Choice> = options
            .iter()
            .map(|(l, _)| Choice::Str(l.clone()))
            .collect();
        let (param, choices) = match shared {
            None => {
                self.origins.push((path.to_string(), at));
                self.out.push(Entry::Local(ParamSpec {
                    name: path.to_string(),
                    dist: Distribution::Categorical {
                        choices: labels.clone(),
                    },
                    conditions: conds.to_vec(),
                    default: None,
                }));
                (path.to_string(), labels.clone())
            }
            Some((name, pos)) => {
                let choices = match self.shared.iter().find(|(n, _)| n == name) {
                    Some((_, Shared::Labels(c))) => c.clone(),
                    Some(_) => {
                        return Err(self.reader.err(
                            *pos,
                            format!(
                            "`{name}` is a value elsewhere and cannot choose a `OneOf`'s option"
                        ),
                        ))
                    }
                    None => {
                        let (_, rpos, raw) =
                            self.raw.iter().find(|(n, _, _)| n == name).expect("read");
                        let c = label_choices(raw).ok_or_else(|| {
                            self.reader.err(raw.pos, format!("`{name}` chooses a `OneOf`'s option, so it is `Choice([..])` or `Fixed(..)` of option labels"))
                        })?;
                        for (i, ch) in c.iter().enumerate() {
                            if !labels.contains(&Choice::Str(ch.to_string())) {
                                let opts: Vec<String> =
                                    options.iter().map(|(l, _)| format!("`{l}`")).collect();
                                return Err(self.reader.err(
                                    label_pos(raw, i),
                                    format!("`{name}` takes `{ch}`, which is not an option of the `OneOf` at line {}, column {} (its options are {})", pos.line, pos.col, opts.join(", ")),
                                ));
                            }
                        }
                        self.shared.push((name.clone(), Shared::Labels(c.clone())));
                        self.origins.push((name.clone(), *rpos));
                        self.out.push(Entry::Shared(
                            name.clone(),
                            Distribution::Categorical { choices: c.clone() },
                        ));
                        c
                    }
                };
                self.record(name, conds);
                (name.clone(), choices)
            }
        };
        for (label, part) in options {
            let chosen: Vec<usize> = choices
                .iter()
                .enumerate()
                .filter(|(_, c)| c.to_string() == *label)
                .map(|(i, _)| i)
                .collect();
            if chosen.is_empty() {
                continue;
            }
            let mut c = conds.to_vec();
            c.push(Condition::OneOf {
                param: param.clone(),
                choices: chosen,
            });
            self.part(part, &join(path, label), &c, false)?;
        }
        Ok(())
    }

    fn part(
        &mut self,
        p: &Part,
        path: &str,
        conds: &[Condition],
        cell_op: bool,
    ) -> Result<(), SpaceError> {
        match &p.ast {
            Ast::Layer { part, fields } => {
                if part.0.name == "Zero" && !cell_op {
                    return Err(self.reader.err(
                        p.pos,
                        "`Zero` is an op of a `Cell` (an edge that carries nothing) and cannot stand elsewhere",
                    ));
                }
                for f in fields {
                    match &f.expr {
                        Expr::Const(_) => {}
                        Expr::Dom(d) => {
                            self.local(join(path, f.decl.name), f.decl, d, conds, f.pos)?;
                        }
                        Expr::Shared(n) => {
                            self.use_value(n, f.decl, conds, f.pos)?;
                        }
                    }
                }
            }
            Ast::Sequential(parts) => {
                for (seg, c) in segments(parts).iter().zip(parts) {
                    self.part(c, &join(path, seg), conds, false)?;
                }
            }
            Ast::Repeat { times: f, body } | Ast::Dense { body, layers: f } => {
                for (k, c) in self.count(f, path, conds)?.iter().enumerate() {
                    self.part(body, &join(path, &(k + 1).to_string()), c, false)?;
                }
            }
            Ast::OneOf { options, choice } => {
                self.choose(path, options, choice.as_ref(), conds, p.pos)?
            }
            Ast::Residual(body) | Ast::Named(_, body) => self.part(body, path, conds, cell_op)?,
            Ast::Cell { nodes, ops } => {
                for (from, to) in edges(*nodes) {
                    let edge = join(path, &format!("edge{from}_{to}"));
                    self.choose_op(&edge, ops, conds, p.pos)?;
                }
            }
            Ast::Template(name) => {
                if self.stack.contains(name) {
                    return Err(self.reader.err(
                        p.pos,
                        format!(
                            "`{name}` uses itself (through {}); a template cannot be recursive",
                            self.stack.join(" -> ")
                        ),
                    ));
                }
                let t = &self
                    .net
                    .templates
                    .iter()
                    .find(|(n, _)| n == name)
                    .expect("read")
                    .1;
                self.stack.push(name.clone());
                self.part(t, path, conds, cell_op)?;
                self.stack.pop();
            }
        }
        Ok(())
    }

    /// One edge of a cell: a choice among `ops`, where `Zero` may stand.
    fn choose_op(
        &mut self,
        edge: &str,
        ops: &[(String, Part)],
        conds: &[Condition],
        at: Pos,
    ) -> Result<(), SpaceError> {
        let labels: Vec<Choice> = ops.iter().map(|(l, _)| Choice::Str(l.clone())).collect();
        self.origins.push((edge.to_string(), at));
        self.out.push(Entry::Local(ParamSpec {
            name: edge.to_string(),
            dist: Distribution::Categorical { choices: labels },
            conditions: conds.to_vec(),
            default: None,
        }));
        for (i, (label, op)) in ops.iter().enumerate() {
            let mut c = conds.to_vec();
            c.push(Condition::OneOf {
                param: edge.to_string(),
                choices: vec![i],
            });
            self.part(op, &join(edge, label), &c, true)?;
        }
        Ok(())
    }
}

/// The edges `i -> j` (i < j) of a cell of `n` nodes, in order.
fn edges(n: usize) -> Vec<(usize, usize)> {
    (1..n).flat_map(|j| (0..j).map(move |i| (i, j))).collect()
}

/// The labels a shared `OneOf` choice takes, from `Choice([..])` or `Fixed(..)` of names,
/// strings, numbers or booleans.
fn label_choices(v: &Value) -> Option<Vec<Choice>> {
    let one = |v: &Value| match &v.kind {
        Kind::Ident(s) | Kind::Str(s) => Some(Choice::Str(s.clone())),
        Kind::Int(i) => Some(Choice::Int(*i)),
        Kind::Bool(b) => Some(Choice::Bool(*b)),
        _ => None,
    };
    match &v.kind {
        Kind::Call {
            name,
            args: Args::Positional(a),
        } if a.len() == 1 => match (name.as_str(), &a[0].kind) {
            ("Choice", Kind::List(items)) if !items.is_empty() => items.iter().map(one).collect(),
            ("Fixed", _) => one(&a[0]).map(|c| vec![c]),
            _ => None,
        },
        _ => None,
    }
}

/// Where the `i`th label of a shared `OneOf` choice (`Choice([..])` or `Fixed(..)`) is written.
fn label_pos(v: &Value, i: usize) -> Pos {
    match &v.kind {
        Kind::Call {
            args: Args::Positional(a),
            ..
        } if a.len() == 1 => match &a[0].kind {
            Kind::List(items) => items.get(i).map_or(v.pos, |x| x.pos),
            _ => a[0].pos,
        },
        _ => v.pos,
    }
}

/// The conditions of a shared parameter: those all its uses share, plus, when each use also
/// sits in a different option of one choice, that the choice is one of those options.
fn merge_conditions(uses: &[Vec<Condition>]) -> Vec<Condition> {
    if uses.is_empty() || uses.iter().any(Vec::is_empty) {
        return Vec::new();
    }
    let mut common: Vec<Condition> = uses[0]
        .iter()
        .filter(|c| uses.iter().all(|u| u.contains(c)))
        .cloned()
        .collect();
    let rests: Vec<Vec<&Condition>> = uses
        .iter()
        .map(|u| u.iter().filter(|c| !common.contains(c)).collect())
        .collect();
    if rests.iter().any(Vec::is_empty) {
        return common;
    }
    let parent = rests[0][0].parent().to_string();
    let mut union: Vec<usize> = Vec::new();
    for r in &rests {
        match r.as_slice() {
            [Condition::OneOf { param, choices }] if *param == parent => union.extend(choices),
            _ => return common,
        }
    }
    union.sort_unstable();
    union.dedup();
    common.push(Condition::OneOf {
        param: parent,
        choices: union,
    });
    common
}

impl NetSpace {
    /// Reads `model` (and the `params` map, if any) and declares their parameters, in order.
    pub fn read(
        model: Option<&Value>,
        params: Option<&Value>,
        file: &str,
    ) -> Result<(NetSpace, Vec<ParamSpec>), SpaceError> {
        let mut raw: Vec<(String, Pos, Value)> = Vec::new();
        let mut reader = Reader {
            file,
            templates: Vec::new(),
            domains: Vec::new(),
        };
        if let Some(p) = params {
            let Kind::Map(entries) = &p.kind else {
                return Err(reader.err(
                    p.pos,
                    format!(
                        "`params` is a map `{{\"name\": domain or part, ..}}`, not {}",
                        p.describe()
                    ),
                ));
            };
            for (k, v) in entries {
                let name = reader.string(k, "a parameter name")?;
                if raw.iter().any(|(n, _, _)| *n == name) {
                    return Err(reader.err(k.pos, format!("`{name}` is in `params` twice")));
                }
                if is_part(v) {
                    reader.templates.push(name.clone());
                } else {
                    reader.domains.push(name.clone());
                }
                raw.push((name, k.pos, v.clone()));
            }
        }
        let mut templates = Vec::new();
        for (name, _, v) in &raw {
            if reader.templates.contains(name) {
                templates.push((name.clone(), reader.part(v)?));
            }
        }
        let root = match model {
            Some(m) => reader.part(m)?,
            None => Part {
                pos: Pos { line: 1, col: 1 },
                ast: Ast::Sequential(Vec::new()),
            },
        };
        let mut net = NetSpace {
            has_model: model.is_some(),
            root,
            templates,
            shared: Vec::new(),
            origins: Vec::new(),
        };
        let mut d = Declarer {
            net: &net,
            raw: &raw,
            reader: &reader,
            out: Vec::new(),
            uses: Vec::new(),
            shared: Vec::new(),
            stack: Vec::new(),
            origins: Vec::new(),
        };
        d.part(&net.root, &net.root_path(), &[], false)?;
        for (name, pos, value) in &raw {
            let used = d.uses.iter().any(|(n, _)| n == name)
                || reader.templates.contains(name) && template_used(&net, name);
            match (used, model) {
                (true, _) => {}
                // Without a model, every entry is a free parameter of the user's objective.
                (false, None) => d.free(name, *pos, value)?,
                (false, Some(_)) => {
                    return Err(reader.err(
                        *pos,
                        format!("`{name}` is declared in `params` but never used"),
                    ))
                }
            }
        }
        // A shared name may also be a part's path (`Named("x", OneOf(..))` and `params: {"x": ..}`):
        // two parameters under one name would share one value.
        for (i, (name, pos)) in d.origins.iter().enumerate() {
            if d.origins[..i].iter().any(|(n, _)| n == name) {
                return Err(reader.err(
                    *pos,
                    format!("two parameters are named `{name}` (a `params` entry and a part's path); rename one"),
                ));
            }
        }
        let specs = d
            .out
            .into_iter()
            .map(|e| match e {
                Entry::Local(p) => p,
                Entry::Shared(name, dist) => {
                    let conditions = d
                        .uses
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, u)| merge_conditions(u))
                        .unwrap_or_default();
                    ParamSpec {
                        name,
                        dist,
                        conditions,
                        default: None,
                    }
                }
            })
            .collect();
        let origins = d.origins;
        net.shared = d.shared;
        net.origins = origins;
        Ok((net, specs))
    }

    /// Where parameter `name` is declared: the field, `OneOf` or `Cell` that makes it, or its
    /// `params` entry.
    pub fn origin(&self, name: &str) -> Option<Pos> {
        self.origins
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
    }

    /// Whether the file has a `model`: one with `params` only declares free parameters for an
    /// objective of the user's own.
    pub fn has_model(&self) -> bool {
        self.has_model
    }

    /// Where the root's parameters go: a sequence's parts name themselves, a single part is
    /// named by its kind.
    fn root_path(&self) -> String {
        match &self.root.ast {
            Ast::Sequential(_) => String::new(),
            _ => self.root.kind(),
        }
    }

    /// The network of one configuration of the space.
    pub fn resolve(&self, config: &Config) -> Vec<Node> {
        let r = Resolver { net: self, config };
        let mut out = Vec::new();
        r.part(&self.root, &self.root_path(), &mut out);
        out
    }
}

fn template_used(net: &NetSpace, name: &str) -> bool {
    fn uses(p: &Part, name: &str) -> bool {
        match &p.ast {
            Ast::Template(n) => n == name,
            Ast::Layer { .. } => false,
            Ast::Sequential(ps) => ps.iter().any(|p| uses(p, name)),
            Ast::Repeat { body, .. }
            | Ast::Dense { body, .. }
            | Ast::Residual(body)
            | Ast::Named(_, body) => uses(body, name),
            Ast::OneOf { options: o, .. } | Ast::Cell { ops: o, .. } => {
                o.iter().any(|(_, p)| uses(p, name))
            }
        }
    }
    uses(&net.root, name)
        || net
            .templates
            .iter()
            .any(|(n, t)| n != name && uses(t, name))
}

/// Turns one configuration into nodes: the values it holds, the options it chose.
struct Resolver<'a> {
    net: &'a NetSpace,
    config: &'a Config,
}

impl Resolver<'_> {
    /// The value of a field at `path`; a value the configuration lacks (never the case for a
    /// configuration of the space) falls back to the domain's first.
    fn value(&self, f: &Field, path: &str) -> Lit {
        let (name, expr) = match &f.expr {
            Expr::Const(l) => return *l,
            Expr::Dom(d) => (join(path, f.decl.name), d.clone()),
            Expr::Shared(n) => match self.net.shared.iter().find(|(s, _)| s == n) {
                Some((
                    _,
                    Shared::Value {
                        expr: Expr::Const(l),
                        ..
                    },
                )) => return *l,
                Some((
                    _,
                    Shared::Value {
                        expr: Expr::Dom(d), ..
                    },
                )) => (n.clone(), d.clone()),
                _ => return f.decl.default.first(),
            },
        };
        let kind = f.decl.kind();
        let first = match &expr {
            Dom::Fixed(v) | Dom::Range(v, _) | Dom::LogRange(v, _) => *v,
            Dom::Choice(vs) => vs.first().copied().unwrap_or(kind),
        };
        match (self.config.get(&name), &expr) {
            (Some(ParamValue::Cat(i)), Dom::Choice(vs)) => vs.get(*i).copied().unwrap_or(first),
            (Some(ParamValue::Int(v)), _) => match kind {
                Lit::Channels(_) => Lit::Channels(super::params::Channels::Count(*v)),
                Lit::Float(_) => Lit::Float(*v as f64),
                _ => Lit::Int(*v),
            },
            (Some(ParamValue::Float(x)), _) => Lit::Float(*x),
            _ => first,
        }
    }

    fn count(&self, f: &Field, path: &str) -> usize {
        match self.value(f, path) {
            Lit::Int(n) => n.max(0) as usize,
            _ => 0,
        }
    }

    /// The label chosen by `param` (index into `choices`), else the first option.
    fn chosen<'p>(
        &self,
        param: &str,
        options: &'p [(String, Part)],
        choices: &[Choice],
    ) -> &'p (String, Part) {
        let label = match self.config.get(param) {
            Some(ParamValue::Cat(i)) => choices.get(*i).map(|c| c.to_string()),
            _ => None,
        };
        label
            .and_then(|l| options.iter().find(|(o, _)| *o == l))
            .unwrap_or(&options[0])
    }

    fn part(&self, p: &Part, path: &str, out: &mut Vec<Node>) {
        match &p.ast {
            Ast::Layer { part, fields } => out.push(Node::Layer {
                part: part.0.name.to_string(),
                path: path.to_string(),
                values: fields
                    .iter()
                    .map(|f| (f.decl.name.to_string(), self.value(f, path)))
                    .collect(),
            }),
            Ast::Sequential(parts) => {
                for (seg, c) in segments(parts).iter().zip(parts) {
                    self.part(c, &join(path, seg), out);
                }
            }
            Ast::Repeat { times, body } => {
                for k in 0..self.count(times, path) {
                    self.part(body, &join(path, &(k + 1).to_string()), out);
                }
            }
            Ast::Dense { body, layers } => {
                for k in 0..self.count(layers, path) {
                    let q = join(path, &(k + 1).to_string());
                    let mut b = Vec::new();
                    self.part(body, &q, &mut b);
                    out.push(Node::Dense { path: q, body: b });
                }
            }
            Ast::OneOf { options, choice } => {
                let (param, choices) = match choice {
                    Some((n, _)) => match self.net.shared.iter().find(|(s, _)| s == n) {
                        Some((_, Shared::Labels(c))) => (n.clone(), c.clone()),
                        _ => (n.clone(), Vec::new()),
                    },
                    None => (
                        path.to_string(),
                        options
                            .iter()
                            .map(|(l, _)| Choice::Str(l.clone()))
                            .collect(),
                    ),
                };
                let (label, option) = self.chosen(&param, options, &choices);
                self.part(option, &join(path, label), out);
            }
            Ast::Residual(body) => {
                let mut b = Vec::new();
                self.part(body, path, &mut b);
                out.push(Node::Residual {
                    path: path.to_string(),
                    body: b,
                });
            }
            Ast::Named(_, body) => self.part(body, path, out),
            Ast::Cell { nodes, ops } => {
                let choices: Vec<Choice> =
                    ops.iter().map(|(l, _)| Choice::Str(l.clone())).collect();
                let edges = edges(*nodes)
                    .into_iter()
                    .map(|(from, to)| {
                        let edge = join(path, &format!("edge{from}_{to}"));
                        let (label, op) = self.chosen(&edge, ops, &choices);
                        let mut b = Vec::new();
                        self.part(op, &join(&edge, label), &mut b);
                        Edge { from, to, op: b }
                    })
                    .collect();
                out.push(Node::Cell {
                    path: path.to_string(),
                    nodes: *nodes,
                    edges,
                });
            }
            Ast::Template(name) => {
                if let Some((_, t)) = self.net.templates.iter().find(|(n, _)| n == name) {
                    self.part(t, path, out);
                }
            }
        }
    }
}
