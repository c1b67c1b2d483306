//! What `history`, `show`, `resume` and `undo` share: finding a run and its status, in the
//! local state dir or the shared store.

use crate::error::Error;
use runbook_engine::session::Settings;
use runbook_state::dir::StateDir;
use runbook_state::journal::Recorded;
use runbook_state::record::RunStatus;

pub fn state(settings: &Settings) -> Result<StateDir, Error> {
    StateDir::resolve(settings.state_dir.as_deref()).map_err(Error::Io)
}

/// A run's records and its status (see `Recorded::status`).
pub fn find(settings: &Settings, run_id: &str) -> Result<(Recorded, RunStatus), Error> {
    // Before any path or object name is built: `../../x` must not open (or resume) a journal
    // outside the state dir or the store's prefix.
    runbook_state::dir::check_run_id(run_id).map_err(Error::Usage)?;
    let store = settings.store()?;
    match store.run(run_id).map_err(Error::Io)? {
        Some(recorded) => {
            warn_skipped(run_id, &recorded);
            let holding = runbook_state::store::running(store.as_ref()).contains(run_id);
            let status = recorded.status(holding);
            Ok((recorded, status))
        }
        None => Err(Error::Usage(format!("no run `{run_id}` in {} (see `runbook history`)", store.location()))),
    }
}

/// Once per command: what was skipped while reading a run (shown escaped by the store).
pub fn warn_skipped(run_id: &str, recorded: &Recorded) {
    for skipped in &recorded.skipped {
        eprintln!("warning: run {}: skipped {skipped}", runbook_lang::diagnostic::clip(run_id));
    }
}
