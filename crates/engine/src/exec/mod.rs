//! Execution: walks a checked [`Plan`] stage by stage, asks the operator where the runbook
//! says so, runs each step and reports events to its subscribers.

mod ansi;
pub mod changes;
pub mod context;

mod line;
pub mod operator;
mod preflight;
mod process;
pub mod reads;
pub mod recovery;
mod steps;
pub mod terminal;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::plan::{Outputs, Plan, StepOutput};
use crate::render::render;
pub use context::Options;
use context::{Attempt, Events, StepContext};
use operator::{AskError, Operator, StageChoice};
use runbook_lang::model::{Procedure, Stage};
use runbook_lang::step::{OnFailure, Step, StepKind};
use runbook_state::event::{self, Event, Outcome, StepStatus, Subscriber};

/// Captured output above this is an error, not a memory problem (`RUNBOOK_CAPTURE_LIMIT`).
pub const DEFAULT_CAPTURE_LIMIT: usize = 16 * 1024 * 1024;

/// A question that got no answer ends the run: Ctrl-C as an interruption (exit 130,
/// resumable), anything else as the operator's abort.
fn unanswered(err: AskError) -> Flow {
    match err {
        AskError::Interrupted => Flow::Stop(Outcome::Interrupted, "interrupted at a question to the operator".into()),
        AskError::Failed(_) => Flow::Stop(Outcome::Aborted, err.to_string()),
    }
}

/// How a walk through steps goes on.
pub(crate) enum Flow {
    Continue,
    Stop(Outcome, String),
    /// The operator chose `retry` at the failure menu: the step runs again.
    Retry,
}

pub struct Runner<'p> {
    plan: &'p Plan,
    operator: Operator,
    options: Options,
    events: Events,
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
    /// Mutating steps finished in this attempt, in order (the undo engine's owners).
    finished: Vec<String>,
    /// Steps finished in earlier attempts in the journal's order (`runbook undo`); `None`:
    /// those in `completed`, in the runbook's order.
    pub earlier_done: Option<Vec<String>>,
    /// Steps whose undo finished (journaled `undo` events, and this attempt's).
    pub undone: std::collections::HashSet<String>,
    /// The mutating step that failed last (it may have changed part of what it meant to):
    /// the undo engine names it for the operator to check; it is not undone.
    pub failed_mutation: Option<String>,
    /// The undo engine is running: a failing undo step does not start another undo.
    undoing: bool,
    /// `--on-failure undo`: a step that fails where its `on_failure` aborts undoes the run.
    pub on_failure_undo: bool,
    /// `--on-failure abort` given explicitly: a failed step stops the run, no menu.
    pub on_failure_abort: bool,
    /// The last undo state of each owner in this attempt (what `runbook undo` has left).
    undo_states: std::collections::HashMap<String, event::UndoState>,
    /// The failure menu's `edit`: a prompt is asked again, whatever `--answer` said.
    ask_again: bool,
    /// Steps the operator skipped at the failure menu.
    menu_skipped: std::collections::HashSet<String>,
    /// Manual steps passed in this attempt without a person acknowledging them.
    unattended: std::collections::HashSet<String>,
    /// When the run started (its first attempt, for a resume): time to recovery counts
    /// from here.
    pub run_started: chrono::DateTime<chrono::Utc>,
    /// A `recovery: true` step has passed in this run (in any attempt): the run's time to
    /// recovery is recorded once, by the first.
    pub recovered: bool,
}

impl<'p> Runner<'p> {
    /// No step finished, in this attempt or an earlier one, and nothing started changing
    /// anything: a run stopped at its first question has nothing to resume.
    pub fn nothing_ran(&self) -> bool {
        self.done == 0 && self.completed.is_empty() && !self.mutated && self.finished.is_empty()
    }

    pub fn new(plan: &'p Plan, options: Options, subscribers: Vec<Box<dyn Subscriber>>) -> Self {
        let operator = Operator {
            interactive: options.interactive,
            yes: options.yes,
            answers: plan.answers.clone(),
            confirmations: options.confirmations.clone(),
            manual_by_person: options.manual_by_person,
        };
        Runner {
            plan,
            operator,
            options,
            events: Events::new(subscribers, plan.redactor.clone()),
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
            finished: Vec::new(),
            earlier_done: None,
            undone: std::collections::HashSet::new(),
            failed_mutation: None,
            undoing: false,
            on_failure_undo: false,
            on_failure_abort: false,
            undo_states: std::collections::HashMap::new(),
            ask_again: false,
            menu_skipped: std::collections::HashSet::new(),
            unattended: std::collections::HashSet::new(),
            run_started: chrono::Utc::now(),
            recovered: false,
        }
    }

