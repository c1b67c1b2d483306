//! The undo engine: runs the `undo:` steps of every mutating step this run finished, in
//! this attempt and in earlier ones known from the journal, newest first.
//!
//! Entry point: [`Runner::undo_finished`]. Each owner's undo is confirmed like a stage
//! (interactive confirm, `--yes`, typed targets of the undo steps themselves), its steps
//! run through the ordinary step walk (journaled; a mutating undo step starts only once its
//! record is durable) and `Event::Undo` says which step each undo belongs to. A step whose
//! undo steps all finished before (a second `runbook undo`) is not undone twice.

use std::future::Future;
use std::pin::Pin;

use crate::exec::operator::StageChoice;
use crate::exec::{Flow, Runner, unanswered};
use crate::render::http_line;
use crate::render::{Action, render};
use runbook_lang::step::Step;
use runbook_state::event::{Event, Outcome, UndoState};

/// What an undo came to, for the caller's last word (`runbook undo`, `--on-failure undo`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Undone {
    /// Steps whose undo ran to the end now.
    pub undone: Vec<String>,
    /// Steps undone by an earlier undo.
    pub already: Vec<String>,
    /// Mutating steps without `undo:`: their changes remain.
    pub manual: Vec<String>,
    /// Undos the operator skipped.
    pub skipped: Vec<String>,
    /// Undos whose manual step nobody acknowledged (`--yes`): not undone yet.
    pub waiting: Vec<String>,
}

impl Undone {
    /// One line: what was put back and what remains.
    pub fn summary(&self) -> String {
        let list = |ids: &[String]| ids.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !self.undone.is_empty() {
            parts.push(format!("undone: {}", list(&self.undone)));
        }
        if !self.already.is_empty() {
            parts.push(format!("undone before: {}", list(&self.already)));
        }
        if !self.skipped.is_empty() {
            parts.push(format!("undo skipped: {}", list(&self.skipped)));
        }
        if !self.waiting.is_empty() {
            parts.push(format!("waiting for a person: {}", list(&self.waiting)));
        }
        if !self.manual.is_empty() {
            parts.push(format!("cannot be undone automatically: {}", list(&self.manual)));
        }
        if parts.is_empty() { "nothing to undo".to_owned() } else { parts.join("; ") }
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl<'p> Runner<'p> {
    /// Steps this run changed something with, newest first: this attempt's in the order
    /// they finished, after earlier attempts' (`earlier_done` when the journal gave the
    /// order, else the runbook's order). Undo steps themselves are not owners.
    pub(crate) fn undo_owners(&self) -> Vec<&'p Step> {
        let walk = self.undo_walk();
        let find = |id: &str| walk.iter().copied().find(|s| s.id == id);
        let mut ids: Vec<&str> = match &self.earlier_done {
            Some(done) => done.iter().map(String::as_str).collect(),
            None => walk.iter().filter(|s| self.completed.contains_key(&s.id)).map(|s| s.id.as_str()).collect(),
        };
        ids.extend(self.finished.iter().map(String::as_str));
        let mut owners: Vec<&'p Step> = Vec::new();
        for id in ids.into_iter().rev() {
            if let Some(step) = find(id).filter(|s| s.mutates())
                && !owners.iter().any(|o| o.id == step.id)
            {
                owners.push(step);
            }
        }
        owners
    }

    /// Every step the run may have run: its walk, then handlers (`on_failure: <procedure>`),
    /// which run outside the walk.
    fn undo_walk(&self) -> Vec<&'p Step> {
        let plan = self.plan;
        let mut walk = Vec::new();
        if let Some(procedure) = plan.runbook.procedures.get(&plan.procedure) {
            crate::plan::steps_in_order(&plan.runbook, procedure, &mut walk);
        }
        for procedure in plan.runbook.procedures.values() {
            walk.extend(procedure.stages.iter().flat_map(|s| &s.steps));
        }
        walk
    }

    /// The undo engine's entry point (the failure menu's `undo`, `runbook undo`,
    /// `--on-failure undo`): undoes every finished mutating step of the run, newest first.
    /// `reason` is journaled with the start of the undo. `Ok` says what was undone and
    /// what remains; `Err` is how the walk stopped (an undo step failed, the operator
    /// stopped, Ctrl-C), with what was undone before that in the journal.
    pub(crate) fn undo_finished<'a>(&'a mut self, reason: &'a str) -> Boxed<'a, Result<Undone, Flow>> {
        Box::pin(async move {
            let owners = self.undo_owners();
            let undoing = std::mem::replace(&mut self.undoing, true);
            self.emit(Event::Notice {
                id: "undo".into(),
                text: format!("undo: {reason}; {} step(s) changed something", owners.len()),
            });
            let failed = self.failed_unfinished();
            let result = self.undo_each(&owners).await.map(|mut undone| {
                undone.manual.extend(failed);
                undone
            });
            self.undoing = undoing;
            result
        })
    }

