//! Turns a sampled [`Config`] into a typed candidate: the architecture and its training settings.

use super::params::{augment, cnn, mlp, train, Lit, ParamDecl};
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
            /// Every value, in declaration order.
            pub const ALL: &'static [$t] = &[$(Self::$v),*];
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
    /// A network of the architecture language, every choice made.
    Net(Vec<super::arch::Node>),
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

/// Reads typed values out of a configuration that the space has validated, each parameter named
/// by its declaration.
struct Reader<'a> {
    space: &'a SearchSpace,
    config: &'a Config,
}

impl Reader<'_> {
    /// The value of `name` (a parameter declared by `decl`), or the declaration's [`fallback`];
    /// `None` when the value is of another type than the space says.
    fn lit(&self, name: &str, decl: &ParamDecl) -> Option<Lit> {
        let fallback = fallback(decl);
        match self.config.get(name) {
            None => Some(fallback),
            Some(ParamValue::Int(v)) => Some(Lit::Int(*v)),
            Some(ParamValue::Float(v)) => Some(Lit::Float(*v)),
            Some(ParamValue::Cat(i)) => {
                let p = self.space.param(name)?;
                match &p.dist {
                    Distribution::Categorical { choices } => match choices.get(*i)? {
                        Choice::Int(v) => Some(Lit::Int(*v)),
                        Choice::Float(v) => Some(Lit::Float(*v)),
                        Choice::Bool(b) => Some(Lit::Bool(*b)),
                        c @ Choice::Str(_) => fallback.from_choice(c),
                    },
                    _ => None,
                }
                .or(Some(fallback))
            }
        }
    }

    fn int_named(&self, name: &str, decl: &ParamDecl) -> i64 {
        match self.lit(name, decl) {
            Some(Lit::Int(v)) => v,
            Some(Lit::Float(v)) => v.round() as i64,
            _ => match fallback(decl) {
                Lit::Int(v) => v,
                other => panic!("`{}` is declared {other:?}, not an integer", decl.name),
            },
        }
    }

    fn usize(&self, decl: &ParamDecl) -> usize {
        self.int_named(decl.name, decl).max(0) as usize
    }

    fn float(&self, decl: &ParamDecl) -> f64 {
        match self.lit(decl.name, decl) {
            Some(Lit::Float(v)) => v,
            Some(Lit::Int(v)) => v as f64,
            _ => match fallback(decl) {
                Lit::Float(v) => v,
                other => panic!("`{}` is declared {other:?}, not a number", decl.name),
            },
        }
    }

    fn bool(&self, decl: &ParamDecl) -> bool {
        match self.lit(decl.name, decl) {
            Some(Lit::Bool(b)) => b,
            _ => match fallback(decl) {
                Lit::Bool(v) => v,
                other => panic!("`{}` is declared {other:?}, not true/false", decl.name),
            },
        }
    }

    /// A named option: `get` picks the variant out of the declaration's value type.
    fn named<T>(&self, decl: &ParamDecl, get: fn(Lit) -> Option<T>) -> T {
        self.lit(decl.name, decl)
            .and_then(get)
            .or_else(|| get(fallback(decl)))
            .unwrap_or_else(|| panic!("`{}` is declared as another type", decl.name))
    }
}

/// What a candidate carries for `decl` when a configuration lacks it: `otherwise` for a
/// conditional parameter, else the first value of the default domain.
fn fallback(decl: &ParamDecl) -> Lit {
    decl.when.map_or(decl.default.first(), |w| w.otherwise)
}

impl SearchSpace {
    /// Decodes a configuration sampled from this space into a typed candidate.
    pub fn decode(&self, config: &Config) -> Candidate {
        let r = Reader {
            space: self,
            config,
        };
        let activation = |decl| {
            r.named(decl, |l| match l {
                Lit::Activation(a) => Some(a),
                _ => None,
            })
        };
        let arch = match self.family {
            Family::Mlp => {
                let depth = r.usize(&mlp::DEPTH);
                let hidden = if r.bool(&mlp::PER_LAYER_WIDTH) {
                    (1..=depth as i64)
                        .map(|i| {
                            let w = r.int_named(&mlp::layer_width(i), &mlp::WIDTH);
                            (w.max(0) as usize).max(1)
                        })
                        .collect()
                } else {
                    vec![r.usize(&mlp::WIDTH).max(1); depth]
                };
                Architecture::Mlp(MlpArch {
                    hidden,
                    activation: activation(&mlp::ACTIVATION),
                    dropout: r.float(&mlp::DROPOUT),
                    batch_norm: r.bool(&mlp::BATCH_NORM),
                })
            }
            Family::Cnn => Architecture::Cnn(CnnArch {
                stages: r.usize(&cnn::STAGES).max(1),
                blocks_per_stage: r.usize(&cnn::BLOCKS_PER_STAGE).max(1),
                block: r.named(&cnn::BLOCK, |l| match l {
                    Lit::Block(b) => Some(b),
                    _ => None,
                }),
                width: r.usize(&cnn::WIDTH).max(1),
                growth_rate: r.usize(&cnn::GROWTH_RATE).max(1),
                expansion: r.usize(&cnn::EXPANSION).max(1),
                kernel: r.usize(&cnn::KERNEL).max(1),
                downsample: r.named(&cnn::DOWNSAMPLE, |l| match l {
                    Lit::Downsample(d) => Some(d),
                    _ => None,
                }),
                activation: activation(&cnn::ACTIVATION),
                dropout: r.float(&cnn::DROPOUT),
                batch_norm: r.bool(&cnn::BATCH_NORM),
            }),
            Family::Net => Architecture::Net(
                self.net
                    .as_ref()
                    .map(|n| n.resolve(config))
                    .unwrap_or_default(),
            ),
        };
        let optimizer = match r.named(&train::OPTIMIZER, |l| match l {
            Lit::Optimizer(o) => Some(o),
            _ => None,
        }) {
            OptimizerName::Adam => OptimizerKind::Adam,
            OptimizerName::Sgd => OptimizerKind::Sgd {
                momentum: r.float(&train::MOMENTUM),
            },
        };
        let train = TrainSettings {
            optimizer,
            learning_rate: r.float(&train::LEARNING_RATE),
            batch_size: r.usize(&train::BATCH_SIZE).max(1),
            weight_decay: r.float(&train::WEIGHT_DECAY),
            max_epochs: r.usize(&train::MAX_EPOCHS).max(1),
            patience: r.usize(&train::PATIENCE).max(1),
            augment: AugmentSettings {
                shift: r.usize(&augment::SHIFT),
                hflip: r.bool(&augment::HFLIP),
                noise: r.float(&augment::NOISE),
            },
        };
        Candidate { arch, train }
    }
}

impl Architecture {
    /// The network in the architecture language: a short form's expansion, or the network itself.
    pub fn nodes(&self) -> std::borrow::Cow<'_, [super::arch::Node]> {
        match self {
            Architecture::Mlp(m) => m.expand().into(),
            Architecture::Cnn(c) => c.expand().into(),
            Architecture::Net(nodes) => nodes.as_slice().into(),
        }
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
            Architecture::Net(nodes) => super::arch::Node::summary(nodes, 72),
        }
    }
}
