//! Four eyes: `--save-plan FILE`, `runbook show-plan`, `runbook approve`, `runbook apply`,
//! and the break-glass rule for direct runs of an environment that needs approvals.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use indexmap::IndexMap;

use crate::cli::{OutputFormat, ProcedureCall};
use crate::error::{Error, exit};
use crate::library::checked_runbook;
use runbook_engine::plan::{Inputs, Outputs, Plan};
use runbook_engine::render::{Action, render};
use runbook_engine::session::{
    Audit, Recovery, Settings, Start, ask_missing_secrets, check_text, execute, interactive, probe_outputs,
};
use runbook_lang::model::RunbookRef;
use runbook_lang::step::{Step, StepKind};
use runbook_state::approvals::{Applied, Approval, Store, StoreError};
use runbook_state::dir::StateDir;
use runbook_state::plan_file::{FORMAT, PREFIX_LEN, PlanBody, PlanFile, Probe, RunbookCopy, short};

const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

fn refuse(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

fn now_text(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn secret_step_ids(runbook: &runbook_lang::model::Runbook) -> Vec<String> {
    runbook
        .procedures
        .values()
        .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
        .filter(|s| s.output_is_secret())
        .map(|s| s.id.clone())
        .collect()
}

fn steps(plan: &Plan) -> Vec<&Step> {
    let mut out = Vec::new();
    if let Some(procedure) = plan.runbook.procedures.get(&plan.procedure) {
        runbook_engine::plan::steps_in_order(&plan.runbook, procedure, &mut out);
    }
    out
}

/// The observations of the read-only steps that ran, in step order.
fn probes(plan: &Plan, outputs: &Outputs) -> Vec<Probe> {
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
fn rendered(plan: &Plan, outputs: &Outputs) -> Result<(String, serde_json::Value), Error> {
    let dry = runbook_engine::dry_run::build(plan, outputs);
    let shown = plan.redactor.redact(&runbook_engine::dry_run::human(plan, &dry));
    let json = serde_json::to_string(&dry).map_err(|e| Error::Io(e.to_string()))?;
    let json = serde_json::from_str(&plan.redactor.redact(&json)).map_err(|e| Error::Io(e.to_string()))?;
    Ok((shown, json))
}

/// `--save-plan FILE`: probes run, prompts are answered, nothing changes.
pub fn save(runbook: RunbookRef, call: ProcedureCall, file: &Path, settings: &Settings) -> Result<(), Error> {
    let ttl = match call.exec.plan_ttl.as_deref() {
        None => DEFAULT_TTL,
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|d| !d.is_zero() && d.as_secs() <= 30 * 24 * 3600)
            .ok_or_else(|| {
                refuse(format!("invalid --plan-ttl '{text}': expected a duration such as 30m or 2h (at most 30 days)"))
            })?,
    };
    // Secrets never enter a plan: it is bound and probed without them, at save and at apply.
    let secret_params: Vec<String> =
        runbook.params_of(&call.procedure).iter().filter(|p| p.secret).map(|p| p.name.clone()).collect();
    let secret_steps = secret_step_ids(&runbook);
    let mut params = call.params;
    params.retain(|name, _| !secret_params.contains(name));
    if let Some(answer) =
        call.exec.answer.iter().find(|a| a.split_once('=').is_some_and(|(id, _)| secret_steps.iter().any(|s| s == id)))
    {
        let id = answer.split_once('=').map_or("", |(id, _)| id);
        return Err(refuse(format!(
            "--answer {id}=…: `{id}` is a secret prompt; secrets are not written into a plan, give it to `runbook apply --answer`"
        )));
    }
    let inputs = Inputs { environment: call.exec.env, params, answers: call.exec.answer, vars: call.exec.vars };
    let created = Utc::now();
    let mut plan = Plan::bind(runbook.clone(), &call.procedure, inputs, created)?;
    let (outputs, interrupted) = probe_outputs(&plan)?;
    if interrupted {
        eprintln!("interrupted: no plan was written");
        return Err(Error::Reported(exit::INTERRUPTED));
    }
    answer_prompts(&mut plan, &outputs)?;
    let (shown, rendered) = rendered(&plan, &outputs)?;
    let creator = runbook_state::identity::Identity::current().name.clone();
    let expires = created + chrono::Duration::from_std(ttl).map_err(|e| refuse(e.to_string()))?;
    let mut answers: Vec<(String, String)> = plan.answers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    answers.sort();
    let body = PlanBody {
        format: FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        runbook: RunbookCopy {
            name: runbook.name.clone(),
            path: std::fs::canonicalize(&runbook.source.path).unwrap_or_else(|_| runbook.source.path.clone()),
            sha256: runbook.sha256.clone(),
            text: runbook.source.text.clone(),
        },
        procedure: plan.procedure.clone(),
        environment: plan.environment.clone(),
        approvals_required: plan.environment().map_or(0, |e| e.approvals).max(1),
        params: plan.params.iter().map(|(k, v)| (k.clone(), v.as_text())).collect(),
        secret_params,
        answers,
        vars: plan.var_overrides.clone(),
        probes: probes(&plan, &outputs),
        shown,
        rendered,
        creator,
        created: now_text(created),
        expires: now_text(expires),
    };
    let id = runbook_state::plan_file::write(file, &body).map_err(Error::Io)?;
    if !settings.quiet {
        eprintln!(
            "Saved plan {id} to {} (made by {}, expires {}).\nNext: someone else runs `runbook approve {}`, then `runbook apply {}`.",
            file.display(),
            body.creator,
            body.expires,
            file.display(),
            file.display()
        );
    }
    Ok(())
}

/// Every non-secret prompt of the procedure gets its answer now: from `--answer`, the
/// terminal, or its default. A secret prompt is asked at apply.
fn answer_prompts(plan: &mut Plan, outputs: &Outputs) -> Result<(), Error> {
    let mut missing = Vec::new();
    let mut found = Vec::new();
    let mut given = Vec::new();
    for step in steps(plan) {
        let StepKind::Prompt(_) = step.kind else { continue };
        if step.output_is_secret() || plan.answers.contains_key(&step.id) {
            continue;
        }
        let Ok(rendered) = render(plan, step, outputs) else { continue };
        let unknown = rendered.has_placeholders();
        let Action::Prompt { question, choices, labels, default, .. } = rendered.action else { continue };
        let StepKind::Prompt(prompt) = &step.kind else { continue };
        found.push((step.id.clone(), prompt, question, choices, labels, default.filter(|_| !unknown)));
    }
    for (id, prompt, question, choices, labels, default) in found {
        let answer = if interactive() {
            let operator = runbook_engine::exec::operator::Operator {
                interactive: true,
                yes: false,
                answers: std::collections::HashMap::new(),
                confirmations: runbook_engine::exec::operator::Confirmations::default(),
            };
            let items: Option<Vec<runbook_engine::exec::operator::Choice<'_>>> = choices.as_ref().map(|values| {
                values
                    .iter()
                    .enumerate()
                    .map(|(i, value)| runbook_engine::exec::operator::Choice {
                        value,
                        label: labels.as_ref().and_then(|l| l.get(i)).map(String::as_str),
                    })
                    .collect()
            });
            let check =
                |answer: &str| prompt.check_answer(answer, choices.as_deref(), answer, chrono::Utc::now()).map(|_| ());
            operator
                .prompt(&question, items.as_deref(), default.as_deref(), false, &check)
                .map_err(|e| refuse(e.to_string()))?
        } else {
            default
        };
        match answer {
            Some(answer) => given.push((id, answer)),
            None => missing.push(format!("--answer {id}=VALUE")),
        }
    }
    plan.answers.extend(given);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(refuse(format!("a plan records every answer and there is no terminal to ask: give {}", missing.join(" "))))
    }
}

