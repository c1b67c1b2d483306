//! Who allowed a run besides its operator: an applied plan and its approvers, or a
//! break-glass reason for a direct run of an environment that needs approvals.

use crate::plan::Plan;
use runbook_state::plan_file::short;

use super::Error;

const MAX_REASON: usize = 1000;

/// Who allowed a run besides its operator; journaled in the run's header.
#[derive(Default)]
pub struct Audit {
    pub plan_id: Option<String>,
    pub approvers: Vec<String>,
    pub break_glass: Option<String>,
    /// `apply`: marks the plan used, once the lock is held (fails if it was used before).
    pub claim: Option<Claim>,
}

/// Called with the run id; fails when the plan was applied before.
pub type Claim = Box<dyn Fn(&str, &runbook_state::journal::Header) -> Result<(), Error>>;

impl Audit {
    pub fn resumed(header: &runbook_state::journal::Header) -> Audit {
        Audit {
            plan_id: header.plan_id.clone(),
            approvers: header.approvers.clone(),
            break_glass: header.break_glass.clone(),
            claim: None,
        }
    }

    pub fn stamp(&self, header: &mut runbook_state::journal::Header) {
        header.plan_id.clone_from(&self.plan_id);
        header.approvers.clone_from(&self.approvers);
        header.break_glass.clone_from(&self.break_glass);
    }

    /// The line the terminal shows at the start and in the summary.
    pub fn banner(&self) -> Option<String> {
        if let Some(reason) = &self.break_glass {
            return Some(format!("BREAK GLASS: run without an approved plan; reason: {reason}"));
        }
        self.plan_id.as_ref().map(|id| format!("Applying plan {} approved by {}", short(id), self.approvers.join(", ")))
    }
}

fn refuse(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

/// A direct run (not `apply`) of an environment with `approvals: N` needs a break-glass
/// reason. Dry-runs, saved plans and rehearsals never get here or need none.
pub fn break_glass(plan: &Plan, given: Option<&str>, rehearsal: bool) -> Result<Option<String>, Error> {
    // A procedure that changes nothing (`verify`) needs no second pair of eyes.
    let needed = if plan.runbook.mutates(&plan.procedure) { plan.environment().map_or(0, |e| e.approvals) } else { 0 };
    let env = plan.environment.clone().unwrap_or_default();
    if needed == 0 || rehearsal {
        return match given {
            Some(_) if !rehearsal => Err(refuse(format!(
                "--break-glass: `{} {}` on environment `{env}` needs no approvals; run it without --break-glass",
                plan.runbook.name, plan.procedure
            ))),
            _ => Ok(None),
        };
    }
    if let Some(reason) = given {
        return check_reason(plan, reason).map(Some);
    }
    let refusal = format!(
        "environment `{env}` needs {needed} approval{s}: save a plan (--save-plan FILE), have someone else `runbook approve` it, then `runbook apply` it; in an emergency run with --break-glass REASON",
        s = if needed == 1 { "" } else { "s" }
    );
    if !crate::exec::operator::interactive() {
        return Err(refuse(refusal));
    }
    eprintln!("{refusal}");
    let reason: String = dialoguer::Input::new()
        .with_prompt("Reason to break glass (recorded; empty to stop)")
        .allow_empty(true)
        .interact_text()
        .map_err(|e| refuse(format!("cannot ask for a break-glass reason: {e}")))?;
    if reason.trim().is_empty() {
        return Err(refuse(format!("not run: environment `{env}` needs an approved plan or a break-glass reason")));
    }
    check_reason(plan, &reason).map(Some)
}

/// A reason or comment is shown in terminals later: one line of text, no control characters.
pub fn check_text(text: &str, what: &str) -> Result<String, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Err(refuse(format!("{what} is empty")));
    }
    if text.chars().any(char::is_control) {
        return Err(refuse(format!("{what} contains control characters")));
    }
    if text.chars().count() > MAX_REASON {
        return Err(refuse(format!("{what} is longer than {MAX_REASON} characters")));
    }
    Ok(text.to_owned())
}

/// The reason as it is journaled and shown: a secret pasted into it is masked (issue 23).
fn check_reason(plan: &Plan, reason: &str) -> Result<String, Error> {
    check_text(reason, "the break-glass reason").map(|reason| plan.redactor.redact(&reason))
}
