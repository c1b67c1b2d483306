//! An environment's `notify:` list and the `notify:` switch of its `rehearsal:` block.

use super::keys;
use super::reader::Reader;
use crate::diagnostic::{Code, did_you_mean};
use crate::notify::{DEFAULT_TIMEOUT, MAX_TIMEOUT, Notify, NotifyEvent, NotifyFormat};
use crate::yaml::Node;

/// `webhook_env`: the name of an environment variable, never a URL.
fn env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

pub fn notify_list(r: &mut Reader, node: &Node, env: &str) -> Vec<Notify> {
    let what = format!("`notify` of environment `{env}`");
    let Some(items) = r.list(node, &what) else { return Vec::new() };
    let mut out = Vec::new();
    for item in items {
        let Some(fields) = r.fields(item, &format!("an entry of {what}"), keys::NOTIFY) else { continue };
        let webhook_env = match r.required(&fields, "webhook_env", "a `notify` entry") {
            Some(n) => match r.string(n, "`webhook_env`") {
                Some(name) if env_name(&name) => Some(name),
                Some(name) => {
                    // Never echo what may be the URL itself.
                    let shown = if name.contains("://") { "a URL".to_owned() } else { format!("`{name}`") };
                    r.error(
                        Code::InvalidValue,
                        n.span,
                        format!("`webhook_env` must name an environment variable (such as INCIDENT_WEBHOOK_URL), not {shown}"),
                    )
                    .help = Some("the URL is a credential: put it in that variable, never in the runbook".into());
                    None
                }
                None => None,
            },
            None => None,
        };
        let format = match fields.get("format") {
            None => Some(NotifyFormat::Slack),
            Some(n) => r.string(n, "`format`").and_then(|name| {
                let parsed = NotifyFormat::parse(&name);
                if parsed.is_none() {
                    let help = did_you_mean(&name, NotifyFormat::NAMES.iter().copied())
                        .unwrap_or_else(|| format!("known formats: {}", NotifyFormat::NAMES.join(", ")));
                    r.error(Code::InvalidValue, n.span, format!("unknown notification format `{name}`")).help =
                        Some(help);
                }
                parsed
            }),
        };
        let events = match fields.get("events") {
            None => Some(NotifyEvent::ALL.to_vec()),
            Some(n) => r.string_list(n, "`events`").map(|names| {
                let mut events = Vec::new();
                for (name, span) in names {
                    match NotifyEvent::parse(&name) {
                        Some(event) if !events.contains(&event) => events.push(event),
                        Some(_) => {
                            r.error(Code::Duplicate, span, format!("event `{name}` is listed twice"));
                        }
                        None => {
                            let help = did_you_mean(&name, NotifyEvent::NAMES.iter().copied())
                                .unwrap_or_else(|| format!("known events: {}", NotifyEvent::NAMES.join(", ")));
                            r.error(Code::InvalidValue, span, format!("unknown notification event `{name}`")).help =
                                Some(help);
                        }
                    }
                }
                events
            }),
        };
        let timeout = match fields.get("timeout") {
            None => Some(DEFAULT_TIMEOUT),
            Some(n) => r.duration(n, "`timeout`").and_then(|t| {
                if t > MAX_TIMEOUT {
                    r.error(
                        Code::InvalidValue,
                        n.span,
                        format!(
                            "a notification `timeout` is at most {}s: a webhook must not hold the run up",
                            MAX_TIMEOUT.as_secs()
                        ),
                    );
                    None
                } else {
                    Some(t)
                }
            }),
        };
        if let (Some(webhook_env), Some(format), Some(events), Some(timeout)) = (webhook_env, format, events, timeout) {
            out.push(Notify { webhook_env, format, events, timeout });
        }
    }
    out
}
