//! `runbook RUNBOOK PROCEDURE ... --save-plan FILE`: probe, answer, write a plan; nothing mutates.

use super::approve::KEY_VAR;
use super::plan::{DEFAULT_TTL, Rule, now_text, probes, refuse, rendered, required_approvals, secret_step_ids, steps};

use std::path::Path;

use chrono::Utc;

use crate::cli::ProcedureCall;
use crate::error::{Error, exit};
use runbook_engine::plan::{Inputs, Outputs, Plan};
use runbook_engine::render::{Action, render};
use runbook_engine::session::{Settings, interactive, probe_outputs};
use runbook_lang::diagnostic::clip;
use runbook_lang::model::RunbookRef;
use runbook_lang::step::StepKind;
use runbook_state::plan_file::{AssertCheck, FORMAT, PlanBody, RunbookCopy};
use runbook_state::signature;

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
    let asserts = check_asserts(&plan, &outputs)?;
    let (shown, rendered) = rendered(&plan, &outputs)?;
    refuse_secrets_in_inputs(&plan)?;
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
        approvals_required: required_approvals(&runbook, plan.environment.as_deref()),
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
        rehearsal: runbook_engine::session::rehearsal::proven_server()?.is_some(),
        asserts,
        author_signature: None,
    };
    let body = sign_as_author(body, &runbook, call.exec.signing_key)?;
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

/// In an environment with signed approvals the author signs the plan, so that their own
/// approval can be told apart from another person's: with `--signing-key`, else
/// `RUNBOOK_SIGNING_KEY`. Elsewhere the plan is left unsigned.
fn sign_as_author(
    mut body: PlanBody,
    runbook: &runbook_lang::model::Runbook,
    given: Option<std::path::PathBuf>,
) -> Result<PlanBody, Error> {
    let Rule::Signed { signers } = Rule::of(runbook, body.environment.as_deref()) else {
        if given.is_some() {
            return Err(refuse(
                "--signing-key: the environment takes unsigned approvals (`approvals: N`); save the plan without it",
            ));
        }
        return Ok(body);
    };
    let key = given.or_else(|| std::env::var_os(KEY_VAR).filter(|k| !k.is_empty()).map(Into::into));
    // In a GitHub Actions job the author is the job's actor and only the environment's
    // reviewers approve (see `plan::author`): no key there.
    if key.is_none() && runbook_state::identity::Identity::current().source == runbook_state::identity::Source::GitHub {
        return Ok(body);
    }
    let key = key.ok_or_else(|| {
        refuse(format!(
            "environment `{}` takes signed approvals: sign the plan as its author with --signing-key PATH (or {KEY_VAR})",
            clip(body.environment.as_deref().unwrap_or_default())
        ))
    })?;
    let message = runbook_state::plan_file::author_message(&body);
    let signature = signature::sign(&key, signature::PLAN_NAMESPACE, &message, interactive()).map_err(refuse)?;
    signature::verified_principal(&signers, signature::PLAN_NAMESPACE, &signature, &message)
        .map_err(|why| refuse(format!("the plan's signature would not name its author: {why}")))?;
    body.author_signature = Some(signature);
    Ok(body)
}

/// Every `assert:` of the procedure, evaluated now over what the plan knows: the probes'
/// observations, the answers and the params. One that fails refuses the plan, named; one that
/// reads a step that has not run yet is left for the run.
fn check_asserts(plan: &Plan, outputs: &Outputs) -> Result<Vec<AssertCheck>, Error> {
    let mut known = Outputs { values: outputs.values.clone(), placeholders: false };
    for (id, answer) in &plan.answers {
        let output = runbook_engine::plan::StepOutput { output: Some(answer.clone()), ..Default::default() };
        known.insert(id, &output);
    }
    let context = plan.context(&known);
    let mut checks = Vec::new();
    for step in steps(plan) {
        let StepKind::Assert(assert) = &step.kind else { continue };
        let holds = assert.expr.is_true(&context).ok();
        if holds == Some(false) {
            let message = assert
                .message
                .as_ref()
                .and_then(|m| m.render(&context).ok())
                .map_or_else(String::new, |m| format!(": {}", plan.redactor.redact(&m)));
            return Err(refuse(format!(
                "assert `{}` fails with what the plan observed and was answered ({}){message}; no plan was written",
                clip(&step.id),
                clip(&assert.expr.text)
            )));
        }
        checks.push(AssertCheck { step: step.id.clone(), expr: assert.expr.text.clone(), holds });
    }
    Ok(checks)
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
                manual_by_person: false,
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

/// A plan never holds a secret, and a masked value in it would not be what the approver
/// approved: a non-secret param, answer or `--var` whose value holds a secret (a URL with its
/// password, while the password is a secret param or `RUNBOOK_PARAM_*`) is refused (issue 23).
fn refuse_secrets_in_inputs(plan: &Plan) -> Result<(), Error> {
    let params = plan.params.iter().map(|(name, value)| (format!("param `{name}`"), value.as_text()));
    let vars = plan.var_overrides.iter().map(|(name, value)| (format!("--var `{name}`"), value.clone()));
    let answers = plan.answers.iter().map(|(id, value)| (format!("answer `{id}`"), value.clone()));
    for (what, value) in params.chain(vars).chain(answers) {
        if plan.redactor.redact(&value) != value {
            return Err(refuse(format!(
                "{what} holds a secret; secrets are not written into a plan — pass it as a `secret: true` param at `runbook apply`"
            )));
        }
    }
    Ok(())
}
