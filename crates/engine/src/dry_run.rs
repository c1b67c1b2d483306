//! `--dry-run`: every stage and step of the plan, fully rendered, nothing spawned.

use std::fmt::Write as _;

use serde::Serialize;

use crate::plan::{Outputs, Plan};
use crate::render::{Action, Rendered, render};
use runbook_lang::step::{Effect, Step, StepKind};

/// The rendered plan, for `--output json`.
#[derive(Debug, Serialize)]
pub struct DryRun {
    pub runbook: String,
    pub file: String,
    pub procedure: String,
    pub environment: Option<String>,
    pub params: Vec<(String, String)>,
    pub stages: Vec<DryStage>,
}

#[derive(Debug, Serialize)]
pub struct DryStage {
    pub procedure: String,
    pub name: String,
    pub description: Option<String>,
    pub steps: Vec<DryStep>,
}

#[derive(Debug, Serialize)]
pub struct DryStep {
    pub rendered: Option<Rendered>,
    /// When a template could not be rendered even with placeholders.
    pub error: Option<String>,
    pub id: String,
    pub when: Option<String>,
    pub command_line: Option<String>,
    pub writes: Vec<String>,
    pub stages: Vec<DryStage>,
    /// Its `undo:` steps, rendered with the outputs known when it runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<DryStep>,
    /// A mutating step's `done_if`, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_if: Option<String>,
    /// `--dry-run --probe`, a mutating step: `would change`, `already done` (its `done_if`
    /// holds with what the probes read) or `unknown` (it needs what only the run knows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<&'static str>,
}

/// `probed`: `outputs` hold what `--probe` read; each mutating step then says whether it
/// would change anything.
pub fn build(plan: &Plan, outputs: &Outputs, probed: bool) -> DryRun {
    let params = plan
        .params
        .iter()
        .map(|(name, value)| {
            let secret = plan.runbook.params.get(name).is_some_and(|p| p.secret);
            (name.clone(), if secret { crate::redact::MASK.to_owned() } else { value.as_text() })
        })
        .chain(plan.missing_secrets.iter().map(|n| (n.clone(), "<secret, asked for when the run starts>".to_owned())))
        .collect();
    DryRun {
        runbook: plan.runbook.name.clone(),
        file: plan.runbook.source.display_path(),
        procedure: plan.procedure.clone(),
        environment: plan.environment.clone(),
        params,
        stages: stages(plan, &plan.procedure, outputs, probed),
    }
}

fn stages(plan: &Plan, procedure: &str, outputs: &Outputs, probed: bool) -> Vec<DryStage> {
    let Some(proc) = plan.runbook.procedures.get(procedure) else { return Vec::new() };
    proc.stages.iter().map(|stage| dry_stage(plan, procedure, stage, outputs, probed)).collect()
}

fn dry_stage(
    plan: &Plan,
    procedure: &str,
    stage: &runbook_lang::model::Stage,
    outputs: &Outputs,
    probed: bool,
) -> DryStage {
    DryStage {
        procedure: procedure.to_owned(),
        name: stage.name.clone(),
        description: stage.description.clone(),
        steps: stage.steps.iter().map(|step| dry_step(plan, step, outputs, probed)).collect(),
    }
}

/// What `--probe` can tell of a mutating step: its `done_if` over what the probes read.
fn probe_state(plan: &Plan, step: &Step, outputs: &Outputs) -> &'static str {
    let Some(check) = &step.done_if else { return "would change" };
    match check.eval(&plan.context(outputs)) {
        Ok(value) if runbook_lang::template::is_placeholder(&value) => "unknown",
        Ok(value) if value.is_true() => "already done",
        Ok(_) => "would change",
        Err(_) => "unknown",
    }
}

/// One stage as the operator sees it before confirming it.
pub fn stage_preview(
    plan: &Plan,
    procedure: &str,
    index: usize,
    stage: &runbook_lang::model::Stage,
    outputs: &Outputs,
) -> String {
    let mut out = String::new();
    // Included procedures are shown inline, numbered as in the dry-run: confirming the
    // stage confirms them too.
    let dry = dry_stage(plan, procedure, stage, outputs, false);
    write_stages(&mut out, plan, std::slice::from_ref(&dry), "", index + 1);
    out
}

