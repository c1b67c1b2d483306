//! Real execution: real child processes, a real local HTTP server, real signals.

use std::time::{Duration, Instant};

use crate::support::http::{Reply, Server};
use crate::support::{Sandbox, live_processes};

fn sandbox_with(name: &str, yaml: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file(name, yaml);
    sandbox
}

const FLOW: &str = r#"runbook: flow
title: Flow
procedures:
  main:
    summary: Captures, conditions, includes, asserts
    stages:
      - name: Gather
        steps:
          - id: info
            run: [sh, -c, 'echo "{\"ip\": \"10.0.0.7\", \"tags\": [\"a\", \"b\"]}"']
            effect: read
            capture: json
          - id: names
            run: [printf, "one\ntwo\nthree\n"]
            effect: read
            capture: lines
          - id: skipped
            run: [touch, should-not-exist]
            when: steps.info.json.ip == '1.1.1.1'
            timeout: 5s
          - id: write
            run: [sh, -c, 'printf "%s|%s|%s" "$1" "$2" "$3" > result.txt', x, "{{ steps.info.json.ip }}", "{{ steps.names.lines[1] }}", "{{ steps.info.json.tags | join(',') }}"]
            timeout: 5s
      - name: Included
        steps:
          - id: sub
            include: helper
          - id: private_ip
            assert: steps.info.json.ip.startswith('10.')
            message: "{{ steps.info.json.ip }} is not private"
  helper:
    summary: Included by main
    stages:
      - name: Helper stage
        steps:
          - id: helper_step
            run: [touch, helper-ran]
            timeout: 5s
  failing:
    summary: An assert that fails
    stages:
      - name: Check
        steps:
          - id: info2
            run: [echo, "192.168.1.1"]
            effect: read
            capture: text
          - id: must_be_ten
            assert: steps.info2.output.startswith('10.')
            message: "{{ steps.info2.output }} is not in 10/8"
          - id: after_assert
            run: [touch, after-assert]
            timeout: 5s
"#;

#[test]
fn captures_flow_into_later_steps_with_when_include_and_assert() {
    let sandbox = sandbox_with("flow.yaml", FLOW);
    let out = sandbox.runbook().args(["flow", "main", "--yes"]).output().success();
    let result = std::fs::read_to_string(sandbox.path().join("result.txt")).unwrap_or_default();
    assert_eq!(result, "10.0.0.7|two|a,b", "{}", out.all());
    assert!(!sandbox.path().join("should-not-exist").exists(), "`when: false` skipped the step");
    assert!(sandbox.path().join("helper-ran").exists(), "included procedure ran");
    let stderr = out.stderr();
    assert!(stderr.contains("- skipped skipped: `when:"), "{stderr}");
    assert!(stderr.contains("Summary: done"), "{stderr}");
}

#[test]
fn a_failing_assert_stops_the_run_with_its_message() {
    let sandbox = sandbox_with("flow.yaml", FLOW);
    let out = sandbox.runbook().args(["flow", "failing", "--yes"]).output().status(1);
    assert!(out.stderr().contains("192.168.1.1 is not in 10/8"), "{}", out.stderr());
    assert!(!sandbox.path().join("after-assert").exists());
}

