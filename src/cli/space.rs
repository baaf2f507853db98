//! `nas space show | sample | check`: what a space file declares, samples and can build.

use super::{load_data, CliError};
use crate::data::InputShape;
use crate::search::Strategy;
use crate::space::arch::Node;
use crate::space::{thousands, Condition, Distribution, SearchSpace};
use clap::{Args, Subcommand};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use tabled::settings::Style;

#[derive(Debug, Args)]
pub struct SpaceArgs {
    #[command(subcommand)]
    pub command: SpaceCommand,
}

#[derive(Debug, Subcommand)]
pub enum SpaceCommand {
    /// List a space's parameters (name, domain, default, when it exists) and the size of the
    /// space; --expanded also writes one sampled network in the architecture language (what
    /// `Mlp`/`Cnn` short forms expand to).
    Show(ShowArgs),
    /// Print configurations drawn at random from a space, with their networks, parameter counts
    /// and multiply-adds.
    Sample(SampleArgs),
    /// Validate a space: exit 0 when it is valid and some of its networks can be built on the
    /// data, else 2; reports the share of random configurations whose shapes cannot work.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The search space (RON).
    pub space: PathBuf,
    /// Also write the network of one sampled configuration in the architecture language.
    #[arg(long)]
    pub expanded: bool,
    /// The seed of that configuration.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The search space (RON).
    pub space: PathBuf,
    /// How many configurations.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The data whose input shape and outputs the networks are counted for (default: the
    /// space's `data`, else digits).
    #[arg(long)]
    pub data: Option<String>,
    /// Input shape CxHxW (or HxW), as for `nas search`.
    #[arg(long)]
    pub shape: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The search space (RON).
    pub space: PathBuf,
    /// The data whose input shape and outputs the networks are built for (default: the space's
    /// `data`, else digits).
    #[arg(long)]
    pub data: Option<String>,
    /// Input shape CxHxW (or HxW), as for `nas search`.
    #[arg(long)]
    pub shape: Option<String>,
    /// How many random configurations to check.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: SpaceArgs) -> Result<(), CliError> {
    match a.command {
        SpaceCommand::Show(a) => show(a),
        SpaceCommand::Sample(a) => sample(a),
        SpaceCommand::Check(a) => check(a),
    }
}

/// `n` configurations drawn by the random sampler from `seed`, one stream.
fn draw(space: &SearchSpace, n: usize, seed: u64) -> Result<Vec<crate::space::Config>, CliError> {
    let mut sampler = Strategy::Random
        .build(space)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Ok((0..n)
        .map(|_| sampler.suggest(space, &[], &mut rng))
        .collect())
}

fn domain(d: &Distribution) -> String {
    match d {
        Distribution::Int { low, high, log } => {
            format!("{}({low}, {high})", if *log { "LogRange" } else { "Range" })
        }
        Distribution::Float { low, high, log } => {
            format!("{}({low}, {high})", if *log { "LogRange" } else { "Range" })
        }
        Distribution::Categorical { choices } => {
            let c: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
            format!("Choice([{}])", c.join(", "))
        }
    }
}

fn condition(space: &SearchSpace, c: &Condition) -> String {
    match c {
        Condition::AtLeast { param, min } => format!("{param} >= {min}"),
        // Its parent never takes the value it needs (a default the file did not narrow).
        Condition::OneOf { param, choices } if choices.is_empty() => {
            format!("never ({param} never takes the value it needs)")
        }
        Condition::OneOf { param, choices } => {
            let labels: Vec<String> = match space.param(param).map(|p| &p.dist) {
                Some(Distribution::Categorical { choices: all }) => choices
                    .iter()
                    .filter_map(|i| all.get(*i).map(|c| c.to_string()))
                    .collect(),
                _ => choices.iter().map(|i| format!("#{i}")).collect(),
            };
            format!("{param} in {{{}}}", labels.join(", "))
        }
    }
}

