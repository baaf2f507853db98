//! `nas plot` and `nas report`: a study's plots as files, and its one-page HTML report.

use super::{CliError, StudyArgs};
use crate::plot::{self, PlotInput};
use crate::report::{self, Report};
use crate::space::SearchSpace;
use crate::study::{study_dir, Objectives, Storage};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct PlotArgs {
    #[command(flatten)]
    pub at: StudyArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub at: StudyArgs,
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

fn open(at: &StudyArgs) -> Result<Opened, CliError> {
    let (study, storage) = at.open()?;
    let dir = study_dir(&at.results, &study);
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
    let o = open(&a.at)?;
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
    let o = open(&a.at)?;
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
