//! Where runs are recorded: `--state-dir`, `RUNBOOK_STATE_DIR`, `$XDG_STATE_HOME/runbook`,
//! or `~/.local/state/runbook`.

use std::path::{Path, PathBuf};

pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn resolve(given: Option<&Path>) -> Result<StateDir, String> {
        let root = match given {
            Some(path) => path.to_path_buf(),
            None => match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
                Some(state) => PathBuf::from(state).join("runbook"),
                None => {
                    let home = std::env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .ok_or("cannot find a state directory: set --state-dir, RUNBOOK_STATE_DIR or HOME")?;
                    PathBuf::from(home).join(".local/state/runbook")
                }
            },
        };
        Ok(StateDir { root })
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub fn journal_path(&self, run_id: &str) -> PathBuf {
        self.runs().join(format!("{run_id}.jsonl"))
    }

    pub fn create(&self) -> Result<(), String> {
        for dir in [self.runs(), self.locks()] {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Ok(())
    }
}

/// Who and where, for the journal and the lock.
pub fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

pub fn host() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".into())
}

/// `20261124T212700.123Z-3f9a1c`: sorts by start time to the millisecond (two runs started in
/// the same second are in order), unique enough for one state dir.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let entropy = u64::from(std::process::id()) ^ u64::from(now.timestamp_subsec_nanos()).rotate_left(20);
    format!("{}-{:06x}", now.format("%Y%m%dT%H%M%S%.3fZ"), entropy & 0xff_ffff)
}
