//! `runbook simulate`: serves the local fake of the Google APIs for runs in other terminals
//! (a `--simulate` run starts its own, see `runbook_engine::session::rehearsal`).

use std::path::Path;

use crate::error::Error;
use runbook_engine::session::rehearsal::{Rehearsal, load};
use runbook_state::dir::StateDir;
use runbook_state::rehearsal::{MARKER, Settings};

/// `runbook simulate --print-scenario`.
pub fn print_scenario(scenario: Option<&Path>) -> Result<(), Error> {
    let (scenario, _) = load(scenario)?;
    let json = serde_json::to_string_pretty(&scenario).map_err(|e| Error::Io(e.to_string()))?;
    crate::output::print(&(json + "\n"));
    Ok(())
}

/// `runbook simulate`: serve until Ctrl-C, printing what to export in another terminal.
pub fn serve(scenario: Option<&Path>, port: Option<u16>, state_dir: Option<&Path>) -> Result<(), Error> {
    let state = StateDir::resolve(state_dir).map_err(Error::Io)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let settings = Settings { scenario: scenario.map(Path::to_path_buf), port, server: None };
        let rehearsal = Rehearsal::start(&settings, &state, None).await?;
        let mut text = format!("{}\n# In another terminal:\n", rehearsal.banner());
        // The marker tells a run in that terminal that it rehearses against this server: it is
        // labelled a rehearsal, takes the rehearsal lock and keeps its http: steps on the fake.
        // The token lets a run check that the server it talks to is this fake before it sends
        // it anything of its own (the steps' marks).
        let mut env = rehearsal.gcloud_env();
        env.push((MARKER.to_owned(), rehearsal.url()));
        env.push((runbook_simulate::TOKEN_VAR.to_owned(), rehearsal.token().to_owned()));
        for (key, value) in &env {
            text.push_str(&format!("export {key}={}\n", shell_words::quote(value)));
        }
        text.push_str("# Ctrl-C stops the fake; its state is in memory only.\n");
        crate::output::print(&text);
        let _ = runbook_engine::session::wait_for_signal().await;
        eprint!("{}", rehearsal.report());
        Ok(())
    })
}
