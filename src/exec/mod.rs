//! Execution: walks a checked [`Plan`] stage by stage, asks the operator where the runbook
//! says so, runs each step and reports events to its subscribers.

pub mod event;
mod http;
pub mod operator;
mod process;
pub mod terminal;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::model::{Procedure, Stage};
use crate::plan::{Outputs, Plan, StepOutput};
use crate::render::{Action, Rendered, render};
use crate::step::{Capture, OnFailure, Step, StepKind};
use event::{Event, Outcome, StepStatus, Stream, Subscriber};
use operator::{Operator, StageChoice};

/// Captured output above this is an error, not a memory problem (`RUNBOOK_CAPTURE_LIMIT`).
pub const DEFAULT_CAPTURE_LIMIT: usize = 16 * 1024 * 1024;

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
}

/// How a walk through steps goes on.
enum Flow {
    Continue,
    Stop(Outcome, String),
}

/// One attempt's result.
struct Attempt {
    status: StepStatus,
    output: Option<StepOutput>,
    exit_code: Option<i32>,
    message: Option<String>,
    answer: Option<String>,
}

impl Attempt {
    fn done(output: Option<StepOutput>) -> Self {
        Attempt { status: StepStatus::Done, output, exit_code: None, message: None, answer: None }
    }

    fn failed(message: impl Into<String>) -> Self {
        Attempt {
            status: StepStatus::Failed,
            output: None,
            exit_code: None,
            message: Some(message.into()),
            answer: None,
        }
    }

    fn with_status(status: StepStatus, message: impl Into<String>) -> Self {
        Attempt { status, ..Attempt::failed(message) }
    }
}

pub struct Runner<'p> {
    plan: &'p Plan,
    operator: Operator,
    options: Options,
    subscribers: Vec<Box<dyn Subscriber>>,
    pub cancel: CancellationToken,
    pub outputs: Outputs,
    done: usize,
    skipped: usize,
    failed: usize,
    /// Quiet walk for `--dry-run --probe`: only read steps run, nothing is asked.
    probing: bool,
    /// Steps finished by an earlier attempt of this run (`resume`), with their outputs.
    pub completed: HashMap<String, Option<StepOutput>>,
}

impl<'p> Runner<'p> {
    pub fn new(plan: &'p Plan, options: Options, subscribers: Vec<Box<dyn Subscriber>>) -> Self {
        let operator = Operator { interactive: options.interactive, yes: options.yes, answers: plan.answers.clone() };
        Runner {
            plan,
            operator,
            options,
            subscribers,
            cancel: CancellationToken::new(),
            outputs: Outputs::default(),
            done: 0,
            skipped: 0,
            failed: 0,
            probing: false,
            completed: HashMap::new(),
        }
    }

    /// Points every process step at a rehearsal's fake services.
    pub fn set_environment(&mut self, extra: Vec<(String, String)>, remove: Vec<String>) {
        self.options.extra_env = extra;
        self.options.remove_env = remove;
    }

    pub fn subscribe(&mut self, subscriber: Box<dyn Subscriber>) {
        self.subscribers.push(subscriber);
    }

    fn emit(&mut self, event: Event) {
        for subscriber in &mut self.subscribers {
            subscriber.event(&event);
        }
    }

    /// Before the run waits on the operator: what subscribers buffered goes out, and the
    /// journal makes every record so far durable (a step's end is otherwise synced only with
    /// the next step's start).
    fn settle(&mut self) {
        for subscriber in &mut self.subscribers {
            subscriber.flush();
        }
    }

