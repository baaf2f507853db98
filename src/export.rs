//! Exported models: a directory holding a final model's architecture, weights, preprocessing,
//! metrics and provenance, and the checked reloading of such a directory for prediction.
//!
//! The directory is the model's config plus its weights: `architecture.ron` rebuilds the network
//! structure deterministically, `weights.safetensors` fills in every parameter and batch-norm
//! running statistic by name. Loading refuses any directory whose files disagree, naming the file
//! and the tensor, so a prediction is never made with a half-matching model.

use crate::controller::FinalModel;
use crate::data::{
    load_builtin, load_test_file, DataError, DataSource, Dataset, InputShape, LoadOptions, Row,
    Standardizer, Targets, Task,
};
use crate::nn::{build_network, Network, ParamMut};
use crate::space::{Architecture, TrainSettings};
use crate::study::{Metric, TestResult, TrialRecord};
use crate::train::{evaluate, predict, Metrics, TargetScale};
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const ARCHITECTURE_FILE: &str = "architecture.ron";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const PREPROCESSING_FILE: &str = "preprocessing.json";
pub const METRICS_FILE: &str = "metrics.json";
pub const PROVENANCE_FILE: &str = "provenance.json";

/// The files of an exported model, in the order they are checked.
pub const MODEL_FILES: [&str; 5] = [
    ARCHITECTURE_FILE,
    WEIGHTS_FILE,
    PREPROCESSING_FILE,
    METRICS_FILE,
    PROVENANCE_FILE,
];

/// Bumped whenever the layout of an exported directory changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// Why a model could not be saved, loaded or applied.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}: missing file; an exported model directory holds {}", path.display(), MODEL_FILES.join(", "))]
    MissingFile { path: PathBuf },
    #[error("{}: cannot parse: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A RON or JSON file that does not parse, at the line and column where it stops.
    #[error("{}:{line}:{col}: cannot parse: {message}", path.display())]
    ParseAt {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{}: not a model directory (`nas export --out DIR` writes one)", path.display())]
    NotAModelDir { path: PathBuf },
    #[error("{}: format version {found}, but this nas reads version {expected}", path.display())]
    Version {
        path: PathBuf,
        expected: u32,
        found: u32,
    },
    #[error("{}: missing tensor `{name}` (the architecture needs shape {expected:?})", path.display())]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },
    #[error("{}: unexpected tensor `{name}`: the architecture has no such parameter", path.display())]
    ExtraTensor { path: PathBuf, name: String },
    #[error("{}: tensor `{name}` has shape {found:?}, but the architecture needs {expected:?}", path.display())]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{}: tensor `{name}` is {found}, expected F32", path.display())]
    TensorDtype {
        path: PathBuf,
        name: String,
        found: String,
    },
    #[error("{}: tensor `{name}` holds a non-finite value at index {index}", path.display())]
    NonFinite {
        path: PathBuf,
        name: String,
        index: usize,
    },
    #[error("{}: {message}", path.display())]
    Inconsistent { path: PathBuf, message: String },
    #[error("{origin}: {found} features per sample, but the model takes {expected}")]
    FeatureMismatch {
        origin: String,
        expected: usize,
        found: usize,
    },
    #[error("{}: row {row}: {message}", path.display())]
    BadRow {
        path: PathBuf,
        /// 1-based line number, the header being line 1.
        row: usize,
        message: String,
    },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// `architecture.ron`: what [`build_network`] needs to rebuild the exact structure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub format: u32,
    pub architecture: Architecture,
    pub input_shape: InputShape,
    pub n_outputs: usize,
    /// Trainable scalars; checked against the rebuilt network.
    pub param_count: usize,
    /// How the model was trained (informative; not needed to predict).
    pub training: TrainSettings,
}

/// `preprocessing.json`: how raw features become network inputs and outputs become answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    pub format: u32,
    pub task: Task,
    pub input_shape: InputShape,
    /// Fitted on the final model's training data.
    pub standardizer: Standardizer,
    /// Regression outputs are standardised targets; this maps them back to target units.
    pub target_scale: Option<TargetScale>,
    /// One per output for classification; empty for regression.
    pub class_names: Vec<String>,
}

/// The cross-validation scores of the exported trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvScores {
    pub metric: Metric,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// `None` for a fold without a finite score.
    pub fold_scores: Vec<Option<f64>>,
    /// Epochs early stopping chose, which the final model was trained for.
    pub epochs: usize,
}

