//! The shared store on Cloud Storage. Under `gs://BUCKET/PREFIX`:
//!
//! - `locks/<runbook>--<env>.json`: one object per lock. Created with `ifGenerationMatch=0`;
//!   its generation is the holder's token, and it carries a random token of the attempt
//!   that wrote it, so a create whose answer was lost (it landed after the client gave up)
//!   is recognised as ours on the retry instead of blocking everyone for a lease. The holder renews it (a conditional overwrite)
//!   before its lease ends; a lock not renewed within its lease, judged by the store's own
//!   clock (`updated` against the answer's `Date`), can be taken over with
//!   `ifGenerationMatch=<observed>`, so exactly one taker wins. Release overwrites it with a
//!   "free" marker (the emulator ignores preconditions on deletes).
//! - `runs/<run id>/<seq>.json`: one object per journal record, created with
//!   `ifGenerationMatch=0`, so a record can never be written twice.
//!
//! Anyone with write access to the bucket can add objects: one that is not a lock or a
//! record (not JSON, another schema, bigger than [`super::MAX_OBJECT_BYTES`]) is named and
//! skipped, never allowed to hide a run or block every lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{Client, GcsError};
use super::{
    Acquired, Broken, HeldLock, Holder, LockName, LockState, RunEntry, Show, StateUrl, Store, Unreadable, shown,
};
use crate::record::{Record, Recorded};

pub struct GcsStore {
    url: StateUrl,
    client: Arc<Client>,
    lease: Duration,
    show: Show,
}

/// The contents of a lock object.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum LockObject {
    Held {
        #[serde(flatten)]
        holder: Holder,
        lease_seconds: u64,
        /// Random, one per `acquire`: whose create this was (older versions wrote none).
        #[serde(default)]
        token: String,
    },
    Free {
        by: String,
        at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// A lock object read back: its state (or, shown, why it is not a lock), its generation, and
/// its age by the store's clock in seconds.
type LockRead = (Result<LockObject, String>, i64, i64);

impl GcsStore {
    pub fn new(url: StateUrl, lease: Duration, timeout: Duration, show: Show) -> Result<GcsStore, String> {
        let emulator = std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|h| !h.trim().is_empty());
        GcsStore::at(url, lease, timeout, emulator, show)
    }

    /// The store at Google, or at an emulator (`HOST:PORT` or a URL) without credentials.
    fn at(
        url: StateUrl,
        lease: Duration,
        timeout: Duration,
        emulator: Option<String>,
        show: Show,
    ) -> Result<GcsStore, String> {
        let endpoint = match &emulator {
            Some(host) if host.contains("://") => host.clone(),
            Some(host) => format!("http://{host}"),
            None => "https://storage.googleapis.com".to_owned(),
        };
        let client = Client::new(&url.bucket, &endpoint, super::auth::Auth::new(emulator.is_some()), timeout)?;
        Ok(GcsStore { url, client: Arc::new(client), lease, show })
    }

    fn object(&self, path: &str) -> String {
        if self.url.prefix.is_empty() { path.to_owned() } else { format!("{}/{path}", self.url.prefix) }
    }

    fn lock_object(&self, name: &LockName) -> String {
        self.object(&format!("locks/{}.json", name.key()))
    }

    fn record_object(&self, run_id: &str, seq: u64) -> String {
        self.object(&format!("runs/{run_id}/{seq:08}.json"))
    }

    fn fail(&self, what: &str, err: &GcsError) -> String {
        format!("cannot {what} in the shared store gs://{}/{}: {err}", self.url.bucket, self.url.prefix)
    }

    /// The lock object's state (or, shown, why it is not a lock), its generation, and how
    /// long ago (store clock) it was written.
    fn read_lock(&self, object: &str) -> Result<Option<LockRead>, GcsError> {
        let (meta, now) = match self.client.metadata(object) {
            Ok(found) => found,
            Err(GcsError::NotFound) => return Ok(None),
            Err(err) => return Err(err),
        };
        // An object written "after" the answer's Date (the store's clocks disagree) was
        // just written: a negative age would overflow `lease - age` and show as "-3600s ago".
        let age = (now - meta.updated).num_seconds().max(0);
        if meta.size > super::MAX_OBJECT_BYTES {
            return Ok(Some((Err(self.junk(object, &too_big(meta.size))), meta.generation, age)));
        }
        let body = match self.client.media(object, Some(meta.generation)) {
            Ok(body) => body,
            Err(GcsError::TooBig) => {
                return Ok(Some((Err(self.junk(object, &too_big(meta.size))), meta.generation, age)));
            }
            Err(err) => return Err(err),
        };
        let state = serde_json::from_slice::<LockObject>(&body).map_err(|e| self.junk(object, &not_ours(&body, &e)));
        Ok(Some((state, meta.generation, age)))
    }

    /// `gs://bucket/object: why it was skipped`, shown.
    fn junk(&self, object: &str, why: &str) -> String {
        format!("gs://{}/{}: {why}", self.url.bucket, shown(self.show, object))
    }

    fn records(&self, run_id: &str) -> Result<Vec<super::client::Object>, String> {
        self.client.list(&self.object(&format!("runs/{run_id}/"))).map_err(|e| self.fail("list the journal", &e))
    }
}