const FAILURES: &str = r#"runbook: failures
title: Failures
procedures:
  flaky:
    summary: Succeeds on the third attempt
    stages:
      - name: S
        steps:
          - id: count
            shell: 'n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo "attempt $n"; [ $n -ge 3 ]'
            retry: {attempts: 5, interval: 50ms}
            timeout: 5s
  polling:
    summary: Polls until the output says ready
    stages:
      - name: S
        steps:
          - id: status
            shell: 'n=$(cat m 2>/dev/null || echo 0); n=$((n+1)); echo $n > m; if [ $n -ge 2 ]; then echo READY; else echo PENDING; fi'
            effect: read
            capture: text
            retry: {attempts: 4, interval: 50ms, until: "result.output == 'READY'"}
  continue:
    summary: A failure that does not stop the run
    stages:
      - name: S
        steps:
          - id: broken
            run: [sh, -c, 'echo boom >&2; exit 4']
            on_failure: continue
            timeout: 5s
          - id: next
            run: [touch, next-ran]
            timeout: 5s
  compensate:
    summary: A failure that runs a handler
    stages:
      - name: S
        steps:
          - id: broken_again
            run: [sh, -c, 'exit 5']
            on_failure: put-back
            timeout: 5s
          - id: never
            run: [touch, never]
            timeout: 5s
  put-back:
    summary: Handler
    stages:
      - name: Put back
        steps:
          - id: restore
            run: [touch, handler-ran]
            timeout: 5s
  missing:
    summary: A program that is not installed
    stages:
      - name: S
        steps:
          - id: nope
            run: [no-such-program-4711, --version]
            timeout: 5s
  big:
    summary: A capture over the limit
    stages:
      - name: S
        steps:
          - id: lots
            run: [sh, -c, 'head -c 5000 /dev/zero | tr "\0" "y"']
            capture: text
            timeout: 5s
"#;

#[test]
fn retry_polls_until_success() {
    let sandbox = sandbox_with("failures.yaml", FAILURES);
    let out = sandbox.runbook().args(["failures", "flaky", "--yes"]).output().success();
    assert_eq!(std::fs::read_to_string(sandbox.path().join("n")).unwrap_or_default().trim(), "3");
    assert!(out.stderr().contains("attempt 2/5 failed"), "{}", out.stderr());
    let out = sandbox.runbook().args(["failures", "polling", "--yes"]).output().success();
    assert_eq!(std::fs::read_to_string(sandbox.path().join("m")).unwrap_or_default().trim(), "2", "{}", out.all());
}

#[test]
fn on_failure_continue_and_handler_procedure() {
    let sandbox = sandbox_with("failures.yaml", FAILURES);
    let out = sandbox.runbook().args(["failures", "continue", "--yes"]).output().success();
    assert!(sandbox.path().join("next-ran").exists());
    assert!(out.stderr().contains("exited with status 4: boom"), "{}", out.stderr());
    let out = sandbox.runbook().args(["failures", "compensate", "--yes"]).output().status(1);
    assert!(sandbox.path().join("handler-ran").exists(), "{}", out.all());
    assert!(!sandbox.path().join("never").exists());
    assert!(out.stderr().contains("on_failure procedure `put-back` ran"), "{}", out.stderr());
}

#[test]
fn a_missing_program_and_an_oversized_capture_are_clear_errors() {
    let sandbox = sandbox_with("failures.yaml", FAILURES);
    let out = sandbox.runbook().args(["failures", "missing", "--yes"]).output().status(1);
    assert!(out.stderr().contains("program `no-such-program-4711` not found on PATH"), "{}", out.stderr());
    let out =
        sandbox.runbook().env("RUNBOOK_CAPTURE_LIMIT", "1000").args(["failures", "big", "--yes"]).output().status(1);
    assert!(out.stderr().contains("larger than the capture limit of 1000 bytes"), "{}", out.stderr());
}

#[test]
fn a_timeout_ends_the_whole_process_group_in_about_a_second() {
    let sandbox = sandbox_with(
        "slow.yaml",
        r#"runbook: slow
title: Slow
procedures:
  go:
    summary: Sleeps past its timeout
    stages:
      - name: S
        steps:
          - id: sleepy
            shell: 'sleep 313.37 & sleep 313.37'
            timeout: 1s
"#,
    );
    let started = Instant::now();
    let out = sandbox.runbook().args(["slow", "go", "--yes"]).output().status(1);
    let took = started.elapsed();
    assert!(out.stderr().contains("timed out after 1s"), "{}", out.stderr());
    // Generous bound: SIGTERM is immediate; the contract is "about a second", not 300.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(live_processes("sleep 313.37"), Vec::<String>::new(), "orphans left behind");
}

