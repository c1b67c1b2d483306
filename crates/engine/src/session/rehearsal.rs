//! Rehearsal against the local fake of the Google APIs: the fake a `--simulate` run starts,
//! the settings of a run against a `runbook simulate` server, and what a rehearsal reports.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;
use runbook_simulate::{self, RequestRecord, Saved, Scenario, StepMark};
use runbook_state::dir::StateDir;
use runbook_state::event::{Event, Subscriber};
use runbook_state::rehearsal::{MARKER, Settings};

/// Where `runbook simulate --help` and the errors about faults point.
pub const FAULTS_DOC: &str = "docs/faults.md";

/// A fake started for one run (`--simulate`).
pub struct Rehearsal {
    handle: runbook_simulate::Handle,
    config_dir: PathBuf,
    scenario: String,
    /// Where the fake's state is saved while the run goes on; `None` for `runbook simulate`.
    saved_at: Option<PathBuf>,
    resumed: bool,
}

/// The environment of every child of a run against a `runbook simulate` server at `base`: the
/// same gcloud settings as `--simulate`, derived from the server's address, whatever the
/// operator exported. A marker variable copied without the `CLOUDSDK_*` lines can therefore
/// never send a run labelled as a rehearsal to the real cloud.
pub fn server_env(base: &str, state: &StateDir) -> Result<Vec<(String, String)>, Error> {
    let addr = loopback(base)?;
    let config_dir = state.root.join("simulate").join(format!("gcloud-{}", addr.port()));
    runbook_simulate::prepare_config_dir(&config_dir)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", config_dir.display())))?;
    let mut env = runbook_simulate::gcloud_env(addr, &config_dir);
    env.extend(runbook_state::rehearsal::proxy_env(base));
    Ok(env)
}

/// The address of a `runbook simulate` server at `base`: only a loopback IPv4 one is a server
/// a rehearsal may talk to.
fn loopback(base: &str) -> Result<SocketAddr, Error> {
    let url = url::Url::parse(base).map_err(|e| Error::Usage(format!("{MARKER}={base}: not a URL ({e})")))?;
    match (url.host(), url.port_or_known_default()) {
        (Some(url::Host::Ipv4(ip)), Some(port)) if ip.is_loopback() => Ok(SocketAddr::new(IpAddr::V4(ip), port)),
        (Some(url::Host::Domain("localhost")), Some(port)) => {
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        }
        _ => Err(Error::Usage(format!(
            "the `runbook simulate` server {base} is not on a loopback IPv4 address; a rehearsal only talks to a local fake"
        ))),
    }
}

/// What is saved with the run: the fake's state, its step marks included.
#[derive(Serialize, Deserialize)]
struct SavedRehearsal {
    fake: Saved,
}

pub fn load(scenario: Option<&Path>) -> Result<(Scenario, String), Error> {
    match scenario {
        None => Ok((Scenario::pegasus(), "built-in Pegasus deployment".into())),
        Some(path) => Scenario::load(path)
            .map(|s| (s, path.display().to_string()))
            .map_err(|e| Error::Usage(format!("invalid scenario: {e} (the format: {FAULTS_DOC})"))),
    }
}

/// Where a run's fake state is kept.
fn saved_path(state: &StateDir, run_id: &str) -> PathBuf {
    state.root.join("simulate").join(format!("{run_id}.json"))
}

