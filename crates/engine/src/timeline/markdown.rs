//! `runbook show RUN_ID --format markdown`: a run's journal as a postmortem timeline — a
//! heading, who ran it and who continued it, the approvals or break-glass, the result, a
//! table of what happened when, the changes made and the commands to see more.
//!
//! Everything comes from the journal, whose values are masked already. Every value that
//! came from a file, a child or the store is escaped ([`escape`]): Markdown and table
//! metacharacters lose their meaning, control characters become visible, and long values
//! are cut, so a hostile step output cannot break the table, inject HTML or hide text.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use runbook_state::journal::{Header, Record, Recorded};
use runbook_state::record::RunStatus;

/// What the document needs beyond the journal.
pub struct Document<'a> {
    pub run_id: &'a str,
    pub recorded: &'a Recorded,
    pub status: &'a RunStatus,
    /// Steps that change something (from the runbook file, when it is still readable).
    pub mutating: &'a HashSet<String>,
    /// Commands that take the run further (`runbook resume ID`), as `show` advises them.
    pub next: &'a [String],
    /// The shared store, when the run's history lives there.
    pub store: Option<&'a str>,
}

/// The longest value shown in a cell; the journal keeps the whole of it.
const MAX_VALUE: usize = 300;

/// `text` as literal Markdown text, safe inside a table cell: metacharacters escaped with a
/// backslash, line breaks as spaces, other control characters (an escape sequence's ESC)
/// and invisible direction overrides shown as visible symbols, cut at [`MAX_VALUE`].
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for (count, c) in text.chars().enumerate() {
        if count == MAX_VALUE {
            out.push('…');
            break;
        }
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&' | '!' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            // C0 controls as their Unicode "control pictures" (ESC → ␛), DEL as ␡.
            '\u{0}'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?')),
            '\u{7f}' => out.push('␡'),
            c if c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "U+{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts).ok().map(|t| t.with_timezone(&Utc))
}

fn ts_of(record: &Record) -> &str {
    match record {
        Record::RunStarted { ts, .. } | Record::RunResumed { ts, .. } | Record::Event { ts, .. } => ts,
    }
}

fn who(header: &Header) -> String {
    runbook_state::identity::display(header.identity.as_deref().unwrap_or_default(), &header.user, &header.host)
}

/// A duration as people read it: `0.4s`, `12.0s`, `3m 5s`.
pub fn format_duration(duration: Duration) -> String {
    crate::exec::terminal::format_duration(duration)
}

