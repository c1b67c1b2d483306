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
        // `--simulate` starts a fresh fake for the run: probing one would show its built-in
        // scenario, not what a rehearsal changed. A `runbook simulate` server keeps its state.
        if call.exec.probe && call.exec.simulate {
            return Err(Error::Usage(
                "--probe is not available with --simulate (a fresh fake would be probed); probe a `runbook simulate` server: export what it prints, then --dry-run --probe".into(),
            ));
        }
        let server = if call.exec.probe { runbook_engine::session::rehearsal::proven_server()? } else { None };
        let outputs = match &server {
            Some(base) => {
                let (outputs, _, notes) = runbook_engine::session::probe_rehearsed(&mut plan, base, settings)?;
                eprintln!("REHEARSAL: probing the `runbook simulate` server at {base}");
                for note in notes {
                    eprintln!("{note}");
                }
                Some(outputs)
            }
            None => None,
        };
        return dry_run(&plan, call.exec.probe, outputs, call.exec.output);
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

fn dry_run(plan: &Plan, probe: bool, probed: Option<Outputs>, output: OutputFormat) -> Result<(), Error> {
    let outputs = match probed {
        Some(outputs) => outputs,
        None if probe => probe_outputs(plan)?.0,
        None => Outputs::dry_run(),
    };
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