pub fn matches(name: &LockName, runbook: Option<&str>, environment: Option<&str>) -> bool {
    runbook.is_none_or(|r| r == name.runbook || name.runbook == format!("{r}.rehearsal"))
        && environment.is_none_or(|e| name.environment.as_deref() == Some(e))
}

impl Store for GcsStore {
    fn location(&self) -> String {
        format!("gs://{}/{}", self.url.bucket, self.url.prefix)
    }

    fn shared(&self) -> bool {
        true
    }

    fn acquire(&self, name: &LockName, holder: &Holder) -> Result<Acquired, String> {
        let object = self.lock_object(name);
        let token = attempt_token();
        let held = LockObject::Held {
            holder: holder.clone(),
            lease_seconds: self.lease.as_secs().max(1),
            token: token.clone(),
        };
        let body = serde_json::to_vec(&held).map_err(|e| e.to_string())?;
        // Each turn either wins, refuses, or saw the object change under it and looks again.
        // A write whose answer did not come (a timeout, a dropped connection) may still have
        // landed: the next turn's create then fails its precondition, and the object read
        // back carries our token, so it is adopted rather than left as a phantom holder.
        let mut failures = Vec::new();
        for _ in 0..8 {
            let sent = Instant::now();
            let (observed, took_over) = match self.client.insert(&object, &body, 0, &[]) {
                Ok(created) => return Ok(self.held(object, body, created.generation, sent, None, holder)),
                Err(GcsError::Precondition) => match self.read_lock(&object) {
                    Ok(Some((Ok(LockObject::Held { token: theirs, .. }), generation, _))) if theirs == token => {
                        return Ok(self.held(object, body, generation, sent, None, holder));
                    }
                    Ok(Some((Ok(LockObject::Free { .. }), generation, _))) => (generation, None),
                    Ok(Some((Ok(LockObject::Held { holder: other, lease_seconds, .. }), generation, age))) => {
                        let lease = i64::try_from(lease_seconds).unwrap_or(i64::MAX);
                        if age <= lease {
                            return Err(format!(
                                "`{}` is already running: {}; its lease was renewed {age}s ago and runs out in {}s (shared lock in {})",
                                name.display(),
                                other.describe(self.show),
                                lease.saturating_sub(age),
                                self.location()
                            ));
                        }
                        (generation, Some(other))
                    }
                    Ok(Some((Err(junk), _, _))) => {
                        return Err(format!(
                            "`{}` cannot be taken: its lock object is not a lock ({junk}); nothing was run. If no run of it is going on, free it with `runbook lock break` (`runbook lock status` names it)",
                            name.display()
                        ));
                    }
                    Ok(None) => continue,
                    Err(err) => return Err(self.fail("read the run lock", &err)),
                },
                Err(err) => {
                    failures.push(err);
                    if failures.len() == 3 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            let sent = Instant::now();
            match self.client.insert(&object, &body, observed, &[]) {
                Ok(written) => return Ok(self.held(object, body, written.generation, sent, took_over, holder)),
                Err(GcsError::Precondition) => continue,
                Err(err) => {
                    failures.push(err);
                    if failures.len() == 3 {
                        break;
                    }
                }
            }
        }
        match failures.pop() {
            Some(err) => {
                self.withdraw(&object, &token);
                Err(self.fail("take the run lock", &err))
            }
            None => Err(format!("`{}`: the shared lock kept changing while taking it; try again", name.display())),
        }
    }

    fn status(&self, runbook: Option<&str>, environment: Option<&str>) -> Result<Vec<LockState>, String> {
        let objects = self.client.list(&self.object("locks/")).map_err(|e| self.fail("list the locks", &e))?;
        let mut states = Vec::new();
        for object in objects {
            let file = object.name.rsplit('/').next().unwrap_or_default();
            let Some(key) = file.strip_suffix(".json").filter(|k| !k.is_empty()) else {
                // Not a lock this tool names: listed as unreadable under its own name.
                let name = LockName { runbook: file.to_owned(), environment: None };
                let why = self.junk(&object.name, "not a lock object's name (`<runbook>--<env>.json`)");
                if runbook.is_none() && environment.is_none() {
                    let unreadable = Some(Unreadable { why, in_a_locks_place: false });
                    states.push(LockState { name, unreadable, holder: None, renewed_ago: None, lease: None });
                }
                continue;
            };
            let name = LockName::from_key(key);
            if !matches(&name, runbook, environment) {
                continue;
            }
            let state = match self.read_lock(&object.name) {
                Ok(Some((Ok(LockObject::Held { holder, lease_seconds, .. }), _, age))) => LockState {
                    name,
                    unreadable: None,
                    holder: Some(holder),
                    renewed_ago: Some(age),
                    lease: Some(lease_seconds),
                },
                Ok(Some((Err(why), _, _))) => {
                    let unreadable = Some(Unreadable { why, in_a_locks_place: true });
                    LockState { name, unreadable, holder: None, renewed_ago: None, lease: None }
                }
                Ok(_) => LockState { name, unreadable: None, holder: None, renewed_ago: None, lease: None },
                Err(err) => return Err(self.fail("read a lock", &err)),
            };
            states.push(state);
        }
        Ok(states)
    }

    fn break_lock(&self, name: &LockName, by: &str, reason: &str) -> Result<Broken, String> {
        let object = self.lock_object(name);
        let (broken, generation) = match self.read_lock(&object) {
            Ok(Some((Ok(LockObject::Held { holder, .. }), generation, _))) => (Broken::Held(holder), generation),
            // Not a lock at all: after the same typed confirmation, replaced by a free marker
            // (the generation read, so an object rewritten meanwhile is not lost unseen).
            Ok(Some((Err(why), generation, _))) => (Broken::Unreadable(why), generation),
            Ok(_) => return Err(format!("`{}` is not locked", name.display())),
            Err(err) => return Err(self.fail("read the run lock", &err)),
        };
        let free = LockObject::Free { by: by.to_owned(), at: now(), reason: Some(reason.to_owned()) };
        let body = serde_json::to_vec(&free).map_err(|e| e.to_string())?;
        match self.client.insert(&object, &body, generation, &[]) {
            Ok(_) => Ok(broken),
            Err(GcsError::Precondition) => Err(format!(
                "the lock of `{}` changed while breaking it; look again with `runbook lock status`",
                name.display()
            )),
            Err(err) => Err(self.fail("break the run lock", &err)),
        }
    }

    fn put_record(&self, run_id: &str, seq: u64, kind: &str, line: &str) -> Result<(), String> {
        let object = self.record_object(run_id, seq);
        let body = line.trim_end().as_bytes();
        let mut last = GcsError::Other("not tried".into());
        for attempt in 0..3u64 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 * attempt));
            }
            match self.client.insert(&object, body, 0, &[("record", kind)]) {
                Ok(_) => return Ok(()),
                // Already there: fine if it is ours (an earlier try landed but its answer
                // was lost), else another process writes this run.
                Err(GcsError::Precondition) => {
                    return match self.client.media(&object, None) {
                        Ok(existing) if existing == body => Ok(()),
                        Ok(_) => Err(format!(
                            "record {seq} of run {run_id} was already written by another process: someone else is continuing this run"
                        )),
                        Err(err) => Err(self.fail("check a journal record", &err)),
                    };
                }
                Err(err) => last = err,
            }
        }
        Err(self.fail("store the journal record", &last))
    }

    fn next_seq(&self, run_id: &str) -> Result<u64, String> {
        Ok(self.records(run_id)?.iter().filter_map(|o| seq_of(&o.name)).max().map_or(0, |s| s + 1))
    }

    /// Named after the last record seen (`00000007.note-….json` sorts after `00000007.json`
    /// and before `00000008.json`) and never parsed as a sequence number.
    fn put_note(&self, run_id: &str, kind: &str, line: &str) -> Result<(), String> {
        let last = self.next_seq(run_id)?.saturating_sub(1);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let object = self.object(&format!("runs/{run_id}/{last:08}.note-{stamp}-{}.json", std::process::id()));
        self.client
            .insert(&object, line.trim_end().as_bytes(), 0, &[("record", kind)])
            .map(|_| ())
            .map_err(|e| self.fail("store a note in the journal", &e))
    }

    /// `notes/locks/<runbook>--<env>/<time>-<pid>.json`, beside no run's records, so
    /// `history` never takes it for a run.
    fn put_lock_note(&self, name: &LockName, kind: &str, line: &str) -> Result<String, String> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let object = self.object(&format!("notes/locks/{}/{stamp}-{}.json", name.key(), std::process::id()));
        self.client
            .insert(&object, line.trim_end().as_bytes(), 0, &[("record", kind)])
            .map(|_| format!("gs://{}/{object}", self.url.bucket))
            .map_err(|e| self.fail("store a note about the lock", &e))
    }

    fn history(&self) -> Result<Vec<RunEntry>, String> {
        let objects = self.client.list(&self.object("runs/")).map_err(|e| self.fail("list the runs", &e))?;
        // Per run: its first record (when it started), its last header (who ran it last) and
        // its last record (how it ended) are enough for the list.
        // The run is the folder right under `runs/`: an object deeper down is its run's
        // junk (named by `decode`), not a run of its own.
        let mut runs: std::collections::BTreeMap<String, Vec<&super::client::Object>> = Default::default();
        let under = self.object("runs/");
        for object in &objects {
            let Some((run, _)) = object.name.strip_prefix(&under).and_then(|rest| rest.split_once('/')) else {
                continue;
            };
            runs.entry(run.to_owned()).or_default().push(object);
        }
        let mut wanted = Vec::new();
        let mut plan = Vec::new();
        for (run, records) in &runs {
            // The status needs every attempt's header and end and every undo record, and the
            // time to recovery its `recovered` record, as on the local store: the same
            // records, the same status (`Recorded::status`, `Recorded::recovery`). An object
            // not named as a record is read too, so junk is named rather than passed over.
            let kind = |o: &&&super::client::Object| {
                o.metadata.get("record").is_some_and(|k| k.starts_with("run_") || k == "undo" || k == "recovered")
                    || !named_as_record(&o.name)
            };
            let mut picked: Vec<&super::client::Object> =
                records.first().into_iter().chain(records.iter().filter(kind)).chain(records.last()).copied().collect();
            picked.dedup_by(|a, b| a.name == b.name);
            plan.push((run.clone(), wanted.len(), picked.len()));
            wanted.extend(picked);
        }
        let bodies = self.bodies(&wanted);
        let mut history: Vec<(String, Result<Recorded, String>)> = plan
            .into_iter()
            .map(|(run, start, count)| {
                let parts = bodies.get(start..start + count).unwrap_or_default();
                (run.clone(), self.decode(&run, parts))
            })
            .collect();
        history.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(history)
    }

    fn run(&self, run_id: &str) -> Result<Option<Recorded>, String> {
        let objects = self.records(run_id)?;
        if objects.is_empty() {
            return Ok(None);
        }
        let bodies = self.bodies(&objects.iter().collect::<Vec<_>>());
        self.decode(run_id, &bodies).map(Some)
    }

    fn plan_records(&self) -> Option<Box<dyn crate::approvals::Store>> {
        Some(Box::new(super::plans::GcsPlans::new(
            Arc::clone(&self.client),
            self.object("plans"),
            format!("gs://{}/{}", self.url.bucket, self.object("plans")),
            self.show,
        )))
    }
}

