//! `notify:` webhooks: a local HTTP server records what a run sends (Slack and JSON
//! formats), and stands in for a webhook that hangs or answers 500.

use std::time::{Duration, Instant};

use crate::support::Sandbox;
use crate::support::http::{Reply, Server};

const SECRET: &str = "hunter2-secret-token";

fn runbook(events: &str, timeout: &str) -> String {
    format!(
        r#"runbook: incident
title: Incident
environments:
  production:
    vars: {{project: p}}
    notify:
      - webhook_env: SLACK_HOOK
        format: slack
        events: {events}
        timeout: {timeout}
      - webhook_env: JSON_HOOK
        format: json
        events: [started, failed, finished]
        timeout: {timeout}
  staging:
    vars: {{project: s}}
    rehearsal: {{notify: true}}
    notify:
      - {{webhook_env: SLACK_HOOK, format: slack}}
params:
  token: {{type: string, secret: true}}
procedures:
  rollback:
    summary: Roll back
    params: [token]
    stages:
      - name: Inspect
        steps:
          - {{id: look, run: [echo, looked], effect: read}}
      - name: Change
        steps:
          - id: change
            timeout: 1m
            run: [sh, -c, 'test -f ok || {{ echo "token $T is wrong" >&2; exit 1; }}']
            env: {{T: "{{{{ params.token }}}}"}}
"#
    )
}

