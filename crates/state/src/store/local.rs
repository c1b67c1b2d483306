//! The local store: today's behaviour. The lock is an OS file lock in the state dir, the
//! journal is the run's JSON-lines file there (written by [`crate::journal::Journal`]).

use std::sync::Arc;

use super::{Acquired, Broken, Holder, LockName, LockState, RunEntry, Show, Store};
use crate::dir::StateDir;
use crate::record::{Recorded, read};

pub struct LocalStore {
    state: StateDir,
    show: Show,
}

impl LocalStore {
    pub fn new(state: StateDir, show: Show) -> LocalStore {
        LocalStore { state, show }
    }
}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.state.runs().display().to_string()
    }

    fn shared(&self) -> bool {
        false
    }

    fn acquire(&self, name: &LockName, holder: &Holder) -> Result<Acquired, String> {
        self.state.create()?;
        let lock =
            crate::lock::acquire(&self.state.locks(), &name.runbook, name.environment.as_deref(), holder, self.show)?;
        Ok(Acquired { lock: Arc::new(lock), took_over: None })
    }

    fn status(&self, runbook: Option<&str>, environment: Option<&str>) -> Result<Vec<LockState>, String> {
        let Ok(entries) = std::fs::read_dir(self.state.locks()) else { return Ok(Vec::new()) };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "lock"))
            .collect();
        paths.sort();
        let mut states = Vec::new();
        for path in paths {
            let Some(key) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
            let name = LockName::from_key(&key);
            if !super::gcs::matches(&name, runbook, environment) {
                continue;
            }
            let holder = crate::lock::holder(&path)?;
            states.push(LockState { name, unreadable: None, holder, renewed_ago: None, lease: None });
        }
        Ok(states)
    }

    fn break_lock(&self, name: &LockName, _by: &str, _reason: &str) -> Result<Broken, String> {
        let path = self.state.locks().join(format!("{}.lock", name.key()));
        match crate::lock::holder(&path).ok().flatten() {
            Some(holder) => Err(format!(
                "the local lock of `{}` is held by a live process ({}); it is freed when that process ends: stop pid {} instead",
                name.display(),
                holder.describe(self.show),
                holder.pid
            )),
            None => Err(format!("`{}` is not locked", name.display())),
        }
    }

    /// The local journal file is the record; nothing more to store.
    fn put_record(&self, _run_id: &str, _seq: u64, _kind: &str, _line: &str) -> Result<(), String> {
        Ok(())
    }

    fn next_seq(&self, _run_id: &str) -> Result<u64, String> {
        Ok(0)
    }

    /// The local journal is appended to with whole lines (`O_APPEND`): a note goes at its end.
    fn put_note(&self, run_id: &str, _kind: &str, line: &str) -> Result<(), String> {
        use std::io::Write as _;
        let path = self.state.journal_path(run_id);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open the journal {}: {e}", path.display()))?;
        let mut line = line.trim_end().to_owned();
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot write the journal {}: {e}", path.display()))
    }

    fn history(&self) -> Result<Vec<RunEntry>, String> {
        let Ok(entries) = std::fs::read_dir(self.state.runs()) else { return Ok(Vec::new()) };
        let mut runs: Vec<(String, Result<Recorded, String>)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .filter_map(|p| p.file_stem().map(|s| (s.to_string_lossy().into_owned(), p.clone())))
            .map(|(id, path)| (id, read(&path)))
            .collect();
        runs.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(runs)
    }

    fn run(&self, run_id: &str) -> Result<Option<Recorded>, String> {
        let path = self.state.journal_path(run_id);
        if !path.exists() {
            return Ok(None);
        }
        read(&path).map(Some)
    }
}
