//! A journal event as one line of a run's timeline: `show`, and the events a resume
//! journals before its first step.

pub mod markdown;

/// Stage numbers as the dry-run gives them (`2`, `2.1`): a stage of an included procedure is
/// numbered inside the stage that includes it, not as its procedure's own `stage 1`.
#[derive(Debug, Default)]
pub struct StageNumbers {
    /// The open stages, outermost first: (procedure, its stage index).
    open: Vec<(String, u64)>,
}

impl StageNumbers {
    /// The number of the stage a `stage_started` record starts (`None` for other records).
    /// A stage of a procedure already open closes what was opened inside it; any other is
    /// nested in the stage open now.
    pub fn number(&mut self, event: &serde_json::Value) -> Option<String> {
        if event["event"] != "stage_started" {
            return None;
        }
        let procedure = event["procedure"].as_str().unwrap_or_default().to_owned();
        let index = event["index"].as_u64().unwrap_or(0);
        if let Some(depth) = self.open.iter().position(|(p, _)| *p == procedure) {
            self.open.truncate(depth);
        }
        self.open.push((procedure, index));
        Some(self.open.iter().map(|(_, i)| i.to_string()).collect::<Vec<_>>().join("."))
    }
}

/// A journal event as one line, its stage numbered in the run so far (see [`StageNumbers`]).
pub fn describe_numbered(event: &serde_json::Value, numbers: &mut StageNumbers) -> Option<String> {
    match numbers.number(event) {
        Some(number) => {
            let s = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
            Some(format!("stage {number}: {} [{}]", s("name"), s("procedure")))
        }
        None => describe(event),
    }
}

pub fn describe(event: &serde_json::Value) -> Option<String> {
    let s = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
    Some(match event["event"].as_str()? {
        "stage_started" => format!("stage {}: {} [{}]", event["index"], s("name"), s("procedure")),
        "stage_skipped" => format!("stage skipped: {} ({})", s("name"), s("reason")),
        "stage_done_earlier" => format!("stage done in an earlier attempt: {} [{}]", s("name"), s("procedure")),
        "answer_replaced" => {
            let previous = event["previous"].as_str().map_or_else(|| "unknown".to_owned(), |p| format!("{p:?}"));
            format!("answer to {} replaced by {}: {previous} → {:?}", s("id"), s("by"), s("value"))
        }
        "resume_restart" => {
            let reasons: Vec<&str> =
                event["reasons"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
            format!(
                "resume starts again at step {} (it and every later step run again), by {}: {}",
                s("from"),
                s("by"),
                reasons.join("; ")
            )
        }
        "step_started" => {
            let command = event["command"].as_str().map(|c| format!(": {c}")).unwrap_or_default();
            let attempt =
                event["attempt"].as_u64().filter(|a| *a > 1).map(|a| format!(" (attempt {a})")).unwrap_or_default();
            format!("  ▶ {} ({}){attempt}{command}", s("id"), s("kind"))
        }
        "step_finished" => {
            let exit = match (event["exit_code"].as_i64(), event["http_status"].as_u64()) {
                (_, Some(status)) => format!(", HTTP {status}"),
                (Some(code), None) => format!(", exit {code}"),
                (None, None) => String::new(),
            };
            let message = event["message"].as_str().map(|m| format!(": {m}")).unwrap_or_default();
            let answer = match event["answer"].as_str() {
                Some(a) if a.starts_with(runbook_state::event::UNATTENDED) => format!(", {a}"),
                Some(a) => format!(", answered {a:?}"),
                None => String::new(),
            };
            format!("  {} {} after {}{exit}{answer}{message}", s("status"), s("id"), s("duration"))
        }
        "failure_choice" => {
            let by = event["by"].as_str().map(|b| format!(" (by {b})")).unwrap_or_default();
            let line = crate::exec::recovery::menu::describe_choice(
                &s("id"),
                &s("choice"),
                event["reason"].as_str(),
                event["prompt"].as_str(),
                event["answer"].as_str(),
            );
            format!("  {line}{by}")
        }
        "watch_sample" => {
            let value = event["value"].as_str().map(|v| format!(" {v}")).unwrap_or_default();
            let verdict = match (event["passing"].as_bool(), event["error"].as_str()) {
                (Some(true), _) => format!("passing ({}/{})", event["streak"], event["hold"]),
                (_, Some(reason)) => format!("not passing: {reason}"),
                _ => "not passing".to_owned(),
            };
            let between = event["not_journaled"]
                .as_u64()
                .map(|n| format!(" ({n} sample(s) between not journaled)"))
                .unwrap_or_default();
            format!("  ◷ {} sample {}:{value} — {verdict}, {} left{between}", s("id"), event["sample"], s("left"))
        }
        "recovered" => format!("  time to recovery: {} ({} passed)", s("after"), s("id")),
        "notice" => format!("  note ({}): {}", s("id"), s("text").replace('\n', " ")),
        "undo" => format!("  ↶ undo of {} {}: {}", s("id"), s("state"), s("text").replace('\n', " ")),
        "lock_taken_over" => {
            let previous = &event["previous"];
            format!(
                "lock taken over by {} after the lease of run {} ({}) ran out",
                s("by"),
                previous["run_id"].as_str().unwrap_or("?"),
                previous["identity"].as_str().unwrap_or("?")
            )
        }
        "lock_broken" => {
            let reason = s("reason").replace(char::is_control, " ");
            format!("lock {} broken by {}: {reason}", s("lock"), s("by"))
        }
        "notify_failed" => format!(
            "notification ({}) to the webhook in ${} not delivered: {}",
            s("notification"),
            s("webhook_env"),
            s("error").replace(char::is_control, " ")
        ),
        "run_finished" => {
            let message = event["message"].as_str().map(|m| format!(": {m}")).unwrap_or_default();
            format!("run finished: {} in {}{message}", s("outcome"), s("duration"))
        }
        _ => return None,
    })
}
