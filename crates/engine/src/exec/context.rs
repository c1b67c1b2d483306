//! What a step kind gets to do its work: the plan, the outputs so far, the run's options,
//! the operator and the event channel — not the runner. Each kind (`steps/`) is a function
//! of this context and its rendered step, returning an [`Attempt`]; the runner decides
//! what the attempt means for the run (retry, the failure menu, undo).

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use runbook_state::event::{Event, StepStatus, Subscriber};

use crate::exec::operator::{Confirmations, Operator};
use crate::plan::{Outputs, Plan, StepOutput};
use crate::redact::Redactor;

pub struct Options {
    pub yes: bool,
    pub interactive: bool,
    pub capture_limit: usize,
    /// Where relative `cwd` and program paths resolve: the directory runbook started in.
    pub base_dir: PathBuf,
    /// Environment every process step gets (a rehearsal's gcloud settings), after the
    /// inherited variables named in `remove_env` are dropped.
    pub extra_env: Vec<(String, String)>,
    pub remove_env: Vec<String>,
    /// In a rehearsal: where `http:` steps may go.
    pub http_guard: Option<runbook_state::rehearsal::HostGuard>,
    /// Remove terminal escape sequences from children's output (ours is not a terminal).
    pub strip_ansi: bool,
    /// `--confirm-env` / `--confirm-target`: names typed ahead.
    pub confirmations: Confirmations,
    /// Manual steps wait for a person even under `yes` (`apply` at a terminal).
    pub manual_by_person: bool,
    /// In a rehearsal: the lines that point a shell's gcloud at the fake. Every manual text
    /// (an undo's too) is shown with them and a REHEARSAL mark, so nobody pastes a real
    /// destructive command into a shell that talks to the real cloud.
    pub rehearsal_shell: Option<String>,
}

/// Every event of a run goes out here, masked once, to every subscriber (the terminal,
/// `--output json`, the journal).
pub struct Events {
    subscribers: Vec<Box<dyn Subscriber>>,
    redactor: Redactor,
}

impl Events {
    pub fn new(subscribers: Vec<Box<dyn Subscriber>>, redactor: Redactor) -> Self {
        Events { subscribers, redactor }
    }

    pub fn subscribe(&mut self, subscriber: Box<dyn Subscriber>) {
        self.subscribers.push(subscriber);
    }

    /// Every event passes the redactor here, whatever made it: no subscriber (terminal,
    /// JSON, journal) sees a registered secret.
    pub fn emit(&mut self, event: Event) {
        let event = crate::redact::redact_event(event, &self.redactor);
        self.send(&event);
    }

    /// An event already masked (child output, masked as it streams).
    pub fn send(&mut self, event: &Event) {
        for subscriber in &mut self.subscribers {
            subscriber.event(event);
        }
        // What a subscriber reports of its own (a notification that failed) goes to all.
        let reported: Vec<Event> = self.subscribers.iter_mut().flat_map(|s| s.pending()).collect();
        for event in reported {
            let event = crate::redact::redact_event(event, &self.redactor);
            for subscriber in &mut self.subscribers {
                subscriber.event(&event);
            }
        }
    }

    /// Before the run waits (on the operator, on a child): what subscribers buffered goes out.
    pub fn flush(&mut self) {
        for subscriber in &mut self.subscribers {
            subscriber.flush();
        }
    }

    /// Why a subscriber can no longer keep its record (the journal's disk is full).
    pub fn broken(&self) -> Option<String> {
        self.subscribers.iter().find_map(|s| s.broken())
    }

    /// A mutating step is about to start: every subscriber that keeps a record must have it.
    pub fn before_mutation(&mut self, event: &Event) -> Result<(), String> {
        let mut refused = Ok(());
        for subscriber in &mut self.subscribers {
            if let Err(reason) = subscriber.before_mutation(event)
                && refused.is_ok()
            {
                refused = Err(reason);
            }
        }
        refused
    }
}

/// What a step kind may see and use.
pub struct StepContext<'a> {
    pub plan: &'a Plan,
    pub outputs: &'a Outputs,
    pub options: &'a Options,
    pub cancel: &'a CancellationToken,
    pub operator: &'a Operator,
    pub events: &'a mut Events,
    /// `--dry-run --probe`: only read steps run, quietly.
    pub probing: bool,
    /// The failure menu's `edit`: a prompt is asked again, whatever `--answer` said.
    pub ask_again: bool,
    /// A watch's sample runs: its output is shown as the watch's line, not streamed.
    pub sampling: bool,
}

/// One attempt's result.
pub struct Attempt {
    pub status: StepStatus,
    pub output: Option<StepOutput>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub answer: Option<String>,
    /// Trying again cannot help (a request a rehearsal refused): no retry.
    pub last: bool,
    /// An answer given ahead (`--answer`) was refused.
    pub answer_refused: bool,
    /// Refused before it started (its undo could not be rendered): it changed nothing, so
    /// the undo engine has nothing of it to name.
    pub not_started: bool,
    /// What the step said last (a child's last line of stderr, or the command that ran):
    /// what a mutating step changed, when its output does not tell.
    pub said: Option<String>,
}

impl Attempt {
    pub fn done(output: Option<StepOutput>) -> Self {
        Attempt {
            status: StepStatus::Done,
            output,
            exit_code: None,
            message: None,
            answer: None,
            last: false,
            answer_refused: false,
            not_started: false,
            said: None,
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Attempt {
            status: StepStatus::Failed,
            output: None,
            exit_code: None,
            message: Some(message.into()),
            answer: None,
            last: false,
            answer_refused: false,
            not_started: false,
            said: None,
        }
    }

    pub fn with_status(status: StepStatus, message: impl Into<String>) -> Self {
        Attempt { status, ..Attempt::failed(message) }
    }
}