#[test]
fn sigint_during_a_step_exits_130_and_leaves_no_orphans() {
    let sandbox = sandbox_with(
        "long.yaml",
        r#"runbook: long
title: Long
procedures:
  go:
    summary: Long step
    stages:
      - name: S
        steps:
          - id: long
            shell: 'touch started; sleep 317.71 & sleep 317.71'
            timeout: 10m
          - id: never
            run: [touch, never]
            timeout: 5s
"#,
    );
    let mut run = sandbox.runbook().args(["long", "go", "--yes"]);
    run.cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = run.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let started = sandbox.path().join("started");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.exists(), "the step started");
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-INT", &pid]).status().map(|s| s.success());
    assert_eq!(killed.ok(), Some(true));
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(status.code(), Some(130));
    assert!(!sandbox.path().join("never").exists());
    assert_eq!(live_processes("sleep 317.71"), Vec::<String>::new(), "orphans left behind");
}

#[test]
fn without_a_terminal_and_without_yes_nothing_runs() {
    let sandbox = sandbox_with("failures.yaml", FAILURES);
    let out = sandbox.runbook().args(["failures", "continue"]).stdin("y\ny\n").output().status(2);
    assert!(out.stderr().contains("without a terminal"), "{}", out.stderr());
    assert!(!sandbox.path().join("next-ran").exists());
}

#[test]
fn shell_metacharacters_reach_the_child_as_one_argument() {
    let sandbox = sandbox_with(
        "args.yaml",
        r#"runbook: args
title: Args
params:
  name: {type: string}
procedures:
  go:
    summary: Echo argv
    params: [name]
    stages:
      - name: S
        steps:
          - id: count
            run: [sh, -c, 'printf "%s\n" "$#" "$1" > argv.txt', x, "{{ params.name }}"]
            timeout: 5s
          - id: via_shell
            shell: 'printf "%s" "$1" > shell-arg.txt'
            args: ["{{ params.name }}"]
            timeout: 5s
"#,
    );
    let nasty = "x; touch pwned $(touch pwned2) `touch pwned3` | cat";
    sandbox.runbook().args(["args", "go", "--yes", "--name", nasty]).output().success();
    assert_eq!(std::fs::read_to_string(sandbox.path().join("argv.txt")).unwrap_or_default(), format!("1\n{nasty}\n"));
    assert_eq!(std::fs::read_to_string(sandbox.path().join("shell-arg.txt")).unwrap_or_default(), nasty);
    for file in ["pwned", "pwned2", "pwned3"] {
        assert!(!sandbox.path().join(file).exists(), "{file} created: the value went through a shell");
    }
}

#[test]
fn prompts_take_answers_and_check_them() {
    let yaml = r#"runbook: ask
title: Ask
procedures:
  go:
    summary: Prompt
    stages:
      - name: S
        steps:
          - id: pick
            prompt: "Which one?"
            choices: [alpha, beta]
          - id: use
            run: [sh, -c, 'echo "$1" > picked.txt', x, "{{ steps.pick.output }}"]
            timeout: 5s
"#;
    let sandbox = sandbox_with("ask.yaml", yaml);
    let out = sandbox.runbook().args(["ask", "go", "--yes"]).output().status(2);
    assert!(out.stderr().contains("--answer pick=VALUE"), "{}", out.stderr());
    sandbox.runbook().args(["ask", "go", "--yes", "--answer", "pick=beta"]).output().success();
    assert_eq!(std::fs::read_to_string(sandbox.path().join("picked.txt")).unwrap_or_default(), "beta\n");
    let out = sandbox.runbook().args(["ask", "go", "--yes", "--answer", "pick=gamma"]).output().status(2);
    assert!(out.stderr().contains("not one of the choices"), "{}", out.stderr());
    let out = sandbox.runbook().args(["ask", "go", "--yes", "--answer", "nosuch=1"]).output().status(2);
    assert!(out.stderr().contains("no prompt or manual step `nosuch`"), "{}", out.stderr());
}

