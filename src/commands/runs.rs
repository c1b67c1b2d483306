//! `runbook history`, `runbook show <RUN_ID>` and `runbook resume <RUN_ID>`.

use std::collections::HashMap;
use std::fmt::Write as _;

use indexmap::IndexMap;

use crate::cli::{OutputFormat, ShowFormat};
use crate::error::Error;
use crate::library::checked_runbook;
use runbook_engine::plan::{Inputs, Plan, StepOutput};
use runbook_engine::session::{Audit, Recovery, Settings, Start, ask_missing_secrets, execute, interactive};
use runbook_lang::step::{Effect, StepKind};
use runbook_state::dir::StateDir;
use runbook_state::journal::{Record, Recorded, Summary};
use runbook_state::record::RunStatus;

fn state(settings: &Settings) -> Result<StateDir, Error> {
    StateDir::resolve(settings.state_dir.as_deref()).map_err(Error::Io)
}

/// `rehearsals`: `Some(true)` lists only rehearsals, `Some(false)` only real runs;
/// `break_glass` only runs that broke glass.
pub fn history(
    settings: &Settings,
    format: OutputFormat,
    rehearsals: Option<bool>,
    break_glass: bool,
) -> Result<(), Error> {
    let store = settings.store()?;
    let mut summaries: Vec<Summary> = Vec::new();
    let running = runbook_state::store::running(store.as_ref());
    for (id, recorded) in store.history().map_err(Error::Io)? {
        match recorded {
            Ok(recorded) => summaries.extend(recorded.summary(&id, running.contains(&id))),
            Err(err) => eprintln!("warning: {err}"),
        }
    }
    if break_glass {
        summaries.retain(|s| s.break_glass.is_some());
    }
    summaries.retain(|s| rehearsals.is_none_or(|wanted| s.rehearsal == wanted));
    // Newest first by the time the run started (journals record milliseconds), then by id:
    // ids of older versions carry whole seconds only.
    let started = |s: &Summary| chrono::DateTime::parse_from_rfc3339(&s.started).ok();
    summaries.sort_by(|a, b| started(b).cmp(&started(a)).then_with(|| b.id.cmp(&a.id)));
    match format {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&summaries).map_err(|e| Error::Io(e.to_string()))?;
            crate::output::print(&(json + "\n"));
        }
        OutputFormat::Human => {
            if summaries.is_empty() {
                crate::output::print(&format!("no runs recorded in {}\n", store.location()));
                return Ok(());
            }
            let mut out = format!(
                "{:<28} {:<12} {:<16} {:<11} {:<9} {:<24} {:<20} {:<14} {}\n",
                "RUN", "RUNBOOK", "PROCEDURE", "ENV", "KIND", "USER", "STARTED", "STATUS", "RECOVERY"
            );
            for s in &summaries {
                let _ = writeln!(
                    out,
                    "{:<28} {:<12} {:<16} {:<11} {:<9} {:<24} {:<20} {:<14} {}",
                    s.id,
                    s.runbook,
                    s.procedure,
                    s.environment.as_deref().unwrap_or("-"),
                    if s.rehearsal { "rehearsal" } else { "real" },
                    s.identity,
                    s.started.get(..19).unwrap_or(&s.started),
                    s.status,
                    recovery_column(s)
                );
                if let Some(reason) = &s.break_glass {
                    let _ = writeln!(out, "{:<24} BREAK GLASS: {reason}", "");
                }
            }
            crate::output::print(&out);
        }
    }
    Ok(())
}

/// `history`'s time to recovery: the time, `not recovered`, or `-` (no recovery step).
fn recovery_column(summary: &Summary) -> String {
    match summary.time_to_recovery_s {
        Some(seconds) => {
            let whole = std::time::Duration::from_secs_f64(seconds.max(0.0).round());
            humantime::format_duration(whole).to_string()
        }
        None if summary.recovery == "not recovered" => "not recovered".to_owned(),
        None => "-".to_owned(),
    }
}

/// A run's records and its status (see `Recorded::status`).
fn find(settings: &Settings, run_id: &str) -> Result<(Recorded, RunStatus), Error> {
    // Before any path or object name is built: `../../x` must not open (or resume) a journal
    // outside the state dir or the store's prefix.
    runbook_state::dir::check_run_id(run_id).map_err(Error::Usage)?;
    let store = settings.store()?;
    match store.run(run_id).map_err(Error::Io)? {
        Some(recorded) => {
            let holding = runbook_state::store::running(store.as_ref()).contains(run_id);
            let status = recorded.status(holding);
            Ok((recorded, status))
        }
        None => Err(Error::Usage(format!("no run `{run_id}` in {} (see `runbook history`)", store.location()))),
    }
}

