//! `runbook show-plan FILE`: what a plan will do, its probes and its approvals.

use super::plan::{Rule, read_plan, refuse, store, tally};

use std::fmt::Write as _;
use std::path::Path;

use chrono::Utc;

use crate::cli::OutputFormat;
use crate::error::Error;
use runbook_engine::session::Settings;
use runbook_lang::diagnostic::{clip, escape_text};
use runbook_state::approvals::Store;
use runbook_state::plan_file::{PlanFile, Probe, short};

/// `runbook show-plan FILE [--output json]`.
pub fn show(file: &Path, format: OutputFormat, settings: &Settings) -> Result<(), Error> {
    let planned = read_plan(file)?;
    let store = store(settings)?;
    // A plan whose runbook is gone or broken is still shown (apply will refuse it).
    let rule = Rule::of_plan(&planned).unwrap_or_else(|e| Rule::Unknown(clip(&e.to_string())));
    let text = match format {
        OutputFormat::Human => describe(&planned, store.as_ref(), &rule)?,
        OutputFormat::Json => {
            let value = describe_json(&planned, store.as_ref(), &rule)?;
            serde_json::to_string_pretty(&value).map_err(|e| Error::Io(e.to_string()))? + "\n"
        }
    };
    crate::output::print(&text);
    Ok(())
}

/// What `describe` says, for machines: the plan as saved (secrets were never in it), the
/// approvals that count and why others do not, and each condition apply checks with where
/// it stands now. Strings are as recorded (JSON escapes control characters itself).
fn describe_json(planned: &PlanFile, store: &dyn Store, rule: &Rule) -> Result<serde_json::Value, Error> {
    let body = &planned.body;
    let tally = tally(planned, store, rule)?;
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
        "rehearsal": body.rehearsal,
        "creator": body.creator,
        "author": tally.author,
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
        "asserts": body.asserts,
        "rendered": body.rendered,
        "approvals_required": body.approvals_required,
        "signed_approvals": matches!(rule, Rule::Signed { .. }),
        "approvals": tally.counted,
        "approval_notes": tally.notes,
        "applied": applied.map(|a| serde_json::json!({"run_id": a.run_id, "by": a.by})),
        "store": store.describe(),
    }))
}

/// The plan as an approver reads it. Everything in it came from a file someone else wrote:
/// each value is shown with its control characters escaped ([`escape_text`], [`clip`]).
pub fn describe(planned: &PlanFile, store: &dyn Store, rule: &Rule) -> Result<String, Error> {
    let body = &planned.body;
    let mut out = String::new();
    if body.rehearsal {
        let _ = writeln!(out, "REHEARSAL: this plan was made against the local fake, not the real cloud");
    }
    let _ = writeln!(out, "Plan {}  (id {})", planned.short_id(), planned.id);
    let tally = tally(planned, store, rule)?;
    let author = match rule {
        Rule::Signed { .. } if body.author_signature.is_some() => {
            format!("{} (signed; recorded as {})", clip(&tally.author), clip(&body.creator))
        }
        _ => format!("{} (self-asserted)", clip(&body.creator)),
    };
    let _ = writeln!(
        out,
        "Made by {author} at {}; expires {}{}",
        clip(&body.created),
        clip(&body.expires),
        if planned.is_expired(Utc::now()).map_err(refuse)? { " (EXPIRED)" } else { "" }
    );
    let _ = writeln!(
        out,
        "Runbook {} ({}, sha256 {})",
        clip(&body.runbook.name),
        escape_text(&body.runbook.path.display().to_string()),
        clip(short(&body.runbook.sha256))
    );
    for name in &body.secret_params {
        let _ = writeln!(
            out,
            "Secret --{} is not in the plan: give it again at apply ({})",
            clip(&runbook_lang::param::flag_name(name)),
            clip(&runbook_lang::param::secret_env_name(name))
        );
    }
    if !body.answers.is_empty() {
        let _ = writeln!(out, "Answers:");
        for (step, answer) in &body.answers {
            let _ = writeln!(out, "  {}: {}", clip(step), escape_text(answer));
        }
    }
    if !body.probes.is_empty() {
        let _ = writeln!(out, "Observed by the read-only steps (whole):");
        for probe in &body.probes {
            let _ = writeln!(out, "  {}:{}", clip(&probe.step), probe_text(probe));
        }
    }
    if !body.asserts.is_empty() {
        let _ = writeln!(out, "Asserts the run checks:");
        for check in &body.asserts {
            let state = match check.holds {
                Some(true) => "holds now",
                Some(false) => "FAILS now",
                None => "reads what runs before it: checked when the run gets there",
            };
            let _ = writeln!(out, "  {}: {} ({state})", clip(&check.step), escape_text(&check.expr));
        }
    }
    let _ = writeln!(out);
    out.push_str(&escape_text(&body.shown));
    let approvers: Vec<String> = tally.counted.iter().map(|c| c.shown()).collect();
    let applied = store.applied(&planned.id).map_err(Error::Io)?;
    let _ = writeln!(out, "\nApply runs it only if:");
    let _ = writeln!(out, "  - this file is unchanged (its content hashes to the id above)");
    let _ = writeln!(
        out,
        "  - {} is unchanged (sha256 {})",
        escape_text(&body.runbook.path.display().to_string()),
        clip(short(&body.runbook.sha256))
    );
    let now = std::fs::read(&body.runbook.path).map(|b| runbook_state::plan_file::sha256_hex(&b)).unwrap_or_default();
    if now != body.runbook.sha256 {
        let _ = writeln!(out, "      (it is gone or changed now: apply will refuse this plan)");
    }
    let _ = writeln!(out, "  - it runs before {}", clip(&body.expires));
    let kind = match rule {
        Rule::Signed { signers } => {
            format!(", each signed with a key of {}, one per principal", escape_text(&signers.display().to_string()))
        }
        Rule::Unsigned => ", unsigned (each approver is who their account says)".to_owned(),
        Rule::Unknown(_) => String::new(),
    };
    let _ = writeln!(
        out,
        "  - {} approval{} by someone other than {}{kind} (now {}{})",
        body.approvals_required,
        if body.approvals_required == 1 { "" } else { "s" },
        clip(&tally.author),
        tally.counted.len(),
        if approvers.is_empty() { String::new() } else { format!(": {}", approvers.join(", ")) }
    );
    for note in tally.notes {
        let _ = writeln!(out, "      ({})", escape_text(&note));
    }
    let _ = writeln!(
        out,
        "  - it was not applied before (now: {})",
        applied.map_or_else(
            || "not applied".to_owned(),
            |a| format!("applied in run {} by {}", clip(&a.run_id), clip(&a.by))
        )
    );
    let _ = writeln!(out, "  - every read-only step above observes the same again, and the steps render as shown");
    let _ = writeln!(out, "Store: {}", store.describe());
    Ok(out)
}

/// A probe's whole observation: its text output line by line, or the JSON it captured, each
/// line escaped. A secret step's output was never written: only its digest is.
fn probe_text(probe: &Probe) -> String {
    match &probe.output {
        None => format!(" (secret; sha256 {})", clip(short(&probe.sha256))),
        Some(value) => {
            let text = match value.get("output") {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
                None => serde_json::to_string_pretty(value).unwrap_or_default(),
            };
            let text = text.trim_end();
            if text.lines().count() <= 1 {
                format!(" {}", escape_text(text))
            } else {
                text.lines().map(|line| format!("\n    {}", escape_text(line))).collect()
            }
        }
    }
}
