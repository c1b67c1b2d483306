//! `runbook undo RUN_ID` and `--on-failure undo|abort`: what a run or a resumption does
//! about the undo engine (`exec::recovery::undo`).

use std::collections::{HashMap, HashSet};

use super::Error;
use crate::exec::Runner;
use crate::plan::{Plan, StepOutput};
use runbook_lang::step::Step;
use runbook_state::journal::{Header, Record, Recorded};

/// `--on-failure`: what a step failing where its `on_failure` aborts does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Run the undo steps of what this run changed, newest first; the run still fails.
    Undo,
    /// Stop; the run can be resumed (the default).
    Abort,
}

/// What an attempt does about undo.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// `runbook undo`: only the undo steps run.
    pub undo: bool,
    pub on_failure: Option<FailurePolicy>,
    /// Steps finished by the run, in the journal's order.
    earlier_done: Option<Vec<String>>,
    /// Steps whose undo finished in an earlier undo.
    undone: HashSet<String>,
    /// Undo steps finished by an earlier, interrupted undo: not run again.
    undo_steps_done: HashMap<String, Option<StepOutput>>,
    /// The mutating step that failed last, per the journal.
    failed_mutation: Option<String>,
    /// When the run's first attempt started, and whether a recovery step passed already:
    /// a resumed run's time to recovery counts from its start and is recorded once.
    run_started: Option<chrono::DateTime<chrono::Utc>>,
    recovered: Option<String>,
    /// When each step first started in an earlier attempt (journal time): `run.started_steps`.
    started_steps: std::collections::BTreeMap<String, String>,
}

impl Recovery {
    pub fn on_failure(policy: Option<FailurePolicy>) -> Self {
        Recovery { on_failure: policy, ..Recovery::default() }
    }

    /// A resumed attempt (`resume`, `runbook undo`): what the journal says was done and
    /// undone, so the undo engine knows the order and does not undo anything twice.
    pub fn resumed(plan: &Plan, recorded: &Recorded) -> Self {
        let steps = all_steps(plan);
        // Resume knows the procedure's steps; the undo steps an interrupted undo finished
        // are added here (a secret read runs again: its output was never journaled).
        let undo_steps: Vec<&Step> = steps.iter().flat_map(|s| &s.undo).collect();
        // A manual undo step nobody acknowledged is asked again.
        let unattended = recorded.unattended_steps();
        let undo_steps_done = recorded
            .done_steps()
            .into_iter()
            .filter_map(|(id, output, _)| {
                let step = undo_steps.iter().find(|u| u.id == id)?;
                if unattended.contains(&id) {
                    return None;
                }
                if step.output_is_secret() && !step.mutates() {
                    return None;
                }
                Some((id, output.and_then(|o| serde_json::from_value::<StepOutput>(o).ok())))
            })
            .collect();
        Recovery {
            undo: false,
            on_failure: None,
            earlier_done: Some(done_in_order(recorded)),
            undone: recorded.undone_steps(),
            undo_steps_done,
            failed_mutation: last_failed(recorded, &steps),
            run_started: chrono::DateTime::parse_from_rfc3339(&recorded.started()).ok().map(|t| t.to_utc()),
            started_steps: first_starts(recorded),
            recovered: match recorded.recovery() {
                recovery @ runbook_state::record::Recovery::Recovered { .. } => Some(recovery.describe()),
                _ => None,
            },
        }
    }

    /// A resume's `--on-failure`: the one given, else the one the run's last attempt chose
    /// (the operator chose a policy for the run; a resume continues that run).
    pub fn with_on_failure(self, given: Option<FailurePolicy>, recorded: &Recorded) -> Self {
        let chosen = recorded
            .records
            .iter()
            .filter_map(|r| match r {
                Record::RunStarted { header, .. } | Record::RunResumed { header, .. } => Some(header),
                Record::Event { .. } => None,
            })
            .rfind(|h| !h.undo)
            .and_then(|h| match h.on_failure.as_deref() {
                Some("undo") => Some(FailurePolicy::Undo),
                Some("abort") => Some(FailurePolicy::Abort),
                _ => None,
            });
        Recovery { on_failure: given.or(chosen), ..self }
    }

