//! Notifications: a subscriber that tells an environment's `notify:` webhooks (the incident
//! channel) how the run goes, in short messages readable on a phone — started, each stage
//! finished, a failure with the operator's choice, break-glass, undo, finished. Delivery
//! happens in the background ([`delivery`]); a message that cannot be delivered becomes a
//! `notify_failed` event (journaled, shown once) and never fails the run.
//!
//! Every text here comes from events, which the redactor has masked, and the webhook URLs
//! are registered with the same redactor: a URL never reaches the journal or an error.

mod delivery;

use std::time::Instant;

use runbook_lang::notify::{Notify, NotifyEvent, NotifyFormat};
use runbook_state::event::{Event, StepStatus, Subscriber};

use crate::plan::Plan;

/// What a message says about the run, besides the event.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub runbook: String,
    pub procedure: String,
    pub environment: Option<String>,
    /// Who is running it (the identity every record prints).
    pub by: String,
    pub rehearsal: bool,
    /// `started`, `resumed` or `undo`.
    pub verb: &'static str,
    pub break_glass: Option<String>,
}

/// A webhook with its URL, read from its environment variable.
struct Webhook {
    notify: Notify,
    url: String,
}

/// What [`Notifier::for_run`] decided, for the one line the session prints.
pub enum Setup {
    Notifier(Box<Notifier>),
    /// Configured, but silent for this run, and why (said once).
    Off(String),
    /// Nothing configured.
    None,
}

pub struct Notifier {
    info: RunInfo,
    webhooks: Vec<Webhook>,
    delivery: delivery::Delivery,
    /// The stage running now: (index, name, when it started).
    stage: Option<(usize, String, Instant)>,
    /// A failed step waiting for the operator's choice at the menu: (id, message).
    failure: Option<(String, String)>,
    /// What mutating steps changed, for the last message.
    mutating: std::collections::HashSet<String>,
    changes: Vec<String>,
    /// Failures to report as events (see [`Subscriber::pending`]).
    reported: Vec<Event>,
}

impl Notifier {
    /// The notifier of a run in `plan`'s environment, when it has webhooks and this run may
    /// use them: not with `--no-notify`, not in a rehearsal unless its `rehearsal:` block
    /// says `notify: true`, and only webhooks whose variable is set.
    /// `mutating`: the steps whose output the last message lists as changes.
    pub fn for_run(plan: &Plan, info: RunInfo, mutating: std::collections::HashSet<String>, no_notify: bool) -> Setup {
        let Some(env) = plan.environment.as_ref().and_then(|e| plan.runbook.environments.get(e)) else {
            return Setup::None;
        };
        if env.notify.is_empty() {
            return Setup::None;
        }
        if no_notify {
            return Setup::Off("notifications are off for this run (--no-notify)".to_owned());
        }
        if info.rehearsal && !env.rehearsal_notify {
            return Setup::Off(
                "notifications are off in a rehearsal (`rehearsal: {notify: true}` in the environment sends them, marked [REHEARSAL])"
                    .to_owned(),
            );
        }
        let mut webhooks = Vec::new();
        let mut unset = Vec::new();
        for notify in &env.notify {
            match std::env::var(&notify.webhook_env) {
                Ok(url) if !url.trim().is_empty() => {
                    // The URL is a credential: masked wherever it could appear.
                    plan.redactor.add(url.trim());
                    webhooks.push(Webhook { notify: notify.clone(), url: url.trim().to_owned() });
                }
                _ => unset.push(format!("${}", notify.webhook_env)),
            }
        }
        if webhooks.is_empty() {
            return Setup::Off(format!("notifications are off: {} not set", unset.join(", ")));
        }
        match delivery::Delivery::start() {
            Ok(delivery) => Setup::Notifier(Box::new(Notifier {
                info,
                webhooks,
                delivery,
                stage: None,
                failure: None,
                mutating,
                changes: Vec::new(),
                reported: Vec::new(),
            })),
            Err(err) => Setup::Off(format!("notifications are off: {err}")),
        }
    }

    fn env(&self) -> String {
        self.info.environment.as_deref().map(|e| format!(" on {e}")).unwrap_or_default()
    }

    fn what(&self) -> String {
        format!("`{} {}`{}", self.info.runbook, self.info.procedure, self.env())
    }