fn dry_step(plan: &Plan, step: &Step, outputs: &Outputs, probed: bool) -> DryStep {
    let (rendered, error) = match render(plan, step, outputs) {
        Ok(rendered) => (Some(rendered), None),
        Err(err) => (None, Some(plan.redactor.redact(&err.0))),
    };
    let command_line = rendered.as_ref().and_then(|r| r.command_line(plan));
    // Every process step has an exit status; listing it everywhere would only add noise.
    let implicit_status = matches!(step.kind, StepKind::Run(_) | StepKind::Shell(_));
    let writes = step
        .outputs()
        .iter()
        .filter(|o| !(implicit_status && **o == "status"))
        .map(|o| format!("steps.{}.{o}", step.id))
        .collect();
    let nested = match &step.kind {
        StepKind::Include(include) => stages(plan, &include.procedure, outputs, probed),
        _ => Vec::new(),
    };
    DryStep {
        rendered,
        error,
        id: step.id.clone(),
        when: step.when.as_ref().map(|w| w.text.clone()),
        command_line,
        writes,
        stages: nested,
        undo: step.undo.iter().map(|u| dry_undo_step(plan, u, outputs)).collect(),
        done_if: step.done_if.as_ref().map(|d| d.text.clone()),
        probe: (probed && step.mutates()).then(|| probe_state(plan, step, outputs)),
    }
}

/// The human form: what an operator reads before a real run.
pub fn human(plan: &Plan, dry: &DryRun) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Dry run of `{} {}` from {}: nothing is executed.", dry.runbook, dry.procedure, dry.file);
    if let Some(env) = plan.environment() {
        let protected = if env.protected { " (protected: a real run asks you to type its name)" } else { "" };
        let _ = writeln!(out, "Environment: {}{protected}", env.name);
        if env.approvals > 0 && plan.runbook.mutates(&plan.procedure) {
            let _ = writeln!(
                out,
                "Approvals: a run here applies a plan approved by {} other {}{}: add --save-plan FILE to \
                 this command, then `runbook approve FILE` (by them), then `runbook apply FILE`",
                env.approvals,
                if env.approvals == 1 { "person" } else { "people" },
                if env.signers.is_some() { ", each signing with an SSH key of the allowed-signers file" } else { "" },
            );
        }
    }
    if !dry.params.is_empty() {
        let _ = writeln!(out, "Params:");
        for (name, value) in &dry.params {
            let _ = writeln!(out, "  {name} = {}", runbook_lang::diagnostic::shown_value(value));
        }
    }
    write_stages(&mut out, plan, &dry.stages, "", 1);
    out
}

fn write_stages(out: &mut String, plan: &Plan, stages: &[DryStage], prefix: &str, first: usize) {
    let indent = "  ".repeat(prefix.matches('.').count());
    for (index, stage) in stages.iter().enumerate() {
        let number = format!("{prefix}{}", first + index);
        let _ = writeln!(out, "\n{indent}Stage {number}: {}  [{}]", stage.name, stage.procedure);
        if let Some(description) = &stage.description {
            for line in description.trim_end().lines() {
                let _ = writeln!(out, "{indent}  {line}");
            }
        }
        for (step_index, step) in stage.steps.iter().enumerate() {
            let step_number = format!("{number}.{}", step_index + 1);
            write_step(out, plan, step, &step_number, &indent);
            if !step.stages.is_empty() {
                write_stages(out, plan, &step.stages, &format!("{step_number}."), 1);
            }
        }
    }
}

