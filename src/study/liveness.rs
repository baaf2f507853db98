//! Whether the process that owns a running trial is alive, told by a lock the kernel drops at death.
//!
//! Each process that creates trials holds an exclusive `flock` on `owners/<worker_id>.lock` in the
//! study directory while one of its connections to the study lives. The kernel releases the lock
//! when the process dies, however it dies and whether or not its parent reaps it (a zombie keeps
//! its `/proc` entry, not its locks), so whoever can take the lock knows the owner is gone. That
//! holds from any host that shares the file system, where `flock` works across hosts (NFSv4, the
//! Linux NFS client, cluster file systems), as it must for the journal's own lock.
//!
//! Journals written before these locks existed have no lock file for their owners; for them the
//! owner is looked up in `/proc` on its own host (pid and start time) and presumed alive elsewhere.

use super::StudyError;
use fs4::fs_std::FileExt;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The folder of owner locks inside a study directory.
pub const OWNERS: &str = "owners";

/// This process's hold on its owner lock in one study. Every connection of the process to that
/// study shares it: two `flock`s of one file conflict even within a process.
pub struct OwnerLock {
    path: PathBuf,
    /// Holds the lock until dropped.
    _file: File,
}

/// Owner locks this process holds, by lock path, while some connection still uses them.
static HELD: Mutex<Vec<(PathBuf, Weak<OwnerLock>)>> = Mutex::new(Vec::new());

/// Takes (or shares, within this process) the owner lock of `worker_id` in study `dir`.
pub fn hold(dir: &Path, worker_id: &str) -> Result<Arc<OwnerLock>, StudyError> {
    let owners = dir.join(OWNERS);
    std::fs::create_dir_all(&owners).map_err(|e| io_err(&owners, e))?;
    let owners = owners.canonicalize().map_err(|e| io_err(&owners, e))?;
    let path = lock_path(&owners, worker_id).ok_or_else(|| {
        StudyError::Conflict(format!("`{worker_id}` cannot name an owner lock file"))
    })?;
    // A poisoned registry is still a valid list: the panic happened elsewhere.
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    held.retain(|(_, w)| w.strong_count() > 0);
    if let Some(lock) = held
        .iter()
        .find(|(p, _)| *p == path)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(lock);
    }
    let lock = Arc::new(take(&path)?);
    held.push((path, Arc::downgrade(&lock)));
    Ok(lock)
}

/// Gives up `lock`; when it was this process's last use of it and `tidy` (the owner left no
/// running trial), removes the file too, since nobody will need to ask about this owner again.
pub fn release(lock: Arc<OwnerLock>, tidy: bool) {
    // Under the registry's lock, so that no connection of this process picks the lock up again
    // between the removal and the unlock.
    let held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    if tidy && Arc::strong_count(&lock) == 1 {
        // Removed while still locked: a prober that opened it first then finds it unlocked but
        // names an owner with nothing running, and one that opens it later finds nothing.
        let _ = std::fs::remove_file(&lock.path);
    }
    drop(lock);
    drop(held);
}

/// Opens and locks `path`, waiting for a prober that holds it for a moment. A prober that found
/// the previous holder dead removes the file; the lock taken on a removed file protects nothing,
/// so the file is opened again until the lock is on the one at `path`.
fn take(path: &Path) -> Result<OwnerLock, StudyError> {
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        FileExt::lock_exclusive(&file).map_err(|e| io_err(path, e))?;
        if is_at(&file, path).map_err(|e| io_err(path, e))? {
            return Ok(OwnerLock {
                path: path.to_path_buf(),
                _file: file,
            });
        }
    }
}

