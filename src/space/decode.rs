//! Turns a sampled [`Config`] into a typed candidate: the architecture and its training settings.

use super::{Choice, Config, Distribution, Family, ParamValue, SearchSpace};
use serde::{Deserialize, Serialize};

/// Activation functions a network may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
    Gelu,
}

/// The building block of a convolutional stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockKind {
    /// conv, batch norm, activation.
    Plain,
    /// ResNet basic block: H(x) = F(x) + x.
    Residual,
    /// DenseNet block: each layer sees the concatenation of all earlier outputs.
    Dense,
    /// MobileNet: depthwise then pointwise convolution.
    Separable,
}

/// How a stage halves the spatial size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Downsample {
    Stride,
    MaxPool,
    AvgPool,
}

/// Optimiser names as written in a space file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerName {
    Adam,
    Sgd,
}

macro_rules! labels {
    ($t:ty { $($v:ident => $l:literal),* $(,)? }) => {
        impl $t {
            /// The lowercase name used in tables and journals.
            pub fn label(&self) -> &'static str {
                match self { $(Self::$v => $l),* }
            }
            pub fn from_label(s: &str) -> Option<Self> {
                match s { $($l => Some(Self::$v),)* _ => None }
            }
        }
    };
}
labels!(Activation { Relu => "relu", LeakyRelu => "leaky_relu", Sigmoid => "sigmoid", Tanh => "tanh", Gelu => "gelu" });
labels!(BlockKind { Plain => "plain", Residual => "residual", Dense => "dense", Separable => "separable" });
labels!(Downsample { Stride => "stride", MaxPool => "maxpool", AvgPool => "avgpool" });
labels!(OptimizerName { Adam => "adam", Sgd => "sgd" });

/// A multi-layer perceptron: hidden widths (empty: a linear model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpArch {
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
    pub batch_norm: bool,
}

/// A convolutional network: stages of blocks, each later stage halving the spatial size,
/// then global average pooling and a dense head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnArch {
    pub stages: usize,
    pub blocks_per_stage: usize,
    pub block: BlockKind,
    /// Channels of the first stage; each later stage doubles them.
    pub width: usize,
    pub growth_rate: usize,
    pub expansion: usize,
    pub kernel: usize,
    pub downsample: Downsample,
    pub activation: Activation,
    pub dropout: f64,
    pub batch_norm: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Architecture {
    Mlp(MlpArch),
    Cnn(CnnArch),
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerKind {
    Adam,
    Sgd { momentum: f64 },
}

/// Image augmentation applied to training batches.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct AugmentSettings {
    pub shift: usize,
    pub hflip: bool,
    pub noise: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub weight_decay: f64,
    pub max_epochs: usize,
    pub patience: usize,
    pub augment: AugmentSettings,
}

/// Everything a trial needs to build and train one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub arch: Architecture,
    pub train: TrainSettings,
}

/// Reads typed values out of a configuration that the space has validated.
struct Reader<'a> {
    space: &'a SearchSpace,
    config: &'a Config,
}

impl Reader<'_> {
    fn choice(&self, name: &str) -> Option<&Choice> {
        let p = self.space.param(name)?;
        match (&p.dist, self.config.get(name)?) {
            (Distribution::Categorical { choices }, ParamValue::Cat(i)) => choices.get(*i),
            _ => None,
        }
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        match self.config.get(name) {
            Some(ParamValue::Int(v)) => *v,
            Some(ParamValue::Float(v)) => v.round() as i64,
            Some(ParamValue::Cat(_)) => match self.choice(name) {
                Some(Choice::Int(v)) => *v,
                Some(Choice::Float(v)) => v.round() as i64,
                _ => default,
            },
            None => default,
        }
    }

    fn usize(&self, name: &str, default: usize) -> usize {
        self.int(name, default as i64).max(0) as usize
    }

    fn float(&self, name: &str, default: f64) -> f64 {
        match self.config.get(name) {
            Some(ParamValue::Float(v)) => *v,
            Some(ParamValue::Int(v)) => *v as f64,
            Some(ParamValue::Cat(_)) => match self.choice(name) {
                Some(Choice::Float(v)) => *v,
                Some(Choice::Int(v)) => *v as f64,
                _ => default,
            },
            None => default,
        }
    }

    fn bool(&self, name: &str, default: bool) -> bool {
        match self.choice(name) {
            Some(Choice::Bool(b)) => *b,
            _ => default,
        }
    }

    fn label<T>(&self, name: &str, parse: fn(&str) -> Option<T>, default: T) -> T {
        match self.choice(name) {
            Some(Choice::Str(s)) => parse(s).unwrap_or(default),
            _ => default,
        }
    }
}