fn elapsed(since: Duration) -> String {
    let secs = since.as_secs();
    format!("+{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

pub fn render(doc: &Document<'_>) -> String {
    let records = &doc.recorded.records;
    let headers: Vec<&Header> = records
        .iter()
        .filter_map(|r| match r {
            Record::RunStarted { header, .. } | Record::RunResumed { header, .. } => Some(header),
            Record::Event { .. } => None,
        })
        .collect();
    let Some(first) = headers.first() else {
        return format!("# Run {}\n\nThe journal holds no run header.\n", escape(doc.run_id));
    };
    let rehearsal = headers.iter().any(|h| h.rehearsal.is_some());
    let start = parse_ts(&doc.recorded.started());
    let end = records.last().and_then(|r| parse_ts(ts_of(r)));
    let mut out = String::new();

    // The heading: what ran where.
    let env = first.environment.as_deref().map(|e| format!(" on {}", escape(e))).unwrap_or_default();
    let label = if rehearsal { "REHEARSAL: " } else { "" };
    let _ = writeln!(out, "# {label}{} {}{env}\n", escape(&first.runbook), escape(&first.procedure));

    // Who, what kind of run, who allowed it, and how it ended.
    let _ = writeln!(out, "- **Run:** {}", escape(doc.run_id));
    let _ = writeln!(out, "- **Runbook:** {} (procedure {})", escape(&first.runbook), escape(&first.procedure));
    let _ = writeln!(out, "- **Environment:** {}", escape(first.environment.as_deref().unwrap_or("(none)")));
    let _ = writeln!(out, "- **Run by:** {}", escape(&who(first)));
    let mut continued: Vec<String> = Vec::new();
    for header in headers.iter().skip(1) {
        let name = escape(&who(header));
        let what = if header.undo { format!("{name} (undo)") } else { name };
        if !continued.contains(&what) {
            continued.push(what);
        }
    }
    if !continued.is_empty() {
        let _ = writeln!(out, "- **Continued by:** {}", continued.join(", "));
    }
    match headers.iter().find_map(|h| h.rehearsal.as_ref()) {
        Some(r) => {
            let against = match &r.server {
                Some(server) => format!("the `runbook simulate` server at {}", escape(server)),
                None => "a local fake of the Google APIs (--simulate)".to_owned(),
            };
            let _ = writeln!(out, "- **Kind:** REHEARSAL against {against}; nothing real was called");
        }
        None => {
            let _ = writeln!(out, "- **Kind:** REAL run");
        }
    }
    let mut allowed = Vec::new();
    for header in &headers {
        if let Some(reason) = &header.break_glass {
            allowed.push(format!("BREAK GLASS by {}: {}", escape(&who(header)), escape(reason)));
        }
        if let Some(plan) = &header.plan_id {
            let approvers: Vec<String> = header.approvers.iter().map(|a| escape(a)).collect();
            allowed.push(format!("applied plan {}, approved by {}", escape(plan), approvers.join(", ")));
        }
    }
    allowed.dedup();
    if !allowed.is_empty() {
        let _ = writeln!(out, "- **Approval:** {}", allowed.join("; "));
    }
    if headers.iter().any(|h| h.yes) {
        let _ =
            writeln!(out, "- **--yes:** confirmations answered without asking; manual steps not confirmed by a person");
    }
    let params: Vec<String> = first
        .params
        .iter()
        .map(|(name, value)| format!("--{} {}", escape(&runbook_lang::param::flag_name(name)), escape(value)))
        .collect();
    if !params.is_empty() {
        let _ = writeln!(out, "- **Params:** {}", params.join(", "));
    }
    let started = start.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "?".to_owned());
    let _ = writeln!(out, "- **Started:** {started}");
    let result = match doc.status {
        RunStatus::Running => "**running** (in progress; this is the timeline so far)".to_owned(),
        other => format!("**{}**", escape(other.as_str())),
    };
    let total = match (start, end) {
        (Some(start), Some(end)) => format_duration((end - start).to_std().unwrap_or_default()),
        _ => "?".to_owned(),
    };
    let attempts = if headers.len() > 1 { format!(" over {} attempts", headers.len()) } else { String::new() };
    let _ = writeln!(out, "- **Result:** {result} after {total}{attempts} (first to last record)");
    if doc.recorded.truncated {
        let _ = writeln!(out, "- **Note:** the journal's last record was cut off (the process died while writing it)");
    }

    out.push_str("\n## Timeline\n\n| Time (UTC) | Elapsed | Who | What |\n| --- | --- | --- | --- |\n");
    let mut last_date = None;
    for row in rows(doc) {
        let (time, since) = match (parse_ts(&row.ts), start) {
            (Some(t), Some(start)) => {
                let date = t.date_naive();
                let time = if last_date == Some(date) {
                    t.format("%H:%M:%S").to_string()
                } else {
                    t.format("%Y-%m-%d %H:%M:%S").to_string()
                };
                last_date = Some(date);
                (time, elapsed((t - start).to_std().unwrap_or_default()))
            }
            _ => (escape(&row.ts), String::new()),
        };
        let _ = writeln!(out, "| {time} | {since} | {} | {} |", escape(&row.who), row.what);
    }

    let changes = changes(doc);
    if !changes.is_empty() {
        out.push_str("\n## Changes\n\n");
        for line in changes {
            let _ = writeln!(out, "- {line}");
        }
    }

    out.push_str("\n## See more\n\n```\n");
    let shared = doc.store.map(|s| format!(" --state-url {s}")).unwrap_or_default();
    let _ = writeln!(out, "runbook show {}{shared}", doc.run_id);
    let _ = writeln!(out, "runbook show {}{shared} --format json", doc.run_id);
    for next in doc.next {
        let _ = writeln!(out, "{next}");
    }
    out.push_str("```\n");
    out
}

struct Row {
    ts: String,
    who: String,
    /// Markdown, values escaped.
    what: String,
}

/// How long each stage took (by the index of its `stage_started` record): until the next
/// stage, the end of the run, or the end of its attempt.
fn stage_durations(records: &[Record], running: bool) -> HashMap<usize, String> {
    let mut ends = HashMap::new();
    let mut open: Option<(usize, &str)> = None;
    for (index, record) in records.iter().enumerate() {
        let ts = ts_of(record);
        let boundary = match record {
            Record::RunStarted { .. } | Record::RunResumed { .. } => Some(None),
            Record::Event { event, .. } => match event["event"].as_str() {
                Some("stage_started" | "stage_skipped" | "stage_done_earlier") => Some(Some("")),
                Some("run_finished") if event["outcome"] == "done" => Some(Some("")),
                Some("run_finished") => Some(Some("stopped after ")),
                _ => None,
            },
        };
        if let Some(boundary) = boundary
            && let Some((stage, started)) = open.take()
        {
            let span = parse_ts(ts)
                .zip(parse_ts(started))
                .map(|(end, start)| format_duration((end - start).to_std().unwrap_or_default()));
            let text = match (boundary, span) {
                (Some(how), Some(span)) => format!(" ({how}{span})"),
                _ => " (cut off)".to_owned(),
            };
            ends.insert(stage, text);
        }
        if let Record::Event { event, .. } = record
            && event["event"] == "stage_started"
        {
            open = Some((index, ts));
        }
    }
    if let Some((stage, _)) = open {
        ends.insert(stage, if running { " (in progress)" } else { " (cut off)" }.to_owned());
    }
    ends
}

/// Whether each `step_started` record got its `step_finished` in the same attempt.
fn unfinished_starts(records: &[Record]) -> HashSet<usize> {
    let mut open: HashMap<String, usize> = HashMap::new();
    let mut unfinished = HashSet::new();
    for (index, record) in records.iter().enumerate() {
        match record {
            Record::RunStarted { .. } | Record::RunResumed { .. } => unfinished.extend(open.drain().map(|(_, i)| i)),
            Record::Event { event, .. } => {
                let id = event["id"].as_str().unwrap_or_default().to_owned();
                match event["event"].as_str() {
                    Some("step_started") => {
                        if let Some(earlier) = open.insert(id, index) {
                            unfinished.insert(earlier);
                        }
                    }
                    Some("step_finished") => {
                        open.remove(&id);
                    }
                    _ => {}
                }
            }
        }
    }
    unfinished.extend(open.into_values());
    unfinished
}

fn rows(doc: &Document<'_>) -> Vec<Row> {
    let records = &doc.recorded.records;
    let running = *doc.status == RunStatus::Running;
    let stages = stage_durations(records, running);
    let unfinished = unfinished_starts(records);
    let mut rows = Vec::new();
    let mut current: Option<&Header> = None;
    let mut kinds: HashMap<String, String> = HashMap::new();
    let mut numbers = super::StageNumbers::default();
    for (index, record) in records.iter().enumerate() {
        let ts = ts_of(record).to_owned();
        match record {
            Record::RunStarted { header, .. } | Record::RunResumed { header, .. } => {
                let by = who(header);
                let started = matches!(record, Record::RunStarted { .. });
                let mut what = match (started, header.undo) {
                    (true, _) => "**Run started**".to_owned(),
                    (false, true) => "**Undo started** (runbook undo)".to_owned(),
                    (false, false) => "**Resumed**".to_owned(),
                };
                if let Some(previous) = current.filter(|p| who(p) != by) {
                    let _ = write!(what, " — hand-over from {}", escape(&who(previous)));
                }
                if header.yes {
                    what.push_str(" with --yes");
                }
                if header.forced {
                    what.push_str(" with --force although the runbook file changed");
                }
                if let Some(reason) = &header.break_glass {
                    let _ = write!(what, " — BREAK GLASS: {}", escape(reason));
                }
                rows.push(Row { ts, who: by, what });
                current = Some(header);
            }
            Record::Event { event, .. } => {
                let actor = event["by"].as_str().map(str::to_owned).or_else(|| current.map(who)).unwrap_or_default();
                let yes = current.is_some_and(|h| h.yes);
                let answered_ahead =
                    |id: &str| current.is_some_and(|h| h.answers.iter().any(|(answered, _)| answered == id));
                let walk =
                    Walk { stages: &stages, unfinished: &unfinished, running, yes, answered_ahead: &answered_ahead };
                let number = numbers.number(event);
                let what = event_row(event, index, &walk, &mut kinds, number.as_deref());
                if let Some(what) = what {
                    rows.push(Row { ts, who: actor, what });
                }
            }
        }
    }
    rows
}

/// What a row needs to know beyond its event.
struct Walk<'a> {
    stages: &'a HashMap<usize, String>,
    unfinished: &'a HashSet<usize>,
    running: bool,
    /// The attempt ran with `--yes`.
    yes: bool,
    answered_ahead: &'a dyn Fn(&str) -> bool,
}

