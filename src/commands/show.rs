//! `runbook show RUN_ID`: one run's timeline (human, JSON, or Markdown for a postmortem).

use super::runs::find;
use std::collections::HashMap;
use std::fmt::Write as _;

use crate::cli::ShowFormat;
use crate::error::Error;
use runbook_engine::session::Settings;
use runbook_lang::diagnostic::clip;
use runbook_state::journal::{Record, Recorded};
use runbook_state::record::RunStatus;
use runbook_state::store::shown;

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
    let mut stages = runbook_engine::timeline::StageNumbers::default();
    for record in &recorded.records {
        match record {
            Record::RunStarted { ts, header } | Record::RunResumed { ts, header } => {
                let verb = if matches!(record, Record::RunStarted { .. }) { "started" } else { "resumed" };
                // Every field came from the journal (a shared store anyone with write access
                // may add to): each is shown escaped and bounded.
                let env =
                    header.environment.as_deref().map(|e| format!(" --env {}", shown(clip, e))).unwrap_or_default();
                let who = runbook_state::identity::display(
                    &shown(clip, header.identity.as_deref().unwrap_or_default()),
                    &shown(clip, &header.user),
                    &shown(clip, &header.host),
                );
                let _ = writeln!(
                    out,
                    "{}  run {verb}: {} {}{env} by {who} (pid {}, runbook {})",
                    clip(ts),
                    shown(clip, &header.runbook),
                    shown(clip, &header.procedure),
                    header.pid,
                    shown(clip, &header.version)
                );
                let file = header.file.display().to_string();
                let _ = writeln!(out, "{:26}file {} (sha256 {})", "", shown(clip, &file), shown(clip, &header.sha256));
                for (name, value) in &header.params {
                    let flag = runbook_lang::param::flag_name(name);
                    let value = runbook_lang::diagnostic::shown_value(value);
                    let _ = writeln!(out, "{:26}--{} {value}", "", shown(clip, &flag));
                }
                describe_rehearsal(&mut out, header);
                if let Some(reason) = &header.break_glass {
                    let _ =
                        writeln!(out, "{:26}BREAK GLASS (run without an approved plan): {}", "", shown(clip, reason));
                }
                if let Some(plan_id) = &header.plan_id {
                    let approvers: Vec<String> = header.approvers.iter().map(|a| shown(clip, a)).collect();
                    let _ = writeln!(
                        out,
                        "{:26}applied plan {}, approved by {}",
                        "",
                        shown(clip, plan_id),
                        approvers.join(", ")
                    );
                }
                if header.forced {
                    let _ = writeln!(out, "{:26}resumed with --force although the runbook file changed", "");
                }
            }
            Record::Event { ts, event } => {
                if let Some(line) = runbook_engine::timeline::describe_numbered(event, &mut stages) {
                    let _ = writeln!(out, "{}  {}", clip(ts), one_line(&line));
                }
            }
        }
    }
    for line in decisions_and_changes(&recorded) {
        let _ = writeln!(out, "{}", one_line(&line));
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

/// A timeline line built from journaled text: every control character shown as an escape
/// (a line break too, so a forged message cannot pass for lines of its own), the whole line
/// bounded. Quoted values are not cut on their own: a command the operator may paste (an
/// `on_interrupt` note, an undo) is shown whole.
fn one_line(line: &str) -> String {
    runbook_lang::diagnostic::clip_to(line, LINE_CHARS)
}

/// The longest timeline line `show` prints whole.
const LINE_CHARS: usize = 4000;

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
                (Some(server), _) => format!("the `runbook simulate` server at {}", shown(clip, server)),
                (None, Some(scenario)) => {
                    format!("a local fake (--simulate, scenario {})", shown(clip, &scenario.display().to_string()))
                }
                (None, None) => "a local fake (--simulate, built-in scenario)".to_owned(),
            };
            let _ = writeln!(out, "{:26}REHEARSAL against {against}: nothing real was called", "");
        }
        None => {
            let _ = writeln!(out, "{:26}real run (not a rehearsal)", "");
        }
    }
    for (name, value) in &header.vars {
        let _ = writeln!(out, "{:26}--var {}={}", "", shown(clip, name), shown(clip, value));
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
