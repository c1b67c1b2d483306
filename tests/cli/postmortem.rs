//! `runbook show RUN_ID --format markdown`: the postmortem timeline. Parsed with a real
//! CommonMark parser (pulldown-cmark, GitHub tables on) and snapshotted with times,
//! durations, ids and paths redacted.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::support::Sandbox;

const INCIDENT: &str = r#"runbook: incident
title: Incident rollback
environments:
  production: {vars: {project: demo-prod}}
params:
  token: {type: string, secret: true}
procedures:
  rollback:
    summary: Roll back
    params: [token]
    stages:
      - name: Decide
        steps:
          - id: revisions
            run: [printf, 'rev-1\nrev-2\n']
            effect: read
            capture: lines
          - {id: pick, prompt: "Which revision?", choices: steps.revisions.lines, label: 'revision {{ item }}'}
          - id: read
            run: [echo, "reading | with `ticks` and <b>html</b>"]
            effect: read
      - name: Change
        steps:
          - id: hand
            manual: "Tell the channel"
          - id: clone
            run: [sh, -c, 'echo "{\"name\": \"op-1\", \"operationType\": \"CLONE\", \"status\": \"DONE\"}"']
            capture: json
            timeout: 1m
            undo:
              - id: clone_back
                run: [echo, deleted]
          - id: flaky
            timeout: 1m
            run: [sh, -c, 'test -f ok || { printf "gone \033[31mred| `x` <i>\n" >&2; exit 1; }']
"#;

/// The table's rows as cells (header first), after checking the document parses as
/// CommonMark with exactly one table and no raw HTML.
pub fn parse_table(markdown: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut tables = 0;
    let mut cell: Option<String> = None;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Table(_)) => tables += 1,
            Event::Start(Tag::TableHead | Tag::TableRow) => rows.push(Vec::new()),
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => {
                if let (Some(row), Some(text)) = (rows.last_mut(), cell.take()) {
                    row.push(text);
                }
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some(cell) = cell.as_mut() {
                    cell.push_str(&text);
                }
            }
            Event::Html(html) | Event::InlineHtml(html) => panic!("raw HTML in the document: {html}\n{markdown}"),
            _ => {}
        }
    }
    assert_eq!(tables, 1, "one timeline table:\n{markdown}");
    assert!(rows.iter().all(|r| r.len() == 4), "every row has its four cells: {rows:?}\n{markdown}");
    assert_eq!(rows[0], ["Time (UTC)", "Elapsed", "Who", "What"]);
    rows
}

/// A snapshot with times, durations, ids, users and paths as placeholders.
fn snapshot(name: &str, markdown: &str, sandbox: &Sandbox) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]+", "[RUN_ID]");
    settings.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "[DATE TIME]");
    settings.add_filter(r"\| \d\d:\d\d:\d\d \|", "| [TIME] |");
    settings.add_filter(r"\+\d+:\d\d:\d\d", "+[ELAPSED]");
    settings.add_filter(r"\b\d+(\.\d+)?(ms|s|us|ns)\b", "[DURATION]");
    settings.add_filter(r"\d+m \[DURATION\]", "[DURATION]");
    settings.add_filter(r"[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+", "[USER]");
    settings.add_filter(&regex_escape(&sandbox.path().display().to_string()), "[SANDBOX]");
    settings.bind(|| insta::assert_snapshot!(name, markdown));
}

fn regex_escape(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '/' { c.to_string() } else { format!("\\{c}") }).collect()
}

fn show_markdown(sandbox: &Sandbox, id: &str) -> String {
    sandbox.runbook().args(["show", id, "--format", "markdown"]).output().success().stdout()
}

#[test]
fn a_failed_then_resumed_run_becomes_a_postmortem_timeline() {
    let sandbox = Sandbox::new();
    sandbox.file("incident.yaml", INCIDENT);
    let secret = "hunter2-secret-token";
    sandbox
        .runbook()
        .args(["incident", "rollback", "--env", "production", "--yes", "--answer", "pick=rev-2"])
        .env("RUNBOOK_PARAM_TOKEN", secret)
        .output()
        .status(1);
    let id = sandbox.last_run_id();

    // In the middle of the incident: failed, resumable.
    let failed = show_markdown(&sandbox, &id);
    let rows = parse_table(&failed);
    assert!(rows.iter().any(|r| r[3].contains("flaky") && r[3].contains("failed")), "{failed}");
    assert!(failed.contains(&format!("runbook resume {id}")), "{failed}");

    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("write: {e}"));
    sandbox.runbook().args(["resume", &id, "--yes"]).env("RUNBOOK_PARAM_TOKEN", secret).output().success();
    let markdown = show_markdown(&sandbox, &id);
    assert!(!markdown.contains(secret), "{markdown}");
    let rows = parse_table(&markdown);
    let what: Vec<&str> = rows.iter().map(|r| r[3].as_str()).collect();
    // Every step, the decision with its label, the manual step, both attempts.
    for needle in [
        "Run started",
        "Stage 1: Decide",
        "Decision pick: rev-2 (revision rev-2)",
        "read (run) done",
        "Manual step hand: passed under --yes, not confirmed by a person",
        "clone (run) done",
        "flaky (run) failed",
        "Run finished: failed",
        "Resumed",
        "Stage Decide: done in an earlier attempt",
        "flaky (run) done",
        "Run finished: done",
    ] {
        assert!(what.iter().any(|w| w.contains(needle)), "no row with {needle:?}: {what:#?}");
    }
    assert!(markdown.contains("- clone: operationType CLONE, name op-1, status DONE"), "{markdown}");
    snapshot("markdown_failed_then_resumed", &markdown, &sandbox);
}

#[test]
fn markdown_of_a_hostile_journal_stays_one_table_with_visible_escapes() {
    let sandbox = Sandbox::new();
    sandbox.file("incident.yaml", INCIDENT);
    sandbox
        .runbook()
        .args(["incident", "rollback", "--env", "production", "--yes", "--answer", "pick=rev-1"])
        .env("RUNBOOK_PARAM_TOKEN", "hunter2-secret-token")
        .output()
        .status(1);
    let id = sandbox.last_run_id();
    let markdown = show_markdown(&sandbox, &id);
    assert!(!markdown.contains('\u{1b}'), "the escape sequence is shown, not sent: {markdown:?}");
    let rows = parse_table(&markdown);
    let failure = rows.iter().find(|r| r[3].contains("flaky")).map(|r| r[3].clone()).unwrap_or_default();
    assert!(failure.contains("exited with status 1"), "{failure}");
}

#[test]
fn a_rehearsal_is_labelled_in_its_markdown() {
    let sandbox = Sandbox::new();
    sandbox.file("incident.yaml", INCIDENT);
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("write: {e}"));
    sandbox
        .runbook()
        .args(["incident", "rollback", "--env", "production", "--yes", "--simulate", "--answer", "pick=rev-1"])
        .env("RUNBOOK_PARAM_TOKEN", "hunter2-secret-token")
        .output()
        .success();
    let id = sandbox.last_run_id();
    let markdown = show_markdown(&sandbox, &id);
    parse_table(&markdown);
    assert!(markdown.starts_with("# REHEARSAL: incident rollback on production"), "{markdown}");
    snapshot("markdown_rehearsal", &markdown, &sandbox);
}
