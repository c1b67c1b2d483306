//! `runbook <RUNBOOK> <PROCEDURE>` and `runbook run <FILE> <PROCEDURE>`: check, plan, then
//! either print the dry-run or execute under a lock, with a journal.

use crate::cli::{OutputFormat, ProcedureCall};
use crate::error::Error;
use crate::library::{Entry, checked_runbook};
use runbook_engine::plan::{Inputs, Outputs, Plan};
use runbook_engine::session::{
    Audit, Recovery, Settings, Start, ask_missing_secrets, break_glass, confirmations, execute, interactive,
    probe_outputs,
};

pub fn run_procedure(entry: &Entry, call: ProcedureCall, settings: &Settings) -> Result<(), Error> {
    let runbook = checked_runbook(entry)?;
    if let Some(file) = call.exec.save_plan.clone() {
        return super::save_plan::save(runbook, call, &file, settings);
    }
    let inputs = Inputs {
        environment: call.exec.env.clone(),
        params: call.params,
        answers: call.exec.answer.clone(),
        vars: call.exec.vars.clone(),
    };
    let mut plan = Plan::bind(runbook, &call.procedure, inputs, chrono::Utc::now())?;
    if call.exec.dry_run {
        // The probe runs read steps outside any rehearsal: their gcloud and http: requests
        // would not be kept on the fake.
        if call.exec.probe && (call.exec.simulate || runbook_engine::session::rehearsal::proven_server()?.is_some()) {
            return Err(Error::Usage(
                "--probe is not available in a rehearsal: its read steps would not be kept on the local fake".into(),
            ));
        }
        return dry_run(&plan, call.exec.probe, call.exec.output);
    }
    let break_glass = break_glass(
        &plan,
        call.exec.break_glass.as_deref(),
        call.exec.simulate || runbook_engine::session::rehearsal::proven_server()?.is_some(),
    )?;
    if interactive() {
        ask_missing_secrets(&mut plan)?;
    }
    let start = Start {
        manual_by_person: false,
        run_id: runbook_state::dir::new_run_id(),
        yes: call.exec.yes,
        confirmations: confirmations(call.exec.confirm_env.clone(), &call.exec.confirm_target)?,
        json: call.exec.output == OutputFormat::Json,
        completed: None,
        resume_events: Vec::new(),
        forced: false,
        rehearsal: call.exec.simulate.then(|| runbook_state::rehearsal::Settings {
            // Absolute, so a resume from another folder finds it.
            scenario: call.exec.scenario.clone().map(|p| std::fs::canonicalize(&p).unwrap_or(p)),
            port: call.exec.simulate_port,
            server: None,
        }),
        audit: Audit { break_glass, ..Audit::default() },
        recovery: Recovery::on_failure(call.exec.on_failure.map(Into::into)),
    };
    Ok(execute(&mut plan, start, settings)?)
}

fn dry_run(plan: &Plan, probe: bool, output: OutputFormat) -> Result<(), Error> {
    let outputs = if probe { probe_outputs(plan)?.0 } else { Outputs::dry_run() };
    let dry = runbook_engine::dry_run::build(plan, &outputs, probe);
    match output {
        OutputFormat::Human => crate::output::print(&plan.redactor.redact(&runbook_engine::dry_run::human(plan, &dry))),
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&dry).map_err(|e| Error::Io(e.to_string()))?;
            crate::output::print(&(plan.redactor.redact(&json) + "\n"));
        }
    }
    Ok(())
}
