//! Steps: the unit of work, its kind and the keys every kind shares.

use std::time::Duration;

use regex::Regex;
use serde::Serialize;

use crate::param::{AnswerHint, ParamType};
use crate::source::Span;
use crate::template::{Expr, Template};
use crate::timing::Timing;

/// Default time limits when a step sets none.
pub const DEFAULT_PROCESS_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize)]
pub struct Step {
    pub id: String,
    pub name: Option<String>,
    pub kind: StepKind,
    pub when: Option<Expr>,
    /// `done_if:` (a mutating step): an expression over what read steps saw that says the
    /// step's effect already holds. Then the step is journaled as already done, with the
    /// evidence, and not run again — on a first run, a resume, a hand-over or after
    /// `--from`; the read steps it names are read again first when an earlier attempt read
    /// them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_if: Option<Expr>,
    pub effect: Effect,
    pub timeout: Option<Duration>,
    pub retry: Option<Retry>,
    /// `confirm: typed`: the operator types this rendered value before the step runs.
    pub confirm: Option<Template>,
    pub on_failure: OnFailure,
    pub secret: bool,
    /// `undo:`: steps that put back what this (mutating) step changed, run by
    /// `runbook undo` and `--on-failure undo`, newest owner first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<Step>,
    /// `restarts_from: STEP`: the earlier step that started the operation this step waits
    /// on. When this step fails, `resume` starts again at that step (a new operation)
    /// instead of waiting on the failed one.
    pub restarts_from: Option<String>,
    /// `on_interrupt:` what the operator must know when Ctrl-C or a timeout ends this step
    /// (a wait on a cloud operation: the operation keeps running, and how to look at it);
    /// shown and journaled with the interruption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_interrupt: Option<Template>,
    /// Where the `restarts_from` value is written.
    #[serde(skip)]
    pub restarts_from_span: Option<Span>,
    /// `recovery: true`: this step passing means the service has recovered; the time from
    /// the run's start to the first such step passing is the run's time to recovery.
    pub recovery: bool,
    #[serde(skip)]
    pub span: Span,
    /// Where the `on_failure` value is written, for diagnostics about it.
    #[serde(skip)]
    pub on_failure_span: Option<Span>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Read,
    Mutate,
}

