//! Journal, history/show, resume, the run lock, and secrets kept out of every record.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::Sandbox;

fn run_id(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter(|l| l.contains(needle)).count()
}

const THREE: &str = r#"runbook: three
title: Three steps
procedures:
  go:
    summary: Step two fails until it is fixed
    stages:
      - name: First
        steps:
          - id: one
            run: [sh, -c, 'echo one >> ran.log; echo 10.9.8.7']
            capture: text
            timeout: 5s
      - name: Second
        steps:
          - id: two
            run: [sh, -c, 'test -f fixed && echo two >> ran.log']
            timeout: 5s
          - id: three
            run: [sh, -c, 'echo "three $1" >> ran.log', x, "{{ steps.one.output }}"]
            timeout: 5s
"#;

#[test]
fn a_failed_run_resumes_at_its_first_unfinished_step() {
    let sandbox = Sandbox::new();
    sandbox.file("three.yaml", THREE);
    let out = sandbox.runbook().args(["three", "go", "--yes"]).output().status(1);
    let journal = sandbox.journals().pop().unwrap_or_default();
    let id = run_id(&journal);
    assert!(out.stderr().contains(&format!("runbook resume {id}")), "{}", out.stderr());

    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success();
    let list: serde_json::Value = serde_json::from_str(&history.stdout()).unwrap_or_default();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "failed");

    std::fs::write(sandbox.path().join("fixed"), "").unwrap_or_else(|e| panic!("{e}"));
    sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    let log = std::fs::read_to_string(sandbox.path().join("ran.log")).unwrap_or_default();
    assert_eq!(log, "one\ntwo\nthree 10.9.8.7\n", "step one once, then two and three with one's output");
    let out = sandbox.runbook().args(["show", &id]).output().success();
    assert!(out.stdout().contains("run resumed") && out.stdout().ends_with("status: done\n"), "{}", out.stdout());
    let out = sandbox.runbook().args(["resume", &id]).output().status(2);
    assert!(out.stderr().contains("nothing to resume"), "{}", out.stderr());
}

#[test]
fn resume_refuses_a_changed_runbook_unless_forced() {
    let sandbox = Sandbox::new();
    let file = sandbox.file("three.yaml", THREE);
    sandbox.runbook().args(["three", "go", "--yes"]).output().status(1);
    let id = run_id(&sandbox.journals().pop().unwrap_or_default());
    std::fs::write(&file, THREE.replace("test -f fixed && echo two", "echo two")).unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox.runbook().args(["resume", &id]).output().status(2);
    assert!(out.stderr().contains("changed since the run started"), "{}", out.stderr());
    assert!(!std::fs::read_to_string(sandbox.path().join("ran.log")).unwrap_or_default().contains("two"));
    sandbox.runbook().args(["resume", &id, "--force", "--yes"]).output().success();
    let journal = sandbox.journals().pop().unwrap_or_default();
    assert_eq!(count_lines(&journal, r#""forced":true"#), 1, "the override is recorded");
}

#[test]
fn a_run_killed_with_sigkill_resumes_at_the_step_it_was_in() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "killed.yaml",
        r#"runbook: killed
title: Killed
procedures:
  go:
    summary: Killed mid-step
    stages:
      - name: S
        steps:
          - id: before
            run: [sh, -c, 'echo before >> ran.log']
            timeout: 5s
          - id: slow
            run: [sh, -c, 'echo slow-start >> ran.log; test -f fast || { touch started; exec sleep 331.13; }']
            timeout: 1m
          - id: after
            run: [sh, -c, 'echo after >> ran.log']
            timeout: 5s
"#,
    );
    let mut run = sandbox.runbook().args(["killed", "go", "--yes"]);
    run.cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = run.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sandbox.path().join("started").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    // SIGKILL cannot be caught: the step's own process is left to us to clean up.
    let _ = std::process::Command::new("pkill").args(["-f", "sleep 331.13"]).status();
    let id = run_id(&sandbox.journals().pop().unwrap_or_default());
    let history = sandbox.runbook().args(["history"]).output().success();
    assert!(history.stdout().contains("interrupted"), "{}", history.stdout());
    std::fs::write(sandbox.path().join("fast"), "").unwrap_or_else(|e| panic!("{e}"));
    sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    let log = std::fs::read_to_string(sandbox.path().join("ran.log")).unwrap_or_default();
    assert_eq!(log, "before\nslow-start\nslow-start\nafter\n");
}

