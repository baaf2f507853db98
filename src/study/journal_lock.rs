//! Optuna's own journal lock: the symbolic link `<journal>.lock` that `JournalFileBackend`'s
//! writers create before they append and remove after (`JournalFileSymlinkLock`). `nas` takes it
//! around each of its transactions too, so that a Python Optuna process and `nas` appending to
//! one journal take turns.
//!
//! The rules are Optuna's: creating the link is taking the lock (atomic, also on NFS); releasing
//! renames it to a unique name and removes that, so two releasers cannot both remove it; a lock
//! whose journal has not changed for the grace period (30 s) was left by a writer that died, and
//! is released by whoever waits for it.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Optuna's default grace period before a lock is taken as abandoned.
pub const GRACE: Duration = Duration::from_secs(30);

/// The lock, held until dropped.
pub struct SymlinkLock {
    path: PathBuf,
}

/// `<journal>.lock`, Optuna's name for the lock of `journal`.
pub fn lock_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl SymlinkLock {
    /// Takes the lock of `journal` (which must exist), waiting for another writer to release it.
    pub fn acquire(journal: &Path) -> std::io::Result<SymlinkLock> {
        let path = lock_path(journal);
        // The link's target is the journal's name, relative to the link: `stat` through it finds
        // the journal wherever the directory is mounted.
        let target = journal
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| journal.to_path_buf());
        let mut sleep = Duration::from_millis(1);
        let mut seen: Option<SystemTime> = None;
        let mut since = Instant::now();
        loop {
            match symlink(&target, &path) {
                Ok(()) => return Ok(SymlinkLock { path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            // As Optuna: the holder's progress shows in the journal's time of change.
            match std::fs::metadata(&path).and_then(|m| m.modified()) {
                Ok(t) if seen != Some(t) => {
                    seen = Some(t);
                    since = Instant::now();
                }
                Ok(_) if since.elapsed() > GRACE => {
                    eprintln!(
                        "nas: warning: {}: releasing a lock left for more than {}s by a writer that stopped",
                        path.display(),
                        GRACE.as_secs()
                    );
                    release(&path);
                    since = Instant::now();
                    continue;
                }
                _ => {}
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(50));
        }
    }
}

impl Drop for SymlinkLock {
    fn drop(&mut self) {
        release(&self.path);
    }
}

/// Renames the link to a name of this process's own, then removes it.
fn release(path: &Path) {
    let mut unique = path.as_os_str().to_owned();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    unique.push(format!("{}-{nanos}.rename", std::process::id()));
    if std::fs::rename(path, &unique).is_ok() {
        let _ = std::fs::remove_file(&unique);
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, link: &Path) -> std::io::Result<()> {
    // Without symbolic links, an exclusively created file (Optuna's `JournalFileOpenLock`).
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(link)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_a_link_next_to_the_journal_while_held_and_gone_after() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = dir.path().join("journal.log");
        std::fs::write(&journal, "").expect("journal");
        let lock = SymlinkLock::acquire(&journal).expect("takes the lock");
        let link = dir.path().join("journal.log.lock");
        assert!(std::fs::symlink_metadata(&link).is_ok());
        assert_eq!(
            std::fs::canonicalize(&link).expect("resolves"),
            std::fs::canonicalize(&journal).expect("journal")
        );
        drop(lock);
        assert!(std::fs::symlink_metadata(&link).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "only the journal is left");
    }
}