impl Rehearsal {
    /// Starts the fake; for a run (`run_id`), from the state saved by an earlier attempt of the
    /// same run when there is one, so a resumed rehearsal continues where it stopped.
    pub async fn start(settings: &Settings, state: &StateDir, run_id: Option<&str>) -> Result<Rehearsal, Error> {
        let (scenario, name) = load(settings.scenario.as_deref())?;
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), settings.port.unwrap_or(0));
        let saved_at = run_id.map(|id| saved_path(state, id));
        let saved =
            match &saved_at {
                Some(path) if path.is_file() => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| Error::Io(format!("cannot read the saved rehearsal {}: {e}", path.display())))?;
                    Some(serde_json::from_str::<SavedRehearsal>(&text).map_err(|e| {
                        Error::Io(format!("the saved rehearsal {} is not readable: {e}", path.display()))
                    })?)
                }
                _ => None,
            };
        let resumed = saved.is_some();
        let started = match saved {
            Some(saved) => runbook_simulate::start_restored(addr, saved.fake).await,
            None => runbook_simulate::start_on(addr, scenario).await,
        };
        let handle = started.map_err(|e| Error::Io(format!("cannot start the fake Google APIs on {addr}: {e}")))?;
        // gcloud writes its logs and caches into its config folder: a private one per fake,
        // so the operator's real configuration is neither read nor touched.
        let config_dir = state.root.join("simulate").join(format!("gcloud-{}", handle.addr.port()));
        runbook_simulate::prepare_config_dir(&config_dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", config_dir.display())))?;
        Ok(Rehearsal { handle, config_dir, scenario: name, saved_at, resumed })
    }

    /// The fake's base URL, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        self.handle.url()
    }

    pub fn banner(&self) -> String {
        let restored = if self.resumed { " Its state was restored from the interrupted attempt." } else { "" };
        format!(
            "REHEARSAL: gcloud talks to a local fake of the Google APIs at {} (scenario: {}); no cloud account is used.{restored}\n\
             The simulated app answers at {}app; http: steps to any other host are refused, and children's HTTP(S) goes to the fake.",
            self.handle.url(),
            self.scenario,
            self.handle.url(),
        )
    }

    /// The secret the fake proves it knows ([`proves_fake`]).
    pub fn token(&self) -> &str {
        self.handle.token()
    }

    /// The variables that point gcloud at the fake (what `runbook simulate` prints to export).
    pub fn gcloud_env(&self) -> Vec<(String, String)> {
        runbook_simulate::gcloud_env(self.handle.addr, &self.config_dir)
    }

    /// The variables that point gcloud, and every plain HTTP(S) client, at the fake.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = runbook_simulate::gcloud_env(self.handle.addr, &self.config_dir);
        env.extend(runbook_state::rehearsal::proxy_env(&self.handle.url()));
        env
    }

    /// A subscriber that marks where each step's requests begin and saves the fake's state
    /// after each step, so an interrupted rehearsal resumes against the same fake.
    pub fn recorder(&self) -> Box<dyn Subscriber> {
        Box::new(Recorder { tap: self.handle.tap(), saved_at: self.saved_at.clone() })
    }

    /// Saves the fake's state now (the end of the run, whatever the outcome).
    pub fn save(&self) {
        save(&self.handle.tap(), self.saved_at.as_deref());
    }

    /// What the fake received: the changes each step made, then the Google API requests and the
    /// simulated app's, apart.
    pub fn report(&self) -> String {
        report(&self.handle.requests(), &self.handle.marks())
    }
}

struct Recorder {
    tap: runbook_simulate::Tap,
    saved_at: Option<PathBuf>,
}

impl Subscriber for Recorder {
    fn event(&mut self, event: &Event) {
        match event {
            Event::StepStarted { id, .. } => self.tap.mark(id),
            Event::StepFinished { .. } => save(&self.tap, self.saved_at.as_deref()),
            _ => {}
        }
    }
}

/// For a run against a `runbook simulate` server: tells the server where each step begins
/// (`POST /__fake/marks`), so its closing report names the step of each call — only once the
/// server proved it is the project's fake ([`proves_fake`]).
pub struct ServerMarks {
    authority: String,
    warned: bool,
}

/// `host:port` of a base URL.
fn authority(base: &str) -> Option<String> {
    let url = url::Url::parse(base).ok()?;
    Some(format!("{}:{}", url.host_str()?, url.port_or_known_default()?))
}

