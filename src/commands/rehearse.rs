//! Rehearsal against the local fake of the Google APIs: `--simulate` on a run, and
//! `runbook simulate`, which serves the fake for runs in other terminals.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::simulate::{self, Scenario};
use crate::state::StateDir;

/// `--simulate [--scenario FILE] [--simulate-port PORT]`, as recorded in the journal so a
/// resumed rehearsal rehearses again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub scenario: Option<PathBuf>,
    pub port: Option<u16>,
}

pub struct Rehearsal {
    handle: simulate::Handle,
    config_dir: PathBuf,
    scenario: String,
}

fn load(scenario: Option<&Path>) -> Result<(Scenario, String), Error> {
    match scenario {
        None => Ok((Scenario::pegasus(), "built-in Pegasus deployment".into())),
        Some(path) => Scenario::load(path)
            .map(|s| (s, path.display().to_string()))
            .map_err(|e| Error::Usage(format!("invalid scenario: {e}"))),
    }
}

impl Rehearsal {
    pub async fn start(settings: &Settings, state: &StateDir) -> Result<Rehearsal, Error> {
        let (scenario, name) = load(settings.scenario.as_deref())?;
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), settings.port.unwrap_or(0));
        let handle = simulate::start_on(addr, scenario)
            .await
            .map_err(|e| Error::Io(format!("cannot start the fake Google APIs on {addr}: {e}")))?;
        // gcloud writes its logs and caches into its config folder: a private one per fake,
        // so the operator's real configuration is neither read nor touched.
        let config_dir = state.root.join("simulate").join(format!("gcloud-{}", handle.addr.port()));
        std::fs::create_dir_all(&config_dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", config_dir.display())))?;
        Ok(Rehearsal { handle, config_dir, scenario: name })
    }

    pub fn banner(&self) -> String {
        format!(
            "REHEARSAL: gcloud talks to a local fake of the Google APIs at {} (scenario: {}); no cloud account is used.\n\
             The simulated app answers at {}app (use --var api_base_url={}app for the verify steps).",
            self.handle.url(),
            self.scenario,
            self.handle.url(),
            self.handle.url()
        )
    }

    /// The variables that point gcloud at the fake.
    pub fn env(&self) -> Vec<(String, String)> {
        simulate::gcloud_env(self.handle.addr, &self.config_dir)
    }

    /// Every inherited `CLOUDSDK_*` variable is dropped, so no setting of the operator's
    /// (an account, another endpoint override) can send a rehearsal to the real cloud.
    pub fn remove() -> Vec<String> {
        std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with("CLOUDSDK_")).collect()
    }

    /// What the fake received, one line per request.
    pub fn report(&self) -> String {
        let requests = self.handle.requests();
        let mut out = format!("The fake Google APIs received {} request(s):\n", requests.len());
        for r in requests {
            let command = r.command.map(|c| format!("  ({c})")).unwrap_or_default();
            out.push_str(&format!("  {} {} {} → {}{command}\n", r.method, r.host, r.path, r.status));
        }
        out
    }
}

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
        let rehearsal = Rehearsal::start(&Settings { scenario: scenario.map(Path::to_path_buf), port }, &state).await?;
        let mut text = format!("{}\n# In another terminal:\n", rehearsal.banner());
        for (key, value) in rehearsal.env() {
            text.push_str(&format!("export {key}={}\n", shell_words::quote(&value)));
        }
        text.push_str("# Ctrl-C stops the fake; its state is in memory only.\n");
        crate::output::print(&text);
        let _ = super::procedure::wait_for_signal().await;
        eprint!("{}", rehearsal.report());
        Ok(())
    })
}