    pub fn subscribe(&mut self, subscriber: Box<dyn Subscriber>) {
        self.events.subscribe(subscriber);
    }

    fn emit(&mut self, event: Event) {
        self.events.emit(event);
    }

    /// SPEC rule 7: no step starts without its durable record. `Some` once the journal
    /// could not write one; the run stops there, resumable from what was recorded.
    fn unrecorded(&self, step: &Step) -> Option<Flow> {
        let err = self.events.broken()?;
        Some(Flow::Stop(Outcome::Failed, format!("stopped before step `{}` ran: {err}", step.id)))
    }

    fn emit_before_mutation(&mut self, event: &Event) -> Result<(), String> {
        self.events.before_mutation(event)
    }

    /// Before the run waits on the operator: what subscribers buffered goes out.
    fn settle(&mut self) {
        self.events.flush();
    }

    /// One attempt of a rendered step, by its kind, with only what a kind may use.
    async fn execute(&mut self, step: &Step, rendered: &crate::render::Rendered) -> Attempt {
        let mut context = StepContext {
            plan: self.plan,
            outputs: &self.outputs,
            options: &self.options,
            cancel: &self.cancel,
            operator: &self.operator,
            events: &mut self.events,
            probing: self.probing,
            ask_again: self.ask_again,
            sampling: false,
        };
        let attempt = steps::execute(&mut context, step, rendered).await;
        if attempt.answer_refused {
            // A wrong `--answer` found before anything changed is a usage error.
            self.refused_answer = !self.mutated;
        }
        attempt
    }

    pub async fn run(&mut self) -> Outcome {
        let started = self.start_run();
        let flow = match self.confirm_environment() {
            Flow::Continue => self.procedure(self.plan.procedure.clone()).await,
            stop => stop,
        };
        let (outcome, message) = match flow {
            Flow::Continue | Flow::Retry => (Outcome::Done, None),
            Flow::Stop(outcome, message) => (outcome, Some(message)),
        };
        self.finish_run(started, outcome, message);
        outcome
    }

    /// The run's first record; what earlier attempts produced is known from the start, so
    /// stage previews show it instead of placeholders.
    fn start_run(&mut self) -> Instant {
        let started = Instant::now();
        let plan = self.plan;
        self.emit(Event::RunStarted {
            runbook: plan.runbook.name.clone(),
            procedure: plan.procedure.clone(),
            environment: plan.environment.clone(),
            file: plan.runbook.source.display_path(),
        });
        let earlier: Vec<(String, StepOutput)> =
            self.completed.iter().filter_map(|(id, o)| o.clone().map(|o| (id.clone(), o))).collect();
        for (id, output) in &earlier {
            self.outputs.insert(id, output);
        }
        started
    }