#[test]
fn one_run_at_a_time_per_runbook_and_environment() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "locked.yaml",
        r#"runbook: locked
title: Locked
environments:
  blue: {vars: {name: blue}}
  green: {vars: {name: green}}
procedures:
  go:
    summary: Holds the lock for a while
    stages:
      - name: S
        steps:
          - id: hold
            run: [sh, -c, 'touch "started-$1"; sleep 3; echo done >> "done-$1"', x, "{{ vars.name }}"]
            timeout: 30s
"#,
    );
    let mut first = sandbox.runbook().args(["locked", "go", "--env", "blue", "--yes"]);
    first.cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut first = first.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sandbox.path().join("started-blue").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut other_env = sandbox.runbook().args(["locked", "go", "--env", "green", "--yes"]);
    other_env.cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut other_env = other_env.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));

    let started = Instant::now();
    let second = sandbox.runbook().args(["locked", "go", "--env", "blue", "--yes"]).output().status(2);
    // Refused at once, not after waiting for the holder (which runs for 3 s).
    assert!(started.elapsed() < Duration::from_secs(3), "refused at once");
    let first_id = sandbox
        .journals()
        .iter()
        .find(|j| std::fs::read_to_string(j).unwrap_or_default().contains(r#""environment":"blue""#))
        .map(|j| run_id(j))
        .unwrap_or_default();
    let stderr = second.stderr();
    assert!(stderr.contains(&first_id) && stderr.contains("pid") && stderr.contains("already running"), "{stderr}");

    assert_eq!(first.wait().ok().and_then(|s| s.code()), Some(0));
    assert_eq!(other_env.wait().ok().and_then(|s| s.code()), Some(0), "another environment runs alongside");
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("done-blue")).unwrap_or_default(),
        "done\n",
        "exactly one ran"
    );
    // The lock dies with its holder: the next run goes ahead.
    sandbox.runbook().args(["locked", "go", "--env", "blue", "--yes"]).output().success();
}

#[test]
fn a_secret_appears_in_no_output_and_no_record() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "canary.yaml",
        r#"runbook: canary
title: Canary
params:
  token: {type: string, secret: true}
procedures:
  go:
    summary: Uses secrets three ways, then fails echoing them
    params: [token]
    stages:
      - name: Gather
        steps:
          - id: pin
            prompt: "PIN?"
            secret: true
          - id: stored
            run: [cat, stored.txt]
            effect: read
            capture: text
            secret: true
      - name: Use
        steps:
          - id: use
            run: [sh, -c, 'cat > got.txt; echo "out $T"; echo "err $T" >&2; printf "%s" "$P" >> got.txt; echo "$S" >&2; echo "failing with $T $P $S" >&2; exit 7']
            stdin: "{{ params.token }}|"
            env: {T: "{{ params.token }}", P: "{{ steps.pin.output }}", S: "{{ steps.stored.output }}"}
            timeout: 5s
"#,
    );
    let canaries = ["param-canary-41c7", "pin-canary-77ab", "stored-canary-9d2e"];
    sandbox.file("secrets/../stored.txt", canaries[2]);
    let mut outputs = Vec::new();
    for format in ["human", "json"] {
        let out = sandbox
            .runbook()
            .env("RUNBOOK_PARAM_TOKEN", canaries[0])
            .args(["canary", "go", "--yes", "--answer", &format!("pin={}", canaries[1]), "--output", format])
            .output()
            .status(1);
        outputs.push(out.all());
    }
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("got.txt")).unwrap_or_default(),
        format!("{}|{}", canaries[0], canaries[1]),
        "the child got the secrets"
    );
    for journal in sandbox.journals() {
        outputs.push(std::fs::read_to_string(&journal).unwrap_or_default());
        let id = run_id(&journal);
        outputs.push(sandbox.runbook().args(["show", &id]).output().success().stdout());
        outputs.push(sandbox.runbook().args(["show", &id, "--format", "json"]).output().success().stdout());
    }
    outputs.push(sandbox.runbook().args(["history", "--format", "json"]).output().success().stdout());
    outputs.push(sandbox.runbook().args(["history"]).output().success().stdout());
    for text in &outputs {
        for canary in canaries {
            assert!(!text.contains(canary), "`{canary}` leaked into:\n{text}");
        }
    }
    assert!(
        outputs[0].contains("out ********") && outputs[0].contains("failing with ******** ******** ********"),
        "{}",
        outputs[0]
    );
}

