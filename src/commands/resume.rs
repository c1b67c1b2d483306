//! `runbook resume RUN_ID` and `runbook undo RUN_ID`: continue a run, or run its undo steps,
//! through the same session as a first run.

use super::runs::{find, state};
use std::collections::HashMap;

use indexmap::IndexMap;

use crate::cli::OutputFormat;
use crate::error::Error;
use crate::library::checked_runbook;
use runbook_engine::plan::{Inputs, Plan, StepOutput};
use runbook_engine::session::{Audit, Recovery, Settings, Start, ask_missing_secrets, execute, interactive};
use runbook_lang::diagnostic::clip;
use runbook_lang::step::{Effect, StepKind};
use runbook_state::journal::Recorded;
use runbook_state::record::RunStatus;

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
    /// `--break-glass REASON`: go on where the approval does not reach (journaled).
    pub break_glass: Option<String>,
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
    refuse_masked_inputs(&header, &args.run_id)?;
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
    let mut deviations =
        if args.undo { Vec::new() } else { deviations(&given, &earlier, args.from.as_deref(), forced, &secret) };
    if let Some(plan_id) = &header.plan_id {
        let applied = applied_by_this_run(settings, plan_id, &header.run_id)?;
        // The values the run was applied with, as apply recorded them: a journal edited to
        // other params, answers or vars is not the approved run.
        if applied.inputs.is_some_and(|digest| digest != header.inputs_digest()) {
            deviations
                .push("journaled params, answers or vars that differ from those the plan was applied with".into());
        }
    }
    let audit = audit(&header, &plan, args.undo, &deviations, args.break_glass.as_deref())?;
    let covered = audit.plan_id.is_some() && audit.break_glass.is_none();
    let resume_events = restart.as_ref().map(|r| r.events(&secret)).unwrap_or_default();
    if let Some(restart) = &restart {
        match &restart.only {
            Some(only) => completed.retain(|id, _| !only.contains(id)),
            None => super::restart::forget_from(&order, &restart.from, &mut completed),
        }
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
        // SPEC §3 rule 5: a resume asks again unless given --yes (and the names) again. A run
        // of an approved plan goes on as `apply` runs it: the approval confirms the stages, so
        // no stage is skipped and no answer edited at a menu (that needs --break-glass).
        yes: args.yes || (covered && !args.undo),
        confirmations: runbook_engine::session::confirmations(args.confirm.0, &args.confirm.1)?,
        json: args.output == OutputFormat::Json,
        completed: Some(completed),
        resume_events,
        forced,
        // A rehearsal resumes as a rehearsal, against its fake restored from the state dir.
        rehearsal: header.rehearsal.clone(),
        audit,
        recovery: if args.undo {
            Recovery::undo(&plan, &recorded)?
        } else {
            Recovery::resumed(&plan, &recorded).with_on_failure(args.on_failure, &recorded)
        },
    };
    Ok(execute(&mut plan, start, settings)?)
}

/// A journal that names an applied plan is believed only when the approval store says this
/// run applied it (apply marks the plan, create-if-absent, with its run id): a header edited
/// to name a plan and approvers resumes under no approval.
fn applied_by_this_run(
    settings: &Settings,
    plan_id: &str,
    run_id: &str,
) -> Result<runbook_state::approvals::Applied, Error> {
    let store = super::plan::store(settings)?;
    match store.applied(plan_id).map_err(Error::Io)? {
        Some(applied) if applied.run_id == run_id => Ok(applied),
        found => Err(Error::Usage(format!(
            "run {} names plan {}, but the approval store has no record that this run applied it{}: its journal was not written by `runbook apply`; nothing runs under that approval",
            clip(run_id),
            clip(runbook_state::plan_file::short(plan_id)),
            found.map(|a| format!(" (run {} applied it)", clip(&a.run_id))).unwrap_or_default()
        ))),
    }
}

/// What a resume changes from the run as it was started: answers other than those it had
/// (secret prompts excepted: they are never in a plan), `--from`, a changed runbook file.
fn deviations(
    given: &[String],
    earlier: &HashMap<String, String>,
    from: Option<&str>,
    forced: bool,
    secret: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut out: Vec<String> = given
        .iter()
        .filter_map(|answer| answer.split_once('='))
        .filter(|(id, value)| !secret(id) && earlier.get(*id).is_none_or(|v| v != value))
        .map(|(id, _)| format!("a new --answer {}", clip(id)))
        .collect();
    if let Some(from) = from {
        out.push(format!("--from {}", clip(from)));
    }
    if forced {
        out.push("a changed runbook file (--force)".into());
    }
    out
}

