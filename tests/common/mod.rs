//! Shared by the integration tests: a journal with hooks on its writes, and study settings.

use nas::space::{Config, SearchSpace};
use nas::study::{JournalStorage, Metric, Storage, StudyError, StudyMeta, TestResult, TrialRecord};

/// The settings of a random/FIFO study `name` of seed 0 over `space` (written as `source`).
pub fn study_meta(
    name: &str,
    space: &SearchSpace,
    source: &str,
    data: &str,
    folds: usize,
) -> StudyMeta {
    StudyMeta {
        name: name.into(),
        space_file: format!("{name}.ron"),
        space_source: source.into(),
        data: data.into(),
        task: space.task,
        metric: Metric::for_task(space.task),
        seed: 0,
        folds,
        strategy: "random".into(),
        scheduler: "fifo".into(),
        objectives: Vec::new(),
    }
}

type ReportHook = Box<dyn FnMut(usize, usize, f64) -> Result<(), StudyError> + Send>;
type FinishHook = Box<dyn FnMut(&[TrialRecord]) + Send>;

/// A [`JournalStorage`] whose epoch reports and finished trials first pass through hooks: a
/// report hook may fail (a full disk), a finish hook sees the study after each finished trial.
pub struct Hooked {
    pub inner: JournalStorage,
    pub on_report: Option<ReportHook>,
    pub on_finish: Option<FinishHook>,
}

impl Hooked {
    pub fn new(inner: JournalStorage) -> Hooked {
        Hooked {
            inner,
            on_report: None,
            on_finish: None,
        }
    }
}

impl Storage for Hooked {
    fn meta(&self) -> &StudyMeta {
        self.inner.meta()
    }
    fn trials(&self) -> &[TrialRecord] {
        self.inner.trials()
    }
    fn refresh(&mut self) -> Result<(), StudyError> {
        self.inner.refresh()
    }
    fn create_trial_within(&mut self, limit: Option<usize>) -> Result<Option<usize>, StudyError> {
        self.inner.create_trial_within(limit)
    }
    fn set_params(&mut self, number: usize, config: Config, seed: u64) -> Result<(), StudyError> {
        self.inner.set_params(number, config, seed)
    }
    fn report(&mut self, number: usize, epoch: usize, value: f64) -> Result<(), StudyError> {
        if let Some(hook) = &mut self.on_report {
            hook(number, epoch, value)?;
        }
        self.inner.report(number, epoch, value)
    }
    fn finish_trial(&mut self, record: TrialRecord) -> Result<(), StudyError> {
        self.inner.finish_trial(record)?;
        if let Some(hook) = &mut self.on_finish {
            hook(self.inner.trials());
        }
        Ok(())
    }
    fn set_test_result(&mut self, result: TestResult) -> Result<(), StudyError> {
        self.inner.set_test_result(result)
    }
    fn test_result(&self) -> Option<&TestResult> {
        self.inner.test_result()
    }
}
