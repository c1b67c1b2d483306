//! `watch:` steps: a read sampled every `every` until `pass` has held for `hold` samples in
//! a row, `fail` holds, or `within` runs out. Each sample runs exactly as its `run`, `shell`
//! or `http` step would (the same code, quietly); the watch reports it as one
//! `WatchSample` event, which the terminal shows as one line and the journal keeps bounded.

use std::time::{Duration, Instant};

use crate::plan::StepOutput;
use crate::render::{Action, Rendered};
use runbook_lang::step::{Step, StepKind, WatchStep};
use runbook_state::event::{Event, StepStatus};

use crate::exec::context::{Attempt, StepContext};

/// Most characters of a sample's value shown on its line.
const VALUE_CHARS: usize = 80;

/// What one sample says.
enum Verdict {
    Pass,
    NotYet,
    /// The sample erred or `pass` could not be evaluated: not passing, with why.
    Erred(String),
    /// `fail` held: the watch gives up.
    Fail(String),
}

pub(super) async fn watch(ctx: &mut StepContext<'_>, step: &Step, rendered: &Rendered) -> Attempt {
    let (Action::Watch { every, within, hold, .. }, StepKind::Watch(spec)) = (&rendered.action, &step.kind) else {
        return Attempt::failed("not a watch step");
    };
    let (every, within, hold) = (*every, *within, *hold);
    let deadline = Instant::now() + within;
    let mut streak = 0;
    let mut number = 0;
    loop {
        number += 1;
        // The first sample runs what was confirmed and journaled, rendered a moment ago; each
        // later one renders the body again, so `now` is its own start (a window that ends
        // "now", not at the first sample).
        let again;
        let current = if number == 1 {
            rendered
        } else {
            match crate::render::render(ctx.plan, step, ctx.outputs) {
                Ok(fresh) => {
                    again = fresh;
                    &again
                }
                Err(err) => return Attempt::failed(format!("sample {number} cannot be rendered: {}", err.0)),
            }
        };
        let Action::Watch { sample, .. } = &current.action else {
            return Attempt::failed("not a watch step");
        };
        // A sample may take no longer than the watch has left (at least a moment).
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = take(ctx, step, sample, rendered.timeout.min(left).max(Duration::from_millis(100))).await;
        if attempt.status == StepStatus::Interrupted {
            return Attempt::with_status(StepStatus::Interrupted, format!("interrupted at sample {number}"));
        }
        if attempt.last {
            // Refused (a rehearsal's guard): every sample would be.
            return attempt;
        }
        let verdict = judge(ctx, spec, &attempt);
        streak = if matches!(verdict, Verdict::Pass) { streak + 1 } else { 0 };
        let value = if step.secret { None } else { sample_value(ctx, spec, &attempt) };
        let error = match &verdict {
            Verdict::Erred(reason) | Verdict::Fail(reason) => Some(reason.clone()),
            Verdict::Pass | Verdict::NotYet => None,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        ctx.events.emit(Event::WatchSample {
            id: step.id.clone(),
            sample: number,
            passing: matches!(verdict, Verdict::Pass),
            streak,
            hold,
            value: value.clone(),
            error: error.clone(),
            left,
        });
        let last = || value.clone().or_else(|| error.clone()).unwrap_or_else(|| "no value".to_owned());
        if let Verdict::Fail(reason) = &verdict {
            return Attempt {
                exit_code: attempt.exit_code,
                ..Attempt::failed(format!("{reason} at sample {number} (value {})", last()))
            };
        }
        if streak >= hold {
            // Its output, for later steps, is the last sample's.
            return Attempt { exit_code: attempt.exit_code, ..Attempt::done(attempt.output) };
        }
        if left <= every {
            let hold = if hold == 1 { String::new() } else { format!(" for {hold} samples in a row") };
            return Attempt {
                exit_code: attempt.exit_code,
                ..Attempt::failed(format!(
                    "`within: {}` ran out after {number} sample(s) without {} holding{hold}; last sample: {}",
                    humantime::format_duration(within),
                    condition(spec),
                    last()
                ))
            };
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = ctx.cancel.cancelled() => {
                return Attempt::with_status(StepStatus::Interrupted, format!("interrupted after sample {number}"));
            }
        }
    }
}

/// The watch's `pass` as a failure names it: its text when short, else by name (a long
/// expression is in the dry-run and the runbook; the sample's value says what it saw).
fn condition(spec: &WatchStep) -> String {
    let text = spec.pass.text.trim();
    if text.chars().count() <= 100 { format!("`pass: {text}`") } else { "its `pass` condition".to_owned() }
}

/// One sample: the body run as its own kind runs, its output not streamed.
async fn take(ctx: &mut StepContext<'_>, step: &Step, sample: &Action, timeout: Duration) -> Attempt {
    let mut quiet = StepContext {
        plan: ctx.plan,
        outputs: ctx.outputs,
        options: ctx.options,
        cancel: ctx.cancel,
        operator: ctx.operator,
        events: &mut *ctx.events,
        probing: ctx.probing,
        ask_again: false,
        sampling: true,
    };
    match sample {
        Action::Http { .. } => super::http::http(&mut quiet, step, sample, timeout).await,
        _ => super::run::process(&mut quiet, step, sample, timeout).await,
    }
}

/// `fail` first (giving up wins), then `pass`, with the sample as `sample`.
fn judge(ctx: &StepContext<'_>, spec: &WatchStep, attempt: &Attempt) -> Verdict {
    let output = match (attempt.status, &attempt.output) {
        (StepStatus::Done, Some(output)) => output.clone(),
        (StepStatus::Done, None) => StepOutput::default(),
        _ => return Verdict::Erred(attempt.message.clone().unwrap_or_else(|| "the sample failed".to_owned())),
    };
    let sample = minijinja::Value::from(minijinja::value::Serde(output));
    let context = minijinja::context! { sample => sample, ..ctx.plan.context(ctx.outputs) };
    if let Some(fail) = &spec.fail {
        match fail.is_true(&context) {
            Ok(true) => return Verdict::Fail(format!("`fail: {}` held", fail.text)),
            Ok(false) => {}
            Err(err) => return Verdict::Erred(format!("`fail` could not be evaluated: {err}")),
        }
    }
    match spec.pass.is_true(&context) {
        Ok(true) => Verdict::Pass,
        Ok(false) => Verdict::NotYet,
        Err(err) => Verdict::Erred(format!("`pass` could not be evaluated: {err}")),
    }
}

/// What a sample's line shows: the watch's `value:` over the sample when it has one (and
/// the sample has an output), else the start of its JSON or text.
fn sample_value(ctx: &StepContext<'_>, spec: &WatchStep, attempt: &Attempt) -> Option<String> {
    let output = attempt.output.as_ref()?;
    let Some(expr) = &spec.value else { return shown_value(output) };
    if attempt.status != StepStatus::Done {
        return shown_value(output);
    }
    let sample = minijinja::Value::from(minijinja::value::Serde(output.clone()));
    let context = minijinja::context! { sample => sample, ..ctx.plan.context(ctx.outputs) };
    let text = match expr.eval(&context) {
        Ok(value) => value.to_string(),
        Err(err) => format!("(`value` could not be evaluated: {err})"),
    };
    let text = ctx.plan.redactor.redact(&text);
    Some(runbook_lang::diagnostic::clip_to(&text, 2 * VALUE_CHARS))
}

/// A sample's value on one short line: its JSON, its text, or its status.
fn shown_value(output: &StepOutput) -> Option<String> {
    let text = match (&output.json, &output.output, output.status) {
        (Some(json), _, _) => json.to_string(),
        (None, Some(text), _) => text.clone(),
        (None, None, Some(status)) => format!("status {status}"),
        (None, None, None) => return None,
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut short: String = line.chars().filter(|c| !c.is_control()).take(VALUE_CHARS).collect();
    if line.chars().count() > VALUE_CHARS {
        short.push('…');
    }
    Some(short)
}
