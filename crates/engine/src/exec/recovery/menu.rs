//! The failure menu: in an interactive run, a step that fails where its `on_failure` aborts
//! (the default) asks the operator what now — `retry`, `edit` an answer the step uses and
//! retry, `skip` it with a reason, `undo` this run's changes, or `abort` (resumable).
//!
//! Every choice is journaled as `Event::FailureChoice` (who, the reason, the edited answer
//! masked when secret) and `runbook show` tells it. Without a terminal, with `--yes`, with
//! `--on-failure undo|abort`, while the undo engine runs, and for steps whose `on_failure` is
//! `continue` or a procedure, nothing is asked: the runbook's `on_failure` applies as before.

use std::collections::BTreeSet;

use crate::exec::operator::{AskError, MenuChoice};
pub use crate::exec::reads::steps_read_by;
use crate::exec::{Flow, Runner};
use runbook_lang::step::{OnFailure, Step, StepKind};
use runbook_state::event::{Event, Outcome};

/// Who chose at the menu, as every record names the operator.
fn chooser() -> String {
    runbook_state::identity::Identity::current().display()
}

/// One line for the terminal and `runbook show`.
pub fn describe_choice(
    id: &str,
    choice: &str,
    reason: Option<&str>,
    prompt: Option<&str>,
    answer: Option<&str>,
) -> String {
    let what = match choice {
        "retry" => format!("retry `{id}`"),
        "edit" => format!(
            "answer `{}` changed to {:?}, then retry `{id}`",
            prompt.unwrap_or("?"),
            answer.unwrap_or(crate::redact::MASK)
        ),
        "skip" => format!("skip `{id}`: {}", reason.unwrap_or("")),
        "undo" => format!("undo this run's changes after `{id}` failed"),
        "abort" => match reason {
            Some(why) => format!("abort after `{id}` failed (resumable): {why}"),
            None => format!("abort after `{id}` failed (resumable)"),
        },
        other => format!("{other} after `{id}` failed"),
    };
    format!("↳ failure menu: {}", what.replace(['\n', '\r'], " "))
}

impl<'p> Runner<'p> {
    /// Whether `step`'s failure goes to the menu rather than straight to `on_failure`.
    pub(crate) fn offers_menu(&self, step: &Step) -> bool {
        self.operator.interactive
            && !self.operator.yes
            && !self.probing
            && !self.undoing
            && !self.on_failure_undo
            && !self.on_failure_abort
            && !self.refused_answer
            && step.on_failure == OnFailure::Abort
    }

