//! `--dry-run`: fully rendered, and nothing spawned.

use crate::support::{Sandbox, recent_timestamp, write_executable};

/// Programs the rollback runbook calls, all replaced by recorders.
const PROGRAMS: &[&str] = &["gcloud", "sh", "bash", "test", "curl", "psql", "env"];

fn dry_run(procedure: &str, args: &[&str]) -> String {
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    let (bin, log) = sandbox.recording_path(PROGRAMS);
    let smoke_log = sandbox.path().join("smoke.log");
    write_executable(
        &sandbox.path().join("scripts/smoke_worker_queue.sh"),
        &format!("#!/bin/sh\necho called >> '{}'\n", smoke_log.display()),
    );
    let out =
        sandbox.runbook().env("PATH", &bin).args(["rollback", procedure, "--dry-run"]).args(args).output().success();
    assert!(!log.exists(), "dry-run spawned: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(!smoke_log.exists(), "dry-run ran the smoke script");
    assert_eq!(out.stderr(), "", "dry-run wrote to stderr");
    out.stdout()
}

fn snapshot(name: &str, text: &str, timestamp: &str) {
    insta::with_settings!({ filters => vec![(regex_escape(timestamp).as_str(), "[TIMESTAMP]")], prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, text);
    });
}

fn regex_escape(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_string() } else { format!("\\{c}") }).collect()
}

#[test]
fn every_rollback_procedure_renders_and_spawns_nothing() {
    let ts = recent_timestamp();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("pitr", vec!["--env", "production", "--timestamp", &ts]),
        ("snapshot", vec!["--env", "production"]),
        ("revert-traffic", vec!["--env", "production"]),
        (
            "forward-fix",
            vec!["--env", "staging", "--failing-migration", "001_add_tags.sql", "--fix-migration", "002_fix_tags.sql"],
        ),
        ("verify", vec!["--env", "production"]),
        ("immediate-response", vec!["--env", "production"]),
    ];
    for (procedure, args) in cases {
        let text = dry_run(procedure, &args);
        snapshot(&format!("dry_run__{procedure}"), &text, &ts);
    }
}

#[test]
fn dry_run_json_has_the_rendered_argv() {
    let ts = recent_timestamp();
    let text = dry_run("pitr", &["--env", "production", "--timestamp", &ts, "--output", "json"]);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("json: {e}\n{text}"));
    let rendered = text.contains(&format!("--point-in-time={ts}"));
    assert!(rendered, "clone argv carries the timestamp");
    assert_eq!(json["environment"], "production");
}

const DEMO: &str = r#"runbook: demo
title: Demo
params:
  name: {type: string, help: "Anything"}
  token: {type: string, secret: true, help: "An API token"}
procedures:
  go:
    summary: Go
    params: [name, token]
    stages:
      - name: Do it
        steps:
          - id: echo
            run: [echo, "{{ params.name }}"]
          - id: post
            run: [cat]
            stdin: "Bearer {{ params.token }}"
            env: {TOKEN: "{{ params.token }}"}
"#;

#[test]
fn shell_metacharacters_in_a_param_stay_one_argv_element() {
    let sandbox = Sandbox::new();
    sandbox.file("demo.yaml", DEMO);
    let nasty = "x; rm -rf ~ $(touch pwned) `id` | cat > /tmp/y";
    let out = sandbox
        .runbook()
        .args(["demo", "go", "--dry-run", "--output", "json", "--name", nasty, "--token", "s3cr3t-canary"])
        .output()
        .success();
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("json: {e}"));
    let argv = &json["stages"][0]["steps"][0]["rendered"]["argv"];
    assert_eq!(argv, &serde_json::json!(["echo", nasty]));
    let human = sandbox
        .runbook()
        .args(["demo", "go", "--dry-run", "--name", nasty, "--token", "s3cr3t-canary"])
        .output()
        .success();
    let line =
        human.stdout().lines().find(|l| l.trim_start().starts_with("$ echo")).map(str::to_owned).unwrap_or_default();
    let words = shell_words::split(line.trim_start().trim_start_matches("$ ")).unwrap_or_default();
    assert_eq!(
        words,
        vec!["echo".to_owned(), nasty.to_owned()],
        "pasted into a shell, it is still one argument: {line}"
    );
    assert!(!sandbox.path().join("pwned").exists());
}

#[test]
fn a_secret_param_never_appears_in_dry_run_output() {
    let sandbox = Sandbox::new();
    sandbox.file("demo.yaml", DEMO);
    let canary = "s3cr3t-canary-4f1d";
    for format in ["human", "json"] {
        let by_flag = sandbox
            .runbook()
            .args(["demo", "go", "--dry-run", "--name", "n", "--token", canary, "--output", format])
            .output()
            .success();
        let by_env = sandbox
            .runbook()
            .env("RUNBOOK_PARAM_TOKEN", canary)
            .args(["demo", "go", "--dry-run", "--name", "n", "--output", format])
            .output()
            .success();
        for out in [by_flag, by_env] {
            assert!(!out.all().contains(canary), "secret leaked in {format}:\n{}", out.all());
            assert!(out.stdout().contains("********"), "mask shown in {format}");
        }
    }
    // A bad secret value is rejected without echoing it.
    let out = sandbox.runbook().args(["demo", "go", "--dry-run", "--name", "n", "--token", "ab"]).output().status(2);
    assert!(!out.stderr().contains("ab\n") && out.stderr().contains("--token"), "{}", out.stderr());
}

#[test]
fn run_takes_a_file_outside_the_folder() {
    let sandbox = Sandbox::new();
    let file = sandbox.file("elsewhere/demo.yaml", DEMO);
    let out = sandbox
        .runbook()
        .args(["run".as_ref(), file.as_os_str()])
        .args(["go", "--dry-run", "--name", "hello", "--token", "abcdef"])
        .output()
        .success();
    assert!(out.stdout().contains("$ echo hello"), "{}", out.stdout());
}

#[test]
fn probe_runs_read_steps_only_so_later_steps_show_real_values() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "probe.yaml",
        r#"runbook: probe
title: Probe
procedures:
  go:
    summary: Reads, then writes
    stages:
      - name: S
        steps:
          - id: ip
            run: [sh, -c, 'echo probed >> reads.log; echo 10.4.4.4']
            effect: read
            capture: text
          - id: write
            run: [sh, -c, 'echo wrote >> writes.log', x, "{{ steps.ip.output }}"]
            timeout: 5s
          - id: after_write
            run: [echo, "{{ steps.write.status }}"]
            effect: read
"#,
    );
    let plain = sandbox.runbook().args(["probe", "go", "--dry-run"]).output().success();
    assert!(plain.stdout().contains("'<steps.ip.output>'"), "{}", plain.stdout());
    assert!(!sandbox.path().join("reads.log").exists(), "a plain dry-run runs nothing");
    let probed = sandbox.runbook().args(["probe", "go", "--dry-run", "--probe"]).output().success();
    assert!(probed.stdout().contains("$ sh -c 'echo wrote >> writes.log' x 10.4.4.4"), "{}", probed.stdout());
    assert_eq!(std::fs::read_to_string(sandbox.path().join("reads.log")).unwrap_or_default(), "probed\n");
    assert!(!sandbox.path().join("writes.log").exists(), "--probe never runs a mutating step");
}