fn http_runbook(server: &Server, dead_port: u16) -> String {
    format!(
        r#"runbook: web
title: Web
procedures:
  ready:
    summary: Waits for readiness
    stages:
      - name: S
        steps:
          - id: ready
            http: {{url: "{ready}", expect: {{status: 200, json: {{status: ok}}}}}}
            effect: read
            retry: {{attempts: 5, interval: 50ms}}
            capture: json
          - id: use
            run: [sh, -c, 'echo "$1" > version.txt', x, "{{{{ steps.ready.json.version }}}}"]
            timeout: 5s
  down:
    summary: A server error
    stages:
      - name: S
        steps:
          - id: broken
            http: {{url: "{broken}"}}
            effect: read
  refused:
    summary: Nobody listening
    stages:
      - name: S
        steps:
          - id: nobody
            http: {{url: "http://127.0.0.1:{dead_port}/health", connect_timeout: 2s}}
            effect: read
  post:
    summary: A POST with a JSON body
    stages:
      - name: S
        steps:
          - id: send
            http: {{method: post, url: "{post}", body: {{name: pegasus, replicas: 2}}, expect: {{status: [200, 201], body_contains: created}}}}
            timeout: 5s
"#,
        ready = server.url("/health/ready"),
        broken = server.url("/broken"),
        post = server.url("/items"),
    )
}

