//! A sampled network in the architecture language: every choice made, every value fixed.
//!
//! This is what a candidate carries, what `architecture.ron` keeps and what the network builder
//! reads. The short forms `Mlp((..))` and `Cnn((..))` expand into it ([`super::expand`]).

use super::params::Lit;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One part of a sampled network; `path` names it in messages and in `nas space show`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Node {
    /// A layer part of `src/parts` with its field values (a field left out has its default).
    Layer {
        part: String,
        path: String,
        values: Vec<(String, Lit)>,
    },
    Sequential(Vec<Node>),
    /// H(x) = F(x) + x, with a 1x1 projection on the shortcut when the shapes differ.
    Residual {
        path: String,
        body: Vec<Node>,
    },
    /// One DenseNet layer: its output is concatenated to its input along channels.
    Dense {
        path: String,
        body: Vec<Node>,
    },
    /// A DAG of `nodes` nodes: node 0 is the input, each later node sums its incoming edges'
    /// ops, and the last node is the output.
    Cell {
        path: String,
        nodes: usize,
        edges: Vec<Edge>,
    },
}

/// The op on the edge `from -> to` of a cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub op: Vec<Node>,
}

impl Node {
    /// A layer part with its values.
    pub fn layer(part: &str, path: impl Into<String>, values: &[(&str, Lit)]) -> Node {
        Node::Layer {
            part: part.to_string(),
            path: path.into(),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    /// The activation an `Act` layer applies.
    pub fn activation(&self) -> Option<crate::space::Activation> {
        match self {
            Node::Layer { part, values, .. } if part == "Act" => {
                match values.iter().find(|(k, _)| k == "function") {
                    Some((_, Lit::Activation(a))) => Some(*a),
                    _ => Some(crate::space::Activation::Relu),
                }
            }
            _ => None,
        }
    }

    /// Whether this is a batch norm that is not switched off.
    pub fn is_batch_norm(&self) -> bool {
        matches!(self, Node::Layer { part, values, .. }
            if part == "BatchNorm" && !values.iter().any(|(k, v)| k == "enabled" && *v == Lit::Bool(false)))
    }

    /// Whether this layer is a `Zero` (a cell edge that carries nothing).
    pub fn is_zero(&self) -> bool {
        matches!(self, Node::Layer { part, .. } if part == "Zero")
    }

    /// Whether any part inside is a batch norm that is on.
    pub fn contains_batch_norm(nodes: &[Node]) -> bool {
        nodes.iter().any(|n| match n {
            Node::Sequential(b) | Node::Residual { body: b, .. } | Node::Dense { body: b, .. } => {
                Node::contains_batch_norm(b)
            }
            Node::Cell { edges, .. } => edges.iter().any(|e| Node::contains_batch_norm(&e.op)),
            n => n.is_batch_norm(),
        })
    }

    /// The layers, counted by part name in order of first use, e.g. `conv x3, residual x2`.
    pub fn census(nodes: &[Node]) -> String {
        fn walk(nodes: &[Node], counts: &mut Vec<(String, usize)>) {
            for n in nodes {
                let name = match n {
                    Node::Layer { part, .. } => match part.as_str() {
                        "Identity" | "Dropout" | "Act" | "BatchNorm" | "Zero" => continue,
                        p => p.to_lowercase(),
                    },
                    Node::Sequential(b) => {
                        walk(b, counts);
                        continue;
                    }
                    Node::Residual { .. } => "residual".into(),
                    Node::Dense { .. } => "dense".into(),
                    Node::Cell { .. } => "cell".into(),
                };
                match counts.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, c)) => *c += 1,
                    None => counts.push((name, 1)),
                }
                if let Node::Residual { body, .. } | Node::Dense { body, .. } = n {
                    walk(body, counts);
                }
            }
        }
        let mut counts = Vec::new();
        walk(nodes, &mut counts);
        counts
            .iter()
            .map(|(k, c)| {
                if *c > 1 {
                    format!("{k} x{c}")
                } else {
                    k.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A one-line summary for tables, e.g. `conv32k3 res(k3 k5) maxpool res(x2 k5 k5) gap relu`:
    /// convolutions with their channels (`x2` for `Double`) and kernels, blocks in brackets, the
    /// first activation at the end; cut at `max` characters.
    pub fn summary(nodes: &[Node], max: usize) -> String {
        fn value<'a>(values: &'a [(String, Lit)], k: &str) -> Option<&'a Lit> {
            values.iter().find(|(n, _)| n == k).map(|(_, v)| v)
        }
        fn channels(values: &[(String, Lit)]) -> String {
            match value(values, "channels") {
                Some(Lit::Channels(super::params::Channels::Count(n))) => n.to_string(),
                Some(Lit::Channels(super::params::Channels::Double)) => "x2".into(),
                _ => String::new(),
            }
        }
        fn walk(nodes: &[Node], out: &mut Vec<String>, act: &mut Option<String>) {
            for n in nodes {
                match n {
                    Node::Layer { part, values, .. } => {
                        let kernel = match value(values, "kernel") {
                            Some(Lit::Int(k)) => format!("k{k}"),
                            _ => "k3".into(),
                        };
                        let stride = match value(values, "stride") {
                            Some(Lit::Int(s)) if *s > 1 => format!("s{s}"),
                            _ => String::new(),
                        };
                        match part.as_str() {
                            "Conv" => out.push(format!("{}{kernel}{stride}", channels(values))),
                            "SeparableConv" => {
                                out.push(format!("sep{}{kernel}{stride}", channels(values)))
                            }
                            "Linear" => match value(values, "units") {
                                Some(Lit::Int(u)) => out.push(format!("fc{u}")),
                                _ => out.push("fc64".into()),
                            },
                            "Pool" => out.push(match value(values, "kind") {
                                Some(Lit::Pool(super::params::PoolOp::Avg)) => "avgpool".into(),
                                _ => "maxpool".into(),
                            }),
                            "Downsample" => out.push(match value(values, "how") {
                                Some(Lit::Downsample(d)) => d.label().to_string(),
                                _ => "maxpool".into(),
                            }),
                            "GlobalAvgPool" => out.push("gap".into()),
                            "Act" if act.is_none() => {
                                *act = n.activation().map(|a| a.label().to_string())
                            }
                            _ => {}
                        }
                    }
                    Node::Sequential(b) => walk(b, out, act),
                    Node::Residual { body, .. } | Node::Dense { body, .. } => {
                        let mut inner = Vec::new();
                        walk(body, &mut inner, act);
                        let name = if matches!(n, Node::Residual { .. }) {
                            "res"
                        } else {
                            "dense"
                        };
                        out.push(format!("{name}({})", inner.join(" ")));
                    }
                    Node::Cell { edges, .. } => {
                        let live = edges
                            .iter()
                            .filter(|e| !e.op.iter().any(Node::is_zero))
                            .count();
                        out.push(format!("cell({live}/{} edges)", edges.len()));
                    }
                }
            }
        }
        let (mut out, mut act) = (Vec::new(), None);
        walk(nodes, &mut out, &mut act);
        out.extend(act);
        let s = out.join(" ");
        if s.chars().count() > max {
            let cut: String = s.chars().take(max.saturating_sub(1)).collect();
            format!("{cut}…")
        } else {
            s
        }
    }

    /// The network written in the architecture language (a `model:` a space file can hold).
    pub fn to_ron(nodes: &[Node]) -> String {
        let mut out = String::new();
        write_list(&mut out, nodes, 0);
        format!("Sequential({out})")
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("    ");
    }
}

fn write_list(out: &mut String, nodes: &[Node], depth: usize) {
    out.push_str("[\n");
    for n in nodes {
        indent(out, depth + 1);
        write_node(out, n, depth + 1);
        out.push_str(",\n");
    }
    indent(out, depth);
    out.push(']');
}

fn write_node(out: &mut String, n: &Node, depth: usize) {
    match n {
        Node::Layer { part, values, .. } if values.is_empty() => out.push_str(part),
        Node::Layer { part, values, .. } => {
            let fields: Vec<String> = values.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = write!(out, "{part}({})", fields.join(", "));
        }
        Node::Sequential(b) => {
            out.push_str("Sequential(");
            write_list(out, b, depth);
            out.push(')');
        }
        Node::Residual { body, .. } => {
            out.push_str("Residual(Sequential(");
            write_list(out, body, depth);
            out.push_str("))");
        }
        Node::Dense { body, .. } => {
            out.push_str("Dense(Sequential(");
            write_list(out, body, depth);
            out.push_str("), 1)");
        }
        Node::Cell { nodes, edges, .. } => {
            let _ = writeln!(out, "// a cell of {nodes} nodes; each edge's chosen op:");
            indent(out, depth);
            out.push_str("CellEdges([\n");
            for e in edges {
                indent(out, depth + 1);
                let _ = write!(out, "({}, {}, Sequential(", e.from, e.to);
                write_list(out, &e.op, depth + 1);
                out.push_str(")),\n");
            }
            indent(out, depth);
            out.push_str("])");
        }
    }
}