/// A record's sequence number from its object's name. A number no run reaches (someone's
/// `18446744073709551615.json`) is junk, not the run's last record: counting it would
/// overflow the next number.
fn seq_of(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.strip_suffix(".json")?.parse().ok().filter(|seq| *seq < 1_000_000_000_000)
}

/// A body read from the store, or why it was not read.
enum Body {
    Read(String, Vec<u8>),
    /// Too big to be a record: named and skipped unread.
    TooBig(String, u64),
    /// The store failed (not the object's fault): the whole read fails.
    Failed(String),
}

impl GcsStore {
    /// The bodies of these objects, those too big to be a record left unread.
    fn bodies(&self, objects: &[&super::client::Object]) -> Vec<Body> {
        let small: Vec<String> =
            objects.iter().filter(|o| o.size <= super::MAX_OBJECT_BYTES).map(|o| o.name.clone()).collect();
        let mut fetched = self.client.media_many(small).into_iter();
        objects
            .iter()
            .map(|o| {
                if o.size > super::MAX_OBJECT_BYTES {
                    return Body::TooBig(o.name.clone(), o.size);
                }
                match fetched.next() {
                    Some(Ok(bytes)) => Body::Read(o.name.clone(), bytes),
                    Some(Err(GcsError::TooBig)) => Body::TooBig(o.name.clone(), o.size),
                    Some(Err(err)) => Body::Failed(self.fail("read a record", &err)),
                    None => Body::Failed(self.fail("read a record", &GcsError::Other("no answer".into()))),
                }
            })
            .collect()
    }