fn event_row(
    event: &Value,
    index: usize,
    walk: &Walk<'_>,
    kinds: &mut HashMap<String, String>,
    stage_number: Option<&str>,
) -> Option<String> {
    let s = |key: &str| escape(event[key].as_str().unwrap_or_default());
    let id = event["id"].as_str().unwrap_or_default();
    let took = |text: &str| escape(text);
    Some(match event["event"].as_str()? {
        // The header row says it.
        "run_started" => return None,
        "notice" | "output" => return None,
        "stage_started" => {
            let duration = walk.stages.get(&index).map(String::as_str).unwrap_or_default();
            format!("**Stage {}: {}**{duration}", stage_number.unwrap_or_default(), s("name"))
        }
        "stage_skipped" => format!("Stage skipped: {} ({})", s("name"), s("reason")),
        "stage_done_earlier" => format!("Stage {}: done in an earlier attempt", s("name")),
        "step_started" => {
            kinds.insert(id.to_owned(), event["kind"].as_str().unwrap_or_default().to_owned());
            if !walk.unfinished.contains(&index) {
                return None;
            }
            let state = if walk.running { "running" } else { "started, never finished" };
            format!("▶ {} ({}): {state}", escape(id), s("kind"))
        }
        "step_finished" => {
            let kind = kinds.get(id).map(String::as_str).unwrap_or_default();
            let duration = took(event["duration"].as_str().unwrap_or("?"));
            let message = event["message"].as_str().map(|m| format!(": {}", escape(m))).unwrap_or_default();
            let answer = event["answer"].as_str();
            match (event["status"].as_str().unwrap_or_default(), kind) {
                ("done", "prompt") => match answer {
                    Some(value) => format!("Decision {}: **{}**", escape(id), escape(value)),
                    None => format!("Decision {}: answered (secret)", escape(id)),
                },
                ("done", "manual") if walk.yes || (walk.answered_ahead)(id) => {
                    format!("Manual step {}: passed under --yes, **not confirmed by a person**", escape(id))
                }
                ("done", "manual") => format!("Manual step {}: acknowledged by a person", escape(id)),
                ("done", kind) => {
                    let typed = answer.map(|a| format!(", confirmed by typing {}", escape(a))).unwrap_or_default();
                    format!("✓ {} ({}) done in {duration}{typed}", escape(id), escape(kind))
                }
                ("skipped", _) => format!("– {} skipped{message}", escape(id)),
                ("failed_continued", kind) => format!(
                    "✗ {} ({}) **failed** after {duration}{message} (on\\_failure: continue)",
                    escape(id),
                    escape(kind)
                ),
                ("timed_out", kind) => {
                    format!("✗ {} ({}) **timed out** after {duration}{message}", escape(id), escape(kind))
                }
                ("interrupted", kind) => {
                    format!("✗ {} ({}) **interrupted** after {duration}{message}", escape(id), escape(kind))
                }
                (status, kind) => {
                    format!("✗ {} ({}) **{}** after {duration}{message}", escape(id), escape(kind), escape(status))
                }
            }
        }
        "failure_choice" => {
            let line = crate::exec::recovery::menu::describe_choice(
                id,
                event["choice"].as_str().unwrap_or_default(),
                event["reason"].as_str(),
                event["prompt"].as_str(),
                event["answer"].as_str(),
            );
            escape(&line)
        }
        "run_finished" => {
            let message = event["message"].as_str().map(|m| format!(": {}", escape(m))).unwrap_or_default();
            format!(
                "**Run finished: {}** in {} — {} done, {} skipped, {} failed{message}",
                s("outcome"),
                s("duration"),
                event["done"],
                event["skipped"],
                event["failed"]
            )
        }
        "undo" => format!("↶ undo of {} **{}**: {}", escape(id), s("state"), s("text")),
        _ => escape(super::describe(event)?.trim()),
    })
}