    pub(crate) fn find_step(&self, id: &str) -> Option<&'p Step> {
        let plan: &'p crate::plan::Plan = self.plan;
        plan.runbook.procedures.values().flat_map(|p| p.stages.iter().flat_map(|s| &s.steps)).find(|s| s.id == id)
    }

    /// Prompts whose answer `step`'s own templates read (not through other steps' outputs:
    /// those steps would hold the old value).
    pub(crate) fn prompts_used(&self, step: &Step) -> Vec<String> {
        crate::exec::reads::steps_read_by_itself(step)
            .into_iter()
            .filter(|id| *id != step.id)
            .filter(|id| self.find_step(id).is_some_and(|s| matches!(s.kind, StepKind::Prompt(_))))
            .collect()
    }

    /// Why `step` could not render, when it reads a step skipped at the menu.
    pub(crate) fn uses_skipped(&self, step: &Step) -> Option<String> {
        let used = steps_read_by(step);
        let skipped: Vec<String> =
            used.into_iter().filter(|id| self.menu_skipped.contains(id)).map(|id| format!("`{id}`")).collect();
        (!skipped.is_empty())
            .then(|| format!("it uses the outputs of {}, skipped at the failure menu", skipped.join(", ")))
    }

    fn choice_event(
        &mut self,
        id: &str,
        choice: &'static str,
        reason: Option<String>,
        edited: Option<(String, String)>,
    ) {
        let (prompt, answer) = edited.map_or((None, None), |(p, a)| (Some(p), Some(a)));
        self.emit(Event::FailureChoice { id: id.to_owned(), choice, reason, prompt, answer, by: chooser() });
    }

    /// After `step` failed (its failure already journaled with `message`): the operator
    /// chooses, the choice is journaled, and the walk goes on accordingly.
    pub(crate) async fn failure_menu(&mut self, step: &Step, message: String) -> Flow {
        let prompts = self.prompts_used(step);
        let undo = !self.undo_owners().is_empty();
        self.settle();
        let choice = match self.operator.failure_menu(&step.id, !prompts.is_empty(), undo) {
            Ok(choice) => choice,
            Err(AskError::Interrupted) => {
                return Flow::Stop(Outcome::Interrupted, format!("{message}; interrupted at the failure menu"));
            }
            // End of input (Ctrl-D) or the terminal went away: the safe choice, resumable.
            Err(err) => {
                self.choice_event(&step.id, "abort", Some(err.to_string()), None);
                return Flow::Stop(Outcome::Aborted, format!("{message}; no choice at the failure menu: {err}"));
            }
        };
        match choice {
            MenuChoice::Retry => {
                self.choice_event(&step.id, "retry", None, None);
                self.failed = self.failed.saturating_sub(1);
                Flow::Retry
            }
            MenuChoice::Edit => self.edit_and_retry(step, &prompts).await,
            MenuChoice::Skip => {
                let reason = match self.operator.skip_reason(&step.id) {
                    Ok(reason) => reason,
                    Err(AskError::Interrupted) => {
                        return Flow::Stop(Outcome::Interrupted, format!("{message}; interrupted at the failure menu"));
                    }
                    Err(err) => {
                        self.choice_event(&step.id, "abort", Some(err.to_string()), None);
                        return Flow::Stop(Outcome::Aborted, format!("{message}; no reason to skip: {err}"));
                    }
                };
                self.choice_event(&step.id, "skip", Some(reason), None);
                self.menu_skipped.insert(step.id.clone());
                self.failed = self.failed.saturating_sub(1);
                self.skipped += 1;
                Flow::Continue
            }
            MenuChoice::Undo => {
                self.choice_event(&step.id, "undo", None, None);
                Box::pin(self.undo_after_failure(message)).await
            }
            MenuChoice::Abort => {
                self.choice_event(&step.id, "abort", None, None);
                Flow::Stop(Outcome::Aborted, format!("{message}; the operator aborted at the failure menu"))
            }
        }
    }

    /// `edit`: the chosen prompt is asked again (a new answer, journaled as that prompt's
    /// step), then the failed step runs again with it.
    async fn edit_and_retry(&mut self, step: &Step, prompts: &[String]) -> Flow {
        let interrupted = || Flow::Stop(Outcome::Interrupted, "interrupted at the failure menu".into());
        let id = match self.operator.pick_prompt(prompts) {
            Ok(id) => id,
            Err(AskError::Interrupted) => return interrupted(),
            Err(err) => return Flow::Stop(Outcome::Aborted, format!("no answer to edit: {err}")),
        };
        let Some(prompt) = self.find_step(&id) else {
            return Flow::Stop(Outcome::Failed, format!("no prompt `{id}` to ask again"));
        };
        self.completed.remove(&id);
        self.ask_again = true;
        let flow = Box::pin(self.step(prompt)).await;
        self.ask_again = false;
        if !matches!(flow, Flow::Continue) {
            return flow;
        }
        // Secret answers were registered with the redactor when given: masked here.
        let answer = self
            .outputs
            .values
            .get(&id)
            .and_then(|v| v.get_attr("output").ok())
            .map_or_else(String::new, |v| self.plan.redactor.redact(&v.to_string()));
        self.choice_event(&step.id, "edit", None, Some((id.clone(), answer)));
        self.failed = self.failed.saturating_sub(1);
        // A changed answer goes through what a first one went through (SPEC rule 10): the
        // asserts that read it are evaluated again before the step runs with it; one that
        // fails stops here, at its own failure, before anything changes.
        for check in self.asserts_reading(&id, step) {
            self.completed.remove(&check.id);
            match Box::pin(self.step(check)).await {
                Flow::Continue => {}
                stop => return stop,
            }
        }
        // And the changed command is shown and confirmed, as a stage is.
        self.unseen.insert(step.id.clone());
        Flow::Retry
    }

    /// The `assert:` steps of the run, before `failed` in the walk, that read step `id`'s
    /// output (directly, or through a step that reads it).
    fn asserts_reading(&self, id: &str, failed: &Step) -> Vec<&'p Step> {
        let plan: &'p crate::plan::Plan = self.plan;
        let mut order = Vec::new();
        if let Some(procedure) = plan.runbook.procedures.get(&plan.procedure) {
            crate::plan::steps_in_order(&plan.runbook, procedure, &mut order);
        }
        let before = order.iter().position(|s| s.id == failed.id).unwrap_or(order.len());
        let mut tainted: BTreeSet<String> = BTreeSet::from([id.to_owned()]);
        let mut asserts = Vec::new();
        for step in order.into_iter().take(before) {
            if steps_read_by(step).iter().any(|r| tainted.contains(r)) {
                tainted.insert(step.id.clone());
                if matches!(step.kind, StepKind::Assert(_)) {
                    asserts.push(step);
                }
            }
        }
        asserts
    }
}
