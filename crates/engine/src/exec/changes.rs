//! What a mutating step changed, in one line for the summary, `show` and the incident
//! timeline: an operation's name, type, target and status from its output, else the first
//! line of its output, else what it said last, else its command.

/// The part of a mutating step's captured output worth repeating: an operation's name,
/// type, target and status, or the first line of text.
pub fn what_changed(output: &serde_json::Value) -> Option<String> {
    if let Some(json) = output.get("json").filter(|j| j.is_object()) {
        let mut parts: Vec<String> = ["operationType", "targetId", "name"]
            .iter()
            .filter_map(|key| json.get(*key).and_then(|v| v.as_str()).map(|v| format!("{key} {v}")))
            .collect();
        // The status is the one the step saw when it started the operation, which a later
        // step may have waited on: a status that is not the end says so.
        match json.get("status").and_then(|v| v.as_str()) {
            Some("DONE") => parts.push("status DONE".to_owned()),
            Some(status) if !parts.is_empty() => parts.push(format!("status {status} when started")),
            Some(status) => parts.push(format!("status {status}")),
            None => {}
        }
        if !parts.is_empty() {
            return Some(parts.join(", "));
        }
    }
    let text = output.get("output").and_then(|o| o.as_str())?.lines().find(|l| !l.trim().is_empty())?;
    let short: String = crate::exec::ansi::strip_line(text.trim()).chars().take(120).collect();
    Some(short)
}

/// The one line a finished mutating step is remembered by (journaled as `changed`).
pub fn changed(output: Option<&serde_json::Value>, said: Option<&str>) -> Option<String> {
    output.and_then(what_changed).or_else(|| {
        let said = crate::exec::ansi::strip_line(said?.trim());
        (!said.is_empty()).then(|| said.chars().take(200).collect())
    })
}
