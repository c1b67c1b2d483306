//! `apply`'s drift check: the world the probes see now against the one the plan was
//! approved on; any difference refuses the plan.

use super::plan::{probes, refuse, rendered};
use crate::error::{Error, exit};
use runbook_engine::plan::Plan;
use runbook_engine::session::probe_outputs;
use runbook_state::plan_file::{PlanFile, Probe};

/// Probes again and refuses when an observation or the rendered steps differ from the plan.
pub fn check_drift(planned: &PlanFile, plan: Plan) -> Result<(), Error> {
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
