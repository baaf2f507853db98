//! A study kept as one JSON document, rewritten atomically (temporary file + rename) per change.

use super::{Storage, StudyError, StudyMeta, TestResult, TrialRecord};
use crate::space::Config;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Document {
    meta: StudyMeta,
    trials: Vec<TrialRecord>,
    test: Option<TestResult>,
}

pub struct SnapshotStorage {
    path: PathBuf,
    doc: Document,
}

impl SnapshotStorage {
    pub const FILE: &'static str = "study.json";

    /// Creates a new study in `dir`, replacing nothing that exists: an existing study is loaded.
    pub fn open_or_create(dir: &Path, meta: StudyMeta) -> Result<SnapshotStorage, StudyError> {
        let path = dir.join(Self::FILE);
        if path.exists() {
            return Self::open(dir);
        }
        std::fs::create_dir_all(dir).map_err(|e| StudyError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let s = SnapshotStorage {
            path,
            doc: Document {
                meta,
                trials: Vec::new(),
                test: None,
            },
        };
        s.save()?;
        Ok(s)
    }

    pub fn open(dir: &Path) -> Result<SnapshotStorage, StudyError> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| StudyError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let doc: Document = serde_json::from_str(&text).map_err(|e| StudyError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(SnapshotStorage { path, doc })
    }

    fn save(&self) -> Result<(), StudyError> {
        let io = |e: std::io::Error| StudyError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.doc).map_err(|e| StudyError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    fn trial_mut(&mut self, number: usize) -> Result<&mut TrialRecord, StudyError> {
        self.doc
            .trials
            .iter_mut()
            .find(|t| t.number == number)
            .ok_or(StudyError::NoTrial(number))
    }
}

impl Storage for SnapshotStorage {
    fn meta(&self) -> &StudyMeta {
        &self.doc.meta
    }

    fn trials(&self) -> &[TrialRecord] {
        &self.doc.trials
    }

    fn create_trial(&mut self) -> Result<usize, StudyError> {
        let number = self.doc.trials.len();
        self.doc
            .trials
            .push(TrialRecord::new(number, Config::new(), 0));
        Ok(number)
    }

    fn set_params(&mut self, number: usize, config: Config, seed: u64) -> Result<(), StudyError> {
        let t = self.trial_mut(number)?;
        t.config = config;
        t.seed = seed;
        self.save()
    }

    fn report(&mut self, number: usize, _epoch: usize, value: f64) -> Result<(), StudyError> {
        // Kept in memory only: the final record carries the whole curve.
        self.trial_mut(number)?.intermediate.push(value);
        Ok(())
    }

    fn finish_trial(&mut self, record: TrialRecord) -> Result<(), StudyError> {
        let number = record.number;
        *self.trial_mut(number)? = record;
        self.save()
    }

    fn set_test_result(&mut self, result: TestResult) -> Result<(), StudyError> {
        self.doc.test = Some(result);
        self.save()
    }

    fn test_result(&self) -> Option<&TestResult> {
        self.doc.test.as_ref()
    }
}
