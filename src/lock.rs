//! One run at a time per runbook and environment: an OS file lock, so a lock left by a
//! dead process is released by the kernel and never blocks anyone.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Who holds a lock, written into the lock file by the holder.
#[derive(Debug, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
}

/// The lock's name for a runbook: rehearsals have their own namespace, so a rehearsal never
/// blocks (or is blocked by) a real run of the same runbook and environment.
pub fn namespace(runbook: &str, rehearsal: bool) -> String {
    if rehearsal { format!("{runbook}.rehearsal") } else { runbook.to_owned() }
}

/// Held until dropped (or the process dies).
pub struct RunLock {
    _file: File,
}

pub fn acquire(locks: &Path, runbook: &str, environment: Option<&str>, holder: &Holder) -> Result<RunLock, String> {
    let name = format!("{runbook}--{}.lock", environment.unwrap_or("default"));
    let path = locks.join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open the lock {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let target = environment.map(|e| format!(" on {e}")).unwrap_or_default();
            return Err(match serde_json::from_str::<Holder>(&text) {
                Ok(h) => format!(
                    "`{runbook}`{target} is already running: run {} by {}@{} (pid {}), started {}",
                    h.run_id, h.user, h.host, h.pid, h.started
                ),
                Err(_) => format!("`{runbook}`{target} is already running (lock {} is held)", path.display()),
            });
        }
        Err(TryLockError::Error(err)) => return Err(format!("cannot lock {}: {err}", path.display())),
    }
    let record = serde_json::to_string(holder).map_err(|e| e.to_string())?;
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(record.as_bytes()))
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("cannot write the lock {}: {e}", path.display()))?;
    Ok(RunLock { _file: file })
}
