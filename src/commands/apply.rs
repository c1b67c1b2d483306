//! `runbook apply FILE`: run exactly an approved plan, refused when anything drifted.

use super::drift::check_drift;
use super::plan::{Rule, now_text, read_plan, refuse, required_approvals, secret_step_ids, store, tally};

use std::path::Path;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;

use crate::cli::OutputFormat;
use crate::error::{Error, exit};
use crate::library::checked_runbook;
use runbook_engine::plan::{Inputs, Plan};
use runbook_engine::session::{Audit, Recovery, Settings, Start, ask_missing_secrets, execute, interactive};
use runbook_lang::diagnostic::clip;
use runbook_state::approvals::{Applied, StoreError};
use runbook_state::plan_file::short;

/// Options of `runbook apply`.
pub struct ApplyArgs<'a> {
    pub file: &'a Path,
    pub confirm_env: Option<String>,
    pub answers: Vec<String>,
    pub output: OutputFormat,
    /// `--on-failure undo|abort`, as on a run.
    pub on_failure: Option<runbook_engine::session::FailurePolicy>,
}

/// `runbook apply FILE`.
pub fn apply(args: ApplyArgs<'_>, settings: &Settings) -> Result<(), Error> {
    let planned = read_plan(args.file)?;
    let body = &planned.body;
    let id = planned.short_id().to_owned();
    if planned.is_expired(Utc::now()).map_err(refuse)? {
        return Err(refuse(format!(
            "plan {id} expired at {}; make and approve a new plan",
            planned.lifetime_end().map_err(refuse)?.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    // An approval given to a plan marked REHEARSAL is not one for a real run, nor the reverse.
    let rehearsal = runbook_engine::session::rehearsal::proven_server()?.is_some();
    if body.rehearsal != rehearsal {
        return Err(refuse(if body.rehearsal {
            format!(
                "plan {id} is a REHEARSAL plan (made against a `runbook simulate` server) and this would be a real run: apply it against the fake (export what `runbook simulate` prints), or make and approve a real plan"
            )
        } else {
            format!(
                "plan {id} is a real plan and gcloud is pointed at a `runbook simulate` server: this would be a REHEARSAL, not the approved run; apply it from a shell not pointed at the fake"
            )
        }));
    }
    // The runbook is the runbook folder's (`--dir`) of the plan's name, held to the plan's
    // sha256 below; never the file the plan names: a copy elsewhere has the same sha256 but
    // whatever allowed-signers file sits beside it. (On another machine the folder is
    // wherever that machine keeps it.)
    let library = crate::library::Library::load(&settings.dir);
    let Some(entry) = library.find(&body.runbook.name) else {
        return Err(refuse(format!(
            "the runbook folder {} has no runbook `{}` (plan {id} was made from {}); apply runs the runbooks of its folder (--dir)",
            clip(&settings.dir.display().to_string()),
            clip(&body.runbook.name),
            clip(&body.runbook.path.display().to_string())
        )));
    };
    let path = &entry.path;
    let runbook = checked_runbook(entry)?;
    if runbook.sha256 != body.runbook.sha256 {
        return Err(refuse(format!(
            "{} changed since plan {id} was made (sha256 {} → {}); make and approve a new plan",
            path.display(),
            short(&body.runbook.sha256),
            short(&runbook.sha256)
        )));
    }
    let store = store(settings)?;
    if let Some(applied) = store.applied(&planned.id).map_err(Error::Io)? {
        return Err(refuse(format!(
            "plan {id} was applied already (run {} by {} at {}); a plan runs once: make a new one",
            clip(&applied.run_id),
            clip(&applied.by),
            clip(&applied.time)
        )));
    }
    // The count is the runbook's, as it is now: the plan only records it, and a plan
    // whose record differs was edited (its id recomputed) or made by another version.
    let needed = required_approvals(&runbook, body.environment.as_deref());
    if body.approvals_required != needed {
        return Err(refuse(format!(
            "plan {id} was changed: it records {} approval{} but the runbook's environment `{}` needs {needed}; make and approve a new plan",
            body.approvals_required,
            if body.approvals_required == 1 { "" } else { "s" },
            clip(body.environment.as_deref().unwrap_or("(none)"))
        )));
    }
    let rule = Rule::of(&runbook, body.environment.as_deref());
    let tally = tally(&planned, store.as_ref(), &rule)?;
    let needed = needed as usize;
    if tally.counted.len() < needed {
        let notes = if tally.notes.is_empty() { String::new() } else { format!(" ({})", tally.notes.join("; ")) };
        let how = match rule {
            Rule::Signed { .. } => "runs `runbook approve {} --key KEY` with a key of the allowed signers",
            Rule::Unsigned | Rule::Unknown(_) => "runs `runbook approve {}`",
        };
        return Err(refuse(format!(
            "plan {id} has {} of {needed} approval{} it needs{notes}; someone other than {} {}",
            tally.counted.len(),
            if needed == 1 { "" } else { "s" },
            clip(&tally.author),
            how.replace("{}", &args.file.display().to_string())
        )));
    }
    let environment = body.environment.as_ref().and_then(|e| runbook.environments.get(e));
    let confirmed_env = environment.filter(|e| e.protected).map(|e| e.name.clone());
    if let Some(name) = &confirmed_env {
        confirm_environment(name, args.confirm_env.as_deref())?;
    }
    let created = DateTime::parse_from_rfc3339(&body.created)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| refuse(format!("the plan's creation time is not a time: {e}")))?;
    let planned_inputs = || Inputs {
        environment: body.environment.clone(),
        params: body.params.iter().cloned().collect(),
        answers: body.answers.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        vars: body.vars.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    };
    check_drift(&planned, Plan::bind(runbook.clone(), &body.procedure, planned_inputs(), created)?)?;

    // The run: the planned inputs, plus the secrets the plan never held.
    let secret_steps = secret_step_ids(&runbook);
    let mut inputs = planned_inputs();
    for answer in args.answers {
        let step = answer.split_once('=').map_or(answer.as_str(), |(id, _)| id);
        if !secret_steps.iter().any(|s| s == step) {
            return Err(refuse(format!(
                "--answer {step}=…: only secret prompts are answered at apply; the plan holds every other answer"
            )));
        }
        inputs.answers.push(answer);
    }
    let secrets: IndexMap<String, String> = body
        .secret_params
        .iter()
        .filter_map(|name| std::env::var(runbook_lang::param::secret_env_name(name)).ok().map(|v| (name.clone(), v)))
        .collect();
    inputs.params.extend(secrets);
    let mut plan = Plan::bind(runbook, &body.procedure, inputs, created)?;
    if interactive() {
        ask_missing_secrets(&mut plan)?;
    }
    let approvers: Vec<String> = tally.counted.iter().map(|a| clip(&a.approver)).collect();
    let plan_id = planned.id.clone();
    let operator = runbook_state::identity::Identity::current().name.clone();
    let claim = move |run_id: &str, header: &runbook_state::journal::Header| {
        let applied = Applied {
            plan_id: plan_id.clone(),
            run_id: run_id.to_owned(),
            by: operator.clone(),
            time: now_text(Utc::now()),
            inputs: Some(header.inputs_digest()),
        };
        match store.mark_applied(&applied) {
            Ok(()) => Ok(()),
            Err(StoreError::Exists) => Err(runbook_engine::session::Error::Usage(format!(
                "plan {} was applied already (just now, by another apply); a plan runs once",
                short(&plan_id)
            ))),
            Err(StoreError::Io(err)) => Err(runbook_engine::session::Error::Io(err)),
        }
    };
    let start = Start {
        // The approval confirms the stages; the manual work is still a person's to do and
        // acknowledge, at a terminal (without one it is journaled as not confirmed).
        manual_by_person: true,
        run_id: runbook_state::dir::new_run_id(),
        // The approval answers the stage confirmations; the environment was typed above.
        yes: true,
        json: args.output == OutputFormat::Json,
        completed: None,
        recovery: Recovery::on_failure(args.on_failure),
        resume_events: Vec::new(),
        forced: false,
        rehearsal: None,
        // The protected environment's name was typed (or given) above, before the drift check.
        confirmations: runbook_engine::exec::operator::Confirmations { env: confirmed_env, ..Default::default() },
        audit: Audit { plan_id: Some(planned.id.clone()), approvers, break_glass: None, claim: Some(Box::new(claim)) },
    };
    Ok(execute(&mut plan, start, settings)?)
}

/// The protected environment's name is still typed (or given with --confirm-env).
fn confirm_environment(name: &str, given: Option<&str>) -> Result<(), Error> {
    match given {
        Some(given) if given == name => Ok(()),
        Some(given) => Err(refuse(format!("--confirm-env {given} does not match the plan's environment `{name}`"))),
        None if interactive() => {
            let typed: String = dialoguer::Input::new()
                .with_prompt(format!("`{name}` is a protected environment: type `{name}` to apply the plan"))
                .allow_empty(true)
                .interact_text()
                .map_err(|e| refuse(format!("cannot ask the operator: {e}")))?;
            if typed.trim() == name {
                Ok(())
            } else {
                eprintln!("not applied: the operator did not confirm the protected environment `{name}`");
                Err(Error::Reported(exit::ABORTED))
            }
        }
        None => Err(refuse(format!(
            "the plan targets the protected environment `{name}` and there is no terminal to type it: pass --confirm-env {name}"
        ))),
    }
}
