//! Issue 23: a secret is masked in the forms it travels in (upper-case hex, percent-encoded
//! in a URL's userinfo and query), inside non-secret param and `--var` values, and in what
//! the operator types (a break-glass reason) — on the terminal, in the journal, `show`,
//! `history` and plans.

use crate::support::{Finished, Sandbox};

/// A secret with characters a URL encodes.
const SECRET: &str = "p@ss w/rd:1";

const RUNBOOK: &str = r#"runbook: db
title: Database
environments:
  prod:
    approvals: 1
    vars: {dsn: none}
params:
  token: {type: string, secret: true}
  url: {type: string}
procedures:
  go:
    summary: Go
    params: [token, url]
    stages:
      - name: S
        steps:
          - id: print
            run: [printf, '%s\n', "7040737320772F72643A31", "postgres://app:p%40ss%20w%2Frd%3A1@h/db", "postgres://app:p%40ss%20w%2frd%3a1@h/db", "https://h/?password=p%40ss+w%2Frd%3A1&x=1", "https://h/?password=p%40ss+w%2frd%3a1"]
            effect: read
            timeout: 5s
          - id: use
            run: [sh, -c, 'test -n "$T"', x, "{{ params.url }}", "{{ vars.dsn }}"]
            env: {T: "{{ params.token }}"}
            effect: mutate
            timeout: 5s
"#;

/// Every form of [`SECRET`] that must never be shown.
fn forms() -> Vec<String> {
    let mut forms = vec![
        SECRET.to_owned(),
        hex::encode(SECRET),
        hex::encode_upper(SECRET),
        "p%40ss%20w%2Frd%3A1".to_owned(),
        "p%40ss%20w%2frd%3a1".to_owned(),
        "p%40ss+w%2Frd%3A1".to_owned(),
        "p%40ss+w%2frd%3a1".to_owned(),
    ];
    forms.sort();
    forms
}

#[track_caller]
fn assert_masked(what: &str, text: &str) {
    for form in forms() {
        assert!(!text.contains(&form), "{what} shows the secret as {form}:\n{text}");
    }
}

fn journals(sandbox: &Sandbox) -> String {
    sandbox.journals().iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
}

fn run(sandbox: &Sandbox, extra: &[&str]) -> Finished {
    // The runbook prints the secret's upper-case hex: checked here so the two cannot drift.
    assert!(RUNBOOK.contains(&hex::encode_upper(SECRET)));
    sandbox
        .runbook()
        .env("RUNBOOK_PARAM_TOKEN", SECRET)
        .args(["db", "go", "--env", "prod", "--url", "postgres://app:p%40ss%20w%2Frd%3A1@h/db"])
        .args(["--var", "dsn=host=h password=p%40ss+w%2frd%3a1"])
        .args(extra)
        .output()
}

#[test]
fn a_secret_is_masked_as_upper_hex_percent_encoded_in_params_vars_and_a_break_glass_reason() {
    let sandbox = Sandbox::new();
    sandbox.file("db.yaml", RUNBOOK);
    let out = run(&sandbox, &["--yes", "--break-glass", &format!("pasted {SECRET} by mistake")]).success();
    assert_masked("the terminal", &out.all());
    assert!(out.all().contains("********"), "{}", out.all());
    let journal = journals(&sandbox);
    assert_masked("the journal", &journal);
    let header: serde_json::Value =
        serde_json::from_str(journal.lines().next().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let params = header["params"].as_array().cloned().unwrap_or_default();
    assert!(params.contains(&serde_json::json!(["url", "postgres://app:********@h/db"])), "{header}");
    assert_eq!(header["vars"][0], serde_json::json!(["dsn", "host=h password=********"]), "{header}");
    assert_eq!(header["break_glass"], serde_json::json!("pasted ******** by mistake"), "{header}");
    let id = sandbox.last_run_id();
    assert_masked("show", &sandbox.runbook().args(["show", &id]).output().success().all());
    let markdown = sandbox.runbook().args(["show", &id, "--format", "markdown"]).output().success();
    assert_masked("show --format markdown", &markdown.all());
    assert_masked("history", &sandbox.runbook().args(["history"]).output().success().all());
    let json = sandbox.runbook().args(["history", "--format", "json"]).output().success();
    assert_masked("history --format json", &json.all());
}

/// A plan never holds a secret, and a masked value is not what an approver approved: a
/// non-secret value holding one is refused.
#[test]
fn a_plan_is_refused_when_a_non_secret_value_holds_a_secret() {
    let sandbox = Sandbox::new();
    sandbox.file("db.yaml", RUNBOOK);
    let out = run(&sandbox, &["--save-plan", "db.plan"]).status(2);
    assert!(out.stderr().contains("holds a secret"), "{}", out.stderr());
    assert_masked("save-plan", &out.all());
    assert!(!sandbox.path().join("db.plan").exists());
}

/// A run whose param was journaled masked is not resumed with the mask in its place.
#[test]
fn a_run_whose_param_was_masked_in_the_journal_is_not_resumed_with_the_mask() {
    let sandbox = Sandbox::new();
    sandbox.file("db.yaml", &RUNBOOK.replace(r#"'test -n "$T"'"#, r#"'test -z "$T"'"#));
    run(&sandbox, &["--yes", "--break-glass", "db down"]).status(1);
    let id = sandbox.last_run_id();
    let out = sandbox.runbook().env("RUNBOOK_PARAM_TOKEN", SECRET).args(["resume", &id, "--yes"]).output().status(2);
    assert!(out.stderr().contains("param `url` held a secret"), "{}", out.stderr());
    assert_masked("resume", &out.all());
}