    /// Refuses, before anything runs, a run that would need an answer it cannot get.
    pub fn preflight(&self) -> Result<(), String> {
        let plan = self.plan;
        let runbook = &plan.runbook;
        let what = format!("`{} {}`", runbook.name, plan.procedure);
        if self.options.interactive {
            return Ok(());
        }
        if !plan.missing_secrets.is_empty() {
            let names: Vec<String> = plan
                .missing_secrets
                .iter()
                .map(|n| format!("--{} (or {})", crate::param::flag_name(n), crate::cli::secret_env_name(n)))
                .collect();
            return Err(format!("{what} needs the secret {} and there is no terminal to ask for it", names.join(", ")));
        }
        if self.options.yes {
            let unanswered: Vec<String> = steps_of(plan)
                .into_iter()
                .filter(|s| {
                    matches!(&s.kind, StepKind::Prompt(p) if p.default.is_none()) && !plan.answers.contains_key(&s.id)
                })
                .map(|s| format!("--answer {}=VALUE", s.id))
                .collect();
            if !unanswered.is_empty() {
                return Err(format!("{what} asks questions and there is no terminal: give {}", unanswered.join(" ")));
            }
            return Ok(());
        }
        if runbook.mutates(&plan.procedure) {
            return Err(format!(
                "refusing to run {what} without a terminal: it changes things and nobody can confirm the stages; run it from a terminal, or pass --yes (and --answer for prompts) to confirm ahead"
            ));
        }
        if plan.environment().is_some_and(|e| e.protected) {
            return Err(format!(
                "{what} targets a protected environment and there is no terminal to confirm it; pass --yes"
            ));
        }
        let unanswered: Vec<String> = steps_of(plan)
            .into_iter()
            .filter(|s| {
                matches!(s.kind, StepKind::Prompt(_) | StepKind::Manual(_)) && !plan.answers.contains_key(&s.id)
            })
            .map(|s| s.id.clone())
            .collect();
        if !unanswered.is_empty() {
            return Err(format!(
                "{what} needs answers and there is no terminal: give --answer ID=VALUE (or --yes for manual steps) for {}",
                unanswered.join(", ")
            ));
        }
        Ok(())
    }

    pub async fn run(&mut self) -> Outcome {
        let started = Instant::now();
        let plan = self.plan;
        self.emit(Event::RunStarted {
            runbook: plan.runbook.name.clone(),
            procedure: plan.procedure.clone(),
            environment: plan.environment.clone(),
            file: plan.runbook.source.display_path(),
        });
        let flow = match self.confirm_environment() {
            Flow::Continue => self.procedure(plan.procedure.clone()).await,
            stop => stop,
        };
        let (outcome, message) = match flow {
            Flow::Continue => (Outcome::Done, None),
            Flow::Stop(outcome, message) => (outcome, Some(message)),
        };
        self.emit(Event::RunFinished {
            outcome,
            message: message.map(|m| plan.redactor.redact(&m)),
            duration: started.elapsed(),
            done: self.done,
            skipped: self.skipped,
            failed: self.failed,
        });
        outcome
    }

    /// `--dry-run --probe`: runs read-only steps whose inputs are known, so the dry-run
    /// shows real values where it can.
    pub async fn probe(&mut self) {
        self.probing = true;
        let runbook = self.plan.runbook.clone();
        let mut order = Vec::new();
        if let Some(proc) = runbook.procedures.get(&self.plan.procedure) {
            crate::plan::steps_in_order(&runbook, proc, &mut order);
        }
        self.outputs.placeholders = true;
        for step in order {
            if !matches!(step.kind, StepKind::Run(_) | StepKind::Shell(_) | StepKind::Http(_)) || step.mutates() {
                continue;
            }
            // A step that would not run (its `when` is false or not decidable yet) is not probed.
            if let Some(when) = &step.when
                && !matches!(when.eval(&self.plan.context(&self.outputs)), Ok(v) if v.is_true() && !crate::template::is_placeholder(&v))
            {
                continue;
            }
            let Ok(rendered) = render(self.plan, step, &self.outputs) else { continue };
            if rendered.has_placeholders() {
                continue;
            }
            let attempt = self.execute(step, &rendered).await;
            if let (StepStatus::Done, Some(output)) = (attempt.status, attempt.output) {
                self.outputs.insert(&step.id, &output);
            }
            if self.cancel.is_cancelled() {
                break;
            }
        }
    }

