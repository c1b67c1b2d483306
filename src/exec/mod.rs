//! Execution: walks a checked [`Plan`] stage by stage, asks the operator where the runbook
//! says so, runs each step and reports events to its subscribers.

mod ansi;
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
use operator::{AskError, Confirmations, Operator, StageChoice};

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
    /// In a rehearsal: where `http:` steps may go.
    pub http_guard: Option<crate::rehearsal::HostGuard>,
    /// Remove terminal escape sequences from children's output (ours is not a terminal).
    pub strip_ansi: bool,
    /// `--confirm-env` / `--confirm-target`: names typed ahead.
    pub confirmations: Confirmations,
}

/// A question that got no answer ends the run: Ctrl-C as an interruption (exit 130,
/// resumable), anything else as the operator's abort.
fn unanswered(err: AskError) -> Flow {
    match err {
        AskError::Interrupted => Flow::Stop(Outcome::Interrupted, "interrupted at a question to the operator".into()),
        AskError::Failed(_) => Flow::Stop(Outcome::Aborted, err.to_string()),
    }
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
    /// Trying again cannot help (a request a rehearsal refused): no retry.
    last: bool,
}

impl Attempt {
    fn done(output: Option<StepOutput>) -> Self {
        Attempt { status: StepStatus::Done, output, exit_code: None, message: None, answer: None, last: false }
    }

