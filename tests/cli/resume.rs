//! `runbook resume` that always leads somewhere (issue 11): replaced answers, `--from`,
//! `restarts_from:`, answers of earlier attempts reused, finished stages "done in an earlier
//! attempt". Every test drives the real binary without a terminal (the PTY ones are in pty.rs).

use crate::support::{Run, Sandbox};

pub const RUNBOOK: &str = r#"
runbook: r
procedures:
  prep:
    stages:
      - name: Prep
        steps:
          - id: note
            manual: Write down the time.
          - id: ticket
            prompt: Ticket id?
            pattern: '^[A-Z]+-[0-9]+$'
  go:
    stages:
      - name: Wrapper
        steps:
          - id: go_prep
            include: prep
      - name: First
        steps:
          - id: before
            shell: echo before >> log
            timeout: 10s
          - id: choice
            prompt: Which one?
            pattern: '^[a-z]+$'
      - name: Second
        steps:
          - id: use
            shell: 'echo "use $1 $2" >> log; test "$1" = good'
            args: ["{{ steps.choice.output }}", "{{ steps.ticket.output }}"]
            timeout: 10s
  op:
    stages:
      - name: Operation
        steps:
          - id: start
            shell: 'n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo "start op$n" >> log; echo "op$n"'
            capture: text
            timeout: 10s
          - id: wait
            restarts_from: start
            shell: 'echo "wait $1" >> log; test -e "ok-$1"'
            args: ["{{ steps.start.output }}"]
            effect: read
            timeout: 10s
  secret:
    stages:
      - name: Token
        steps:
          - id: token
            prompt: Token?
            secret: true
          - id: use_token
            shell: 'echo used >> log; test "$TOKEN" = "$(cat expected)"'
            env:
              TOKEN: "{{ steps.token.output }}"
            timeout: 10s
"#;

fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file("r.yaml", RUNBOOK);
    sandbox
}

