//! `assert:` steps: an expression over what is known, true or the run stops.

use crate::step::{Step, StepKind};

use super::Attempt;
use crate::exec::Runner;

impl Runner<'_> {
    pub(super) fn assert(&self, step: &Step, expr: &str, message: Option<&str>) -> Attempt {
        let StepKind::Assert(assert) = &step.kind else { return Attempt::failed("not an assert") };
        match assert.expr.is_true(&self.plan.context(&self.outputs)) {
            Ok(true) => Attempt::done(None),
            Ok(false) => Attempt::failed(message.map_or_else(|| format!("assertion failed: {expr}"), str::to_owned)),
            Err(err) => Attempt::failed(format!("assertion could not be evaluated: {err}")),
        }
    }
}