    fn failed(message: impl Into<String>) -> Self {
        Attempt {
            status: StepStatus::Failed,
            output: None,
            exit_code: None,
            message: Some(message.into()),
            answer: None,
            last: false,
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
    /// A mutating step has started in this attempt.
    mutated: bool,
    /// How deep the walk is inside `include` steps of a confirmed stage: their stages were
    /// shown inline and are not asked again.
    included: usize,
    /// Mutating steps of the confirmed stage whose command was not known when it was shown
    /// (it uses a choice made in the stage): shown final and confirmed before they run.
    unseen: std::collections::HashSet<String>,
    /// An `--answer` was refused before anything changed: a usage error (exit 2).
    pub refused_answer: bool,
}

impl<'p> Runner<'p> {
    pub fn new(plan: &'p Plan, options: Options, subscribers: Vec<Box<dyn Subscriber>>) -> Self {
        let operator = Operator {
            interactive: options.interactive,
            yes: options.yes,
            answers: plan.answers.clone(),
            confirmations: options.confirmations.clone(),
        };
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
            mutated: false,
            included: 0,
            unseen: std::collections::HashSet::new(),
            refused_answer: false,
        }
    }

    pub fn subscribe(&mut self, subscriber: Box<dyn Subscriber>) {
        self.subscribers.push(subscriber);
    }

    /// Every event passes the redactor here, whatever made it: no subscriber (terminal,
    /// JSON, journal) sees a registered secret.
    fn emit(&mut self, event: Event) {
        let event = redact_event(&self.plan.redactor, event);
        for subscriber in &mut self.subscribers {
            subscriber.event(&event);
        }
    }

    /// SPEC rule 7: no step starts without its durable record. `Some` once the journal
    /// could not write one; the run stops there, resumable from what was recorded.
    fn unrecorded(&self, step: &Step) -> Option<Flow> {
        let err = self.subscribers.iter().find_map(|s| s.broken())?;
        Some(Flow::Stop(Outcome::Failed, format!("stopped before step `{}` ran: {err}", step.id)))
    }

    fn emit_before_mutation(&mut self, event: &Event) -> Result<(), String> {
        let mut refused = Ok(());
        for subscriber in &mut self.subscribers {
            if let Err(reason) = subscriber.before_mutation(event)
                && refused.is_ok()
            {
                refused = Err(reason);
            }
        }
        refused
    }

    /// Before the run waits on the operator: what subscribers buffered goes out.
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
        self.preflight_confirmations(&what)?;
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

    /// Names typed ahead must be right, and without a terminal they must be there:
    /// `--yes` does not stand in for a protected environment or a typed target.
    fn preflight_confirmations(&self, what: &str) -> Result<(), String> {
        let plan = self.plan;
        let given = &self.options.confirmations;
        if let Some(env) = plan.environment().filter(|e| e.protected) {
            match &given.env {
                Some(name) if *name != env.name => {
                    return Err(format!(
                        "--confirm-env {name}: the run targets the protected environment `{}`",
                        env.name
                    ));
                }
                None if !self.options.interactive => {
                    return Err(format!(
                        "{what} targets the protected environment `{0}` and there is no terminal to type its name: pass --confirm-env {0} (--yes does not confirm it)",
                        env.name
                    ));
                }
                _ => {}
            }
        } else if let Some(name) = &given.env
            && plan.environment.as_deref() != Some(name.as_str())
        {
            // The name of an unprotected target is accepted (a workflow passes it for every
            // environment); any other name is a mistake.
            let target = plan.environment.as_deref().map_or("no environment".to_owned(), |e| format!("`{e}`"));
            return Err(format!("--confirm-env {name}: the run targets {target}"));
        }
        let typed: Vec<&Step> = steps_of(plan).into_iter().filter(|s| s.confirm.is_some()).collect();
        for id in given.targets.keys() {
            if !typed.iter().any(|s| s.id == *id) {
                return Err(format!("--confirm-target {id}=…: {what} has no `confirm: typed` step `{id}`"));
            }
        }
        if !self.options.interactive {
            let missing: Vec<String> = typed
                .iter()
                .filter(|s| !given.targets.contains_key(&s.id) && !plan.answers.contains_key(&s.id))
                .filter(|s| !self.completed.contains_key(&s.id))
                .map(|s| format!("--confirm-target {}=VALUE", s.id))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "{what} has steps that need their target typed and there is no terminal: give {} (--yes does not confirm them)",
                    missing.join(" ")
                ));
            }
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
        let given = self.operator.confirmations.env.clone();
        match self.operator.type_to_confirm(given.as_deref(), &name, &format!("`{name}` is a protected environment")) {
            Ok(true) => Flow::Continue,
            Ok(false) => {
                Flow::Stop(Outcome::Aborted, format!("the operator did not confirm the protected environment `{name}`"))
            }
            Err(err) => unanswered(err),
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
        let choice = if self.operator.yes || self.included > 0 {
            StageChoice::Run
        } else if self.operator.interactive {
            self.show_stage(procedure, index, stage);
            self.unseen = self.not_yet_known(stage);
            self.settle();
            match self.operator.confirm_stage(&stage.name) {
                Ok(choice) => choice,
                Err(err) => return unanswered(err),
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

    /// Mutating steps of `stage` (included ones too) whose shown command still holds a
    /// placeholder for an output the stage itself produces.
    fn not_yet_known(&self, stage: &Stage) -> std::collections::HashSet<String> {
        let mut outputs = self.outputs.clone();
        outputs.placeholders = true;
        let mut order = Vec::new();
        for step in &stage.steps {
            order.push(step);
            if let StepKind::Include(include) = &step.kind
                && let Some(inner) = self.plan.runbook.procedures.get(&include.procedure)
            {
                crate::plan::steps_in_order(&self.plan.runbook, inner, &mut order);
            }
        }
        order
            .into_iter()
            .filter(|s| s.mutates() && !self.completed.contains_key(&s.id))
            .filter(|s| {
                render(self.plan, s, &outputs).map_or(true, |r| {
                    let shown = r.command_line(self.plan).or_else(|| http_line(self.plan, &r));
                    shown.is_some_and(|c| c.contains("<steps."))
                })
            })
            .map(|s| s.id.clone())
            .collect()
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
            self.included += 1;
            let flow = self.procedure(include.procedure.clone()).await;
            self.included -= 1;
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
            let given = self.operator.confirmations.targets.get(&step.id).or_else(|| self.plan.answers.get(&step.id));
            match self.operator.type_to_confirm(given.map(String::as_str), &target, &what) {
                Ok(true) => {}
                Ok(false) => {
                    return Flow::Stop(
                        Outcome::Aborted,
                        format!("the operator did not confirm `{target}` for step `{}`", step.id),
                    );
                }
                Err(err) => return unanswered(err),
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
            let command = rendered.command_line(self.plan).or_else(|| http_line(self.plan, &rendered));
            if self.unseen.remove(&step.id) && self.operator.interactive && !self.operator.yes {
                // See before you confirm: the stage was shown with a placeholder here.
                let shown = command.clone().unwrap_or_else(|| step.id.clone());
                self.emit(Event::Notice {
                    id: step.id.clone(),
                    text: format!("{} will now run, with the choice just made:\n$ {shown}", step.id),
                });
                match self.operator.confirm_step(&step.id) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Flow::Stop(
                            Outcome::Aborted,
                            format!("the operator stopped the run before step `{}`", step.id),
                        );
                    }
                    Err(err) => return unanswered(err),
                }
            }
            if let Some(stop) = self.unrecorded(step) {
                return stop;
            }
            let event = Event::StepStarted {
                id: step.id.clone(),
                name: step.name.clone(),
                kind: step.kind_name(),
                command,
                attempt,
            };
            if step.mutates() {
                // No mutation without its record: a subscriber that cannot record it stops it.
                if let Err(reason) = self.emit_before_mutation(&event) {
                    let message = format!("step `{}` did not start: {reason}", step.id);
                    self.finish(step, Attempt::failed(message.clone()), started);
                    return Flow::Stop(Outcome::Failed, message);
                }
            } else {
                self.emit(event);
            }
            if let Some(stop) = self.unrecorded(step) {
                return stop;
            }
            if step.mutates() {
                self.mutated = true;
            }
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
            if result.last {
                // Refused, not failed: another attempt would be refused too.
                return self.fail(step, result, started).await;
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
                // A handler's stages are confirmed on their own, even inside an include.
                let included = std::mem::take(&mut self.included);
                let flow = self.procedure(handler.clone()).await;
                self.included = included;
                match flow {
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
                    Err(AskError::Interrupted) => {
                        Attempt::with_status(StepStatus::Interrupted, "interrupted at the question")
                    }
                    Err(err) => Attempt::failed(err.to_string()),
                }
            }
            Action::Prompt { question, choices, labels, default, secret, .. } => {
                self.prompt(step, question, choices.as_deref(), labels.as_deref(), default.as_deref(), *secret)
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
        labels: Option<&[String]>,
        default: Option<&str>,
        secret: bool,
    ) -> Attempt {
        let StepKind::Prompt(prompt) = &step.kind else { return Attempt::failed("not a prompt") };
        let check = |answer: &str| -> Result<crate::param::ParamValue, String> {
            let shown = if secret { crate::redact::MASK } else { answer };
            if secret && answer.chars().count() < crate::redact::MIN_SECRET_LEN {
                return Err(format!(
                    "the secret answer is shorter than {} characters, too short to be masked reliably",
                    crate::redact::MIN_SECRET_LEN
                ));
            }
            prompt.check_answer(answer, choices, shown, chrono::Utc::now())
        };
        let given = self.plan.answers.get(&step.id).cloned();
        let answer = match given {
            Some(answer) => answer,
            None => {
                let items: Option<Vec<operator::Choice<'_>>> = choices.map(|values| {
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, value)| operator::Choice {
                            value,
                            label: labels.and_then(|l| l.get(i)).map(String::as_str),
                        })
                        .collect()
                });
                match self.operator.prompt(question, items.as_deref(), default, secret, &|a| check(a).map(|_| ())) {
                    Ok(Some(answer)) => answer,
                    Ok(None) => return Attempt::failed(format!("no answer: pass --answer {}=VALUE", step.id)),
                    Err(AskError::Interrupted) => {
                        return Attempt::with_status(StepStatus::Interrupted, "interrupted at the question");
                    }
                    Err(err) => return Attempt::failed(err.to_string()),
                }
            }
        };
        let value = match check(&answer) {
            Ok(value) => value,
            Err(reason) => {
                // A wrong `--answer` found before anything changed is a usage error.
                self.refused_answer = self.plan.answers.contains_key(&step.id) && !self.mutated;
                let from = if self.plan.answers.contains_key(&step.id) { "--answer: " } else { "" };
                return Attempt::failed(format!("{from}{reason}"));
            }
        };
        if secret {
            self.plan.redactor.add(&answer);
        }
        let label =
            labels.and_then(|l| choices.and_then(|c| c.iter().position(|v| *v == answer)).and_then(|i| l.get(i)));
        let output = StepOutput { output: Some(value.as_text()), ..StepOutput::default() };
        let recorded = match label {
            Some(label) if !secret => Some(format!("{answer} ({label})")),
            _ => (!secret).then_some(answer),
        };
        Attempt { answer: recorded, ..Attempt::done(Some(output)) }
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
            remove_env: self.options.remove_env.iter().chain(&self.plan.hidden_env).cloned().collect(),
            stdin: stdin.as_ref().map(|s| s.value.clone()),
            cwd,
            timeout: rendered.timeout,
            capture_limit: capture.map(|_| self.options.capture_limit),
            // A secret step's stdout is its secret: never shown. Its stderr is shown masked,
            // once the step has ended and its output is registered as a secret.
            show_stdout: !step.secret && !self.probing,
            show_stderr: !self.probing,
            redactor: self.plan.redactor.clone(),
        };
        let id = step.id.clone();
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut held = Held::default();
        let secret = step.secret;
        let strip_ansi = self.options.strip_ansi;
        let cancel = self.cancel.clone();
        let subscribers = &mut self.subscribers;
        let ended = process::run(spec, &cancel, |stream, chunk| {
            let Some(chunk) = chunk else {
                subscribers.iter_mut().for_each(|s| s.flush());
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
            let event = Event::Output { id: id.clone(), stream, text: chunk };
            for subscriber in subscribers.iter_mut() {
                subscriber.event(&event);
            }
        })
        .await;
        if secret {
            // Whatever the step printed on stdout is a secret, even when it failed: its
            // stderr may quote it.
            if let Ok(process::Ended::Exited { captured, .. }) = &ended {
                register_captured(&self.plan.redactor, capture, captured);
            }
            let shown = held.shown(&self.plan.redactor);
            if !shown.is_empty() {
                keep_tail(&mut tail, shown.as_bytes());
                self.emit(Event::Output { id: step.id.clone(), stream: Stream::Stderr, text: shown.into_bytes() });
                self.subscribers.iter_mut().for_each(|s| s.flush());
            }
        }
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
                    let hidden = if step.secret { " (its stdout is not shown: secret step)" } else { "" };
                    let detail = if tail.is_empty() { String::new() } else { format!(": {}", tail.join(" / ")) };
                    return Attempt {
                        exit_code: code,
                        ..Attempt::failed(format!("`{program}` {how}{hidden}{detail}"))
                    };
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
                    register_secret(&self.plan.redactor, &output);
                }
                Attempt { exit_code: code, ..Attempt::done(Some(output)) }
            }
        }
    }

    async fn http(&mut self, step: &Step, rendered: &Rendered, capture: Option<Capture>) -> Attempt {
        let direct = match (&self.options.http_guard, &rendered.action) {
            (Some(guard), Action::Http { url, .. }) => match guard.check(url) {
                Ok(fake) => fake,
                Err(crate::rehearsal::Refused(reason)) => return Attempt { last: true, ..Attempt::failed(reason) },
            },
            _ => false,
        };
        match http::send(&rendered.action, rendered.timeout, self.options.capture_limit, &self.cancel, direct).await {
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
                if let Err(message) = http::check(&rendered.action, &response, step.secret, &self.plan.redactor) {
                    return Attempt { exit_code: Some(i32::from(response.status)), ..Attempt::failed(message) };
                }
                let mut output = match capture.map(|c| captured_output(c, &response.body)) {
                    None => StepOutput::default(),
                    Some(Ok(output)) => output,
                    Some(Err(message)) => return Attempt::failed(message),
                };
                output.status = Some(i64::from(response.status));
                if step.secret {
                    if let Err(message) = check_secret_output(&output) {
                        return Attempt { exit_code: Some(i32::from(response.status)), ..Attempt::failed(message) };
                    }
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

fn redact_event(redactor: &crate::redact::Redactor, event: Event) -> Event {
    if redactor.is_empty() {
        return event;
    }
    let text = |t: String| redactor.redact(&t);
    match event {
        Event::Notice { id, text: t } => Event::Notice { id, text: text(t) },
        Event::StepStarted { id, name, kind, command, attempt } => {
            Event::StepStarted { id, name, kind, command: command.map(text), attempt }
        }
        Event::StageSkipped { procedure, index, name, reason } => {
            Event::StageSkipped { procedure, index, name, reason: text(reason) }
        }
        Event::StepFinished { id, status, duration, exit_code, message, output, answer } => Event::StepFinished {
            id,
            status,
            duration,
            exit_code,
            message: message.map(text),
            output: output.map(|o| redact_json(redactor, o)),
            answer: answer.map(text),
        },
        Event::RunFinished { outcome, message, duration, done, skipped, failed } => {
            Event::RunFinished { outcome, message: message.map(text), duration, done, skipped, failed }
        }
        // Child output is masked as it streams (see `process`), with secrets split across
        // reads; the run's and stages' names are the runbook's own.
        other @ (Event::Output { .. } | Event::RunStarted { .. } | Event::StageStarted { .. }) => other,
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
    plan.reachable_steps()
}