    /// A run's records in order. An object that is not a journal record (not JSON, another
    /// schema, too big) is skipped and named in `skipped`: one junk object never hides a run.
    fn decode(&self, run_id: &str, bodies: &[Body]) -> Result<Recorded, String> {
        let mut records = Vec::new();
        let mut skipped = Vec::new();
        let folder = self.object(&format!("runs/{run_id}/"));
        // Only `runs/<id>/NNNNNNNN.json` (and its notes) is a record: an object named
        // otherwise (`000000009.json` beside `00000009.json`, `zz.json`, one in a sub-folder)
        // was not written by this tool, so even a well-formed record there is skipped.
        let record_name =
            |name: &str| name.strip_prefix(&folder).is_some_and(|f| !f.contains('/') && named_as_record(f));
        for body in bodies {
            match body {
                Body::Failed(err) => return Err(err.clone()),
                Body::TooBig(name, size) => skipped.push(self.junk(name, &too_big(*size))),

                Body::Read(name, bytes) => match serde_json::from_slice::<Record>(bytes) {
                    Ok(_) if !record_name(name) => skipped.push(self.junk(
                        name,
                        "a journal record under a name this tool never writes (runs/<run id>/NNNNNNNN.json)",
                    )),
                    Ok(record) => records.push(record),
                    Err(err) => skipped.push(self.junk(name, &not_ours(bytes, &err))),
                },
            }
        }
        if records.is_empty() {
            let why = skipped.first().map(|s| format!(" ({s})")).unwrap_or_default();
            return Err(format!("run {}: no journal records in the shared store{why}", shown(self.show, run_id)));
        }
        Ok(Recorded { records, truncated: false, skipped })
    }