/// One JSON request to a loopback server; the answer's status and body.
fn exchange(authority: &str, path: &str, body: &serde_json::Value) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.take(1 << 20).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Whether the server at `base` proves it is the `runbook simulate` that printed `token`: it
/// answers a fresh nonce with its HMAC under the token (`POST /__fake/proof`); the token itself
/// is never sent. Issue 22 reuses this to decide that a run rehearses at all.
pub fn proves_fake(base: &str, token: &str) -> Result<(), String> {
    let authority = authority(base).ok_or_else(|| format!("{base} is not a URL"))?;
    let nonce = runbook_simulate::proof::random_hex();
    let (status, body) = exchange(&authority, "/__fake/proof", &serde_json::json!({ "nonce": nonce }))
        .map_err(|e| format!("no answer from {authority}: {e}"))?;
    let proof = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["proof"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("{authority} gave no proof (HTTP {status}): it is not a `runbook simulate` server"))?;
    if runbook_simulate::verify(token, &nonce, &proof) {
        Ok(())
    } else {
        Err(format!(
            "{authority} does not know {}: it is not the `runbook simulate` that printed it",
            runbook_simulate::TOKEN_VAR
        ))
    }
}

impl ServerMarks {
    /// Marks for the server at `base` when it proves, with the token `runbook simulate`
    /// printed, that it is the fake; none (with a warning) otherwise.
    pub fn subscriber(base: &str) -> Option<Box<dyn Subscriber>> {
        let authority = authority(base)?;
        let proven = match std::env::var(runbook_simulate::TOKEN_VAR) {
            Ok(token) if !token.is_empty() => proves_fake(base, &token),
            _ => Err(format!("{} is not set (export what `runbook simulate` printed)", runbook_simulate::TOKEN_VAR)),
        };
        if let Err(why) = proven {
            eprintln!("warning: the steps' marks are not sent to {authority}: {why}");
            return None;
        }
        Some(Box::new(ServerMarks { authority, warned: false }))
    }

    fn post(&self, step: &str) -> std::io::Result<()> {
        exchange(&self.authority, "/__fake/marks", &serde_json::json!({ "step": step })).map(|_| ())
    }
}

impl Subscriber for ServerMarks {
    fn event(&mut self, event: &Event) {
        if let Event::StepStarted { id, .. } = event
            && let Err(err) = self.post(id)
            && !self.warned
        {
            self.warned = true;
            eprintln!(
                "warning: cannot tell the `runbook simulate` server at {} which step runs: {err}",
                self.authority
            );
        }
    }
}

fn save(tap: &runbook_simulate::Tap, path: Option<&Path>) {
    let Some(path) = path else { return };
    let saved = SavedRehearsal { fake: tap.save() };
    // Written aside and renamed, so a kill never leaves half a state behind.
    let aside = path.with_extension("json.new");
    // Owner-only: the fake's secrets and the request bodies that carried them are in it.
    let write = |bytes: Vec<u8>| {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&aside)
            .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_data()))
            .and_then(|()| std::fs::rename(&aside, path))
            .map_err(|e| e.to_string())
    };
    let result = serde_json::to_vec(&saved).map_err(|e| e.to_string()).and_then(write);
    if let Err(err) = result {
        eprintln!("warning: cannot save the fake's state to {}: {err}; a resume would start it afresh", path.display());
    }
}

fn is_app(request: &RequestRecord) -> bool {
    request.path == "/app" || request.path.starts_with("/app/")
}

fn is_mutating(request: &RequestRecord) -> bool {
    !matches!(request.method.as_str(), "GET" | "HEAD" | "OPTIONS")
}

/// Request `index` was made by the last step that started at or before it.
fn step_of(index: usize, marks: &[StepMark]) -> Option<&str> {
    marks.iter().rev().find(|m| m.request <= index).map(|m| m.step.as_str())
}

