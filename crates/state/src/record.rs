//! What a run's journal holds: its records (a header per attempt, then events), read back
//! for `history`, `show`, `resume` and `undo`. Writing them is [`crate::journal`]'s job.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The first record of a run (and of each resumption).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub run_id: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Who, as the shared store knows them (the gcloud account), when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
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
    /// A rehearsal: against a local fake (`--simulate`) or a `runbook simulate` server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<crate::rehearsal::Settings>,
    /// Who allowed this run besides its operator: an applied plan and its approvers, or a
    /// break-glass reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    /// This attempt is `runbook undo`: it ran the undo steps of what the run changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo: bool,
    /// `--on-failure undo|abort` as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// The procedure's `recovery: true` steps: the run's time to recovery ends when the
    /// first of them passes (none: the run has no time to recovery to record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_steps: Vec<String>,
}

impl Header {
    /// A digest of what the run was asked to do — procedure, environment, params, answers and
    /// `--var`s as journaled (secrets masked), in a fixed order. `apply` records it with the
    /// plan's "applied" mark; a resume of the applied run compares it, so a journal edited to
    /// other values does not run under the plan's approval.
    pub fn inputs_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let sorted = |pairs: &[(String, String)]| {
            let mut pairs = pairs.to_vec();
            pairs.sort();
            pairs
        };
        let inputs = serde_json::json!({
            "procedure": self.procedure,
            "environment": self.environment,
            "params": sorted(&self.params),
            "answers": sorted(&self.answers),
            "vars": sorted(&self.vars),
        });
        hex::encode(Sha256::digest(inputs.to_string().as_bytes()))
    }
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

/// A journal read back: its records, and whether the last line was cut off.
pub struct Recorded {
    pub records: Vec<Record>,
    pub truncated: bool,
    /// What was skipped as not a journal record (a damaged line, a junk object in the shared
    /// store): where and why, already shown escaped. Reported as a warning, never fatal.
    pub skipped: Vec<String>,
}

pub fn read(path: &Path) -> Result<Recorded, String> {
    // Bytes, decoded line by line: a torn last line may end inside a multi-byte character,
    // and a damaged line elsewhere is named by its number, not refused as a whole file.
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut records = Vec::new();
    let mut truncated = false;
    let mut skipped = Vec::new();
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let whole_lines = lines.len() - usize::from(bytes.ends_with(b"\n"));
    for (index, line) in lines.iter().enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let parsed = std::str::from_utf8(line)
            .map_err(|_| "not UTF-8 text".to_owned())
            .and_then(|line| serde_json::from_str::<Record>(line).map_err(|e| e.to_string()));
        match parsed {
            Ok(record) => records.push(record),
            // Only the last line can be half-written (a crash during write_all).
            Err(_) if index + 1 >= whole_lines => truncated = true,
            // A damaged line elsewhere is named and skipped: it never hides the rest of the run.
            Err(err) => {
                skipped.push(format!("{}:{}: not a journal record ({})", path.display(), index + 1, err.escape_debug()))
            }
        }
    }
    if records.is_empty() {
        return Err(format!("{}: the journal is empty", path.display()));
    }
    Ok(Recorded { records, truncated, skipped })
}

/// Where a run stands, from its journal (see [`Recorded::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// Not finished, and its lock is held by it: it is going on now.
    Running,
    Done,
    Failed,
    Aborted,
    /// Not finished and nobody holds its lock (the process died), or ended by a signal.
    Interrupted,
    /// Every change with an `undo:` was put back.
    Undone,
    /// Some changes were put back, some remain.
    PartlyUndone,
    /// An undo ran and put nothing back.
    UndoFailed,
    /// An undo found only manual undo steps, none done.
    NotUndone,
    /// Nothing put back yet: an undo's manual step waits for a person to do it.
    UndoWaiting,
    /// An outcome this version does not know (a newer version wrote it).
    Unknown(String),
}

