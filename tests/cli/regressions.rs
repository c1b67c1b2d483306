//! Regression tests, each named after the problem it pins down.

use std::time::{Duration, Instant};

use crate::support::Sandbox;
use crate::support::http::{Reply, Server};

fn sandbox_with(name: &str, yaml: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file(name, yaml);
    sandbox
}

#[test]
fn secrets_through_params_as_a_whole_or_env_are_refused_on_argv() {
    for template in ["{{ params }}", "{{ params['token'] }}", "{{ env.RUNBOOK_PARAM_TOKEN }}", "{{ env }}"] {
        let sandbox = sandbox_with(
            "leak.yaml",
            &format!(
                "runbook: leak\ntitle: Leak\nparams:\n  token: {{type: string, secret: true}}\nprocedures:\n  go:\n    summary: Go\n    params: [token]\n    stages:\n      - name: S\n        steps:\n          - {{id: a, run: [echo, \"{template}\"], effect: read}}\n"
            ),
        );
        let out = sandbox.runbook().args(["validate"]).output().status(1);
        assert!(out.stderr().contains("RB012"), "{template}: {}", out.stderr());
    }
}

#[test]
fn a_background_daemon_left_by_a_step_does_not_hang_the_run() {
    let sandbox = sandbox_with(
        "daemon.yaml",
        r#"runbook: daemon
title: Daemon
procedures:
  go:
    summary: Leaves something running
    stages:
      - name: S
        steps:
          - id: daemon
            shell: '( sleep 0.5; exec sleep 347.5 ) >/dev/null 2>&1 </dev/null & echo started'
            timeout: 10s
          - id: after
            run: [touch, after]
            timeout: 5s
"#,
    );
    let started = Instant::now();
    sandbox.runbook().args(["daemon", "go", "--yes"]).output().success();
    assert!(started.elapsed() < Duration::from_secs(8), "the run waited for the background process");
    assert!(sandbox.path().join("after").exists());
    std::thread::sleep(Duration::from_millis(800));
    let survivors =
        std::process::Command::new("pgrep").args(["-f", "sleep 347.5"]).output().map(|o| o.stdout).unwrap_or_default();
    assert!(survivors.is_empty(), "the background process outlived its step");
}

#[test]
fn a_secret_step_never_shows_its_output_even_when_it_fails() {
    let sandbox = sandbox_with(
        "secretfail.yaml",
        r#"runbook: secretfail
title: Secret failure
procedures:
  go:
    summary: A secret read that fails after printing
    stages:
      - name: S
        steps:
          - id: read
            run: [sh, -c, 'cat v.txt; echo "token $(cat v.txt)" >&2; exit 2']
            effect: read
            capture: text
            secret: true
"#,
    );
    sandbox.file("dir/../v.txt", "value-6b1f");
    let out = sandbox.runbook().args(["secretfail", "go", "--yes"]).output().status(1);
    assert!(!out.all().contains("value-6b1f"), "{}", out.all());
    assert!(out.stderr().contains("not shown: secret step"), "{}", out.stderr());
}