fn read_plan(file: &Path) -> Result<PlanFile, Error> {
    runbook_state::plan_file::read(file).map_err(refuse)
}

fn store(settings: &Settings) -> Result<Box<dyn Store>, Error> {
    let state = StateDir::resolve(settings.state_dir.as_deref()).map_err(Error::Io)?;
    Ok(runbook_state::store::plan_records(settings.store()?.as_ref(), &state))
}

/// Approvals that count: for this id, by someone other than the creator. The others are
/// explained.
fn valid_approvals(planned: &PlanFile, store: &dyn Store) -> Result<(Vec<Approval>, Vec<String>), Error> {
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

/// `runbook show-plan FILE [--output json]`.
pub fn show(file: &Path, format: OutputFormat, settings: &Settings) -> Result<(), Error> {
    let planned = read_plan(file)?;
    let store = store(settings)?;
    let text = match format {
        OutputFormat::Human => describe(&planned, store.as_ref())?,
        OutputFormat::Json => {
            let value = describe_json(&planned, store.as_ref())?;
            serde_json::to_string_pretty(&value).map_err(|e| Error::Io(e.to_string()))? + "\n"
        }
    };
    crate::output::print(&text);
    Ok(())
}

/// What `describe` says, for machines: the plan as saved (secrets were never in it), the
/// approvals the store holds, and each condition apply checks with where it stands now.
fn describe_json(planned: &PlanFile, store: &dyn Store) -> Result<serde_json::Value, Error> {
    let body = &planned.body;
    let (valid, notes) = valid_approvals(planned, store)?;
    let applied = store.applied(&planned.id).map_err(Error::Io)?;
    let now = std::fs::read(&body.runbook.path).map(|b| runbook_state::plan_file::sha256_hex(&b)).unwrap_or_default();
    let pairs = |list: &[(String, String)]| -> serde_json::Value {
        list.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    Ok(serde_json::json!({
        "id": planned.id,
        "short_id": planned.short_id(),
        "creator": body.creator,
        "created": body.created,
        "expires": body.expires,
        "expired": planned.is_expired(Utc::now()).map_err(refuse)?,
        "runbook": {
            "name": body.runbook.name,
            "path": body.runbook.path,
            "sha256": body.runbook.sha256,
            "unchanged": now == body.runbook.sha256,
        },
        "procedure": body.procedure,
        "environment": body.environment,
        "params": pairs(&body.params),
        "secret_params": body.secret_params,
        "answers": pairs(&body.answers),
        "vars": pairs(&body.vars),
        "probes": body.probes.iter().map(|p| serde_json::json!({
            "step": p.step, "sha256": p.sha256, "output": p.output, "secret": p.output.is_none(),
        })).collect::<Vec<_>>(),
        "rendered": body.rendered,
        "approvals_required": body.approvals_required,
        "approvals": valid,
        "approval_notes": notes,
        "applied": applied.map(|a| serde_json::json!({"run_id": a.run_id, "by": a.by})),
        "store": store.describe(),
    }))
}

fn describe(planned: &PlanFile, store: &dyn Store) -> Result<String, Error> {
    let body = &planned.body;
    let mut out = String::new();
    let _ = writeln!(out, "Plan {}  (id {})", planned.short_id(), planned.id);
    let _ = writeln!(
        out,
        "Made by {} at {}; expires {}{}",
        body.creator,
        body.created,
        body.expires,
        if planned.is_expired(Utc::now()).map_err(refuse)? { " (EXPIRED)" } else { "" }
    );
    let _ = writeln!(
        out,
        "Runbook {} ({}, sha256 {})",
        body.runbook.name,
        body.runbook.path.display(),
        short(&body.runbook.sha256)
    );
    for name in &body.secret_params {
        let _ = writeln!(
            out,
            "Secret --{} is not in the plan: give it again at apply ({})",
            runbook_lang::param::flag_name(name),
            runbook_lang::param::secret_env_name(name)
        );
    }
    if !body.probes.is_empty() {
        let _ = writeln!(out, "Observed by the read-only steps:");
        for probe in &body.probes {
            let _ = writeln!(out, "  {}: {}", probe.step, probe_text(probe));
        }
    }
    let _ = writeln!(out);
    out.push_str(&body.shown);
    let (valid, notes) = valid_approvals(planned, store)?;
    let approvers: Vec<&str> = valid.iter().map(|a| a.approver.as_str()).collect();
    let applied = store.applied(&planned.id).map_err(Error::Io)?;
    let _ = writeln!(out, "\nApply runs it only if:");
    let _ = writeln!(out, "  - this file is unchanged (its content hashes to the id above)");
    let _ = writeln!(out, "  - {} is unchanged (sha256 {})", body.runbook.path.display(), short(&body.runbook.sha256));
    let now = std::fs::read(&body.runbook.path).map(|b| runbook_state::plan_file::sha256_hex(&b)).unwrap_or_default();
    if now != body.runbook.sha256 {
        let _ = writeln!(out, "      (it is gone or changed now: apply will refuse this plan)");
    }
    let _ = writeln!(out, "  - it runs before {}", body.expires);
    let _ = writeln!(
        out,
        "  - {} approval{} by someone other than {} (now {}{})",
        body.approvals_required,
        if body.approvals_required == 1 { "" } else { "s" },
        body.creator,
        valid.len(),
        if approvers.is_empty() { String::new() } else { format!(": {}", approvers.join(", ")) }
    );
    for note in notes {
        let _ = writeln!(out, "      ({note})");
    }
    let _ = writeln!(
        out,
        "  - it was not applied before (now: {})",
        applied.map_or_else(|| "not applied".to_owned(), |a| format!("applied in run {} by {}", a.run_id, a.by))
    );
    let _ = writeln!(out, "  - every read-only step above observes the same again, and the steps render as shown");
    let _ = writeln!(out, "Store: {}", store.describe());
    Ok(out)
}

fn probe_text(probe: &Probe) -> String {
    match &probe.output {
        None => format!("(secret; sha256 {})", short(&probe.sha256)),
        Some(value) => {
            let text = value.get("output").and_then(|o| o.as_str()).map_or_else(|| value.to_string(), str::to_owned);
            let first = text.lines().next().unwrap_or_default();
            let lines = text.lines().count();
            if lines > 1 { format!("{first} … ({lines} lines)") } else { first.to_owned() }
        }
    }
}

/// `runbook approve FILE`.
pub fn approve(
    file: &Path,
    comment: Option<String>,
    prefix: Option<String>,
    from_github: bool,
    settings: &Settings,
) -> Result<(), Error> {
    let planned = read_plan(file)?;
    if planned.is_expired(Utc::now()).map_err(refuse)? {
        return Err(refuse(format!(
            "plan {} expired at {}; it cannot be approved: make a new plan",
            planned.short_id(),
            planned.body.expires
        )));
    }
    let comment = comment.map(|c| check_text(&c, "the comment")).transpose()?;
    let (approver, source) = if from_github {
        github_reviewer()?
    } else {
        let me = runbook_state::identity::Identity::current();
        (me.name.clone(), me.source.as_str())
    };
    if approver == planned.body.creator {
        return Err(refuse(format!("{approver} made plan {}; someone else must approve it", planned.short_id())));
    }
    let store = store(settings)?;
    eprint!("{}", describe(&planned, store.as_ref())?);
    match prefix {
        Some(given) => {
            if given.trim().to_ascii_lowercase() != planned.short_id() {
                return Err(refuse(format!("--plan-id {given} does not match plan {}", planned.short_id())));
            }
        }
        None if interactive() => {
            let typed: String = dialoguer::Input::new()
                .with_prompt(format!("Approve as {approver}: type the first {PREFIX_LEN} characters of the plan id"))
                .allow_empty(true)
                .interact_text()
                .map_err(|e| refuse(format!("cannot ask for the plan id: {e}")))?;
            if typed.trim().to_ascii_lowercase() != planned.short_id() {
                eprintln!("not approved: `{}` is not the start of the plan id", typed.trim());
                return Err(Error::Reported(exit::ABORTED));
            }
        }
        None => {
            return Err(refuse(format!(
                "there is no terminal to type the plan id: pass --plan-id with its first {PREFIX_LEN} characters"
            )));
        }
    }
    let approval = Approval {
        plan_id: planned.id.clone(),
        approver: approver.clone(),
        time: now_text(Utc::now()),
        comment,
        source: source.to_owned(),
    };
    match store.add_approval(&approval) {
        Ok(()) => {}
        Err(StoreError::Exists) => {
            return Err(refuse(format!("{approver} approved plan {} already", planned.short_id())));
        }
        Err(StoreError::Io(err)) => return Err(Error::Io(err)),
    }
    let (valid, _) = valid_approvals(&planned, store.as_ref())?;
    eprintln!(
        "Approved plan {} as {approver} ({} of {} approvals; recorded in {}).",
        planned.short_id(),
        valid.len(),
        planned.body.approvals_required,
        store.describe()
    );
    Ok(())
}

/// GitHub mode: the workflow looks up who approved the protected environment's
/// deployment and passes it in; see SECURITY.md for what this does and does not prove.
fn github_reviewer() -> Result<(String, &'static str), Error> {
    if std::env::var("GITHUB_ACTIONS").as_deref() != Ok("true") {
        return Err(refuse("--approver-from-github works only in a GitHub Actions job (GITHUB_ACTIONS=true)"));
    }
    let reviewer = std::env::var("RUNBOOK_GITHUB_REVIEWER").unwrap_or_default();
    let reviewer = reviewer.trim();
    if !runbook_state::identity::github_login(reviewer) {
        return Err(refuse("--approver-from-github: RUNBOOK_GITHUB_REVIEWER must hold the reviewer's GitHub login"));
    }
    Ok((format!("github:{reviewer}"), "github"))
}

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
        return Err(refuse(format!("plan {id} expired at {}; make and approve a new plan", body.expires)));
    }
    let path = &body.runbook.path;
    if !path.is_file() {
        return Err(refuse(format!("the runbook file {} of plan {id} is gone", path.display())));
    }
    let entry = crate::library::load_entry(path);
    let runbook = checked_runbook(&entry)?;
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
            applied.run_id, applied.by, applied.time
        )));
    }
    let (valid, notes) = valid_approvals(&planned, store.as_ref())?;
    let needed = body.approvals_required.max(1) as usize;
    if valid.len() < needed {
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        return Err(refuse(format!(
            "plan {id} has {} of {needed} approval{} it needs{notes}; someone other than {} runs `runbook approve {}`",
            valid.len(),
            if needed == 1 { "" } else { "s" },
            body.creator,
            args.file.display()
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
    let approvers: Vec<String> = valid.iter().map(|a| a.approver.clone()).collect();
    let plan_id = planned.id.clone();
    let operator = runbook_state::identity::Identity::current().name.clone();
    let claim = move |run_id: &str| {
        let applied = Applied {
            plan_id: plan_id.clone(),
            run_id: run_id.to_owned(),
            by: operator.clone(),
            time: now_text(Utc::now()),
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

/// Probes again and refuses when an observation or the rendered steps differ from the plan.
fn check_drift(planned: &PlanFile, plan: Plan) -> Result<(), Error> {
    let (outputs, interrupted) = probe_outputs(&plan)?;
    if interrupted {
        eprintln!("interrupted while checking for drift: nothing was applied");
        return Err(Error::Reported(exit::INTERRUPTED));
    }
    let now = probes(&plan, &outputs);
    let mut lines = Vec::new();
    for before in &planned.body.probes {
        match now.iter().find(|p| p.step == before.step) {
            None => lines.push(format!("  {}: observed when the plan was made, could not run now", before.step)),
            Some(after) if after.sha256 != before.sha256 => {
                lines.push(format!("  {}: the output changed", before.step));
                lines.extend(diff(before, after));
            }
            Some(_) => {}
        }
    }
    for after in now.iter().filter(|a| !planned.body.probes.iter().any(|b| b.step == a.step)) {
        lines.push(format!("  {}: runs now, did not when the plan was made", after.step));
    }
    if lines.is_empty() {
        let (shown, _) = rendered(&plan, &outputs)?;
        let planned_lines: Vec<&str> = planned.body.shown.lines().skip(1).collect();
        let shown_lines: Vec<&str> = shown.lines().skip(1).collect();
        if planned_lines != shown_lines {
            lines.push(
                "  the steps render differently now (an environment variable or the runbook's context changed):".into(),
            );
            lines.extend(line_diff(&planned_lines, &shown_lines));
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    Err(refuse(format!(
        "plan {} is stale: the world changed since it was made; make and approve a new plan\n{}",
        planned.short_id(),
        lines.join("\n")
    )))
}

fn output_lines(probe: &Probe) -> Vec<String> {
    match &probe.output {
        None => Vec::new(),
        Some(value) => value
            .get("output")
            .and_then(|o| o.as_str())
            .map_or_else(|| value.to_string(), str::to_owned)
            .lines()
            .map(str::to_owned)
            .collect(),
    }
}

fn diff(before: &Probe, after: &Probe) -> Vec<String> {
    if before.output.is_none() {
        return vec!["    (a secret output: only its digest is kept)".into()];
    }
    let old = output_lines(before);
    let new = output_lines(after);
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    let new: Vec<&str> = new.iter().map(String::as_str).collect();
    line_diff(&old, &new)
}

/// Lines only in the plan (`-`) and only now (`+`), at most 20 of each.
fn line_diff(old: &[&str], new: &[&str]) -> Vec<String> {
    let mut out: Vec<String> =
        old.iter().filter(|l| !new.contains(l)).take(20).map(|l| format!("    - plan: {l}")).collect();
    out.extend(new.iter().filter(|l| !old.contains(l)).take(20).map(|l| format!("    + now:  {l}")));
    out
}
