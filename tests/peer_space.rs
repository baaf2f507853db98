//! `benches/spaces/peer_cnn.ron` is the peer harness's CNN space (`search.py --family cnn` in
//! `../shared/peers`): the same parameters over the same domains, and for the same choices the
//! same networks as the peer's `build_model` (every layer, map size and trainable parameter),
//! with the peer's networks worked out here straight from its Python code.

use dfdx::prelude::{HasShape, TensorFromVec};
use nas::data::InputShape;
use nas::nn::{build_network, cost, Layer, Network};
use nas::search::Strategy;
use nas::space::{Choice, Condition, Config, Distribution, ParamValue, SearchSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Sampled configurations per check.
const SEEDS: u64 = 200;
/// Classes of the head (digits, MNIST).
const N_OUT: usize = 10;

fn peer_space() -> SearchSpace {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/spaces/peer_cnn.ron");
    SearchSpace::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn sample(space: &SearchSpace, seed: u64) -> Config {
    let mut sampler = Strategy::Random.build(space).unwrap();
    sampler.suggest(space, &[], &mut ChaCha8Rng::seed_from_u64(seed))
}

// ---------------------------------------------------------------------------------------------
// The peer's side: its parameter dict and `build_model`, transliterated
// ---------------------------------------------------------------------------------------------

/// The architecture part of the dict `suggest(trial, "cnn")` returns.
#[derive(Clone, Debug, PartialEq)]
struct PeerParams {
    n_stages: usize,
    /// `blocks_s{i}`, one per stage.
    blocks: Vec<usize>,
    /// `channels_s{i}`, one per stage.
    channels: Vec<usize>,
    block_type: String,
    kernel: usize,
    downsample: String,
    activation: String,
    dropout: f64,
    batchnorm: bool,
}

/// nas's training and augmentation parameters: no part of `build_model`.
const TRAINING: [&str; 10] = [
    "optimizer",
    "learning_rate",
    "momentum",
    "batch_size",
    "weight_decay",
    "max_epochs",
    "patience",
    "shift",
    "hflip",
    "noise",
];

/// nas's configuration as the peer's parameter dict, by the mapping in peer_cnn.ron's comment;
/// every architecture parameter of `cfg` must be used.
fn translate(space: &SearchSpace, cfg: &Config) -> PeerParams {
    let used = RefCell::new(BTreeSet::new());
    let get = |name: &str| -> ParamValue {
        used.borrow_mut().insert(name.to_string());
        *cfg.get(name)
            .unwrap_or_else(|| panic!("{name} missing from {cfg:?}"))
    };
    let int = |name: &str| match get(name) {
        ParamValue::Int(i) => usize::try_from(i).unwrap(),
        other => panic!("{name}: expected an integer, got {other:?}"),
    };
    let choice = |name: &str| space.display_value(name, &get(name));

    let block_type = choice("block_type");
    let n_stages = 1 + int("stages.times");
    let mut blocks = vec![int("s0.times")];
    let mut channels = vec![choice("stem.conv1.channels").parse().unwrap()];
    for i in 1..n_stages {
        blocks.push(1 + int(&format!("stages.{i}.more.times")));
        // The channels of the stage's first block, whichever block type it is.
        let prefix = format!("stages.{i}.first.{block_type}.");
        let names: Vec<&String> = cfg
            .keys()
            .filter(|k| k.starts_with(&prefix) && k.ends_with(".channels"))
            .collect();
        assert_eq!(names.len(), 1, "stage {i}'s channels in {cfg:?}");
        channels.push(choice(names[0]).parse().unwrap());
    }
    let p = PeerParams {
        n_stages,
        blocks,
        channels,
        kernel: choice("kernel").parse().unwrap(),
        downsample: choice("downsample"),
        activation: choice("activation"),
        dropout: match get("dropout1.rate") {
            ParamValue::Float(x) => x,
            other => panic!("dropout: {other:?}"),
        },
        batchnorm: choice("batchnorm").parse().unwrap(),
        block_type,
    };
    let used = used.into_inner();
    let left: Vec<&String> = cfg
        .keys()
        .filter(|k| !used.contains(*k) && !TRAINING.contains(&k.as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "parameters the peer has no counterpart of: {left:?}"
    );
    p
}

/// One layer with what decides its parameters and its output map, in terms both sides share: a
/// `Conv1d` / `MaxPool1d` on `1xL` signals is the 2-D one of height 1.
#[derive(Clone, Debug, PartialEq)]
enum Net {
    Conv {
        cin: usize,
        cout: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: (usize, usize),
        groups: usize,
        bias: bool,
        out: (usize, usize),
    },
    BatchNorm(usize),
    Act(String),
    Pool {
        kind: String,
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: (usize, usize),
        out: (usize, usize),
    },
    /// `act(body(x) + shortcut(x))`; an empty shortcut is the identity.
    Residual {
        body: Vec<Net>,
        shortcut: Vec<Net>,
        act: Option<String>,
    },
    GlobalAvgPool {
        c: usize,
        hw: usize,
    },
    Dropout(f64),
    Linear {
        n_in: usize,
        n_out: usize,
    },
}

/// An input as the peer's `Trainer` shapes it: `(1, H, W)` images, `(1, L)` signals.
#[derive(Clone, Copy, Debug)]
enum Input {
    Image(usize, usize),
    Signal(usize),
}

impl Input {
    /// The same input for nas: a signal is one row.
    fn shape(self) -> InputShape {
        match self {
            Input::Image(h, w) => InputShape::new(1, h, w),
            Input::Signal(l) => InputShape::flat(l),
        }
    }
}

/// PyTorch's output length of a convolution or pooling window along one dimension
/// (`pooling_output_shape`: with `ceil_mode` it rounds up, but a last window must start inside
/// the input or its left padding).
fn torch_out(len: usize, k: usize, stride: usize, pad: usize, ceil: bool) -> usize {
    let (l, k, s, p) = (len as i64, k as i64, stride as i64, pad as i64);
    let up = if ceil { s - 1 } else { 0 };
    let mut out = (l + 2 * p - (k - 1) - 1 + up).div_euclid(s) + 1;
    if ceil && (out - 1) * s >= l + p {
        out -= 1;
    }
    usize::try_from(out).unwrap()
}

/// `build_model(p, "cnn", in_shape, n_out)` of search.py, layer by layer.
struct PeerBuild {
    p: PeerParams,
    /// `dim == 2`: `Conv2d` and `MaxPool2d`, else the 1-D ones.
    two_d: bool,
    /// The current map (height 1 for signals).
    map: (usize, usize),
    /// Kernel weights along a dimension where the input map is one value long, but the
    /// center one: they only ever meet the padding.
    one_long_taps: usize,
}

impl PeerBuild {
    /// `Conv(cin, cout, k, stride, pad, groups=groups, bias=not bn)`.
    fn conv(&mut self, cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Net {
        self.conv_grouped(cin, cout, k, stride, pad, 1)
    }

    fn conv_grouped(
        &mut self,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Net {
        let (kh, sh, ph) = if self.two_d {
            (k, stride, pad)
        } else {
            (1, 1, 0)
        };
        let live = |len: usize, k: usize| if len == 1 { 1 } else { k };
        let kept = live(self.map.0, kh) * live(self.map.1, k);
        self.one_long_taps += cin / groups * cout * (kh * k - kept);
        self.map = (
            torch_out(self.map.0, kh, sh, ph, false),
            torch_out(self.map.1, k, stride, pad, false),
        );
        Net::Conv {
            cin,
            cout,
            kernel: (kh, k),
            stride: (sh, stride),
            pad: (ph, pad),
            groups,
            bias: !self.p.batchnorm,
            out: self.map,
        }
    }

    /// `norm(c)`: `BN(c)` or `nn.Identity()` (no parameters, left out here).
    fn norm(&self, c: usize) -> Vec<Net> {
        if self.p.batchnorm {
            vec![Net::BatchNorm(c)]
        } else {
            Vec::new()
        }
    }

    fn act(&self) -> Net {
        Net::Act(self.p.activation.clone())
    }

    /// `Pool(2, ceil_mode=True)`.
    fn pool(&mut self) -> Net {
        let (kh, sh) = if self.two_d { (2, 2) } else { (1, 1) };
        self.map = (
            torch_out(self.map.0, kh, sh, 0, true),
            torch_out(self.map.1, 2, 2, 0, true),
        );
        Net::Pool {
            kind: "max".into(),
            kernel: (kh, 2),
            stride: (sh, 2),
            pad: (0, 0),
            out: self.map,
        }
    }

    /// `Block(cin, cout, stride)` for the network's `block_type`.
    fn block(&mut self, cin: usize, cout: usize, stride: usize) -> Vec<Net> {
        let (k, pad) = (self.p.kernel, self.p.kernel / 2);
        let mut f = Vec::new();
        match self.p.block_type.as_str() {
            "plain" => {
                f.push(self.conv(cin, cout, k, stride, pad));
                f.extend(self.norm(cout));
                f.push(self.act());
            }
            "residual" => {
                let before = self.map;
                f.push(self.conv(cin, cout, k, stride, pad));
                f.extend(self.norm(cout));
                f.push(self.act());
                f.push(self.conv(cout, cout, k, 1, pad));
                f.extend(self.norm(cout));
                let after = self.map;
                let mut short = Vec::new();
                if cin != cout || stride != 1 {
                    self.map = before;
                    short.push(self.conv(cin, cout, 1, stride, 0));
                    short.extend(self.norm(cout));
                    assert_eq!(self.map, after, "the peer's shortcut must match its body");
                }
                return vec![Net::Residual {
                    body: f,
                    shortcut: short,
                    act: Some(self.p.activation.clone()),
                }];
            }
            "separable" => {
                f.push(self.conv_grouped(cin, cin, k, stride, pad, cin));
                f.extend(self.norm(cin));
                f.push(self.act());
                f.push(self.conv(cin, cout, 1, 1, 0));
                f.extend(self.norm(cout));
                f.push(self.act());
            }
            other => panic!("block_type {other}"),
        }
        f
    }
}

/// The peer's network: its layers, the map each stage ends with, and its weights that only ever
/// meet padding on maps one value long.
struct PeerNet {
    layers: Vec<Net>,
    stage_maps: Vec<(usize, usize)>,
    one_long_taps: usize,
}

fn build_model(p: &PeerParams, input: Input, n_out: usize) -> PeerNet {
    let (two_d, map) = match input {
        Input::Image(h, w) => (true, (h, w)),
        Input::Signal(l) => (false, (1, l)),
    };
    let mut b = PeerBuild {
        p: p.clone(),
        two_d,
        map,
        one_long_taps: 0,
    };
    let (k, pad) = (p.kernel, p.kernel / 2);
    let c0 = p.channels[0];
    let mut layers = vec![b.conv(1, c0, k, 1, pad)];
    layers.extend(b.norm(c0));
    layers.push(b.act());
    let mut cin = c0;
    let mut stage_maps = Vec::new();
    for s in 0..p.n_stages {
        let cout = p.channels[s];
        for blk in 0..p.blocks[s] {
            let mut stride = 1;
            if s > 0 && blk == 0 {
                if p.downsample == "maxpool" {
                    layers.push(b.pool());
                } else {
                    stride = 2;
                }
            }
            layers.extend(b.block(cin, cout, stride));
            cin = cout;
        }
        stage_maps.push(b.map);
    }
    layers.push(Net::GlobalAvgPool {
        c: cin,
        hw: b.map.0 * b.map.1,
    });
    if p.dropout > 0.0 {
        layers.push(Net::Dropout(p.dropout));
    }
    layers.push(Net::Linear { n_in: cin, n_out });
    PeerNet {
        layers,
        stage_maps,
        one_long_taps: b.one_long_taps,
    }
}

/// Trainable scalars, as `sum(t.numel() for t in model.parameters())` counts them.
fn params(layers: &[Net]) -> usize {
    layers
        .iter()
        .map(|l| match l {
            Net::Conv {
                cin,
                cout,
                kernel: (kh, kw),
                groups,
                bias,
                ..
            } => cin / groups * kh * kw * cout + if *bias { *cout } else { 0 },
            Net::BatchNorm(c) => 2 * c,
            Net::Residual { body, shortcut, .. } => params(body) + params(shortcut),
            Net::Linear { n_in, n_out } => n_in * n_out + n_out,
            Net::Act(_) | Net::Pool { .. } | Net::GlobalAvgPool { .. } | Net::Dropout(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// nas's side
// ---------------------------------------------------------------------------------------------

fn act_name(a: nas::space::Activation) -> String {
    format!("{a:?}").to_lowercase()
}

/// The layers nas built, in the shared terms.
fn nas_layers(layers: &[Layer]) -> Vec<Net> {
    layers
        .iter()
        .map(|l| match l {
            Layer::Conv { b, geom: g, .. } => Net::Conv {
                cin: g.in_c,
                cout: g.out_c,
                kernel: (g.kh, g.kw),
                stride: (g.stride_h, g.stride_w),
                pad: (g.pad_h, g.pad_w),
                groups: g.groups,
                bias: b.is_some(),
                out: (g.out_h(), g.out_w()),
            },
            Layer::BatchNorm { c, .. } => Net::BatchNorm(*c),
            Layer::Act(a) => Net::Act(act_name(*a)),
            Layer::Pool { kind, geom: g } => Net::Pool {
                kind: format!("{kind:?}").to_lowercase(),
                kernel: (g.kh, g.kw),
                stride: (g.stride_h, g.stride_w),
                pad: (g.pad_h, g.pad_w),
                out: (g.out_h(), g.out_w()),
            },
            Layer::Residual {
                body,
                shortcut,
                act,
            } => Net::Residual {
                body: nas_layers(body),
                shortcut: nas_layers(shortcut),
                act: act.map(act_name),
            },
            Layer::GlobalAvgPool { c, hw } => Net::GlobalAvgPool { c: *c, hw: *hw },
            Layer::Dropout(p) => Net::Dropout(*p),
            Layer::Linear { w, .. } => Net::Linear {
                n_in: w.shape().0,
                n_out: w.shape().1,
            },
            Layer::DenseGrow { .. } | Layer::Cell { .. } => {
                panic!("the peer has no dense or cell layers")
            }
        })
        .collect()
}

/// The sizes a network's map takes, in order, each change once: the stem's, then each stage's
/// (every stage after the first halves the map).
fn map_sizes(layers: &[Net]) -> Vec<(usize, usize)> {
    fn out(l: &Net) -> Option<(usize, usize)> {
        match l {
            Net::Conv { out, .. } | Net::Pool { out, .. } => Some(*out),
            Net::Residual { body, .. } => body.iter().rev().find_map(out),
            _ => None,
        }
    }
    let mut sizes: Vec<(usize, usize)> = Vec::new();
    for m in layers.iter().filter_map(out) {
        if sizes.last() != Some(&m) {
            sizes.push(m);
        }
    }
    sizes
}

/// Checks that nas builds the peer's network for `cfg` on `input`, and returns nas's.
fn check_same_network(space: &SearchSpace, cfg: &Config, input: Input) -> Network {
    let p = translate(space, cfg);
    let peer = build_model(&p, input, N_OUT);
    let arch = space.decode(cfg).arch;
    let what = format!("{p:?} on {input:?}");

    let counted = cost(&arch, input.shape(), N_OUT).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(counted.params, params(&peer.layers), "parameters of {what}");

    let dev = dfdx::prelude::Cpu::default();
    let net = build_network(
        &arch,
        input.shape(),
        N_OUT,
        &mut ChaCha8Rng::seed_from_u64(0),
        &dev,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(net.param_count, counted.params, "{what}");
    let layers = nas_layers(&net.layers);
    assert_eq!(
        map_sizes(&layers),
        peer.stage_maps,
        "map of each stage of {what}"
    );
    assert_eq!(layers, peer.layers, "layers of {what}");
    net
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_peer_parameter_has_its_domain_in_the_space() {
    let space = peer_space();
    let ints = |xs: &[i64]| Distribution::Categorical {
        choices: xs.iter().map(|x| Choice::Int(*x)).collect(),
    };
    let labels = |xs: &[&str]| Distribution::Categorical {
        choices: xs.iter().map(|x| Choice::Str(x.to_string())).collect(),
    };
    let int = |low, high| Distribution::Int {
        low,
        high,
        log: false,
    };
    let float = |low, high, log| Distribution::Float { low, high, log };
    let at_least = |min| Condition::AtLeast {
        param: "stages.times".into(),
        min,
    };
    let block = |i| Condition::OneOf {
        param: "block_type".into(),
        choices: vec![i],
    };
    // (peer parameter, nas parameter, domain, conditions); n_stages and blocks_s{i > 0} are one
    // more than their nas counts.
    let mut expected = vec![
        ("n_stages", "stages.times".to_string(), int(0, 2), vec![]),
        ("blocks_s0", "s0.times".into(), int(1, 2), vec![]),
        (
            "channels_s0",
            "stem.conv1.channels".into(),
            ints(&[16, 32, 64]),
            vec![],
        ),
        (
            "block_type",
            "block_type".into(),
            labels(&["plain", "residual", "separable"]),
            vec![],
        ),
        ("kernel", "kernel".into(), ints(&[3, 5]), vec![]),
        (
            "downsample",
            "downsample".into(),
            labels(&["maxpool", "stride"]),
            vec![],
        ),
        (
            "activation",
            "activation".into(),
            labels(&["relu", "tanh", "sigmoid"]),
            vec![],
        ),
        (
            "dropout",
            "dropout1.rate".into(),
            float(0.0, 0.5, false),
            vec![],
        ),
        (
            "batchnorm",
            "batchnorm".into(),
            Distribution::Categorical {
                choices: vec![Choice::Bool(true), Choice::Bool(false)],
            },
            vec![],
        ),
        (
            "optimizer",
            "optimizer".into(),
            labels(&["sgd", "adam"]),
            vec![],
        ),
        (
            "momentum",
            "momentum".into(),
            float(0.0, 0.95, false),
            vec![Condition::OneOf {
                param: "optimizer".into(),
                choices: vec![0],
            }],
        ),
        (
            "lr",
            "learning_rate".into(),
            float(1e-4, 1e-1, true),
            vec![],
        ),
        (
            "batch_size",
            "batch_size".into(),
            ints(&[32, 64, 128]),
            vec![],
        ),
        (
            "weight_decay",
            "weight_decay".into(),
            float(1e-6, 1e-2, true),
            vec![],
        ),
        // The protocol's fixed budget (CNN: 30 epochs, patience 5) and no augmentation.
        ("(max epochs)", "max_epochs".into(), ints(&[30]), vec![]),
        ("(patience)", "patience".into(), ints(&[5]), vec![]),
        ("(no augmentation)", "shift".into(), ints(&[0]), vec![]),
        (
            "(no augmentation)",
            "hflip".into(),
            Distribution::Categorical {
                choices: vec![Choice::Bool(false)],
            },
            vec![],
        ),
        (
            "(no augmentation)",
            "noise".into(),
            Distribution::Categorical {
                choices: vec![Choice::Float(0.0)],
            },
            vec![],
        ),
    ];
    for i in 1..3 {
        expected.push((
            "blocks_s{i}",
            format!("stages.{i}.more.times"),
            int(0, 1),
            vec![at_least(i)],
        ));
        // One per block type, so that the active one is the stage's first block's.
        for (j, b) in ["plain.conv1", "residual.residual1.conv1", "separable"]
            .iter()
            .enumerate()
        {
            expected.push((
                "channels_s{i}",
                format!("stages.{i}.first.{b}.channels"),
                ints(&[16, 32, 64]),
                vec![at_least(i), block(j)],
            ));
        }
    }
    let got: BTreeMap<&str, _> = space
        .params
        .iter()
        .map(|p| (p.name.as_str(), (&p.dist, &p.conditions)))
        .collect();
    for (peer, name, dist, conditions) in &expected {
        let Some((d, c)) = got.get(name.as_str()) else {
            panic!("no parameter {name} for the peer's {peer}");
        };
        assert_eq!(*d, dist, "domain of {name} (the peer's {peer})");
        assert_eq!(*c, conditions, "when {name} (the peer's {peer}) exists");
    }
    let names: BTreeSet<&str> = expected.iter().map(|e| e.1.as_str()).collect();
    let extra: Vec<&&str> = got.keys().filter(|n| !names.contains(*n)).collect();
    assert!(
        extra.is_empty(),
        "parameters the peer does not have: {extra:?}"
    );
}

#[test]
fn sampled_configurations_cover_every_peer_value() {
    let space = peer_space();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stages = [0usize; 3];
    let mut dropout = (f64::INFINITY, f64::NEG_INFINITY);
    for seed in 0..SEEDS {
        let p = translate(&space, &sample(&space, seed));
        stages[p.n_stages - 1] += 1;
        dropout = (dropout.0.min(p.dropout), dropout.1.max(p.dropout));
        let mut note = |k: String, v: String| {
            seen.entry(k).or_default().insert(v);
        };
        note("n_stages".into(), p.n_stages.to_string());
        for s in 0..p.n_stages {
            note(format!("blocks_s{s}"), p.blocks[s].to_string());
            note(format!("channels_s{s}"), p.channels[s].to_string());
        }
        note("block_type".into(), p.block_type);
        note("kernel".into(), p.kernel.to_string());
        note("downsample".into(), p.downsample);
        note("activation".into(), p.activation);
        note("batchnorm".into(), p.batchnorm.to_string());
    }
    let set = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
    let mut want = BTreeMap::from([
        ("n_stages".to_string(), set(&["1", "2", "3"])),
        (
            "block_type".into(),
            set(&["plain", "residual", "separable"]),
        ),
        ("kernel".into(), set(&["3", "5"])),
        ("downsample".into(), set(&["maxpool", "stride"])),
        ("activation".into(), set(&["relu", "tanh", "sigmoid"])),
        ("batchnorm".into(), set(&["true", "false"])),
    ]);
    for s in 0..3 {
        want.insert(format!("blocks_s{s}"), set(&["1", "2"]));
        want.insert(format!("channels_s{s}"), set(&["16", "32", "64"]));
    }
    assert_eq!(seen, want);
    // suggest_int("n_stages", 1, 3) is uniform.
    for (i, n) in stages.iter().enumerate() {
        assert!(
            (40..=94).contains(n),
            "n_stages = {}: {n} of {SEEDS}",
            i + 1
        );
    }
    assert!(dropout.0 >= 0.0 && dropout.0 < 0.05 && dropout.1 > 0.45 && dropout.1 <= 0.5);
}

#[test]
fn the_peers_map_sizes_follow_pytorch() {
    // Conv2d(k, stride 2, padding k // 2) and MaxPool2d(2, ceil_mode=True) both round up.
    assert_eq!(torch_out(7, 3, 2, 1, false), 4);
    assert_eq!(torch_out(7, 5, 2, 2, false), 4);
    assert_eq!(torch_out(7, 2, 2, 0, true), 4);
    assert_eq!(torch_out(7, 2, 2, 0, false), 3);
    assert_eq!(torch_out(1, 2, 2, 0, true), 1);
    let p = |downsample: &str| PeerParams {
        n_stages: 3,
        blocks: vec![1, 2, 1],
        channels: vec![16, 32, 64],
        block_type: "residual".into(),
        kernel: 5,
        downsample: downsample.into(),
        activation: "relu".into(),
        dropout: 0.25,
        batchnorm: true,
    };
    for d in ["maxpool", "stride"] {
        let maps = |input| build_model(&p(d), input, N_OUT).stage_maps;
        assert_eq!(maps(Input::Image(8, 8)), [(8, 8), (4, 4), (2, 2)]);
        assert_eq!(maps(Input::Image(28, 28)), [(28, 28), (14, 14), (7, 7)]);
        assert_eq!(maps(Input::Image(13, 10)), [(13, 10), (7, 5), (4, 3)]);
        assert_eq!(maps(Input::Signal(10)), [(1, 10), (1, 5), (1, 3)]);
    }
    // The stem 1->16 (5x5, no bias before BN) and BN; stage 0: one residual block 16->16; stage 1:
    // two 16->32->32 blocks, the first with a projection; stage 2: 32->64 with a projection;
    // the head 64->10.
    let conv = |cin: usize, cout: usize, k: usize| cin * cout * k * k;
    let residual = |cin, cout, proj: bool| {
        conv(cin, cout, 5)
            + 2 * cout
            + conv(cout, cout, 5)
            + 2 * cout
            + if proj {
                conv(cin, cout, 1) + 2 * cout
            } else {
                0
            }
    };
    let total = conv(1, 16, 5)
        + 32
        + residual(16, 16, false)
        + residual(16, 32, true)
        + residual(32, 32, false)
        + residual(32, 64, true)
        + 64 * 10
        + 10;
    assert_eq!(
        params(&build_model(&p("stride"), Input::Image(8, 8), N_OUT).layers),
        total
    );
}

#[test]
fn sampled_configurations_build_the_peers_networks_for_digits_and_mnist() {
    let space = peer_space();
    for seed in 0..SEEDS {
        let cfg = sample(&space, seed);
        for input in [Input::Image(8, 8), Input::Image(28, 28)] {
            check_same_network(&space, &cfg, input);
        }
    }
}

#[test]
fn sampled_configurations_build_the_peers_networks_on_odd_maps_and_signals() {
    // Maps of odd size meet the max pooling (which rounds up in the peer); signals are `1xL`,
    // with `Conv1d` in the peer (10: the diabetes data set's features). A few networks also
    // run, through the partial windows of the pooling.
    let space = peer_space();
    let dev = dfdx::prelude::Cpu::default();
    for seed in 0..SEEDS {
        let cfg = sample(&space, seed);
        for input in [Input::Image(13, 10), Input::Image(7, 7), Input::Signal(10)] {
            let mut net = check_same_network(&space, &cfg, input);
            if seed < 20 {
                let n = input.shape().len();
                let x = dev.tensor_from_vec((0..2 * n).map(|i| (i % 7) as f32).collect(), (2, n));
                assert_eq!(*net.forward(x, false).shape(), (2, N_OUT));
            }
        }
    }
}

#[test]
fn on_maps_one_value_long_nas_leaves_out_the_weights_that_only_meet_padding() {
    // A known difference, not a different network: iris's 4 features are one value long after
    // two downsamplings, where nas convolves with the kernel's center alone and PyTorch keeps
    // every "same"-padded tap (the others only multiply zero padding, so they never change the
    // output nor get a gradient). The counts differ by exactly those weights; the maps agree.
    let space = peer_space();
    let input = Input::Signal(4);
    let mut differing = 0;
    for seed in 0..SEEDS {
        let cfg = sample(&space, seed);
        let p = translate(&space, &cfg);
        let peer = build_model(&p, input, N_OUT);
        let arch = space.decode(&cfg).arch;
        let counted = cost(&arch, input.shape(), N_OUT).unwrap();
        assert_eq!(
            counted.params + peer.one_long_taps,
            params(&peer.layers),
            "{p:?}"
        );
        let dev = dfdx::prelude::Cpu::default();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let net = build_network(&arch, input.shape(), N_OUT, &mut rng, &dev).unwrap();
        assert_eq!(
            map_sizes(&nas_layers(&net.layers)),
            peer.stage_maps,
            "{p:?}"
        );
        differing += usize::from(peer.one_long_taps > 0);
    }
    assert!(differing > SEEDS as usize / 4, "{differing} of {SEEDS}");
}

#[test]
fn pooling_that_rounds_up_gives_the_last_row_and_column_windows_of_their_own() {
    // MaxPool2d / AvgPool2d(2, ceil_mode=True) of the 3x5 plane 0..15: windows of rows {0, 1},
    // {2} and columns {0, 1}, {2, 3}, {4}; an average divides by the values inside the input.
    use nas::nn::ops::{pool2d, Pool2dGeom, PoolKind};
    let geom = Pool2dGeom {
        c: 1,
        h: 3,
        w: 5,
        kh: 2,
        kw: 2,
        stride_h: 2,
        stride_w: 2,
        pad_h: 0,
        pad_w: 0,
        ceil: true,
    };
    assert_eq!((geom.out_h(), geom.out_w()), (2, 3));
    // Every small geometry has the size PyTorch gives it, rounding down or up.
    for (len, k, stride, ceil) in (1..12).flat_map(|l| {
        (1..=4).flat_map(move |k| (1..=3).flat_map(move |s| [(l, k, s, false), (l, k, s, true)]))
    }) {
        for pad in 0..=k / 2 {
            let g = Pool2dGeom {
                h: len,
                w: len,
                kh: k,
                kw: k,
                stride_h: stride,
                stride_w: stride,
                pad_h: pad,
                pad_w: pad,
                ceil,
                ..geom
            };
            if g.check().is_ok() {
                let want = torch_out(len, k, stride, pad, ceil);
                assert_eq!((g.out_h(), g.out_w()), (want, want), "{g:?}");
            }
        }
    }
    let dev = dfdx::prelude::Cpu::default();
    let x: Vec<f32> = (0..15).map(|v| v as f32).collect();
    let run = |kind| {
        let t = dev.tensor_from_vec(x.clone(), (1usize, 15usize));
        pool2d(t, kind, &geom).as_vec()
    };
    assert_eq!(run(PoolKind::Max), [6.0, 8.0, 9.0, 11.0, 13.0, 14.0]);
    assert_eq!(run(PoolKind::Avg), [3.0, 5.0, 6.5, 10.5, 12.5, 14.0]);
}
