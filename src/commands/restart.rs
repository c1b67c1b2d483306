//! Where a resumed run starts again: what earlier attempts answered (reused without asking),
//! answers replaced with `--answer`, `resume --from STEP`, and waiting steps whose operation
//! failed (`restarts_from:`). Every step from the restart point on, in walk order, runs again.

use std::collections::HashMap;

use crate::error::Error;
use runbook_engine::plan::StepOutput;
use runbook_lang::model::Runbook;
use runbook_lang::step::{Step, StepKind};
use runbook_state::journal::{Record, Recorded};

/// Every step of `procedure` in the order the walk meets it (includes expanded).
pub fn walk_order<'a>(runbook: &'a Runbook, procedure: &str) -> Vec<&'a Step> {
    let mut order = Vec::new();
    if let Some(procedure) = runbook.procedures.get(procedure) {
        runbook_engine::plan::steps_in_order(runbook, procedure, &mut order);
    }
    order
}

/// Prompt answers and manual acknowledgements of earlier attempts, latest last: given back to
/// the plan as answers, so a resume (with or without a terminal) does not ask them again.
/// Secret answers are not in the journal and are not here. Only steps the procedure can reach
/// (its walk and its `on_failure` handlers) are kept, and only answers that still check.
pub fn journaled_answers(runbook: &Runbook, procedure: &str, recorded: &Recorded) -> Vec<(String, String)> {
    let mut reachable = HashMap::new();
    reach(runbook, procedure, &mut reachable);
    let mut answers: Vec<(String, String)> = Vec::new();
    for record in &recorded.records {
        let Record::Event { event, .. } = record else { continue };
        if event["event"] != "step_finished" || event["status"] != "done" {
            continue;
        }
        let Some(step) = event["id"].as_str().and_then(|id| reachable.get(id)) else { continue };
        let value = match &step.kind {
            StepKind::Prompt(prompt) if !step.secret => {
                // The value the later steps saw (a labelled choice journals `value (label)`).
                let Some(value) = event["output"]["output"].as_str() else { continue };
                let fits = prompt.check_answer(value, prompt.static_choices(), value, chrono::Utc::now()).is_ok();
                if !fits || value.contains(runbook_engine::redact::MASK) {
                    continue;
                }
                value.to_owned()
            }
            StepKind::Manual(_) if event["answer"].is_string() => "done".to_owned(),
            _ => continue,
        };
        answers.retain(|(id, _)| *id != step.id);
        answers.push((step.id.clone(), value));
    }
    answers
}

fn reach<'a>(runbook: &'a Runbook, procedure: &str, out: &mut HashMap<&'a str, &'a Step>) {
    let Some(procedure) = runbook.procedures.get(procedure) else { return };
    for step in procedure.stages.iter().flat_map(|s| &s.steps) {
        if out.insert(step.id.as_str(), step).is_some() {
            continue;
        }
        for name in step.procedures_used() {
            reach(runbook, name, out);
        }
    }
}

/// Why the resume starts again at an earlier step.
pub struct Restart {
    /// The step the walk starts again at.
    pub from: String,
    pub reasons: Vec<String>,
    /// Answers given with `--answer` that replace an earlier one: (step, earlier, new).
    pub replaced: Vec<(String, Option<String>, String)>,
    /// Only answers changed (no `--from`, no operation to start again): the steps that run
    /// again are those prompts and every step that reads them, directly or through another
    /// step — their asserts are checked again before any mutating step uses the new value;
    /// a change that does not read them (a clone already made) is not made twice.
    pub only: Option<std::collections::BTreeSet<String>>,
}

impl Restart {
    /// The journal records: the answers replaced, then where the walk starts again.
    pub fn events(&self, secret: &dyn Fn(&str) -> bool) -> Vec<serde_json::Value> {
        let shown =
            |id: &str, value: &str| if secret(id) { runbook_engine::redact::MASK.to_owned() } else { value.to_owned() };
        let mut events: Vec<serde_json::Value> = self
            .replaced
            .iter()
            .map(|(id, previous, value)| {
                serde_json::json!({
                    "event": "answer_replaced",
                    "id": id,
                    "previous": previous.as_deref().map(|p| shown(id, p)),
                    "value": shown(id, value),
                })
            })
            .collect();
        events.push(serde_json::json!({"event": "resume_restart", "from": self.from, "reasons": self.reasons}));
        events
    }
}

/// What the caller asked for and what the journal says, for [`restart`].
pub struct Request<'a> {
    pub order: &'a [&'a Step],
    pub recorded: &'a Recorded,
    pub completed: &'a HashMap<String, Option<StepOutput>>,
    /// Earlier answers (journal and headers), by step.
    pub earlier: &'a HashMap<String, String>,
    /// `--answer` of this resume, as given.
    pub given: &'a [String],
    /// `resume --from STEP`.
    pub from: Option<&'a str>,
}

