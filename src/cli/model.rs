//! The model subcommands: `export` retrains a study's trial and writes it as a model directory,
//! `predict` and `evaluate` reload such a directory and apply it to new data.

use super::{load_data, CliError, StudyArgs};
use crate::controller::{train_final, PreparedData};
use crate::export::{load_model, save_model, ExportError, Provenance};
use crate::leaderboard;
use crate::search::TrialState;
use crate::space::SearchSpace;
use crate::study::{Objectives, StudyError};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub at: StudyArgs,
    /// The trial to export (default: the best complete trial; with several objectives, the
    /// Pareto front's best on the first objective). Any point of the front: `nas leaderboard
    /// --pareto` lists them.
    #[arg(long)]
    pub trial: Option<usize>,
    /// The model directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The CSV label/target column, if `nas search` was given --target.
    #[arg(long)]
    pub target: Option<String>,
    /// The input shape, if `nas search` was given --shape.
    #[arg(long)]
    pub shape: Option<String>,
    /// The held-out test set, if `nas search` was given --test-data.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model directory written by `nas export`.
    #[arg(long)]
    pub model: PathBuf,
    /// A CSV file (features; a label/target column is ignored), an IDX directory or a built-in name.
    #[arg(long)]
    pub data: String,
    /// Where to write the predictions (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A model directory written by `nas export`.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data: a CSV file with the label/target column, an IDX directory or a built-in name
    /// (its test split).
    #[arg(long)]
    pub data: String,
}

/// Broken model directories and unusable data are the user's to fix (exit 2); failing to write is not.
impl From<ExportError> for CliError {
    fn from(e: ExportError) -> CliError {
        match e {
            ExportError::Data(d) => CliError::Data(d),
            ExportError::Io { path, message } => CliError::Study(StudyError::Io { path, message }),
            other => CliError::Usage(other.to_string()),
        }
    }
}

pub fn export(a: ExportArgs) -> Result<(), CliError> {
    super::check_creatable(&a.out)?;
    let (study, storage) = a.at.open()?;
    let meta = storage.meta().clone();
    let space = SearchSpace::from_str_named(&meta.space_source, &meta.name, &meta.space_file)?;
    let record = match a.trial {
        Some(n) => {
            let t = storage
                .trials()
                .iter()
                .find(|t| t.number == n)
                .ok_or_else(|| CliError::Usage(StudyError::NoTrial(n).to_string()))?;
            if t.state != TrialState::Complete {
                return Err(CliError::Usage(format!(
                    "trial {n} of study `{study}` is {}, not complete; only complete trials can be exported",
                    t.state.label()
                )));
            }
            t.clone()
        }
        None => Objectives::of(&meta)
            .best(storage.trials())
            .cloned()
            .ok_or_else(|| {
                CliError::Usage(format!("study `{study}` has no complete trial to export"))
            })?,
    };

    let split = load_data(
        &meta.data,
        a.target.as_deref(),
        a.shape.as_deref(),
        a.test_data.as_deref(),
        space.task,
    )?;
    let data = PreparedData::new(split, meta.folds, meta.seed)?;
    eprintln!(
        "nas: retraining trial {} of study `{study}` on all {} search samples for {} epochs, then one evaluation on {} test samples",
        record.number,
        data.train.len(),
        record.epochs.max(1),
        data.test.len()
    );
    let cancel = AtomicBool::new(false);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut model = train_final(&space, &data, meta.metric, &record, &cancel, threads)?;
    let mut provenance = Provenance::new(
        &meta.name,
        record.number,
        meta.seed,
        record.seed,
        &meta.space_file,
        &meta.data,
        meta.folds,
    );
    provenance.target_column = a.target;
    provenance.shape = a.shape;
    provenance.test_data = a.test_data.map(|p| p.display().to_string());
    // An --out under a regular file is the user's to fix, and is named as such.
    std::fs::create_dir_all(&a.out).map_err(|e| CliError::CannotCreate {
        path: a.out.clone(),
        message: e.to_string(),
    })?;
    save_model(&a.out, &mut model, &data.train, &record, &provenance)?;
    println!("{}", leaderboard::test_line(&model.test));
    eprintln!("nas: model written to {}", a.out.display());
    Ok(())
}

pub fn predict(a: PredictArgs) -> Result<(), CliError> {
    let mut model = load_model(&a.model)?;
    let features = model.load_features(&a.data)?;
    let predictions = model.predict_features(&features, &a.data)?;
    let mut text = Vec::new();
    predictions
        .write_csv(&mut text)
        .map_err(|e| io_error(Path::new("<memory>"), e))?;
    match &a.out {
        Some(path) => {
            write_output(path, &text)?;
            eprintln!(
                "nas: {} predictions written to {}",
                predictions.len(),
                path.display()
            );
        }
        None => std::io::stdout()
            .write_all(&text)
            .map_err(|e| io_error(Path::new("<stdout>"), e))?,
    }
    Ok(())
}

pub fn evaluate(a: EvaluateArgs) -> Result<(), CliError> {
    let mut model = load_model(&a.model)?;
    let ds = model.load_labelled(&a.data)?;
    let m = model.evaluate(&ds)?;
    println!(
        "{} {:.4}  loss {:.4}  n {}",
        model.metric().label(),
        m.score,
        m.loss,
        ds.len()
    );
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a failed run leaves
/// no half file. A path that cannot be created is the user's to fix (exit 2); a failed write is not.
fn write_output(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| CliError::CannotCreate {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let written = f
        .write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_error(&tmp, e))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| io_error(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn io_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::Study(StudyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