impl SearchSpace {
    /// Decodes a configuration sampled from this space into a typed candidate.
    pub fn decode(&self, config: &Config) -> Candidate {
        let r = Reader {
            space: self,
            config,
        };
        let activation = r.label("activation", Activation::from_label, Activation::Relu);
        let arch = match self.family {
            Family::Mlp => {
                let depth = r.usize("depth", 1);
                let hidden = if r.bool("per_layer_width", false) {
                    (1..=depth)
                        .map(|i| r.usize(&format!("width_{i}"), 64).max(1))
                        .collect()
                } else {
                    vec![r.usize("width", 64).max(1); depth]
                };
                Architecture::Mlp(MlpArch {
                    hidden,
                    activation,
                    dropout: r.float("dropout", 0.0),
                    batch_norm: r.bool("batch_norm", false),
                })
            }
            Family::Cnn => Architecture::Cnn(CnnArch {
                stages: r.usize("stages", 1).max(1),
                blocks_per_stage: r.usize("blocks_per_stage", 1).max(1),
                block: r.label("block", BlockKind::from_label, BlockKind::Plain),
                width: r.usize("width", 16).max(1),
                growth_rate: r.usize("growth_rate", 12).max(1),
                expansion: r.usize("expansion", 1).max(1),
                kernel: r.usize("kernel", 3).max(1),
                downsample: r.label("downsample", Downsample::from_label, Downsample::MaxPool),
                activation,
                dropout: r.float("dropout", 0.0),
                batch_norm: r.bool("batch_norm", true),
            }),
        };
        let optimizer = match r.label("optimizer", OptimizerName::from_label, OptimizerName::Adam) {
            OptimizerName::Adam => OptimizerKind::Adam,
            OptimizerName::Sgd => OptimizerKind::Sgd {
                momentum: r.float("momentum", 0.9),
            },
        };
        let train = TrainSettings {
            optimizer,
            learning_rate: r.float("learning_rate", 1e-3),
            batch_size: r.usize("batch_size", 64).max(1),
            weight_decay: r.float("weight_decay", 0.0),
            max_epochs: r.usize("max_epochs", 50).max(1),
            patience: r.usize("patience", 5).max(1),
            augment: AugmentSettings {
                shift: r.usize("shift", 0),
                hflip: r.bool("hflip", false),
                noise: r.float("noise", 0.0),
            },
        };
        Candidate { arch, train }
    }
}

impl Candidate {
    /// A short summary such as `64-128-64-10 relu bn`.
    pub fn summary(&self, n_inputs: usize, n_outputs: usize) -> String {
        match &self.arch {
            Architecture::Mlp(m) => {
                let mut dims = vec![n_inputs.to_string()];
                dims.extend(m.hidden.iter().map(|h| h.to_string()));
                dims.push(n_outputs.to_string());
                let mut s = dims.join("-");
                if !m.hidden.is_empty() {
                    s.push(' ');
                    s.push_str(m.activation.label());
                }
                if m.batch_norm && !m.hidden.is_empty() {
                    s.push_str(" bn");
                }
                if m.dropout > 0.0 && !m.hidden.is_empty() {
                    s.push_str(&format!(" do{:.2}", m.dropout));
                }
                s
            }
            Architecture::Cnn(c) => {
                let mut s = format!(
                    "{} {}x{} w{}",
                    c.block.label(),
                    c.stages,
                    c.blocks_per_stage,
                    c.width
                );
                match c.block {
                    BlockKind::Dense => s.push_str(&format!(" g{}", c.growth_rate)),
                    BlockKind::Separable if c.expansion > 1 => {
                        s.push_str(&format!(" e{}", c.expansion))
                    }
                    _ => {}
                }
                s.push_str(&format!(
                    " k{} {} {}",
                    c.kernel,
                    c.downsample.label(),
                    c.activation.label()
                ));
                if c.batch_norm {
                    s.push_str(" bn");
                }
                s
            }
        }
    }
}