    /// The mutating step that failed (and did not finish later) is not undone: it may have
    /// changed part of what it meant to, so it is named, with its command, for the operator.
    fn failed_unfinished(&mut self) -> Option<String> {
        let id = self.failed_mutation.clone()?;
        if self.finished.contains(&id) || self.completed.contains_key(&id) {
            return None;
        }
        let step = self.undo_walk().into_iter().find(|s| s.id == id)?;
        let shown = self.shown(step).unwrap_or_else(|| "(command not known)".into());
        let text =
            format!("failed before it finished; not undone, check what it changed: {}$ {shown}", self.rehearsal_mark());
        self.undo_event(step, UndoState::Manual, text);
        Some(id)
    }

    async fn undo_each(&mut self, owners: &[&'p Step]) -> Result<Undone, Flow> {
        let mut undone = Undone::default();
        for (index, owner) in owners.iter().enumerate() {
            if owner.undo.is_empty() {
                let shown = self.shown(owner).unwrap_or_else(|| "(command not known)".into());
                let mark = self.rehearsal_mark();
                self.undo_event(owner, UndoState::Manual, format!("cannot be undone automatically: {mark}$ {shown}"));
                undone.manual.push(owner.id.clone());
                continue;
            }
            if self.undone.contains(&owner.id) {
                self.undo_event(owner, UndoState::Already, "already undone".into());
                undone.already.push(owner.id.clone());
                continue;
            }
            match self.confirm_undo(owner) {
                Ok(StageChoice::Run) => {}
                Ok(StageChoice::Skip) => {
                    self.undo_event(owner, UndoState::Skipped, "the operator skipped its undo".into());
                    undone.skipped.push(owner.id.clone());
                    continue;
                }
                Ok(StageChoice::Stop) => {
                    let text = format!("the operator stopped before undoing `{}`", owner.id);
                    self.undo_event(owner, UndoState::Failed, text.clone());
                    return Err(Flow::Stop(Outcome::Aborted, text));
                }
                Err(flow) => return Err(flow),
            }
            if self.cancel.is_cancelled() {
                return Err(Flow::Stop(Outcome::Interrupted, "interrupted".into()));
            }
            self.undo_event(owner, UndoState::Started, format!("{} undo step(s)", owner.undo.len()));
            for step in &owner.undo {
                if let Flow::Stop(outcome, message) = self.step(step).await {
                    self.undo_event(owner, UndoState::Failed, message.clone());
                    // Older undo steps may depend on this one: they wait for `runbook undo`.
                    let left: Vec<String> = owners[index..]
                        .iter()
                        .filter(|o| !o.undo.is_empty() && !self.undone.contains(&o.id))
                        .map(|o| format!("`{}`", o.id))
                        .collect();
                    return Err(Flow::Stop(
                        outcome,
                        format!("undo of `{}` did not finish: {message}; left to undo: {}", owner.id, left.join(", ")),
                    ));
                }
            }
            // A manual undo step nobody acknowledged (`--yes`) is not an undo done: the
            // change may still be there (the clone not deleted).
            let waiting: Vec<String> =
                owner.undo.iter().filter(|u| self.unattended.contains(&u.id)).map(|u| format!("`{}`", u.id)).collect();
            if !waiting.is_empty() {
                let text = format!(
                    "waiting for a person: the manual undo step {} was not confirmed by a person; acknowledge it with `runbook undo` at a terminal",
                    waiting.join(", ")
                );
                self.undo_event(owner, UndoState::Waiting, text);
                undone.waiting.push(owner.id.clone());
                continue;
            }
            self.undo_event(owner, UndoState::Done, "undone".into());
            self.undone.insert(owner.id.clone());
            undone.undone.push(owner.id.clone());
        }
        Ok(undone)
    }

    /// Like a stage: shown, then confirmed (`--yes` confirms; without a terminal and
    /// without `--yes` the undo stops, SPEC §3).
    fn confirm_undo(&mut self, owner: &Step) -> Result<StageChoice, Flow> {
        if self.operator.yes {
            return Ok(StageChoice::Run);
        }
        if !self.operator.interactive {
            return Ok(StageChoice::Stop);
        }
        let mut text = format!("\nUndo of `{}`:\n", owner.id);
        for step in &owner.undo {
            let shown = self.shown(step).unwrap_or_else(|| step.kind_name().to_owned());
            text.push_str(&format!("  {}: {shown}\n", step.id));
        }
        eprint!("{}", self.plan.redactor.redact(&text));
        self.settle();
        self.operator.confirm_stage(&format!("undo of {}", owner.id)).map_err(unanswered)
    }

    /// The step's command (or manual text) rendered with the outputs known now, masked.
    fn shown(&self, step: &Step) -> Option<String> {
        let mut outputs = self.outputs.clone();
        outputs.placeholders = true;
        let rendered = render(self.plan, step, &outputs).ok()?;
        let line = match &rendered.action {
            Action::Manual { text } => Some(format!("manual: {}", text.trim())),
            _ => rendered.command_line(self.plan).or_else(|| http_line(self.plan, &rendered)),
        };
        line.map(|l| self.plan.redactor.redact(&l))
    }

    fn undo_event(&mut self, owner: &Step, state: UndoState, text: String) {
        self.undo_states.insert(owner.id.clone(), state);
        self.emit(Event::Undo { id: owner.id.clone(), state, text });
    }

    /// Before a command shown for a person to run: in a rehearsal, that it is the fake's.
    fn rehearsal_mark(&self) -> &'static str {
        if self.options.rehearsal_shell.is_some() {
            "(REHEARSAL: against the fake, see the exports above) "
        } else {
            ""
        }
    }

