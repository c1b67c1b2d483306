//! Issue 21: the way back is as safe as the way forward. Manual steps are acknowledged by a
//! person or say they were not; an undo whose manual step nobody did is not an undo done;
//! an edit at the failure menu goes through the asserts a first answer went through; one
//! status after an abandoned undo. Files on disk prove what ran.

use super::pty::{Pty, STAGE_QUESTION};
use crate::support::Sandbox;

/// A manual step between two changes; the clone's undo is a manual deletion.
const HANDS: &str = r#"
runbook: hands
procedures:
  go:
    stages:
      - name: Hands
        steps:
          - id: stop_rollout
            manual: Stop the rollout in the deploy tool.
          - id: clone
            run: [sh, -c, 'echo clone >> log.txt']
            timeout: 10s
            undo:
              id: delete_clone
              manual: Delete the clone by hand.
          - id: after
            run: [sh, -c, 'echo after >> log.txt']
            timeout: 10s
"#;

fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file("hands.yaml", HANDS);
    sandbox
}

fn log(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(sandbox.path().join("log.txt")).unwrap_or_default()
}

fn show(sandbox: &Sandbox, id: &str) -> String {
    sandbox.runbook().args(["show", id]).output().success().stdout()
}

/// `--yes` passes a manual step, and says so: never the `done` a person's acknowledgement
/// journals.
#[test]
fn yes_passes_a_manual_step_journaled_as_not_confirmed_by_a_person() {
    let sandbox = sandbox();
    let out = sandbox.runbook().args(["hands", "go", "--yes"]).output().success();
    assert!(out.stderr().contains("not confirmed by a person (--yes)"), "{}", out.stderr());
    let shown = show(&sandbox, &sandbox.last_run_id());
    assert!(shown.contains("done stop_rollout") && shown.contains("not confirmed by a person (--yes)"), "{shown}");
    assert!(!shown.contains("answered \"done\""), "{shown}");
}

/// `runbook undo --yes` does not tick off a manual undo step: the clone may still exist. The
/// run's status says the undo waits for a person, `show` says the undo waits for a person, and a later `runbook
/// undo` asks again.
#[test]
fn a_manual_undo_step_nobody_acknowledged_is_not_an_undo_done() {
    let sandbox = sandbox();
    sandbox.runbook().args(["hands", "go", "--yes"]).output().success();
    let id = sandbox.last_run_id();
    let out = sandbox.runbook().args(["undo", &id, "--yes"]).output();
    assert!(out.stderr().contains("waiting for a person"), "{}", out.stderr());
    assert!(!out.stderr().contains("undone: `clone`"), "{}", out.stderr());
    let shown = show(&sandbox, &id);
    assert!(shown.contains("status: undo waiting for a person"), "{shown}");
    assert!(shown.contains("continue the undo with: runbook undo"), "{shown}");
    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success().stdout();
    assert!(history.contains("\"undo waiting for a person\""), "{history}");

    // A person acknowledges it at a terminal: now the clone's undo is done.
    let mut pty = Pty::spawn(&sandbox, &["undo", &id]);
    pty.expect("Run stage `undo of clone`?");
    pty.answer("y");
    pty.expect("Delete the clone by hand.");
    pty.expect("Type `done` when finished");
    pty.answer("done");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    let shown = show(&sandbox, &id);
    assert!(shown.contains("undo of clone done: undone"), "{shown}");
    // `after` has no `undo:`: it remains, as before.
    assert!(shown.contains("status: partly undone"), "{shown}");
}

/// `q` at a manual step stops the run: aborted (exit 3), not failed, no failure menu, and
/// resumable at that step.
#[test]
fn q_at_a_manual_step_stops_the_run_aborted_and_resumable() {
    let sandbox = sandbox();
    let mut pty = Pty::spawn(&sandbox, &["hands", "go"]);
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("Stop the rollout in the deploy tool.");
    pty.expect("`not needed` if it does not apply");
    pty.answer("q");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "{transcript}");
    assert!(!transcript.contains("[r]etry"), "no failure menu for a stop\n{transcript}");
    assert_eq!(log(&sandbox), "", "nothing after the manual step ran");
    let id = sandbox.last_run_id();
    let shown = show(&sandbox, &id);
    assert!(shown.contains("status: aborted"), "{shown}");
    assert!(shown.contains("continue it with: runbook resume"), "{shown}");
    let mut pty = Pty::spawn(&sandbox, &["resume", &id]);
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("Stop the rollout in the deploy tool.");
    pty.answer("not needed");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(log(&sandbox), "clone\nafter\n");
    assert!(show(&sandbox, &id).contains("answered \"not needed\""));
}

