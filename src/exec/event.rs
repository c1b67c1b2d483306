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
    StepStarted {
        id: String,
        name: Option<String>,
        kind: &'static str,
        /// The command as it runs, secrets masked.
        command: Option<String>,
        attempt: u32,
    },
    Output {
        id: String,
        stream: Stream,
        line: String,
    },
    /// Text the operator must see (manual instructions, a retry notice).
    Notice {
        id: String,
        text: String,
    },
    StepFinished {
        id: String,
        status: StepStatus,
        #[serde(serialize_with = "crate::output::serialize_duration")]
        duration: Duration,
        exit_code: Option<i32>,
        message: Option<String>,
        /// Captured output when it is not secret.
        output: Option<serde_json::Value>,
        /// What the operator answered (prompt value, typed confirmation), when not secret.
        answer: Option<String>,
    },
    RunFinished {
        outcome: Outcome,
        message: Option<String>,
        #[serde(serialize_with = "crate::output::serialize_duration")]
        duration: Duration,
        done: usize,
        skipped: usize,
        failed: usize,
    },
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
        use crate::error::exit;
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
}