    /// After giving up on taking the lock: a create of ours that landed unseen is freed
    /// (best effort: the store may be what failed), so it does not hold the lock for a lease.
    fn withdraw(&self, object: &str, token: &str) {
        if let Ok(Some((Ok(LockObject::Held { token: theirs, .. }), generation, _))) = self.read_lock(object)
            && theirs == token
        {
            let free = LockObject::Free { by: "a run that gave up taking it".into(), at: now(), reason: None };
            if let Ok(body) = serde_json::to_vec(&free) {
                let _ = self.client.insert(object, &body, generation, &[]);
            }
        }
    }
}

/// `00000007.json` or `00000007.note-….json`, as this tool names records.
fn named_as_record(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or_default();
    let Some(stem) = file.strip_suffix(".json") else { return false };
    let seq = stem.split_once(".note-").map_or(stem, |(seq, _)| seq);
    seq.len() == 8 && seq.bytes().all(|b| b.is_ascii_digit())
}

/// `size` as listed; an object that grew past the bound since then was cut off while read.
fn too_big(size: u64) -> String {
    let max = super::MAX_OBJECT_BYTES;
    if size > max {
        format!("too big to be a lock or a journal record ({size} bytes; at most {max})")
    } else {
        format!("too big to be a lock or a journal record (more than {max} bytes)")
    }
}

