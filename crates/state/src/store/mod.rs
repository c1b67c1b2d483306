//! Where the run lock, the journal and the history live: the local state dir (one person's
//! machine, today's behaviour) or a shared Cloud Storage prefix (the whole team, like
//! Terraform's remote state). Everything above this module talks to a [`Store`].

pub mod auth;
pub mod client;
pub mod gcs;
pub mod journal;
pub mod local;
pub mod plans;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::Recorded;

/// The lease of a shared lock when nothing else is said.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(90);

/// The config file in the runbook folder that names the shared store.
pub const CONFIG_FILE: &str = "runbook-state.json";

/// A run id and its records (or why they could not be read).
pub type RunEntry = (String, Result<Recorded, String>);

/// How a string read from the store (or typed by someone) is made safe to print: control
/// characters shown as escapes and the whole cut to a bound. The state crate imports nothing
/// of ours, so the layer above hands down its one function for this
/// (`runbook_lang::diagnostic::clip`).
pub type Show = fn(&str) -> String;

/// `show(text)`, with a note saying how long the text was when `show` cut it without one
/// (the engine's `clip` writes its own: `… (N more characters)`).
pub fn shown(show: Show, text: &str) -> String {
    let out = show(text);
    if out.ends_with('…') && !text.ends_with('…') {
        format!("{out} (cut: {} characters in all)", text.chars().count())
    } else {
        out
    }
}

/// Objects of the store bigger than this are not read: no lock or journal record comes near
/// it, so one is junk (and reading it whole would cost memory and time).
pub const MAX_OBJECT_BYTES: u64 = 1 << 20;

/// Who holds a lock, as written into it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub user: String,
    /// The gcloud account (shared store), or `user@host`.
    #[serde(default)]
    pub identity: String,
    pub host: String,
    pub pid: u32,
    #[serde(default)]
    pub version: String,
    pub started: String,
}

impl Holder {
    /// One line for a person; every field came from a lock file or object that anyone with
    /// write access may have written, so each is passed through `show`.
    pub fn describe(&self, show: Show) -> String {
        let who =
            crate::identity::display(&shown(show, &self.identity), &shown(show, &self.user), &shown(show, &self.host));
        format!("run {} by {who} (pid {}), started {}", shown(show, &self.run_id), self.pid, shown(show, &self.started))
    }
}

/// Which lock: one per runbook and environment.
#[derive(Debug, Clone)]
pub struct LockName {
    pub runbook: String,
    pub environment: Option<String>,
}

impl LockName {
    /// The file or object name: `rollback--production`.
    pub fn key(&self) -> String {
        format!("{}--{}", self.runbook, self.environment.as_deref().unwrap_or("default"))
    }

    /// How the operator names it: `rollback/production`.
    pub fn display(&self) -> String {
        match &self.environment {
            Some(env) => format!("{}/{env}", self.runbook),
            None => self.runbook.clone(),
        }
    }

    pub fn from_key(key: &str) -> LockName {
        match key.rsplit_once("--") {
            Some((runbook, "default")) => LockName { runbook: runbook.to_owned(), environment: None },
            Some((runbook, env)) => LockName { runbook: runbook.to_owned(), environment: Some(env.to_owned()) },
            None => LockName { runbook: key.to_owned(), environment: None },
        }
    }
}

/// A lock as `lock status` shows it.
pub struct LockState {
    pub name: LockName,
    /// An object under `locks/` that is not a lock: never taken for a free or a held one.
    pub unreadable: Option<Unreadable>,
    pub holder: Option<Holder>,
    /// For a shared lock: seconds since the holder last renewed, by the store's clock, and
    /// its lease.
    pub renewed_ago: Option<i64>,
    pub lease: Option<u64>,
}

/// Why an object under `locks/` is not a lock.
pub struct Unreadable {
    /// The object's name and the reason (not JSON, another schema, too big), shown.
    pub why: String,
    /// In a lock's place (`<runbook>--<env>.json`), so it blocks that lock until `lock break`
    /// frees it; otherwise it blocks nothing.
    pub in_a_locks_place: bool,
}

