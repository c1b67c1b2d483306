//! `manual:` steps: instructions shown, and who acknowledged them recorded — a person
//! (`done`, `not needed`), or nobody (`--yes`, `apply` without a terminal), which is
//! journaled and shown as such, never as a person's `done`.

use runbook_lang::step::Step;
use runbook_state::event::{Event, StepStatus, UNATTENDED};

use crate::exec::context::{Attempt, StepContext};
use crate::exec::operator::{Acknowledged, AskError};

pub(super) fn manual(ctx: &mut StepContext<'_>, step: &Step, text: &str) -> Attempt {
    let rehearsal = ctx.options.rehearsal_shell.as_deref().unwrap_or_default();
    ctx.events.emit(Event::Notice { id: step.id.clone(), text: format!("MANUAL STEP:\n{rehearsal}{text}") });
    match ctx.operator.acknowledge(&step.id) {
        Ok(Acknowledged::ByPerson(answer)) => Attempt { answer: Some(answer.into()), ..Attempt::done(None) },
        Ok(Acknowledged::Unattended(why)) => {
            Attempt { answer: Some(format!("{UNATTENDED} ({why})")), ..Attempt::done(None) }
        }
        Ok(Acknowledged::Stopped) => Attempt::with_status(
            StepStatus::Aborted,
            format!("the operator stopped the run at the manual step `{}` (resumable)", step.id),
        ),
        Err(AskError::Interrupted) => Attempt::with_status(StepStatus::Interrupted, "interrupted at the question"),
        Err(err) => Attempt::failed(err.to_string()),
    }
}
