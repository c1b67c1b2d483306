//! The operator's view of a run: steps as they start and finish, child output indented
//! under its step, a spinner with elapsed time when stderr is a terminal, plain
//! timestamped lines otherwise, and a summary at the end.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use runbook_state::event::{Event, Outcome, StepStatus, Stream, Subscriber};

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
    /// The run's time to recovery, once its first recovery step passed.
    recovered: Option<String>,
    /// Child output not written yet (see `flush_output`).
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Webhooks whose failure was shown already (once each).
    notify_failed: std::collections::HashSet<String>,
    /// Standard output of a read step that captures JSON, held until the step ends: shown
    /// when short, folded to one line when long (`-v` shows it all).
    held: Vec<u8>,
    /// `-v`: nothing is folded.
    pub verbose: bool,
}

/// A read step's JSON longer than this many lines is folded on the terminal.
const FOLD_LINES: usize = 12;

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
            recovered: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            notify_failed: std::collections::HashSet::new(),
            held: Vec::new(),
            verbose: false,
        }
    }

    /// The decisions and changes of the run, for the end-of-run summary.
    fn report(&self, earlier: usize) -> Vec<String> {
        let mut lines = Vec::new();
        if earlier > 0 {
            lines.push(format!("  ({earlier} step(s) done in an earlier attempt of this run)"));
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

    /// The summary's time to recovery, or what stands instead of a number.
    fn time_to_recovery(&self) -> String {
        let text = match (&self.recovered, &self.context.earlier_recovery) {
            (Some(now), _) => now.clone(),
            (None, Some(earlier)) => format!("{earlier} (earlier attempt)"),
            (None, None) if self.context.recovery_steps => "not recovered: no `recovery: true` step passed".to_owned(),
            (None, None) => "none: the procedure has no `recovery: true` step".to_owned(),
        };
        format!("Time to recovery: {text}")
    }

    /// One line of the view. It quotes the runbook (stage and step names, manual texts) and
    /// values: any character that would act on the terminal is shown escaped (issue 23).
    fn say(&self, line: &str) {
        let line = runbook_lang::diagnostic::escape_text(line);
        let mut text = if self.fancy { line } else { format!("[{}] {line}", chrono::Local::now().format("%H:%M:%S")) };
        match &self.spinner {
            Some(spinner) => spinner.println(text),
            None => {
                // One write per line, not one for the text and one for its line feed.
                text.push('\n');
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }
        }
    }

    /// Child output, indented under its step. Already masked; decoded here, where a person
    /// reads it (valid UTF-8, the usual case, is checked, not copied).
    fn output(&mut self, stream: Stream, text: &[u8]) {
        let decoded = runbook_state::event::decode(text);
        let buffer = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buffer.reserve(text.len() + text.len() / 16);
        for line in runbook_state::event::lines(decoded.as_bytes()) {
            buffer.extend_from_slice("    │ ".as_bytes());
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
        }
        if buffer.len() >= 64 * 1024 {
            self.flush_output();
        }
    }

    /// Whether the standard output of step `id` is held to be folded.
    fn folds(&self, id: &str) -> bool {
        !self.verbose && self.context.folded.contains(id)
    }

    /// The held output of a read step that ended: in full when short, else one line that
    /// says how much there is and where to see it (the journal keeps it whole).
    fn unfold(&mut self, id: &str) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let lines = runbook_state::event::lines(&held).count();
        if lines <= FOLD_LINES {
            self.output(Stream::Stdout, &held);
            self.flush_output();
            return;
        }
        if !self.quiet {
            let run = &self.context.run_id;
            self.say(&format!(
                "    │ ({lines} lines, {} bytes of JSON captured by {id}, not shown: `runbook show {run} --format json` has them; -v shows them)",
                held.len()
            ));
        }
    }

    /// Child output is written a burst at a time (and around the spinner, if any).
    fn flush_output(&mut self) {
        if self.stdout.is_empty() && self.stderr.is_empty() {
            return;
        }
        let (stdout, stderr) = (&self.stdout, &self.stderr);
        let write = || {
            // A closed pipe on our own stdout must not stop the run.
            let _ = std::io::stdout().lock().write_all(stdout);
            let _ = std::io::stderr().lock().write_all(stderr);
        };
        match &self.spinner {
            Some(spinner) => spinner.suspend(write),
            None => write(),
        }
        // Cleared, not replaced: the buffers keep their memory for the next burst, rather
        // than growing the heap and giving it back for every 64 KiB of output.
        self.stdout.clear();
        self.stderr.clear();
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
            Event::StageDoneEarlier { name, procedure, .. } => {
                self.say(&format!("== Stage done in an earlier attempt: {name}  [{procedure}]"));
            }
            Event::StepStarted { id, name, kind, command, attempt } => {
                self.kinds.insert(id.clone(), kind);
                let title = name.as_deref().map(|n| format!(" — {n}")).unwrap_or_default();
                let retry = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                if !self.quiet {
                    self.say(&format!("▶ {id}{title} ({kind}){retry}"));
                    if let Some(command) = command {
                        let prompt = if *kind == "http" { "→" } else { "$" };
                        self.say(&format!("  {prompt} {command}"));
                    }
                }
                if self.fancy && matches!(*kind, "run" | "shell" | "http" | "watch") {
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
            Event::Output { id, stream: Stream::Stdout, text } if self.folds(id) => {
                self.held.extend_from_slice(text);
            }
            Event::Output { stream, text, .. } => {
                self.output(*stream, text);
            }
            Event::Notice { text, .. } => {
                self.stop_spinner();
                for line in text.lines() {
                    self.say(&format!("  {line}"));
                }
            }
            Event::FailureChoice { id, choice, reason, prompt, answer, .. } => {
                self.stop_spinner();
                self.say(&crate::exec::recovery::menu::describe_choice(
                    id,
                    choice,
                    reason.as_deref(),
                    prompt.as_deref(),
                    answer.as_deref(),
                ));
            }
            Event::WatchSample { id, sample, passing, streak, hold, value, error, left } => {
                let verdict = match (passing, error) {
                    (true, _) => format!("passing ({streak}/{hold})"),
                    (false, Some(reason)) => format!("not passing: {reason}"),
                    (false, None) => "not passing".to_owned(),
                };
                let value = value.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
                let line = format!("sample {sample}:{value} — {verdict}, {} left", format_duration(*left));
                // On a terminal the watch's one line updates in place; elsewhere, a line per sample.
                match &self.spinner {
                    Some(spinner) if self.fancy => spinner.set_message(format!("{id}: {line}")),
                    _ if !self.quiet => self.say(&format!("  {line}")),
                    _ => {}
                }
            }
            Event::Recovered { id, after, .. } => {
                self.recovered = Some(format!("{} ({id} passed)", format_duration(*after)));
            }
            Event::Undo { id, text, .. } => {
                self.stop_spinner();
                self.say(&format!("↶ undo of {id}: {}", text.replace('\n', " ")));
            }
            Event::StepFinished { id, status, duration, message, answer, changed, .. } => {
                self.stop_spinner();
                self.unfold(id);
                if *status == StepStatus::Done {
                    if let (Some("prompt"), Some(answer)) = (self.kinds.get(id).copied(), answer) {
                        self.decisions.push((id.clone(), answer.clone()));
                    }
                    if let Some(text) = changed {
                        self.changes.push((id.clone(), text.clone()));
                    }
                }
                let took = format_duration(*duration);
                let unattended = answer.as_deref().filter(|a| a.starts_with(runbook_state::event::UNATTENDED));
                let line = match status {
                    StepStatus::Done if unattended.is_some() => {
                        format!("✓ {id} ({took}) — {}", unattended.unwrap_or_default())
                    }
                    StepStatus::Done => format!("✓ {id} ({took})"),
                    StepStatus::Aborted => format!("■ {id} stopped: {}", message.as_deref().unwrap_or("stopped")),
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
            Event::NotifyFailed { webhook_env, notification, error } => {
                // Shown once per webhook; the journal keeps every failed message.
                if self.notify_failed.insert(webhook_env.clone()) {
                    self.stop_spinner();
                    self.say(&format!(
                        "warning: the notification ({notification}) to the webhook in ${webhook_env} was not delivered: {error}; the run goes on (failures are journaled)"
                    ));
                }
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
                self.say(&self.time_to_recovery());
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
    /// The run's id, for pointing at `runbook show`.
    pub run_id: String,
    /// Read steps whose standard output is JSON for later steps: folded when long.
    pub folded: std::collections::HashSet<String>,
    /// Ids of steps that change something (`effect: mutate` run/shell/http steps).
    pub mutating: std::collections::HashSet<String>,
    /// The procedure has a `recovery: true` step.
    pub recovery_steps: bool,
    /// The run's time to recovery, recorded by an earlier attempt.
    pub earlier_recovery: Option<String>,
    /// Steps finished in an earlier attempt (`resume`).
    pub earlier: usize,
    /// Decisions and changes of earlier attempts, listed before this attempt's.
    pub earlier_decisions: Vec<(String, String)>,
    pub earlier_changes: Vec<(String, String)>,
}

pub fn format_duration(duration: Duration) -> String {
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
        if let Event::Output { id, stream, text } = event {
            // One `output` event per line, as before output came in chunks.
            let decoded = runbook_state::event::decode(text);
            let mut out = Vec::with_capacity(text.len() * 2);
            for line in runbook_state::event::lines(decoded.as_bytes()) {
                let line = runbook_state::event::decode(line);
                let value = serde_json::json!({"event": "output", "id": id, "stream": stream, "line": line});
                if serde_json::to_writer(&mut out, &value).is_ok() {
                    out.push(b'\n');
                }
            }
            let _ = std::io::stdout().lock().write_all(&out);
            return;
        }
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }
}