/// What a rendered action does, under its step's title (a watch: how, then its sample).
fn write_action(
    out: &mut String,
    plan: &Plan,
    step: &DryStep,
    rendered: &crate::render::Rendered,
    action: &Action,
    pad: &str,
) {
    match action {
        Action::Run { env, stdin, cwd, .. } | Action::Shell { env, stdin, cwd, .. } => {
            if let Some(line) = &step.command_line {
                let _ = writeln!(out, "{pad}$ {line}");
            }
            for (name, value) in env {
                let _ = writeln!(out, "{pad}env {name}={}", value.shown);
            }
            if let Some(stdin) = stdin {
                let _ = writeln!(
                    out,
                    "{pad}stdin: {}",
                    if stdin.secret { format!("{} (secret)", stdin.shown) } else { quote_block(&stdin.shown) }
                );
            }
            if let Some(cwd) = cwd {
                let _ = writeln!(out, "{pad}in {}", cwd.display());
            }
        }
        Action::Http { method, url, headers, body, expect_status, expect_body_contains, expect_json, .. } => {
            let _ = writeln!(out, "{pad}{method} {}", plan.redactor.redact(url));
            for (name, value) in headers {
                let _ = writeln!(out, "{pad}{name}: {}", value.shown);
            }
            if let Some(body) = body {
                let _ = writeln!(out, "{pad}body: {}", body.shown);
            }
            let mut expect = Vec::new();
            if !expect_status.is_empty() {
                expect.push(format!(
                    "status {}",
                    expect_status.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
                ));
            }
            if let Some(text) = expect_body_contains {
                expect.push(format!("body contains {text:?}"));
            }
            for (path, value) in expect_json {
                expect.push(format!("{path} == {value}"));
            }
            if expect.is_empty() {
                expect.push("status 2xx".into());
            }
            let _ = writeln!(out, "{pad}expects {}", expect.join(", "));
        }
        Action::Manual { text } => {
            for line in text.trim_end().lines() {
                let _ = writeln!(out, "{pad}│ {line}");
            }
        }
        Action::Prompt { question, choices, labels, choices_from, default, secret } => {
            let _ = writeln!(out, "{pad}asks: {question}{}", if *secret { " (hidden input)" } else { "" });
            match (choices, labels) {
                // Each choice with what the operator sees for it (`label:`), one a line: what
                // an approver of a saved plan reads too.
                (Some(choices), Some(labels)) => {
                    let _ = writeln!(out, "{pad}choices:");
                    for (i, choice) in choices.iter().enumerate() {
                        match labels.get(i).filter(|l| *l != choice) {
                            Some(label) => writeln!(out, "{pad}  - {choice}: {label}"),
                            None => writeln!(out, "{pad}  - {choice}"),
                        }
                        .unwrap_or_default();
                    }
                }
                (Some(choices), None) => {
                    let _ = writeln!(out, "{pad}choices: {}", choices.join(", "));
                }
                (None, _) => {}
            }
            if let Some(from) = choices_from {
                let _ = writeln!(out, "{pad}choices from: {from}");
            }
            if let Some(default) = default {
                let _ = writeln!(out, "{pad}default: {default}");
            }
            if let Some(answer) = plan.answers.get(&rendered.id) {
                let shown = if *secret { crate::redact::MASK.to_owned() } else { answer.clone() };
                let _ = writeln!(out, "{pad}answered by --answer: {shown}");
            }
        }
        Action::Assert { expr, message } => {
            let _ = writeln!(out, "{pad}checks: {expr}");
            if let Some(message) = message {
                let _ = writeln!(out, "{pad}else fails with: {message}");
            }
        }
        Action::Include { procedure } => {
            let _ = writeln!(out, "{pad}runs procedure `{procedure}`:");
        }
        Action::Watch { sample, every, within, pass, hold, fail } => {
            let hold = if *hold == 1 { String::new() } else { format!(" for {hold} samples in a row") };
            let _ = writeln!(
                out,
                "{pad}watches every {} for up to {}: passes when {pass}{hold}",
                humantime::format_duration(*every),
                humantime::format_duration(*within)
            );
            if let Some(fail) = fail {
                let _ = writeln!(out, "{pad}gives up at once when {fail}");
            }
            write_action(out, plan, step, rendered, sample, pad);
        }
    }
}

