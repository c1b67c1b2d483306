//! An environment's `notify:` list: webhooks that hear of a run's start, stages, failures,
//! break-glass, undo and end. The URL is a credential: the runbook names only the
//! environment variable that holds it.

use std::time::Duration;

use serde::Serialize;

/// One `notify:` entry, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Notify {
    /// The environment variable that holds the webhook URL (never the URL itself).
    pub webhook_env: String,
    pub format: NotifyFormat,
    /// The events sent, in the order the runbook lists them (all of them when not given).
    pub events: Vec<NotifyEvent>,
    /// How long one message may take, every attempt included.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
}

fn serialize_duration<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*duration).to_string())
}

/// The default budget of one message: a hanging webhook delays the run by at most this.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `timeout:` allowed: notifications must never hold a rollback up for long.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormat {
    /// A Slack incoming-webhook message: `{"text": "..."}`.
    Slack,
    /// The `--output json` event, with the run it belongs to (`schema/notification.schema.json`).
    Json,
}

impl NotifyFormat {
    pub const NAMES: &[&str] = &["slack", "json"];

    pub fn parse(name: &str) -> Option<NotifyFormat> {
        match name {
            "slack" => Some(NotifyFormat::Slack),
            "json" => Some(NotifyFormat::Json),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    Started,
    Stage,
    Failed,
    BreakGlass,
    Undo,
    Finished,
}

impl NotifyEvent {
    pub const ALL: &[NotifyEvent] = &[
        NotifyEvent::Started,
        NotifyEvent::Stage,
        NotifyEvent::Failed,
        NotifyEvent::BreakGlass,
        NotifyEvent::Undo,
        NotifyEvent::Finished,
    ];
    pub const NAMES: &[&str] = &["started", "stage", "failed", "break_glass", "undo", "finished"];

    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::Started => "started",
            NotifyEvent::Stage => "stage",
            NotifyEvent::Failed => "failed",
            NotifyEvent::BreakGlass => "break_glass",
            NotifyEvent::Undo => "undo",
            NotifyEvent::Finished => "finished",
        }
    }

    pub fn parse(name: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.iter().copied().find(|e| e.name() == name)
    }
}