/// A lock held by this process. Dropping it releases it.
pub trait HeldLock: Send + Sync {
    /// Why the lock is no longer ours (taken over, or not renewed within its lease), checked
    /// before every mutating step; renews it first if a renewal is due.
    fn check(&self) -> Result<(), String>;
}

/// What `acquire` got: the lock, and the holder it replaced when it took an expired one over.
pub struct Acquired {
    pub lock: Arc<dyn HeldLock>,
    pub took_over: Option<Holder>,
}

/// What `lock break` removed.
pub enum Broken {
    /// A lock held by this run.
    Held(Holder),
    /// An object in the lock's place that is not a lock: why, as shown.
    Unreadable(String),
}

/// The seam between the commands and where state lives.
pub trait Store: Send + Sync {
    /// Where this store is, for messages: a folder or `gs://bucket/prefix`.
    fn location(&self) -> String;
    /// Whether other machines see this store (journal records are then also sent to it).
    fn shared(&self) -> bool;

    /// Takes the lock, taking over an expired one; refuses (with the holder) when it is held.
    fn acquire(&self, name: &LockName, holder: &Holder) -> Result<Acquired, String>;
    /// Locks, held or not; filtered by runbook and environment.
    fn status(&self, runbook: Option<&str>, environment: Option<&str>) -> Result<Vec<LockState>, String>;
    /// Frees a held (or unreadable) lock whatever its lease; says what it removed.
    fn break_lock(&self, name: &LockName, by: &str, reason: &str) -> Result<Broken, String>;

    /// Stores journal record `seq` of a run (one JSON line). A duplicate is refused unless it
    /// is the same record (a retried write that had landed).
    fn put_record(&self, run_id: &str, seq: u64, kind: &str, line: &str) -> Result<(), String>;
    /// The sequence number the next record of a run takes.
    fn next_seq(&self, run_id: &str) -> Result<u64, String>;
    /// A record about a run written by someone other than its writer (a lock break): it
    /// never takes a sequence number, so the writer's next record — the end of the step it
    /// is running — still lands, and a hand-over does not run that step again.
    fn put_note(&self, run_id: &str, kind: &str, line: &str) -> Result<(), String>;
    /// A record about a lock that belongs to no run (an unreadable lock object was
    /// broken); returns where it was written.
    fn put_lock_note(&self, name: &LockName, kind: &str, line: &str) -> Result<String, String> {
        let _ = (kind, line);
        Err(format!("no place for a note about the lock of `{}` in {}", name.display(), self.location()))
    }
    /// Every run, newest first, read far enough for `history`.
    fn history(&self) -> Result<Vec<RunEntry>, String>;
    /// Every record of one run, or `None` when there is no such run.
    fn run(&self, run_id: &str) -> Result<Option<Recorded>, String>;

    /// Where approvals and applied markers of plans go when this store is shared; `None`
    /// keeps them in the local state dir.
    fn plan_records(&self) -> Option<Box<dyn crate::approvals::Store>> {
        None
    }
}

/// `--state-url`, `RUNBOOK_STATE_URL` (clap reads both) or the runbook folder's config file.
pub struct Config {
    pub state_dir: Option<PathBuf>,
    pub state_url: Option<String>,
    pub lock_lease: Option<Duration>,
    pub runbook_dir: PathBuf,
    /// How strings from the store and the command line are printed (see [`Show`]).
    pub show: Show,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    state_url: Option<String>,
    lock_lease: Option<String>,
}

/// A parsed `gs://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUrl {
    pub bucket: String,
    pub prefix: String,
}

