//! The run session: the one way into a run's steps. A first run, `resume`, `apply`, `runbook
//! undo` and the failure menu all open a run here: who is acting, the run lock (local or
//! shared), the journal and its store mirror, the rehearsal's fake, the approval or
//! break-glass that covers the run, the confirmations, the subreaper and the signals — then
//! one [`Runner`] walks the steps through the same guards, whatever path led to them.
//!
//! A command builds a [`Start`] (what kind of entry, with what inputs) and calls
//! [`execute`]; nothing else starts a step.

mod audit;
mod error;
pub mod recovery;
pub mod rehearsal;

use std::collections::HashMap;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;

pub use crate::exec::operator::interactive;
pub use audit::{Audit, Claim, break_glass, check_text};
pub use error::Error;
pub use recovery::{FailurePolicy, Recovery};

use crate::exec::operator::Confirmations;
use crate::exec::terminal::{JsonLines, Terminal};
use crate::exec::{DEFAULT_CAPTURE_LIMIT, Options, Runner};
use crate::plan::{Outputs, Plan, StepOutput};
use runbook_state::dir::StateDir;
use runbook_state::event::Outcome;
use runbook_state::journal::{Header, Journal};

pub struct Settings {
    pub quiet: bool,
    /// `-v`: a read step's captured JSON is shown whole, not folded.
    pub verbose: bool,
    pub state_dir: Option<PathBuf>,
    /// `--color never` or `NO_COLOR`: passed on to children.
    pub no_color: bool,
    /// `--no-notify`: the environment's `notify:` webhooks stay silent for this run.
    pub no_notify: bool,
    /// The shared store (`--state-url`, `RUNBOOK_STATE_URL`), its lock lease, and the runbook
    /// folder whose config file may name one.
    pub state_url: Option<String>,
    pub lock_lease: Option<std::time::Duration>,
    pub dir: PathBuf,
}

impl Settings {
    /// Where the lock, the journal and the history live.
    pub fn store(&self) -> Result<std::sync::Arc<dyn runbook_state::store::Store>, Error> {
        runbook_state::store::open(&runbook_state::store::Config {
            state_dir: self.state_dir.clone(),
            state_url: self.state_url.clone(),
            lock_lease: self.lock_lease,
            runbook_dir: self.dir.clone(),
            show: runbook_lang::diagnostic::clip,
        })
        .map_err(Error::Usage)
    }
}

/// How to execute a bound plan.
pub struct Start {
    pub run_id: String,
    pub yes: bool,
    /// Manual steps wait for a person at a terminal even with `yes` (`apply`: an approval
    /// confirms the stages, not the manual work).
    pub manual_by_person: bool,
    /// `--confirm-env` / `--confirm-target`, never carried over to a resume.
    pub confirmations: Confirmations,
    /// `--output json`: events as JSON lines on stdout instead of the terminal view.
    pub json: bool,
    /// For `resume`: steps finished before, and whether a changed file was accepted.
    pub completed: Option<HashMap<String, Option<StepOutput>>>,
    /// For `resume`: where and why it starts again at an earlier step (journal events; the
    /// one who resumed is added as `by`).
    pub resume_events: Vec<serde_json::Value>,
    pub forced: bool,
    /// `--simulate`: run against the local fake of the Google APIs.
    pub rehearsal: Option<runbook_state::rehearsal::Settings>,
    /// An applied plan and its approvers, or a break-glass reason (journaled).
    pub audit: Audit,
    /// `runbook undo` and `--on-failure` (see [`recovery`]).
    pub recovery: Recovery,
}