/// An approved plan confirms the stages, not the manual work: `apply` at a terminal stops at
/// each manual step until a person acknowledges it.
#[test]
fn apply_at_a_terminal_stops_at_each_manual_step() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "hands.yaml",
        &HANDS.replace(
            "runbook: hands\n",
            "runbook: hands\nenvironments:\n  production:\n    approvals: 1\n    vars: {}\n",
        ),
    );
    let as_user = |who: &str| sandbox.runbook().env("CLOUDSDK_CORE_ACCOUNT", who);
    as_user("a@x").args(["hands", "go", "--env", "production", "--save-plan", "go.plan"]).output().success();
    let text = std::fs::read_to_string(sandbox.path().join("go.plan")).unwrap_or_default();
    let id = text.lines().next().and_then(|l| l.strip_prefix("runbook plan ")).unwrap_or_default().to_owned();
    as_user("b@x").args(["approve", "go.plan", "--plan-id", &id[..8]]).output().success();
    let mut pty = Pty::spawn_with(&sandbox, &["apply", "go.plan"], &[("CLOUDSDK_CORE_ACCOUNT", "a@x")]);
    pty.expect("Stop the rollout in the deploy tool.");
    pty.expect("Type `done` when finished");
    assert_eq!(log(&sandbox), "", "apply waits at the manual step\n{}", pty.transcript());
    pty.answer("done");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(log(&sandbox), "clone\nafter\n");
    let shown = show(&sandbox, &sandbox.last_run_id());
    assert!(shown.contains("answered \"done\""), "{shown}");
}

/// The revision that serves now is `rev-bad`; the assert refuses it as the target.
const TRAFFIC: &str = r#"
runbook: traffic
procedures:
  go:
    stages:
      - name: Pick
        steps:
          - id: serving
            run: [echo, rev-bad]
            effect: read
            capture: text
          - id: previous_revision
            prompt: Revision to send traffic to
          - id: not_the_serving_revision
            assert: "steps.previous_revision.output != (steps.serving.output | trim)"
            message: the chosen revision is the one serving now
      - name: Switch
        steps:
          - id: update_traffic
            run: [sh, -c, 'echo "$1" >> traffic.txt; test -e ok', x, "{{ steps.previous_revision.output }}"]
            timeout: 10s
"#;

/// `traffic go` at a terminal, `rev-other` picked, stopped at the failure menu of the update.
fn traffic_update_failed() -> (Sandbox, Pty) {
    let sandbox = Sandbox::new();
    sandbox.file("traffic.yaml", TRAFFIC);
    let mut pty = Pty::spawn(&sandbox, &["traffic", "go"]);
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("Revision to send traffic to");
    pty.answer("rev-other");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("`update_traffic` failed: [r]etry");
    (sandbox, pty)
}

/// The failure menu's edit is checked like a first answer: picking the serving revision
/// after a failed traffic update is refused by the assert before anything runs with it, and
/// an accepted edit shows the changed command and asks before it runs.
#[test]
fn an_edit_at_the_failure_menu_goes_through_the_asserts_and_is_confirmed() {
    let (sandbox, mut pty) = traffic_update_failed();
    pty.answer("e");
    pty.expect("Revision to send traffic to");
    pty.answer("rev-bad");
    pty.expect("the chosen revision is the one serving now");
    pty.expect("`not_the_serving_revision` failed: [r]etry");
    pty.answer("a");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "{transcript}");
    let traffic = std::fs::read_to_string(sandbox.path().join("traffic.txt")).unwrap_or_default();
    assert_eq!(traffic, "rev-other\n", "nothing ran with the refused answer\n{transcript}");

    // An edit the assert accepts: the changed command is shown and confirmed first.
    let (sandbox, mut pty) = traffic_update_failed();
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("{e}"));
    pty.answer("e");
    pty.expect("Revision to send traffic to");
    pty.answer("rev-good");
    pty.expect("x rev-good");
    pty.expect("Run `update_traffic` with this command?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    let traffic = std::fs::read_to_string(sandbox.path().join("traffic.txt")).unwrap_or_default();
    assert_eq!(traffic, "rev-other\nrev-good\n", "{transcript}");
}

/// `one` can be undone; `boom` fails until `fixed` exists.
const ABANDON: &str = r#"
runbook: abandon
procedures:
  go:
    stages:
      - name: change
        steps:
          - id: one
            run: [sh, -c, 'echo one >> log.txt']
            timeout: 10s
            undo:
              id: one_undo
              run: [sh, -c, 'echo one_undo >> log.txt']
              timeout: 10s
          - id: boom
            run: [sh, -c, 'test -e fixed']
            timeout: 10s