/// `metrics.json`: the one test-set evaluation and the trial's cross-validation scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    pub test: TestResult,
    pub cv: CvScores,
}

/// `provenance.json`: where the model came from, enough to retrain it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub study: String,
    pub trial: usize,
    /// The study's seed (splits and folds).
    pub study_seed: u64,
    /// The trial's seed (the final fit uses a seed derived from it).
    pub trial_seed: u64,
    pub space_file: String,
    /// The data spec as given to `nas search` (built-in name, IDX directory or CSV).
    pub data: String,
    /// The CSV label/target column, when not the default `label` / `target`.
    pub target_column: Option<String>,
    /// The input shape override, when one was given.
    pub shape: Option<String>,
    /// The held-out test set, when not the data set's own.
    pub test_data: Option<String>,
    pub folds: usize,
    pub nas_version: String,
}

impl Provenance {
    /// Provenance with this build's `nas` version and no data overrides.
    pub fn new(
        study: &str,
        trial: usize,
        study_seed: u64,
        trial_seed: u64,
        space_file: &str,
        data: &str,
        folds: usize,
    ) -> Provenance {
        Provenance {
            study: study.to_string(),
            trial,
            study_seed,
            trial_seed,
            space_file: space_file.to_string(),
            data: data.to_string(),
            target_column: None,
            shape: None,
            test_data: None,
            folds,
            nas_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, ExportError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| io_err(path, e))?;
    text.push('\n');
    Ok(text.into_bytes())
}

/// Every parameter and batch-norm running statistic of `net`: name, shape, values, in visit order.
pub fn named_tensors(net: &mut Network) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    net.visit_params(&mut |name, p, _| {
        let shape = param_shape(&p);
        out.push((name, shape, p.to_vec()));
    });
    net.visit_state(&mut |name, s| {
        out.push((
            format!("{name}_mean"),
            vec![s.running_mean.len()],
            s.running_mean.clone(),
        ));
        out.push((
            format!("{name}_var"),
            vec![s.running_var.len()],
            s.running_var.clone(),
        ));
    });
    out
}

fn param_shape(p: &ParamMut<'_>) -> Vec<usize> {
    match p {
        ParamMut::Matrix(m) => {
            let (r, c) = *m.shape();
            vec![r, c]
        }
        ParamMut::Vector(v) => vec![v.shape().0],
    }
}