/// Runs the plan: preflight, lock, journal, then the steps.
pub fn execute(plan: &mut Plan, mut execution: Start, settings: &Settings) -> Result<(), Error> {
    let rehearsal_settings = rehearsal::settings(&execution)?;
    {
        // Every answer and decision is checked before anything (lock, journal, fake) starts.
        let mut options = options(execution.yes, execution.confirmations.clone())?;
        options.manual_by_person = execution.manual_by_person;
        let mut preflight = Runner::new(plan, options, Vec::new());
        if let Some(completed) = &execution.completed {
            preflight.completed = completed.clone();
        }
        execution.recovery.prepare(&mut preflight);
        execution.recovery.preflight(&preflight).map_err(Error::Usage)?;
    }
    let resumed = execution.completed.is_some();

    let state = StateDir::resolve(settings.state_dir.as_deref()).map_err(Error::Io)?;
    state.create().map_err(Error::Io)?;
    let store = settings.store()?;
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let identity = runbook_state::identity::Identity::current();
    let holder = runbook_state::lock::Holder {
        run_id: execution.run_id.clone(),
        user: identity.user.clone(),
        identity: identity.name.clone(),
        host: identity.host.clone(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started,
    };
    let lock_name = runbook_state::lock::namespace(&plan.runbook.name, rehearsal_settings.is_some());
    let name = runbook_state::store::LockName { runbook: lock_name, environment: plan.environment.clone() };
    let acquired = store.acquire(&name, &holder).map_err(Error::Usage)?;
    let json = execution.json;
    let runtime = runtime()?;
    // A rehearsal's fake starts before the steps are bound to it: the environment's
    // `rehearsal:` vars point at its address.
    let fake = match rehearsal_settings.as_ref().filter(|s| s.server.is_none()) {
        Some(s) => Some(runtime.block_on(rehearsal::Rehearsal::start(s, &state, Some(&execution.run_id)))?),
        None => None,
    };
    let fake_base = fake
        .as_ref()
        .map(rehearsal::Rehearsal::url)
        .or_else(|| rehearsal_settings.as_ref().and_then(|s| s.server.clone()));
    let mut options = options(execution.yes, execution.confirmations.clone())?;
    options.manual_by_person = execution.manual_by_person;
    let mut notes = Vec::new();
    if let Some(base) = &fake_base {
        notes = rehearsal::bind_vars(plan, base)?;
        let env = match &fake {
            Some(fake) => fake.env(),
            None => rehearsal::server_env(base, &state)?,
        };
        point_at_fake(&mut options, plan, base, env);
        options.rehearsal_shell = Some(rehearsal::shell_exports(base, &options.extra_env));
    }
    if settings.no_color {
        options.extra_env.extend(
            [("NO_COLOR", "1"), ("CLOUDSDK_CORE_DISABLE_COLOR", "true")].map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
    }
    options.strip_ansi = json || !std::io::stderr().is_terminal();
    plan.run = Some(crate::plan::RunInfo {
        id: execution.run_id.clone(),
        started: execution
            .recovery
            .run_started()
            .map_or_else(|| holder.started.clone(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        started_steps: execution.recovery.started_steps().clone(),
    });
    let plan: &Plan = plan;
    let mut runner = Runner::new(plan, options, Vec::new());
    if let Some(completed) = execution.completed {
        runner.completed = completed;
    }
    execution.recovery.prepare(&mut runner);
    let mut header = header(plan, &execution.run_id, &holder, execution.yes, execution.forced);
    header.rehearsal = rehearsal_settings.clone();
    header.identity = Some(holder.identity.clone());
    execution.audit.stamp(&mut header);
    execution.recovery.stamp(&mut header);
    // Before the first event: the webhook URLs are registered with the redactor here.
    let notifier = crate::notify::Notifier::for_run(
        plan,
        crate::notify::RunInfo {
            run_id: execution.run_id.clone(),
            runbook: plan.runbook.name.clone(),
            procedure: plan.procedure.clone(),
            environment: plan.environment.clone(),
            by: holder.identity.clone(),
            rehearsal: fake_base.is_some(),
            verb: match (execution.recovery.undo, resumed) {
                (true, _) => "started an undo of",
                (false, true) => "resumed",
                (false, false) => "started",
            },
            break_glass: header.break_glass.clone(),
        },
        mutating_steps(plan),
        settings.no_notify,
    );
    // `apply` marks its plan used only once the lock is held, so a plan is not spent on a
    // run that could not start.
    if let Some(claim) = execution.audit.claim.as_ref() {
        claim(&execution.run_id, &header)?;
    }
    let journal_path = state.journal_path(&execution.run_id);
    let mut journal = Journal::open(&journal_path, header, resumed).map_err(Error::Io)?;
    if store.shared() {
        let next = if resumed { store.next_seq(&execution.run_id).map_err(Error::Io)? } else { 0 };
        let remote =
            runbook_state::store::journal::Remote::new(store.clone(), acquired.lock.clone(), &execution.run_id, next);
        journal.share(remote).map_err(|e| Error::Io(format!("{e}; nothing was run")))?;
    }
    for mut event in std::mem::take(&mut execution.resume_events) {
        event["by"] = serde_json::Value::String(holder.identity.clone());
        let event = crate::redact::redact_json(&plan.redactor, event);
        journal.append_event(event.clone()).map_err(|e| Error::Io(format!("{e}; nothing was run")))?;
        if json {
            crate::output::print(&format!("{event}\n"));
        } else if let Some(line) = crate::timeline::describe(&event) {
            eprintln!("{}", line.trim_start());
        }
    }
    if let Some(previous) = &acquired.took_over {
        let event = serde_json::json!({"event": "lock_taken_over", "previous": previous, "by": holder.identity});
        journal.append_event(event).map_err(Error::Io)?;
        eprintln!(
            "Took over the lock of `{}`, whose lease ran out: {}",
            name.display(),
            previous.describe(runbook_lang::diagnostic::clip)
        );
    }

    if json {
        if let Some(base) = &fake_base {
            let line = serde_json::json!({"event": "rehearsal", "rehearsal": true, "fake": base, "notes": notes});
            crate::output::print(&format!("{line}\n"));
        }
        runner.subscribe(Box::new(JsonLines));
    } else {
        let mut terminal = Terminal::new(std::io::stderr().is_terminal(), settings.quiet);
        terminal.context = summary_context(plan, &runner.completed);
        terminal.context.earlier_recovery = execution.recovery.recovered_earlier();
        terminal.context.run_id = execution.run_id.clone();
        terminal.verbose = settings.verbose;
        runner.subscribe(Box::new(terminal));
        if !settings.quiet {
            let verb = match (execution.recovery.undo, resumed) {
                (true, _) => "Undoing",
                (false, true) => "Resuming",
                (false, false) => "Starting",
            };
            let what = if fake_base.is_some() { "rehearsal" } else { "run" };
            let shared = if store.shared() { format!(", shared in {}", store.location()) } else { String::new() };
            eprintln!("{verb} {what} {} (journal: {}{shared})", execution.run_id, journal_path.display());
            match (&fake, &fake_base) {
                (Some(fake), _) => eprintln!("{}", fake.banner()),
                (None, Some(base)) => eprintln!(
                    "REHEARSAL: gcloud is pointed at the `runbook simulate` server at {base}; this run takes the rehearsal lock, and http: steps to other hosts are refused."
                ),
                (None, None) => {}
            }
            for note in &notes {
                eprintln!("{note}");
            }
            if let Some(line) = execution.audit.banner() {
                eprintln!("{line}");
            }
        }
    }
    runner.subscribe(Box::new(journal));
    let marks = match (&fake, &fake_base) {
        (Some(fake), _) => Some(fake.recorder()),
        (None, Some(server)) => rehearsal::ServerMarks::subscriber(server),
        (None, None) => None,
    };
    if let Some(marks) = marks {
        runner.subscribe(marks);
    }
    match notifier {
        crate::notify::Setup::Notifier(notifier) => runner.subscribe(notifier),
        // Said once, whatever the output format: the incident channel hears nothing.
        crate::notify::Setup::Off(why) => eprintln!("{why}"),
        crate::notify::Setup::None => {}
    }
    become_subreaper();
    let outcome = runtime.block_on(async {
        let cancel = runner.cancel.clone();
        let signals = tokio::spawn(async move {
            if wait_for_signal().await {
                cancel.cancel();
            }
        });
        let outcome = if execution.recovery.undo { runner.run_undo().await.0 } else { runner.run().await };
        signals.abort();
        outcome
    });
    if let Some(fake) = &fake {
        fake.save();
        if !json && !settings.quiet {
            eprint!("{}", fake.report());
        }
    }
    if !json && let Some(line) = execution.audit.banner() {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
    if fake_base.is_some() && !json && !settings.quiet {
        eprintln!("This was a REHEARSAL: only the local fake was called; nothing real was changed.");
    }
    if runner.refused_answer {
        // Nothing was changed: a wrong `--answer` is the caller's mistake (exit 2).
        if !json {
            let _ = writeln!(
                std::io::stderr(),
                "Nothing was changed. Continue with a corrected answer: runbook resume {} --answer STEP_ID=VALUE",
                execution.run_id
            );
        }
        return Err(Error::Reported(runbook_state::exit::USAGE));
    }
    // The run id and what to do with it come last, after the summary and the rehearsal report.
    if !json && !settings.quiet {
        let id = &execution.run_id;
        let _ = writeln!(std::io::stderr(), "Run {id}: see it again with `runbook show {id}`");
    }
    match outcome {
        Outcome::Done => Ok(()),
        other => {
            if !json {
                // Not eprintln!: after SIGHUP the terminal is gone and a failed write must
                // not turn exit 130 into a panic.
                // After an undo, resuming would redo what was taken back: only `undo` goes on.
                if runner.nothing_ran() && !execution.recovery.undo {
                    let _ = writeln!(
                        std::io::stderr(),
                        "Nothing ran and nothing was changed: start it again when ready (resuming would start from the beginning too)."
                    );
                    return Err(Error::Reported(other.exit_code()));
                }
                let next = match runner.undo_left() {
                    Some(true) => Some("undo"),
                    Some(false) => None,
                    None if execution.recovery.undo => Some("undo"),
                    None => Some("resume"),
                };
                if let Some(next) = next {
                    let _ = writeln!(
                        std::io::stderr(),
                        "The run can be continued with: runbook {next} {}",
                        execution.run_id
                    );
                }
            }
            Err(Error::Reported(other.exit_code()))
        }
    }
}

fn header(plan: &Plan, run_id: &str, holder: &runbook_state::lock::Holder, yes: bool, forced: bool) -> Header {
    let runbook = &plan.runbook;
    let secret = |name: &str| runbook.params.get(name).is_some_and(|p| p.secret);
    let file = std::fs::canonicalize(&runbook.source.path).unwrap_or_else(|_| runbook.source.path.clone());
    Header {
        run_id: run_id.to_owned(),
        user: holder.user.clone(),
        host: holder.host.clone(),
        pid: holder.pid,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        identity: None,
        file,
        sha256: runbook.sha256.clone(),
        runbook: runbook.name.clone(),
        procedure: plan.procedure.clone(),
        environment: plan.environment.clone(),
        params: plan
            .params
            .iter()
            // A non-secret value can still hold a secret (a URL with a password in it): the
            // journal never holds it in clear (issue 23).
            .map(|(k, v)| {
                (k.clone(), if secret(k) { crate::redact::MASK.to_owned() } else { plan.redactor.redact(&v.as_text()) })
            })
            .collect(),
        secret_params: runbook.params.values().filter(|p| p.secret).map(|p| p.name.clone()).collect(),
        answers: plan.answers.iter().map(|(k, v)| (k.clone(), plan.redactor.redact(v))).collect(),
        vars: plan.var_overrides.iter().map(|(k, v)| (k.clone(), plan.redactor.redact(v))).collect(),
        yes,
        forced,
        rehearsal: None,
        plan_id: None,
        approvers: Vec::new(),
        break_glass: None,
        undo: false,
        on_failure: None,
        recovery_steps: recovery_steps(plan),
    }
}

/// The procedure's `recovery: true` steps, in order (included procedures too).
fn recovery_steps(plan: &Plan) -> Vec<String> {
    let mut order = Vec::new();
    if let Some(procedure) = plan.runbook.procedures.get(&plan.procedure) {
        crate::plan::steps_in_order(&plan.runbook, procedure, &mut order);
    }
    order.into_iter().filter(|s| s.recovery).map(|s| s.id.clone()).collect()
}

/// What the summary needs to know: the mutating steps, and what earlier attempts decided
/// and changed (in step order).
fn summary_context(
    plan: &Plan,
    completed: &HashMap<String, Option<StepOutput>>,
) -> crate::exec::terminal::SummaryContext {
    let mutating = mutating_steps(plan);
    let mut order = Vec::new();
    if let Some(procedure) = plan.runbook.procedures.get(&plan.procedure) {
        crate::plan::steps_in_order(&plan.runbook, procedure, &mut order);
    }
    let (mut decisions, mut changes) = (Vec::new(), Vec::new());
    for step in order {
        let Some(Some(output)) = completed.get(&step.id) else { continue };
        if matches!(step.kind, runbook_lang::step::StepKind::Prompt(_)) && !step.secret {
            decisions.extend(output.output.clone().map(|answer| (step.id.clone(), answer)));
        } else if mutating.contains(&step.id)
            && let Some(text) = serde_json::to_value(output).ok().as_ref().and_then(crate::exec::changes::what_changed)
        {
            changes.push((step.id.clone(), text));
        }
    }
    let folded = plan
        .runbook
        .procedures
        .values()
        .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
        .filter(|s| {
            !s.mutates()
                && matches!(s.kind, runbook_lang::step::StepKind::Run(_) | runbook_lang::step::StepKind::Shell(_))
                && s.outputs().contains(&"json")
        })
        .map(|s| s.id.clone())
        .collect();
    crate::exec::terminal::SummaryContext {
        run_id: String::new(),
        folded,
        recovery_steps: !recovery_steps(plan).is_empty(),
        earlier_recovery: None,
        mutating,
        earlier: completed.len(),
        earlier_decisions: decisions,
        earlier_changes: changes,
    }
}

/// Ids of every step of the runbook that changes something.
pub fn mutating_steps(plan: &Plan) -> std::collections::HashSet<String> {
    let steps = plan.runbook.procedures.values().flat_map(|p| p.stages.iter().flat_map(|s| &s.steps));
    steps.filter(|s| s.mutates()).map(|s| s.id.clone()).collect()
}

fn options(yes: bool, confirmations: Confirmations) -> Result<Options, Error> {
    Ok(Options {
        yes,
        confirmations,
        interactive: interactive(),
        capture_limit: capture_limit()?,
        base_dir: std::env::current_dir().map_err(|e| Error::Io(format!("cannot read the current directory: {e}")))?,
        extra_env: Vec::new(),
        remove_env: Vec::new(),
        http_guard: None,
        rehearsal_shell: None,
        strip_ansi: false,
        manual_by_person: false,
    })
}

/// Runs the plan's read-only steps (`--probe`, `--save-plan`, `apply`'s drift check);
/// also says whether a signal cut the probing short.
pub fn probe_outputs(plan: &Plan) -> Result<(Outputs, bool), Error> {
    probe_with(plan, options(false, Confirmations::default())?)
}

/// [`probe_outputs`] against a `runbook simulate` server that proved itself (`base`), for
/// `--dry-run --probe` in a rehearsal: the environment's `rehearsal:` vars are applied to the
/// plan first (the notes say which), gcloud gets the server's settings whatever the shell
/// exported, and `http:` steps may reach only the fake — as in a rehearsal's run.
pub fn probe_rehearsed(
    plan: &mut Plan,
    base: &str,
    settings: &Settings,
) -> Result<(Outputs, bool, Vec<String>), Error> {
    let notes = rehearsal::bind_vars(plan, base)?;
    let state = StateDir::resolve(settings.state_dir.as_deref()).map_err(Error::Io)?;
    state.create().map_err(Error::Io)?;
    let mut options = options(false, Confirmations::default())?;
    point_at_fake(&mut options, plan, base, rehearsal::server_env(base, &state)?);
    let (outputs, interrupted) = probe_with(plan, options)?;
    Ok((outputs, interrupted, notes))
}

/// What every step of a rehearsal (a run, a probe) gets: `http:` only to the fake at `base`
/// (and the hosts `--var` named), the fake's gcloud settings `env`, and the variables that
/// would reach the real cloud removed — one rule for runs and probes alike.
fn point_at_fake(options: &mut Options, plan: &Plan, base: &str, env: Vec<(String, String)>) {
    options.http_guard = Some(runbook_state::rehearsal::HostGuard::new(base, &plan.var_overrides));
    options.extra_env = env;
    options.remove_env = runbook_state::rehearsal::removed_env();
}

fn probe_with(plan: &Plan, options: Options) -> Result<(Outputs, bool), Error> {
    let mut runner = Runner::new(plan, options, Vec::new());
    // What a probed read step leaves behind is ended too, as in a run (SPEC rule 8).
    become_subreaper();
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
    Ok((runner.outputs.clone(), runner.cancel.is_cancelled()))
}

/// Two worker threads beside the thread that walks the run: prompts block the walking
/// thread, and the signal task must still run so that Ctrl-C at a question ends the run
/// cleanly (exit 130) instead of killing it. (A current-thread runtime would save the
/// hand-offs between threads around each step — a few per cent of a 200 × `/bin/true` run,
/// measured in issue 13 — but would leave signals unwatched during a question.)
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the runtime: {e}")))
}

/// Orphans of a step (a `sleep 300 &` whose shell was killed) are re-parented to us
/// instead of init, so the step's process-group wait reaps them: nothing is left behind.
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!("cannot become a child subreaper: {err}");
    }
}

/// SIGINT, SIGTERM or SIGHUP. The step's process group does not get the terminal's SIGINT (it is
/// not the foreground group), so the runner ends it when this fires.
pub async fn wait_for_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    // SIGHUP: the SSH session dropped. Like SIGTERM, the step is ended, recorded, resumable.
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return false;
    };
    tokio::select! {
        _ = interrupt.recv() => true,
        _ = terminate.recv() => true,
        _ = hangup.recv() => true,
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

/// `--confirm-env NAME` and `--confirm-target STEP=VALUE` as given.
pub fn confirmations(env: Option<String>, targets: &[String]) -> Result<Confirmations, Error> {
    let mut parsed = HashMap::new();
    for item in targets {
        let Some((id, value)) = item.split_once('=') else {
            return Err(Error::Usage(format!("invalid --confirm-target '{item}': expected STEP_ID=VALUE")));
        };
        parsed.insert(id.to_owned(), value.to_owned());
    }
    Ok(Confirmations { env, targets: parsed })
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
