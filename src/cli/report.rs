//! `nas plot` and `nas report`: a study's plots as files, and its one-page HTML report.

use super::{only_study, storage_url, CliError};
use crate::plot::{self, PlotInput};
use crate::report::{self, Report};
use crate::space::SearchSpace;
use crate::study::{study_dir, Objectives, Storage};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Study name (default: the only, else most recently changed, study under --results).
    #[arg(long)]
    pub study: Option<String>,
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where studies are stored: postgresql://USER:PASSWORD@HOST:PORT/DATABASE for a database in
    /// Optuna's schema (default: the journal under --results). Files go under --results.
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Study name (default: the only, else most recently changed, study under --results).
    #[arg(long)]
    pub study: Option<String>,
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Where studies are stored: postgresql://USER:PASSWORD@HOST:PORT/DATABASE for a database in
    /// Optuna's schema (default: the journal under --results). Files go under --results.
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// The CSV label/target column, if `nas search` was given --target (for the layer table).
    #[arg(long)]
    pub target: Option<String>,
    /// The input shape, if `nas search` was given --shape (for the layer table).
    #[arg(long)]
    pub shape: Option<String>,
}

/// A study opened for reading, with its space when the recorded space file still parses.
struct Opened {
    dir: PathBuf,
    storage: Box<dyn Storage>,
    space: Option<SearchSpace>,
}

fn open(study: Option<String>, results: &Path, flag: Option<&str>) -> Result<Opened, CliError> {
    let url = storage_url(flag, results)?;
    let study = match study {
        Some(s) => s,
        None => only_study(&url)?,
    };
    let dir = study_dir(results, &study);
    let storage = crate::study::open(&url, &study)?;
    let meta = storage.meta();
    let space = SearchSpace::from_str_named(&meta.space_source, &study, &meta.space_file).ok();
    Ok(Opened {
        dir,
        storage,
        space,
    })
}

/// Writes the plots of the study in `dir` and says where (unless `quiet`); used at the end of
/// `nas search` and by `nas plot`.
pub(crate) fn write_plots(
    dir: &Path,
    storage: &dyn Storage,
    space: Option<&SearchSpace>,
    quiet: bool,
) -> Result<(), CliError> {
    let meta = storage.meta();
    let input = PlotInput {
        study: &meta.name,
        metric: meta.metric,
        objectives: &meta.objectives,
        trials: storage.trials(),
        space,
        seed: meta.seed,
    };
    plot::write_all(dir, &input)?;
    if !plot::system_fonts_found() {
        eprintln!("nas: warning: no system font found, so the PNG plots have no text (install fonts-dejavu-core); the SVG plots are complete");
    }
    if !quiet {
        eprintln!(
            "nas: plots in {} (SVG and PNG)",
            dir.join("plots").display()
        );
    }
    Ok(())
}

pub fn plot(a: PlotArgs) -> Result<(), CliError> {
    let o = open(a.study, &a.results, a.storage.as_deref())?;
    write_plots(&o.dir, o.storage.as_ref(), o.space.as_ref(), true)?;
    for kind in plot::PlotKind::ALL {
        for ext in ["svg", "png"] {
            println!(
                "{}",
                o.dir
                    .join("plots")
                    .join(format!("{}.{ext}", kind.file_stem()))
                    .display()
            );
        }
    }
    Ok(())
}

pub fn report(a: ReportArgs) -> Result<(), CliError> {
    if let Some(s) = &a.shape {
        s.parse::<crate::data::InputShape>()?;
    }
    let o = open(a.study, &a.results, a.storage.as_deref())?;
    let meta = o.storage.meta();
    let trials = o.storage.trials();
    // The layer table needs the data's input shape and output count, which the study does not
    // keep: the data is read again, and a report without the table beats no report.
    let layers = match Objectives::of(meta).best(trials) {
        None => Err("no trial has completed".to_string()),
        Some(best) => super::trial::layers(
            a.target.as_deref(),
            a.shape.as_deref(),
            meta,
            o.space.as_ref(),
            best,
        ),
    };
    if let Err(e) = &layers {
        eprintln!("nas: warning: the report has no layer table: {e}");
    }
    let html = report::render(&Report {
        meta,
        trials,
        test: o.storage.test_result(),
        space: o.space.as_ref(),
        layers,
    })?;
    let path = o.dir.join("report.html");
    super::write_file(&path, &html)?;
    println!("{}", path.display());
    Ok(())
}
