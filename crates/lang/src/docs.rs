//! `runbook docs`: the runbook as a Markdown document an on-call engineer can read without
//! the tool. Commands are shown as they would run, with `<param>` and `<vars.name>`
//! placeholders; the environments table gives the values.

use std::fmt::Write as _;

use minijinja::Value;

use crate::model::{Procedure, Runbook};
use crate::param::Param;
use crate::step::{Choices, Effect, OnFailure, Step, StepKind};
use crate::template::{Placeholder, Template};
use crate::timing::Timing;

pub fn markdown(runbook: &Runbook) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", runbook.title.as_deref().unwrap_or(&runbook.name));
    let _ = writeln!(
        out,
        "<!-- Generated from {} by `runbook docs {}`; edit the YAML, not this file. -->\n",
        runbook.source.display_path(),
        runbook.name
    );
    if let Some(description) = &runbook.description {
        let _ = writeln!(out, "{}\n", shift_headings(description.trim()));
    }
    let _ = writeln!(
        out,
        "Run it with `runbook {} <procedure> [flags]`; `--dry-run` shows every step first.\n",
        runbook.name
    );
    environments(&mut out, runbook);
    params(&mut out, runbook);
    let _ = writeln!(out, "## Procedures\n");
    for procedure in runbook.procedures.values() {
        let summary = procedure.summary.as_deref().map(|s| format!(": {s}")).unwrap_or_default();
        let _ = writeln!(out, "- [`{}`](#{}){summary}", procedure.name, anchor(&procedure.name));
    }
    out.push('\n');
    for procedure in runbook.procedures.values() {
        write_procedure(&mut out, runbook, procedure);
    }
    if let Some(notes) = &runbook.notes {
        let _ = writeln!(out, "## Notes\n\n{}\n", shift_headings(notes.trim()));
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Headings inside prose sit below the document's own `##` sections.
fn shift_headings(text: &str) -> String {
    text.lines()
        .map(|line| if line.starts_with('#') { format!("#{line}") } else { line.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn anchor(name: &str) -> String {
    format!("procedure-{}", name.to_lowercase())
}

fn environments(out: &mut String, runbook: &Runbook) {
    if runbook.environments.is_empty() {
        return;
    }
    let mut names: Vec<&str> = Vec::new();
    for env in runbook.environments.values() {
        for var in env.vars.keys() {
            if !names.contains(&var.as_str()) {
                names.push(var);
            }
        }
    }
    let _ = writeln!(out, "## Environments\n");
    let _ = write!(out, "| var |");
    for env in runbook.environments.values() {
        let protected = if env.protected { " (protected)" } else { "" };
        let _ = write!(out, " `{}`{protected} |", env.name);
    }
    let _ = write!(out, "\n|---|");
    for _ in runbook.environments.values() {
        out.push_str("---|");
    }
    out.push('\n');
    for var in names {
        let _ = write!(out, "| `{var}` |");
        for env in runbook.environments.values() {
            let _ = write!(out, " {} |", env.vars.get(var).map_or("—".to_owned(), |v| format!("`{v}`")));
        }
        out.push('\n');
    }
    out.push_str("\nA protected environment asks the operator to type its name before anything runs.\n\n");
    for env in runbook.environments.values() {
        for notify in &env.notify {
            let events: Vec<&str> = notify.events.iter().map(|e| e.name()).collect();
            let rehearsals = if env.rehearsal_notify { "" } else { " (not in rehearsals)" };
            let _ = writeln!(
                out,
                "`{}` notifies the webhook in `${}` ({}: {}) when that variable is set{rehearsals}; `--no-notify` silences one run.\n",
                env.name,
                notify.webhook_env,
                if notify.format == crate::notify::NotifyFormat::Slack { "slack" } else { "json" },
                events.join(", ")
            );
        }
    }
}

fn params(out: &mut String, runbook: &Runbook) {
    if runbook.params.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Params\n\n| flag | type | required | help |\n|---|---|---|---|");
    for param in runbook.params.values() {
        let _ = writeln!(
            out,
            "| `--{}` | {} | {} | {} |",
            param.flag(),
            describe_type(param),
            required(param),
            param.help.as_deref().unwrap_or("").replace('\n', " ")
        );
    }
    out.push('\n');
}

fn describe_type(param: &Param) -> String {
    let mut text = param.ty.name().to_owned();
    if let crate::param::ParamType::Enum(values) = &param.ty {
        text = format!("one of {}", values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "));
    }
    if let Some(pattern) = &param.pattern {
        let shown = pattern.as_str().trim_start_matches("^(?:").trim_end_matches(")$").replace('|', "\\|");
        text.push_str(&format!(", matching `{shown}`"));
    }
    if let Some(bound) = &param.not_after {
        text.push_str(&format!(", not after `{}`", String::from(bound.clone())));
    }
    if let Some(bound) = &param.not_before {
        text.push_str(&format!(", not before `{}`", String::from(bound.clone())));
    }
    if param.secret {
        text.push_str(", secret");
    }
    text
}

fn required(param: &Param) -> String {
    match (&param.default, param.required) {
        (Some(default), _) if !param.secret => format!("no (default `{default}`)"),
        (_, true) if param.ty != crate::param::ParamType::Bool => "yes".into(),
        _ => "no".into(),
    }
}

fn write_procedure(out: &mut String, runbook: &Runbook, procedure: &Procedure) {
    let summary = procedure.summary.as_deref().map(|s| format!(" — {s}")).unwrap_or_default();
    let _ = writeln!(out, "<a id=\"{}\"></a>\n### `{}`{summary}\n", anchor(&procedure.name), procedure.name);
    if let Some(description) = &procedure.description {
        let _ = writeln!(out, "{}\n", description.trim());
    }
    let mut usage = format!("runbook {} {}", runbook.name, procedure.name);
    if !runbook.environments.is_empty() {
        usage.push_str(" --env <env>");
    }
    for param in runbook.params_of(&procedure.name) {
        if param.required && param.default.is_none() && param.ty != crate::param::ParamType::Bool {
            usage.push_str(&format!(" --{} <{}>", param.flag(), param.name));
        }
    }
    let _ = writeln!(out, "```sh\n{usage}\n```\n");
    for (index, stage) in procedure.stages.iter().enumerate() {
        let _ = writeln!(out, "#### Stage {}: {}\n", index + 1, stage.name);
        if let Some(description) = &stage.description {
            let _ = writeln!(out, "{}\n", description.trim());
        }
        for (step_index, step) in stage.steps.iter().enumerate() {
            write_step(out, step, step_index + 1);
        }
    }
}

/// Templates rendered with placeholders: `<timestamp>`, `<vars.project>`, `<steps.x.output>`.
fn show(template: &Template) -> String {
    let context = minijinja::context! {
        params => Value::from_object(Placeholder::prefix("")),
        vars => Value::from_object(Placeholder::new("vars")),
        steps => Value::from_object(Placeholder::new("steps")),
        env => Value::from_object(Placeholder::new("env")),
        environment => Value::from_object(Placeholder::new("environment")),
        run => Value::from_object(Placeholder::new("run")),
    };
    template.render(&context).unwrap_or_else(|_| template.text.clone())
}

/// What a step of this kind does (a watch: how it watches, then what it samples).
fn write_kind(out: &mut String, step: &Step, kind: &StepKind, pad: &str) {
    match kind {
        StepKind::Run(run) => {
            let argv: Vec<String> = run.argv.iter().map(show).collect();
            let _ = writeln!(out, "\n{pad}```sh\n{pad}{}\n{pad}```", readable_command(argv));
            process_details(out, &run.process, pad);
        }
        StepKind::Shell(shell) => {
            let args: Vec<String> = shell.args.iter().map(show).collect();
            let _ = writeln!(
                out,
                "\n{pad}```sh\n{pad}# $1... = {}\n{}\n{pad}```",
                if args.is_empty() { "(none)".into() } else { args.join(" ") },
                indent(&shell.script, pad)
            );
            process_details(out, &shell.process, pad);
        }
        StepKind::Http(http) => {
            let _ = writeln!(out, "\n{pad}```http\n{pad}{} {}\n{pad}```", http.method, show(&http.url));
            let mut expect = Vec::new();
            if !http.expect.status.is_empty() {
                expect.push(format!(
                    "status {}",
                    http.expect.status.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
                ));
            }
            if let Some(text) = &http.expect.body_contains {
                expect.push(format!("a body containing `{}`", show(text)));
            }
            for (path, value) in &http.expect.json {
                expect.push(format!("`{path}` = `{value}`"));
            }
            if expect.is_empty() {
                expect.push("a 2xx status".into());
            }
            let _ = writeln!(out, "{pad}Expects {}.", expect.join(", "));
        }
        StepKind::Manual(text) => {
            let _ = writeln!(
                out,
                "\n{}",
                show(text).trim_end().lines().map(|l| format!("{pad}> {l}")).collect::<Vec<_>>().join("\n")
            );
            let _ = writeln!(out, "{pad}\n{pad}The operator confirms when done.");
        }
        StepKind::Prompt(prompt) => {
            let _ = writeln!(out, "{pad}Asks: *{}*", show(&prompt.question).trim());
            match &prompt.choices {
                Some(Choices::List(list)) => {
                    let _ = writeln!(
                        out,
                        "{pad}Choices: {}.",
                        list.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                    );
                }
                Some(Choices::Expr(expr)) => {
                    let _ = writeln!(out, "{pad}Choices from `{}`.", expr.text);
                }
                None => {}
            }
            let _ = writeln!(out, "{pad}Answer ahead with `--answer {}=VALUE`.", step.id);
        }
        StepKind::Assert(assert) => {
            let _ = writeln!(out, "{pad}Checks `{}`.", assert.expr.text);
            if let Some(message) = &assert.message {
                let _ = writeln!(out, "{pad}Otherwise: {}", show(message).trim());
            }
        }
        StepKind::Include(include) => {
            let _ = writeln!(out, "{pad}Runs procedure [`{}`](#{}).", include.procedure, anchor(&include.procedure));
        }
        StepKind::Watch(watch) => {
            let hold = match &watch.hold {
                Timing::Fixed(1) => String::new(),
                hold => format!(" for {} samples in a row", hold.shown()),
            };
            let _ = writeln!(
                out,
                "{pad}Watches every {} for up to {}: passes when `{}`{hold}.",
                watch.every.shown(),
                watch.within.shown(),
                watch.pass.text
            );
            if let Some(fail) = &watch.fail {
                let _ = writeln!(out, "{pad}Gives up at once when `{}`.", fail.text);
            }
            write_kind(out, step, &watch.sample, pad);
        }
    }
}

fn write_step(out: &mut String, step: &Step, number: usize) {
    let title = step.name.clone().unwrap_or_else(|| step.id.clone());
    let mut facts = vec![format!("`{}`", step.id), step.kind_name().to_owned()];
    if matches!(step.kind, StepKind::Run(_) | StepKind::Shell(_) | StepKind::Http(_)) {
        facts.push(if step.effect == Effect::Read { "read-only".into() } else { "**changes things**".into() });
        facts.push(format!("timeout {}", humantime::format_duration(step.timeout_or_default())));
    }
    if let StepKind::Watch(_) = step.kind {
        facts.push("read-only".into());
        facts.push(format!("timeout {} per sample", humantime::format_duration(step.timeout_or_default())));
    }
    if step.recovery {
        facts.push("**recovery**: passing it means the service recovered".into());
    }
    if step.secret {
        facts.push("output is secret".into());
    }
    let _ = writeln!(out, "{number}. **{title}** ({})", facts.join(", "));
    let pad = "   ";
    if let Some(when) = &step.when {
        let _ = writeln!(out, "{pad}Only when `{}`.", when.text);
    }
    if let Some(done_if) = &step.done_if {
        let _ = writeln!(out, "{pad}Already done (not run again) when `{}`.", done_if.text);
    }
    if let Some(target) = &step.confirm {
        let _ = writeln!(out, "{pad}The operator first types `{}` to confirm.", show(target));
    }
    if let Some(retry) = &step.retry {
        let until = retry.until.as_ref().map(|u| format!(" until `{}`", u.text)).unwrap_or_default();
        let _ = writeln!(
            out,
            "{pad}Retried up to {} times, every {}{until}.",
            retry.attempts,
            humantime::format_duration(retry.interval)
        );
    }
    write_kind(out, step, &step.kind, pad);
    match &step.on_failure {
        OnFailure::Abort => {}
        OnFailure::Continue => {
            let _ = writeln!(out, "{pad}If it fails, the run continues.");
        }
        OnFailure::Procedure(name) => {
            let _ = writeln!(out, "{pad}If it fails, procedure [`{name}`](#{}) runs.", anchor(name));
        }
    }
    if !step.undo.is_empty() {
        let _ = writeln!(out, "{pad}Undone (`runbook undo`, `--on-failure undo`) by:");
        for undo in &step.undo {
            let _ = writeln!(out, "{pad}- `{}` ({}): {}", undo.id, undo.kind_name(), undo_summary(undo));
        }
    }
    out.push('\n');
}

/// A text of several lines (a manual undo's instructions) on one line, whole: cutting it at
/// its first line break stopped it mid-sentence ("… First make").
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What an undo step does, on one line.
fn undo_summary(step: &Step) -> String {
    let text = match &step.kind {
        StepKind::Run(run) => format!("`{}`", readable_command(run.argv.iter().map(show).collect())),
        StepKind::Shell(shell) => format!("`{}`", shell.script.trim().lines().next().unwrap_or("")),
        StepKind::Http(http) => format!("`{} {}`", http.method, show(&http.url)),
        StepKind::Manual(text) => one_line(&show(text)),
        StepKind::Assert(assert) => format!("checks `{}`", assert.expr.text),
        StepKind::Prompt(prompt) => format!("asks *{}*", show(&prompt.question).trim()),
        StepKind::Include(include) => format!("runs `{}`", include.procedure),
        StepKind::Watch(watch) => format!("watches until `{}`", watch.pass.text),
    };
    match &step.confirm {
        Some(target) => format!("{text}, after the operator types `{}`", show(target)),
        None => text,
    }
}

fn process_details(out: &mut String, process: &crate::step::Process, pad: &str) {
    if let Some(stdin) = &process.stdin {
        let _ = writeln!(out, "{pad}Standard input: `{}`", show(stdin));
    }
    for (name, value) in &process.env {
        let _ = writeln!(out, "{pad}Environment: `{name}={}`", show(value));
    }
    if let Some(cwd) = &process.cwd {
        let _ = writeln!(out, "{pad}In `{}`.", show(cwd));
    }
    if let Some(capture) = process.capture {
        let _ = writeln!(
            out,
            "{pad}Captures its output ({}).",
            serde_json::to_value(capture).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
        );
    }
}

/// Like a pasteable command line, but `<placeholder>` arguments stay unquoted so the
/// document reads as the runbook author wrote it.
fn readable_command(argv: Vec<String>) -> String {
    argv.into_iter()
        .map(|arg| {
            let needs_quotes =
                arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"$`\\|&;()*?[]{}~#".contains(c));
            if needs_quotes { shell_words::quote(&arg).into_owned() } else { arg }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn indent(text: &str, pad: &str) -> String {
    text.trim_end().lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}
