//! `runbook show-plan FILE`: what a plan will do, its probes and its approvals.

use super::plan::{read_plan, refuse, store, valid_approvals};

use std::fmt::Write as _;
use std::path::Path;

use chrono::Utc;

use crate::cli::OutputFormat;
use crate::error::Error;
use runbook_engine::session::Settings;
use runbook_state::approvals::Store;
use runbook_state::plan_file::{PlanFile, Probe, short};

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

pub fn describe(planned: &PlanFile, store: &dyn Store) -> Result<String, Error> {
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