/// Why an object is not ours: not JSON at all, or JSON of another shape.
fn not_ours(bytes: &[u8], err: &serde_json::Error) -> String {
    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
        "not JSON".to_owned()
    } else {
        format!("JSON of another schema ({})", err.to_string().escape_debug())
    }
}

/// 128 random bits from the kernel (the time and pid if it cannot be read).
fn attempt_token() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => hex::encode(bytes),
        Err(_) => format!("{}-{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl GcsStore {
    fn held(
        &self,
        object: String,
        body: Vec<u8>,
        generation: i64,
        sent: Instant,
        took_over: Option<Holder>,
        holder: &Holder,
    ) -> Acquired {
        let lease = Arc::new(Lease {
            client: self.client.clone(),
            object,
            body,
            lease: self.lease,
            released_by: format!("run {} ({})", holder.run_id, holder.identity),
            state: Mutex::new(LeaseState { generation, renewed: sent, lost: None }),
            stop: AtomicBool::new(false),
        });
        let renewer = lease.clone();
        let spawned =
            std::thread::Builder::new().name("runbook-lease".into()).spawn(move || renewer.renew_until_stopped());
        if let Err(err) = spawned {
            // Without the background renewal, the check before each mutating step renews.
            tracing::warn!("cannot start the lease renewal thread: {err}");
        }
        Acquired { lock: Arc::new(GcsLock { lease }), took_over }
    }
}

struct LeaseState {
    generation: i64,
    /// When the last successful renewal was sent (a lower bound of the store's `updated`).
    renewed: Instant,
    lost: Option<String>,
}

struct Lease {
    client: Arc<Client>,
    object: String,
    body: Vec<u8>,
    lease: Duration,
    /// Written into the "free" marker on release.
    released_by: String,
    state: Mutex<LeaseState>,
    stop: AtomicBool,
}

impl Lease {
    fn renew_until_stopped(&self) {
        let tick = Duration::from_millis(100);
        loop {
            std::thread::sleep(tick);
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let due = self.state.lock().map(|s| s.lost.is_none() && s.renewed.elapsed() >= self.lease / 3);
            match due {
                Ok(true) => self.renew(),
                Ok(false) => {}
                Err(_) => return,
            }
        }
    }

    /// One conditional rewrite with the current token. A 412 means someone took it over;
    /// any other failure loses the lock only once the lease has run out.
    fn renew(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        if state.lost.is_some() {
            return;
        }
        let sent = Instant::now();
        match self.client.insert(&self.object, &self.body, state.generation, &[]) {
            Ok(written) => {
                state.generation = written.generation;
                state.renewed = sent;
            }
            Err(GcsError::Precondition) => {
                state.lost = Some(
                    "the lock was broken or taken over by someone else (`runbook lock status` says who holds it now)"
                        .into(),
                );
            }
            Err(err) => {
                if state.renewed.elapsed() >= self.lease {
                    state.lost = Some(format!(
                        "the lock could not be renewed within its lease of {} ({err})",
                        humantime::format_duration(self.lease)
                    ));
                }
            }
        }
    }
}

struct GcsLock {
    lease: Arc<Lease>,
}

impl HeldLock for GcsLock {
    fn check(&self) -> Result<(), String> {
        // Before every mutating step, whatever the lease: one conditional rewrite of the lock
        // object. A lock broken (deleted) or replaced since the last renewal fails it, so a
        // second run that took the lock and this one never change things at the same time.
        // It costs one small request per mutating step, and renews the lease too.
        self.lease.renew();
        match self.lease.state.lock() {
            Ok(state) => match &state.lost {
                Some(reason) => Err(format!("the run lock is lost: {reason}")),
                None if state.renewed.elapsed() >= self.lease.lease => {
                    Err("the run lock is lost: its lease ran out before it could be renewed".into())
                }
                None => Ok(()),
            },
            Err(_) => Err("the run lock's state is poisoned".into()),
        }
    }
}

