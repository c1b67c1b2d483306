//! The journal: one append-only JSON-lines file per run. Each record is written with one
//! `write_all`, so a kill loses at most the record being written, and a reader skips a
//! half-written last line. Records are made durable (`sync_data`, which covers every earlier
//! record too) before a step starts, before the run waits on the operator ([`Subscriber::flush`])
//! and when the run ends; the records in between (a step's end, a stage's start, notices) ride
//! on the next sync, so back-to-back steps cost one `sync_data` each, not two.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exec::event::{Event, Subscriber};

/// The first record of a run (and of each resumption).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub run_id: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub file: PathBuf,
    pub sha256: String,
    pub runbook: String,
    pub procedure: String,
    pub environment: Option<String>,
    /// Param values as given; secret ones are masked and asked for again on resume.
    pub params: Vec<(String, String)>,
    pub secret_params: Vec<String>,
    pub answers: Vec<(String, String)>,
    /// `--var` overrides.
    #[serde(default)]
    pub vars: Vec<(String, String)>,
    pub yes: bool,
    /// Set on a resumption that overrode a changed runbook file (`--force`).
    #[serde(default)]
    pub forced: bool,
    /// A rehearsal against the local fake (`--simulate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<crate::commands::rehearse::Settings>,
}

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    RunStarted {
        ts: String,
        #[serde(flatten)]
        header: Header,
    },
    RunResumed {
        ts: String,
        #[serde(flatten)]
        header: Header,
    },
    Event {
        ts: String,
        #[serde(flatten)]
        event: serde_json::Value,
    },
}

pub struct Journal {
    file: File,
    pub path: PathBuf,
    failed: bool,
    /// Records written since the last `sync_data`.
    unsynced: bool,
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
            file.write_all(line.as_bytes())
                .and_then(|()| file.sync_data())
                .and_then(|()| std::fs::rename(&aside, path))
                // The rename itself survives a power cut only once the folder is synced.
                .and_then(|()| path.parent().map_or(Ok(()), |dir| File::open(dir).and_then(|d| d.sync_all())))
                .map_err(|e| format!("cannot write the journal {}: {e}", path.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the journal {}: {e}", path.display()))?;
        let mut journal = Journal { file, path: path.to_path_buf(), failed: false, unsynced: false };
        if resumed {
            journal.append(&record)?;
        }
        Ok(journal)
    }

    /// Writes a record and makes it (and every earlier one) durable.
    pub fn append(&mut self, record: &Record) -> Result<(), String> {
        self.write(record, true)
    }

    /// Writes a record; `durable` also syncs it and everything written before it.
    fn write(&mut self, record: &Record, durable: bool) -> Result<(), String> {
        let line = encode(record)?;
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| format!("cannot write the journal {}: {e}", self.path.display()))?;
        self.unsynced = true;
        if durable { self.sync() } else { Ok(()) }
    }

    /// Makes every record written so far durable; nothing to do when they already are.
    fn sync(&mut self) -> Result<(), String> {
        if !self.unsynced {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| format!("cannot write the journal {}: {e}", self.path.display()))?;
        self.unsynced = false;
        Ok(())
    }

    fn warn_once(&mut self, result: Result<(), String>) {
        if let Err(err) = result
            && !self.failed
        {
            self.failed = true;
            eprintln!("warning: {err}; the run goes on without a complete record");
        }
    }
}

impl Drop for Journal {
    /// A run that stops on an error path still leaves its last records durable.
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

fn encode(record: &Record) -> Result<String, String> {
    let mut line = serde_json::to_string(record).map_err(|e| format!("cannot encode a journal record: {e}"))?;
    line.push('\n');
    Ok(line)
}

impl Subscriber for Journal {
    fn event(&mut self, event: &Event) {
        // Live output is the terminal's; the journal keeps what happened, not every line.
        if matches!(event, Event::Output { .. }) {
            return;
        }
        let Ok(value) = serde_json::to_value(event) else { return };
        // A step never starts before its record, and all before it, is durable (SPEC rule
        // 7); the run's end is durable too. A step's end is made durable by the next step's
        // start, by `flush` before the run waits on the operator, or by the run's end.
        let durable = matches!(event, Event::StepStarted { .. } | Event::RunFinished { .. });
        let result = self.write(&Record::Event { ts: now(), event: value }, durable);
        self.warn_once(result);
    }

