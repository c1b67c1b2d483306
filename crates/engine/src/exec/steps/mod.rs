//! One file per step kind; this module dispatches a rendered step to its kind and holds
//! what the kinds share (an attempt's result, captured output, secret outputs).

mod assert;
mod http;
mod manual;
mod prompt;
mod run;
mod watch;

use crate::plan::StepOutput;
use crate::render::{Action, Rendered};
use runbook_lang::step::{Capture, Step};

use super::context::{Attempt, StepContext};

/// One attempt of a rendered step, by its kind.
pub(super) async fn execute(ctx: &mut StepContext<'_>, step: &Step, rendered: &Rendered) -> Attempt {
    match &rendered.action {
        Action::Run { .. } | Action::Shell { .. } => run::process(ctx, step, &rendered.action, rendered.timeout).await,
        Action::Http { .. } => http::http(ctx, step, &rendered.action, rendered.timeout).await,
        Action::Watch { .. } => watch::watch(ctx, step, rendered).await,
        Action::Manual { text } => manual::manual(ctx, step, text),
        Action::Prompt { question, choices, labels, default, secret, .. } => {
            prompt::prompt(ctx, step, question, choices.as_deref(), labels.as_deref(), default.as_deref(), *secret)
        }
        Action::Assert { expr, message } => assert::assert(ctx, step, expr, message.as_deref()),
        Action::Include { .. } => Attempt::done(None),
    }
}

fn captured_output(capture: Capture, bytes: &[u8]) -> Result<StepOutput, String> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
    let mut output = StepOutput { output: Some(trimmed.clone()), ..StepOutput::default() };
    match capture {
        Capture::Text => {}
        Capture::Json => {
            let json = serde_json::from_str(&trimmed).map_err(|e| format!("the output is not JSON ({e})"))?;
            output.json = Some(json);
        }
        Capture::Lines => output.lines = Some(trimmed.lines().map(str::to_owned).collect()),
    }
    Ok(output)
}

/// A secret output too short to be masked is refused rather than used unmasked.
fn check_secret_output(output: &StepOutput) -> Result<(), String> {
    match &output.output {
        Some(text) if text.trim().chars().count() < crate::redact::MIN_SECRET_LEN => Err(format!(
            "the secret output is shorter than {} characters, too short to be masked reliably (not shown)",
            crate::redact::MIN_SECRET_LEN
        )),
        _ => Ok(()),
    }
}

/// A secret step's output and every string inside it are masked from now on.
fn register_secret(redactor: &crate::redact::Redactor, output: &StepOutput) {
    if let Some(text) = &output.output {
        redactor.add(text);
    }
    fn walk(redactor: &crate::redact::Redactor, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => redactor.add(s),
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(redactor, v)),
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(redactor, v)),
            _ => {}
        }
    }
    if let Some(json) = &output.json {
        walk(redactor, json);
    }
}

fn human_bytes(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}
