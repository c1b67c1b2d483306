//! `runbook <RUNBOOK> <PROCEDURE>` and `runbook run <FILE> <PROCEDURE>`: check, plan, then
//! either print the dry-run or execute under a lock, with a journal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::{OutputFormat, ProcedureCall};
use crate::error::Error;
use crate::exec::event::Outcome;
use crate::exec::terminal::{JsonLines, Terminal};
use crate::exec::{DEFAULT_CAPTURE_LIMIT, Options, Runner};
use crate::journal::{Header, Journal};
use crate::library::Entry;
use crate::plan::{Inputs, Outputs, Plan, StepOutput};
use crate::state::StateDir;

pub struct Settings {
    pub quiet: bool,
    pub state_dir: Option<PathBuf>,
}

/// How to execute a bound plan.
pub struct Execution {
    pub run_id: String,
    pub yes: bool,
    pub output: OutputFormat,
    /// For `resume`: steps finished before, and whether a changed file was accepted.
    pub completed: Option<HashMap<String, Option<StepOutput>>>,
    pub forced: bool,
    /// `--simulate`: run against the local fake of the Google APIs.
    pub rehearsal: Option<super::rehearse::Settings>,
}

pub fn checked_runbook(entry: &Entry) -> Result<crate::model::RunbookRef, Error> {
    // Rule 1: nothing runs unless the whole runbook checks out.
    entry.checked.runbook.clone().ok_or_else(|| {
        let diagnostics = entry.checked.diagnostics.clone();
        Error::Invalid {
            path: entry.checked.source.display_path(),
            count: diagnostics.iter().filter(|d| d.severity == crate::diagnostic::Severity::Error).count(),
            diagnostics,
        }
    })
}

pub fn run_procedure(entry: &Entry, call: ProcedureCall, settings: &Settings) -> Result<(), Error> {
    let runbook = checked_runbook(entry)?;
    let inputs = Inputs {
        environment: call.exec.env.clone(),
        params: call.params,
        answers: call.exec.answer.clone(),
        vars: call.exec.vars.clone(),
    };
    let mut plan = Plan::bind(runbook, &call.procedure, inputs, chrono::Utc::now())?;
    if call.exec.dry_run {
        return dry_run(&plan, call.exec.probe, call.exec.output);
    }
    if interactive() {
        ask_missing_secrets(&mut plan)?;
    }
    let execution = Execution {
        run_id: crate::state::new_run_id(),
        yes: call.exec.yes,
        output: call.exec.output,
        completed: None,
        forced: false,
        rehearsal: call
            .exec
            .simulate
            .then(|| super::rehearse::Settings { scenario: call.exec.scenario.clone(), port: call.exec.simulate_port }),
    };
    execute(&plan, execution, settings)
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// One thread: a step's output readers, its exit and the signal watcher all wake the same
/// thread, so each spawn costs no hand-offs between threads (issue 13: per-step overhead).
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the runtime: {e}")))
}

fn options(yes: bool) -> Result<Options, Error> {
    Ok(Options {
        yes,
        interactive: interactive(),
        capture_limit: capture_limit()?,
        base_dir: std::env::current_dir().map_err(|e| Error::Io(format!("cannot read the current directory: {e}")))?,
        extra_env: Vec::new(),
        remove_env: Vec::new(),
    })
}

fn dry_run(plan: &Plan, probe: bool, output: OutputFormat) -> Result<(), Error> {
    let mut outputs = Outputs::dry_run();
    if probe {
        let mut runner = Runner::new(plan, options(false)?, Vec::new());
        runtime()?.block_on(async {
            let cancel = runner.cancel.clone();
            let signals = tokio::spawn(async move {
                if wait_for_signal().await {
                    cancel.cancel();
                }
            });
            runner.probe().await;
            signals.abort();
        });
        outputs = runner.outputs.clone();
    }
    let dry = crate::dry_run::build(plan, &outputs);
    match output {
        OutputFormat::Human => crate::output::print(&plan.redactor.redact(&crate::dry_run::human(plan, &dry))),
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&dry).map_err(|e| Error::Io(e.to_string()))?;
            crate::output::print(&(plan.redactor.redact(&json) + "\n"));
        }
    }
    Ok(())
}

