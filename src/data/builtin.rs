//! Built-in data sets (digits, iris, diabetes, signals) embedded in the binary from `data/builtin/`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::dataset::{DataSplit, Dataset};
use super::error::DataError;
use super::idx::{dataset_from_arrays, magic_from_name, parse_idx};

/// The data sets that ship inside the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BuiltinName {
    /// 8x8 handwritten digits, 10 classes, 1437 train / 360 test.
    Digits,
    /// Iris flowers, 4 features, 3 classes, 120 train / 30 test.
    Iris,
    /// Diabetes progression, 10 features, regression, 353 train / 89 test.
    Diabetes,
    /// Synthetic 1-D waveforms of 64 samples (sine, square, triangle, sawtooth), 800 / 200.
    Signals,
}

impl BuiltinName {
    pub const ALL: [BuiltinName; 4] = [
        BuiltinName::Digits,
        BuiltinName::Iris,
        BuiltinName::Diabetes,
        BuiltinName::Signals,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinName::Digits => "digits",
            BuiltinName::Iris => "iris",
            BuiltinName::Diabetes => "diabetes",
            BuiltinName::Signals => "signals",
        }
    }
}

impl fmt::Display for BuiltinName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BuiltinName {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        BuiltinName::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| DataError::UnknownSource {
                spec: s.to_string(),
                reason: "not a built-in data set (digits, iris, diabetes, signals)".into(),
            })
    }
}

macro_rules! embed {
    ($name:literal, $file:literal) => {
        (
            concat!("<builtin>/", $name, "/", $file),
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/data/builtin/",
                $name,
                "/",
                $file
            )) as &[u8],
        )
    };
}

type Embedded = (&'static str, &'static [u8]);

/// (features, targets) of the train and test parts.
fn files(name: BuiltinName) -> [(Embedded, Embedded); 2] {
    match name {
        BuiltinName::Digits => [
            (
                embed!("digits", "train-images-idx3-ubyte"),
                embed!("digits", "train-labels-idx1-ubyte"),
            ),
            (
                embed!("digits", "t10k-images-idx3-ubyte"),
                embed!("digits", "t10k-labels-idx1-ubyte"),
            ),
        ],
        BuiltinName::Iris => [
            (
                embed!("iris", "train-features-idx2-float"),
                embed!("iris", "train-labels-idx1-ubyte"),
            ),
            (
                embed!("iris", "t10k-features-idx2-float"),
                embed!("iris", "t10k-labels-idx1-ubyte"),
            ),
        ],
        BuiltinName::Diabetes => [
            (
                embed!("diabetes", "train-features-idx2-float"),
                embed!("diabetes", "train-targets-idx1-float"),
            ),
            (
                embed!("diabetes", "t10k-features-idx2-float"),
                embed!("diabetes", "t10k-targets-idx1-float"),
            ),
        ],
        BuiltinName::Signals => [
            (
                embed!("signals", "train-features-idx2-float"),
                embed!("signals", "train-labels-idx1-ubyte"),
            ),
            (
                embed!("signals", "t10k-features-idx2-float"),
                embed!("signals", "t10k-labels-idx1-ubyte"),
            ),
        ],
    }
}

fn decode(
    name: BuiltinName,
    (features, targets): (Embedded, Embedded),
) -> Result<Dataset, DataError> {
    let array = |(label, bytes): Embedded| {
        let path = Path::new(label);
        let magic = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(magic_from_name);
        parse_idx(bytes, path, magic)
    };
    let mut ds = dataset_from_arrays(
        name.as_str(),
        array(features)?,
        Path::new(features.0),
        array(targets)?,
        Path::new(targets.0),
    )?;
    match name {
        BuiltinName::Iris => {
            ds.class_names = ["setosa", "versicolor", "virginica"]
                .map(String::from)
                .to_vec()
        }
        BuiltinName::Signals => {
            ds.class_names = ["sine", "square", "triangle", "sawtooth"]
                .map(String::from)
                .to_vec()
        }
        _ => {}
    }
    Ok(ds)
}

/// Decodes a built-in data set with its own train/test split.
pub fn load_builtin(name: BuiltinName) -> Result<DataSplit, DataError> {
    let [train, test] = files(name);
    let train = decode(name, train)?;
    train.validate()?;
    let test = super::conform(decode(name, test)?, &train, &format!("{name} (test split)"))?;
    Ok(DataSplit {
        train,
        test: Some(test),
    })
}