/// What the mutating steps changed, over every attempt, and what was undone since.
fn changes(doc: &Document<'_>) -> Vec<String> {
    let undone = doc.recorded.undone_steps();
    let mut lines = Vec::new();
    for record in &doc.recorded.records {
        let Record::Event { event, .. } = record else { continue };
        if event["event"] != "step_finished" || event["status"] != "done" {
            continue;
        }
        let id = event["id"].as_str().unwrap_or_default();
        if !doc.mutating.contains(id) {
            continue;
        }
        let text = event["changed"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| crate::exec::changes::what_changed(&event["output"]))
            .unwrap_or_else(|| "done".to_owned());
        let back = if undone.contains(id) { " — **undone** since" } else { "" };
        lines.push(format!("{}: {}{back}", escape(id), escape(&text)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn values_lose_their_markdown_meaning_and_show_their_control_characters() {
        assert_eq!(escape("a|b`c<d>"), "a\\|b\\`c\\<d\\>");
        assert_eq!(escape("one\ntwo"), "one two");
        assert_eq!(escape("\u{1b}[31mred"), "␛\\[31mred");
        assert_eq!(escape("\u{202e}txt"), "U+202Etxt");
        assert_eq!(escape(&"x".repeat(400)).chars().count(), super::MAX_VALUE + 1);
    }
}
