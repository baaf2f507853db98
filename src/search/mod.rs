//! Search strategies: samplers propose configurations, schedulers decide how many epochs each gets.
//!
//! As in Ray Tune, "what to try" ([`Sampler`]) is apart from "how much budget it gets"
//! ([`Scheduler`]), so any sampler works with any scheduler.

pub mod asha;
mod error;
pub mod evolution;
pub mod grid;
pub mod hyperband;
pub mod nsga2;
pub mod prescreen;
pub mod random;
pub mod scheduler;
pub mod tpe;

pub use asha::AshaScheduler;
pub use error::SearchError;
pub use evolution::EvolutionSampler;
pub use grid::GridSampler;
pub use hyperband::HyperbandScheduler;
pub use nsga2::Nsga2Sampler;
pub use random::RandomSampler;
pub use scheduler::{Decision, FifoScheduler, Rung, Scheduler};
pub use tpe::TpeSampler;

use crate::space::{Config, Distribution, ParamValue, SearchSpace};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The end state of a trial, as far as samplers care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrialState {
    Running,
    Complete,
    Pruned,
    Failed,
    Interrupted,
}

impl TrialState {
    pub fn label(&self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
            TrialState::Interrupted => "interrupted",
        }
    }
}

/// What a sampler may learn from an earlier trial. `loss` is lower-is-better (the controller
/// negates accuracies), `None` for failed or unfinished trials.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub number: usize,
    pub config: Config,
    pub state: TrialState,
    pub loss: Option<f64>,
    /// Validation loss-direction values per epoch (lower is better), as reported so far.
    pub intermediate: Vec<f64>,
    /// Every objective of the study, lower is better (the score as in `loss`), for a complete
    /// or pruned trial; empty otherwise. A study of the score alone has one: `loss`.
    pub values: Vec<f64>,
    /// Constraint values (feasible when `<= 0`, see [`crate::pareto::violation`]); empty when
    /// the study has no constraints. A candidate rejected before training is failed with them.
    pub constraints: Vec<f64>,
}

impl Observation {
    /// Whether the trial broke a constraint (such trials are never trained).
    pub fn infeasible(&self) -> bool {
        crate::pareto::violation(&self.constraints) > 0.0
    }
}

/// Proposes configurations. Implementations must be deterministic given the history and `rng`.
pub trait Sampler: Send {
    fn name(&self) -> &'static str;
    /// Proposes a configuration holding exactly the active parameters of `space`.
    fn suggest(
        &mut self,
        space: &SearchSpace,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
    ) -> Config;

    /// [`Sampler::suggest`] in a study whose other objectives are known before training:
    /// `costs` gives a configuration's objective values without training it (see
    /// [`prescreen::Costs`]), so the sampler may weigh several candidates by what they cost.
    /// Samplers that do not use costs suggest as without them.
    fn suggest_costed(
        &mut self,
        space: &SearchSpace,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
        costs: &mut dyn FnMut(&Config) -> prescreen::Costs,
    ) -> Config {
        let _ = costs;
        self.suggest(space, history, rng)
    }
}

/// Which sampler to use, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    Random,
    /// Exhaustive search over a small discrete space ([`GridSampler`]).
    Grid,
    /// Regularized (aging) evolution with its default population and tournament sizes.
    Evolution,
    /// Tree-structured Parzen estimator with its default settings (multi-objective TPE on a
    /// study of several objectives).
    Tpe,
    /// NSGA-II with constrained domination ([`Nsga2Sampler`]).
    Nsga2,
    /// Multi-objective TPE (Ozaki et al.): the TPE sampler, which splits trials into good and
    /// bad by Pareto front when a study has several objectives; on one objective it is TPE.
    Motpe,
}

impl Strategy {
    /// Every strategy, in the order the CLI lists them.
    pub const ALL: [Strategy; 6] = [
        Strategy::Random,
        Strategy::Grid,
        Strategy::Evolution,
        Strategy::Tpe,
        Strategy::Nsga2,
        Strategy::Motpe,
    ];