/// Writes `model` to `dir` (created if needed): architecture, weights, preprocessing, metrics
/// and provenance. `train` is the raw data the final model was trained on (its shape, task and
/// class names); `trial` is the study's record of the exported configuration.
pub fn save_model(
    dir: &Path,
    model: &mut FinalModel,
    train: &Dataset,
    trial: &TrialRecord,
    provenance: &Provenance,
) -> Result<(), ExportError> {
    // A new model directory is written whole beside its place and renamed into it, so that a
    // crash leaves no half model. Over an existing one, each file is replaced atomically (and
    // loading refuses files that disagree).
    if dir.exists() {
        return write_model_files(dir, model, train, trial, provenance);
    }
    let mut staging = dir.as_os_str().to_owned();
    staging.push(format!(".partial-{}", std::process::id()));
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    let written = write_model_files(&staging, model, train, trial, provenance)
        .and_then(|()| std::fs::rename(&staging, dir).map_err(|e| io_err(dir, e)));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

/// Writes the files of a model directory into `dir`, which exists.
fn write_model_files(
    dir: &Path,
    model: &mut FinalModel,
    train: &Dataset,
    trial: &TrialRecord,
    provenance: &Provenance,
) -> Result<(), ExportError> {
    let net = &mut model.trained.net;
    let spec = ModelSpec {
        format: FORMAT_VERSION,
        architecture: model.candidate.arch.clone(),
        input_shape: train.shape,
        n_outputs: net.n_outputs,
        param_count: net.param_count,
        training: model.candidate.train.clone(),
    };
    let class_names = match train.task() {
        Task::Classification if train.class_names.len() == net.n_outputs => {
            train.class_names.clone()
        }
        Task::Classification => (0..net.n_outputs).map(|c| c.to_string()).collect(),
        Task::Regression => Vec::new(),
    };
    let pre = Preprocessing {
        format: FORMAT_VERSION,
        task: train.task(),
        input_shape: train.shape,
        standardizer: model.standardizer.clone(),
        target_scale: model.trained.target,
        class_names,
    };
    let finite = |v: f64| v.is_finite().then_some(v);
    let metrics = ModelMetrics {
        test: model.test.clone(),
        cv: CvScores {
            metric: model.test.metric,
            mean: trial.cv_mean.and_then(finite),
            std: trial.cv_std.and_then(finite),
            fold_scores: trial.fold_scores.iter().map(|&s| finite(s)).collect(),
            epochs: trial.epochs,
        },
    };

    let path = dir.join(ARCHITECTURE_FILE);
    let mut ron_text = ron::ser::to_string_pretty(&spec, ron::ser::PrettyConfig::default())
        .map_err(|e| io_err(&path, e))?;
    ron_text.push('\n');
    write_atomic(&path, ron_text.as_bytes())?;

    let path = dir.join(WEIGHTS_FILE);
    let tensors = named_tensors(net);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let b = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, b)
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, b) in &bytes {
        let view = TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| io_err(&path, e))?;
        views.push((name.clone(), view));
    }
    let info = HashMap::from([
        ("format".to_string(), FORMAT_VERSION.to_string()),
        (
            "nas_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    let blob = safetensors::serialize(views, &Some(info)).map_err(|e| io_err(&path, e))?;
    write_atomic(&path, &blob)?;

    let path = dir.join(PREPROCESSING_FILE);
    write_atomic(&path, &to_json(&path, &pre)?)?;
    let path = dir.join(METRICS_FILE);
    write_atomic(&path, &to_json(&path, &metrics)?)?;
    let path = dir.join(PROVENANCE_FILE);
    write_atomic(&path, &to_json(&path, provenance)?)?;
    Ok(())
}

/// A reloaded model, ready to predict.
pub struct LoadedModel {
    pub dir: PathBuf,
    pub spec: ModelSpec,
    pub preprocessing: Preprocessing,
    pub metrics: ModelMetrics,
    pub provenance: Provenance,
    pub net: Network,
    pub dev: Cpu,
}

/// One classified row: the most likely class and the probability of every class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassPrediction {
    pub class: usize,
    pub probabilities: Vec<f32>,
}

/// Per-row answers of a model.
#[derive(Clone, Debug, PartialEq)]
pub enum Predictions {
    Classes {
        class_names: Vec<String>,
        rows: Vec<ClassPrediction>,
    },
    /// Regression values in target units.
    Values(Vec<f32>),
}

impl Predictions {
    /// Turns raw network outputs (row-major) into answers: softmax of the logits and their
    /// argmax, or values mapped back to target units.
    pub fn from_outputs(outputs: &[f32], pre: &Preprocessing) -> Predictions {
        match pre.task {
            Task::Classification => {
                let k = pre.class_names.len().max(1);
                let rows = outputs
                    .chunks(k)
                    .map(|logits| ClassPrediction {
                        class: argmax(logits),
                        probabilities: softmax(logits),
                    })
                    .collect();
                Predictions::Classes {
                    class_names: pre.class_names.clone(),
                    rows,
                }
            }
            Task::Regression => {
                let s = pre.target_scale.unwrap_or(TargetScale {
                    mean: 0.0,
                    std: 1.0,
                });
                Predictions::Values(outputs.iter().map(|z| z * s.std + s.mean).collect())
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Predictions::Classes { rows, .. } => rows.len(),
            Predictions::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `row,class,prob_<name>...` or `row,value`, one line per row (rows counted from 0).
    pub fn write_csv(&self, w: &mut dyn Write) -> std::io::Result<()> {
        match self {
            Predictions::Classes { class_names, rows } => {
                let mut header = String::from("row,class");
                for name in class_names {
                    header.push(',');
                    header.push_str(&csv_field(&format!("prob_{name}")));
                }
                writeln!(w, "{header}")?;
                for (i, r) in rows.iter().enumerate() {
                    let class = class_names
                        .get(r.class)
                        .cloned()
                        .unwrap_or_else(|| r.class.to_string());
                    let mut line = format!("{i},{}", csv_field(&class));
                    for p in &r.probabilities {
                        line.push_str(&format!(",{p}"));
                    }
                    writeln!(w, "{line}")?;
                }
            }
            Predictions::Values(values) => {
                writeln!(w, "row,value")?;
                for (i, v) in values.iter().enumerate() {
                    writeln!(w, "{i},{v}")?;
                }
            }
        }
        Ok(())
    }
}

/// Quotes a CSV field when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The first index of the largest value, as [`evaluate`] counts accuracy.
fn argmax(xs: &[f32]) -> usize {
    xs.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
        )
        .0
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

fn read_text(path: &Path) -> Result<String, ExportError> {
    if !path.exists() {
        return Err(ExportError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| io_err(path, e))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ExportError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| {
        // serde_json's text ends with its position, which the error names in front instead.
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        ExportError::ParseAt {
            path: path.to_path_buf(),
            line: e.line(),
            col: e.column(),
            message: message.to_string(),
        }
    })
}

fn check_version(path: &Path, found: u32) -> Result<(), ExportError> {
    if found != FORMAT_VERSION {
        return Err(ExportError::Version {
            path: path.to_path_buf(),
            expected: FORMAT_VERSION,
            found,
        });
    }
    Ok(())
}

/// Checks that the preprocessing fits the architecture's input and output.
fn check_preprocessing(
    path: &Path,
    pre: &Preprocessing,
    spec: &ModelSpec,
) -> Result<(), ExportError> {
    let bad = |message: String| {
        Err(ExportError::Inconsistent {
            path: path.to_path_buf(),
            message,
        })
    };
    let n_in = spec.input_shape.len();
    if pre.input_shape != spec.input_shape {
        return bad(format!(
            "input shape {} ({} features) disagrees with {ARCHITECTURE_FILE}, whose input is {} ({n_in} features)",
            pre.input_shape,
            pre.input_shape.len(),
            spec.input_shape
        ));
    }
    let s = &pre.standardizer;
    let (groups, what) = if s.per_channel {
        (spec.input_shape.channels, "channels")
    } else {
        (n_in, "features")
    };
    if s.mean.len() != groups || s.std.len() != groups {
        return bad(format!(
            "the standardizer has {} means and {} standard deviations, but the input of {ARCHITECTURE_FILE} has {groups} {what}",
            s.mean.len(),
            s.std.len()
        ));
    }
    if let Some(i) = s.mean.iter().position(|m| !m.is_finite()) {
        return bad(format!("standardizer mean {i} is not finite"));
    }
    if let Some(i) = s.std.iter().position(|d| !(d.is_finite() && *d > 0.0)) {
        return bad(format!(
            "standardizer standard deviation {i} is {}, not a positive number",
            s.std[i]
        ));
    }
    match pre.task {
        Task::Classification => {
            if pre.class_names.len() != spec.n_outputs {
                return bad(format!(
                    "{} class names, but {ARCHITECTURE_FILE} has {} outputs",
                    pre.class_names.len(),
                    spec.n_outputs
                ));
            }
        }
        Task::Regression => {
            if spec.n_outputs != 1 {
                return bad(format!(
                    "a regression model needs 1 output, but {ARCHITECTURE_FILE} has {}",
                    spec.n_outputs
                ));
            }
            match pre.target_scale {
                Some(t) if t.mean.is_finite() && t.std.is_finite() && t.std > 0.0 => {}
                Some(t) => {
                    return bad(format!(
                        "target scale mean {} / std {} is not usable",
                        t.mean, t.std
                    ))
                }
                None => return bad("a regression model needs a target_scale".into()),
            }
        }
    }
    Ok(())
}

/// The stored values of one tensor, checked against the shape the network needs.
fn take_tensor(
    path: &Path,
    tensors: &HashMap<String, &safetensors::tensor::TensorInfo>,
    data: &[u8],
    name: &str,
    expected: &[usize],
) -> Result<Vec<f32>, ExportError> {
    let info = tensors
        .get(name)
        .ok_or_else(|| ExportError::MissingTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
            expected: expected.to_vec(),
        })?;
    if info.dtype != Dtype::F32 {
        return Err(ExportError::TensorDtype {
            path: path.to_path_buf(),
            name: name.to_string(),
            found: format!("{:?}", info.dtype),
        });
    }
    if info.shape != expected {
        return Err(ExportError::TensorShape {
            path: path.to_path_buf(),
            name: name.to_string(),
            expected: expected.to_vec(),
            found: info.shape.clone(),
        });
    }
    let (start, end) = info.data_offsets;
    let bytes = data.get(start..end).ok_or_else(|| ExportError::Parse {
        path: path.to_path_buf(),
        message: format!("tensor `{name}` lies outside the file"),
    })?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(ExportError::NonFinite {
            path: path.to_path_buf(),
            name: name.to_string(),
            index,
        });
    }
    Ok(values)
}

/// Fills every parameter and running statistic of `net` from a safetensors file, refusing
/// missing, extra, mistyped or wrong-shaped tensors.
fn fill_weights(path: &Path, net: &mut Network) -> Result<(), ExportError> {
    if !path.exists() {
        return Err(ExportError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let buffer = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let (n, meta) = SafeTensors::read_metadata(&buffer).map_err(|e| ExportError::Parse {
        path: path.to_path_buf(),
        message: format!("not a safetensors file ({e:?})"),
    })?;
    let data = &buffer[8 + n..];
    let tensors = meta.tensors();
    let mut seen: HashSet<String> = HashSet::new();
    let mut error: Option<ExportError> = None;
    net.visit_params(&mut |name, mut p, _| {
        if error.is_some() {
            return;
        }
        match take_tensor(path, &tensors, data, &name, &param_shape(&p)) {
            Ok(values) => p.copy_from(&values),
            Err(e) => error = Some(e),
        }
        seen.insert(name);
    });
    net.visit_state(&mut |name, s| {
        for (suffix, stat) in [("mean", &mut s.running_mean), ("var", &mut s.running_var)] {
            if error.is_some() {
                return;
            }
            let full = format!("{name}_{suffix}");
            match take_tensor(path, &tensors, data, &full, &[stat.len()]) {
                Ok(values) => *stat = values,
                Err(e) => error = Some(e),
            }
            seen.insert(full);
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    let mut extra: Vec<&String> = tensors.keys().filter(|k| !seen.contains(*k)).collect();
    extra.sort();
    if let Some(name) = extra.first() {
        return Err(ExportError::ExtraTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Loads an exported model directory, rebuilding the network from `architecture.ron` and filling
/// in every tensor from `weights.safetensors`. Any disagreement between the files is refused.
pub fn load_model(dir: &Path) -> Result<LoadedModel, ExportError> {
    if !dir.is_dir() {
        return Err(ExportError::NotAModelDir {
            path: dir.to_path_buf(),
        });
    }
    for file in MODEL_FILES {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(ExportError::MissingFile { path });
        }
    }
    let path = dir.join(ARCHITECTURE_FILE);
    let spec: ModelSpec = ron::from_str(&read_text(&path)?).map_err(|e| ExportError::ParseAt {
        path: path.clone(),
        line: e.position.line,
        col: e.position.col,
        message: e.code.to_string(),
    })?;
    check_version(&path, spec.format)?;
    let dev = Cpu::default();
    // Every value is overwritten from the weights file; the seed only fixes the structure's build.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut net = build_network(
        &spec.architecture,
        spec.input_shape,
        spec.n_outputs,
        &mut rng,
        &dev,
    )
    .map_err(|e| ExportError::Inconsistent {
        path: path.clone(),
        message: format!("cannot build the network: {e}"),
    })?;
    if net.param_count != spec.param_count {
        return Err(ExportError::Inconsistent {
            path,
            message: format!(
                "records {} parameters but the architecture has {}",
                spec.param_count, net.param_count
            ),
        });
    }

    let path = dir.join(PREPROCESSING_FILE);
    let preprocessing: Preprocessing = read_json(&path)?;
    check_version(&path, preprocessing.format)?;
    check_preprocessing(&path, &preprocessing, &spec)?;

    fill_weights(&dir.join(WEIGHTS_FILE), &mut net)?;

    let metrics: ModelMetrics = read_json(&dir.join(METRICS_FILE))?;
    let provenance: Provenance = read_json(&dir.join(PROVENANCE_FILE))?;
    Ok(LoadedModel {
        dir: dir.to_path_buf(),
        spec,
        preprocessing,
        metrics,
        provenance,
        net,
        dev,
    })
}

impl LoadedModel {
    pub fn task(&self) -> Task {
        self.preprocessing.task
    }

    /// Values per sample the model takes.
    pub fn n_features(&self) -> usize {
        self.spec.input_shape.len()
    }

    /// Raw network outputs (logits, or standardised regression values) for raw feature rows.
    pub fn outputs(&mut self, features: &[f32], origin: &str) -> Result<Vec<f32>, ExportError> {
        let f = self.n_features();
        if f == 0 || !features.len().is_multiple_of(f) {
            return Err(ExportError::FeatureMismatch {
                origin: origin.to_string(),
                expected: f,
                found: features.len(),
            });
        }
        // Standardised as the trainer gathers a batch: one pass per row, into a new buffer.
        let mut x = Vec::with_capacity(features.len());
        for row in features.chunks_exact(f) {
            self.preprocessing
                .standardizer
                .extend_standardized(Row::Floats(row), &mut x);
        }
        let n = x.len() / f;
        // The trainer's batched forward pass, so outputs match the in-memory model bit for bit.
        let ds = Dataset {
            name: origin.to_string(),
            shape: self.spec.input_shape,
            features: x.into(),
            targets: Targets::Values(vec![0.0; n]),
            class_names: Vec::new(),
        };
        Ok(predict(&mut self.net, &self.dev, &ds))
    }

    fn check_features(&self, ds: &Dataset) -> Result<(), ExportError> {
        if ds.n_features() != self.n_features() {
            return Err(ExportError::FeatureMismatch {
                origin: ds.name.clone(),
                expected: self.n_features(),
                found: ds.n_features(),
            });
        }
        Ok(())
    }

    /// Standardises the raw features of `ds` and predicts every row; targets are ignored.
    pub fn predict(&mut self, ds: &Dataset) -> Result<Predictions, ExportError> {
        self.check_features(ds)?;
        let out = self.outputs(&ds.features.to_f32(), &ds.name)?;
        Ok(Predictions::from_outputs(&out, &self.preprocessing))
    }

    /// Predicts raw feature rows (`n * n_features()` values).
    pub fn predict_features(
        &mut self,
        features: &[f32],
        origin: &str,
    ) -> Result<Predictions, ExportError> {
        let out = self.outputs(features, origin)?;
        Ok(Predictions::from_outputs(&out, &self.preprocessing))
    }

    /// Loss and score (accuracy, or RMSE in target units) on labelled raw data.
    pub fn evaluate(&mut self, ds: &Dataset) -> Result<Metrics, ExportError> {
        self.check_features(ds)?;
        if ds.task() != self.task() {
            return Err(DataError::TaskMismatch {
                origin: ds.name.clone(),
                expected: self.task(),
                found: ds.task(),
            }
            .into());
        }
        if let Targets::Classes { labels, .. } = &ds.targets {
            let k = self.spec.n_outputs;
            if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= k) {
                return Err(DataError::LabelOutOfRange {
                    origin: ds.name.clone(),
                    at: format!("sample {i}"),
                    label,
                    n_classes: k,
                }
                .into());
            }
        }
        let out = self.outputs(&ds.features.to_f32(), &ds.name)?;
        let targets = match &ds.targets {
            Targets::Classes { labels, .. } => Targets::Classes {
                labels: labels.clone(),
                n_classes: self.spec.n_outputs,
            },
            t => t.clone(),
        };
        Ok(evaluate(&out, &targets, self.preprocessing.target_scale))
    }

    /// The metric this model is scored by.
    pub fn metric(&self) -> Metric {
        Metric::for_task(self.task())
    }

    /// A one-sample data set with this model's shape, task and classes, for checking new data
    /// against (as the training data would be).
    fn like(&self) -> Dataset {
        let (targets, class_names) = match self.task() {
            Task::Classification => (
                Targets::Classes {
                    labels: vec![0],
                    n_classes: self.spec.n_outputs,
                },
                self.preprocessing.class_names.clone(),
            ),
            Task::Regression => (Targets::Values(vec![0.0]), Vec::new()),
        };
        Dataset {
            name: self.provenance.data.clone(),
            shape: self.spec.input_shape,
            features: vec![0.0; self.n_features()].into(),
            targets,
            class_names,
        }
    }

    /// Loads labelled data for this model: a built-in name (its test split), an IDX directory or
    /// a CSV file with the label/target column, checked against the model's features and classes.
    pub fn load_labelled(&self, spec: &str) -> Result<Dataset, ExportError> {
        let like = self.like();
        if let Ok(DataSource::Builtin(name)) = DataSource::parse(spec) {
            let split = load_builtin(name)?;
            let ds = split.test.unwrap_or(split.train);
            return self.conform_builtin(ds);
        }
        let opts = LoadOptions {
            target_column: self.provenance.target_column.clone(),
            shape: None,
            task: Some(self.task()),
        };
        load_test_file(Path::new(spec), &opts, &like).map_err(|e| match e {
            // The loader compares with training data; here the model is what the data must fit.
            DataError::FeatureMismatch {
                origin,
                expected,
                found,
            } => ExportError::FeatureMismatch {
                origin,
                expected,
                found,
            },
            e => e.into(),
        })
    }

    fn conform_builtin(&self, ds: Dataset) -> Result<Dataset, ExportError> {
        self.check_features(&ds)?;
        if ds.task() != self.task() {
            return Err(DataError::TaskMismatch {
                origin: ds.name.clone(),
                expected: self.task(),
                found: ds.task(),
            }
            .into());
        }
        Ok(ds)
    }

    /// Loads raw feature rows to predict: a built-in name (its test split), an IDX directory, or
    /// a CSV file whose label/target column, if present, is ignored.
    pub fn load_features(&self, spec: &str) -> Result<Vec<f32>, ExportError> {
        let path = Path::new(spec);
        if path.is_file() {
            return read_feature_csv(
                path,
                self.n_features(),
                self.provenance.target_column.as_deref(),
            );
        }
        Ok(self.load_labelled(spec)?.features.into_f32())
    }
}

/// Reads the feature columns of a CSV file with a header row. The label/target column (`target`
/// when given, else `label`, else `target`, as the loader picks it) is skipped if present; every
/// other column must be numeric, and there must be exactly `n_features` of them.
pub fn read_feature_csv(
    path: &Path,
    n_features: usize,
    target: Option<&str>,
) -> Result<Vec<f32>, ExportError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ExportError::Data(DataError::NotFound {
            path: path.to_path_buf(),
        }),
        _ => io_err(path, e),
    })?;
    // Positioned as the training loader positions it, not as an I/O failure.
    let text = crate::data::decode_utf8(&bytes, path)?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(DataError::Empty {
            origin: path.display().to_string(),
        }
        .into());
    };
    let header: Vec<String> = split_fields(header.trim_start_matches('\u{feff}'));
    let skip = match target {
        Some(t) => header.iter().position(|h| h == t),
        None => header
            .iter()
            .position(|h| h == "label")
            .or_else(|| header.iter().position(|h| h == "target")),
    };
    let found = header.len() - usize::from(skip.is_some());
    if found != n_features {
        return Err(ExportError::FeatureMismatch {
            origin: path.display().to_string(),
            expected: n_features,
            found,
        });
    }
    let mut features = Vec::new();
    let mut rows = 0usize;
    for (row, line) in lines {
        let fields = split_fields(line);
        if fields.len() != header.len() {
            return Err(ExportError::BadRow {
                path: path.to_path_buf(),
                row,
                message: format!(
                    "{} fields but the header has {}",
                    fields.len(),
                    header.len()
                ),
            });
        }
        for (j, cell) in fields.iter().enumerate() {
            if Some(j) == skip {
                continue;
            }
            let v: f32 = cell.parse().map_err(|_| DataError::NotANumber {
                path: path.to_path_buf(),
                row,
                column: j + 1,
                name: header[j].clone(),
                value: cell.clone(),
            })?;
            if !v.is_finite() {
                return Err(ExportError::BadRow {
                    path: path.to_path_buf(),
                    row,
                    message: format!("column {} (`{}`): `{cell}` is not finite", j + 1, header[j]),
                });
            }
            features.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(DataError::Empty {
            origin: path.display().to_string(),
        }
        .into());
    }
    Ok(features)
}

/// Splits a CSV record on commas, honouring double-quoted fields and `""` escapes.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && cur.trim().is_empty() {
            cur.clear();
            in_quotes = true;
        } else if c == ',' {
            fields.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    fields.push(cur.trim().to_string());
    fields
}

/// Tensor names and shapes stored in a weights file, sorted by name (for inspection and tests).
pub fn stored_tensors(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, ExportError> {
    let buffer = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&buffer).map_err(|e| ExportError::Parse {
        path: path.to_path_buf(),
        message: format!("not a safetensors file ({e:?})"),
    })?;
    Ok(meta
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape.clone()))
        .collect())
}
