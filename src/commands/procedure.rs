//! `runbook <RUNBOOK> <PROCEDURE>` and `runbook run <FILE> <PROCEDURE>`: check, plan, then
//! either print the dry-run or execute.

use crate::cli::{OutputFormat, ProcedureCall};
use crate::error::Error;
use crate::library::Entry;
use crate::plan::{Inputs, Outputs, Plan};

pub fn run_procedure(entry: &Entry, call: ProcedureCall) -> Result<(), Error> {
    // Rule 1: nothing runs unless the whole runbook checks out.
    let Some(runbook) = entry.checked.runbook.clone() else {
        let diagnostics = entry.checked.diagnostics.clone();
        return Err(Error::Invalid {
            path: entry.checked.source.display_path(),
            count: diagnostics.iter().filter(|d| d.severity == crate::diagnostic::Severity::Error).count(),
            diagnostics,
        });
    };
    let inputs = Inputs { environment: call.exec.env.clone(), params: call.params, answers: call.exec.answer.clone() };
    let plan = Plan::bind(runbook, &call.procedure, inputs, chrono::Utc::now())?;
    if call.exec.dry_run {
        let dry = crate::dry_run::build(&plan, &Outputs::dry_run());
        match call.exec.output {
            OutputFormat::Human => crate::output::print(&crate::dry_run::human(&plan, &dry)),
            OutputFormat::Json => {
                let json = serde_json::to_string_pretty(&dry).map_err(|e| Error::Io(e.to_string()))?;
                crate::output::print(&(plan.redactor.redact(&json) + "\n"));
            }
        }
        return Ok(());
    }
    Err(Error::Usage("execution without --dry-run is not available in this build yet".into()))
}
