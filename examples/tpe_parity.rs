//! Does nas's TPE suggest what Optuna's does, given the same history?
//!
//! `cargo run --release --example tpe_parity -- PEER_JSON [DRAWS]` reads a CNN result of
//! `../shared/peers/search.py` (`benches/compare_peer.sh --keep DIR` leaves them as
//! `DIR/peer<seed>.json`), takes its first 10 trials (its random start-up, with their scores),
//! writes them as trials of `benches/spaces/peer_cnn.ron` (the same space in the architecture
//! language), and prints DRAWS (default 200) suggestions of nas's TPE for the next trial, each
//! from its own seed, one JSON line each in the peer's parameter names. `benches/tpe_parity.py`
//! does the same with Optuna and compares the two. The spaces differ in one way: nas names a
//! stage's channels per block type (they are different layers), the peer shares one name.

use std::collections::BTreeMap;
use std::path::Path;

use nas::search::{Observation, Sampler, TpeSampler, TrialState};
use nas::space::{Choice, Config, Distribution, ParamValue, SearchSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Where the space file lies, from the checkout.
const SPACE: &str = "benches/spaces/peer_cnn.ron";

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("tpe_parity: {msg}");
    std::process::exit(2)
}

/// Parameters both spaces have, by nas's name and the peer's.
const SHARED: [(&str, &str); 11] = [
    ("block_type", "block_type"),
    ("kernel", "kernel"),
    ("downsample", "downsample"),
    ("activation", "activation"),
    ("dropout1.rate", "dropout"),
    ("batchnorm", "batchnorm"),
    ("optimizer", "optimizer"),
    ("momentum", "momentum"),
    ("learning_rate", "lr"),
    ("batch_size", "batch_size"),
    ("weight_decay", "weight_decay"),
];

/// The peer's value of nas parameter `name`, in the peer's units (`None`: inactive).
fn peer_value(name: &str, p: &Value) -> Option<Value> {
    let stages = p["n_stages"].as_i64()?;
    let block = p["block_type"].as_str()?;
    let direct = |k: &str| p.get(k).cloned();
    if let Some((_, theirs)) = SHARED.iter().find(|(ours, _)| *ours == name) {
        return direct(theirs);
    }
    match name {
        "stem.conv1.channels" => direct("channels_s0"),
        "s0.times" => direct("blocks_s0"),
        "stages.times" => Some(json!(stages - 1)),
        "max_epochs" => Some(json!(30)),
        "patience" => Some(json!(5)),
        "shift" | "noise" => Some(json!(0)),
        "hflip" => Some(json!(false)),
        _ if name.starts_with("stages.") => {
            let mut parts = name.split('.');
            let i: i64 = parts.nth(1)?.parse().ok()?;
            if i >= stages {
                return None;
            }
            match parts.next()? {
                "more" => Some(json!(p[format!("blocks_s{i}")].as_i64()? - 1)),
                "first" if parts.next()? == block => direct(&format!("channels_s{i}")),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `v` as a value of `dist`.
fn param_value(dist: &Distribution, v: &Value) -> Option<ParamValue> {
    match dist {
        Distribution::Int { .. } => Some(ParamValue::Int(v.as_i64()?)),
        Distribution::Float { .. } => Some(ParamValue::Float(v.as_f64()?)),
        Distribution::Categorical { choices } => choices
            .iter()
            .position(|c| match (c, v) {
                (Choice::Int(i), Value::Number(n)) => n.as_i64() == Some(*i),
                (Choice::Float(x), Value::Number(n)) => n.as_f64() == Some(*x),
                (Choice::Bool(b), Value::Bool(w)) => b == w,
                (Choice::Str(s), Value::String(w)) => s.eq_ignore_ascii_case(w),
                _ => false,
            })
            .map(ParamValue::Cat),
    }
}

/// A nas configuration in the peer's parameter names.
fn peer_params(space: &SearchSpace, c: &Config) -> Value {
    let get = |name: &str| -> Option<Value> {
        let spec = space.params.iter().find(|s| s.name == name)?;
        Some(match (c.get(name)?, &spec.dist) {
            (ParamValue::Int(i), _) => json!(i),
            (ParamValue::Float(x), _) => json!(x),
            (ParamValue::Cat(i), Distribution::Categorical { choices }) => match &choices[*i] {
                Choice::Int(i) => json!(i),
                Choice::Float(x) => json!(x),
                Choice::Bool(b) => json!(b),
                Choice::Str(s) => json!(s.to_lowercase()),
            },
            _ => return None,
        })
    };
    let mut p = BTreeMap::new();
    let stages = get("stages.times").and_then(|v| v.as_i64()).unwrap_or(0) + 1;
    p.insert("n_stages".to_string(), json!(stages));
    p.insert(
        "blocks_s0".to_string(),
        get("s0.times").unwrap_or(Value::Null),
    );
    p.insert(
        "channels_s0".to_string(),
        get("stem.conv1.channels").unwrap_or(Value::Null),
    );
    for (ours, theirs) in SHARED {
        if let Some(v) = get(ours) {
            p.insert(theirs.to_string(), v);
        }
    }
    for i in 1..stages {
        let more = get(&format!("stages.{i}.more.times")).and_then(|v| v.as_i64());
        p.insert(format!("blocks_s{i}"), json!(more.unwrap_or(0) + 1));
        let ch = space
            .params
            .iter()
            .filter(|s| s.name.starts_with(&format!("stages.{i}.first.")))
            .find_map(|s| get(&s.name));
        p.insert(format!("channels_s{i}"), ch.unwrap_or(Value::Null));
    }
    json!(p)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(peer_file) = args.first() else {
        fail("usage: tpe_parity PEER_JSON [DRAWS]")
    };
    let draws: u64 = match args.get(1).map(|d| d.parse()) {
        None => 200,
        Some(Ok(d)) => d,
        Some(Err(_)) => fail(format!("DRAWS `{}` is not a count", args[1])),
    };
    let text =
        std::fs::read_to_string(peer_file).unwrap_or_else(|e| fail(format!("{peer_file}: {e}")));
    let peer: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| fail(format!("{peer_file}: {e}")));
    let space = SearchSpace::from_file(Path::new(SPACE)).unwrap_or_else(|e| fail(e));
    let trials = peer["trials_detail"]
        .as_array()
        .unwrap_or_else(|| fail("no trials_detail"));
    let mut history = Vec::new();
    for t in trials
        .iter()
        .filter(|t| t["number"].as_u64().is_some_and(|n| n < 10))
    {
        let p = &t["params"];
        let mut config = Config::new();
        for spec in &space.params {
            if let Some(v) = peer_value(&spec.name, p) {
                let pv = param_value(&spec.dist, &v)
                    .unwrap_or_else(|| fail(format!("{}: {v} is not in its domain", spec.name)));
                config.insert(spec.name.clone(), pv);
            }
        }
        let score = t["value"]
            .as_f64()
            .unwrap_or_else(|| fail("a start-up trial without a value"));
        history.push(Observation {
            number: history.len(),
            config,
            state: TrialState::Complete,
            loss: Some(-score),
            intermediate: Vec::new(),
            values: vec![-score],
            constraints: Vec::new(),
        });
    }
    for k in 0..draws {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + k);
        let c = TpeSampler::default().suggest(&space, &history, &mut rng);
        println!("{}", peer_params(&space, &c));
    }
}
