//! Fuzz target: replaying an arbitrary `journal.log` through the public API
//! (`JournalStorage::open`) never panics; it opens the study or returns an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nas::study::{JournalStorage, Storage};

fuzz_target!(|data: &[u8]| {
    // A fresh directory each run: open may leave a lock file and the study is the dir's name.
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    if std::fs::write(dir.path().join(JournalStorage::FILE), data).is_err() {
        return;
    }
    if let Ok(storage) = JournalStorage::open(dir.path()) {
        let _ = storage.meta();
        for t in storage.trials() {
            let _ = format!("{t:?}");
        }
        let _ = storage.test_result();
    }
});