fn log(sandbox: &Sandbox) -> Vec<String> {
    std::fs::read_to_string(sandbox.path().join("log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn journal(sandbox: &Sandbox) -> String {
    sandbox.journals().iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
}

/// The first attempt of `go`: ticket and choice answered, `use` fails on `bad`.
fn failed_go(sandbox: &Sandbox) -> String {
    sandbox
        .runbook()
        .args(["r", "go", "--yes", "--answer", "ticket=OPS-1", "--answer", "choice=bad"])
        .output()
        .status(1);
    sandbox.last_run_id()
}

#[test]
fn an_answer_replaced_twice_reruns_the_prompt_and_every_later_step_but_not_the_earlier_ones() {
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    sandbox.runbook().args(["resume", &id, "--yes", "--answer", "choice=other"]).output().status(1);
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--answer", "choice=good"]).output().success();
    assert_eq!(log(&sandbox), ["before", "use bad OPS-1", "use other OPS-1", "use good OPS-1"], "{}", out.stderr());
    assert!(out.stderr().contains("answer to choice replaced by"), "{}", out.stderr());
    let show = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(show.contains(r#"answer to choice replaced by"#), "{show}");
    assert!(show.contains(r#""bad" → "other""#) && show.contains(r#""other" → "good""#), "{show}");
    assert!(show.contains("resume starts again at step choice"), "{show}");
    // Who made the change is journaled with it.
    let events: Vec<serde_json::Value> =
        journal(&sandbox).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let replaced: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "answer_replaced").collect();
    assert_eq!(replaced.len(), 2);
    assert!(replaced.iter().all(|e| e["by"].as_str().is_some_and(|by| !by.is_empty())), "{replaced:?}");
}

#[test]
fn the_same_answer_given_again_on_resume_replaces_nothing() {
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    sandbox.runbook().args(["resume", &id, "--yes", "--answer", "choice=bad"]).output().status(1);
    assert_eq!(log(&sandbox), ["before", "use bad OPS-1", "use bad OPS-1"]);
    assert!(!journal(&sandbox).contains("answer_replaced"));
}

#[test]
fn a_replaced_answer_refused_by_the_prompts_check_exits_2_and_runs_nothing() {
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--answer", "choice=NOT-lower"]).output().status(2);
    assert!(out.stderr().contains("choice"), "{}", out.stderr());
    assert_eq!(log(&sandbox), ["before", "use bad OPS-1"]);
}

#[test]
fn resume_without_a_terminal_reuses_answers_and_acknowledgements_of_earlier_attempts() {
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    // --from before the prompts: they run again, answered from the journal, never asked.
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--from", "note"]).output().status(1);
    assert!(!out.stderr().contains("--answer ticket") && !out.stderr().contains("--answer choice"), "{}", out.stderr());
    assert_eq!(log(&sandbox), ["before", "use bad OPS-1", "before", "use bad OPS-1"]);
}

#[test]
fn resume_from_restarts_at_a_finished_step_and_refuses_unknown_and_unreached_steps() {
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    let unknown = sandbox.runbook().args(["resume", &id, "--yes", "--from", "nope"]).output().status(2);
    assert!(unknown.stderr().contains("no step `nope`"), "{}", unknown.stderr());
    assert!(unknown.stderr().contains("note, ticket, before, choice"), "{}", unknown.stderr());
    // A step of another procedure is not in this run.
    let other = sandbox.runbook().args(["resume", &id, "--yes", "--from", "start"]).output().status(2);
    assert!(other.stderr().contains("no step `start`"), "{}", other.stderr());
    let unreached = sandbox.runbook().args(["resume", &id, "--yes", "--from", "use"]).output().status(2);
    assert!(unreached.stderr().contains("`use` has not finished"), "{}", unreached.stderr());
    // Without a terminal, a restart is confirmed with --yes.
    let unconfirmed = sandbox.runbook().args(["resume", &id, "--from", "before"]).output().status(2);
    assert!(unconfirmed.stderr().contains("--yes"), "{}", unconfirmed.stderr());
    assert_eq!(log(&sandbox), ["before", "use bad OPS-1"], "a refused --from ran something");
    sandbox.runbook().args(["resume", &id, "--yes", "--from", "before", "--answer", "choice=good"]).output().success();
    assert_eq!(log(&sandbox), ["before", "use bad OPS-1", "before", "use good OPS-1"]);
    let show = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(show.contains("resume starts again at step before"), "{show}");
    assert!(show.contains("--from before"), "{show}");
}

#[test]
fn finished_stages_are_done_in_an_earlier_attempt_never_skipped_in_terminal_and_json() {
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    let out = sandbox.runbook().args(["resume", &id, "--yes"]).output().status(1);
    assert!(out.stderr().contains("Stage done in an earlier attempt: Wrapper"), "{}", out.stderr());
    assert!(out.stderr().contains("Stage done in an earlier attempt: First"), "{}", out.stderr());
    assert!(!out.stderr().to_lowercase().contains("skipped:"), "{}", out.stderr());
    let json = sandbox.runbook().args(["resume", &id, "--yes", "--output", "json"]).output().status(1).stdout();
    let events: Vec<serde_json::Value> = json.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let done: Vec<&str> =
        events.iter().filter(|e| e["event"] == "stage_done_earlier").filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(done, ["Wrapper", "First"], "{json}");
    assert!(!json.contains("stage_skipped"), "{json}");
    let show = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(show.contains("stage done in an earlier attempt: Wrapper"), "{show}");
}

#[test]
fn a_failed_wait_restarts_from_the_step_that_started_its_operation() {
    let sandbox = sandbox();
    sandbox.runbook().args(["r", "op", "--yes"]).output().status(1);
    let id = sandbox.last_run_id();
    std::fs::write(sandbox.path().join("ok-op2"), "").unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(log(&sandbox), ["start op1", "wait op1", "start op2", "wait op2"], "{}", out.stderr());
    assert!(out.stderr().contains("resume starts again at step start"), "{}", out.stderr());
}

#[test]
fn an_interrupted_or_timed_out_wait_is_not_a_failed_operation() {
    let sandbox = sandbox();
    sandbox.file(
        "t.yaml",
        r#"
runbook: t
procedures:
  op:
    stages:
      - name: Operation
        steps:
          - id: start
            shell: 'echo start >> log'
            timeout: 10s
          - id: wait
            restarts_from: start
            shell: 'echo wait >> log; test -e ok || sleep 5'
            effect: read
            timeout: 1s
"#,
    );
    sandbox.runbook().args(["t", "op", "--yes"]).output().status(1);
    let id = sandbox.last_run_id();
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("{e}"));
    sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(log(&sandbox), ["start", "wait", "wait"], "a timed-out wait started the operation again");
}

#[test]
fn a_secret_answer_is_never_journaled_and_must_be_given_again_on_resume() {
    let sandbox = sandbox();
    let wrong = "wrong-token-value-1";
    let right = "right-token-value-123";
    std::fs::write(sandbox.path().join("expected"), right).unwrap_or_else(|e| panic!("{e}"));
    sandbox.runbook().args(["r", "secret", "--yes", "--answer", &format!("token={wrong}")]).output().status(1);
    let id = sandbox.last_run_id();
    let refused = sandbox.runbook().args(["resume", &id, "--yes"]).output().status(2);
    assert!(refused.stderr().contains("step `token` is a secret prompt"), "{}", refused.stderr());
    assert!(refused.stderr().contains("--answer token=VALUE"), "{}", refused.stderr());
    let out =
        sandbox.runbook().args(["resume", &id, "--yes", "--answer", &format!("token={right}")]).output().success();
    let show = sandbox.runbook().args(["show", &id]).output().success().all();
    for text in [out.all(), refused.all(), show, journal(&sandbox)] {
        assert!(!text.contains(wrong) && !text.contains(right), "a secret answer was shown: {text}");
    }
    assert_eq!(log(&sandbox), ["used", "used"]);
}

#[test]
fn restarts_from_must_name_an_earlier_step_of_the_same_procedure() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "bad.yaml",
        r#"
runbook: bad
procedures:
  other:
    stages:
      - name: O
        steps:
          - id: elsewhere
            shell: 'true'
            timeout: 10s
  p:
    stages:
      - name: S
        steps:
          - id: a
            shell: 'true'
            timeout: 10s
            restarts_from: b
          - id: b
            shell: 'true'
            timeout: 10s
            restarts_from: elsewhere
"#,
    );
    let out = sandbox.runbook().args(["validate", "runbooks/bad.yaml"]).output().status(1);
    let text = out.all();
    assert!(text.contains("step `a` restarts from `b`, which is not an earlier step of procedure `p`"), "{text}");
    assert!(text.contains("bad.yaml:18:28"), "{text}");
    assert!(text.contains("step `b` restarts from `elsewhere`"), "{text}");
    assert!(text.contains("steps before it in procedure `p`: a"), "{text}");
}

/// A mistyped `--from` with control characters or of 10 KB is refused (exit 2) and shown
/// escaped and cut, never raw.
#[test]
fn a_from_with_control_characters_or_huge_is_refused_and_shown_escaped() {
    let sandbox = Sandbox::new();
    sandbox.file("waits.yaml", "runbook: w\nprocedures:\n  go:\n    stages:\n      - name: s\n        steps:\n          - id: one\n            shell: 'echo one'\n            timeout: 5s\n          - id: two\n            shell: 'exit 1'\n            timeout: 5s\n");
    Run::new(sandbox.path()).args(["w", "go", "--yes"]).output().status(1);
    let id = sandbox.last_run_id();
    let out =
        Run::new(sandbox.path()).args(["resume", &id, "--yes", "--from", "o\u{1}n\u{1b}[31me"]).output().status(2);
    assert!(!out.stderr().contains('\u{1}') && !out.stderr().contains('\u{1b}'), "{:?}", out.stderr());
    assert!(out.stderr().contains("there is no step"), "{}", out.stderr());
    let huge = "a".repeat(10_000);
    let out = Run::new(sandbox.path()).args(["resume", &id, "--yes", "--from", &huge]).output().status(2);
    assert!(out.stderr().len() < 1_000, "{}", out.stderr().len());
}

#[test]
fn resume_from_a_step_of_an_included_procedure_restarts_there() {
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    // `ticket` is in `prep`, included by `go`: it is asked again (given here), then every
    // later step runs again.
    let out = sandbox
        .runbook()
        .args(["resume", &id, "--yes", "--from", "ticket", "--answer", "ticket=OPS-2", "--answer", "choice=good"])
        .output()
        .success();
    assert_eq!(log(&sandbox), ["before", "use bad OPS-1", "before", "use good OPS-2"], "{}", out.stderr());
}

#[test]
fn resume_with_unknown_or_invalid_ids_exits_2_naming_them_without_a_panic() {
    use std::os::unix::ffi::OsStrExt as _;
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--answer", "nope\u{1b}[31m=1"]).output().status(2);
    assert!(out.stderr().contains(r"no prompt or manual step `nope\u{1b}[31m`"), "{}", out.stderr());
    assert!(!out.stderr().contains('\u{1b}'), "{:?}", out.stderr());
    // The prompts and manual steps that exist are listed.
    assert!(out.stderr().contains("it has: note, ticket, choice"), "{}", out.stderr());
    for flag in ["--from", "--answer"] {
        let bad = std::ffi::OsStr::from_bytes(b"ch\xffoice=x");
        let out = sandbox.runbook().args([std::ffi::OsStr::new("resume"), std::ffi::OsStr::new(&id)]).args([
            std::ffi::OsStr::new("--yes"),
            std::ffi::OsStr::new(flag),
            bad,
        ]);
        let out = out.output().status(2);
        assert!(
            out.stderr().contains("not valid UTF-8") && out.stderr().contains(&format!("`{flag}`")),
            "{}",
            out.stderr()
        );
        assert!(!out.stderr().contains("oice=x"), "the bytes were echoed: {}", out.stderr());
    }
    assert_eq!(log(&sandbox), ["before", "use bad OPS-1"]);
}

#[test]
fn show_marks_a_decision_replaced_by_resume_answer() {
    let sandbox = sandbox();
    let id = failed_go(&sandbox);
    sandbox.runbook().args(["resume", &id, "--yes", "--answer", "choice=good"]).output().success();
    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    let decisions: Vec<&str> = shown.lines().skip_while(|l| *l != "decisions:").collect();
    assert!(
        decisions
            .iter()
            .any(|l| l.starts_with("  choice: bad — replaced at ") && l.ends_with(r#"(resume --answer): "good""#)),
        "{shown}"
    );
    assert!(decisions.contains(&"  choice: good"), "{shown}");
    assert!(decisions.contains(&"  ticket: OPS-1"), "an answer kept is not marked\n{shown}");
}