/// Runs the plan: preflight, lock, journal, then the steps.
pub fn execute(plan: &Plan, execution: Execution, settings: &Settings) -> Result<(), Error> {
    let mut runner = Runner::new(plan, options(execution.yes)?, Vec::new());
    let resumed = execution.completed.is_some();
    if let Some(completed) = execution.completed {
        runner.completed = completed;
    }
    runner.preflight().map_err(Error::Usage)?;

    let state = StateDir::resolve(settings.state_dir.as_deref()).map_err(Error::Io)?;
    state.create().map_err(Error::Io)?;
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let holder = crate::lock::Holder {
        run_id: execution.run_id.clone(),
        user: crate::state::user(),
        host: crate::state::host(),
        pid: std::process::id(),
        started,
    };
    // A rehearsal never blocks (or is blocked by) a real run of the same target.
    let lock_name = if execution.rehearsal.is_some() {
        format!("{}.rehearsal", plan.runbook.name)
    } else {
        plan.runbook.name.clone()
    };
    let _lock =
        crate::lock::acquire(&state.locks(), &lock_name, plan.environment.as_deref(), &holder).map_err(Error::Usage)?;
    let mut header = header(plan, &execution.run_id, &holder, execution.yes, execution.forced);
    header.rehearsal = execution.rehearsal.clone();
    let journal_path = state.journal_path(&execution.run_id);
    let journal = Journal::open(&journal_path, header, resumed).map_err(Error::Io)?;

    let json = execution.output == OutputFormat::Json;
    if json {
        runner.subscribe(Box::new(JsonLines));
    } else {
        runner.subscribe(Box::new(Terminal::new(std::io::stderr().is_terminal(), settings.quiet)));
        if !settings.quiet {
            let verb = if resumed { "Resuming" } else { "Starting" };
            eprintln!("{verb} run {} (journal: {})", execution.run_id, journal_path.display());
        }
    }
    runner.subscribe(Box::new(journal));
    become_subreaper();
    let outcome = runtime()?.block_on(async {
        let rehearsal = match &execution.rehearsal {
            Some(settings) => {
                let rehearsal = super::rehearse::Rehearsal::start(settings, &state).await?;
                if !json {
                    eprintln!("{}", rehearsal.banner());
                }
                runner.set_environment(rehearsal.env(), super::rehearse::Rehearsal::remove());
                Some(rehearsal)
            }
            None => None,
        };
        let cancel = runner.cancel.clone();
        let signals = tokio::spawn(async move {
            if wait_for_signal().await {
                cancel.cancel();
            }
        });
        let outcome = runner.run().await;
        signals.abort();
        if let (Some(rehearsal), false) = (&rehearsal, json || settings.quiet) {
            eprint!("{}", rehearsal.report());
        }
        Ok::<_, Error>(outcome)
    })?;
    match outcome {
        Outcome::Done => Ok(()),
        other => {
            if !json {
                eprintln!("The run can be continued with: runbook resume {}", execution.run_id);
            }
            Err(Error::Reported(other.exit_code()))
        }
    }
}

fn header(plan: &Plan, run_id: &str, holder: &crate::lock::Holder, yes: bool, forced: bool) -> Header {
    let runbook = &plan.runbook;
    let secret = |name: &str| runbook.params.get(name).is_some_and(|p| p.secret);
    let file = std::fs::canonicalize(&runbook.source.path).unwrap_or_else(|_| runbook.source.path.clone());
    Header {
        run_id: run_id.to_owned(),
        user: holder.user.clone(),
        host: holder.host.clone(),
        pid: holder.pid,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        file,
        sha256: runbook.sha256.clone(),
        runbook: runbook.name.clone(),
        procedure: plan.procedure.clone(),
        environment: plan.environment.clone(),
        params: plan
            .params
            .iter()
            .map(|(k, v)| (k.clone(), if secret(k) { crate::redact::MASK.to_owned() } else { v.as_text() }))
            .collect(),
        secret_params: runbook.params.values().filter(|p| p.secret).map(|p| p.name.clone()).collect(),
        answers: plan.answers.iter().map(|(k, v)| (k.clone(), plan.redactor.redact(v))).collect(),
        vars: plan.var_overrides.clone(),
        yes,
        forced,
        rehearsal: None,
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
pub async fn wait_for_signal() -> bool {
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
pub fn ask_missing_secrets(plan: &mut Plan) -> Result<(), Error> {
    let names = std::mem::take(&mut plan.missing_secrets);
    for name in names {
        let Some(param) = plan.runbook.params.get(&name).cloned() else { continue };
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