#[test]
fn a_journal_cut_off_mid_record_is_still_readable() {
    let sandbox = Sandbox::new();
    sandbox.file("three.yaml", THREE);
    sandbox.runbook().args(["three", "go", "--yes"]).output().status(1);
    let journal = sandbox.journals().pop().unwrap_or_default();
    let mut text = std::fs::read_to_string(&journal).unwrap_or_default();
    text.push_str(r#"{"record":"event","ts":"2026-01-01T00:00:00Z","event":"step_sta"#);
    std::fs::write(&journal, text).unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox.runbook().args(["show", &run_id(&journal)]).output().success();
    assert!(out.stdout().contains("the last record was cut off"), "{}", out.stdout());
    sandbox.runbook().args(["history"]).output().success();
}

#[test]
fn runs_killed_at_random_points_leave_readable_journals() {
    // The full 1,000-run figure is scripts/bench/journal_durability.sh; here, a sample.
    let sandbox = Sandbox::new();
    sandbox.file("three.yaml", &THREE.replace("test -f fixed && ", ""));
    let mut delay_ms = 1u64;
    for _ in 0..12 {
        let mut run = sandbox.runbook().args(["three", "go", "--yes"]);
        run.cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = run.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        delay_ms = (delay_ms * 7 + 3) % 40;
    }
    for journal in sandbox.journals() {
        let out = sandbox.runbook().args(["show", &run_id(&journal)]).output();
        assert_eq!(out.code(), 0, "{}: {}", journal.display(), out.stderr());
    }
}

/// Issue 21: `show` numbers a stage of an included procedure inside the stage that includes
/// it (`stage 1.1`), not as its procedure's own `stage 1` after `stage 2`.
#[test]
fn show_numbers_included_stages_inside_the_including_stage() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "nest.yaml",
        r#"runbook: nest
title: Nest
procedures:
  inner:
    summary: Inner
    stages:
      - name: Inner one
        steps:
          - {id: i1, run: [echo, i1], effect: read}
  outer:
    summary: Outer
    stages:
      - name: First
        steps:
          - {id: o1, run: [echo, o1], effect: read}
      - name: Second
        steps:
          - {id: inc, include: inner}
          - {id: o2, run: [echo, o2], effect: read}
      - name: Third
        steps:
          - {id: o3, run: [echo, o3], effect: read}
"#,
    );
    sandbox.runbook().args(["nest", "outer", "--yes"]).output().success();
    let shown = sandbox.runbook().args(["show", &sandbox.last_run_id()]).output().success().stdout();
    let stages: Vec<&str> = shown
        .lines()
        .filter_map(|l| l.split_once("  stage ").map(|(_, s)| s.split(':').next().unwrap_or("")))
        .collect();
    assert_eq!(stages, ["1", "2", "2.1", "3"], "{shown}");
}

/// Issue 21: `show` never cuts a command inside a message (an assert's advice, an
/// `on_interrupt` note): the operator pastes it. Control characters are still escaped.
#[test]
fn show_keeps_a_long_quoted_command_whole() {
    let long = format!("gcloud sql instances delete {} --project=p", "x".repeat(150));
    let sandbox = Sandbox::new();
    sandbox.file(
        "advice.yaml",
        &format!(
            r#"runbook: advice
title: Advice
procedures:
  go:
    summary: Go
    stages:
      - name: S
        steps:
          - id: check
            assert: "false"
            message: "look first, then run `{long}` by hand"
"#
        ),
    );
    sandbox.runbook().args(["advice", "go", "--yes"]).output().status(1);
    let shown = sandbox.runbook().args(["show", &sandbox.last_run_id()]).output().status(0).stdout();
    assert!(shown.contains(&format!("`{long}` by hand")), "{shown}");
}