#[test]
fn http_steps_retry_check_expectations_and_name_failures() {
    let server = Server::start();
    server.route(
        "/health/ready",
        vec![
            Reply::new(503, "warming up"),
            Reply::new(503, "warming up"),
            Reply::new(200, r#"{"status": "ok", "version": "v42"}"#),
        ],
    );
    server.route("/broken", vec![Reply::new(500, "database gone")]);
    server.route("/items", vec![Reply::new(201, r#"{"result": "created"}"#)]);
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        listener.local_addr().map(|a| a.port()).unwrap_or(1)
    };
    let sandbox = sandbox_with("web.yaml", &http_runbook(&server, dead_port));
    let out = sandbox.runbook().args(["web", "ready", "--yes"]).output().success();
    assert_eq!(server.hits("/health/ready"), 3, "{}", out.all());
    assert_eq!(std::fs::read_to_string(sandbox.path().join("version.txt")).unwrap_or_default(), "v42\n");

    // Issue 21: `show` tells an HTTP status as one, not as a process's exit status.
    let shown = sandbox.runbook().args(["show", &sandbox.last_run_id()]).output().success().stdout();
    assert!(shown.contains(", HTTP 200"), "{shown}");
    assert!(!shown.contains("exit 200"), "{shown}");

    let out = sandbox.runbook().args(["web", "down", "--yes"]).output().status(1);
    assert!(
        out.stderr().contains("server error: HTTP 500 Internal Server Error (expected 2xx); body: database gone"),
        "{}",
        out.stderr()
    );

    let out = sandbox.runbook().args(["web", "refused", "--yes"]).output().status(1);
    assert!(out.stderr().contains("connection refused by 127.0.0.1"), "{}", out.stderr());

    sandbox.runbook().args(["web", "post", "--yes"]).output().success();
    let bodies = server.bodies();
    let sent = bodies.iter().find(|(p, _)| p == "/items").map(|(_, b)| b.clone()).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&sent).unwrap_or_else(|e| panic!("body {sent}: {e}"));
    assert_eq!(json, serde_json::json!({"name": "pegasus", "replicas": 2}));
}

#[test]
fn json_output_is_one_event_per_line() {
    let sandbox = sandbox_with("flow.yaml", FLOW);
    let out = sandbox.runbook().args(["flow", "main", "--yes", "--output", "json"]).output().success();
    let events: Vec<serde_json::Value> =
        out.stdout().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert_eq!(events.first().map(|e| e["event"].clone()), Some(serde_json::json!("run_started")));
    assert_eq!(events.last().map(|e| e["outcome"].clone()), Some(serde_json::json!("done")));
    let info = events.iter().find(|e| e["event"] == "step_finished" && e["id"] == "info").cloned().unwrap_or_default();
    assert_eq!(info["output"]["json"]["ip"], "10.0.0.7");
}

/// Issue 21: a read step's long captured JSON (a Cloud Run service, its revisions) does not
/// scroll the stage preview off the screen: folded to one line that says how much and where
/// it is; short JSON and `-v` show it whole; the journal keeps it whole.
#[test]
fn a_read_steps_long_json_is_folded_on_the_terminal() {
    let sandbox = sandbox_with(
        "fold.yaml",
        r#"runbook: fold
title: Fold
procedures:
  go:
    summary: Reads
    stages:
      - name: S
        steps:
          - id: long
            run: [sh, -c, 'echo "{"; i=0; while [ $i -lt 40 ]; do echo "  \"k$i\": $i,"; i=$((i+1)); done; echo "  \"last\": true"; echo "}"']
            effect: read
            capture: json
          - id: short
            run: [sh, -c, 'echo "{\"ip\": \"10.0.0.7\"}"']
            effect: read
            capture: json
          - id: use
            run: [echo, "last={{ steps.long.json.last }} ip={{ steps.short.json.ip }}"]
            effect: read
"#,
    );
    let out = sandbox.runbook().args(["fold", "go", "--yes"]).output().success();
    assert!(!out.stdout().contains("\"k17\": 17"), "folded: {}", out.stdout());
    assert!(out.stderr().contains("(43 lines,"), "{}", out.stderr());
    assert!(out.stderr().contains("captured by long, not shown: `runbook show "), "{}", out.stderr());
    assert!(out.stdout().contains("\"ip\": \"10.0.0.7\""), "short JSON is shown: {}", out.stdout());
    assert!(out.stdout().contains("last=true ip=10.0.0.7"), "{}", out.stdout());
    let journal = sandbox.runbook().args(["show", &sandbox.last_run_id(), "--format", "json"]).output().success();
    assert!(journal.stdout().contains("k17"), "the journal keeps it whole");
    let verbose = sandbox.runbook().args(["fold", "go", "--yes", "-v"]).output().success();
    assert!(verbose.stdout().contains("\"k17\": 17"), "-v shows it: {}", verbose.stdout());
}

#[test]
fn secrets_reach_the_child_but_not_the_terminal() {
    let sandbox = sandbox_with(
        "secret.yaml",
        r#"runbook: secret
title: Secret
params:
  token: {type: string, secret: true}
procedures:
  go:
    summary: Uses a secret
    params: [token]
    stages:
      - name: S
        steps:
          - id: use
            run: [sh, -c, 'cat > got-stdin.txt; printf "%s" "$TOKEN" > got-env.txt; echo "stdout $TOKEN"; echo "stderr $TOKEN" >&2; exit 3']
            stdin: "{{ params.token }}"
            env: {TOKEN: "{{ params.token }}"}
            timeout: 5s
"#,
    );
    let canary = "canary-7f3a9c";
    let out = sandbox.runbook().env("RUNBOOK_PARAM_TOKEN", canary).args(["secret", "go", "--yes"]).output().status(1);
    assert_eq!(std::fs::read_to_string(sandbox.path().join("got-stdin.txt")).unwrap_or_default(), canary);
    assert_eq!(std::fs::read_to_string(sandbox.path().join("got-env.txt")).unwrap_or_default(), canary);
    assert!(!out.all().contains(canary), "leaked:\n{}", out.all());
    assert!(out.stdout().contains("stdout ********"), "{}", out.stdout());
    assert!(out.stderr().contains("stderr ********"), "{}", out.stderr());
}
