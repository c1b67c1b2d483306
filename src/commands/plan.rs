//! What the four-eyes commands share: reading a plan file, where approvals are kept, which
//! approvals count. The commands: `--save-plan` (`save_plan.rs`), `show-plan`, `approve`,
//! `apply`; the break-glass rule for direct runs is the session's (`runbook_engine::session`).

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::Error;
use runbook_engine::plan::{Outputs, Plan};
use runbook_engine::session::Settings;
use runbook_lang::step::Step;
use runbook_state::approvals::{Approval, Store};
use runbook_state::dir::StateDir;
use runbook_state::plan_file::{PlanFile, Probe, short};

pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

pub fn refuse(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

pub fn now_text(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn secret_step_ids(runbook: &runbook_lang::model::Runbook) -> Vec<String> {
    runbook
        .procedures
        .values()
        .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
        .filter(|s| s.output_is_secret())
        .map(|s| s.id.clone())
        .collect()
}

/// Approvals a plan for this environment needs (at least one): always the runbook's
/// number, never the plan file's.
pub fn required_approvals(runbook: &runbook_lang::model::Runbook, environment: Option<&str>) -> u32 {
    environment.and_then(|e| runbook.environments.get(e)).map_or(0, |e| e.approvals).max(1)
}

pub fn read_plan(file: &Path) -> Result<PlanFile, Error> {
    runbook_state::plan_file::read(file).map_err(refuse)
}

pub fn store(settings: &Settings) -> Result<Box<dyn Store>, Error> {
    let state = StateDir::resolve(settings.state_dir.as_deref()).map_err(Error::Io)?;
    Ok(runbook_state::store::plan_records(settings.store()?.as_ref(), &state))
}

/// Approvals that count: for this id, by someone other than the creator. The others are
/// explained.
pub fn valid_approvals(planned: &PlanFile, store: &dyn Store) -> Result<(Vec<Approval>, Vec<String>), Error> {
    let mut valid: Vec<Approval> = Vec::new();
    let mut notes = Vec::new();
    for approval in store.approvals(&planned.id).map_err(Error::Io)? {
        if approval.plan_id != planned.id {
            notes.push(format!(
                "the approval by {} is for another plan ({})",
                approval.approver,
                short(&approval.plan_id)
            ));
        } else if approval.approver == planned.body.creator {
            notes.push(format!("the approval by {} does not count: they made the plan", approval.approver));
        } else if !valid.iter().any(|v| v.approver == approval.approver) {
            valid.push(approval);
        }
    }
    Ok((valid, notes))
}

pub fn steps(plan: &Plan) -> Vec<&Step> {
    let mut out = Vec::new();
    if let Some(procedure) = plan.runbook.procedures.get(&plan.procedure) {
        runbook_engine::plan::steps_in_order(&plan.runbook, procedure, &mut out);
    }
    out
}

/// The observations of the read-only steps that ran, in step order.
pub fn probes(plan: &Plan, outputs: &Outputs) -> Vec<Probe> {
    steps(plan)
        .into_iter()
        .filter_map(|step| {
            let value = outputs.values.get(&step.id)?;
            let json = serde_json::to_value(value).ok()?;
            let shown = (!step.output_is_secret())
                .then(|| serde_json::from_str(&plan.redactor.redact(&json.to_string())).ok())
                .flatten();
            Some(Probe::new(&step.id, &json, shown))
        })
        .collect()
}

/// The dry-run text (redacted) and JSON an approver sees.
pub fn rendered(plan: &Plan, outputs: &Outputs) -> Result<(String, serde_json::Value), Error> {
    let dry = runbook_engine::dry_run::build(plan, outputs, true);
    let shown = plan.redactor.redact(&runbook_engine::dry_run::human(plan, &dry));
    let json = serde_json::to_string(&dry).map_err(|e| Error::Io(e.to_string()))?;
    let json = serde_json::from_str(&plan.redactor.redact(&json)).map_err(|e| Error::Io(e.to_string()))?;
    Ok((shown, json))
}
