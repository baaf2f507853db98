//! The architecture language end to end: every part builds and trains, backprop through its
//! graphs agrees with finite differences, parameters exist exactly when their branch does,
//! shared parameters and templates behave as documented, every mistake is reported at its
//! FILE:LINE:COLUMN, and shape errors at build time name the part's path.

use dfdx::prelude::*;
use nas::data::InputShape;
use nas::nn::{build_network, cost, Network};
use nas::search::{Observation, Strategy, TrialState};
use nas::space::arch::Node;
use nas::space::params::Lit;
use nas::space::{
    Architecture, Choice, Condition, Config, Distribution, OptimizerKind, ParamValue, SearchSpace,
    SpaceError,
};
use nas::train::Optimizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FILE: &str = "spaces/t.ron";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A space file with shared `params` on line 3 and the `model` on line 4.
fn text(params: &str, model: &str) -> String {
    format!("(\n    task: Classification,\n    params: {{{params}}},\n    model: {model},\n)")
}

/// A space file without `params`: the `model` is on line 3.
fn text0(model: &str) -> String {
    format!("(\n    task: Classification,\n    model: {model},\n)")
}

fn parse(text: &str) -> Result<SearchSpace, SpaceError> {
    SearchSpace::from_str_named(text, "t", FILE)
}

/// A space the test means to be valid.
fn space(text: &str) -> SearchSpace {
    parse(text).unwrap_or_else(|e| panic!("test space is valid: {e}\n{text}"))
}

/// One random configuration, checked against the space.
fn sample(space: &SearchSpace, seed: u64) -> Config {
    let mut sampler = Strategy::Random
        .build(space)
        .expect("random sampler builds");
    let cfg = sampler.suggest(space, &[], &mut ChaCha8Rng::seed_from_u64(seed));
    space
        .validate_config(&cfg)
        .unwrap_or_else(|e| panic!("sampled configuration {cfg:?} is invalid: {e}"));
    cfg
}

/// The resolved network of a configuration.
fn nodes(space: &SearchSpace, cfg: &Config) -> Vec<Node> {
    match space.decode(cfg).arch {
        Architecture::Net(nodes) => nodes,
        other => panic!("a language space decodes to a Net, not {other:?}"),
    }
}

/// Every node of a tree, depth first (cell edge ops included).
fn flatten(nodes: &[Node]) -> Vec<&Node> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(n);
        match n {
            Node::Layer { .. } => {}
            Node::Sequential(b) | Node::Residual { body: b, .. } | Node::Dense { body: b, .. } => {
                out.extend(flatten(b))
            }
            Node::Cell { edges, .. } => {
                for e in edges {
                    out.extend(flatten(&e.op));
                }
            }
        }
    }
    out
}

/// A node's kind: its part name for layers, else `Residual`, `Dense`, `Cell`, `Sequential`.
fn kind(n: &Node) -> &str {
    match n {
        Node::Layer { part, .. } => part,
        Node::Sequential(_) => "Sequential",
        Node::Residual { .. } => "Residual",
        Node::Dense { .. } => "Dense",
        Node::Cell { .. } => "Cell",
    }
}

/// The layers of part `part` with their paths and values.
fn layers<'a>(nodes: &'a [Node], part: &str) -> Vec<(&'a str, &'a [(String, Lit)])> {
    flatten(nodes)
        .into_iter()
        .filter_map(|n| match n {
            Node::Layer {
                part: p,
                path,
                values,
            } if p == part => Some((path.as_str(), values.as_slice())),
            _ => None,
        })
        .collect()
}

fn value<'a>(values: &'a [(String, Lit)], field: &str) -> Option<&'a Lit> {
    values.iter().find(|(k, _)| k == field).map(|(_, v)| v)
}

/// The names of the training and augmentation settings every space has.
fn training_names() -> Vec<String> {
    let s = space(&text0("Identity"));
    s.params.iter().map(|p| p.name.clone()).collect()
}

/// The model's parameters of a space, in order.
fn model_params(space: &SearchSpace) -> Vec<String> {
    let train = training_names();
    space
        .params
        .iter()
        .map(|p| p.name.clone())
        .filter(|n| !train.contains(n))
        .collect()
}

/// The model's parameters a configuration holds, sorted.
fn model_keys(cfg: &Config) -> Vec<String> {
    let train = training_names();
    cfg.keys().filter(|k| !train.contains(k)).cloned().collect()
}

/// The label a categorical parameter took.
fn label(space: &SearchSpace, cfg: &Config, name: &str) -> Option<String> {
    match (space.param(name).map(|p| &p.dist), cfg.get(name)) {
        (Some(Distribution::Categorical { choices }), Some(ParamValue::Cat(i))) => {
            choices.get(*i).map(Choice::to_string)
        }
        _ => None,
    }
}

fn int(cfg: &Config, name: &str) -> Option<i64> {
    match cfg.get(name) {
        Some(ParamValue::Int(v)) => Some(*v),
        _ => None,
    }
}

fn random_vec(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// The names of a network's parameter tensors.
fn param_names(net: &mut Network) -> Vec<String> {
    let mut names = Vec::new();
    net.visit_params(&mut |name, _, _| names.push(name));
    names
}

/// The gradient of every parameter tensor, by name.
fn param_grads(net: &mut Network, grads: &mut Gradients<f32, Cpu>) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    net.visit_params(&mut |name, p, _| {
        let g = p.grad(grads).map(|g| g.to_vec());
        out.push((name, g.expect("every parameter has a gradient slot")));
    });
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Every part builds and trains
// ---------------------------------------------------------------------------------------------

/// One small space around one part, and what its network must show.
struct PartCase {
    what: &'static str,
    model: &'static str,
    shape: (usize, usize, usize),
    /// A node of this kind is in every resolved network.
    node: &'static str,
    /// Substrings some parameter tensor of the built network has in its name.
    params: &'static [&'static str],
    /// Substrings no parameter tensor has in its name.
    no_params: &'static [&'static str],
    /// Whether every parameter tensor must get a nonzero gradient (not so for cells whose
    /// `Zero` edges may cut a parameterised op off the output).
    all_grads: bool,
}

const fn case(
    what: &'static str,
    model: &'static str,
    shape: (usize, usize, usize),
    node: &'static str,
) -> PartCase {
    PartCase {
        what,
        model,
        shape,
        node,
        params: &[],
        no_params: &[],
        all_grads: true,
    }
}

