//! The one place a storage is chosen: a study is opened or created at a [`StorageUrl`], and the
//! rest of `nas` sees only the [`Storage`] trait (as Optuna's `get_storage(url)`).

use super::postgres::PostgresStorage;
use super::url::StorageUrl;
use super::{study_dir, JournalStorage, Storage, StudyError, StudyMeta};
use std::time::Duration;

/// Optuna's usual heartbeat interval for `RDBStorage` examples; stale after twice that.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// How a worker uses a storage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StorageOptions {
    /// How often a database storage stamps this worker's running trials; a running trial whose
    /// stamp is older than twice this was lost. (A journal tells dead workers by their owner
    /// locks, and has no heartbeat.)
    pub heartbeat: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

/// Opens study `meta.name` at `url`, or creates it. An existing study keeps its own metadata:
/// compare [`Storage::meta`] with what you expected.
pub fn open_or_create(
    url: &StorageUrl,
    meta: StudyMeta,
    options: StorageOptions,
) -> Result<Box<dyn Storage>, StudyError> {
    Ok(match url {
        StorageUrl::Journal { results } => {
            let dir = study_dir(results, &meta.name);
            Box::new(JournalStorage::open_or_create(&dir, meta)?)
        }
        StorageUrl::Postgres(pg) => Box::new(PostgresStorage::open_or_create(
            pg,
            meta,
            options.heartbeat,
        )?),
    })
}

/// Opens the existing study `study` at `url`; [`StudyError::Missing`] when there is none.
pub fn open(url: &StorageUrl, study: &str) -> Result<Box<dyn Storage>, StudyError> {
    Ok(match url {
        StorageUrl::Journal { results } => {
            let dir = study_dir(results, study);
            if !dir.join(JournalStorage::FILE).exists() {
                return Err(StudyError::Missing(study.to_string()));
            }
            Box::new(JournalStorage::open(&dir)?)
        }
        StorageUrl::Postgres(pg) => Box::new(PostgresStorage::open(pg, study)?),
    })
}

/// The study whose trials changed last at `url` (a journal's file time, or the database's
/// trial times), if there is any.
pub fn latest_study(url: &StorageUrl) -> Result<Option<String>, StudyError> {
    match url {
        StorageUrl::Journal { results } => {
            let Ok(entries) = std::fs::read_dir(results) else {
                return Ok(None);
            };
            let mut best: Option<(std::time::SystemTime, String)> = None;
            for e in entries.flatten() {
                let file = e.path().join(JournalStorage::FILE);
                if let Ok(m) = std::fs::metadata(&file).and_then(|m| m.modified()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if best.as_ref().is_none_or(|(t, _)| m > *t) {
                        best = Some((m, name));
                    }
                }
            }
            Ok(best.map(|(_, n)| n))
        }
        StorageUrl::Postgres(pg) => PostgresStorage::latest_study(pg),
    }
}
