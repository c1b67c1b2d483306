//! `manual:` steps: instructions shown, the operator's acknowledgement recorded.

use runbook_lang::step::Step;

use crate::exec::context::{Attempt, StepContext};
use crate::exec::operator::AskError;
use runbook_state::event::{Event, StepStatus};

pub(super) fn manual(ctx: &mut StepContext<'_>, step: &Step, text: &str) -> Attempt {
    ctx.events.emit(Event::Notice { id: step.id.clone(), text: format!("MANUAL STEP:\n{text}") });
    match ctx.operator.acknowledge(&step.id) {
        Ok(true) => Attempt { answer: Some("done".into()), ..Attempt::done(None) },
        Ok(false) => Attempt::with_status(StepStatus::Failed, "the operator did not acknowledge the manual step"),
        Err(AskError::Interrupted) => Attempt::with_status(StepStatus::Interrupted, "interrupted at the question"),
        Err(err) => Attempt::failed(err.to_string()),
    }
}