fn texts(server: &Server, path: &str) -> Vec<serde_json::Value> {
    server
        .bodies()
        .into_iter()
        .filter(|(p, _)| p == path)
        .map(|(_, body)| serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON: {e}: {body}")))
        .collect()
}

fn journal(sandbox: &Sandbox) -> String {
    let path = sandbox.journals().pop().unwrap_or_default();
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn slack_and_json_webhooks_hear_each_event_named_in_order_with_secrets_masked() {
    let sandbox = Sandbox::new();
    sandbox.file("incident.yaml", &runbook("[started, stage, failed, break_glass, undo, finished]", "2s"));
    let server = Server::start();
    server.route("/slack/T0001/secret-path", vec![Reply::new(200, "ok")]);
    server.route("/json", vec![Reply::new(204, "")]);
    let out = sandbox
        .runbook()
        .args(["incident", "rollback", "--env", "production", "--yes"])
        .env("RUNBOOK_PARAM_TOKEN", SECRET)
        .env("SLACK_HOOK", server.url("/slack/T0001/secret-path"))
        .env("JSON_HOOK", server.url("/json"))
        .output()
        .status(1);
    let slack: Vec<String> = texts(&server, "/slack/T0001/secret-path")
        .iter()
        .map(|b| b["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(slack.len(), 4, "started, one stage, failed, finished: {slack:#?}\n{}", out.stderr());
    let id = sandbox.last_run_id();
    assert!(slack[0].starts_with("▶ ") && slack[0].contains("started `incident rollback` on production"), "{slack:#?}");
    assert!(slack[0].contains("REAL run") && slack[0].contains(&format!("runbook show {id}")), "{slack:#?}");
    assert!(slack[1].contains("stage 1 “Inspect” done in"), "{slack:#?}");
    assert!(slack[2].contains("step change failed") && slack[2].contains("token ******** is wrong"), "{slack:#?}");
    assert!(slack[3].contains("finished: FAILED in"), "{slack:#?}");
    let all = format!("{slack:?}{:?}", server.bodies());
    assert!(!all.contains(SECRET), "{all}");

    let json = texts(&server, "/json");
    // Each body holds what schema/notification.schema.json requires, with its names.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::repo_root().join("schema/notification.schema.json"))
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("schema: {e}"));
    for body in &json {
        for key in schema["required"].as_array().into_iter().flatten().filter_map(|k| k.as_str()) {
            assert!(body.get(key).is_some(), "{key} missing: {body}");
        }
        let kinds = schema["properties"]["notification"]["enum"].as_array().cloned().unwrap_or_default();
        assert!(kinds.contains(&body["notification"]), "{body}");
        let events =
            schema["properties"]["event"]["properties"]["event"]["enum"].as_array().cloned().unwrap_or_default();
        assert!(events.contains(&body["event"]["event"]), "{body}");
    }
    let kinds: Vec<&str> = json.iter().map(|b| b["notification"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["started", "failed", "finished"], "{json:#?}");
    assert_eq!(json[0]["run_id"], id.as_str());
    assert_eq!(json[0]["event"]["event"], "run_started");
    assert_eq!(json[2]["event"]["event"], "run_finished");
    assert_eq!(json[2]["event"]["outcome"], "failed");
    assert_eq!(json[0]["rehearsal"], false);
    // The URL is a credential: in no record.
    assert!(!journal(&sandbox).contains("secret-path"), "{}", journal(&sandbox));
    assert!(!out.all().contains("secret-path"), "{}", out.all());
}

#[test]
fn a_finished_run_sends_its_last_message_with_the_result() {
    let sandbox = Sandbox::new();
    sandbox.file("incident.yaml", &runbook("[finished]", "2s"));
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("write: {e}"));
    let server = Server::start();
    server.route("/slack", vec![Reply::new(200, "ok")]);
    sandbox
        .runbook()
        .args(["incident", "rollback", "--env", "production", "--yes"])
        .env("RUNBOOK_PARAM_TOKEN", SECRET)
        .env("SLACK_HOOK", server.url("/slack"))
        .output()
        .success();
    let slack = texts(&server, "/slack");
    assert_eq!(slack.len(), 1, "{slack:#?}");
    let text = slack[0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("finished: DONE in"), "{text}");
}

#[test]
fn a_rehearsal_sends_nothing_unless_its_rehearsal_block_asks_and_then_says_so() {
    let sandbox = Sandbox::new();
    sandbox.file("incident.yaml", &runbook("[started, finished]", "2s"));
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("write: {e}"));
    let server = Server::start();
    server.route("/slack", vec![Reply::new(200, "ok")]);
    let run = |env: &str, extra: &[&str]| {
        sandbox
            .runbook()
            .args(["incident", "rollback", "--env", env, "--yes", "--simulate"])
            .args(extra)
            .env("RUNBOOK_PARAM_TOKEN", SECRET)
            .env("SLACK_HOOK", server.url("/slack"))
            .env("JSON_HOOK", server.url("/slack"))
            .output()
            .success()
    };
    let out = run("production", &[]);
    assert_eq!(server.hits("/slack"), 0, "{}", out.stderr());
    assert!(out.stderr().contains("notifications are off in a rehearsal"), "{}", out.stderr());
    let out = run("staging", &[]);
    let slack = texts(&server, "/slack");
    assert!(!slack.is_empty(), "{}", out.stderr());
    assert!(slack.iter().all(|b| b["text"].as_str().unwrap_or_default().starts_with("[REHEARSAL] ")), "{slack:#?}");
    let before = server.hits("/slack");
    let out = run("staging", &["--no-notify"]);
    assert_eq!(server.hits("/slack"), before, "--no-notify sends nothing");
    assert!(out.stderr().contains("notifications are off for this run (--no-notify)"), "{}", out.stderr());
}

#[test]
fn without_its_variable_a_run_says_once_that_notifications_are_off() {
    let sandbox = Sandbox::new();
    sandbox.file("incident.yaml", &runbook("[started]", "2s"));
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("write: {e}"));
    let out = sandbox
        .runbook()
        .args(["incident", "rollback", "--env", "production", "--yes"])
        .env("RUNBOOK_PARAM_TOKEN", SECRET)
        .output()
        .success();
    assert_eq!(out.stderr().matches("notifications are off").count(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("$SLACK_HOOK, $JSON_HOOK not set"), "{}", out.stderr());
}

/// A webhook that hangs, or answers 500, costs at most its timeout per message; the run
/// still succeeds, the failure is journaled and shown once.
#[test]
fn a_hanging_or_failing_webhook_costs_at_most_its_timeout_per_message() {
    for (name, reply) in [("hang", Reply::hang()), ("500", Reply::new(500, "boom"))] {
        let sandbox = Sandbox::new();
        sandbox.file("incident.yaml", &runbook("[started, stage, finished]", "1s"));
        std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("write: {e}"));
        let server = Server::start();
        server.route("/slack", vec![reply]);
        let started = Instant::now();
        let out = sandbox
            .runbook()
            .args(["incident", "rollback", "--env", "production", "--yes"])
            .env("RUNBOOK_PARAM_TOKEN", SECRET)
            .env("SLACK_HOOK", server.url("/slack"))
            .output();
        let took = started.elapsed();
        let stderr = out.stderr();
        assert_eq!(out.code(), 0, "{name}: {stderr}");
        // Four messages (started, two stages, finished) of at most 1s each, plus the run.
        eprintln!("{name}: the run took {took:?} with a webhook that fails");
        assert!(took < Duration::from_secs(4) + Duration::from_millis(2500), "{name}: took {took:?}");
        assert_eq!(stderr.matches("was not delivered").count(), 1, "{name}: shown once: {stderr}");
        let journal = journal(&sandbox);
        assert!(journal.matches("\"event\":\"notify_failed\"").count() >= 1, "{name}: {journal}");
        assert!(!journal.contains("/slack"), "{name}: no URL in the journal: {journal}");
        if name == "500" {
            assert_eq!(server.hits("/slack"), 4 * 3, "two retries per message");
        }
    }
}

#[test]
fn validate_names_each_bad_notify_entry_with_its_place() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "bad.yaml",
        r#"runbook: bad
title: Bad
environments:
  production:
    notify:
      - webhook_env: SLACK_HOOK
        format: teams
        events: [started, finsihed]
      - format: json
      - webhook_env: https://hooks.slack.com/services/T/B/X
procedures:
  go:
    summary: Go
    stages:
      - name: S
        steps:
          - {id: a, run: [echo, a], effect: read}
"#,
    );
    let out = sandbox.runbook().args(["validate", "runbooks/bad.yaml"]).output().status(1);
    let all = out.all();
    assert!(all.contains("unknown notification format `teams`") && all.contains("bad.yaml:7:17"), "{all}");
    assert!(all.contains("unknown notification event `finsihed`") && all.contains("did you mean `finished`"), "{all}");
    assert!(all.contains("bad.yaml:8:27"), "{all}");
    assert!(all.contains("missing") && all.contains("webhook_env"), "{all}");
    // The message never repeats what may be the URL (the excerpt shows the user's own line).
    let message = all.lines().find(|l| l.contains("must name an environment variable")).unwrap_or_default();
    assert!(message.ends_with("not a URL"), "{all}");
}