/// The earliest step in walk order that must run again, or `None` when the resume simply
/// goes on where the run stopped. `--from` naming a step that is not a finished step of the
/// walk is a usage error listing the ones that are.
pub fn restart(request: &Request<'_>) -> Result<Option<Restart>, Error> {
    let position = |id: &str| request.order.iter().position(|s| s.id == id);
    let mut candidates: Vec<(usize, String)> = Vec::new();
    let mut replaced = Vec::new();
    for item in request.given {
        let Some((id, value)) = item.split_once('=') else { continue };
        let Some(index) = position(id) else { continue };
        let is_prompt = matches!(request.order[index].kind, StepKind::Prompt(_));
        if !is_prompt || !request.completed.contains_key(id) {
            continue;
        }
        let previous = request.earlier.get(id).cloned();
        if previous.as_deref() == Some(value) {
            continue;
        }
        replaced.push((id.to_owned(), previous, value.to_owned()));
        candidates.push((index, format!("the answer to `{id}` was replaced")));
    }
    if let Some(from) = request.from {
        let finished: Vec<&str> =
            request.order.iter().filter(|s| request.completed.contains_key(&s.id)).map(|s| s.id.as_str()).collect();
        let valid = if finished.is_empty() { "none".to_owned() } else { finished.join(", ") };
        match position(from) {
            Some(index) if request.completed.contains_key(from) => {
                candidates.push((index, format!("--from {from}")));
            }
            Some(_) => {
                return Err(Error::Usage(format!(
                    "--from {from}: step `{from}` has not finished in an earlier attempt, so the resume reaches it anyway; steps that can be restarted: {valid}"
                )));
            }
            None if let Some(owner) = request.order.iter().find(|s| s.undo.iter().any(|u| u.id == from)) => {
                return Err(Error::Usage(format!(
                    "--from {from}: `{from}` is an undo step of `{}`; undo steps run only with `runbook undo`; steps that can be restarted: {valid}",
                    owner.id
                )));
            }
            None => {
                // Shown escaped and cut: a mistyped id may hold control characters or be huge.
                let shown: String = from.escape_debug().take(80).collect();
                return Err(Error::Usage(format!(
                    "--from {shown}: there is no step `{shown}` in this run's procedure; steps that can be restarted: {valid}"
                )));
            }
        }
    }
    for step in request.order {
        let Some(starter) = &step.restarts_from else { continue };
        if request.completed.contains_key(&step.id) || last_status(request.recorded, &step.id) != Some("failed") {
            continue;
        }
        if let Some(index) = position(starter).filter(|_| request.completed.contains_key(starter)) {
            candidates.push((
                index,
                format!(
                    "`{}` failed: the operation `{starter}` started ended in error, so it is started again",
                    step.id
                ),
            ));
        }
    }
    let Some(first) = candidates.iter().map(|(index, _)| *index).min() else { return Ok(None) };
    let only = (candidates.len() == replaced.len()).then(|| readers(request.order, &replaced));
    Ok(Some(Restart {
        from: request.order[first].id.clone(),
        reasons: candidates.into_iter().map(|(_, reason)| reason).collect(),
        replaced,
        only,
    }))
}

/// The replaced prompts and, in walk order, every step that reads one of them or a step
/// already in the set.
fn readers(order: &[&Step], replaced: &[(String, Option<String>, String)]) -> std::collections::BTreeSet<String> {
    let mut tainted: std::collections::BTreeSet<String> = replaced.iter().map(|(id, _, _)| id.clone()).collect();
    for step in order {
        let reads = runbook_engine::exec::reads::steps_read_by(step);
        if reads.iter().any(|id| tainted.contains(id)) {
            tainted.insert(step.id.clone());
        }
    }
    tainted
}

/// The status of the step's last `step_finished` record.
fn last_status<'a>(recorded: &'a Recorded, id: &str) -> Option<&'a str> {
    recorded.records.iter().rev().find_map(|record| match record {
        Record::Event { event, .. } if event["event"] == "step_finished" && event["id"] == id => {
            event["status"].as_str()
        }
        _ => None,
    })
}

/// Forgets, for this attempt, every step from the restart point on (walk order).
pub fn forget_from(order: &[&Step], from: &str, completed: &mut HashMap<String, Option<StepOutput>>) {
    let Some(start) = order.iter().position(|s| s.id == from) else { return };
    for step in &order[start..] {
        completed.remove(&step.id);
    }
}

/// Without a terminal, a secret prompt answered in an earlier attempt cannot be answered
/// again from the journal (which holds only a mask): it must be given with `--answer`.
pub fn missing_secret_answers(order: &[&Step], recorded: &Recorded, given: &[String]) -> Result<(), Error> {
    for step in order {
        let answered_before = last_status(recorded, &step.id) == Some("done");
        let given_now = given.iter().any(|g| g.split_once('=').is_some_and(|(id, _)| id == step.id));
        if matches!(step.kind, StepKind::Prompt(_)) && step.secret && answered_before && !given_now {
            return Err(Error::Usage(format!(
                "step `{id}` is a secret prompt answered in an earlier attempt; secret answers are masked in the journal, so it must be answered again: resume in a terminal to be asked, or give --answer {id}=VALUE",
                id = step.id
            )));
        }
    }
    Ok(())
}

/// `resume --from` is confirmed: asked in a terminal, `--yes` without one.
pub fn confirm_from(from: &str, yes: bool, interactive: bool) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !interactive {
        return Err(Error::Usage(format!(
            "--from {from} runs `{from}` and every later step again; without a terminal, confirm it with --yes"
        )));
    }
    loop {
        let answer: String = dialoguer::Input::new()
            .with_prompt(format!("Start again at step `{from}`? It and every later step run again. [y]es / [N]o"))
            .allow_empty(true)
            .interact_text()
            .map_err(|e| Error::Usage(format!("cannot ask to confirm --from {from}: {e}")))?;
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Ok(()),
            "" | "n" | "no" | "q" | "quit" => {
                eprintln!("The operator did not confirm --from {from}; nothing was run.");
                return Err(Error::Reported(runbook_state::exit::ABORTED));
            }
            _ => eprintln!("Please answer y or n."),
        }
    }
}