fn part_cases() -> Vec<PartCase> {
    let img = (2, 6, 6);
    let flat = (1, 1, 6);
    let signal = (1, 1, 12);
    vec![
        case(
            "Linear on features",
            "Sequential([Linear(Choice([4, 8])), Act(Relu), Linear(units: 5)])",
            flat,
            "Linear",
        ),
        case(
            "Linear on a feature map",
            "Sequential([Conv(3, 3), Act(Relu), Linear(6)])",
            img,
            "Linear",
        ),
        case(
            "Conv",
            "Sequential([Conv(channels: Choice([3, 5]), kernel: Choice([1, 3, 5]), stride: Choice([1, 2])), Act(Tanh)])",
            img,
            "Conv",
        ),
        case(
            "Conv Same and Double",
            "Sequential([Conv(Choice([Same, Double]), 3), Act(Relu), Conv(Double, 1)])",
            img,
            "Conv",
        ),
        PartCase {
            no_params: &[".body."],
            ..case(
                "SeparableConv expansion 1",
                "Sequential([Conv(4, 3), SeparableConv(channels: Choice([4, 6]), kernel: 3, expansion: 1)])",
                img,
                "SeparableConv",
            )
        },
        PartCase {
            // Same channels, stride 1, expansion above 1: an inverted residual.
            params: &[".body."],
            ..case(
                "SeparableConv expansion 3 (inverted residual)",
                "Sequential([Conv(4, 3), SeparableConv(channels: Same, kernel: 3, expansion: Choice([2, 3]))])",
                img,
                "SeparableConv",
            )
        },
        case(
            "SeparableConv expansion 2, stride 2, no batch norm",
            "Sequential([SeparableConv(channels: Double, kernel: 5, expansion: 2, stride: 2, activation: Gelu, batch_norm: false)])",
            img,
            "SeparableConv",
        ),
        case(
            "Pool",
            "Sequential([Conv(3, 3), Pool(kind: Choice([Max, Avg]), size: 2), Pool(Avg, 3, 1)])",
            img,
            "Pool",
        ),
        case(
            "Downsample MaxPool",
            "Sequential([Conv(3, 3), Downsample(MaxPool), Conv(3, 3)])",
            img,
            "Downsample",
        ),
        case(
            "Downsample AvgPool",
            "Sequential([Conv(3, 3), Downsample(AvgPool), Conv(3, 3)])",
            img,
            "Downsample",
        ),
        case(
            "Downsample Stride",
            "Sequential([Conv(3, 3), Downsample(how: Stride), Conv(3, 3), Act(Relu)])",
            img,
            "Downsample",
        ),
        case(
            "GlobalAvgPool",
            "Sequential([Conv(8, 3), Act(Relu), GlobalAvgPool])",
            img,
            "GlobalAvgPool",
        ),
        case(
            "BatchNorm on a map and on features",
            "Sequential([Conv(4, 3), BatchNorm, Act(Relu), Linear(6), BatchNorm(enabled: true), Act(Relu), BatchNorm(false)])",
            img,
            "BatchNorm",
        ),
        case(
            "Dropout",
            "Sequential([Linear(8), Act(Relu), Dropout(Range(0.0, 0.2))])",
            flat,
            "Dropout",
        ),
        case(
            "Act Relu",
            "Sequential([Linear(8), Act(Relu)])",
            flat,
            "Act",
        ),
        case(
            "Act LeakyRelu",
            "Sequential([Linear(8), Act(LeakyRelu)])",
            flat,
            "Act",
        ),
        case(
            "Act Sigmoid",
            "Sequential([Linear(8), Act(function: Sigmoid)])",
            flat,
            "Act",
        ),
        case(
            "Act Tanh",
            "Sequential([Linear(8), Act(Tanh)])",
            flat,
            "Act",
        ),
        case(
            "Act Gelu",
            "Sequential([Linear(8), Act(Gelu)])",
            flat,
            "Act",
        ),
        case(
            "Identity",
            "Sequential([Linear(8), Identity, Act(Tanh)])",
            flat,
            "Identity",
        ),
        case(
            "Sequential nested and Named",
            "Sequential([Named(\"stem\", Sequential([Conv(3, 3), Act(Relu)])), Sequential([Conv(3, 1)])])",
            img,
            "Conv",
        ),
        case(
            "Repeat",
            "Sequential([Named(\"stage\", Repeat(Range(1, 3), Sequential([Conv(3, Choice([1, 3])), Act(Relu)])))])",
            img,
            "Conv",
        ),
        case(
            "Repeat as the root",
            "Repeat(2, Sequential([Linear(Range(3, 6)), Act(Tanh)]))",
            flat,
            "Linear",
        ),
        case(
            "OneOf",
            "Sequential([Conv(3, 3), OneOf([Conv(3, 3), Named(\"pool\", Pool(Max, 2)), Identity]), Act(Relu)])",
            img,
            "Conv",
        ),
        PartCase {
            no_params: &[".shortcut."],
            ..case(
                "Residual, identity shortcut",
                "Sequential([Conv(3, 3), Residual(Sequential([Conv(kernel: 3), Act(Relu), Conv(kernel: 3)])), Act(Relu)])",
                img,
                "Residual",
            )
        },
        PartCase {
            params: &[".shortcut."],
            ..case(
                "Residual, projection for more channels",
                "Sequential([Conv(3, 3), Residual(Sequential([Conv(channels: 5, kernel: 3), BatchNorm, Act(Relu), Conv(kernel: 3), BatchNorm])), Act(Relu)])",
                img,
                "Residual",
            )
        },
        PartCase {
            params: &[".shortcut."],
            ..case(
                "Residual, projection for a stride",
                "Sequential([Conv(3, 3), Residual(Sequential([Conv(channels: Double, kernel: 3, stride: 2), Act(Tanh)]))])",
                img,
                "Residual",
            )
        },
        PartCase {
            params: &[".shortcut."],
            ..case(
                "Residual, projection after Downsample(Stride)",
                "Sequential([Conv(3, 3), Downsample(Stride), Residual(Sequential([Conv(kernel: 3), Act(Relu)]))])",
                img,
                "Residual",
            )
        },
        PartCase {
            params: &[".shortcut."],
            ..case(
                "Residual on features, projection",
                "Sequential([Linear(6), Residual(Sequential([Linear(4), Act(Tanh)]))])",
                flat,
                "Residual",
            )
        },
        case(
            "Dense",
            "Sequential([Conv(4, 3), Dense(body: Sequential([BatchNorm, Act(Relu), Conv(channels: 3, kernel: 3)]), layers: Range(1, 3))])",
            img,
            "Dense",
        ),
        PartCase {
            all_grads: false,
            ..case(
                "Cell of Zero, Identity, conv and pool ops",
                "Sequential([Conv(4, 3), Named(\"cell\", Cell(nodes: 4, ops: [Zero, Identity, Named(\"conv\", Sequential([Act(Relu), Conv(kernel: Choice([1, 3])), BatchNorm])), Named(\"pool\", Pool(kind: Avg, size: 3, stride: 1)), Named(\"max\", Pool(Max, 3, 1))])), Act(Relu)])",
                img,
                "Cell",
            )
        },
        case(
            "Cell of conv ops only",
            "Sequential([Conv(3, 3), Cell(3, [Sequential([Act(Tanh), Conv(kernel: 3)])])])",
            img,
            "Cell",
        ),
        case(
            "1-D signal: conv, pool, residual, stride, global pool",
            "Sequential([Conv(4, Choice([3, 5])), Act(Relu), Pool(Max, 2), Residual(Sequential([Conv(kernel: 3), Act(Relu)])), Downsample(Stride), SeparableConv(Double, 3, 2), GlobalAvgPool])",
            signal,
            "SeparableConv",
        ),
        case(
            "1-D signal: cell and dense",
            "Sequential([Conv(3, 3), Cell(3, [Identity, Named(\"conv\", Conv(kernel: 5)), Named(\"pool\", Pool(Avg, 3, 1))]), Dense(Conv(channels: 2, kernel: 3), 2)])",
            signal,
            "Cell",
        ),
    ]
}

/// Cross-entropy on a fixed batch of `n` random inputs with labels `i % classes`.
struct Batch {
    x: Vec<f32>,
    onehot: Vec<f32>,
    n: usize,
    classes: usize,
}

