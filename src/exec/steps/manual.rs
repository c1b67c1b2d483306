//! `manual:` steps: instructions shown, the operator's acknowledgement recorded.

use crate::step::Step;

use super::Attempt;
use crate::exec::Runner;
use crate::exec::event::{Event, StepStatus};
use crate::exec::operator::AskError;

impl Runner<'_> {
    pub(super) fn manual(&mut self, step: &Step, text: &str) -> Attempt {
        self.emit(Event::Notice { id: step.id.clone(), text: format!("MANUAL STEP:\n{text}") });
        match self.operator.acknowledge(&step.id) {
            Ok(true) => Attempt { answer: Some("done".into()), ..Attempt::done(None) },
            Ok(false) => Attempt::with_status(StepStatus::Failed, "the operator did not acknowledge the manual step"),
            Err(AskError::Interrupted) => Attempt::with_status(StepStatus::Interrupted, "interrupted at the question"),
            Err(err) => Attempt::failed(err.to_string()),
        }
    }
}