    /// Called after each burst of output and before the run waits on the operator.
    fn flush(&mut self) {
        let result = self.sync();
        self.warn_once(result);
    }
}

/// A journal read back: its records, and whether the last line was cut off.
pub struct Recorded {
    pub records: Vec<Record>,
    pub truncated: bool,
}

pub fn read(path: &Path) -> Result<Recorded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut records = Vec::new();
    let mut truncated = false;
    let lines: Vec<&str> = text.split('\n').collect();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(record) => records.push(record),
            // Only the last line can be half-written (a crash during write_all).
            Err(_) if index + 1 >= lines.len() - usize::from(text.ends_with('\n')) => truncated = true,
            Err(err) => return Err(format!("{}:{}: not a journal record: {err}", path.display(), index + 1)),
        }
    }
    if records.is_empty() {
        return Err(format!("{}: the journal is empty", path.display()));
    }
    Ok(Recorded { records, truncated })
}

/// What `history` shows of a run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub id: String,
    pub runbook: String,
    pub procedure: String,
    pub environment: Option<String>,
    pub user: String,
    pub host: String,
    pub started: String,
    pub status: String,
    pub file: PathBuf,
}

impl Recorded {
    pub fn header(&self) -> Option<&Header> {
        self.records.iter().rev().find_map(|r| match r {
            Record::RunStarted { header, .. } | Record::RunResumed { header, .. } => Some(header),
            Record::Event { .. } => None,
        })
    }

    pub fn started(&self) -> String {
        match self.records.first() {
            Some(Record::RunStarted { ts, .. } | Record::RunResumed { ts, .. } | Record::Event { ts, .. }) => {
                ts.clone()
            }
            None => String::new(),
        }
    }

    /// The outcome of the last attempt, or `interrupted` when the process died mid-run.
    pub fn status(&self) -> String {
        for record in self.records.iter().rev() {
            match record {
                Record::Event { event, .. } if event["event"] == "run_finished" => {
                    return event["outcome"].as_str().unwrap_or("unknown").to_owned();
                }
                Record::RunStarted { .. } | Record::RunResumed { .. } => break,
                Record::Event { .. } => {}
            }
        }
        "interrupted".to_owned()
    }

    pub fn summary(&self, id: &str) -> Option<Summary> {
        let header = self.header()?;
        Some(Summary {
            id: id.to_owned(),
            runbook: header.runbook.clone(),
            procedure: header.procedure.clone(),
            environment: header.environment.clone(),
            user: header.user.clone(),
            host: header.host.clone(),
            started: self.started(),
            status: self.status(),
            file: header.file.clone(),
        })
    }

    /// Steps finished successfully (in any attempt), with what they produced.
    pub fn done_steps(&self) -> Vec<(String, Option<serde_json::Value>, bool)> {
        let mut done: Vec<(String, Option<serde_json::Value>, bool)> = Vec::new();
        for record in &self.records {
            let Record::Event { event, .. } = record else { continue };
            if event["event"] != "step_finished" {
                continue;
            }
            let Some(id) = event["id"].as_str() else { continue };
            let status = event["status"].as_str().unwrap_or_default();
            done.retain(|(d, _, _)| d != id);
            if status == "done" || status == "skipped" || status == "failed_continued" {
                let output = event.get("output").filter(|o| !o.is_null()).cloned();
                done.push((id.to_owned(), output, status == "skipped"));
            }
        }
        done
    }
}
