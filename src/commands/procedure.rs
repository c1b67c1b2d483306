//! `runbook <RUNBOOK> <PROCEDURE>` and `runbook run <FILE> <PROCEDURE>`: check, plan, then
//! either print the dry-run or execute.

use std::io::IsTerminal;

use crate::cli::{OutputFormat, ProcedureCall};
use crate::error::Error;
use crate::exec::event::{Outcome, Subscriber};
use crate::exec::terminal::{JsonLines, Terminal};
use crate::exec::{DEFAULT_CAPTURE_LIMIT, Options, Runner};
use crate::library::Entry;
use crate::plan::{Inputs, Outputs, Plan};

pub struct Settings {
    pub quiet: bool,
}

pub fn run_procedure(entry: &Entry, call: ProcedureCall, settings: &Settings) -> Result<(), Error> {
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
    let mut plan = Plan::bind(runbook, &call.procedure, inputs, chrono::Utc::now())?;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let options = Options {
        yes: call.exec.yes,
        interactive,
        capture_limit: capture_limit()?,
        base_dir: std::env::current_dir().map_err(|e| Error::Io(format!("cannot read the current directory: {e}")))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the runtime: {e}")))?;
    if call.exec.dry_run {
        let mut outputs = Outputs::dry_run();
        if call.exec.probe {
            let mut runner = Runner::new(&plan, options, Vec::new());
            runtime.block_on(async {
                let cancel = runner.cancel.clone();
                let _signals = tokio::spawn(async move { wait_for_signal().await.then(|| cancel.cancel()) });
                runner.probe().await;
            });
            outputs = runner.outputs.clone();
        }
        let dry = crate::dry_run::build(&plan, &outputs);
        match call.exec.output {
            OutputFormat::Human => crate::output::print(&crate::dry_run::human(&plan, &dry)),
            OutputFormat::Json => {
                let json = serde_json::to_string_pretty(&dry).map_err(|e| Error::Io(e.to_string()))?;
                crate::output::print(&(plan.redactor.redact(&json) + "\n"));
            }
        }
        return Ok(());
    }
    if interactive {
        ask_missing_secrets(&mut plan)?;
    }
    let subscribers: Vec<Box<dyn Subscriber>> = match call.exec.output {
        OutputFormat::Human => vec![Box::new(Terminal::new(std::io::stderr().is_terminal(), settings.quiet))],
        OutputFormat::Json => vec![Box::new(JsonLines)],
    };
    let mut runner = Runner::new(&plan, options, subscribers);
    runner.preflight().map_err(Error::Usage)?;
    become_subreaper();
    let outcome = runtime.block_on(async {
        let cancel = runner.cancel.clone();
        let signals = tokio::spawn(async move {
            if wait_for_signal().await {
                cancel.cancel();
            }
        });
        let outcome = runner.run().await;
        signals.abort();
        outcome
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match outcome {
        Outcome::Done => Ok(()),
        other => Err(Error::Reported(other.exit_code())),
    }
}

/// Orphans of a step (a `sleep 300 &` whose shell was killed) are re-parented to us
/// instead of init, so the step's process-group wait reaps them: nothing is left behind.
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!("cannot become a child subreaper: {err}");
    }
}

/// SIGINT or SIGTERM. The step's process group does not get the terminal's SIGINT (it is
/// not the foreground group), so the runner ends it when this fires.
async fn wait_for_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return false;
    };
    tokio::select! {
        _ = interrupt.recv() => true,
        _ = terminate.recv() => true,
    }
}

fn capture_limit() -> Result<usize, Error> {
    match std::env::var("RUNBOOK_CAPTURE_LIMIT") {
        Err(_) => Ok(DEFAULT_CAPTURE_LIMIT),
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .map_err(|_| Error::Usage(format!("RUNBOOK_CAPTURE_LIMIT={text}: expected a number of bytes"))),
    }
}

/// Secret params not given on the command line or in the environment are asked for,
/// hidden, before the first step.
fn ask_missing_secrets(plan: &mut Plan) -> Result<(), Error> {
    let names = std::mem::take(&mut plan.missing_secrets);
    for name in names {
        let param = plan.runbook.params.get(&name).cloned();
        let Some(param) = param else { continue };
        let prompt = format!("{} (--{}, hidden)", param.help.as_deref().unwrap_or(&name), param.flag());
        let value = dialoguer::Password::new()
            .with_prompt(prompt)
            .interact()
            .map_err(|e| Error::Usage(format!("cannot ask for --{}: {e}", param.flag())))?;
        let checked = param
            .check_value(&value, chrono::Utc::now())
            .map_err(|reason| Error::Usage(format!("invalid value for --{}: {reason}", param.flag())))?;
        if value.chars().count() < crate::redact::MIN_SECRET_LEN {
            return Err(Error::Plan(crate::plan::PlanError::ShortSecret { flag: param.flag() }));
        }
        plan.redactor.add(&value);
        plan.params.insert(name, checked);
    }
    Ok(())
}