fn batch(shape: InputShape, n: usize, classes: usize, rng: &mut ChaCha8Rng) -> Batch {
    let x = random_vec(n * shape.len(), rng);
    let mut onehot = vec![0.0f32; n * classes];
    for i in 0..n {
        onehot[i * classes + i % classes] = 1.0;
    }
    Batch {
        x,
        onehot,
        n,
        classes,
    }
}

/// Adam steps on the batch: the losses, and the parameter tensors whose gradient was zero at
/// the first step.
fn train(net: &mut Network, dev: &Cpu, b: &Batch, steps: usize) -> (Vec<f32>, Vec<String>) {
    let mut opt = Optimizer::new(OptimizerKind::Adam, 1e-2, 0.0);
    let mut losses = Vec::new();
    let mut dead = Vec::new();
    for step in 0..steps {
        let xt = dev.tensor_from_vec(b.x.clone(), (b.n, net.n_inputs));
        let y = dev.tensor_from_vec(b.onehot.clone(), (b.n, b.classes));
        let out = net.forward(xt.leaky_trace(), true);
        let loss = dfdx::losses::cross_entropy_with_logits_loss(out, y);
        losses.push(loss.array());
        let mut grads = loss.backward();
        if step == 0 {
            dead = param_grads(net, &mut grads)
                .into_iter()
                .filter(|(_, g)| g.iter().all(|v| *v == 0.0))
                .map(|(name, _)| name)
                .collect();
        }
        opt.step(net, &mut grads).expect("optimiser step");
    }
    (losses, dead)
}

