//! What the benches share: where the peers' python lives and whether a python has torch.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// The python of the peers' venv (`../shared/peers/setup.sh`), `None` without `HOME`.
pub fn peer_venv_python() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nas-peers-venv/bin/python"))
}

/// Whether `python` runs and imports torch.
pub fn has_torch(python: &OsStr) -> bool {
    Command::new(python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success())
}