    /// `None` when this attempt undid nothing; else whether `runbook undo` has something
    /// left (an undo started, failed, skipped or waiting for a person; changes without
    /// `undo:` are not). The same rule as `Recorded::undo_left` over a journal.
    pub fn undo_left(&self) -> Option<bool> {
        if self.undo_states.values().all(|s| *s == UndoState::Manual) {
            return None;
        }
        let left = |(id, s): (&String, &UndoState)| {
            matches!(s, UndoState::Started | UndoState::Failed | UndoState::Skipped | UndoState::Waiting)
                && !self.undone.contains(id)
        };
        Some(self.undo_states.iter().any(left))
    }

    /// `runbook undo`'s preflight: without a terminal, `--yes` and every typed target of
    /// an undo step that may run must be given (SPEC §3); names typed ahead must be right.
    pub fn preflight_undo(&self) -> Result<(), String> {
        let plan = self.plan;
        let what = format!("undo of `{} {}`", plan.runbook.name, plan.procedure);
        let given = &self.options.confirmations;
        let owners: Vec<&Step> = self.undo_owners().into_iter().filter(|o| !self.undone.contains(&o.id)).collect();
        let typed: Vec<&Step> = owners.iter().flat_map(|o| &o.undo).filter(|u| u.confirm.is_some()).collect();
        for id in given.targets.keys() {
            if !typed.iter().any(|s| s.id == *id) {
                return Err(format!("--confirm-target {id}=…: the {what} has no `confirm: typed` undo step `{id}`"));
            }
        }
        self.protected_env_typed_ahead(&format!("the {what}"))?;
        if self.options.interactive {
            return Ok(());
        }
        if !self.options.yes && owners.iter().any(|o| !o.undo.is_empty()) {
            return Err(format!(
                "refusing the {what} without a terminal: it changes things and nobody can confirm each undo; run it from a terminal, or pass --yes to confirm ahead"
            ));
        }
        let missing: Vec<String> = typed
            .iter()
            .filter(|s| !given.targets.contains_key(&s.id) && !self.completed.contains_key(&s.id))
            .map(|s| format!("--confirm-target {}=VALUE", s.id))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the {what} has undo steps that need their target typed and there is no terminal: give {} (--yes does not confirm them)",
                missing.join(" ")
            ));
        }
        Ok(())
    }

    /// `runbook undo RUN_ID`: the outputs of the run's finished steps are back, the
    /// protected environment is confirmed, then the engine runs. A run-level record like
    /// `run`'s, so `show` and `history` tell the undo.
    pub async fn run_undo(&mut self) -> (Outcome, Undone) {
        let started = self.start_run();
        let result = match self.confirm_environment() {
            Flow::Continue => self.undo_finished("`runbook undo`").await,
            stop => Err(stop),
        };
        let (outcome, message, undone) = match result {
            Ok(undone) => (Outcome::Done, Some(undone.summary()), undone),
            Err(Flow::Stop(outcome, message)) => (outcome, Some(message), Undone::default()),
            Err(Flow::Continue | Flow::Retry) => (Outcome::Done, None, Undone::default()),
        };
        self.finish_run(started, outcome, message);
        (outcome, undone)
    }

    /// `--on-failure undo`: after `message` (a failed step), the engine runs; the run
    /// still ends failed, saying what was put back.
    pub(crate) async fn undo_after_failure(&mut self, message: String) -> Flow {
        match self.undo_finished(&message).await {
            Ok(undone) => Flow::Stop(Outcome::Failed, format!("{message}; {}", undone.summary())),
            Err(Flow::Stop(outcome, undo)) => Flow::Stop(outcome, format!("{message}; {undo}")),
            Err(Flow::Continue | Flow::Retry) => Flow::Stop(Outcome::Failed, message),
        }
    }
}