pub fn show(settings: &Settings, run_id: &str, format: ShowFormat) -> Result<(), Error> {
    let (recorded, status) = find(settings, run_id)?;
    match format {
        ShowFormat::Json => {
            let json = serde_json::to_string_pretty(&recorded.records).map_err(|e| Error::Io(e.to_string()))?;
            crate::output::print(&(json + "\n"));
            return Ok(());
        }
        ShowFormat::Markdown => {
            let store = settings.store()?;
            let location = store.shared().then(|| store.location());
            let document = runbook_engine::timeline::markdown::Document {
                run_id,
                recorded: &recorded,
                status: &status,
                mutating: &mutating_steps(&recorded),
                next: &next_commands(&recorded, &status, run_id),
                store: location.as_deref(),
            };
            crate::output::print(&runbook_engine::timeline::markdown::render(&document));
            return Ok(());
        }
        ShowFormat::Human => {}
    }
    let mut out = String::new();
    for record in &recorded.records {
        match record {
            Record::RunStarted { ts, header } | Record::RunResumed { ts, header } => {
                let verb = if matches!(record, Record::RunStarted { .. }) { "started" } else { "resumed" };
                let env = header.environment.as_deref().map(|e| format!(" --env {e}")).unwrap_or_default();
                let who = runbook_state::identity::display(
                    header.identity.as_deref().unwrap_or_default(),
                    &header.user,
                    &header.host,
                );
                let _ = writeln!(
                    out,
                    "{ts}  run {verb}: {} {}{env} by {who} (pid {}, runbook {})",
                    header.runbook, header.procedure, header.pid, header.version
                );
                let _ = writeln!(out, "{:26}file {} (sha256 {})", "", header.file.display(), header.sha256);
                for (name, value) in &header.params {
                    let _ = writeln!(out, "{:26}--{} {value}", "", runbook_lang::param::flag_name(name));
                }
                describe_rehearsal(&mut out, header);
                if let Some(reason) = &header.break_glass {
                    let _ = writeln!(out, "{:26}BREAK GLASS (run without an approved plan): {reason}", "");
                }
                if let Some(plan_id) = &header.plan_id {
                    let _ =
                        writeln!(out, "{:26}applied plan {plan_id}, approved by {}", "", header.approvers.join(", "));
                }
                if header.forced {
                    let _ = writeln!(out, "{:26}resumed with --force although the runbook file changed", "");
                }
            }
            Record::Event { ts, event } => {
                if let Some(line) = runbook_engine::timeline::describe(event) {
                    let _ = writeln!(out, "{ts}  {line}");
                }
            }
        }
    }
    for line in decisions_and_changes(&recorded) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "time to recovery: {}", recorded.recovery().describe());
    let _ = writeln!(out, "status: {status}");
    if recorded.truncated {
        let _ = writeln!(out, "note: the last record was cut off (the process died while writing it)");
    }
    for command in next_commands(&recorded, &status, run_id) {
        let what = if command.starts_with("runbook undo") { "the undo" } else { "it" };
        let _ = writeln!(out, "continue {what} with: {command}");
    }
    crate::output::print(&out);
    Ok(())
}

/// Advice that fits the status: a finished rollback is never offered its undo.
fn next_commands(recorded: &Recorded, status: &RunStatus, run_id: &str) -> Vec<String> {
    let mut next = Vec::new();
    if status.is_undo() && recorded.undo_left() {
        next.push(format!("runbook undo {run_id}"));
    }
    // Resumable as long as no undo step started (an undo with every step skipped took nothing back).
    let resumable =
        !matches!(status, RunStatus::Done | RunStatus::Running | RunStatus::Undone | RunStatus::PartlyUndone);
    if resumable && recorded.undone_at().is_none() {
        next.push(format!("runbook resume {run_id}"));
    }
    next
}