    fn confirm_environment(&mut self) -> Flow {
        let Some(env) = self.plan.environment() else { return Flow::Continue };
        if !env.protected {
            return Flow::Continue;
        }
        let name = env.name.clone();
        self.settle();
        match self.operator.type_to_confirm("environment", &name, &format!("`{name}` is a protected environment")) {
            Ok(true) => Flow::Continue,
            Ok(false) => {
                Flow::Stop(Outcome::Aborted, format!("the operator did not confirm the protected environment `{name}`"))
            }
            Err(err) => Flow::Stop(Outcome::Aborted, err.to_string()),
        }
    }

    fn procedure(&mut self, name: String) -> Pin<Box<dyn Future<Output = Flow> + '_>> {
        Box::pin(async move {
            let runbook = self.plan.runbook.clone();
            let Some(procedure) = runbook.procedures.get(&name) else {
                return Flow::Stop(Outcome::Failed, format!("no procedure `{name}`"));
            };
            for (index, stage) in procedure.stages.iter().enumerate() {
                match self.stage(procedure, index, stage).await {
                    Flow::Continue => {}
                    stop => return stop,
                }
            }
            Flow::Continue
        })
    }

    async fn stage(&mut self, procedure: &Procedure, index: usize, stage: &Stage) -> Flow {
        let finished_before =
            stage.steps.iter().all(|s| self.completed.contains_key(&s.id) && !matches!(s.kind, StepKind::Include(_)));
        if finished_before {
            for step in &stage.steps {
                self.restore(step);
            }
            self.emit(Event::StageSkipped {
                procedure: procedure.name.clone(),
                index: index + 1,
                name: stage.name.clone(),
                reason: "finished in an earlier attempt of this run".into(),
            });
            return Flow::Continue;
        }
        let mutates = stage.steps.iter().any(|s| s.mutates() && !self.completed.contains_key(&s.id));
        let choice = if self.operator.yes {
            StageChoice::Run
        } else if self.operator.interactive {
            self.show_stage(procedure, index, stage);
            self.settle();
            match self.operator.confirm_stage(&stage.name) {
                Ok(choice) => choice,
                Err(err) => return Flow::Stop(Outcome::Aborted, err.to_string()),
            }
        } else if mutates {
            StageChoice::Stop
        } else {
            StageChoice::Run
        };
        if self.cancel.is_cancelled() {
            return Flow::Stop(Outcome::Interrupted, "interrupted".into());
        }
        match choice {
            StageChoice::Run => {}
            StageChoice::Skip => {
                self.emit(Event::StageSkipped {
                    procedure: procedure.name.clone(),
                    index: index + 1,
                    name: stage.name.clone(),
                    reason: "the operator skipped it".into(),
                });
                self.skipped += stage.steps.len();
                return Flow::Continue;
            }
            StageChoice::Stop => {
                return Flow::Stop(
                    Outcome::Aborted,
                    format!("the operator stopped the run before stage `{}`", stage.name),
                );
            }
        }
        self.emit(Event::StageStarted {
            procedure: procedure.name.clone(),
            index: index + 1,
            name: stage.name.clone(),
        });
        for step in &stage.steps {
            match self.step(step).await {
                Flow::Continue => {}
                stop => return stop,
            }
        }
        Flow::Continue
    }

    /// What the stage will do, rendered as in a dry-run, before the operator answers.
    fn show_stage(&self, procedure: &Procedure, index: usize, stage: &Stage) {
        let mut outputs = self.outputs.clone();
        outputs.placeholders = true;
        let text = self.plan.redactor.redact(&crate::dry_run::stage_preview(
            self.plan,
            &procedure.name,
            index,
            stage,
            &outputs,
        ));
        eprint!("\n{text}");
    }

    /// A step finished by an earlier attempt: its outputs are back, it does not run again.
    fn restore(&mut self, step: &Step) -> bool {
        let Some(output) = self.completed.get(&step.id).cloned() else { return false };
        if let Some(output) = output {
            self.outputs.insert(&step.id, &output);
        }
        true
    }

    async fn step(&mut self, step: &Step) -> Flow {
        let started = Instant::now();
        if self.restore(step) {
            self.emit(Event::Notice {
                id: step.id.clone(),
                text: format!("{}: finished in an earlier attempt", step.id),
            });
            return Flow::Continue;
        }
        if let Some(when) = &step.when {
            match when.is_true(&self.plan.context(&self.outputs)) {
                Ok(true) => {}
                Ok(false) => {
                    self.finish(
                        step,
                        Attempt::with_status(StepStatus::Skipped, format!("`when: {}` is false", when.text)),
                        started,
                    );
                    return Flow::Continue;
                }
                Err(err) => {
                    return self
                        .fail(step, Attempt::failed(format!("`when` could not be evaluated: {err}")), started)
                        .await;
                }
            }
        }
        if let StepKind::Include(include) = &step.kind {
            let flow = self.procedure(include.procedure.clone()).await;
            return flow;
        }
        if let Some(target) = &step.confirm {
            let target = match target.render(&self.plan.context(&self.outputs)) {
                Ok(target) => target,
                Err(err) => {
                    return self
                        .fail(step, Attempt::failed(format!("`target` could not be rendered: {err}")), started)
                        .await;
                }
            };
            let what = format!("step `{}` is destructive", step.id);
            self.settle();
            match self.operator.type_to_confirm(&step.id, &target, &what) {
                Ok(true) => {}
                Ok(false) => {
                    return Flow::Stop(
                        Outcome::Aborted,
                        format!("the operator did not confirm `{target}` for step `{}`", step.id),
                    );
                }
                Err(err) => return Flow::Stop(Outcome::Aborted, err.to_string()),
            }
        }
        let attempts = step.retry.as_ref().map_or(1, |r| r.attempts);
        let mut last = Attempt::failed("not run");
        for attempt in 1..=attempts {
            let rendered = match render(self.plan, step, &self.outputs) {
                Ok(rendered) => rendered,
                Err(err) => {
                    return self.fail(step, Attempt::failed(format!("cannot render the step: {err}")), started).await;
                }
            };
            self.emit(Event::StepStarted {
                id: step.id.clone(),
                name: step.name.clone(),
                kind: step.kind_name(),
                command: rendered.command_line(self.plan).or_else(|| http_line(self.plan, &rendered)),
                attempt,
            });
            let mut result = self.execute(step, &rendered).await;
            if result.status == StepStatus::Interrupted {
                self.finish(step, result, started);
                return Flow::Stop(Outcome::Interrupted, format!("interrupted during step `{}`", step.id));
            }
            if result.status == StepStatus::Done
                && let Some(until) = step.retry.as_ref().and_then(|r| r.until.as_ref())
            {
                let result_value =
                    minijinja::Value::from(minijinja::value::Serde(result.output.clone().unwrap_or_default()));
                let context = minijinja::context! { result => result_value, ..self.plan.context(&self.outputs) };
                match until.is_true(&context) {
                    Ok(true) => {}
                    Ok(false) => {
                        result = Attempt {
                            status: StepStatus::Failed,
                            message: Some(format!("`until: {}` is not true yet", until.text)),
                            ..result
                        }
                    }
                    Err(err) => {
                        return self
                            .fail(step, Attempt::failed(format!("`until` could not be evaluated: {err}")), started)
                            .await;
                    }
                }
            }
            if result.status == StepStatus::Done {
                if let Some(output) = &result.output {
                    self.outputs.insert(&step.id, output);
                }
                self.finish(step, result, started);
                return Flow::Continue;
            }
            if attempt < attempts {
                let interval = step.retry.as_ref().map_or(Duration::ZERO, |r| r.interval);
                let reason = self.plan.redactor.redact(result.message.as_deref().unwrap_or("failed"));
                self.emit(Event::Notice {
                    id: step.id.clone(),
                    text: format!(
                        "attempt {attempt}/{attempts} failed: {reason}; retrying in {}",
                        humantime::format_duration(interval)
                    ),
                });
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = self.cancel.cancelled() => {
                        self.finish(step, Attempt::with_status(StepStatus::Interrupted, "interrupted while waiting to retry"), started);
                        return Flow::Stop(Outcome::Interrupted, format!("interrupted during step `{}`", step.id));
                    }
                }
            }
            last = result;
        }
        if attempts > 1 {
            last.message = last.message.map(|m| format!("{m} (after {attempts} attempts)"));
        }
        self.fail(step, last, started).await
    }

    /// A failed step: `on_failure` decides what happens next.
    async fn fail(&mut self, step: &Step, mut attempt: Attempt, started: Instant) -> Flow {
        let message = attempt.message.clone().unwrap_or_else(|| "failed".into());
        let message = format!("step `{}` failed: {}", step.id, self.plan.redactor.redact(&message));
        match &step.on_failure {
            OnFailure::Continue => {
                attempt.status = StepStatus::FailedContinued;
                self.finish(step, attempt, started);
                Flow::Continue
            }
            OnFailure::Abort => {
                self.finish(step, attempt, started);
                Flow::Stop(Outcome::Failed, message)
            }
            OnFailure::Procedure(handler) => {
                self.finish(step, attempt, started);
                self.emit(Event::Notice {
                    id: step.id.clone(),
                    text: format!("running on_failure procedure `{handler}`"),
                });
                match self.procedure(handler.clone()).await {
                    Flow::Continue => {
                        Flow::Stop(Outcome::Failed, format!("{message}; on_failure procedure `{handler}` ran"))
                    }
                    Flow::Stop(outcome, handler_message) => {
                        let outcome = if outcome == Outcome::Done { Outcome::Failed } else { outcome };
                        Flow::Stop(
                            outcome,
                            format!("{message}; on_failure procedure `{handler}` did not finish: {handler_message}"),
                        )
                    }
                }
            }
        }
    }

    fn finish(&mut self, step: &Step, attempt: Attempt, started: Instant) {
        match attempt.status {
            StepStatus::Done => self.done += 1,
            StepStatus::Skipped => self.skipped += 1,
            _ => self.failed += 1,
        }
        let redactor = &self.plan.redactor;
        let output = if step.output_is_secret() {
            None
        } else {
            attempt.output.as_ref().and_then(|o| serde_json::to_value(o).ok()).map(|v| redact_json(redactor, v))
        };
        self.emit(Event::StepFinished {
            id: step.id.clone(),
            status: attempt.status,
            duration: started.elapsed(),
            exit_code: attempt.exit_code,
            message: attempt.message.map(|m| redactor.redact(&m)),
            output,
            answer: attempt.answer.map(|a| redactor.redact(&a)),
        });
    }

    async fn execute(&mut self, step: &Step, rendered: &Rendered) -> Attempt {
        match &rendered.action {
            Action::Run { .. } | Action::Shell { .. } => self.process(step, rendered).await,
            Action::Http { capture, .. } => self.http(step, rendered, *capture).await,
            Action::Manual { text } => {
                self.emit(Event::Notice { id: step.id.clone(), text: format!("MANUAL STEP:\n{text}") });
                match self.operator.acknowledge(&step.id) {
                    Ok(true) => Attempt { answer: Some("done".into()), ..Attempt::done(None) },
                    Ok(false) => {
                        Attempt::with_status(StepStatus::Failed, "the operator did not acknowledge the manual step")
                    }
                    Err(err) => Attempt::failed(err.to_string()),
                }
            }
            Action::Prompt { question, choices, default, secret, .. } => {
                self.prompt(step, question, choices.as_deref(), default.as_deref(), *secret)
            }
            Action::Assert { expr, message } => {
                let StepKind::Assert(assert) = &step.kind else { return Attempt::failed("not an assert") };
                match assert.expr.is_true(&self.plan.context(&self.outputs)) {
                    Ok(true) => Attempt::done(None),
                    Ok(false) => {
                        Attempt::failed(message.clone().unwrap_or_else(|| format!("assertion failed: {expr}")))
                    }
                    Err(err) => Attempt::failed(format!("assertion could not be evaluated: {err}")),
                }
            }
            Action::Include { .. } => Attempt::done(None),
        }
    }

    fn prompt(
        &mut self,
        step: &Step,
        question: &str,
        choices: Option<&[String]>,
        default: Option<&str>,
        secret: bool,
    ) -> Attempt {
        let StepKind::Prompt(prompt) = &step.kind else { return Attempt::failed("not a prompt") };
        let answer = match self.operator.prompt(&step.id, question, choices, default, secret) {
            Ok(Some(answer)) => answer,
            Ok(None) => return Attempt::failed(format!("no answer: pass --answer {}=VALUE", step.id)),
            Err(err) => return Attempt::failed(err.to_string()),
        };
        if secret {
            if answer.chars().count() < crate::redact::MIN_SECRET_LEN {
                return Attempt::failed(format!(
                    "the secret answer is shorter than {} characters, too short to be masked reliably",
                    crate::redact::MIN_SECRET_LEN
                ));
            }
            self.plan.redactor.add(&answer);
        }
        let shown = if secret { crate::redact::MASK.to_owned() } else { answer.clone() };
        if let Some(choices) = choices
            && !choices.contains(&answer)
        {
            return Attempt::failed(format!("`{shown}` is not one of the choices: {}", choices.join(", ")));
        }
        let value = match crate::param::check_typed(&prompt.ty, &answer, chrono::Utc::now()) {
            Ok(value) => value,
            Err(reason) => return Attempt::failed(format!("answer `{shown}`: {reason}")),
        };
        if let Some(pattern) = &prompt.pattern
            && !pattern.is_match(&answer)
        {
            return Attempt::failed(format!("answer `{shown}` does not match the pattern `{}`", pattern.as_str()));
        }
        let output = StepOutput { output: Some(value.as_text()), ..StepOutput::default() };
        Attempt { answer: (!secret).then_some(answer), ..Attempt::done(Some(output)) }
    }

    async fn process(&mut self, step: &Step, rendered: &Rendered) -> Attempt {
        let (argv, env, stdin, cwd, capture) = match &rendered.action {
            Action::Run { argv, env, stdin, cwd, capture } => (argv.clone(), env, stdin, cwd, *capture),
            Action::Shell { script, args, env, stdin, cwd, capture } => {
                let mut argv = vec!["sh".to_owned(), "-c".to_owned(), script.clone(), "runbook".to_owned()];
                argv.extend(args.iter().cloned());
                (argv, env, stdin, cwd, *capture)
            }
            _ => return Attempt::failed("not a process step"),
        };
        let cwd = cwd.as_ref().map_or_else(|| self.options.base_dir.clone(), |c| self.options.base_dir.join(c));
        let spec = process::Spec {
            argv: &argv,
            env: self
                .options
                .extra_env
                .iter()
                .cloned()
                .chain(env.iter().map(|(k, v)| (k.clone(), v.value.clone())))
                .collect(),
            remove_env: self.options.remove_env.clone(),
            stdin: stdin.as_ref().map(|s| s.value.clone()),
            cwd,
            timeout: rendered.timeout,
            capture_limit: capture.map(|_| self.options.capture_limit),
            // A secret step's output is registered for masking only when the step ends, so
            // nothing it prints is shown before that.
            show_stdout: !step.secret && !self.probing,
            show_stderr: !step.secret && !self.probing,
        };
        let id = step.id.clone();
        let redactor = self.plan.redactor.clone();
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let probing = self.probing;
        let cancel = self.cancel.clone();
        let subscribers = &mut self.subscribers;
        let ended = process::run(spec, &cancel, |stream, line| {
            let Some(line) = line else {
                subscribers.iter_mut().for_each(|s| s.flush());
                return;
            };
            let line = if redactor.is_empty() { line.to_owned() } else { redactor.redact(line) };
            if stream == Stream::Stderr {
                if tail.len() == 3 {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
            }
            if probing {
                return;
            }
            let event = Event::Output { id: id.clone(), stream, line };
            for subscriber in subscribers.iter_mut() {
                subscriber.event(&event);
            }
        })
        .await;
        let program = argv.first().cloned().unwrap_or_default();
        match ended {
            Err(message) => Attempt::failed(message),
            Ok(process::Ended::TimedOut) => Attempt::with_status(
                StepStatus::TimedOut,
                format!(
                    "timed out after {}; its process group was ended",
                    humantime::format_duration(rendered.timeout)
                ),
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
                    let detail = if step.secret {
                        " (its output is not shown: secret step)".to_owned()
                    } else if tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", tail.join(" / "))
                    };
                    return Attempt { exit_code: code, ..Attempt::failed(format!("`{program}` {how}{detail}")) };
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
                    register_secret(&self.plan.redactor, &output);
                }
                Attempt { exit_code: code, ..Attempt::done(Some(output)) }
            }
        }
    }

    async fn http(&mut self, step: &Step, rendered: &Rendered, capture: Option<Capture>) -> Attempt {
        match http::send(&rendered.action, rendered.timeout, self.options.capture_limit, &self.cancel).await {
            http::Ended::Interrupted => Attempt::with_status(StepStatus::Interrupted, "interrupted"),
            http::Ended::TimedOut => Attempt::with_status(
                StepStatus::TimedOut,
                format!("no complete response within {}", humantime::format_duration(rendered.timeout)),
            ),
            http::Ended::Failed(message) => Attempt::failed(message),
            http::Ended::TooLarge(limit) => Attempt::failed(format!(
                "the response body is larger than the capture limit of {} (RUNBOOK_CAPTURE_LIMIT)",
                human_bytes(limit)
            )),
            http::Ended::Response(response) => {
                if let Err(message) = http::check(&rendered.action, &response, step.secret) {
                    return Attempt { exit_code: Some(i32::from(response.status)), ..Attempt::failed(message) };
                }
                let mut output = match capture.map(|c| captured_output(c, &response.body)) {
                    None => StepOutput::default(),
                    Some(Ok(output)) => output,
                    Some(Err(message)) => return Attempt::failed(message),
                };
                output.status = Some(i64::from(response.status));
                if step.secret {
                    register_secret(&self.plan.redactor, &output);
                }
                Attempt { exit_code: Some(i32::from(response.status)), ..Attempt::done(Some(output)) }
            }
        }
    }
}