"#;

/// An undo abandoned at its first step, then a resume to the end: the rollback is done —
/// in `history` and `show` alike — and nothing suggests undoing it.
#[test]
fn an_abandoned_undo_then_a_resume_to_the_end_is_done() {
    let sandbox = Sandbox::new();
    sandbox.file("abandon.yaml", ABANDON);
    let mut pty = Pty::spawn(&sandbox, &["abandon", "go"]);
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("[u]ndo this run's changes");
    pty.answer("u");
    pty.expect("Run stage `undo of one`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("n");
    let (code, transcript) = pty.finish();
    assert_ne!(code, 0, "{transcript}");
    assert_eq!(log(&sandbox), "one\n", "nothing was undone\n{transcript}");
    let id = sandbox.last_run_id();
    std::fs::write(sandbox.path().join("fixed"), "").unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    assert!(out.stderr().contains("done"), "{}", out.stderr());
    let shown = show(&sandbox, &id);
    assert!(shown.ends_with("status: done\n"), "{shown}");
    assert!(!shown.contains("runbook undo"), "a finished rollback is not offered its undo\n{shown}");
    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success().stdout();
    let runs: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
    assert_eq!(runs[0]["status"], "done", "{history}");
    assert_eq!(log(&sandbox), "one\n");
}

/// `set` knows when its effect already holds (`done_if` over what `state` reads).
const ALREADY: &str = r#"
runbook: already
procedures:
  go:
    stages:
      - name: Change
        steps:
          - id: state
            run: [cat, state.txt]
            effect: read
            capture: text
          - id: set
            run: [sh, -c, 'echo new > state.txt; echo set >> log.txt']
            done_if: "steps.state.output | trim == 'new'"
            timeout: 10s
          - id: check
            run: [sh, -c, 'test -e fixed']
            timeout: 10s
"#;

/// A mutating step whose `done_if` holds is journaled as already done and not run again:
/// after `--from` (the read it names is read again first), and `--dry-run --probe` says so.
#[test]
fn a_step_whose_effect_already_holds_is_not_run_again() {
    let sandbox = Sandbox::new();
    sandbox.file("already.yaml", ALREADY);
    sandbox.file("./state.txt", "old\n");
    let probe = sandbox.runbook().args(["already", "go", "--dry-run", "--probe"]).output().success();
    assert!(probe.stdout().contains("WOULD CHANGE: done_if"), "{}", probe.stdout());
    sandbox.runbook().args(["already", "go", "--yes"]).output().status(1);
    assert_eq!(log(&sandbox), "set\n");
    let id = sandbox.last_run_id();
    std::fs::write(sandbox.path().join("fixed"), "").unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--from", "set"]).output().success();
    assert_eq!(log(&sandbox), "set\n", "not run twice: {}", out.stderr());
    assert!(
        out.stderr().contains("already done: `done_if: steps.state.output | trim == 'new'` holds"),
        "{}",
        out.stderr()
    );
    let shown = show(&sandbox, &id);
    assert!(shown.contains("already done") && shown.contains("read again: `state`"), "{shown}");
    let probe = sandbox.runbook().args(["already", "go", "--dry-run", "--probe"]).output().success();
    assert!(probe.stdout().contains("ALREADY DONE: done_if"), "{}", probe.stdout());
}

/// `done_if` belongs on a step that changes something, and its expression is checked.
#[test]
fn done_if_is_checked_with_its_position() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "bad.yaml",
        "runbook: bad\nprocedures:\n  go:\n    stages:\n      - name: s\n        steps:\n          - id: r\n            run: [echo]\n            effect: read\n            done_if: \"true\"\n          - id: m\n            run: [echo]\n            done_if: \"steps.later.output == 'x'\"\n          - id: later\n            run: [echo]\n            effect: read\n            capture: text\n",
    );
    let out = sandbox.runbook().args(["validate", "runbooks/bad.yaml"]).output().status(1);
    let stderr = out.stdout() + &out.stderr();
    assert!(
        stderr.contains("bad.yaml:10:22") && stderr.contains("`done_if` is for a step that changes something"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.yaml:13:23") && stderr.contains("step `later` has not run yet when step `m` runs"),
        "{stderr}"
    );
}

/// `make` does not read the answer; the assert and `use` do.
const REANSWER: &str = r#"
runbook: reanswer
procedures:
  go:
    stages:
      - name: Work
        steps:
          - id: pick
            prompt: Which revision?
          - id: not_bad
            assert: "steps.pick.output != 'bad'"
            message: "`bad` is the revision serving now"
          - id: make
            run: [sh, -c, 'echo make >> log.txt']
            timeout: 10s
          - id: use
            run: [sh, -c, 'echo "use $1" >> log.txt; test -e fixed', x, "{{ steps.pick.output }}"]
            timeout: 10s
