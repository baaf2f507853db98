//! The short forms `Mlp((..))` and `Cnn((..))` written out in the architecture language.
//!
//! A sampled short-form candidate keeps its compact form (journals, `architecture.ron`); the
//! network builder only knows the general [`Node`] tree these functions write. The expansion
//! builds the same layers in the same order as the short forms always did (the golden file
//! `tests/golden/networks.txt` checks names, sizes and initial weights).

use super::arch::Node;
use super::params::{Channels, Lit};
use super::{Activation, BlockKind, CnnArch, Downsample, MlpArch};

fn act(path: &str, a: Activation) -> Node {
    Node::layer("Act", path, &[("function", Lit::Activation(a))])
}

fn batch_norm(path: &str) -> Node {
    Node::layer("BatchNorm", path, &[])
}

fn conv(path: &str, channels: usize, kernel: usize) -> Node {
    Node::layer(
        "Conv",
        path,
        &[
            ("channels", Lit::Channels(Channels::Count(channels as i64))),
            ("kernel", Lit::Int(kernel as i64)),
        ],
    )
}

impl MlpArch {
    /// Hidden layers `Linear -> [BatchNorm] -> Act -> [Dropout]` (the output layer is the
    /// builder's head).
    pub fn expand(&self) -> Vec<Node> {
        let mut out = Vec::new();
        for (i, &h) in self.hidden.iter().enumerate() {
            let p = format!("hidden{}", i + 1);
            out.push(Node::layer(
                "Linear",
                format!("{p}.linear"),
                &[("units", Lit::Int(h as i64))],
            ));
            if self.batch_norm {
                out.push(batch_norm(&format!("{p}.batch_norm")));
            }
            out.push(act(&format!("{p}.act"), self.activation));
            if self.dropout > 0.0 {
                out.push(Node::layer(
                    "Dropout",
                    format!("{p}.dropout"),
                    &[("rate", Lit::Float(self.dropout))],
                ));
            }
        }
        out
    }
}

impl CnnArch {
    /// Stem, stages of blocks (each later stage downsampled and twice as wide), global average
    /// pooling and dropout (the linear head is the builder's).
    pub fn expand(&self) -> Vec<Node> {
        let mut out = Vec::new();
        self.conv_bn_act(&mut out, "stem", self.width, self.kernel);
        let dense = self.block == BlockKind::Dense;
        for stage in 0..self.stages {
            let s = format!("stage{}", stage + 1);
            let out_c = self.width << stage;
            if stage > 0 {
                if dense {
                    // DenseNet transition: BN, activation, 1x1 conv, then pooling.
                    self.bn_act(&mut out, &format!("{s}.transition"));
                    out.push(conv(&format!("{s}.transition.conv"), out_c, 1));
                }
                let how = match self.downsample {
                    Downsample::Stride if dense => Downsample::AvgPool,
                    d => d,
                };
                out.push(Node::layer(
                    "Downsample",
                    format!("{s}.downsample"),
                    &[("how", Lit::Downsample(how))],
                ));
            }
            for block in 0..self.blocks_per_stage {
                self.block(&mut out, &format!("{s}.block{}", block + 1), out_c);
            }
        }
        if dense {
            self.bn_act(&mut out, "head");
        }
        out.push(Node::layer("GlobalAvgPool", "head.pool", &[]));
        if self.dropout > 0.0 {
            out.push(Node::layer(
                "Dropout",
                "head.dropout",
                &[("rate", Lit::Float(self.dropout))],
            ));
        }
        out
    }

    fn bn_act(&self, out: &mut Vec<Node>, p: &str) {
        if self.batch_norm {
            out.push(batch_norm(&format!("{p}.batch_norm")));
        }
        out.push(act(&format!("{p}.act"), self.activation));
    }

    fn conv_bn(&self, out: &mut Vec<Node>, p: &str, channels: usize, kernel: usize) {
        out.push(conv(&format!("{p}.conv"), channels, kernel));
        if self.batch_norm {
            out.push(batch_norm(&format!("{p}.batch_norm")));
        }
    }

    fn conv_bn_act(&self, out: &mut Vec<Node>, p: &str, channels: usize, kernel: usize) {
        self.conv_bn(out, p, channels, kernel);
        out.push(act(&format!("{p}.act"), self.activation));
    }

    fn block(&self, out: &mut Vec<Node>, p: &str, out_c: usize) {
        let k = self.kernel;
        match self.block {
            BlockKind::Plain => self.conv_bn_act(out, p, out_c, k),
            BlockKind::Residual => {
                let mut body = Vec::new();
                self.conv_bn_act(&mut body, &format!("{p}.1"), out_c, k);
                self.conv_bn(&mut body, &format!("{p}.2"), out_c, k);
                out.push(Node::Residual {
                    path: p.to_string(),
                    body,
                });
                out.push(act(&format!("{p}.act"), self.activation));
            }
            BlockKind::Separable => out.push(Node::layer(
                "SeparableConv",
                p,
                &[
                    ("channels", Lit::Channels(Channels::Count(out_c as i64))),
                    ("kernel", Lit::Int(k as i64)),
                    ("expansion", Lit::Int(self.expansion as i64)),
                    ("activation", Lit::Activation(self.activation)),
                    ("batch_norm", Lit::Bool(self.batch_norm)),
                ],
            )),
            BlockKind::Dense => {
                // Two dense layers per block; each sees every earlier output of the stage.
                for i in 1..=2 {
                    let q = format!("{p}.{i}");
                    let mut body = Vec::new();
                    self.bn_act(&mut body, &q);
                    body.push(conv(&format!("{q}.conv"), self.growth_rate, k));
                    out.push(Node::Dense { path: q, body });
                }
            }
        }
    }
}
