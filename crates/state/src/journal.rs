//! The journal: one append-only JSON-lines file per run. Each record is written with one
//! `write_all` and made durable with `sync_data`, so a crash loses at most the record being
//! written, and a reader skips a half-written last line.
//!
//! One record waits for the next sync instead of having its own: a step that finished
//! (`step_finished`, done). Its record goes to the file at once (a killed runbook loses
//! nothing) and is made durable with the next record — before the next step starts, before
//! the run waits on the operator (`Subscriber::flush`), and with the run's last record. A
//! power cut in between shows the step as started and not finished, which `resume` treats
//! like a cut while it ran: the journal may understate what was done, never overstate it.
//! This halves the syncs of a run of short mutating steps (issue 13).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use crate::record::{Header, Record, Recorded, Summary, read};

use crate::event::{Event, StepStatus, Subscriber};

pub struct Journal {
    file: File,
    pub path: PathBuf,
    /// Bytes of whole records in the file: a failed write is cut back to this.
    len: u64,
    /// The first write that failed; nothing is written after it, so the file stays a
    /// readable prefix of the run.
    failed: Option<String>,
    /// The record `open` wrote, sent to the shared store once one is attached.
    opening: (String, String),
    remote: Option<crate::store::journal::Remote>,
    /// A record was written but not yet synced (see the module's note).
    unsynced: bool,
    /// The latest sample of the watch going on, written when the watch ends.
    held_sample: Option<Record>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Journal {
    /// Creates the journal of a new run, or opens an existing one to append a resumption.
    pub fn open(path: &Path, header: Header, resumed: bool) -> Result<Journal, String> {
        let ts = now();
        let record = if resumed { Record::RunResumed { ts, header } } else { Record::RunStarted { ts, header } };
        if !resumed {
            // A new journal appears with its header or not at all: written aside, synced,
            // then renamed into place, so a kill at any moment never leaves an empty file.
            let aside = path.with_extension("jsonl.new");
            let mut file = File::create(&aside).map_err(|e| format!("cannot create {}: {e}", aside.display()))?;
            let line = encode(&record)?;
            let written = file
                .write_all(line.as_bytes())
                .and_then(|()| file.sync_data())
                .and_then(|()| std::fs::rename(&aside, path))
                // The rename itself survives a power cut only once the folder is synced.
                .and_then(|()| path.parent().map_or(Ok(()), |dir| File::open(dir).and_then(|d| d.sync_all())));
            if let Err(err) = written {
                // A full disk leaves no half-written journal behind.
                let _ = std::fs::remove_file(&aside);
                return Err(format!("cannot write the journal {}: {err}", path.display()));
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the journal {}: {e}", path.display()))?;
        let mut len = file.metadata().map_err(|e| format!("cannot read the journal {}: {e}", path.display()))?.len();
        if resumed {
            // A crash can leave a torn last line; appending after it would bury it in the
            // middle of the file, where readers rightly refuse it. Cut it off first.
            let whole = whole_records_len(path)?;
            if whole < len {
                file.set_len(whole)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| format!("cannot repair the journal {}: {e}", path.display()))?;
                len = whole;
            }
        }
        let opening = (kind(&record), encode(&record)?);
        let mut journal = Journal {
            file,
            path: path.to_path_buf(),
            len,
            failed: None,
            opening,
            remote: None,
            unsynced: false,
            held_sample: None,
        };
        if resumed {
            journal.write_local(&journal.opening.1.clone(), true)?;
        }
        Ok(journal)
    }

    /// Also sends every record to the shared store, starting with the opening one: a run
    /// whose start the store cannot take does not start.
    pub fn share(&mut self, remote: crate::store::journal::Remote) -> Result<(), String> {
        let remote = self.remote.insert(remote);
        let (kind, line) = &self.opening;
        remote.send(kind, line, true)
    }

    /// Appends a record locally, then (when shared) to the store; a store failure is
    /// reported but does not fail the local record.
    pub fn append(&mut self, record: &Record) -> Result<(), String> {
        self.append_checked(record, false)
    }

    /// An event that is not the executor's (a lock taken over or broken).
    pub fn append_event(&mut self, event: serde_json::Value) -> Result<(), String> {
        self.append(&Record::Event { ts: now(), event })
    }

    /// `required`: the shared store must have the record (with every one before it) too.
    fn append_checked(&mut self, record: &Record, required: bool) -> Result<(), String> {
        self.append_synced(record, required, true)
    }

    /// `sync`: false only for a record that may wait for the next one's sync.
    fn append_synced(&mut self, record: &Record, required: bool, sync: bool) -> Result<(), String> {
        let line = encode(record)?;
        self.write_local(&line, sync)?;
        match &mut self.remote {
            Some(remote) => remote.send(&kind(record), &line, required),
            None => Ok(()),
        }
    }

    /// Writes one record and syncs it (with any written before it), unless `sync` is false.
    /// On failure (a full disk) the half-written line is cut off again, so the file still
    /// ends with a whole record.
    fn write_local(&mut self, line: &str, sync: bool) -> Result<(), String> {
        let written =
            self.file.write_all(line.as_bytes()).and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                self.len += line.len() as u64;
                self.unsynced = !sync;
                Ok(())
            }
            Err(err) => {
                // Shrinking needs no free space; if even this fails, readers skip a torn last line.
                let _ = self.file.set_len(self.len).and_then(|()| self.file.sync_data());
                Err(format!("cannot write the journal {}: {err}", self.path.display()))
            }
        }
    }
}