fn line(out: &mut String, r: &RequestRecord) {
    let command = r.command.as_ref().map(|c| format!("  ({c})")).unwrap_or_default();
    let _ = writeln!(out, "  {} {} {} → {}{command}", r.method, r.host, r.path, r.status);
}

/// The closing report, from the request log and the steps' starting marks.
fn report(requests: &[RequestRecord], marks: &[StepMark]) -> String {
    let (app, google): (Vec<_>, Vec<_>) = requests.iter().enumerate().partition(|(_, r)| is_app(r));
    let mut out = String::new();
    let changes: Vec<_> = google.iter().filter(|(_, r)| is_mutating(r)).collect();
    if !changes.is_empty() {
        let _ = writeln!(out, "Changes requested from the fake Google APIs ({}):", changes.len());
        for (index, r) in changes {
            // Without marks (requests from a shell, not a run) the gcloud command in each line
            // says what made it.
            match step_of(*index, marks) {
                Some(step) => out.push_str(&format!("  step {step}:")),
                None if !marks.is_empty() => out.push_str("  before any step:"),
                None => {}
            }
            line(&mut out, r);
        }
    }
    let _ = writeln!(out, "The fake Google APIs received {} request(s):", google.len());
    for (_, r) in &google {
        line(&mut out, r);
    }
    let _ = writeln!(out, "The simulated app received {} request(s):", app.len());
    for (_, r) in &app {
        line(&mut out, r);
    }
    out
}

/// The `runbook simulate` server this process's gcloud is pointed at, only when it proved it is
/// one: it answers for the token that `runbook simulate` printed ([`proves_fake`]). Endpoint
/// overrides on loopback without that proof (a local forwarder to the real APIs looks the
/// same) make a real run, which says so once. A marker naming a server off this machine is
/// refused: it is neither a rehearsal nor a real run anyone meant.
pub fn proven_server() -> Result<Option<String>, Error> {
    static PROVEN: std::sync::OnceLock<Result<Option<String>, String>> = std::sync::OnceLock::new();
    PROVEN
        .get_or_init(|| {
            let Some(base) = runbook_state::rehearsal::detect() else { return Ok(None) };
            if let Err(e) = loopback(&base) {
                return Err(e.to_string());
            }
            let proof = match std::env::var(runbook_simulate::TOKEN_VAR) {
                Ok(token) if !token.is_empty() => proves_fake(&base, &token),
                _ => Err(format!("{} is not set", runbook_simulate::TOKEN_VAR)),
            };
            match proof {
                Ok(()) => Ok(Some(base)),
                Err(why) => {
                    eprintln!(
                        "warning: gcloud is pointed at {} but it did not prove it is a `runbook simulate` server ({why}): this is a REAL run, not a rehearsal (export everything `runbook simulate` prints, or use --simulate)",
                        runbook_lang::diagnostic::clip(&base)
                    );
                    Ok(None)
                }
            }
        })
        .clone()
        .map_err(Error::Usage)
}

/// Whether this run rehearses: `--simulate` (or a resumed one), or a run whose gcloud is pointed
/// at a `runbook simulate` server that proved it is one ([`proven_server`]). A rehearsal
/// against such a server resumes only against one.
pub(super) fn settings(execution: &super::Start) -> Result<Option<runbook_state::rehearsal::Settings>, Error> {
    let detected = proven_server()?;
    match (&execution.rehearsal, detected) {
        (Some(own), _) if own.server.is_none() => Ok(Some(own.clone())),
        (_, Some(server)) => {
            Ok(Some(runbook_state::rehearsal::Settings { server: Some(server), ..Default::default() }))
        }
        (Some(own), None) => Err(Error::Usage(format!(
            "run {} rehearsed against the `runbook simulate` server at {}; export the settings a `runbook simulate` prints before resuming it, so it cannot reach the real cloud",
            execution.run_id,
            own.server.as_deref().unwrap_or("-")
        ))),
        (None, None) => Ok(None),
    }
}