"#;

/// `resume --answer` checks the new value like a first one: the assert that reads it runs
/// again before anything uses it, and only the steps that read it run again — a change that
/// does not (a clone already made) is not made twice.
#[test]
fn resume_with_a_changed_answer_rechecks_its_asserts_and_reruns_only_what_reads_it() {
    let sandbox = Sandbox::new();
    sandbox.file("reanswer.yaml", REANSWER);
    sandbox.runbook().args(["reanswer", "go", "--yes", "--answer", "pick=a"]).output().status(1);
    assert_eq!(log(&sandbox), "make\nuse a\n");
    let id = sandbox.last_run_id();
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--answer", "pick=bad"]).output().status(1);
    assert!(out.stderr().contains("`bad` is the revision serving now"), "{}", out.stderr());
    assert_eq!(log(&sandbox), "make\nuse a\n", "nothing ran with the refused answer");
    std::fs::write(sandbox.path().join("fixed"), "").unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--answer", "pick=b"]).output();
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(log(&sandbox), "make\nuse a\nuse b\n", "`make` ran once: {}", out.stderr());
}

/// The undo reads a field the API left out (`latestRevision` is sent only when true).
const UNDO_EARLY: &str = r#"
runbook: early
procedures:
  go:
    stages:
      - name: Switch
        steps:
          - id: service
            run: [echo, '{"traffic": [{"revisionName": "rev-1", "percent": 100}]}']
            effect: read
            capture: json
          - id: switch
            run: [sh, -c, 'echo switched >> log.txt']
            timeout: 10s
            undo:
              id: route_back
              run: [echo, "{% for t in steps.service.json.traffic %}{{ 'LATEST' if t.latestRevision else t.revisionName }}{% endfor %}"]
              timeout: 10s
"#;

/// Issue 24: an undo that could not be rendered is found before the change it would undo,
/// named with its file:line:col and the missing value — not when the undo is needed.
#[test]
fn an_undo_that_cannot_be_rendered_stops_the_change_before_it_is_made() {
    let sandbox = Sandbox::new();
    sandbox.file("early.yaml", UNDO_EARLY);
    let out = sandbox.runbook().args(["early", "go", "--yes"]).output().status(1);
    let stderr = out.stderr();
    assert!(stderr.contains("its undo step `route_back` could not be rendered"), "{stderr}");
    assert!(stderr.contains("early.yaml:17:69") && stderr.contains("`t.latestRevision` is undefined"), "{stderr}");
    assert_eq!(log(&sandbox), "", "the change was not made");
}

/// `lock break NAME` when only the rehearsal lock of NAME is held names that one.
#[test]
fn breaking_a_free_lock_points_at_the_held_rehearsal_lock() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "slow.yaml",
        "runbook: slow\nprocedures:\n  go:\n    stages:\n      - name: s\n        steps:\n          - id: wait\n            run: [sh, -c, 'touch started; sleep 5']\n            timeout: 30s\n",
    );
    let mut run = sandbox.runbook().args(["slow", "go", "--simulate", "--yes"]).cmd;
    run.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = run.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !sandbox.path().join("started").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out =
        sandbox.runbook().args(["lock", "break", "slow", "--reason", "x", "--confirm", "slow"]).output().status(2);
    // SIGTERM: the run ends its step's process group, as on an operator's Ctrl-C.
    crate::support::signal(child.id(), "TERM");
    let _ = child.wait();
    assert!(out.stderr().contains("`slow` is not locked"), "{}", out.stderr());
    assert!(out.stderr().contains("the rehearsal lock `slow.rehearsal` is held"), "{}", out.stderr());
    assert!(out.stderr().contains("runbook lock break slow.rehearsal"), "{}", out.stderr());
}

/// Issue 21: a program a later step runs (the verify stage's smoke script) is checked before
/// the first change — not found missing after the database was cloned.
#[test]
fn a_missing_program_of_a_later_step_is_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    let ts = crate::support::recent_timestamp();
    let out = sandbox
        .runbook()
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--simulate", "--yes"])
        .args(["--confirm-env", "production", "--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .status(2);
    let stderr = out.stderr();
    assert!(
        stderr.contains(
            "step `smoke_worker_queue` runs `./scripts/smoke_worker_queue.sh`, which is not an executable file"
        ),
        "{stderr}"
    );
    assert!(sandbox.journals().is_empty(), "nothing started");
}