#[test]
fn a_secret_http_response_is_not_quoted_when_an_expectation_fails() {
    let server = Server::start();
    server.route("/token", vec![Reply::new(200, r#"{"token": "tok-93af"}"#)]);
    let sandbox = sandbox_with(
        "sechttp.yaml",
        &format!(
            "runbook: sechttp\ntitle: T\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {{id: t, http: {{url: \"{}\", expect: {{body_contains: nope, json: {{token: other}}}}}}, effect: read, secret: true, capture: json}}\n",
            server.url("/token")
        ),
    );
    let out = sandbox.runbook().args(["sechttp", "go", "--yes"]).output().status(1);
    assert!(!out.all().contains("tok-93af"), "{}", out.all());
    let journal = std::fs::read_dir(sandbox.path().join("state/runs"))
        .map(|d| {
            d.filter_map(Result::ok).map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect::<String>()
        })
        .unwrap_or_default();
    assert!(!journal.contains("tok-93af"));
}

#[test]
fn an_http_body_over_the_capture_limit_is_an_error_not_a_truncation() {
    let server = Server::start();
    server.route("/big", vec![Reply::new(200, &"z".repeat(5000))]);
    let sandbox = sandbox_with(
        "big.yaml",
        &format!(
            "runbook: big\ntitle: T\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {{id: b, http: {{url: \"{}\"}}, effect: read, capture: text}}\n",
            server.url("/big")
        ),
    );
    let out = sandbox.runbook().env("RUNBOOK_CAPTURE_LIMIT", "1000").args(["big", "go", "--yes"]).output().status(1);
    assert!(out.stderr().contains("larger than the capture limit"), "{}", out.stderr());
}

#[test]
fn probe_never_runs_a_step_whose_when_is_false_and_delete_cannot_be_read() {
    let sandbox = sandbox_with(
        "probe.yaml",
        r#"runbook: probe
title: T
environments:
  staging: {vars: {name: s}}
  production: {vars: {name: p}}
procedures:
  go:
    summary: Go
    stages:
      - name: S
        steps:
          - id: only_staging
            run: [touch, ran-in-wrong-env]
            effect: read
            when: environment == 'staging'
"#,
    );
    sandbox.runbook().args(["probe", "go", "--env", "production", "--dry-run", "--probe"]).output().success();
    assert!(!sandbox.path().join("ran-in-wrong-env").exists());
    sandbox.file(
        "delete.yaml",
        "runbook: delete\ntitle: T\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: d, http: {method: DELETE, url: \"http://127.0.0.1:9/x\"}, effect: read}\n",
    );
    let out = sandbox.runbook().args(["validate", "runbooks/delete.yaml"]).output().status(1);
    assert!(out.stderr().contains("an HTTP DELETE request is not `effect: read`"), "{}", out.stderr());
}

#[test]
fn a_short_secret_answer_is_refused_rather_than_shown() {
    let sandbox = sandbox_with(
        "pin.yaml",
        "runbook: pin\ntitle: T\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: pw, prompt: \"PIN?\", secret: true}\n",
    );
    let out = sandbox.runbook().args(["pin", "go", "--yes", "--answer", "pw=zq"]).output().status(2);
    assert!(out.stderr().contains("too short"), "{}", out.stderr());
}

#[test]
fn a_procedure_included_twice_in_one_flow_is_refused() {
    let sandbox = sandbox_with(
        "twice.yaml",
        "runbook: twice\ntitle: T\nprocedures:\n  main:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: first, include: notify}\n          - {id: second, include: notify}\n  notify:\n    summary: N\n    stages:\n      - name: N\n        steps:\n          - {id: note, run: [true], effect: read}\n",
    );
    let out = sandbox.runbook().args(["validate"]).output().status(1);
    assert!(out.stderr().contains("procedure `notify` would run a second time in `main`"), "{}", out.stderr());
}

#[test]
fn resume_works_after_an_optional_int_param_was_not_given() {
    let sandbox = sandbox_with(
        "opt.yaml",
        r#"runbook: opt
title: T
params:
  count: {type: int, required: false}
procedures:
  go:
    summary: Go
    params: [count]
    stages:
      - name: S
        steps:
          - id: show
            run: [sh, -c, 'printf "[%s]" "$1" > count.txt; test -f ok', x, "{{ params.count }}"]
            timeout: 5s
"#,
    );
    sandbox.runbook().args(["opt", "go", "--yes"]).output().status(1);
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("count.txt")).unwrap_or_default(),
        "[]",
        "none renders empty"
    );
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("{e}"));
    let id = sandbox.last_run_id();
    sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
}

#[test]
fn a_time_bound_with_a_multibyte_character_or_a_huge_offset_is_an_error_not_a_panic() {
    for bound in ["nowé", "now+300000y", "now-1000000000y"] {
        let sandbox = sandbox_with(
            "bound.yaml",
            &format!(
                "runbook: bound\ntitle: T\nparams:\n  at: {{type: timestamp, not_after: \"{bound}\"}}\nprocedures:\n  go:\n    summary: Go\n    params: [at]\n    stages:\n      - name: S\n        steps:\n          - {{id: a, run: [echo, \"{{{{ params.at }}}}\"], effect: read}}\n"
            ),
        );
        let out = sandbox.runbook().args(["validate"]).output().status(1);
        assert!(out.stderr().contains("not_after"), "{bound}: {}", out.stderr());
    }
}

#[test]
fn a_procedure_named_help_is_refused_instead_of_crashing_the_cli() {
    let sandbox = sandbox_with(
        "ph.yaml",
        "runbook: ph\ntitle: T\nprocedures:\n  help:\n    summary: S\n    stages:\n      - name: S\n        steps:\n          - {id: a, run: [echo, hi], effect: read}\n",
    );
    let out = sandbox.runbook().args(["validate"]).output().status(1);
    assert!(out.stderr().contains("RB017"), "{}", out.stderr());
    let out = sandbox.runbook().args(["ph", "help"]).output().status(2);
    assert!(out.stderr().contains("shadows the built-in"), "{}", out.stderr());
    sandbox.runbook().args(["list"]).output().success();
}

#[test]
fn using_the_output_of_a_conditional_step_is_flagged_before_it_fails_at_run_time() {
    let sandbox = sandbox_with(
        "cond.yaml",
        r#"runbook: cond
title: T
environments:
  staging: {vars: {x: "1"}}
procedures:
  go:
    summary: Go
    stages:
      - name: S
        steps:
          - {id: maybe, run: [echo, hi], effect: read, capture: text, when: "environment == 'production'"}
          - {id: uses, run: [echo, "{{ steps.maybe.output }}"], effect: read}
"#,
    );
    let out = sandbox.runbook().args(["validate"]).output().success();
    assert!(out.stderr().contains("warning[RB103]"), "{}", out.stderr());
    sandbox.runbook().args(["validate", "--strict"]).output().status(1);
}

/// Issue 21: `list` in a folder without runbooks says so on stderr and exits 2 (it used to
/// exit 0, so a script pointed at the wrong folder carried on).
#[test]
fn list_in_a_folder_without_runbooks_exits_2() {
    let sandbox = crate::support::Sandbox::new();
    std::fs::create_dir_all(sandbox.path().join("runbooks")).unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox.runbook().args(["list"]).output().status(2);
    assert!(out.stderr().contains("no runbooks in runbooks"), "{}", out.stderr());
}
