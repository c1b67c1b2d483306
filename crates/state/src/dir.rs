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

/// `20261124T212700.123Z-3f9a1c`: sorts by start time to the millisecond (two runs started in
/// the same second are in order), unique enough for one state dir.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let entropy = u64::from(std::process::id()) ^ u64::from(now.timestamp_subsec_nanos()).rotate_left(20);
    format!("{}-{:06x}", now.format("%Y%m%dT%H%M%S%.3fZ"), entropy & 0xff_ffff)
}

/// The longest run id accepted (ours are 27 characters).
const MAX_RUN_ID: usize = 64;

/// A run id names a file in the state dir and nothing else: letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit, so no path separator, no `..`, no hidden file.
pub fn check_run_id(id: &str) -> Result<(), String> {
    let shape = !id.is_empty()
        && id.len() <= MAX_RUN_ID
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !id.contains("..")
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if shape {
        return Ok(());
    }
    let shown: String = id.chars().take(MAX_RUN_ID).collect::<String>().escape_debug().to_string();
    let cut = if id.chars().count() > MAX_RUN_ID { "…" } else { "" };
    Err(format!(
        "invalid run id `{shown}{cut}`: a run id is up to {MAX_RUN_ID} letters, digits, `-`, `_` and `.` (never `..`), like {} (see `runbook history`)",
        new_run_id()
    ))
}

#[cfg(test)]
mod tests {
    use super::{check_run_id, new_run_id};

    #[test]
    fn run_ids_cannot_name_a_path() {
        assert_eq!(check_run_id(&new_run_id()), Ok(()));
        for bad in ["", "../../x", "a..b", "x/..", "a/b", "..", ".hidden", "-rf", "a\u{1b}b", "a b", &"x".repeat(65)] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
    }
}