fn http_line(plan: &Plan, rendered: &Rendered) -> Option<String> {
    match &rendered.action {
        Action::Http { method, url, .. } => Some(format!("{method} {}", plan.redactor.redact(url))),
        _ => None,
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

fn redact_json(redactor: &crate::redact::Redactor, value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(s) => serde_json::Value::String(redactor.redact(&s)),
        serde_json::Value::Array(items) => items.into_iter().map(|v| redact_json(redactor, v)).collect(),
        serde_json::Value::Object(map) => map.into_iter().map(|(k, v)| (k, redact_json(redactor, v))).collect(),
        other => other,
    }
}

fn human_bytes(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

/// Every step that can run for the plan's procedure (includes and on_failure handlers).
fn steps_of(plan: &Plan) -> Vec<&Step> {
    fn walk<'a>(runbook: &'a crate::model::Runbook, name: &str, seen: &mut Vec<String>, out: &mut Vec<&'a Step>) {
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_owned());
        let Some(procedure) = runbook.procedures.get(name) else { return };
        for step in procedure.stages.iter().flat_map(|s| &s.steps) {
            out.push(step);
            for other in step.procedures_used() {
                walk(runbook, other, seen, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&plan.runbook, &plan.procedure, &mut Vec::new(), &mut out);
    out
}