fn show(a: ShowArgs) -> Result<(), CliError> {
    let space = SearchSpace::from_file(&a.space)?;
    println!(
        "{}: {:?} on {}, {} ({} parameters)",
        a.space.display(),
        space.task,
        space.data.as_deref().unwrap_or("data given with --data"),
        match space.family {
            crate::space::Family::Mlp => "the Mlp((..)) short form",
            crate::space::Family::Cnn => "the Cnn((..)) short form",
            crate::space::Family::Net => "the architecture language",
        },
        space.params.len()
    );
    let rows: Vec<[String; 4]> = space
        .params
        .iter()
        .map(|p| {
            let when: Vec<String> = p.conditions.iter().map(|c| condition(&space, c)).collect();
            [
                p.name.clone(),
                domain(&p.dist),
                p.default.map_or_else(|| "-".into(), |d| d.to_string()),
                if when.is_empty() {
                    "always".into()
                } else {
                    when.join(" and ")
                },
            ]
        })
        .collect();
    let mut b = tabled::builder::Builder::default();
    b.push_record(["parameter", "domain", "default", "exists when"]);
    for r in rows {
        b.push_record(r);
    }
    println!("{}", b.build().with(Style::rounded()));
    println!(
        "default: the domain a field takes when the file leaves it out (\"-\": a choice between parts or a free parameter)"
    );
    println!("size of the space: {}", space.size());
    if a.expanded {
        let config = draw(&space, 1, a.seed)?.remove(0);
        let arch = space.decode(&config).arch;
        let nodes = arch.nodes();
        println!(
            "\n// The network of the configuration drawn with seed {} (`nas space sample --seed {}`),\n// in the architecture language; a linear output layer follows it.\nmodel: {},",
            a.seed,
            a.seed,
            Node::to_ron(&nodes)
        );
    }
    Ok(())
}

fn sample(a: SampleArgs) -> Result<(), CliError> {
    let space = SearchSpace::from_file(&a.space)?;
    let (spec, shape, n_out) = data_shape(&space, a.data.as_deref(), a.shape.as_deref())?;
    println!(
        "{}: {} configurations drawn with seed {}, counted on {spec} (input {shape}, {n_out} outputs)",
        a.space.display(),
        a.count,
        a.seed
    );
    for (i, config) in draw(&space, a.count, a.seed)?.iter().enumerate() {
        let json = serde_json::Value::Object(space.config_json(config));
        let arch = space.decode(config).arch;
        let cost = match crate::nn::cost(&arch, shape, n_out) {
            Ok(c) => format!(
                "{} parameters, {} multiply-adds per sample",
                thousands(c.params as u64),
                thousands(c.macs)
            ),
            Err(e) => e.to_string(),
        };
        println!(
            "{i}: {json}\n   {}\n   {cost}",
            Node::summary(&arch.nodes(), 100)
        );
    }
    Ok(())
}

/// The data set networks are counted for (`--data`, else the space's, else digits), with its
/// input shape and number of outputs.
fn data_shape(
    space: &SearchSpace,
    data: Option<&str>,
    shape: Option<&str>,
) -> Result<(String, InputShape, usize), CliError> {
    let spec = data
        .map(String::from)
        .or_else(|| space.data.clone())
        .unwrap_or_else(|| "digits".into());
    let split = load_data(&spec, None, shape, None, space.task)?;
    Ok((spec, split.train.shape, split.train.n_outputs()))
}

fn check(a: CheckArgs) -> Result<(), CliError> {
    let space = SearchSpace::from_file(&a.space)?;
    if a.samples == 0 {
        return Err(CliError::Usage("--samples must be at least 1".into()));
    }
    let (spec, shape, n_out) = data_shape(&space, a.data.as_deref(), a.shape.as_deref())?;
    let mut reasons: Vec<(String, usize)> = Vec::new();
    let mut params = Vec::new();
    for config in draw(&space, a.samples, a.seed)? {
        match crate::nn::cost(&space.decode(&config).arch, shape, n_out) {
            Ok(c) => params.push(c.params),
            Err(e) => {
                let e = e.to_string();
                match reasons.iter_mut().find(|(r, _)| *r == e) {
                    Some((_, n)) => *n += 1,
                    None => reasons.push((e, 1)),
                }
            }
        }
    }
    let bad: usize = reasons.iter().map(|(_, n)| n).sum();
    println!(
        "{}: {bad} of {} random configurations ({:.1}%) are impossible on {spec} (input {shape}, {n_out} outputs)",
        a.space.display(),
        a.samples,
        100.0 * bad as f64 / a.samples as f64
    );
    params.sort_unstable();
    if let (Some(lo), Some(hi)) = (params.first(), params.last()) {
        println!(
            "possible networks: {} to {} trainable parameters (median {})",
            lo,
            hi,
            params[params.len() / 2]
        );
    }
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (r, n) in reasons.iter().take(10) {
        println!("  {n:>5} x {r}");
    }
    if bad == a.samples {
        return Err(CliError::Usage(format!(
            "{}: none of {} random configurations can be built on {spec} (input {shape}); the most common reason: {}",
            a.space.display(),
            a.samples,
            reasons.first().map_or("-", |(r, _)| r.as_str())
        )));
    }
    Ok(())
}