impl Journal {
    /// Makes a record written without its own sync durable.
    pub fn sync_pending(&mut self) -> Result<(), String> {
        if !self.unsynced {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| format!("cannot write the journal {}: {e}", self.path.display()))?;
        self.unsynced = false;
        Ok(())
    }
}

impl Drop for Journal {
    /// However the run ends, nothing written stays unsynced.
    fn drop(&mut self) {
        let _ = self.sync_pending();
    }
}

/// The length of a journal up to and including its last newline.
fn whole_records_len(path: &Path) -> Result<u64, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the journal {}: {e}", path.display()))?;
    Ok(bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i as u64 + 1))
}

/// What kind of record a line is, for the shared store's listing.
fn kind(record: &Record) -> String {
    match record {
        Record::RunStarted { .. } => "run_started".into(),
        Record::RunResumed { .. } => "run_resumed".into(),
        Record::Event { event, .. } => event["event"].as_str().unwrap_or("event").to_owned(),
    }
}

fn encode(record: &Record) -> Result<String, String> {
    let mut line = serde_json::to_string(record).map_err(|e| format!("cannot encode a journal record: {e}"))?;
    line.push('\n');
    Ok(line)
}

impl Subscriber for Journal {
    /// A mutating step starts only once its record is durable here and, when shared, in
    /// the store, and only while this run still holds its lock.
    fn before_mutation(&mut self, event: &Event) -> Result<(), String> {
        if let Some(failed) = &self.failed {
            return Err(failed.clone());
        }
        if let Some(remote) = &mut self.remote {
            remote.check_lock()?;
        }
        let value = serde_json::to_value(event).map_err(|e| format!("cannot encode a journal record: {e}"))?;
        self.append_checked(&Record::Event { ts: now(), event: value }, true)
    }