/// Which steps change something comes from the runbook file, when it is still readable.
fn mutating_steps(recorded: &Recorded) -> std::collections::HashSet<String> {
    recorded
        .header()
        .and_then(|h| crate::library::load_entry(&h.file).checked.runbook.clone())
        .map(|runbook| {
            let steps = runbook.procedures.values().flat_map(|p| p.stages.iter().flat_map(|s| &s.steps));
            steps.filter(|s| s.mutates()).map(|s| s.id.clone()).collect()
        })
        .unwrap_or_default()
}

/// A run's rehearsal, `--var` overrides and `--yes`, under its header line in `show`.
fn describe_rehearsal(out: &mut String, header: &runbook_state::journal::Header) {
    match &header.rehearsal {
        Some(r) => {
            let against = match (&r.server, &r.scenario) {
                (Some(server), _) => format!("the `runbook simulate` server at {server}"),
                (None, Some(scenario)) => format!("a local fake (--simulate, scenario {})", scenario.display()),
                (None, None) => "a local fake (--simulate, built-in scenario)".to_owned(),
            };
            let _ = writeln!(out, "{:26}REHEARSAL against {against}: nothing real was called", "");
        }
        None => {
            let _ = writeln!(out, "{:26}real run (not a rehearsal)", "");
        }
    }
    for (name, value) in &header.vars {
        let _ = writeln!(out, "{:26}--var {name}={value}", "");
    }
    if header.yes {
        let _ = writeln!(out, "{:26}--yes: confirmations answered without asking", "");
    }
}

/// What the operator decided (prompt answers) and what the mutating steps produced, over
/// every attempt of the run: the summary a run ends with, rebuilt from the journal.
fn decisions_and_changes(recorded: &Recorded) -> Vec<String> {
    let mutating = mutating_steps(recorded);
    let mut kinds: HashMap<String, String> = HashMap::new();
    let (mut decisions, mut changes): (Vec<(String, String)>, Vec<String>) = (Vec::new(), Vec::new());
    // A later answer replaces an earlier one: the earlier line says so (values as journaled,
    // so a secret stays masked).
    // `newer`: the new answer is journaled already (the failure menu's edit asks first).
    let replace = |decisions: &mut Vec<(String, String)>, id: &str, how: String, newer: usize| {
        let earlier = decisions.iter_mut().rev().filter(|(d, _)| d == id).nth(newer);
        if let Some((_, line)) = earlier.filter(|(_, line)| !line.contains(" — replaced")) {
            line.push_str(&how);
        }
    };
    for record in &recorded.records {
        let Record::Event { ts, event } = record else { continue };
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let by = event["by"].as_str().unwrap_or("?");
        match event["event"].as_str() {
            Some("answer_replaced") => {
                let value = event["value"].as_str().unwrap_or_default();
                replace(&mut decisions, &id, format!(" — replaced at {ts} by {by} (resume --answer): {value:?}"), 0);
            }
            Some("failure_choice") if event["choice"] == "edit" => {
                let prompt = event["prompt"].as_str().unwrap_or_default();
                let value = event["answer"].as_str().unwrap_or(runbook_engine::redact::MASK);
                replace(&mut decisions, prompt, format!(" — replaced at {ts} by {by} (failure menu): {value:?}"), 1);
            }
            Some("step_started") => {
                kinds.insert(id, event["kind"].as_str().unwrap_or_default().to_owned());
            }
            Some("step_finished") if event["status"] == "done" => {
                if let (Some("prompt"), Some(answer)) = (kinds.get(&id).map(String::as_str), event["answer"].as_str()) {
                    decisions.push((id.clone(), format!("  {id}: {answer}")));
                }
                // What it changed, as journaled (older journals: from its output).
                let journaled = event["changed"].as_str().map(str::to_owned);
                if mutating.contains(&id)
                    && let Some(text) =
                        journaled.or_else(|| runbook_engine::exec::changes::what_changed(&event["output"]))
                {
                    changes.push(format!("  {id}: {text}"));
                }
            }
            _ => {}
        }
    }
    let mut lines = Vec::new();
    if !decisions.is_empty() {
        lines.push("decisions:".to_owned());
        lines.extend(decisions.into_iter().map(|(_, line)| line));
    }
    if !changes.is_empty() {
        lines.push("changes:".to_owned());
        lines.extend(changes);
    }
    lines
}

