//! A local fake of the Google Cloud APIs that `runbooks/rollback.yaml` drives, for running the
//! runbook end to end with the real `gcloud` pointed at it (SPEC §5).
//!
//! Served: Cloud SQL Admin v1beta4 (instances get/list/clone/restoreBackup, backupRuns list/get,
//! operations get/list), Secret Manager v1 (secrets get, versions get/list/access, addVersion) and
//! Cloud Run's knative API (`serving.knative.dev/v1` services get/list/replace, revisions get/list)
//! and Cloud Monitoring v3 (timeSeries list of Cloud Run's request count, by response class).
//! State comes from a [`Scenario`] and changes as gcloud calls; faults are injected on demand.
//!
//! ```text
//! let fake = simulate::start(Scenario::pegasus()).await?;
//! Command::new("gcloud").envs(simulate::gcloud_env(fake.addr, config_dir)) ...
//! ```
//!
//! Admin API on the same port (not logged, never faulted): `GET /__fake` lists it; `GET
//! /__fake/state`, `GET|DELETE /__fake/requests`, `GET|POST /__fake/faults`, `POST /__fake/scenario`.

mod api;
mod crc32c;
pub mod faults;
mod monitoring;
pub use proof::{TOKEN_VAR, prove, verify};
mod omit;
pub mod proof;
mod proto3;
mod run;
mod scenario;
mod secrets;
mod server;
mod sql;
mod state;

#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;

// The public surface for the rest of the program and for tests; not all of it is used yet.
#[allow(unused_imports)]
pub use scenario::{
    BackupRun, CloneOrigin, Faults, HangFault, HttpErrorFault, IpAddress, OperationError, OperationFault, Project,
    RestoreRecord, Revision, RunService, Scenario, Secret, SecretVersion, SqlInstance, TrafficTarget,
};
#[allow(unused_imports)]
pub use state::{OperationEffect, RequestRecord, Saved, SqlOperation, State, StepMark};

/// A running fake. Dropping it stops the server (without waiting); [`Handle::shutdown`] waits.
pub struct Handle {
    /// Where the fake listens.
    pub addr: SocketAddr,
    shared: Arc<server::Shared>,
    task: Option<JoinHandle<io::Result<()>>>,
}

/// Start the fake on 127.0.0.1 at a free port.
#[cfg(test)]
pub async fn start(scenario: Scenario) -> io::Result<Handle> {
    start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), scenario).await
}

/// Start the fake on the given address (port 0: a free one).
pub async fn start_on(addr: SocketAddr, scenario: Scenario) -> io::Result<Handle> {
    serve_state(addr, State::new(scenario)).await
}

/// Start the fake on the given address with a state saved earlier (a resumed rehearsal).
pub async fn start_restored(addr: SocketAddr, saved: Saved) -> io::Result<Handle> {
    serve_state(addr, State::restore(saved)).await
}

async fn serve_state(addr: SocketAddr, state: State) -> io::Result<Handle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(server::Shared::with_state(state));
    let app = server::router(Arc::clone(&shared));
    let cancel = shared.cancel.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await
    });
    tracing::info!(%addr, "simulate: fake Google APIs listening");
    Ok(Handle { addr, shared, task: Some(task) })
}

impl Handle {
    /// The base URL the endpoint overrides use: `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        base_url(self.addr)
    }

    /// A snapshot of the whole state, request log included.
    #[cfg(test)]
    pub fn state(&self) -> State {
        self.shared.lock().clone()
    }

    /// The API requests so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Where each step of a run began in the request log.
    pub fn marks(&self) -> Vec<StepMark> {
        self.shared.lock().marks.clone()
    }

    /// A view of the fake that outlives borrows of the handle (for a run's subscriber).
    pub fn tap(&self) -> Tap {
        Tap { shared: Arc::clone(&self.shared) }
    }

    /// Replace the faults in force.
    #[cfg(test)]
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().scenario.faults = faults;
    }

    /// Stop serving: requests held by a hang fault are answered 503, open connections are closed.
    /// Waits up to 5 seconds for the server to finish.
    #[cfg(test)]
    pub async fn shutdown(mut self) {
        use std::time::Duration;
        self.shared.cancel.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads the fake's request counter and state while it serves.
#[derive(Clone)]
pub struct Tap {
    shared: Arc<server::Shared>,
}

impl Handle {
    /// The secret this server proves it knows (`POST /__fake/proof`), printed as
    /// [`TOKEN_VAR`] by `runbook simulate`.
    pub fn token(&self) -> &str {
        &self.shared.token
    }
}

impl Tap {
    /// A step starts.
    pub fn mark(&self, step: &str) {
        self.shared.lock().mark(step);
    }

    pub fn save(&self) -> Saved {
        self.shared.lock().save()
    }
}

fn base_url(addr: SocketAddr) -> String {
    // The region prefix trick (`europe-west1-127.0.0.1`) needs a dotted IPv4 host.
    let ip = match addr.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => ip,
        _ => Ipv4Addr::LOCALHOST,
    };
    format!("http://{ip}:{}/", addr.port())
}