    fn event(&mut self, event: &Event) {
        // Live output is the terminal's; the journal keeps what happened, not every line.
        if matches!(event, Event::Output { .. }) {
            return;
        }
        if self.failed.is_some() {
            return;
        }
        let Ok(value) = serde_json::to_value(event) else { return };
        // A watch's samples are bounded: its first in full, the latest held until the watch
        // ends (any other event), then written with the count of those in between.
        if let Event::WatchSample { sample, .. } = event
            && *sample > 1
        {
            self.held_sample = Some(Record::Event { ts: now(), event: value });
            return;
        }
        if let Some(Record::Event { ts, mut event }) = self.held_sample.take() {
            let between = event["sample"].as_u64().unwrap_or(2).saturating_sub(2);
            if between > 0 {
                event["not_journaled"] = serde_json::Value::from(between);
            }
            let what = format!("watch_sample of `{}`", event["id"].as_str().unwrap_or_default());
            if let Err(err) = self.append_synced(&Record::Event { ts, event }, false, false) {
                self.failed = Some(format!("{err} (the record {what} is missing)"));
                return;
            }
        }
        let what = match (value["event"].as_str(), value["id"].as_str()) {
            (Some(kind), Some(id)) => format!("{kind} of `{id}`"),
            (Some(kind), None) => kind.to_owned(),
            _ => "an event".to_owned(),
        };
        // A finished step's record is synced with the next one (see the module's note).
        let sync = !matches!(event, Event::StepFinished { status: StepStatus::Done, .. });
        if let Err(err) = self.append_synced(&Record::Event { ts: now(), event: value }, false, sync) {
            self.failed = Some(format!("{err} (the record {what} is missing)"));
        }
    }

    /// Before the run waits on the operator: a record still waiting for its sync gets it.
    fn flush(&mut self) {
        if let Err(err) = self.sync_pending() {
            self.failed.get_or_insert(err);
        }
    }

    fn broken(&self) -> Option<String> {
        self.failed.clone()
    }
}

/// Writes the records of a run read from the shared store as a local journal, so a run
/// resumed on another machine has its whole story in this machine's spool too.
pub fn seed(path: &Path, records: &[Record]) -> Result<(), String> {
    let mut text = String::new();
    for record in records {
        text.push_str(&encode(record)?);
    }
    let aside = path.with_extension("jsonl.new");
    std::fs::write(&aside, text)
        .and_then(|()| File::open(&aside).and_then(|f| f.sync_all()))
        .and_then(|()| std::fs::rename(&aside, path))
        .map_err(|e| format!("cannot write the journal {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Header, Journal};
    use crate::event::{Event, StepStatus, Subscriber};

    fn journal(dir: &std::path::Path) -> Journal {
        let header: Header = serde_json::from_value(serde_json::json!({
            "run_id": "r", "user": "u", "host": "h", "pid": 1, "version": "0", "file": "f.yaml",
            "sha256": "0", "runbook": "rb", "procedure": "go", "environment": null, "params": [],
            "secret_params": [], "answers": [], "yes": true
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Journal::open(&dir.join("run.jsonl"), header, false).unwrap_or_else(|e| panic!("{e}"))
    }

    fn started(id: &str) -> Event {
        Event::StepStarted { id: id.into(), name: None, kind: "run", command: None, attempt: 1 }
    }

    fn finished(id: &str, status: StepStatus) -> Event {
        Event::StepFinished {
            id: id.into(),
            status,
            duration: Duration::ZERO,
            exit_code: Some(0),
            http_status: None,
            message: None,
            output: None,
            answer: None,
            changed: None,
        }
    }

    /// Issue 13: a finished step's record waits for the next sync, and only that record.
    #[test]
    fn only_a_finished_steps_record_waits_for_the_next_sync() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut journal = journal(dir.path());
        journal.before_mutation(&started("a")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!journal.unsynced, "a mutating step's record is durable before it starts");
        journal.event(&finished("a", StepStatus::Done));
        assert!(journal.unsynced, "a finished step's record waits for the next record's sync");
        let text = std::fs::read_to_string(dir.path().join("run.jsonl")).unwrap_or_default();
        assert!(text.contains(r#""status":"done""#), "but it is in the file at once: {text}");
        journal.before_mutation(&started("b")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!journal.unsynced, "the next step's sync covers it");
        journal.event(&finished("b", StepStatus::Failed));
        assert!(!journal.unsynced, "a failure is synced at once: the run stops or asks next");
        journal.event(&started("c"));
        journal.event(&finished("c", StepStatus::Done));
        journal.flush();
        assert!(!journal.unsynced, "before the run waits on the operator, it is synced");
        assert!(journal.broken().is_none());
    }
}