pub struct ResumeArgs {
    pub run_id: String,
    pub yes: bool,
    pub force: bool,
    pub answers: Vec<String>,
    /// `--confirm-env`, `--confirm-target`.
    pub confirm: (Option<String>, Vec<String>),
    pub output: OutputFormat,
    /// `runbook undo`: the run's undo steps run instead of its remaining steps.
    pub undo: bool,
    /// `--from STEP`: start again at this finished step.
    pub from: Option<String>,
    /// `--on-failure undo|abort`; without it, what the run's last attempt chose.
    pub on_failure: Option<runbook_engine::session::FailurePolicy>,
}

pub fn resume(settings: &Settings, args: ResumeArgs) -> Result<(), Error> {
    let (recorded, status) = find(settings, &args.run_id)?;
    if status == RunStatus::Running {
        return Err(Error::Usage(format!(
            "run {} is still running (it holds its lock); see `runbook lock status`",
            args.run_id
        )));
    }
    let header = recorded.header().cloned().ok_or_else(|| Error::Io(format!("run {} has no header", args.run_id)))?;
    if !args.undo
        && let Some(when) = recorded.undone_at()
    {
        let mut text = format!(
            "run {} was undone at {when}; resuming would redo what was taken back: start a new run",
            args.run_id
        );
        if recorded.undo_left() {
            text.push_str(&format!(" (finish the undo with: runbook undo {})", args.run_id));
        }
        return Err(Error::Usage(text));
    }
    if status == RunStatus::Done && !args.undo {
        return Err(Error::Usage(format!("run {} finished successfully; there is nothing to resume", args.run_id)));
    }
    // On another machine the file is wherever that machine keeps the runbook folder: found
    // by name there, and held to the journaled sha256 like any other.
    let file = if header.file.is_file() {
        header.file.clone()
    } else {
        let library = crate::library::Library::load(&settings.dir);
        match library.find(&header.runbook) {
            Some(entry) => entry.path.clone(),
            None => {
                return Err(Error::Usage(format!(
                    "the runbook file {} of run {} is not here, and {} has no runbook `{}`",
                    header.file.display(),
                    args.run_id,
                    settings.dir.display(),
                    header.runbook
                )));
            }
        }
    };
    let entry = crate::library::load_entry(&file);
    let runbook = checked_runbook(&entry)?;
    if runbook.sha256 != header.sha256 && !args.force {
        let verb = if args.undo { "undo" } else { "resume" };
        return Err(Error::Usage(format!(
            "refusing to {verb} run {}: {} changed since the run started (sha256 {} → {}); pass --force to {verb} with the new file",
            args.run_id,
            file.display(),
            short(&header.sha256),
            short(&runbook.sha256)
        )));
    }
    let forced = runbook.sha256 != header.sha256;
    let params: IndexMap<String, String> = header
        .params
        .iter()
        .filter(|(name, _)| !header.secret_params.contains(name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(header.secret_params.iter().filter_map(|name| {
            std::env::var(runbook_lang::param::secret_env_name(name)).ok().map(|v| (name.clone(), v))
        }))
        .collect();
    // A typed target given with --answer confirmed that attempt only: it is asked again.
    let typed = |id: &str| {
        runbook
            .procedures
            .values()
            .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
            .any(|s| s.id == id && s.confirm.is_some())
    };
    // What earlier attempts answered comes back without asking: the journal's answers, then
    // the last header's `--answer` values, then this resume's (the last one given wins).
    let journaled = super::restart::journaled_answers(&runbook, &header.procedure, &recorded);
    let headed = header.answers.iter().filter(|(k, v)| v.as_str() != runbook_engine::redact::MASK && !typed(k));
    let earlier: HashMap<String, String> = headed.cloned().chain(journaled.iter().cloned()).collect();
    let mut answers: Vec<String> = journaled
        .iter()
        .chain(header.answers.iter().filter(|(k, v)| v.as_str() != runbook_engine::redact::MASK && !typed(k)))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let given = args.answers.clone();
    answers.extend(args.answers);
    let vars = header.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let inputs = Inputs { environment: header.environment.clone(), params, answers, vars };
    // Bounds such as `not_after: now` were checked when the run started; the point in time
    // of a resumed rollback must not expire because the night went on.
    let started = chrono::DateTime::parse_from_rfc3339(&recorded.started())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    let mut plan = Plan::bind(runbook.clone(), &header.procedure, inputs, started)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        ask_missing_secrets(&mut plan)?;
    }
    let mut completed = completed_steps(&plan, &recorded, args.undo)?;
    let order = super::restart::walk_order(&plan.runbook, &header.procedure);
    let request = super::restart::Request {
        order: &order,
        recorded: &recorded,
        completed: &completed,
        earlier: &earlier,
        given: &given,
        from: args.from.as_deref(),
    };
    // `runbook undo` runs undo steps only: nothing starts again and no prompt is asked.
    let restart = if args.undo { None } else { super::restart::restart(&request)? };
    if !args.undo && !interactive() {
        super::restart::missing_secret_answers(&order, &recorded, &given)?;
    }
    if let Some(from) = &args.from {
        super::restart::confirm_from(from, args.yes, interactive())?;
    }
    let secret = |id: &str| order.iter().any(|s| s.id == id && s.secret);
    let resume_events = restart.as_ref().map(|r| r.events(&secret)).unwrap_or_default();
    if let Some(restart) = &restart {
        super::restart::forget_from(&order, &restart.from, &mut completed);
    }
    drop(order);
    // Resumed from the shared store on a machine that never saw the run: its spool starts
    // with the story so far.
    let spool = state(settings)?;
    if !spool.journal_path(&args.run_id).exists() && settings.store()?.shared() {
        spool.create().map_err(Error::Io)?;
        runbook_state::journal::seed(&spool.journal_path(&args.run_id), &recorded.records).map_err(Error::Io)?;
    }
    let start = Start {
        // An applied run's manual steps wait for a person on resume too.
        manual_by_person: header.plan_id.is_some(),
        run_id: args.run_id,
        // SPEC §3 rule 5: a resume asks again unless given --yes (and the names) again.
        yes: args.yes,
        confirmations: runbook_engine::session::confirmations(args.confirm.0, &args.confirm.1)?,
        json: args.output == OutputFormat::Json,
        completed: Some(completed),
        resume_events,
        forced,
        // A rehearsal resumes as a rehearsal, against its fake restored from the state dir.
        rehearsal: header.rehearsal.clone(),
        audit: Audit::resumed(&header),
        recovery: if args.undo {
            Recovery::undo(&plan, &recorded)?
        } else {
            Recovery::resumed(&plan, &recorded).with_on_failure(args.on_failure, &recorded)
        },
    };
    Ok(execute(&mut plan, start, settings)?)
}

/// Steps not to run again. A step whose output was secret is not in the journal: it runs
/// again when it only reads (or asks), and blocks the resume when it changed something.
/// For `runbook undo` such a step is refused only when an undo step reads its output (before
/// any undo step runs: nothing half-undone); otherwise its undo goes on without it.
fn completed_steps(plan: &Plan, recorded: &Recorded, undo: bool) -> Result<HashMap<String, Option<StepOutput>>, Error> {
    let mut completed = HashMap::new();
    let steps: HashMap<&str, &runbook_lang::step::Step> = plan
        .runbook
        .procedures
        .values()
        .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
        .map(|s| (s.id.as_str(), s))
        .collect();
    for (id, output, _skipped) in recorded.done_steps() {
        let Some(step) = steps.get(id.as_str()) else { continue };
        // An output journaled with a mask in it cannot be given back to later steps as it was.
        let masked = output.as_ref().is_some_and(|o| o.to_string().contains(runbook_engine::redact::MASK));
        if step.output_is_secret() || masked {
            let rerunnable = step.effect == Effect::Read || matches!(step.kind, StepKind::Prompt(_));
            if rerunnable {
                continue;
            }
            if undo {
                let reader = steps
                    .values()
                    .flat_map(|s| &s.undo)
                    .find(|u| runbook_engine::exec::recovery::menu::steps_read_by(u).contains(&id));
                let Some(reader) = reader else { continue };
                return Err(Error::Usage(format!(
                    "cannot undo run {}: undo step `{}` needs the output of step `{id}`, which was secret and never journaled; nothing was undone (undo `{id}` by hand, or read the secret again in an undo step)",
                    recorded.header().map(|h| h.run_id.as_str()).unwrap_or_default(),
                    reader.id
                )));
            }
            return Err(Error::Usage(format!(
                "step `{id}` produced a secret and changed something; its output cannot be recovered safely on resume"
            )));
        }
        let output = output.and_then(|o| serde_json::from_value::<StepOutput>(o).ok());
        completed.insert(id, output);
    }
    Ok(completed)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