impl StateUrl {
    /// One environment, one lock: a prefix has one spelling. Segments that would name the
    /// same objects another way (`.`, `..`, empty ones, percent-encoding) are refused, not
    /// normalised, so what the operator typed is what everyone else's runs use too; a
    /// trailing `/` is the one thing dropped. A refused URL is echoed through `show`.
    pub fn parse(text: &str, show: Show) -> Result<StateUrl, String> {
        let refuse = |why: &str| format!("state URL `{}`: {why}", shown(show, text));
        let rest = text.strip_prefix("gs://").ok_or_else(|| refuse("expected gs://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=222).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid_bucket {
            return Err(refuse(&format!("`{}` is not a bucket name", shown(show, bucket))));
        }
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if prefix.chars().any(|c| c.is_control() || c == '\\') {
            return Err(refuse("the prefix must not contain control characters or backslashes"));
        }
        // What a paste adds unseen (a trailing space, a no-break or zero-width space, a
        // byte-order mark, a direction mark) would name another prefix, so another lock.
        if prefix.chars().any(|c| c.is_whitespace() || unseen(c)) {
            return Err(refuse("the prefix must not contain spaces or invisible characters"));
        }
        if prefix.contains('%') {
            return Err(refuse("the prefix must be written plainly, without percent-encoding (`%`)"));
        }
        if !prefix.is_empty() {
            for segment in prefix.split('/') {
                match segment {
                    "" => return Err(refuse("the prefix has an empty segment (`//`, or a leading `/`)")),
                    "." | ".." => {
                        return Err(refuse(&format!(
                            "the prefix has a `{segment}` segment: write the prefix it stands for"
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(StateUrl { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

/// Zero-width, direction and byte-order marks: characters that show as nothing.
fn unseen(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// The store a command uses.
pub fn open(config: &Config) -> Result<Arc<dyn Store>, String> {
    let state = crate::dir::StateDir::resolve(config.state_dir.as_deref())?;
    let file = read_config_file(&config.runbook_dir)?;
    let url =
        config.state_url.clone().filter(|u| !u.is_empty()).or_else(|| file.as_ref().and_then(|f| f.state_url.clone()));
    let Some(url) = url else { return Ok(Arc::new(local::LocalStore::new(state, config.show))) };
    let url = StateUrl::parse(&url, config.show)?;
    let lease = match (config.lock_lease, file.and_then(|f| f.lock_lease)) {
        (Some(lease), _) => lease,
        (None, Some(text)) => parse_lease(&text)?,
        (None, None) => DEFAULT_LEASE,
    };
    Ok(Arc::new(gcs::GcsStore::new(url, lease, http_timeout()?, config.show)?))
}

fn read_config_file(dir: &Path) -> Result<Option<ConfigFile>, String> {
    let path = dir.join(CONFIG_FILE);
    // Absent: no config. Present, it is read like a plan (a FIFO or `/dev/zero` behind a
    // link hung or filled the memory of every command before).
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let bytes = crate::plan_file::read_regular(&path, 1 << 20, "state config file")?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// `--lock-lease` / `RUNBOOK_LOCK_LEASE`: `90s`, `2m`.
pub fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text.trim()).map_err(|e| format!("lock lease `{text}`: {e}"))?;
    if lease < Duration::from_secs(1) || lease > Duration::from_secs(24 * 3600) {
        return Err(format!("lock lease `{text}`: expected between 1s and 24h"));
    }
    Ok(lease)
}

/// How long one call to the shared store may take (`RUNBOOK_STORE_TIMEOUT`, default 10s):
/// a store that does not answer stops a mutating step rather than hanging it.
fn http_timeout() -> Result<Duration, String> {
    match std::env::var("RUNBOOK_STORE_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(10)),
        Ok(text) => humantime::parse_duration(text.trim()).map_err(|e| format!("RUNBOOK_STORE_TIMEOUT={text}: {e}")),
    }
}

/// The runs that hold their lock now: a live local holder, or a shared lease still being
/// renewed. A run without an end that is not among them has died (`interrupted`).
pub fn running(store: &dyn Store) -> std::collections::HashSet<String> {
    let Ok(locks) = store.status(None, None) else { return Default::default() };
    locks
        .into_iter()
        .filter(|l| match (l.renewed_ago, l.lease) {
            (Some(ago), Some(lease)) => ago <= i64::try_from(lease).unwrap_or(i64::MAX),
            _ => true,
        })
        .filter_map(|l| l.holder.map(|h| h.run_id))
        .collect()
}

/// Where approvals and applied markers of plans are kept: next to the plan in the shared
/// store when one is configured, else in the state dir.
pub fn plan_records(shared: &dyn Store, state: &crate::dir::StateDir) -> Box<dyn crate::approvals::Store> {
    shared.plan_records().unwrap_or_else(|| Box::new(crate::approvals::LocalStore { root: state.root.join("plans") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the lang crate's `clip`: escapes, cuts at 20 characters.
    fn clip(text: &str) -> String {
        let escaped: String = text.chars().flat_map(char::escape_default).collect();
        match escaped.char_indices().nth(20) {
            Some((at, _)) => format!("{}…", &escaped[..at]),
            None => escaped,
        }
    }

    #[test]
    fn state_urls_name_a_bucket_and_a_prefix() {
        let parse = |text: &str| StateUrl::parse(text, clip);
        assert_eq!(
            parse("gs://ops-state/runbook/prod/"),
            Ok(StateUrl { bucket: "ops-state".into(), prefix: "runbook/prod".into() })
        );
        assert_eq!(parse("gs://ops-state"), Ok(StateUrl { bucket: "ops-state".into(), prefix: String::new() }));
        assert_eq!(parse("gs://ops-state/"), Ok(StateUrl { bucket: "ops-state".into(), prefix: String::new() }));
        assert!(parse("s3://x/y").is_err());
        assert!(parse("gs://UPPER/y").is_err());
        assert!(parse("gs://ok-bucket/a\u{7}b").is_err());
    }

    #[test]
    fn a_prefix_has_one_spelling_and_aliases_are_refused() {
        for alias in [
            "gs://bkt/./x",
            "gs://bkt/a/../x",
            "gs://bkt/x/.",
            "gs://bkt//x",
            "gs://bkt/x//",
            "gs://bkt/a//x",
            "gs://bkt/%2e/x",
            "gs://bkt/%2E%2E/x",
            "gs://bkt/x%2fy",
            "gs://bkt/a\\x",
            "gs://bkt/x\r",
            "gs://bkt/x ",
            "gs://bkt/ x",
            "gs://bkt/x\u{a0}",
            "gs://bkt/x\u{200b}",
            "gs://bkt/\u{feff}x",
            "gs://bkt/x\u{202e}",
        ] {
            assert!(StateUrl::parse(alias, clip).is_err(), "{alias:?} was accepted");
        }
        assert_eq!(StateUrl::parse("gs://bkt/x/", clip), StateUrl::parse("gs://bkt/x", clip));
    }

    #[test]
    fn a_refused_url_is_shown_escaped_and_cut() {
        let long = format!("gs://bkt/\u{1b}[31m{}", "x".repeat(5000));
        let err = StateUrl::parse(&long, clip).err().unwrap_or_default();
        assert!(err.contains("\\u{1b}[31m") && !err.contains('\u{1b}'), "{err}");
        assert!(err.len() < 300 && err.contains("(cut: 5014 characters in all)"), "{err}");
    }

    #[test]
    fn lock_keys_round_trip() {
        let name = LockName::from_key("roll--back--production");
        assert_eq!((name.runbook.as_str(), name.environment.as_deref()), ("roll--back", Some("production")));
        assert_eq!(LockName::from_key("demo--default").environment, None);
        assert_eq!(name.key(), "roll--back--production");
    }

    #[test]
    fn leases_are_bounded() {
        assert_eq!(parse_lease("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_lease("0s").is_err());
        assert!(parse_lease("soon").is_err());
    }
}