    /// Builds the sampler; only grid search can refuse a space (continuous or too large).
    pub fn build(self, space: &SearchSpace) -> Result<Box<dyn Sampler>, SearchError> {
        Ok(match self {
            Strategy::Random => Box::new(RandomSampler),
            Strategy::Grid => Box::new(GridSampler::new(space)?),
            Strategy::Evolution => Box::new(EvolutionSampler::default()),
            Strategy::Tpe | Strategy::Motpe => Box::new(TpeSampler::default()),
            Strategy::Nsga2 => Box::new(Nsga2Sampler::default()),
        })
    }

    /// The name used on the command line and in study files.
    pub fn label(&self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Grid => "grid",
            Strategy::Evolution => "evolution",
            Strategy::Tpe => "tpe",
            Strategy::Nsga2 => "nsga2",
            Strategy::Motpe => "motpe",
        }
    }
}

impl FromStr for Strategy {
    type Err = SearchError;

    fn from_str(s: &str) -> Result<Strategy, SearchError> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.label().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| SearchError::UnknownStrategy(s.to_string()))
    }
}

/// Which scheduler decides the epochs each trial gets, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerKind {
    /// Every trial trains for its full epochs.
    Fifo,
    /// Asynchronous successive halving with its defaults (min 1 epoch, reduction factor 3).
    Asha,
    /// Hyperband over ASHA brackets with the same defaults.
    Hyperband,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 3] = [
        SchedulerKind::Fifo,
        SchedulerKind::Asha,
        SchedulerKind::Hyperband,
    ];

    /// Builds the scheduler for trials that train at most `max_epochs` epochs.
    pub fn build(self, max_epochs: usize) -> Box<dyn Scheduler> {
        match self {
            SchedulerKind::Fifo => Box::new(FifoScheduler),
            SchedulerKind::Asha => Box::new(AshaScheduler::with_max_epochs(max_epochs)),
            SchedulerKind::Hyperband => Box::new(HyperbandScheduler::with_max_epochs(max_epochs)),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            SchedulerKind::Fifo => "fifo",
            SchedulerKind::Asha => "asha",
            SchedulerKind::Hyperband => "hyperband",
        }
    }
}

impl FromStr for SchedulerKind {
    type Err = SearchError;

    fn from_str(s: &str) -> Result<SchedulerKind, SearchError> {
        SchedulerKind::ALL
            .into_iter()
            .find(|k| k.label().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| SearchError::UnknownScheduler(s.to_string()))
    }
}

/// Draws one value uniformly from a distribution (log-uniformly for log ranges).
pub fn sample_uniform(dist: &Distribution, rng: &mut ChaCha8Rng) -> ParamValue {
    match dist {
        Distribution::Int { low, high, log } => {
            if *log {
                let (a, b) = ((*low as f64 - 0.5).max(0.5).ln(), (*high as f64 + 0.5).ln());
                let v = rng.gen_range(a..b).exp().round() as i64;
                ParamValue::Int(v.clamp(*low, *high))
            } else {
                ParamValue::Int(rng.gen_range(*low..=*high))
            }
        }
        Distribution::Float { low, high, log } => {
            if low >= high {
                return ParamValue::Float(*low);
            }
            let v = if *log {
                rng.gen_range(low.ln()..high.ln()).exp()
            } else {
                rng.gen_range(*low..*high)
            };
            ParamValue::Float(v.clamp(*low, *high))
        }
        Distribution::Categorical { choices } => {
            ParamValue::Cat(rng.gen_range(0..choices.len().max(1)))
        }
    }
}

/// Builds a configuration parameter by parameter, in the space's order, asking `draw` for each
/// parameter whose conditions hold given the values drawn before it.
pub fn sample_with(
    space: &SearchSpace,
    mut draw: impl FnMut(usize, &Config) -> ParamValue,
) -> Config {
    let mut config = Config::new();
    for (i, p) in space.params.iter().enumerate() {
        if p.is_active(&config) {
            let v = draw(i, &config);
            config.insert(p.name.clone(), v);
        }
    }
    config
}
