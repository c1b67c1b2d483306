//! `run:` and `shell:` steps: a child process, its output streamed and masked.

use crate::plan::StepOutput;
use std::time::Duration;

use crate::render::Action;
use runbook_lang::step::Step;

use super::{captured_output, check_secret_output, human_bytes, register_secret};
use crate::exec::context::{Attempt, StepContext};
use crate::exec::{ansi, process};
use runbook_lang::step::Capture;
use runbook_state::event::{self, Event, StepStatus, Stream};

/// `action`: the step's own, or a watch's sample; `timeout`: how long it may take.
pub(super) async fn process(ctx: &mut StepContext<'_>, step: &Step, action: &Action, timeout: Duration) -> Attempt {
    let (argv, env, stdin, cwd, capture) = match action {
        Action::Run { argv, env, stdin, cwd, capture } => (argv.clone(), env, stdin, cwd, *capture),
        Action::Shell { script, args, env, stdin, cwd, capture } => {
            let mut argv = vec!["sh".to_owned(), "-c".to_owned(), script.clone(), "runbook".to_owned()];
            argv.extend(args.iter().cloned());
            (argv, env, stdin, cwd, *capture)
        }
        _ => return Attempt::failed("not a process step"),
    };
    let cwd = cwd.as_ref().map_or_else(|| ctx.options.base_dir.clone(), |c| ctx.options.base_dir.join(c));
    let spec = process::Spec {
        argv: &argv,
        env: ctx
            .options
            .extra_env
            .iter()
            .cloned()
            .chain(env.iter().map(|(k, v)| (k.clone(), v.value.clone())))
            .collect(),
        remove_env: ctx.options.remove_env.iter().chain(&ctx.plan.hidden_env).cloned().collect(),
        stdin: stdin.as_ref().map(|s| s.value.clone()),
        cwd,
        timeout,
        capture_limit: capture.map(|_| ctx.options.capture_limit),
        // A secret step's stdout is its secret: never shown. Its stderr is shown masked,
        // once the step has ended and its output is registered as a secret.
        // A watch's samples are shown as one line each, not as their output.
        // (Its stderr is still read: the last lines name why a sample failed.)
        show_stdout: !step.secret && !ctx.probing && !ctx.sampling,
        show_stderr: !ctx.probing,
        redactor: ctx.plan.redactor.clone(),
    };
    let id = step.id.clone();
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut held = Held::default();
    let secret = step.secret;
    let strip_ansi = ctx.options.strip_ansi;
    let sampling = ctx.sampling;
    let cancel = ctx.cancel.clone();
    let events = &mut *ctx.events;
    let ended = process::run(spec, &cancel, |stream, chunk| {
        let Some(chunk) = chunk else {
            events.flush();
            return;
        };
        if secret {
            held.push(&chunk);
            return;
        }
        // Our output is not a terminal: a child's escape sequences would be noise there.
        let chunk = if strip_ansi && chunk.contains(&0x1b) {
            ansi::strip(&event::decode(&chunk)).into_owned().into_bytes()
        } else {
            chunk
        };
        if stream == Stream::Stderr {
            keep_tail(&mut tail, &chunk);
        }
        if !sampling {
            events.send(&Event::Output { id: id.clone(), stream, text: chunk });
        }
    })
    .await;
    if secret {
        // Whatever the step printed on stdout is a secret, even when it failed: its
        // stderr may quote it.
        if let Ok(process::Ended::Exited { captured, .. }) = &ended {
            register_captured(&ctx.plan.redactor, capture, captured);
        }
        let shown = held.shown(&ctx.plan.redactor);
        if !shown.is_empty() {
            keep_tail(&mut tail, shown.as_bytes());
            ctx.events.emit(Event::Output { id: step.id.clone(), stream: Stream::Stderr, text: shown.into_bytes() });
            ctx.events.flush();
        }
    }
    let program = argv.first().cloned().unwrap_or_default();
    match ended {
        Err(message) => Attempt::failed(message),
        Ok(process::Ended::TimedOut) => Attempt::with_status(
            StepStatus::TimedOut,
            format!("timed out after {}; its process group was ended", humantime::format_duration(timeout)),
        ),
        Ok(process::Ended::Interrupted) => {
            Attempt::with_status(StepStatus::Interrupted, "interrupted; its process group was ended")
        }
        Ok(process::Ended::CaptureTooLarge { limit }) => Attempt::failed(format!(
            "the output is larger than the capture limit of {} (RUNBOOK_CAPTURE_LIMIT)",
            human_bytes(limit)
        )),
        Ok(process::Ended::Exited { code, signal, captured }) => {
            if code != Some(0) {
                let how = match (code, signal) {
                    (Some(code), _) => format!("exited with status {code}"),
                    (None, Some(signal)) => format!("was killed by signal {signal}"),
                    (None, None) => "ended abnormally".to_owned(),
                };
                let tail: Vec<String> = tail.into_iter().collect();
                let hidden = if step.secret { " (its stdout is not shown: secret step)" } else { "" };
                let detail = if tail.is_empty() { String::new() } else { format!(": {}", tail.join(" / ")) };
                return Attempt { exit_code: code, ..Attempt::failed(format!("`{program}` {how}{hidden}{detail}")) };
            }
            let output = match capture.map(|c| captured_output(c, &captured)) {
                None => StepOutput { status: code.map(i64::from), ..StepOutput::default() },
                Some(Ok(mut output)) => {
                    output.status = code.map(i64::from);
                    output
                }
                Some(Err(message)) => return Attempt { exit_code: code, ..Attempt::failed(message) },
            };
            if step.secret {
                if let Err(message) = check_secret_output(&output) {
                    return Attempt { exit_code: code, ..Attempt::failed(message) };
                }
                register_secret(&ctx.plan.redactor, &output);
            }
            Attempt { exit_code: code, said: tail.back().cloned(), ..Attempt::done(Some(output)) }
        }
    }
}

/// A secret step's stderr, held until the step has ended (bounded: a secret step that
/// floods stderr shows its first `HELD_LIMIT` bytes).
#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    dropped: usize,
}

const HELD_LIMIT: usize = 1024 * 1024;

impl Held {
    fn push(&mut self, chunk: &[u8]) {
        let room = HELD_LIMIT.saturating_sub(self.bytes.len()).min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..room]);
        self.dropped += chunk.len() - room;
    }

    /// The held text masked with every secret known now (the step's own output included).
    fn shown(&self, redactor: &crate::redact::Redactor) -> String {
        let mut text = redactor.redact(&String::from_utf8_lossy(&self.bytes));
        if self.dropped > 0 {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("[{} more bytes of stderr not shown]\n", self.dropped));
        }
        text
    }
}

/// Keeps the last three lines of stderr for the failure message.
fn keep_tail(tail: &mut std::collections::VecDeque<String>, chunk: &[u8]) {
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let last: Vec<&[u8]> = body.rsplitn(4, |b| *b == b'\n').take(3).collect();
    for line in last.into_iter().rev() {
        if tail.len() == 3 {
            tail.pop_front();
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        tail.push_back(String::from_utf8_lossy(line).into_owned());
    }
}

/// What a secret step printed on stdout, registered whether or not the step succeeded.
fn register_captured(redactor: &crate::redact::Redactor, capture: Option<Capture>, captured: &[u8]) {
    let text = String::from_utf8_lossy(captured);
    redactor.add(text.trim_end_matches(['\n', '\r']));
    if let Some(Ok(output)) = capture.map(|c| captured_output(c, captured)) {
        register_secret(redactor, &output);
    }
}