#[test]
fn every_part_builds_and_trains_with_falling_loss() {
    let dev = Cpu::seed_from_u64(0);
    for c in part_cases() {
        let s = space(&text0(c.model));
        let shape = InputShape::new(c.shape.0, c.shape.1, c.shape.2);
        for seed in 0..4 {
            let cfg = sample(&s, seed);
            let nodes = nodes(&s, &cfg);
            let what = format!("{} (seed {seed}, {cfg:?})", c.what);
            assert!(
                flatten(&nodes).iter().any(|n| kind(n) == c.node),
                "{what}: no {} in {nodes:?}",
                c.node
            );
            let arch = Architecture::Net(nodes);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut net = build_network(&arch, shape, 3, &mut rng, &dev)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let counted = cost(&arch, shape, 3).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(counted.params, net.param_count, "{what}");
            let names = param_names(&mut net);
            for p in c.params {
                assert!(
                    names.iter().any(|n| n.contains(p)),
                    "{what}: no `{p}` in {names:?}"
                );
            }
            for p in c.no_params {
                assert!(
                    !names.iter().any(|n| n.contains(p)),
                    "{what}: `{p}` in {names:?}"
                );
            }

            let b = batch(shape, 12, 3, &mut rng);
            let (losses, dead) = train(&mut net, &dev, &b, 30);
            assert!(losses.iter().all(|l| l.is_finite()), "{what}: {losses:?}");
            let (first, last) = (losses[0], losses[losses.len() - 1]);
            assert!(
                last < 0.9 * first,
                "{what}: loss went from {first} to {last}: {losses:?}"
            );
            if c.all_grads {
                assert!(dead.is_empty(), "{what}: no gradient reaches {dead:?}");
            }
            let xt = dev.tensor_from_vec(b.x.clone(), (b.n, shape.len()));
            for train in [false, true] {
                let out = net.forward(xt.clone(), train).as_vec();
                assert_eq!(out.len(), b.n * 3, "{what}");
                assert!(out.iter().all(|v| v.is_finite()), "{what}: {out:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Gradients agree with finite differences
// ---------------------------------------------------------------------------------------------

/// loss = sum(out * r) in evaluation mode (no dropout, batch norm off in these graphs), in f64.
fn linear_loss(net: &mut Network, dev: &Cpu, x: &[f32], n: usize, r: &[f32]) -> f64 {
    let xt = dev.tensor_from_vec(x.to_vec(), (n, net.n_inputs));
    let out = net.forward(xt, false).as_vec();
    out.iter()
        .zip(r)
        .map(|(o, r)| f64::from(*o) * f64::from(*r))
        .sum()
}

/// Central differences with step `eps` agree with `analytic` within 1% (relative to the
/// larger of the two, floored at 0.1).
fn assert_close(what: &str, analytic: f64, up: f64, down: f64, eps: f64) {
    let numeric = (up - down) / (2.0 * eps);
    let tol = 1e-2 * numeric.abs().max(analytic.abs()).max(0.1);
    assert!(
        (numeric - analytic).abs() <= tol,
        "{what}: backprop {analytic} vs finite differences {numeric}"
    );
}

/// Checks d loss / d input and d loss / d every parameter entry of `arch`'s network.
fn check_gradients(arch: &Architecture, shape: InputShape, what: &str) {
    let n_out = 3;
    let n = 3;
    let eps = 1e-2f32;
    let dev = Cpu::seed_from_u64(0);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut net =
        build_network(arch, shape, n_out, &mut rng, &dev).unwrap_or_else(|e| panic!("{what}: {e}"));
    let x = random_vec(n * shape.len(), &mut rng);
    let r = random_vec(n * n_out, &mut rng);

    let xt = dev.tensor_from_vec(x.clone(), (n, shape.len()));
    let out = net.forward_with_input_grad(xt.leaky_trace(), false);
    let loss = (out * dev.tensor_from_vec(r.clone(), (n, n_out))).sum();
    let mut grads = loss.backward();
    let gx = grads.get(&xt).as_vec();
    let gp = param_grads(&mut net, &mut grads);

    // The input.
    for k in 0..x.len() {
        let mut xs = x.clone();
        xs[k] = x[k] + eps;
        let up = linear_loss(&mut net, &dev, &xs, n, &r);
        xs[k] = x[k] - eps;
        let down = linear_loss(&mut net, &dev, &xs, n, &r);
        let w = format!("{what}: d loss / d x[{k}]");
        assert_close(&w, f64::from(gx[k]), up, down, f64::from(eps));
    }
    assert!(
        gx.iter().any(|g| g.abs() > 1e-4),
        "{what}: input gradient is zero"
    );

    // Every entry of every parameter tensor.
    let mut values = Vec::new();
    net.visit_params(&mut |_, p, _| values.push(p.to_vec()));
    let set = |net: &mut Network, pi: usize, k: usize, v: f32| {
        let mut i = 0;
        net.visit_params(&mut |_, mut p, _| {
            if i == pi {
                let mut w = values[pi].clone();
                w[k] = v;
                p.copy_from(&w);
            }
            i += 1;
        });
    };
    for (pi, (name, g)) in gp.iter().enumerate() {
        for (k, gk) in g.iter().enumerate() {
            let w0 = values[pi][k];
            set(&mut net, pi, k, w0 + eps);
            let up = linear_loss(&mut net, &dev, &x, n, &r);
            set(&mut net, pi, k, w0 - eps);
            let down = linear_loss(&mut net, &dev, &x, n, &r);
            set(&mut net, pi, k, w0);
            let w = format!("{what}: d loss / d {name}[{k}]");
            assert_close(&w, f64::from(*gk), up, down, f64::from(eps));
        }
    }
}

/// The network of a space with a single configuration (its first sample).
fn only_arch(model: &str) -> Architecture {
    let s = space(&text0(model));
    Architecture::Net(nodes(&s, &sample(&s, 0)))
}

#[test]
fn residual_gradients_match_finite_differences() {
    let shape = InputShape::new(2, 5, 5);
    let identity = only_arch(
        "Sequential([Conv(3, 3), Residual(Sequential([Conv(kernel: 3), Act(Tanh), Conv(kernel: 3)])), Act(Tanh)])",
    );
    check_gradients(
        &identity,
        shape,
        "residual, identity shortcut, fused activation",
    );
    let channels = only_arch(
        "Sequential([Residual(Sequential([Conv(channels: 4, kernel: 3), Act(Gelu)])), Act(Sigmoid)])",
    );
    check_gradients(&channels, shape, "residual, projection for channels");
    let strided = only_arch(
        "Sequential([Conv(3, 3), Residual(Sequential([Conv(channels: Double, kernel: 3, stride: 2), Act(Tanh)]))])",
    );
    check_gradients(
        &strided,
        InputShape::new(2, 6, 6),
        "residual, strided projection",
    );
    let flat = only_arch("Sequential([Linear(5), Residual(Sequential([Linear(3), Act(Tanh)]))])");
    check_gradients(
        &flat,
        InputShape::new(1, 1, 4),
        "residual on features, projection",
    );
}

#[test]
fn dense_gradients_match_finite_differences() {
    let arch = only_arch(
        "Sequential([Conv(2, 3), Act(Tanh), Dense(body: Sequential([Act(Tanh), Conv(channels: 2, kernel: 3)]), layers: 2), GlobalAvgPool])",
    );
    check_gradients(&arch, InputShape::new(1, 5, 5), "dense");
    let signal = only_arch("Sequential([Dense(Sequential([Conv(2, 3), Act(Gelu)]), 3)])");
    check_gradients(&signal, InputShape::new(1, 1, 8), "dense on a 1-D signal");
}

#[test]
fn cell_gradients_match_finite_differences() {
    let s = space(&text0(
        "Sequential([Conv(2, 3), Named(\"c\", Cell(nodes: 4, ops: [Zero, Identity, Named(\"conv\", Sequential([Act(Tanh), Conv(kernel: 3)])), Named(\"pool\", Pool(Avg, 3, 1))]))])",
    ));
    let labels = ["zero", "identity", "conv", "pool"];
    // Every op kind, every node reached: 1 = conv(0); 2 = pool(0) + id(1); 3 = conv(1) + id(2).
    let chosen = [
        ("c.edge0_1", "conv"),
        ("c.edge0_2", "pool"),
        ("c.edge1_2", "identity"),
        ("c.edge0_3", "zero"),
        ("c.edge1_3", "conv"),
        ("c.edge2_3", "identity"),
    ];
    let mut cfg = sample(&s, 0);
    for (edge, op) in chosen {
        let i = labels.iter().position(|l| *l == op).expect("a label");
        assert!(label(&s, &cfg, edge).is_some(), "{edge} is a parameter");
        cfg.insert(edge.to_string(), ParamValue::Cat(i));
    }
    s.validate_config(&cfg)
        .unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
    let arch = Architecture::Net(nodes(&s, &cfg));
    check_gradients(&arch, InputShape::new(1, 4, 4), "cell of every op");
    for seed in 1..4 {
        let arch = Architecture::Net(nodes(&s, &sample(&s, seed)));
        check_gradients(
            &arch,
            InputShape::new(1, 4, 4),
            &format!("cell seed {seed}"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A branch's parameters exist exactly when the branch does
// ---------------------------------------------------------------------------------------------

const BRANCHES: &str = "Sequential([
        Named(\"pick\", OneOf([
            Named(\"conv\", Conv(channels: Choice([3, 4]), kernel: Choice([1, 3]))),
            Named(\"pool\", Pool(kind: Choice([Max, Avg]), size: 3, stride: 1)),
            Identity,
        ])),
        Named(\"stage\", Repeat(Range(0, 3), Conv(kernel: Choice([1, 3])))),
        Named(\"cell\", Cell(nodes: 3, ops: [Zero, Identity, Named(\"conv\", Conv(kernel: Choice([1, 3])))])),
    ])";

/// The parameters that must be present in `cfg` (its choices decide) and no others.
fn expected_params(space: &SearchSpace, cfg: &Config) -> Vec<String> {
    let mut want = vec!["pick".to_string(), "stage.times".to_string()];
    match label(space, cfg, "pick").as_deref() {
        Some("conv") => want.extend(["pick.conv.channels".into(), "pick.conv.kernel".into()]),
        Some("pool") => want.push("pick.pool.kind".into()),
        Some("identity") => {}
        other => panic!("`pick` took {other:?}"),
    }
    let times = int(cfg, "stage.times").expect("stage.times is an integer");
    for k in 1..=times {
        want.push(format!("stage.{k}.kernel"));
    }
    for edge in ["edge0_1", "edge0_2", "edge1_2"] {
        let e = format!("cell.{edge}");
        if label(space, cfg, &e).as_deref() == Some("conv") {
            want.push(format!("{e}.conv.kernel"));
        }
        want.push(e);
    }
    want.sort();
    want
}

/// Checks the parameters of `cfg` and that the resolved network follows its choices.
fn check_branches(space: &SearchSpace, cfg: &Config, what: &str) {
    space
        .validate_config(cfg)
        .unwrap_or_else(|e| panic!("{what}: {cfg:?}: {e}"));
    assert_eq!(model_keys(cfg), expected_params(space, cfg), "{what}");
    let nodes = nodes(space, cfg);
    let convs = layers(&nodes, "Conv");
    let times = int(cfg, "stage.times").expect("stage.times");
    let copies = convs
        .iter()
        .filter(|(p, _)| p.starts_with("stage."))
        .count();
    assert_eq!(copies as i64, times, "{what}: {nodes:?}");
    let picked_conv = convs.iter().any(|(p, _)| *p == "pick.conv");
    assert_eq!(
        picked_conv,
        label(space, cfg, "pick").as_deref() == Some("conv"),
        "{what}: {nodes:?}"
    );
}

#[test]
fn branch_parameters_exist_exactly_when_the_branch_is_chosen() {
    let s = space(&text0(BRANCHES));
    // Every conditional parameter is declared, with the condition of its branch.
    let times = s.param("stage.times").expect("stage.times");
    assert!(times.conditions.is_empty());
    for k in 1..=3 {
        let p = s
            .param(&format!("stage.{k}.kernel"))
            .expect("a copy's kernel");
        assert_eq!(
            p.conditions,
            vec![Condition::AtLeast {
                param: "stage.times".into(),
                min: k
            }]
        );
    }
    assert!(s.param("stage.4.kernel").is_none());
    let conv = s.param("pick.conv.kernel").expect("pick.conv.kernel");
    assert_eq!(
        conv.conditions,
        vec![Condition::OneOf {
            param: "pick".into(),
            choices: vec![0]
        }]
    );
    let edge_conv = s
        .param("cell.edge1_2.conv.kernel")
        .expect("an edge op's kernel");
    assert_eq!(
        edge_conv.conditions,
        vec![Condition::OneOf {
            param: "cell.edge1_2".into(),
            choices: vec![2]
        }]
    );

    let mut seen_picks = std::collections::BTreeSet::new();
    let mut seen_times = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let cfg = sample(&s, seed);
        check_branches(&s, &cfg, &format!("random seed {seed}"));
        seen_picks.insert(label(&s, &cfg, "pick"));
        seen_times.insert(int(&cfg, "stage.times"));
    }
    assert_eq!(seen_picks.len(), 3, "{seen_picks:?}");
    assert_eq!(seen_times.len(), 4, "{seen_times:?}");
}

/// A deterministic stand-in loss that prefers some branches, so model-based samplers have
/// something to learn.
fn branch_loss(space: &SearchSpace, cfg: &Config) -> f64 {
    let pick = match label(space, cfg, "pick").as_deref() {
        Some("conv") => 0.0,
        Some("pool") => 0.5,
        _ => 1.0,
    };
    let times = int(cfg, "stage.times").unwrap_or(0) as f64;
    pick + (times - 2.0).abs() * 0.3 + cfg.len() as f64 * 0.01
}

#[test]
fn every_sampler_respects_branches_after_history() {
    let s = space(&text0(BRANCHES));
    for strategy in [Strategy::Random, Strategy::Tpe, Strategy::Evolution] {
        let mut sampler = strategy.build(&s).expect("sampler builds");
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut history: Vec<Observation> = Vec::new();
        for number in 0..80 {
            let cfg = sampler.suggest(&s, &history, &mut rng);
            check_branches(&s, &cfg, &format!("{strategy:?} trial {number}"));
            let loss = branch_loss(&s, &cfg);
            history.push(Observation {
                number,
                config: cfg,
                state: TrialState::Complete,
                loss: Some(loss),
                intermediate: vec![loss],
                values: vec![loss],
                constraints: vec![],
            });
        }
        // Late suggestions still cover more than one branch of the choice or the count.
        let late: std::collections::BTreeSet<_> = history[40..]
            .iter()
            .map(|o| (label(&s, &o.config, "pick"), int(&o.config, "stage.times")))
            .collect();
        assert!(late.len() > 1, "{strategy:?} collapsed to {late:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Shared parameters and templates
// ---------------------------------------------------------------------------------------------

#[test]
fn a_shared_kernel_is_one_parameter_and_every_layer_gets_its_value() {
    let s = space(&text(
        "\"kernel\": Choice([1, 3, 5])",
        "Sequential([
            Conv(4, Param(\"kernel\")),
            Residual(Sequential([Conv(kernel: Param(\"kernel\")), Act(Relu)])),
            Repeat(2, SeparableConv(kernel: Param(\"kernel\"))),
            Conv(kernel: 3),
        ])",
    ));
    assert_eq!(
        model_params(&s),
        ["kernel"],
        "only the shared kernel is searched"
    );
    assert!(s.param("kernel").is_some_and(|p| p.conditions.is_empty()));
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..30 {
        let cfg = sample(&s, seed);
        let want = match label(&s, &cfg, "kernel").as_deref() {
            Some(k) => k.parse::<i64>().expect("an integer kernel"),
            None => panic!("no kernel in {cfg:?}"),
        };
        seen.insert(want);
        let nodes = nodes(&s, &cfg);
        let mut shared = layers(&nodes, "Conv");
        shared.extend(layers(&nodes, "SeparableConv"));
        assert_eq!(shared.len(), 5, "{nodes:?}");
        for (path, values) in shared {
            let k = value(values, "kernel");
            if path == "conv2" {
                assert_eq!(k, Some(&Lit::Int(3)), "the fixed kernel stays");
            } else {
                assert_eq!(k, Some(&Lit::Int(want)), "{path} in {cfg:?}");
            }
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn a_shared_parameter_used_in_one_option_is_conditional_on_it() {
    let s = space(&text(
        "\"k\": Choice([1, 3]), \"both\": Choice([2, 4]), \"always\": Choice([Relu, Tanh])",
        "Sequential([
            Named(\"pick\", OneOf([
                Named(\"a\", Sequential([Conv(kernel: Param(\"k\")), Linear(Param(\"both\")), Act(Param(\"always\"))])),
                Named(\"b\", Sequential([Linear(Param(\"both\"))])),
                Named(\"c\", Act(Param(\"always\"))),
            ])),
            Act(Param(\"always\")),
        ])",
    ));
    let cond = |choices: Vec<usize>| {
        vec![Condition::OneOf {
            param: "pick".into(),
            choices,
        }]
    };
    assert_eq!(
        s.param("k").map(|p| p.conditions.clone()),
        Some(cond(vec![0]))
    );
    // Used in two options: active when either is chosen.
    assert_eq!(
        s.param("both").map(|p| p.conditions.clone()),
        Some(cond(vec![0, 1]))
    );
    // Used outside the choice too: always active.
    assert_eq!(
        s.param("always").map(|p| p.conditions.clone()),
        Some(vec![])
    );
    for seed in 0..60 {
        let cfg = sample(&s, seed);
        let pick = label(&s, &cfg, "pick");
        assert_eq!(
            cfg.contains_key("k"),
            pick.as_deref() == Some("a"),
            "{cfg:?}"
        );
        assert_eq!(
            cfg.contains_key("both"),
            matches!(pick.as_deref(), Some("a" | "b")),
            "{cfg:?}"
        );
        assert!(cfg.contains_key("always"), "{cfg:?}");
    }
}

#[test]
fn a_template_is_instantiated_per_use_with_its_own_parameters() {
    let s = space(&text(
        "\"block\": Sequential([Conv(kernel: Choice([1, 3, 5])), Act(Relu)])",
        "Sequential([Named(\"b1\", Param(\"block\")), Named(\"b2\", Param(\"block\")), Param(\"block\"), Param(\"block\")])",
    ));
    assert_eq!(
        model_params(&s),
        [
            "b1.conv1.kernel",
            "b2.conv1.kernel",
            "block1.conv1.kernel",
            "block2.conv1.kernel"
        ]
    );
    let mut differ = false;
    for seed in 0..20 {
        let cfg = sample(&s, seed);
        let nodes = nodes(&s, &cfg);
        let convs = layers(&nodes, "Conv");
        let paths: Vec<&str> = convs.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            paths,
            ["b1.conv1", "b2.conv1", "block1.conv1", "block2.conv1"]
        );
        for (path, values) in &convs {
            let want = label(&s, &cfg, &format!("{path}.kernel"))
                .and_then(|l| l.parse::<i64>().ok())
                .expect("a kernel per copy");
            assert_eq!(value(values, "kernel"), Some(&Lit::Int(want)), "{path}");
        }
        differ |= cfg.get("b1.conv1.kernel") != cfg.get("b2.conv1.kernel");
    }
    assert!(
        differ,
        "the copies' kernels never differ: they are not independent"
    );
}

#[test]
fn a_one_of_with_a_shared_choice_follows_it() {
    let s = space(&text(
        "\"x\": Choice([wide, narrow])",
        "Sequential([
            Named(\"s1\", OneOf(options: [Named(\"wide\", Linear(8)), Named(\"narrow\", Linear(2))], choice: Param(\"x\"))),
            Act(Relu),
            Named(\"s2\", OneOf(options: [Named(\"narrow\", Linear(3)), Named(\"wide\", Linear(units: Range(6, 9)))], choice: Param(\"x\"))),
        ])",
    ));
    assert!(s.param("s1").is_none() && s.param("s2").is_none());
    let x = s.param("x").expect("the shared choice");
    assert!(x.conditions.is_empty());
    let wide_units = s
        .param("s2.wide.units")
        .expect("a wide option's own parameter");
    assert_eq!(
        wide_units.conditions,
        vec![Condition::OneOf {
            param: "x".into(),
            choices: vec![0]
        }]
    );
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..30 {
        let cfg = sample(&s, seed);
        let pick = label(&s, &cfg, "x").expect("x is set");
        seen.insert(pick.clone());
        let nodes = nodes(&s, &cfg);
        let paths: Vec<&str> = layers(&nodes, "Linear").iter().map(|(p, _)| *p).collect();
        assert_eq!(
            paths,
            [format!("s1.{pick}"), format!("s2.{pick}")],
            "{cfg:?}"
        );
        assert_eq!(cfg.contains_key("s2.wide.units"), pick == "wide", "{cfg:?}");
    }
    assert_eq!(seen.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 5. Every mistake is reported at FILE:LINE:COLUMN
// ---------------------------------------------------------------------------------------------

/// The (line, column) an error points at, checking the message's `FILE:LINE:COLUMN:` prefix.
fn position(err: &SpaceError) -> (usize, usize, String) {
    let msg = err.to_string();
    match err {
        SpaceError::Invalid { line, col, .. } => {
            assert!(
                msg.starts_with(&format!("{FILE}:{line}:{col}: ")),
                "message lacks FILE:LINE:COLUMN: {msg}"
            );
            (*line, *col, msg)
        }
        other => panic!("expected a positioned error, got {other}"),
    }
}

/// Removes the one `§` of `marked` and returns the text with the (line, column) it stood at.
fn unmark(marked: &str) -> (String, (usize, usize)) {
    assert_eq!(marked.matches('§').count(), 1, "one § in {marked}");
    let at = marked.find('§').expect("a §");
    let before = &marked[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (marked.replacen('§', "", 1), (line, col))
}

/// A bad space: `§` marks where the error must point; the message must contain `message`.
struct Bad {
    what: &'static str,
    text: String,
    message: &'static str,
}

fn bad(what: &'static str, params: Option<&str>, model: &str, message: &'static str) -> Bad {
    let text = match params {
        Some(p) => text(p, model),
        None => text0(model),
    };
    Bad {
        what,
        text,
        message,
    }
}

fn bad_cases() -> Vec<Bad> {
    let k = Some("\"k\": Choice([3, 5])");
    vec![
        bad("unknown part", None, "Sequential([Conv(4), §Foo(3)])", "unknown part `Foo`; the parts are Linear, Conv"),
        bad("unknown bare part", None, "Sequential([Conv(4), §Relu])", "unknown part `Relu`"),
        bad("unknown field", None, "Sequential([Conv(§chanels: 4)])", "unknown field `chanels` of `Conv`; expected one of `channels`, `kernel`, `stride`"),
        bad("unknown field of a structure part", None, "Repeat(§count: 2, body: Conv(4))", "unknown field `count` of `Repeat`"),
        bad("field written twice", None, "Sequential([Conv(channels: 4, §channels: 5)])", "`channels` is written twice"),
        bad("too many positional arguments", None, "Sequential([Conv(4, 3, 1, §7)])", "`Conv` takes at most 3 arguments (channels, kernel, stride), not 4"),
        bad("too many arguments to a part without fields", None, "Sequential([GlobalAvgPool(§1)])", "`GlobalAvgPool` takes at most 0 arguments"),
        bad("positional and named arguments mixed", k, "Sequential([OneOf([Conv(4), Identity], §choice: Param(\"k\"))])", "all by position or all by name"),
        bad("syntax error in a language model", None, "Sequential([Conv(4), Linear(3§])", "expected `,` or `)`"),
        bad("wrong value type", None, "Sequential([Conv(kernel: §Relu)])", "`kernel`: expected an integer, found `Relu`"),
        bad("wrong type in a domain", None, "Sequential([Act(Choice([Relu, §3]))])", "`function`: expected"),
        bad("part where a value goes", None, "Sequential([Conv(kernel: §Conv(3))])", "`kernel`: expected a value"),
        bad("value where a part goes", None, "Sequential([Conv(4), §3])", "expected a part"),
        bad("structure part without arguments", None, "Sequential([§OneOf])", "`OneOf` needs arguments"),
        bad("even kernel", None, "Sequential([Conv(kernel: §4)])", "kernel size 4 must be an odd number"),
        bad("even kernel in a choice", None, "Sequential([Conv(kernel: Choice([3, §4]))])", "kernel size 4 must be an odd number"),
        bad("even kernel of a separable conv", None, "Sequential([SeparableConv(4, §2)])", "kernel size 2 must be an odd number"),
        bad("zero channels", None, "Sequential([Conv(channels: §0)])", "`channels`: 0 is below the smallest allowed value 1"),
        bad("negative channels", None, "Sequential([Conv(§-3, 3)])", "`channels`: -3 is below the smallest allowed value 1"),
        bad("zero units", None, "Sequential([Linear(units: Choice([4, §0]))])", "`units`: 0 is below"),
        bad("dropout rate of 1", None, "Sequential([Linear(4), Dropout(§1.5)])", "`rate`"),
        bad("Param to an undefined name", k, "Sequential([Conv(kernel: Param(\"k\")), Conv(kernel: Param(§\"q\"))])", "no parameter `q` in `params: {..}` (it has `k`)"),
        bad("Param without params", None, "Sequential([Conv(kernel: Param(§\"q\"))])", "no parameter `q`: the file has no `params: {..}`"),
        bad("Param of an undefined part", None, "Sequential([Conv(4), Param(§\"block\")])", "no parameter `block`"),
        bad("a domain used as a part", k, "Sequential([Conv(kernel: Param(\"k\")), Param(§\"k\")])", "`k` in `params` is a domain; a part is expected here"),
        bad("a part used as a value", Some("\"blk\": Conv(4)"), "Sequential([Param(\"blk\"), Conv(kernel: Param(§\"blk\"))])", "`blk` in `params` is a part; `kernel` takes a value"),
        bad("a params entry never used", Some("\"k\": Choice([3, 5]), §\"unused\": Choice([1, 2])"), "Sequential([Conv(kernel: Param(\"k\"))])", "`unused` is declared in `params` but never used"),
        bad("a template never used", Some("§\"t\": Conv(4)"), "Sequential([Conv(4)])", "`t` is declared in `params` but never used"),
        bad("a params entry written twice", Some("\"k\": Choice([3, 5]), §\"k\": Choice([1])"), "Sequential([Conv(kernel: Param(\"k\"))])", "`k` is in `params` twice"),
        bad("one shared param as two types", k, "Sequential([Conv(kernel: Param(\"k\")), Act(§Param(\"k\"))])", "`k` is used here as `function`"),
        bad("one shared param as an integer and a number", k, "Sequential([Conv(kernel: Param(\"k\")), Dropout(rate: §Param(\"k\"))])", "`k` is used here as `rate`"),
        bad("a shared value that breaks a later use's rule", Some("\"k\": Choice([1, 2])"), "Sequential([Repeat(Param(\"k\"), Conv(4)), Conv(kernel: §Param(\"k\"))])", "`kernel`: `k` takes 2: kernel size 2 must be an odd number"),
        bad("a shared domain that breaks its first use's rule", Some("\"k\": Choice([3, §4])"), "Sequential([Conv(kernel: Param(\"k\"))])", "kernel size 4 must be an odd number"),
        bad("a shared choice used as a value", Some("\"x\": Choice([a, b])"), "Sequential([OneOf(options: [Named(\"a\", Conv(4)), Named(\"b\", Identity)], choice: Param(\"x\")), Conv(kernel: §Param(\"x\"))])", "`x` chooses a `OneOf`'s option and cannot also be `kernel`"),
        bad("a shared value used as a choice", k, "Sequential([Conv(kernel: Param(\"k\")), OneOf(options: [Conv(4), Identity], choice: Param(§\"k\"))])", "`k` is a value elsewhere and cannot choose"),
        bad("a shared choice that is not labels", Some("\"x\": §Range(1, 3)"), "Sequential([OneOf(options: [Conv(4), Identity], choice: Param(\"x\"))])", "`x` chooses a `OneOf`'s option, so it is `Choice([..])` or `Fixed(..)` of option labels"),
        bad("a choice label that is not an option", Some("\"x\": Choice([conv, §pool])"), "Sequential([OneOf(options: [Named(\"conv\", Conv(4)), Named(\"ident\", Identity)], choice: Param(\"x\"))])", "`x` takes `pool`, which is not an option of the `OneOf` at line 4"),
        bad("a choice that is not a Param", None, "Sequential([OneOf(options: [Conv(4), Identity], choice: §1)])", "a `OneOf`'s `choice` is `Param(\"name\")`"),
        bad("Zero outside a Cell", None, "Sequential([Conv(4), §Zero])", "`Zero` is an op of a `Cell`"),
        bad("Zero as a OneOf option", None, "Sequential([OneOf([§Zero, Identity])])", "`Zero` is an op of a `Cell`"),
        bad("recursive template", Some("\"t\": Sequential([Conv(4), §Param(\"t\")])"), "Sequential([Param(\"t\")])", "`t` uses itself (through t); a template cannot be recursive"),
        bad("mutually recursive templates", Some("\"a\": Sequential([Param(\"b\")]), \"b\": Residual(§Param(\"a\"))"), "Sequential([Param(\"a\")])", "a template cannot be recursive"),
        bad("empty OneOf", None, "Sequential([OneOf(§[])])", "`OneOf`'s options need at least one part"),
        bad("empty Sequential list is fine but options are not: empty Cell ops", None, "Sequential([Cell(4, §[])])", "a cell's `ops` need at least one part"),
        bad("OneOf options not a list", None, "Sequential([OneOf(§Conv(4))])", "`OneOf`'s options is a list"),
        bad("Cell nodes not fixed", None, "Sequential([Cell(nodes: §Range(2, 4), ops: [Identity])])", "a cell's `nodes` is a fixed number"),
        bad("Cell nodes above 8", None, "Sequential([Cell(nodes: §9, ops: [Identity])])", "a cell has 2 to 8 nodes (the input is one), not 9"),
        bad("Cell nodes below 2", None, "Sequential([Cell(§1, [Identity])])", "a cell has 2 to 8 nodes (the input is one), not 1"),
        bad("Range low above high", None, "Sequential([Linear(§Range(8, 4))])", "`units`: empty range: low 8 is above high 4"),
        bad("Range low above high of a Repeat", None, "Sequential([Repeat(§Range(3, 1), Conv(4))])", "empty range"),
        bad("Repeat times above 64", None, "Sequential([Repeat(§65, Conv(4))])", "`times`: 65 repetitions is more than 64"),
        bad("Repeat Fixed times above 64", None, "Sequential([Repeat(Fixed(§100), Conv(4))])", "100 repetitions is more than 64"),
        bad("Repeat Range above 64", None, "Sequential([Repeat(Range(1, §100), Conv(4))])", "100 repetitions is more than 64"),
        bad("shared Repeat count above 64", Some("\"n\": Range(1, §70)"), "Sequential([Repeat(Param(\"n\"), Conv(4))])", "70 repetitions is more than 64"),
        bad("Dense layers above 64", None, "Sequential([Dense(Conv(4), §65)])", "65 dense layers is more than 64"),
        bad("Dense without layers of growth: zero layers", None, "Sequential([Dense(Conv(4), §0)])", "`layers`: 0 is below"),
        bad("a model parameter named like a training setting", Some("§\"learning_rate\": Choice([3, 5])"), "Sequential([Conv(kernel: Param(\"learning_rate\"))])", "`learning_rate` is also a training or augmentation setting"),
        bad("a part named like a training setting", None, "Sequential([Named(\"optimizer\", §OneOf([Conv(4), Identity]))])", "`optimizer` is also a training or augmentation setting"),
        bad("a shared name that is also a part's path", Some("\"pick\": Choice([1, 3])"), "Sequential([Conv(kernel: Param(\"pick\")), Named(\"pick\", §OneOf([Conv(4), Identity]))])", "two parameters are named `pick`"),
        bad("a Named name with a dot", None, "Sequential([Named(§\"a.b\", Conv(4))])", "must be a non-empty name without dots or spaces"),
        bad("two parts with one name", None, "Sequential([Named(\"x\", Conv(4)), §Named(\"x\", Conv(4))])", "two parts side by side are both called `x`"),
        bad("a Named name clashing with a numbered part", None, "Sequential([Conv(4), §Named(\"conv1\", Conv(4))])", "both called `conv1`"),
        bad("Repeat without a body", None, "Sequential([§Repeat(2)])", "`Repeat` needs its `body`"),
    ]
}

#[test]
fn every_mistake_is_reported_at_its_file_line_and_column() {
    // Every case is checked and every failure listed, not only the first.
    let mut failures = Vec::new();
    for b in bad_cases() {
        let (text, want) = unmark(&b.text);
        let err = match std::panic::catch_unwind(|| parse(&text)) {
            Err(_) => {
                failures.push(format!("{}: panicked", b.what));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("{}: accepted", b.what));
                continue;
            }
            Ok(Err(e)) => e,
        };
        let (line, col, msg) = position(&err);
        if (line, col) != want {
            failures.push(format!("{}: want {want:?}, got {msg}", b.what));
        } else if !msg.contains(b.message) {
            failures.push(format!("{}: no `{}` in {msg}", b.what, b.message));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn params_belong_to_the_language_not_to_a_short_form() {
    let marked = "(\n    task: Classification,\n    §params: {\"k\": Choice([3, 5])},\n    model: Mlp((depth: Range(1, 2))),\n)";
    let (text, want) = unmark(marked);
    let (line, col, msg) = position(&parse(&text).expect_err("params with Mlp"));
    assert_eq!((line, col), want, "{msg}");
    assert!(
        msg.contains("shared parameters belong to a model written in the architecture language"),
        "{msg}"
    );
}

#[test]
fn a_training_setting_clash_points_at_the_model_even_when_the_setting_is_written() {
    let marked = "(\n    task: Classification,\n    params: {§\"momentum\": Range(0.1, 0.9)},\n    model: Sequential([Dropout(Param(\"momentum\"))]),\n    train: (optimizer: Fixed(Sgd), momentum: Range(0.8, 0.95)),\n)";
    let (text, want) = unmark(marked);
    let (line, col, msg) = position(&parse(&text).expect_err("a clash"));
    assert_eq!((line, col), want, "{msg}");
    assert!(msg.contains("`momentum` is also a training"), "{msg}");
}

#[test]
fn a_syntax_error_in_a_short_form_is_still_reported_by_ron() {
    let text = "(\n    task: Classification,\n    model: Mlp((depth: Range(1, 3)),\n)";
    let (line, _, msg) = position(&parse(text).expect_err("a missing `)`"));
    assert!((3..=4).contains(&line), "{msg}");
    assert!(!msg.contains("all by position"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// 6. Shape errors at build time name the part's path
// ---------------------------------------------------------------------------------------------

/// What goes wrong, the model, the input shape, and what the build error must say.
type ShapeCase = (
    &'static str,
    &'static str,
    (usize, usize, usize),
    &'static [&'static str],
);

#[test]
fn shape_errors_at_build_time_name_the_path() {
    let cases: &[ShapeCase] = &[
        (
            "a residual body no strided 1x1 projection matches",
            "Sequential([Named(\"stage\", Sequential([Conv(4, 3), Residual(Pool(Max, 2))]))])",
            (2, 6, 3),
            &["stage.residual1:", "no strided 1x1 projection"],
        ),
        (
            "a residual body that shrinks the map by one",
            "Sequential([Named(\"block\", Residual(Pool(Max, 2, 1)))])",
            (2, 6, 6),
            &["block:", "2x6x6", "2x5x5"],
        ),
        (
            "a downsampling of a 1x1 map",
            "Sequential([Conv(4, 3), Named(\"tail\", Sequential([GlobalAvgPool, Downsample(MaxPool)]))])",
            (2, 6, 6),
            &["tail.downsample1:", "1x1"],
        ),
        (
            "a cell op that changes the shape",
            "Sequential([Named(\"c\", Cell(nodes: 3, ops: [Named(\"wide\", Conv(channels: 7, kernel: 1))]))])",
            (2, 6, 6),
            &["c:", "edge 0->1", "2x6x6 into 7x6x6"],
        ),
        (
            "a dense layer that changes the map size",
            "Sequential([Named(\"grow\", Dense(Pool(Max, 2), 1))])",
            (2, 6, 6),
            &["grow.1:", "keep the map size"],
        ),
        (
            "a Downsample(Stride) followed by a Linear",
            "Sequential([Conv(4, 3), Named(\"head\", Sequential([Downsample(Stride), Linear(4)]))])",
            (2, 6, 6),
            &["head.linear1:", "head.downsample1", "not a `Linear`"],
        ),
        (
            "a Downsample(Stride) followed by a pool",
            "Sequential([Conv(4, 3), Downsample(Stride), Named(\"p\", Pool(Avg, 2))])",
            (2, 6, 6),
            &["p:", "downsample1", "not a `Pool`"],
        ),
        (
            "a Downsample(Stride) at the end",
            "Sequential([Conv(4, 3), Named(\"last\", Downsample(Stride))])",
            (2, 6, 6),
            &["last:", "no convolution after it"],
        ),
        (
            "a Downsample(Stride) into a cell",
            "Sequential([Conv(4, 3), Downsample(Stride), Named(\"cell\", Cell(3, [Identity]))])",
            (2, 6, 6),
            &["cell:", "keeps the map size"],
        ),
        (
            "a Downsample(Stride) as a cell op",
            "Sequential([Conv(4, 3), Named(\"c\", Cell(3, [Named(\"s\", Downsample(Stride))])), Conv(4, 3)])",
            (2, 6, 6),
            &["c:", "c.edge0_1.s", "edge 0->1"],
        ),
        (
            "a Downsample(Stride) before another edge's conv",
            "Sequential([Conv(4, 3), Named(\"c\", Cell(3, [Named(\"s\", Downsample(Stride)), Named(\"k\", Conv(kernel: 3))]))])",
            (2, 6, 6),
            // The sample puts a `Downsample(Stride)` on some edge: it is named, not the conv
            // edge that its stride would reach.
            &["c:", ".s has no convolution after it inside the op on edge"],
        ),
        (
            "a Downsample(Stride) at the end of a dense layer",
            "Sequential([Conv(4, 3), Named(\"d\", Dense(Sequential([Conv(2, 3), Downsample(Stride)]), 2))])",
            (2, 6, 6),
            &["d.1:", "d.1.downsample1", "inside the dense layer"],
        ),
        (
            "a Downsample(Stride) at the end of a residual body",
            "Sequential([Conv(4, 3), Named(\"r\", Residual(Sequential([Conv(4, 3), Downsample(Stride)]))), Conv(4, 3)])",
            (2, 6, 6),
            &["r:", "r.downsample1", "inside the residual body"],
        ),
        (
            "a pool window larger than the map",
            "Sequential([Named(\"stem\", Sequential([Conv(3, 3), Pool(Max, 8)]))])",
            (2, 6, 6),
            &["stem.pool1:"],
        ),
    ];
    let dev = Cpu::default();
    for (what, model, shape, needles) in cases {
        let s = space(&text0(model));
        let arch = Architecture::Net(nodes(&s, &sample(&s, 0)));
        let shape = InputShape::new(shape.0, shape.1, shape.2);
        let counted = match cost(&arch, shape, 3) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("{what}: counted {c:?} for {arch:?}"),
        };
        for n in *needles {
            assert!(counted.contains(n), "{what}: `{n}` not in: {counted}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        match build_network(&arch, shape, 3, &mut rng, &dev) {
            Err(e) => assert_eq!(e.to_string(), counted, "{what}"),
            Ok(_) => panic!("{what}: built"),
        }
    }
}

/// Grid search enumerates a discrete space of the language point by point: a shared choice, a
/// `OneOf` whose option has no parameters of its own, and a `Repeat` copy's parameter that exists
/// only when the copy does make 2 x 2 x 2 x (1 + 2) = 24 distinct valid configurations.
#[test]
fn grid_search_enumerates_each_active_configuration_of_a_discrete_space_once() {
    let s = space(
        "(task: Classification, params: {\"k\": Choice([1, 3])},
          model: Sequential([
            Conv(channels: Choice([4, 8]), kernel: Param(\"k\")),
            OneOf([Identity, Named(\"extra\", Sequential([Conv(kernel: Param(\"k\")), Act(Relu)]))]),
            Repeat(Range(0, 1), Conv(kernel: Choice([1, 3]))),
            GlobalAvgPool,
          ]))",
    );
    let mut grid = Strategy::Grid
        .build(&s)
        .expect("every parameter is discrete");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut seen = Vec::new();
    let mut history: Vec<Observation> = Vec::new();
    for number in 0..24 {
        let cfg = grid.suggest(&s, &history, &mut rng);
        history.push(Observation {
            number,
            config: cfg.clone(),
            state: TrialState::Running,
            loss: None,
            intermediate: Vec::new(),
            values: Vec::new(),
            constraints: Vec::new(),
        });
        s.validate_config(&cfg)
            .unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
        let key = format!("{cfg:?}");
        assert!(!seen.contains(&key), "{key} suggested twice");
        seen.push(key);
    }
    assert!(seen.iter().any(|c| c.contains("repeat1.1.kernel")));
    assert!(seen.iter().any(|c| !c.contains("repeat1.1.kernel")));
}