    /// `runbook undo`: refused when there is nothing left to undo.
    pub fn undo(plan: &Plan, recorded: &Recorded) -> Result<Self, Error> {
        let recovery = Recovery { undo: true, ..Recovery::resumed(plan, recorded) };
        let steps = all_steps(plan);
        let done = recovery.earlier_done.as_deref().unwrap_or_default();
        let changed: Vec<&Step> =
            done.iter().filter_map(|id| steps.iter().copied().find(|s| s.id == *id && s.mutates())).collect();
        let run_id = recorded.header().map(|h| h.run_id.clone()).unwrap_or_default();
        if changed.is_empty() {
            return Err(Error::Usage(format!("run {run_id} changed nothing; there is nothing to undo")));
        }
        if changed.iter().all(|s| s.undo.is_empty() || recovery.undone.contains(&s.id)) {
            let manual: Vec<String> =
                changed.iter().filter(|s| s.undo.is_empty()).map(|s| format!("`{}`", s.id)).collect();
            let mut text = if recovery.undone.is_empty() {
                format!("run {run_id} has nothing that can be undone automatically")
            } else {
                format!("run {run_id} was already undone; there is nothing left to undo")
            };
            if !manual.is_empty() {
                text.push_str(&format!(" (cannot be undone automatically: {})", manual.join(", ")));
            }
            return Err(Error::Usage(text));
        }
        Ok(recovery)
    }

    /// When each step first started in an earlier attempt of the run.
    pub fn started_steps(&self) -> &std::collections::BTreeMap<String, String> {
        &self.started_steps
    }

    /// When the run first started, if it is a resumed one.
    pub fn run_started(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.run_started
    }

    /// Refuses, before anything runs, what cannot be asked or confirmed.
    pub fn preflight(&self, runner: &Runner<'_>) -> Result<(), String> {
        if self.undo { runner.preflight_undo() } else { runner.preflight() }
    }

    pub fn prepare(&self, runner: &mut Runner<'_>) {
        runner.on_failure_undo = self.on_failure == Some(FailurePolicy::Undo);
        runner.on_failure_abort = self.on_failure == Some(FailurePolicy::Abort);
        if self.earlier_done.is_some() {
            runner.earlier_done = self.earlier_done.clone();
            runner.undone = self.undone.clone();
            runner.completed.extend(self.undo_steps_done.clone());
            runner.failed_mutation.clone_from(&self.failed_mutation);
            runner.run_started = self.run_started.unwrap_or(runner.run_started);
            runner.recovered = self.recovered.is_some();
        }
    }

    /// The run's time to recovery, when an earlier attempt recorded it.
    pub fn recovered_earlier(&self) -> Option<String> {
        self.recovered.clone()
    }

    pub fn stamp(&self, header: &mut Header) {
        header.undo = self.undo;
        header.on_failure = self.on_failure.map(|p| match p {
            FailurePolicy::Undo => "undo".to_owned(),
            FailurePolicy::Abort => "abort".to_owned(),
        });
    }
}

/// The procedure step that changes something and failed last (not undo steps).
fn last_failed(recorded: &Recorded, steps: &[&Step]) -> Option<String> {
    let failed = ["failed", "timed_out", "interrupted"];
    events(recorded)
        .filter(|e| e["event"] == "step_finished" && failed.iter().any(|f| e["status"] == *f))
        .filter_map(|e| e["id"].as_str())
        .filter(|id| steps.iter().any(|s| s.id == *id && s.mutates()))
        .last()
        .map(str::to_owned)
}

/// The procedures' steps (not undo steps), in the runbook's order.
fn all_steps(plan: &Plan) -> Vec<&Step> {
    plan.runbook.procedures.values().flat_map(|p| p.stages.iter().flat_map(|s| &s.steps)).collect()
}

/// Ids of the steps that finished `done`, in the order they last did.
fn done_in_order(recorded: &Recorded) -> Vec<String> {
    let mut done: Vec<String> = Vec::new();
    for event in events(recorded) {
        if event["event"] != "step_finished" {
            continue;
        }
        let Some(id) = event["id"].as_str() else { continue };
        done.retain(|d| d != id);
        if event["status"] == "done" {
            done.push(id.to_owned());
        }
    }
    done
}

fn events(recorded: &Recorded) -> impl Iterator<Item = &serde_json::Value> {
    recorded.records.iter().filter_map(|r| match r {
        Record::Event { event, .. } => Some(event),
        _ => None,
    })
}

/// The journal time of each step's first `step_started`, as RFC 3339 UTC to the second.
fn first_starts(recorded: &Recorded) -> std::collections::BTreeMap<String, String> {
    let mut starts = std::collections::BTreeMap::new();
    for record in &recorded.records {
        let Record::Event { ts, event } = record else { continue };
        if event["event"] != "step_started" {
            continue;
        }
        let (Some(id), Ok(time)) = (event["id"].as_str(), chrono::DateTime::parse_from_rfc3339(ts)) else { continue };
        starts.entry(id.to_owned()).or_insert_with(|| time.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    starts
}