#[cfg(unix)]
fn is_at(file: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(open.dev() == now.dev() && open.ino() == now.ino()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn is_at(_file: &File, path: &Path) -> std::io::Result<bool> {
    Ok(path.exists())
}

/// The lock file of `worker_id`, unless the id (read from a journal) could name another path.
fn lock_path(owners: &Path, worker_id: &str) -> Option<PathBuf> {
    let plain = !worker_id.is_empty()
        && !worker_id.starts_with('.')
        && !worker_id.contains(['/', '\\', '\0']);
    plain.then(|| owners.join(format!("{worker_id}.lock")))
}

/// What an owner's lock file says about it.
pub enum Liveness {
    /// Someone holds the lock: the owner.
    Alive,
    /// The lock was free, and is now held by the prober until [`DeadOwner::remove`].
    Dead(DeadOwner),
    /// No lock file (a journal from before owner locks), or no way to lock it.
    Unknown,
}

/// The lock file of an owner found dead, locked by the prober.
pub struct DeadOwner {
    path: PathBuf,
    _file: File,
}

impl DeadOwner {
    /// Removes the lock file, once the owner's trials have been recorded as lost.
    pub fn remove(self) {
        // Already removed by another prober is as good.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Asks the lock file of `worker_id` in study `dir` whether the owner lives.
pub fn probe(dir: &Path, worker_id: &str) -> Liveness {
    match lock_path(&dir.join(OWNERS), worker_id) {
        Some(path) => probe_path(path),
        None => Liveness::Unknown,
    }
}

fn probe_path(path: PathBuf) -> Liveness {
    // Reading is enough to lock, and needs no write permission on the file.
    let Ok(file) = File::open(&path) else {
        return Liveness::Unknown;
    };
    match FileExt::try_lock_exclusive(&file) {
        Ok(()) => Liveness::Dead(DeadOwner { path, _file: file }),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Liveness::Alive,
        // A file system that cannot lock tells nothing.
        Err(_) => Liveness::Unknown,
    }
}

/// The dead owners among the lock files of study `dir` whose ids are not in `skip`: their lock
/// files are left over and can go.
pub fn dead_owners(dir: &Path, skip: &[&str]) -> Vec<DeadOwner> {
    let Ok(entries) = std::fs::read_dir(dir.join(OWNERS)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_suffix(".lock")
                .is_some_and(|id| !skip.contains(&id))
        })
        .filter_map(|e| match probe_path(e.path()) {
            Liveness::Dead(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// The name of this host, the first half of a worker id.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// For an owner without lock file: whether the process behind `worker_id` (`<hostname>-<pid>`)
/// is known to be gone, which `/proc` tells on its own host only. A zombie counts as alive here,
/// which is why owners now hold a lock.
pub fn legacy_owner_is_gone(worker_id: &str, start: Option<u64>, host: &str) -> bool {
    let Some((owner_host, pid)) = worker_id.rsplit_once('-') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    // Another host, or no /proc to ask: the owner cannot be checked, so it is presumed alive.
    if owner_host != host || !Path::new("/proc/self").exists() {
        return false;
    }
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return true;
    }
    matches!((start, process_start(pid)), (Some(a), Some(b)) if a != b)
}

fn io_err(path: &Path, e: std::io::Error) -> StudyError {
    StudyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_without_lock_file_on_other_hosts_are_presumed_alive() {
        assert!(!legacy_owner_is_gone("elsewhere-1", None, "here"));
        assert!(!legacy_owner_is_gone("0c1f-uuid-like-140231", None, "here"));
    }

    #[test]
    fn worker_ids_that_could_name_another_path_have_no_lock_file() {
        let owners = Path::new("/s/owners");
        for id in ["", "../x-1", "a/b-1", ".hidden-1"] {
            assert!(lock_path(owners, id).is_none(), "{id}");
        }
        assert_eq!(
            lock_path(owners, "host-42"),
            Some(PathBuf::from("/s/owners/host-42.lock"))
        );
    }

    #[test]
    fn a_held_owner_lock_is_alive_and_a_released_one_is_dead_and_removable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lock = hold(dir.path(), "h-1").expect("holds");
        let again = hold(dir.path(), "h-1").expect("shares within the process");
        assert!(Arc::ptr_eq(&lock, &again));
        assert!(matches!(probe(dir.path(), "h-1"), Liveness::Alive));
        assert!(matches!(probe(dir.path(), "h-2"), Liveness::Unknown));
        drop(again);
        release(lock, false);
        let Liveness::Dead(d) = probe(dir.path(), "h-1") else {
            panic!("a released lock is a dead owner");
        };
        d.remove();
        assert!(!dir.path().join(OWNERS).join("h-1.lock").exists());
    }
}