    /// Sends `text` (and, for `format: json`, the event it is about) to every webhook that
    /// asked for `kind`.
    fn send(&mut self, kind: NotifyEvent, text: String, event: serde_json::Value, extra: serde_json::Value) {
        let text = if self.info.rehearsal { format!("[REHEARSAL] {text}") } else { text };
        for webhook in &self.webhooks {
            if !webhook.notify.events.contains(&kind) {
                continue;
            }
            let body = match webhook.notify.format {
                NotifyFormat::Slack => serde_json::json!({"text": slack_escape(&text)}),
                NotifyFormat::Json => {
                    let mut body = serde_json::json!({
                        "notification": kind.name(),
                        "run_id": self.info.run_id,
                        "runbook": self.info.runbook,
                        "procedure": self.info.procedure,
                        "environment": self.info.environment,
                        "rehearsal": self.info.rehearsal,
                        "by": self.info.by,
                        "text": text,
                        "event": event,
                    });
                    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
                        body.extend(extra.clone());
                    }
                    body
                }
            };
            self.delivery.send(delivery::Message {
                url: webhook.url.clone(),
                webhook_env: webhook.notify.webhook_env.clone(),
                notification: kind.name(),
                body,
                timeout: webhook.notify.timeout,
            });
        }
    }

    /// A failed step whose choice never came (no menu without a terminal, `on_failure`).
    fn flush_failure(&mut self, choice: Option<&Event>) {
        let Some((id, message)) = self.failure.take() else { return };
        let chose = match choice {
            Some(Event::FailureChoice { id, choice, reason, prompt, answer, by }) => format!(
                " — {} (by {by})",
                crate::exec::recovery::menu::describe_choice(
                    id,
                    choice,
                    reason.as_deref(),
                    prompt.as_deref(),
                    answer.as_deref()
                )
                .trim_start_matches("↳ ")
            ),
            _ => String::new(),
        };
        let text = format!("✗ {}: step {id} failed: {message}{chose}", self.what());
        let event = serde_json::json!({"event": "step_failed", "id": id, "message": message});
        let choice = choice.and_then(|c| serde_json::to_value(c).ok()).unwrap_or(serde_json::Value::Null);
        self.send(NotifyEvent::Failed, text, event, serde_json::json!({"choice": choice}));
    }

    fn finish_stage(&mut self) {
        let Some((index, name, started)) = self.stage.take() else { return };
        let took = crate::exec::terminal::format_duration(started.elapsed());
        let text = format!("✓ {}: stage {index} “{name}” done in {took}", self.what());
        let event = serde_json::json!({"event": "stage_finished", "index": index, "name": name, "duration": took});
        self.send(NotifyEvent::Stage, text, event, serde_json::Value::Null);
    }

    fn report(&mut self, failures: Vec<(String, &'static str, String)>) {
        self.reported.extend(failures.into_iter().map(|(webhook_env, notification, error)| Event::NotifyFailed {
            webhook_env,
            notification: notification.to_owned(),
            error,
        }));
    }
}

impl Subscriber for Notifier {
    fn event(&mut self, event: &Event) {
        if !matches!(event, Event::FailureChoice { .. } | Event::Output { .. } | Event::Notice { .. }) {
            self.flush_failure(None);
        }
        let value = || serde_json::to_value(event).unwrap_or_default();
        match event {
            Event::RunStarted { .. } => {
                let kind = if self.info.rehearsal { "rehearsal" } else { "REAL run" };
                let text = format!(
                    "▶ {} {} {} ({kind}). Follow: runbook show {}",
                    self.info.by,
                    self.info.verb,
                    self.what(),
                    self.info.run_id
                );
                self.send(NotifyEvent::Started, text, value(), serde_json::Value::Null);
                if let Some(reason) = self.info.break_glass.clone() {
                    let text = format!("⚠ BREAK GLASS by {}: {}: {reason}", self.info.by, self.what());
                    self.send(NotifyEvent::BreakGlass, text, value(), serde_json::json!({"reason": reason}));
                }
            }
            Event::StageStarted { index, name, .. } => {
                self.finish_stage();
                self.stage = Some((*index, name.clone(), Instant::now()));
            }
            Event::StageSkipped { .. } | Event::StageDoneEarlier { .. } => self.finish_stage(),
            Event::StepFinished { id, status, message, changed, .. } => match status {
                StepStatus::Done => {
                    if self.mutating.contains(id)
                        && let Some(text) = changed
                    {
                        self.changes.push(format!("{id}: {text}"));
                    }
                }
                StepStatus::Failed | StepStatus::FailedContinued | StepStatus::TimedOut | StepStatus::Interrupted => {
                    self.failure = Some((id.clone(), message.clone().unwrap_or_else(|| "failed".to_owned())));
                }
                StepStatus::Skipped | StepStatus::Aborted => {}
            },
            Event::FailureChoice { .. } => self.flush_failure(Some(event)),
            // A watch's samples are the terminal's and the journal's; its end is a step's.
            Event::WatchSample { .. } | Event::Recovered { .. } => {}
            Event::Undo { id, state, text } => {
                use runbook_state::event::UndoState;
                if !matches!(state, UndoState::Started | UndoState::Already) {
                    let state = serde_json::to_value(state).unwrap_or_default();
                    let state = state.as_str().unwrap_or_default().to_owned();
                    let text = format!("↶ {}: undo of {id} {state}: {}", self.what(), text.replace('\n', " "));
                    self.send(NotifyEvent::Undo, text, value(), serde_json::Value::Null);
                }
            }
            Event::RunFinished { outcome, duration, message, .. } => {
                if *outcome == runbook_state::event::Outcome::Done {
                    self.finish_stage();
                }
                let outcome = serde_json::to_value(outcome).unwrap_or_default();
                let outcome = outcome.as_str().unwrap_or_default().to_uppercase();
                let took = crate::exec::terminal::format_duration(*duration);
                let mut text = format!("■ {} finished: {outcome} in {took}", self.what());
                if let Some(message) = message {
                    text.push_str(&format!(" ({message})"));
                }
                if !self.changes.is_empty() {
                    text.push_str(&format!(". Changes: {}", self.changes.join("; ")));
                }
                text.push_str(&format!(". runbook show {}", self.info.run_id));
                self.send(NotifyEvent::Finished, text, value(), serde_json::Value::Null);
                // The last message goes out before the run ends, within its budget.
                let failures = self.delivery.finish();
                self.report(failures);
                return;
            }
            Event::Output { .. } | Event::Notice { .. } | Event::StepStarted { .. } | Event::NotifyFailed { .. } => {}
        }
        let failures = self.delivery.failures();
        self.report(failures);
    }

    fn pending(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.reported)
    }
}

/// Slack reads `&`, `<` and `>` as markup (links, mentions): sent as entities.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