    /// The run's last record, its message masked.
    fn finish_run(&mut self, started: Instant, outcome: Outcome, message: Option<String>) {
        self.emit(Event::RunFinished {
            outcome,
            message: message.map(|m| self.plan.redactor.redact(&m)),
            duration: started.elapsed(),
            done: self.done,
            skipped: self.skipped,
            failed: self.failed,
        });
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
            // An answer given ahead (`--answer`) is what its prompt would give: read steps and
            // `done_if`s that use it are judged with it (the run checks it again when asked).
            if let (StepKind::Prompt(_), Some(answer)) = (&step.kind, self.plan.answers.get(&step.id)) {
                self.outputs.insert(&step.id, &StepOutput { output: Some(answer.clone()), ..StepOutput::default() });
                continue;
            }
            if !matches!(step.kind, StepKind::Run(_) | StepKind::Shell(_) | StepKind::Http(_)) || step.mutates() {
                continue;
            }
            // A step that would not run (its `when` is false or not decidable yet) is not probed.
            if let Some(when) = &step.when
                && !matches!(when.eval(&self.plan.context(&self.outputs)), Ok(v) if v.is_true() && !runbook_lang::template::is_placeholder(&v))
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
        // Done before (a resume): not confirmed again, not run again, and not "skipped",
        // which is what the operator's `s` means.
        if !stage.steps.is_empty() && stage.steps.iter().all(|s| self.done_earlier(s)) {
            self.emit(Event::StageDoneEarlier {
                procedure: procedure.name.clone(),
                index: index + 1,
                name: stage.name.clone(),
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
                    let shown = r.command_line(self.plan).or_else(|| crate::render::http_line(self.plan, &r));
                    shown.is_some_and(|c| c.contains("<steps."))
                })
            })
            .map(|s| s.id.clone())
            .collect()
    }

    /// A step the walk does not run again: finished in an earlier attempt of this run, or an
    /// `include` whose steps (at any depth) all did.
    fn done_earlier(&self, step: &Step) -> bool {
        if self.completed.contains_key(&step.id) {
            return true;
        }
        let StepKind::Include(include) = &step.kind else { return false };
        let Some(inner) = self.plan.runbook.procedures.get(&include.procedure) else { return false };
        let mut order = Vec::new();
        crate::plan::steps_in_order(&self.plan.runbook, inner, &mut order);
        let mut leaves = order.iter().filter(|s| !matches!(s.kind, StepKind::Include(_))).peekable();
        leaves.peek().is_some() && leaves.all(|s| self.completed.contains_key(&s.id))
    }

    /// A step finished by an earlier attempt: its outputs are back, it does not run again.
    fn restore(&mut self, step: &Step) -> bool {
        let Some(output) = self.completed.get(&step.id).cloned() else { return false };
        if let Some(output) = output {
            self.outputs.insert(&step.id, &output);
        }
        true
    }

    /// A step, again as long as the operator chooses `retry` at the failure menu.
    async fn step(&mut self, step: &Step) -> Flow {
        loop {
            match self.step_once(step).await {
                Flow::Retry => {}
                flow => return flow,
            }
        }
    }

    async fn step_once(&mut self, step: &Step) -> Flow {
        let started = Instant::now();
        if self.restore(step) {
            self.emit(Event::Notice { id: step.id.clone(), text: format!("{}: done in an earlier attempt", step.id) });
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
        if step.mutates()
            && let Some(flow) = self.already_done(step, started).await
        {
            return flow;
        }
        if step.mutates()
            && !self.undoing
            && let Some(message) = self.undo_unrenderable(step)
        {
            // Its undo could never run: found now, before the change, not when it is needed.
            let attempt = Attempt { last: true, not_started: true, ..Attempt::failed(message) };
            return self.fail(step, attempt, started).await;
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
                    let why = self.uses_skipped(step).map(|s| format!(" ({s})")).unwrap_or_default();
                    let message = format!("cannot render the step{why}: {err}");
                    return self.fail(step, Attempt::failed(message), started).await;
                }
            };
            let command = rendered.command_line(self.plan).or_else(|| crate::render::http_line(self.plan, &rendered));
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
                command: command.clone(),
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
            if result.said.is_none() {
                // Nothing said: the command itself is what it changed.
                result.said = command.map(|c| format!("$ {c}"));
            }
            if matches!(result.status, StepStatus::Interrupted | StepStatus::TimedOut) {
                self.interrupted_note(step);
            }
            if result.status == StepStatus::Interrupted {
                self.finish(step, result, started);
                return Flow::Stop(Outcome::Interrupted, format!("interrupted during step `{}`", step.id));
            }
            if result.status == StepStatus::Aborted {
                let message = result.message.clone().unwrap_or_else(|| format!("stopped at step `{}`", step.id));
                self.finish(step, result, started);
                return Flow::Stop(Outcome::Aborted, message);
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

    /// `done_if:` — the mutating step's effect already holds (a resume after a lost reply, a
    /// hand-over, `--from`, an effect someone made by hand): journaled as already done with
    /// the evidence, not run again. The read steps the check names are read again first
    /// when an earlier attempt read them, so the check sees the world as it is now.
    async fn already_done(&mut self, step: &Step, started: Instant) -> Option<Flow> {
        let check = step.done_if.as_ref()?;
        let reads = crate::exec::reads::steps_read(&check.text);
        let mut refreshed = Vec::new();
        for id in reads {
            let Some(read) = self.read_step(&id) else { continue };
            if self.completed.remove(&id).is_some() {
                if let Flow::Stop(outcome, message) = Box::pin(self.step(read)).await {
                    return Some(Flow::Stop(outcome, message));
                }
                refreshed.push(format!("`{id}`"));
            }
        }
        match check.is_true(&self.plan.context(&self.outputs)) {
            Ok(true) => {
                let again = if refreshed.is_empty() {
                    String::new()
                } else {
                    format!(", read again: {}", refreshed.join(", "))
                };
                let message = format!("already done: `done_if: {}` holds{again}; not run again", check.text);
                self.emit(Event::Notice { id: step.id.clone(), text: format!("{}: {message}", step.id) });
                self.finish(step, Attempt { message: Some(message), ..Attempt::done(None) }, started);
                Some(Flow::Continue)
            }
            Ok(false) => None,
            Err(err) => {
                // Not knowing is not "done": the step runs, and says why it could not tell.
                self.emit(Event::Notice {
                    id: step.id.clone(),
                    text: format!("{}: `done_if` could not be evaluated ({err}); the step runs", step.id),
                });
                None
            }
        }
    }

    /// Why an `undo:` step of `step` cannot be rendered with what is known now (a value the
    /// API left out, read before the change): outputs not known yet (the step's own, those
    /// of earlier undo steps) are placeholders and not an error.
    fn undo_unrenderable(&self, step: &Step) -> Option<String> {
        let mut outputs = self.outputs.clone();
        outputs.placeholders = true;
        step.undo.iter().find_map(|undo| {
            render(self.plan, undo, &outputs).err().map(|err| {
                format!(
                    "not run: its undo step `{}` could not be rendered, so this change could not be undone: {}",
                    undo.id, err.0
                )
            })
        })
    }

    /// The command of a mutating step's first undo step (a process step), rendered with what
    /// is known now: how the state before the change is restored, so it names that state.
    fn put_back(&self, step: &Step) -> Option<String> {
        let undo = step.undo.first()?;
        let rendered = render(self.plan, undo, &self.outputs).ok()?;
        rendered.command_line(self.plan)
    }

    /// `on_interrupt:` — what keeps running when this step is cut short, shown and journaled.
    fn interrupted_note(&mut self, step: &Step) {
        let Some(note) = &step.on_interrupt else { return };
        let text = match note.render(&self.plan.context(&self.outputs)) {
            Ok(text) => text,
            Err(err) => format!("(its on_interrupt text could not be rendered: {err}) {}", note.text),
        };
        self.emit(Event::Notice { id: step.id.clone(), text: format!("{} was cut short: {}", step.id, text.trim()) });
    }

    /// A read step of the runbook by id (the steps `done_if` may read again).
    fn read_step(&self, id: &str) -> Option<&'p Step> {
        self.find_step(id)
            .filter(|s| !s.mutates() && matches!(s.kind, StepKind::Run(_) | StepKind::Shell(_) | StepKind::Http(_)))
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
                if self.offers_menu(step) {
                    return Box::pin(self.failure_menu(step, message)).await;
                }
                if self.on_failure_undo && !self.undoing {
                    return Box::pin(self.undo_after_failure(message)).await;
                }
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
                    Flow::Continue | Flow::Retry => {
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
        if step.mutates() && !self.undoing {
            match attempt.status {
                StepStatus::Done => self.finished.push(step.id.clone()),
                // A step the operator stopped at never started its change.
                StepStatus::Skipped | StepStatus::Aborted => {}
                _ if attempt.not_started => {}
                _ => self.failed_mutation = Some(step.id.clone()),
            }
        }
        match attempt.status {
            StepStatus::Done => self.done += 1,
            StepStatus::Skipped => self.skipped += 1,
            StepStatus::Aborted => {}
            _ => self.failed += 1,
        }
        if matches!(step.kind, StepKind::Manual(_))
            && attempt.answer.as_deref().is_some_and(|a| a.starts_with(runbook_state::event::UNATTENDED))
        {
            self.unattended.insert(step.id.clone());
        }
        let redactor = &self.plan.redactor;
        let output = if step.output_is_secret() {
            None
        } else {
            attempt
                .output
                .as_ref()
                .and_then(|o| serde_json::to_value(o).ok())
                .map(|v| crate::redact::redact_json(redactor, v))
        };
        let recovered_now = attempt.status == StepStatus::Done && step.recovery && !self.recovered && !self.probing;
        self.emit(Event::StepFinished {
            id: step.id.clone(),
            status: attempt.status,
            duration: started.elapsed(),
            // An HTTP step's status code is not an exit status (`show` would say `exit 200`).
            exit_code: attempt.exit_code.filter(|_| !speaks_http(step)),
            http_status: attempt.exit_code.filter(|_| speaks_http(step)).and_then(|c| u16::try_from(c).ok()),
            message: attempt.message.map(|m| redactor.redact(&m)),
            changed: (step.mutates() && attempt.status == StepStatus::Done)
                .then(|| crate::exec::changes::changed(output.as_ref(), attempt.said.as_deref()))
                .flatten()
                .map(|c| match self.put_back(step) {
                    // Before → after: what it is now, and the command that restores what was.
                    Some(back) => format!("{c} — before, put back with: $ {back}"),
                    None => c,
                })
                .map(|c| redactor.redact(&c)),
            output,
            answer: attempt.answer.map(|a| redactor.redact(&a)),
        });
        if recovered_now {
            self.recovered = true;
            let after = (chrono::Utc::now() - self.run_started).to_std().unwrap_or_default();
            self.emit(Event::Recovered { id: step.id.clone(), after, seconds: round_ms(after) });
        }
    }
}

/// Seconds to the millisecond, as journals and `history --format json` give them.
fn round_ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// An `http:` step, or a watch that samples one: its "exit code" is a response status.
fn speaks_http(step: &Step) -> bool {
    match &step.kind {
        StepKind::Http(_) => true,
        StepKind::Watch(watch) => matches!(*watch.sample, StepKind::Http(_)),
        _ => false,
    }
}