#[derive(Debug, Serialize)]
pub struct Retry {
    pub attempts: u32,
    pub interval: Duration,
    pub until: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Abort,
    Continue,
    Procedure(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capture {
    Text,
    Json,
    Lines,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Run(RunStep),
    Shell(ShellStep),
    Http(HttpStep),
    Manual(Template),
    Prompt(PromptStep),
    Assert(AssertStep),
    Include(IncludeStep),
    Watch(WatchStep),
}

/// `watch:`: a read sampled every `every` until `pass` has held for `hold` samples in a row,
/// `fail` holds, or `within` runs out.
#[derive(Debug, Serialize)]
pub struct WatchStep {
    /// What each sample runs: a `run`, `shell` or (read-only) `http` body, captured as the
    /// watch says.
    pub sample: Box<StepKind>,
    pub every: Timing<Duration>,
    pub within: Timing<Duration>,
    /// True when a sample passes; it sees the sample as `sample`.
    pub pass: Expr,
    /// Passing samples in a row needed (at least 1).
    pub hold: Timing<u32>,
    /// True when the watch gives up at once.
    pub fail: Option<Expr>,
    /// What a sample's line shows and the journal keeps as its value (`value:`, an
    /// expression over `sample`, e.g. "12 of 1000 requests were 5xx"); without it, the
    /// start of the sample's JSON or text.
    pub value: Option<Expr>,
}

impl WatchStep {
    /// `every`, `within` and `hold` resolved against the plan's context and checked (see
    /// [`crate::timing::resolve`]).
    pub fn timing(
        &self,
        context: &minijinja::Value,
        source: &crate::source::Source,
    ) -> Result<crate::timing::WatchTiming, crate::template::RenderError> {
        crate::timing::resolve(&self.every, &self.within, &self.hold, context, source)
    }

    /// The timing values written as templates, with their keys.
    pub fn timing_templates(&self) -> impl Iterator<Item = (&'static str, &Template)> {
        [("every", self.every.template()), ("within", self.within.template()), ("hold", self.hold.template())]
            .into_iter()
            .filter_map(|(key, template)| Some((key, template?)))
    }
}

/// What a process step shares between `run:` and `shell:`.
#[derive(Debug, Default, Serialize)]
pub struct Process {
    pub env: Vec<(String, Template)>,
    pub stdin: Option<Template>,
    pub cwd: Option<Template>,
    pub capture: Option<Capture>,
}

#[derive(Debug, Serialize)]
pub struct RunStep {
    pub argv: Vec<Template>,
    pub process: Process,
}

#[derive(Debug, Serialize)]
pub struct ShellStep {
    /// Never rendered: values reach the script as `$1`... (`args`) or through `env`.
    pub script: String,
    #[serde(skip)]
    pub script_span: Span,
    pub args: Vec<Template>,
    pub process: Process,
}

#[derive(Debug, Serialize)]
pub struct HttpStep {
    pub method: String,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    pub expect: Expect,
    pub connect_timeout: Option<Duration>,
    pub capture: Option<Capture>,
}

#[derive(Debug, Default, Serialize)]
pub struct Expect {
    pub status: Vec<u16>,
    pub body_contains: Option<Template>,
    /// JSON path (RFC 9535) → expected value.
    pub json: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Serialize)]
pub struct PromptStep {
    pub question: Template,
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub choices: Option<Choices>,
    pub default: Option<Template>,
    #[serde(serialize_with = "serialize_regex")]
    pub pattern: Option<Regex>,
    /// `example:` / `pattern_help:`: what a wrong answer is told instead of the regex.
    #[serde(flatten)]
    pub hint: AnswerHint,
    /// `label:`: a template per choice item (`item`), shown instead of the value.
    pub label: Option<Template>,
    /// `value:`: a template per choice item (`item`); the answer. Default: the item itself.
    pub value: Option<Template>,
}

impl PromptStep {
    /// Checks an answer: one of `choices` (when known), the prompt's type and pattern.
    /// The error is a sentence for the operator; `shown` is how the answer may be printed.
    pub fn check_answer(
        &self,
        answer: &str,
        choices: Option<&[String]>,
        shown: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::param::ParamValue, String> {
        if let Some(choices) = choices
            && !choices.iter().any(|c| c == answer)
        {
            let list: Vec<&str> = choices.iter().take(10).map(String::as_str).collect();
            let more = if choices.len() > 10 { ", …" } else { "" };
            return Err(format!("`{shown}` is not one of the choices: {}{more}", list.join(", ")));
        }
        let value = crate::param::check_typed(&self.ty, answer, now)
            .map_err(|reason| format!("`{shown}`: {}", self.hint.explain(&reason)))?;
        if let Some(pattern) = &self.pattern
            && !pattern.is_match(answer)
        {
            return Err(format!("`{shown}` {}", self.hint.pattern_mismatch(pattern)));
        }
        Ok(value)
    }

    /// Choices given in the runbook itself, known before anything runs.
    pub fn static_choices(&self) -> Option<&[String]> {
        match &self.choices {
            Some(Choices::List(list)) => Some(list),
            _ => None,
        }
    }
}

#[allow(clippy::ref_option)] // serde's serialize_with signature
fn serialize_regex<S: serde::Serializer>(regex: &Option<Regex>, s: S) -> Result<S::Ok, S::Error> {
    match regex {
        Some(regex) => s.serialize_some(regex.as_str()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Choices {
    List(Vec<String>),
    /// An expression over earlier outputs, e.g. `steps.revisions.json | map(attribute='name')`.
    Expr(Expr),
}

#[derive(Debug, Serialize)]
pub struct AssertStep {
    pub expr: Expr,
    pub message: Option<Template>,
}

#[derive(Debug, Serialize)]
pub struct IncludeStep {
    pub procedure: String,
    #[serde(skip)]
    pub span: Span,
}

impl Step {
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            StepKind::Run(_) => "run",
            StepKind::Shell(_) => "shell",
            StepKind::Http(_) => "http",
            StepKind::Manual(_) => "manual",
            StepKind::Prompt(_) => "prompt",
            StepKind::Assert(_) => "assert",
            StepKind::Include(_) => "include",
            StepKind::Watch(_) => "watch",
        }
    }

    /// Whether running the step may change something outside `runbook`.
    /// Manual steps, prompts and asserts change nothing by themselves.
    pub fn mutates(&self) -> bool {
        matches!(self.kind, StepKind::Run(_) | StepKind::Shell(_) | StepKind::Http(_)) && self.effect == Effect::Mutate
    }

    /// Procedures this step may run: an `include` and an `on_failure` handler.
    pub fn procedures_used(&self) -> Vec<&str> {
        let mut used = Vec::new();
        if let StepKind::Include(include) = &self.kind {
            used.push(include.procedure.as_str());
        }
        if let OnFailure::Procedure(name) = &self.on_failure {
            used.push(name.as_str());
        }
        used
    }

    /// What later steps can read of this step: `output`, `json`, `lines`, `status`.
    /// (A watch's output is its last sample's.)
    pub fn outputs(&self) -> &'static [&'static str] {
        kind_outputs(&self.kind)
    }

    /// Whether the step's output is secret (a `secret: true` step or a secret prompt).
    pub fn output_is_secret(&self) -> bool {
        self.secret
    }

    pub fn timeout_or_default(&self) -> Duration {
        self.timeout.unwrap_or(match &self.kind {
            StepKind::Http(_) => DEFAULT_HTTP_TIMEOUT,
            StepKind::Watch(watch) if matches!(*watch.sample, StepKind::Http(_)) => DEFAULT_HTTP_TIMEOUT,
            _ => DEFAULT_PROCESS_TIMEOUT,
        })
    }
}

fn kind_outputs(kind: &StepKind) -> &'static [&'static str] {
    let capture = match kind {
        StepKind::Run(run) => run.process.capture,
        StepKind::Shell(shell) => shell.process.capture,
        StepKind::Http(http) => {
            return match http.capture {
                None => &["status"],
                Some(Capture::Text) => &["status", "output"],
                Some(Capture::Json) => &["status", "output", "json"],
                Some(Capture::Lines) => &["status", "output", "lines"],
            };
        }
        StepKind::Watch(watch) => return kind_outputs(&watch.sample),
        StepKind::Prompt(_) => return &["output"],
        StepKind::Manual(_) | StepKind::Assert(_) | StepKind::Include(_) => return &[],
    };
    match capture {
        None => &["status"],
        Some(Capture::Text) => &["status", "output"],
        Some(Capture::Json) => &["status", "output", "json"],
        Some(Capture::Lines) => &["status", "output", "lines"],
    }
}