/// Points the environment's `rehearsal:` vars at the fake, and says what the http: steps will
/// reach: the vars replaced, `--var` values whose port is not the fake's, URL vars left as
/// they are (their http: steps are refused).
///
/// The watches' timing is checked again with the replaced vars (a rehearsal shortens it).
pub(super) fn bind_vars(plan: &mut crate::plan::Plan, base: &str) -> Result<Vec<String>, Error> {
    let block = plan.environment().map(|e| e.rehearsal.clone()).unwrap_or_default();
    let applied = runbook_state::rehearsal::resolved_overrides(&block, base, &plan.var_overrides);
    let mut notes = Vec::new();
    for (name, value) in applied {
        notes.push(format!("rehearsal: var {name} = {value} (the environment's `rehearsal:` block)"));
        plan.vars.insert(name, value);
    }
    let fake_port = url::Url::parse(base).ok().and_then(|u| u.port());
    for (name, value) in &plan.var_overrides {
        let Ok(url) = url::Url::parse(value) else { continue };
        let loopback = url.host_str().is_some_and(|h| h == "localhost" || h.starts_with("127."));
        if loopback && url.port_or_known_default() != fake_port {
            notes.push(format!(
                "warning: --var {name}={value} points at port {}, not the fake's ({base})",
                url.port_or_known_default().unwrap_or(0)
            ));
        }
    }
    for (name, value) in &plan.vars {
        let named = plan.var_overrides.iter().any(|(n, _)| n == name) || block.contains_key(name);
        if !named && (value.starts_with("http://") || value.starts_with("https://")) {
            notes.push(format!(
                "note: var {name} points at {value}; http: steps to it are refused in a rehearsal (add it to the environment's `rehearsal:` block, or pass --var {name}={base}app)"
            ));
        }
    }
    plan.check_watches()?;
    Ok(notes)
}

/// What a manual step of a rehearsal shows before its text: a REHEARSAL mark and the
/// exports that point a shell's gcloud at the fake at `base` (the gcloud part of `env`).
pub fn shell_exports(base: &str, env: &[(String, String)]) -> String {
    let mut text =
        format!("REHEARSAL against the local fake at {base}: run the commands below only in a shell pointed at it:\n");
    for (key, value) in env.iter().filter(|(k, _)| k.starts_with("CLOUDSDK_") || k.starts_with("GCE_")) {
        text.push_str(&format!("  export {key}={}\n", shell_words::quote(value)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> RequestRecord {
        RequestRecord {
            method: method.into(),
            host: "h".into(),
            path: path.into(),
            query: Default::default(),
            body: serde_json::Value::Null,
            command: None,
            status: 200,
            response: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_report_names_the_step_of_each_change_and_keeps_the_app_apart() {
        let requests = vec![
            request("GET", "/sql/v1beta4/projects/p/instances/i"),
            request("POST", "/sql/v1beta4/projects/p/instances/i/clone"),
            request("POST", "/app/jobs/smoke"),
            request("PUT", "/apis/serving.knative.dev/v1/namespaces/1/services/s"),
        ];
        let mark = |step: &str, request| StepMark { step: step.into(), request };
        let marks = vec![mark("check", 0), mark("clone_op", 1), mark("revert", 3)];
        let text = report(&requests, &marks);
        assert!(text.contains("step clone_op:  POST h /sql/v1beta4/projects/p/instances/i/clone"), "{text}");
        assert!(text.contains("step revert:  PUT"), "{text}");
        assert!(text.contains("The fake Google APIs received 3 request(s)"), "{text}");
        assert!(text.contains("The simulated app received 1 request(s):\n  POST h /app/jobs/smoke"), "{text}");
        assert!(!text.contains("step smoke"), "app calls are not listed as Google API changes: {text}");
        // `runbook simulate` has no marks: its change lines carry no step.
        let text = report(&requests, &[]);
        assert!(text.contains("(2):\n  POST h /sql/v1beta4/projects/p/instances/i/clone"), "{text}");
    }
}
