//! `assert:` steps: an expression over what is known, true or the run stops.

use runbook_lang::step::{Step, StepKind};

use crate::exec::context::{Attempt, StepContext};

pub(super) fn assert(ctx: &StepContext<'_>, step: &Step, expr: &str, message: Option<&str>) -> Attempt {
    let StepKind::Assert(assert) = &step.kind else { return Attempt::failed("not an assert") };
    match assert.expr.is_true(&ctx.plan.context(ctx.outputs)) {
        Ok(true) => Attempt::done(None),
        Ok(false) => Attempt::failed(message.map_or_else(|| format!("assertion failed: {expr}"), str::to_owned)),
        Err(err) => Attempt::failed(format!("assertion could not be evaluated: {err}")),
    }
}
