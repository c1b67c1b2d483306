//! One run at a time per runbook and environment, on one machine: an OS file lock, so a lock
//! left by a dead process is released by the kernel and never blocks anyone.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub use crate::store::Holder;

/// The lock's name for a runbook: rehearsals have their own namespace, so a rehearsal never
/// blocks (or is blocked by) a real run of the same runbook and environment.
pub fn namespace(runbook: &str, rehearsal: bool) -> String {
    if rehearsal { format!("{runbook}.rehearsal") } else { runbook.to_owned() }
}

/// Held until dropped (or the process dies).
pub struct RunLock {
    _file: File,
}

impl crate::store::HeldLock for RunLock {
    /// The kernel keeps a file lock for as long as the process lives: it cannot be lost.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

pub fn acquire(
    locks: &Path,
    runbook: &str,
    environment: Option<&str>,
    holder: &Holder,
    show: crate::store::Show,
) -> Result<RunLock, String> {
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
            let target = environment.map(|e| format!(" on {e}")).unwrap_or_default();
            return Err(match read_holder(&mut file) {
                Some(h) => format!("`{runbook}`{target} is already running: {}", h.describe(show)),
                None => format!("`{runbook}`{target} is already running (lock {} is held)", path.display()),
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

/// The holder of a lock file if a live process holds it, without taking it.
pub fn holder(path: &Path) -> Result<Option<Holder>, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open the lock {}: {e}", path.display()))?;
    match file.try_lock_shared() {
        // Nobody holds it; our shared lock goes with the file.
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => Ok(Some(read_holder(&mut file).unwrap_or_else(|| Holder {
            run_id: "?".into(),
            user: "?".into(),
            identity: String::new(),
            host: "?".into(),
            pid: 0,
            version: String::new(),
            started: "?".into(),
        }))),
        Err(TryLockError::Error(err)) => Err(format!("cannot read the lock {}: {err}", path.display())),
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str::<Holder>(&text).ok()
}
