//! `nas trial N`: one trial of a study in full, its network counted on the study's data.

use super::{load_data, print_out, CliError, StudyArgs};
use crate::space::SearchSpace;
use crate::study::{StudyError, StudyMeta, TrialRecord};
use crate::trial_view::{Format, TrialView};
use clap::Args;

#[derive(Debug, Args)]
pub struct TrialArgs {
    /// The trial's number (the leaderboard's `trial` column).
    pub number: usize,
    #[command(flatten)]
    pub at: StudyArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The CSV label/target column, if `nas search` was given --target.
    #[arg(long)]
    pub target: Option<String>,
    /// The input shape, if `nas search` was given --shape.
    #[arg(long)]
    pub shape: Option<String>,
}

pub fn run(a: TrialArgs) -> Result<(), CliError> {
    let (study, storage) = a.at.open()?;
    let mut meta = storage.meta().clone();
    meta.name = study.clone();
    let trials = storage.trials();
    let trial = trials.get(a.number).ok_or_else(|| {
        CliError::Usage(match trials.len() {
            0 => format!("study `{study}` has no trials yet"),
            n => format!(
                "{} (study `{study}` has trials 0 to {})",
                StudyError::NoTrial(a.number),
                n - 1
            ),
        })
    })?;
    let space = SearchSpace::from_str_named(&meta.space_source, &study, &meta.space_file).ok();
    let layers = layers(
        a.target.as_deref(),
        a.shape.as_deref(),
        &meta,
        space.as_ref(),
        trial,
    );
    let view = TrialView::new(&meta, trials, trial, space.as_ref(), layers);
    print_out(&view.render(a.format))
}

/// The trial's network counted on the study's data (its input shape and outputs), or why not;
/// `target` and `shape` as `nas search` was given them. `nas report` uses it too.
pub(crate) fn layers(
    target: Option<&str>,
    shape: Option<&str>,
    meta: &StudyMeta,
    space: Option<&SearchSpace>,
    trial: &TrialRecord,
) -> Result<crate::nn::LayerTable, String> {
    let space = space.ok_or("the study's space no longer reads (changed by a newer nas?)")?;
    let split = load_data(
        &meta.data,
        target,
        shape,
        None,
        meta.task,
    )
    .map_err(|e| {
        format!("its input shape comes from the data, which does not load: {e} (give --shape and --target as to `nas search`)")
    })?;
    crate::nn::layer_table(
        &space.decode(&trial.config).arch,
        split.train.shape,
        split.train.n_outputs(),
    )
    .map_err(|e| e.to_string())
}