/// The access token gcloud hands out in a rehearsal (`gcloud auth print-access-token`, what the
/// runbook's `http:` steps send to the fake as `Authorization: Bearer`): not a Google token.
pub const ACCESS_TOKEN: &str = "ya29.rehearsal-token-of-the-local-fake";

/// The file [`gcloud_env`] names in `CLOUDSDK_AUTH_ACCESS_TOKEN_FILE`.
fn access_token_file(config_dir: &Path) -> std::path::PathBuf {
    config_dir.join("access-token")
}

/// Creates gcloud's private configuration directory for a rehearsal, with the fake access token
/// file [`gcloud_env`] points at (owner-only).
pub fn prepare_config_dir(config_dir: &Path) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(config_dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(access_token_file(config_dir))?;
    file.write_all(ACCESS_TOKEN.as_bytes())
}

/// The environment that points the real gcloud at the fake listening on `addr`, with
/// `config_dir` as its private configuration directory (gcloud writes logs and caches there).
///
/// Cloud Run's endpoint gets the region prefixed to its host (`europe-west1-127.0.0.1:PORT`),
/// which does not resolve, so gcloud is also told to use the fake as its HTTP proxy: every request
/// then reaches the fake in absolute form, Cloud SQL's and Secret Manager's included.
pub fn gcloud_env(addr: SocketAddr, config_dir: &Path) -> Vec<(String, String)> {
    let url = base_url(addr);
    let authority = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let proxy_host = authority.split(':').next().unwrap_or("127.0.0.1").to_string();
    [
        ("CLOUDSDK_CONFIG", config_dir.display().to_string()),
        ("CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "true".into()),
        // With credentials disabled, `gcloud auth print-access-token` fails; a token file
        // (written by `prepare_config_dir`) makes it print the fake's token instead, and no
        // account is ever looked up.
        ("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", access_token_file(config_dir).display().to_string()),
        ("CLOUDSDK_CORE_DISABLE_PROMPTS", "1".into()),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_SQL", url.clone()),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER", url.clone()),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN", url),
        ("CLOUDSDK_PROXY_TYPE", "http".into()),
        ("CLOUDSDK_PROXY_ADDRESS", proxy_host),
        ("CLOUDSDK_PROXY_PORT", addr.port().to_string()),
        // Nothing else may try to leave the machine.
        ("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true".into()),
        ("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true".into()),
        // gcloud asks a Compute Engine metadata server (`metadata.google.internal`) whether it
        // runs on a VM: for credentials unless `core/check_gce_metadata` is off
        // (`core/credentials/store.py`), and for the metrics environment unless
        // `metrics/environment` is set (`core/properties.py`, `GetMetricsEnvironment`), a DNS
        // query on the first call even with credentials disabled.
        ("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false".into()),
        ("CLOUDSDK_METRICS_ENVIRONMENT", "runbook-rehearsal".into()),
        // Any other path to the metadata server reaches the fake, which is no metadata server
        // (no `Metadata-Flavor: Google`): gcloud's `GCE_METADATA_ROOT` (`gce_read.py`), its
        // bundled google-auth's `GCE_METADATA_HOST` and `GCE_METADATA_IP`
        // (`google/auth/environment_vars.py`).
        ("GCE_METADATA_ROOT", authority.clone()),
        ("GCE_METADATA_HOST", authority.clone()),
        ("GCE_METADATA_IP", authority),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