impl RunStatus {
    pub fn as_str(&self) -> &str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Undone => "undone",
            RunStatus::PartlyUndone => "partly undone",
            RunStatus::UndoFailed => "undo failed",
            RunStatus::NotUndone => "not undone",
            RunStatus::UndoWaiting => "undo waiting for a person",
            RunStatus::Unknown(text) => text,
        }
    }

    /// An undo decided it: resuming would redo what was taken back.
    pub fn is_undo(&self) -> bool {
        matches!(
            self,
            RunStatus::Undone
                | RunStatus::PartlyUndone
                | RunStatus::UndoFailed
                | RunStatus::NotUndone
                | RunStatus::UndoWaiting
        )
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Who ran it, as every record prints it: `alice@example.com (root@vm)`.
    pub identity: String,
    pub started: String,
    pub status: String,
    pub file: PathBuf,
    /// A rehearsal against the local fake, not a real run.
    pub rehearsal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    /// Seconds from the run's start to its first `recovery: true` step passing; `null`
    /// when none passed (see `recovery`).
    pub time_to_recovery_s: Option<f64>,
    /// `recovered`, `not recovered`, or `no recovery step` (the run has none, as recorded
    /// by its header).
    pub recovery: &'static str,
}

/// The run's time to recovery, as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// The first `recovery: true` step to pass, and the seconds from the run's start.
    Recovered { step: String, seconds: f64 },
    /// The run has recovery steps; none passed (yet).
    NotRecovered,
    /// The runbook's procedure has no `recovery: true` step.
    NoRecoveryStep,
}