impl Drop for GcsLock {
    fn drop(&mut self) {
        self.lease.stop.store(true, Ordering::SeqCst);
        let Ok(state) = self.lease.state.lock() else { return };
        if state.lost.is_some() {
            return;
        }
        let free = LockObject::Free { by: self.lease.released_by.clone(), at: now(), reason: None };
        let Ok(body) = serde_json::to_vec(&free) else { return };
        if let Err(err) = self.lease.client.insert(&self.lease.object, &body, state.generation, &[]) {
            eprintln!("warning: cannot release the shared run lock: {err}; it frees itself when its lease runs out");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{GcsError, GcsStore, StateUrl, Store};

    /// Against the real emulator when `scripts/test` exported it (FAKE_GCS_SERVER).
    fn emulator() -> Option<(std::process::Child, String)> {
        let Some(binary) = std::env::var_os("FAKE_GCS_SERVER") else {
            assert!(std::env::var_os("CI").is_none(), "FAKE_GCS_SERVER is not set: run scripts/test");
            eprintln!("*** SKIP: FAKE_GCS_SERVER is not set (scripts/test sets it) ***");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).ok()?.port();
        let child = std::process::Command::new(binary)
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string(), "-backend", "memory"])
            .args(["-log-level", "error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start FAKE_GCS_SERVER: {e}"));
        Some((child, format!("127.0.0.1:{port}")))
    }

    #[test]
    fn a_record_number_no_run_reaches_is_not_a_record() {
        assert_eq!(super::seq_of("p/runs/r/00000007.json"), Some(7));
        assert_eq!(super::seq_of("p/runs/r/18446744073709551615.json"), None);
        assert_eq!(super::seq_of("p/runs/r/00000007.note-x.json"), None);
        assert!(super::named_as_record("p/runs/r/00000007.note-20260101T000000Z-1.json"));
        assert!(!super::named_as_record("p/runs/r/zz-junk.json"));
    }

    /// A store on the emulator with its bucket made.
    fn store_at(host: String, bucket: &str) -> GcsStore {
        let url = StateUrl { bucket: bucket.into(), prefix: "p".into() };
        let store = GcsStore::at(url, Duration::from_secs(90), Duration::from_secs(5), Some(host), |t| t.to_owned());
        let Ok(store) = store else { panic!("client") };
        let made = (0..100).any(|_| {
            let done = store.client.create_bucket().is_ok();
            if !done {
                std::thread::sleep(Duration::from_millis(50));
            }
            done
        });
        assert!(made, "the emulator did not come up");
        store
    }

    /// An object that grew past the bound after it was listed is refused partway through
    /// reading it, and named as junk when it sits in a lock's place.
    #[test]
    fn an_object_bigger_than_the_bound_is_not_read_whole() {
        let Some((mut child, host)) = emulator() else { return };
        let store = store_at(host, "big-check");
        let big = vec![b' '; 1_100_000];
        assert!(store.client.insert("p/locks/demo--staging.json", &big, 0, &[]).is_ok());
        assert!(matches!(store.client.media("p/locks/demo--staging.json", None), Err(GcsError::TooBig)));
        assert!(matches!(
            store.client.media_many(vec!["p/locks/demo--staging.json".into()]).pop(),
            Some(Err(GcsError::TooBig))
        ));
        let read = store.read_lock("p/locks/demo--staging.json");
        assert!(
            matches!(&read, Ok(Some((Err(why), _, _))) if why.contains("too big")),
            "{:?}",
            read.map(|r| r.map(|r| r.0.err()))
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_retried_record_write_that_had_landed_is_accepted_and_a_foreign_one_is_not() {
        let Some((mut child, host)) = emulator() else { return };
        let store = store_at(host, "retry-check");
        assert_eq!(store.put_record("r1", 0, "run_started", "{\"a\":1}\n"), Ok(()));
        assert_eq!(store.put_record("r1", 0, "run_started", "{\"a\":1}\n"), Ok(()), "our own earlier write");
        let other = store.put_record("r1", 0, "run_started", "{\"a\":2}\n").err().unwrap_or_default();
        assert!(other.contains("already written by another process"), "{other}");
        assert_eq!(store.next_seq("r1"), Ok(1));
        let _ = child.kill();
        let _ = child.wait();
    }
}