/// Who allows this resume or undo. An approval covers exactly the approved run: a resume of
/// an applied run with the same steps and values goes on under it (and says so); anything
/// else needs a new approved plan or `--break-glass REASON`. `runbook undo` of an applied run
/// follows the environment's rule for direct runs: where that needs approvals, it needs a
/// break-glass reason.
fn audit(
    header: &runbook_state::journal::Header,
    plan: &Plan,
    undo: bool,
    deviations: &[String],
    reason: Option<&str>,
) -> Result<Audit, Error> {
    let mut audit = Audit::resumed(header);
    let Some(plan_id) = header.plan_id.as_deref() else {
        // Neither applied nor break-glass nor rehearsed, in an environment whose direct runs
        // need approvals: its journal was written or relabelled by hand (or the runbook asks
        // for approvals since). It goes on only as a direct run would.
        let gated = plan.environment().is_some_and(|e| e.approvals > 0)
            && (undo || plan.runbook.mutates(&plan.procedure))
            && header.break_glass.is_none()
            && header.rehearsal.is_none();
        if gated {
            audit.break_glass = runbook_engine::session::break_glass(plan, reason, false)?;
            return Ok(audit);
        }
        if reason.is_some() {
            return Err(Error::Usage(format!(
                "--break-glass: run {} did not apply a plan; it goes on as it was started",
                clip(&header.run_id)
            )));
        }
        return Ok(audit);
    };
    let needed = plan.environment().map_or(0, |e| e.approvals);
    let rehearsal = header.rehearsal.is_some();
    let why: Option<String> = if undo {
        (needed > 0 && !rehearsal).then(|| {
            format!(
                "undoing run {} of plan {} is not what was approved, and environment `{}` needs {needed} approval{} for a direct run",
                clip(&header.run_id),
                runbook_state::plan_file::short(plan_id),
                clip(plan.environment.as_deref().unwrap_or_default()),
                if needed == 1 { "" } else { "s" }
            )
        })
    } else if deviations.is_empty() {
        None
    } else {
        Some(format!(
            "run {} applied plan {} (approved by {}); resuming it with {} is not what was approved",
            clip(&header.run_id),
            runbook_state::plan_file::short(plan_id),
            header.approvers.iter().map(|a| clip(a)).collect::<Vec<_>>().join(", "),
            deviations.join(", ")
        ))
    };
    match (why, reason) {
        (Some(why), None) => {
            Err(Error::Usage(format!("{why}: make and approve a new plan, or pass --break-glass REASON (journaled)")))
        }
        (Some(_), Some(reason)) => {
            audit.break_glass = Some(runbook_engine::session::check_text(reason, "the break-glass reason")?);
            Ok(audit)
        }
        (None, Some(_)) => Err(Error::Usage(format!(
            "--break-glass: this {} of run {} is covered by its approved plan {}; run it without --break-glass",
            if undo { "undo" } else { "resume" },
            clip(&header.run_id),
            runbook_state::plan_file::short(plan_id)
        ))),
        (None, None) => {
            if !undo {
                eprintln!(
                    "Resuming run {} of plan {} approved by {}: the same steps and values as approved.",
                    clip(&header.run_id),
                    runbook_state::plan_file::short(plan_id),
                    header.approvers.iter().map(|a| clip(a)).collect::<Vec<_>>().join(", ")
                );
            }
            Ok(audit)
        }
    }
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

/// A non-secret param or `--var` whose value held a secret was journaled masked: resuming
/// with the mask in its place would run other commands than the run did, so the run is not
/// resumed (issue 23).
fn refuse_masked_inputs(header: &runbook_state::journal::Header, run_id: &str) -> Result<(), Error> {
    let params = header.params.iter().filter(|(name, _)| !header.secret_params.contains(name));
    let masked = params
        .map(|(name, value)| (format!("param `{name}`"), value))
        .chain(header.vars.iter().map(|(name, value)| (format!("--var `{name}`"), value)))
        .find(|(_, value)| value.contains(runbook_engine::redact::MASK));
    match masked {
        Some((what, _)) => Err(Error::Usage(format!(
            "cannot resume run {run_id}: its {what} held a secret, which the journal keeps masked; \
             start a new run (give the secret through a `secret: true` param)"
        ))),
        None => Ok(()),
    }
}
