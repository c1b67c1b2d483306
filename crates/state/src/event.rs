//! What the executor reports. The terminal view, `--output json` and the journal are all
//! subscribers; every text in an event has already been through the redactor.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        runbook: String,
        procedure: String,
        environment: Option<String>,
        file: String,
    },
    StageStarted {
        procedure: String,
        index: usize,
        name: String,
    },
    StageSkipped {
        procedure: String,
        index: usize,
        name: String,
        reason: String,
    },
    /// `resume`: every step of the stage finished in an earlier attempt of this run; it is
    /// neither confirmed nor run again (not "skipped", which is the operator's `s`).
    StageDoneEarlier {
        procedure: String,
        index: usize,
        name: String,
    },
    StepStarted {
        id: String,
        name: Option<String>,
        kind: &'static str,
        /// The command as it runs, secrets masked.
        command: Option<String>,
        attempt: u32,
    },
    /// Child output, masked: one or more lines, each ending in a line feed except perhaps
    /// the last (a piece of a line longer than 1 MiB, or output that ends without one).
    /// Bytes as the child wrote them; decoded only where shown (see `lines`).
    Output {
        id: String,
        stream: Stream,
        #[serde(serialize_with = "serialize_lossy")]
        text: Vec<u8>,
    },
    /// Text the operator must see (manual instructions, a retry notice).
    Notice {
        id: String,
        text: String,
    },
    StepFinished {
        id: String,
        status: StepStatus,
        #[serde(serialize_with = "crate::durations::serialize")]
        duration: Duration,
        /// A process step's exit status.
        exit_code: Option<i32>,
        /// An `http:` step's response status.
        #[serde(skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
        message: Option<String>,
        /// Captured output when it is not secret.
        output: Option<serde_json::Value>,
        /// What the operator answered (prompt value, typed confirmation), when not secret.
        answer: Option<String>,
        /// A mutating step that finished: what it changed, in one line (masked).
        #[serde(skip_serializing_if = "Option::is_none")]
        changed: Option<String>,
    },
    /// One sample of a `watch` step. The journal keeps the first and the last of a watch in
    /// full, and on the last the number of samples between that it did not keep.
    WatchSample {
        id: String,
        /// Counted from 1; a resumed watch starts again at 1.
        sample: u32,
        passing: bool,
        /// Passing samples in a row so far, and how many the watch needs.
        streak: u32,
        hold: u32,
        /// The sample's value, shortened (its JSON or text), when it has one.
        value: Option<String>,
        /// Why the sample counts as not passing: it erred (exit status, HTTP error, not JSON)
        /// or `pass` could not be evaluated.
        error: Option<String>,
        /// Time left of `within`.
        #[serde(serialize_with = "crate::durations::serialize")]
        left: Duration,
    },
    /// The run's first `recovery: true` step passed: the run's time to recovery, from its
    /// start (its first attempt's) to now.
    Recovered {
        id: String,
        #[serde(serialize_with = "crate::durations::serialize")]
        after: Duration,
        seconds: f64,
    },
    /// The undo engine about step `id` (the step being undone, not the undo step).
    Undo {
        id: String,
        state: UndoState,
        text: String,
    },
    /// What the operator chose at the failure menu after step `id` failed.
    FailureChoice {
        id: String,
        /// `retry`, `edit`, `skip`, `undo` or `abort`.
        choice: &'static str,
        /// `skip`: the reason the operator typed.
        reason: Option<String>,
        /// `edit`: the prompt whose answer was asked again, and the new answer (masked
        /// when the prompt is secret).
        prompt: Option<String>,
        answer: Option<String>,
        /// Who chose (user@host, or the gcloud / GitHub identity).
        by: String,
    },
    /// A notification could not be delivered (after its retries). The webhook is named by
    /// the environment variable that holds its URL, never by the URL.
    NotifyFailed {
        webhook_env: String,
        /// `started`, `stage`, `failed`, `break_glass`, `undo` or `finished`.
        notification: String,
        error: String,
    },
    RunFinished {
        outcome: Outcome,
        message: Option<String>,
        #[serde(serialize_with = "crate::durations::serialize")]
        duration: Duration,
        done: usize,
        skipped: usize,
        failed: usize,
    },
}

fn serialize_lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&decode(bytes))
}

/// Output as text for a person: valid UTF-8 (the usual case) is checked, not copied; any
/// other is decoded lossily. `str::from_utf8` checks many times faster than the lossy
/// decoder walks.
pub fn decode(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The lines of a chunk of output, without their line endings (`\n` or `\r\n`).
pub fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let mut start = 0;
    memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len())).map(move |end| {
        let line = &body[start..end];
        start = end + 1;
        line.strip_suffix(b"\r").unwrap_or(line)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Done,
    Skipped,
    Failed,
    /// Failed, but `on_failure: continue` let the run go on.
    FailedContinued,
    TimedOut,
    Interrupted,
    /// The operator stopped the run at this step (`q` at a manual step): not a failure,
    /// the run is resumable from it.
    Aborted,
}

/// How a manual step passed without a person acknowledging it (`--yes`, `apply` without a
/// terminal) is journaled: the answer starts with this. Such a step never counts as an
/// undo done.
pub const UNATTENDED: &str = "not confirmed by a person";

/// Where the undo of one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoState {
    Started,
    Done,
    Failed,
    Skipped,
    /// Already undone by an earlier undo of the run.
    Already,
    /// No `undo:`: cannot be undone automatically.
    Manual,
    /// Its undo has a manual step nobody has acknowledged yet (`--yes`): not undone until a
    /// person does, with `runbook undo` at a terminal.
    Waiting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Failed,
    Aborted,
    Interrupted,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        use crate::exit;
        match self {
            Outcome::Done => exit::OK,
            Outcome::Failed => exit::STEP_FAILED,
            Outcome::Aborted => exit::ABORTED,
            Outcome::Interrupted => exit::INTERRUPTED,
        }
    }
}

/// Receives every event of a run, in order.
pub trait Subscriber: Send {
    fn event(&mut self, event: &Event);

    /// A mutating step is about to start with `event` (its `StepStarted`). An error keeps
    /// the step from starting: the journal refuses when it cannot make the record durable.
    fn before_mutation(&mut self, event: &Event) -> Result<(), String> {
        self.event(event);
        Ok(())
    }

    /// The end of a burst of output lines: anything buffered goes out now, so output
    /// stays live while a chatty child costs one write per burst, not one per line.
    fn flush(&mut self) {}

    /// Why this subscriber can no longer keep its record (the journal's disk is full):
    /// the runner starts no further step without its durable record.
    fn broken(&self) -> Option<String> {
        None
    }

    /// Events this subscriber has to report (a notification that failed in the background):
    /// sent to every subscriber after the event being dispatched.
    fn pending(&mut self) -> Vec<Event> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::lines;

    #[test]
    fn a_chunk_splits_into_its_lines_without_endings() {
        let chunk = b"one\r\ntwo\n\nfour\n";
        let got: Vec<&[u8]> = lines(chunk).collect();
        assert_eq!(got, vec![&b"one"[..], b"two", b"", b"four"]);
        let piece: Vec<&[u8]> = lines(b"no newline yet").collect();
        assert_eq!(piece, vec![&b"no newline yet"[..]]);
    }
}