impl Recovery {
    pub fn as_str(&self) -> &'static str {
        match self {
            Recovery::Recovered { .. } => "recovered",
            Recovery::NotRecovered => "not recovered",
            Recovery::NoRecoveryStep => "no recovery step",
        }
    }

    pub fn seconds(&self) -> Option<f64> {
        match self {
            Recovery::Recovered { seconds, .. } => Some(*seconds),
            _ => None,
        }
    }

    /// For a person: `4m 12s (error_rate passed)`, or what stands instead of a number.
    pub fn describe(&self) -> String {
        match self {
            Recovery::Recovered { step, seconds } => {
                let whole = std::time::Duration::from_secs_f64(seconds.max(0.0).round());
                format!("{} ({step} passed)", humantime::format_duration(whole))
            }
            Recovery::NotRecovered => "not recovered: no `recovery: true` step passed".to_owned(),
            Recovery::NoRecoveryStep => "none: the procedure has no `recovery: true` step".to_owned(),
        }
    }
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

    /// The outcome of the last attempt: `None` when it has not finished (it is running, or
    /// its process died).
    pub fn last_outcome(&self) -> Option<&str> {
        for record in self.records.iter().rev() {
            match record {
                Record::Event { event, .. } if event["event"] == "run_finished" => {
                    return Some(event["outcome"].as_str().unwrap_or("unknown"));
                }
                Record::RunStarted { .. } | Record::RunResumed { .. } => break,
                Record::Event { .. } => {}
            }
        }
        None
    }

    /// The run's status: the one answer `history`, `show`, `resume` and `undo` give, on the
    /// local and the shared store alike. `holding`: the run's lock is held by this run now
    /// (its process is alive, or its lease is being renewed on another machine).
    ///
    /// An undo decides the status once one took something back or was asked for — unless a
    /// later attempt ran the procedure to its end (an undo abandoned at its first step, then
    /// resumed: the rollback is done, not "undo failed").
    pub fn status(&self, holding: bool) -> RunStatus {
        let last_attempt_undo = self.header().is_some_and(|h| h.undo);
        let outcome = self.last_outcome();
        if outcome.is_none() {
            return if holding { RunStatus::Running } else { RunStatus::Interrupted };
        }
        if outcome == Some("done") && !last_attempt_undo {
            return RunStatus::Done;
        }
        if let Some(undo) = self.undo_status() {
            return undo;
        }
        match outcome {
            Some("done") => RunStatus::Done,
            Some("failed") => RunStatus::Failed,
            Some("aborted") => RunStatus::Aborted,
            Some("interrupted") => RunStatus::Interrupted,
            other => RunStatus::Unknown(other.unwrap_or("unknown").to_owned()),
        }
    }

    pub fn summary(&self, id: &str, holding: bool) -> Option<Summary> {
        let header = self.header()?;
        Some(Summary {
            id: id.to_owned(),
            runbook: header.runbook.clone(),
            procedure: header.procedure.clone(),
            environment: header.environment.clone(),
            user: header.user.clone(),
            host: header.host.clone(),
            started: self.started(),
            status: self.status(holding).to_string(),
            identity: crate::identity::display(
                header.identity.as_deref().unwrap_or_default(),
                &header.user,
                &header.host,
            ),
            file: header.file.clone(),
            rehearsal: header.rehearsal.is_some(),
            plan_id: header.plan_id.clone(),
            break_glass: header.break_glass.clone(),
            time_to_recovery_s: self.recovery().seconds(),
            recovery: self.recovery().as_str(),
        })
    }

    /// The run's time to recovery: its first `recovered` event (whichever attempt journaled
    /// it), else whether its procedure has a recovery step at all.
    pub fn recovery(&self) -> Recovery {
        let first = self.events().find(|e| e["event"] == "recovered");
        if let Some(event) = first {
            return Recovery::Recovered {
                step: event["id"].as_str().unwrap_or_default().to_owned(),
                seconds: event["seconds"].as_f64().unwrap_or_default(),
            };
        }
        let has_step = self.records.iter().any(|r| match r {
            Record::RunStarted { header, .. } | Record::RunResumed { header, .. } => !header.recovery_steps.is_empty(),
            Record::Event { .. } => false,
        });
        if has_step { Recovery::NotRecovered } else { Recovery::NoRecoveryStep }
    }

    /// Steps whose undo ran to the end (`undo` events).
    pub fn undone_steps(&self) -> std::collections::HashSet<String> {
        self.events()
            .filter(|e| e["event"] == "undo" && e["state"] == "done")
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect()
    }

    fn events(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.records.iter().filter_map(|r| match r {
            Record::Event { event, .. } => Some(event),
            _ => None,
        })
    }

    /// The run's status once undo ran (`runbook undo` or `--on-failure undo`): `undone` when
    /// every change was put back, `partly undone` when some remain (no `undo:`, skipped, or
    /// the undo stopped), `undo failed` when nothing was; `None` when no undo ran.
    pub fn undo_status(&self) -> Option<RunStatus> {
        let undos: Vec<&serde_json::Value> = self.events().filter(|e| e["event"] == "undo").collect();
        if undos.is_empty() {
            return None;
        }
        let undone = self.undone_steps();
        let mut last: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for e in &undos {
            if let (Some(id), Some(state)) = (e["id"].as_str(), e["state"].as_str()) {
                last.insert(id, state);
            }
        }
        let waiting = last.values().any(|s| *s == "waiting");
        // What the last undo left: its owners minus those undone by then.
        let remains = undos.iter().any(|e| {
            let id = e["id"].as_str().unwrap_or_default();
            matches!(e["state"].as_str(), Some("manual" | "skipped" | "failed" | "started" | "waiting"))
                && !undone.contains(id)
        });
        Some(match (undone.is_empty(), remains) {
            (false, false) => RunStatus::Undone,
            (false, true) => RunStatus::PartlyUndone,
            (true, _) if waiting => RunStatus::UndoWaiting,
            (true, _) if undos.iter().all(|e| e["state"] == "manual") => RunStatus::NotUndone,
            (true, _) => RunStatus::UndoFailed,
        })
    }

    /// When the run's first undo step started (`runbook undo`, `--on-failure undo`, the
    /// failure menu). An undo whose every step was skipped, or that found nothing to undo,
    /// took nothing back.
    pub fn undone_at(&self) -> Option<&str> {
        self.records.iter().find_map(|r| match r {
            Record::Event { ts, event } if event["event"] == "undo" && event["state"] == "started" => Some(ts.as_str()),
            _ => None,
        })
    }

    /// Whether `runbook undo` has something left to do: an owner whose undo was started,
    /// failed, skipped or waits for a person, and never finished. Changes without `undo:`
    /// are not.
    pub fn undo_left(&self) -> bool {
        let undone = self.undone_steps();
        let mut last: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for event in self.events().filter(|e| e["event"] == "undo") {
            if let (Some(id), Some(state)) = (event["id"].as_str(), event["state"].as_str()) {
                last.insert(id, state);
            }
        }
        last.iter()
            .any(|(id, state)| matches!(*state, "started" | "failed" | "skipped" | "waiting") && !undone.contains(*id))
    }

    /// Manual steps whose last finish was not acknowledged by a person (`--yes`).
    pub fn unattended_steps(&self) -> std::collections::HashSet<String> {
        let mut last: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
        for event in self.events().filter(|e| e["event"] == "step_finished") {
            let Some(id) = event["id"].as_str() else { continue };
            let unattended = event["answer"].as_str().is_some_and(|a| a.starts_with(crate::event::UNATTENDED));
            last.insert(id, unattended);
        }
        last.into_iter().filter(|(_, unattended)| *unattended).map(|(id, _)| id.to_owned()).collect()
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