fn write_step(out: &mut String, plan: &Plan, step: &DryStep, number: &str, indent: &str) {
    let pad = format!("{indent}      ");
    let Some(rendered) = &step.rendered else {
        let _ = writeln!(out, "{indent}  {number} {}", step.id);
        let _ = writeln!(out, "{pad}cannot be rendered yet: {}", step.error.as_deref().unwrap_or("unknown error"));
        return;
    };
    let kind = match &rendered.action {
        Action::Run { .. } => "run",
        Action::Shell { .. } => "shell",
        Action::Http { .. } => "http",
        Action::Manual { .. } => "manual",
        Action::Prompt { .. } => "prompt",
        Action::Assert { .. } => "assert",
        Action::Include { .. } => "include",
        Action::Watch { .. } => "watch",
    };
    let mut tags = vec![kind.to_owned()];
    if matches!(rendered.action, Action::Run { .. } | Action::Shell { .. } | Action::Http { .. } | Action::Watch { .. })
    {
        tags.push(match rendered.effect {
            Effect::Read => "read-only".to_owned(),
            Effect::Mutate => "MUTATES".to_owned(),
        });
        tags.push(format!("timeout {}", humantime::format_duration(rendered.timeout)));
    }
    let title = rendered.name.as_deref().map(|n| format!(" — {n}")).unwrap_or_default();
    let _ = writeln!(out, "{indent}  {number} {}{title}  ({})", rendered.id, tags.join(", "));
    if let Some(when) = &step.when {
        let _ = writeln!(out, "{pad}only when: {when}");
    }
    match (step.probe, &step.done_if) {
        (Some(state), Some(check)) => {
            let _ = writeln!(out, "{pad}{}: done_if `{check}`", state.to_uppercase());
        }
        (Some(state), None) => {
            let _ = writeln!(out, "{pad}{} (no done_if to tell)", state.to_uppercase());
        }
        (None, Some(check)) => {
            let _ = writeln!(out, "{pad}not run again when already done: {check}");
        }
        (None, None) => {}
    }
    if let Some(target) = &rendered.confirm {
        let _ = writeln!(out, "{pad}asks the operator to type `{target}` first");
    }
    write_action(out, plan, step, rendered, &rendered.action, &pad);
    if !step.writes.is_empty() {
        let _ = writeln!(out, "{pad}provides {}", step.writes.join(", "));
    }
    for undo in &step.undo {
        let _ = writeln!(out, "{pad}undo: {}", undo_line(plan, undo));
    }
}

/// An undo step as the dry-run shows it. An argument that cannot be rendered before the
/// run (a loop over a split read by an earlier step) is shown as what it is made from.
fn dry_undo_step(plan: &Plan, step: &Step, outputs: &Outputs) -> DryStep {
    let mut dry = dry_step(plan, step, outputs, false);
    if let (None, StepKind::Run(run)) = (&dry.rendered, &step.kind) {
        let context = plan.context(outputs);
        let argv = run.argv.iter().map(|arg| match arg.render(&context) {
            Ok(text) => plan.redactor.redact(&text),
            Err(_) => {
                let refs = arg.references().unwrap_or_default();
                let from: Vec<&str> = refs.iter().map(String::as_str).filter(|r| r.starts_with("steps.")).collect();
                // The literal text before the template (`--to-revisions=`) is kept.
                let literal = arg.text.find('{').map_or("", |at| &arg.text[..at]);
                let from = if from.is_empty() { "the run".to_owned() } else { from.join(", ") };
                format!("{literal}<from {from}>")
            }
        });
        dry.command_line = Some(crate::render::command_line(argv));
    }
    dry
}

/// One undo step on one line, under the step it undoes.
fn undo_line(plan: &Plan, step: &DryStep) -> String {
    if let (None, Some(line)) = (&step.rendered, &step.command_line) {
        return format!("{} $ {line}", step.id);
    }
    let Some(rendered) = &step.rendered else {
        return format!("{} cannot be rendered yet: {}", step.id, step.error.as_deref().unwrap_or("unknown error"));
    };
    let what = match &rendered.action {
        Action::Run { .. } | Action::Shell { .. } => format!("$ {}", step.command_line.as_deref().unwrap_or("")),
        Action::Http { method, url, .. } => format!("{method} {}", plan.redactor.redact(url)),
        Action::Manual { text } => format!("manual: {}", runbook_lang::docs::one_line(text)),
        Action::Assert { expr, .. } => format!("checks {expr}"),
        Action::Prompt { question, .. } => format!("asks: {question}"),
        Action::Include { procedure } => format!("runs procedure `{procedure}`"),
        Action::Watch { pass, .. } => format!("watches until {pass}"),
    };
    let typed = rendered.confirm.as_ref().map(|t| format!(" (after typing `{t}`)")).unwrap_or_default();
    format!("{} {what}{typed}", step.id)
}

fn quote_block(text: &str) -> String {
    if text.contains('\n') { format!("\n{text}") } else { format!("{text:?}") }
}
