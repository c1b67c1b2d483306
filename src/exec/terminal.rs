//! The operator's view of a run: steps as they start and finish, child output indented
//! under its step, a spinner with elapsed time when stderr is a terminal, plain
//! timestamped lines otherwise, and a summary at the end.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::event::{Event, Outcome, StepStatus, Stream, Subscriber};

pub struct Terminal {
    spinner: Option<ProgressBar>,
    fancy: bool,
    quiet: bool,
    finished: Vec<(String, StepStatus, Duration)>,
    /// What the end-of-run summary needs beyond the events.
    pub context: SummaryContext,
    /// Step kinds by id, from `StepStarted`.
    kinds: std::collections::HashMap<String, &'static str>,
    /// Prompt answers in the order given: (step, answer as journaled).
    decisions: Vec<(String, String)>,
    /// What finished mutating steps produced or said last: (step, text).
    changes: Vec<(String, String)>,
    /// The last output line of the running mutating step.
    last_line: Option<(String, String)>,
    /// Child output not written yet (see `flush_output`).
    stdout: String,
    stderr: String,
}

impl Terminal {
    pub fn new(fancy: bool, quiet: bool) -> Self {
        Terminal {
            spinner: None,
            fancy,
            quiet,
            finished: Vec::new(),
            context: SummaryContext::default(),
            kinds: std::collections::HashMap::new(),
            decisions: Vec::new(),
            changes: Vec::new(),
            last_line: None,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// The decisions and changes of the run, for the end-of-run summary.
    fn report(&self, earlier: usize) -> Vec<String> {
        let mut lines = Vec::new();
        if earlier > 0 {
            lines.push(format!("  ({earlier} step(s) finished in an earlier attempt of this run)"));
        }
        let before = &self.context;
        for (title, earlier, now) in [
            ("Decisions:", &before.earlier_decisions, &self.decisions),
            ("Changes:", &before.earlier_changes, &self.changes),
        ] {
            if earlier.is_empty() && now.is_empty() {
                continue;
            }
            lines.push(title.to_owned());
            lines.extend(earlier.iter().map(|(id, text)| format!("  {id}: {text} (earlier attempt)")));
            lines.extend(now.iter().map(|(id, text)| format!("  {id}: {text}")));
        }
        lines
    }

    fn say(&self, line: &str) {
        let text =
            if self.fancy { line.to_owned() } else { format!("[{}] {line}", chrono::Local::now().format("%H:%M:%S")) };
        match &self.spinner {
            Some(spinner) => spinner.println(text),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    fn output(&mut self, stream: Stream, line: &str) {
        let buffer = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buffer.push_str("    │ ");
        buffer.push_str(line);
        buffer.push('\n');
        if buffer.len() >= 64 * 1024 {
            self.flush_output();
        }
    }

    /// Child output is written a burst at a time (and around the spinner, if any).
    fn flush_output(&mut self) {
        if self.stdout.is_empty() && self.stderr.is_empty() {
            return;
        }
        let (stdout, stderr) = (std::mem::take(&mut self.stdout), std::mem::take(&mut self.stderr));
        let write = || {
            // A closed pipe on our own stdout must not stop the run.
            let _ = std::io::stdout().lock().write_all(stdout.as_bytes());
            let _ = std::io::stderr().lock().write_all(stderr.as_bytes());
        };
        match &self.spinner {
            Some(spinner) => spinner.suspend(write),
            None => write(),
        }
    }

    fn stop_spinner(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }
}

impl Subscriber for Terminal {
    fn flush(&mut self) {
        self.flush_output();
    }

    fn event(&mut self, event: &Event) {
        if !matches!(event, Event::Output { .. }) {
            self.flush_output();
        }
        match event {
            Event::RunStarted { runbook, procedure, environment, file } => {
                if !self.quiet {
                    let env = environment.as_deref().map(|e| format!(" on {e}")).unwrap_or_default();
                    self.say(&format!("Running `{runbook} {procedure}`{env} from {file}"));
                }
            }
            Event::StageStarted { name, procedure, .. } => {
                if !self.quiet {
                    self.say(&format!("== Stage: {name}  [{procedure}]"));
                }
            }
            Event::StageSkipped { name, reason, .. } => self.say(&format!("== Stage skipped: {name} ({reason})")),
            Event::StepStarted { id, name, kind, command, attempt } => {
                self.kinds.insert(id.clone(), kind);
                self.last_line = None;
                let title = name.as_deref().map(|n| format!(" — {n}")).unwrap_or_default();
                let retry = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                if !self.quiet {
                    self.say(&format!("▶ {id}{title} ({kind}){retry}"));
                    if let Some(command) = command {
                        let prompt = if *kind == "http" { "→" } else { "$" };
                        self.say(&format!("  {prompt} {command}"));
                    }
                }
                if self.fancy && matches!(*kind, "run" | "shell" | "http") {
                    let spinner = ProgressBar::new_spinner();
                    spinner.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    spinner.set_message(id.clone());
                    spinner.enable_steady_tick(Duration::from_millis(120));
                    self.spinner = Some(spinner);
                }
            }
            Event::Output { id, stream, line } => {
                if self.context.mutating.contains(id) {
                    let plain = strip_escapes(line);
                    if !plain.trim().is_empty() {
                        self.last_line = Some((id.clone(), plain.trim().chars().take(120).collect()));
                    }
                }
                self.output(*stream, line);
            }
            Event::Notice { text, .. } => {
                self.stop_spinner();
                for line in text.lines() {
                    self.say(&format!("  {line}"));
                }
            }
            Event::StepFinished { id, status, duration, message, output, answer, .. } => {
                self.stop_spinner();
                if *status == StepStatus::Done {
                    if let (Some("prompt"), Some(answer)) = (self.kinds.get(id).copied(), answer) {
                        self.decisions.push((id.clone(), answer.clone()));
                    }
                    if self.context.mutating.contains(id) {
                        let said = self.last_line.take().filter(|(step, _)| step == id).map(|(_, line)| line);
                        if let Some(text) = output.as_ref().and_then(what_changed).or(said) {
                            self.changes.push((id.clone(), text));
                        }
                    }
                }
                let took = format_duration(*duration);
                let line = match status {
                    StepStatus::Done => format!("✓ {id} ({took})"),
                    StepStatus::Skipped => {
                        format!("- {id} skipped{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())
                    }
                    StepStatus::Failed
                    | StepStatus::FailedContinued
                    | StepStatus::TimedOut
                    | StepStatus::Interrupted => {
                        let continued = if *status == StepStatus::FailedContinued {
                            " (continuing: on_failure: continue)"
                        } else {
                            ""
                        };
                        format!("✗ {id} failed after {took}: {}{continued}", message.as_deref().unwrap_or("failed"))
                    }
                };
                if !self.quiet || !matches!(status, StepStatus::Done | StepStatus::Skipped) {
                    self.say(&line);
                }
                self.finished.push((id.clone(), *status, *duration));
            }
            Event::RunFinished { outcome, message, duration, done, skipped, failed } => {
                self.stop_spinner();
                let verdict = match outcome {
                    Outcome::Done => "done",
                    Outcome::Failed => "FAILED",
                    Outcome::Aborted => "aborted by the operator",
                    Outcome::Interrupted => "interrupted",
                };
                self.say(&format!(
                    "Summary: {verdict} in {} — {done} step(s) done, {skipped} skipped, {failed} failed",
                    format_duration(*duration)
                ));
                if !self.quiet {
                    for (id, status, took) in &self.finished {
                        let mark = match status {
                            StepStatus::Done => "✓",
                            StepStatus::Skipped => "-",
                            _ => "✗",
                        };
                        self.say(&format!("  {mark} {id:<28} {}", format_duration(*took)));
                    }
                }
                if !self.quiet {
                    for line in self.report(self.context.earlier) {
                        self.say(&line);
                    }
                }
                if let Some(message) = message {
                    self.say(message);
                }
            }
        }
    }
}

/// What the summary needs that the events do not carry.
#[derive(Debug, Default, Clone)]
pub struct SummaryContext {
    /// Ids of steps that change something (`effect: mutate` run/shell/http steps).
    pub mutating: std::collections::HashSet<String>,
    /// Steps finished in an earlier attempt (`resume`).
    pub earlier: usize,
    /// Decisions and changes of earlier attempts, listed before this attempt's.
    pub earlier_decisions: Vec<(String, String)>,
    pub earlier_changes: Vec<(String, String)>,
}

/// `line` without terminal escape sequences (gcloud prints bold names) or control characters.
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates up to a final byte in @..~.
                for next in chars.by_ref() {
                    if ('@'..='~').contains(&next) {
                        break;
                    }
                }
            }
            continue;
        }
        if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// The part of a mutating step's captured output worth repeating: an operation's name,
/// type, target and status, or the first line of text.
pub fn what_changed(output: &serde_json::Value) -> Option<String> {
    if let Some(json) = output.get("json").filter(|j| j.is_object()) {
        let parts: Vec<String> = ["operationType", "targetId", "name", "status"]
            .iter()
            .filter_map(|key| json.get(*key).and_then(|v| v.as_str()).map(|v| format!("{key} {v}")))
            .collect();
        if !parts.is_empty() {
            return Some(parts.join(", "));
        }
    }
    let text = output.get("output").and_then(|o| o.as_str())?.lines().find(|l| !l.trim().is_empty())?;
    let short: String = strip_escapes(text.trim()).chars().take(120).collect();
    Some(short)
}

fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(60) {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
    }
}

/// `--output json`: one JSON object per event on stdout.
pub struct JsonLines;

impl Subscriber for JsonLines {
    fn event(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }
}
