//! Issue 11: the failure menu at a real terminal (retry, edit an answer and retry, skip with
//! a reason, undo, abort, Ctrl-C), and its absence without one. Files on disk prove what ran.

use super::pty::{Pty, STAGE_QUESTION};
use crate::support::Sandbox;

const MENU: &str = "failed: [r]etry";

/// `flaky` fails the first time (no marker yet) and succeeds after; `uses` reads its output.
const FLAKY: &str = r#"
runbook: flaky
procedures:
  go:
    stages:
      - name: Work
        steps:
          - id: flaky
            run: [sh, -c, 'if [ -e marker ]; then echo fine; else touch marker; echo broken >&2; exit 4; fi']
            capture: text
            timeout: 10s
          - id: uses
            run: [sh, -c, 'echo "$1" >> used.txt', x, "{{ steps.flaky.output | trim }}"]
            timeout: 10s
          - id: last
            run: [sh, -c, 'echo last >> log.txt']
            timeout: 10s
"#;

/// A prompt the failing step reads directly: only the backup `good` restores.
const RESTORE: &str = r#"
runbook: restore
procedures:
  go:
    stages:
      - name: Pick
        steps:
          - id: backup_id
            prompt: Backup to restore
      - name: Restore
        steps:
          - id: restore
            run: [sh, -c, 'echo "$1" >> tried.txt; test "$1" = good', x, "{{ steps.backup_id.output }}"]
            timeout: 10s
"#;

const SECRET: &str = r#"
runbook: secret
procedures:
  go:
    stages:
      - name: Ask
        steps:
          - id: pw
            prompt: Database password
            secret: true
          - id: use_pw
            run: [sh, -c, 'cat > got.txt; grep -q second got.txt']
            stdin: "{{ steps.pw.output }}"
            timeout: 10s
"#;

fn sandbox(name: &str, text: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file(&format!("{name}.yaml"), text);
    sandbox
}

fn file(sandbox: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(sandbox.path().join(name)).unwrap_or_default()
}

fn journal(sandbox: &Sandbox) -> String {
    sandbox.journals().iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
}

fn show(sandbox: &Sandbox) -> String {
    let id = sandbox.last_run_id();
    sandbox.runbook().args(["show", &id]).output().stdout()
}

/// Starts `runbook NAME go` at a terminal and confirms the first stage.
fn started(sandbox: &Sandbox, name: &str) -> Pty {
    let mut pty = Pty::spawn(sandbox, &[name, "go"]);
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty
}

#[test]
fn retry_at_the_failure_menu_runs_the_step_again_and_garbage_is_asked_again() {
    let sandbox = sandbox("flaky", FLAKY);
    let mut pty = started(&sandbox, "flaky");
    pty.expect(MENU);
    pty.answer("bogus \u{1b}[A ü");
    pty.expect("Please answer one of");
    pty.expect(MENU);
    pty.answer("r");
    // `uses` was shown with a placeholder: now known, it is confirmed before it runs.
    pty.expect("$ sh -c 'echo \"$1\" >> used.txt' x fine");
    pty.expect("Run `uses` with this command?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(file(&sandbox, "used.txt"), "fine\n", "{transcript}");
    assert_eq!(file(&sandbox, "log.txt"), "last\n", "{transcript}");
    let shown = show(&sandbox);
    assert!(shown.contains("failure menu: retry `flaky`"), "{shown}");
    assert!(shown.contains("status: done"), "{shown}");
    assert!(journal(&sandbox).contains(r#""choice":"retry""#));
}

#[test]
fn edit_at_the_failure_menu_asks_the_prompt_again_and_retries_with_the_new_answer() {
    let sandbox = sandbox("restore", RESTORE);
    let mut pty = started(&sandbox, "restore");
    pty.expect("Backup to restore");
    pty.answer("bad");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("[e]dit an answer and retry");
    pty.answer("e");
    pty.expect("Backup to restore");
    pty.answer("good");
    // Issue 21: the changed command is shown and confirmed before it runs.
    pty.expect("$ sh -c 'echo \"$1\" >> tried.txt; test \"$1\" = good' x good");
    pty.expect("Run `restore` with this command?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(file(&sandbox, "tried.txt"), "bad\ngood\n", "{transcript}");
    let shown = show(&sandbox);
    assert!(shown.contains(r#"answered "bad""#) && shown.contains(r#"answered "good""#), "{shown}");
    assert!(shown.contains(r#"answer `backup_id` changed to "good", then retry `restore`"#), "{shown}");
    assert!(shown.contains("(by "), "who chose is journaled\n{shown}");
    // The replaced decision is marked, the new one is not.
    let decisions: Vec<&str> = shown.lines().skip_while(|l| *l != "decisions:").collect();
    assert!(
        decisions
            .iter()
            .any(|l| l.starts_with("  backup_id: bad — replaced at ") && l.ends_with(r#"(failure menu): "good""#)),
        "{shown}"
    );
    assert!(decisions.contains(&"  backup_id: good"), "{shown}");
}

#[test]
fn a_secret_answer_edited_at_the_failure_menu_is_never_shown_nor_journaled() {
    const FIRST: &str = "hunter2-first-try";
    const SECOND: &str = "hunter2-second-try";
    let sandbox = sandbox("secret", SECRET);
    let mut pty = started(&sandbox, "secret");
    pty.expect("Database password");
    pty.answer(FIRST);
    pty.expect("[e]dit an answer and retry");
    pty.answer("e");
    pty.expect("Database password");
    pty.answer(SECOND);
    pty.expect("Run `use_pw` with this command?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(file(&sandbox, "got.txt"), SECOND, "{transcript}");
    let journal = journal(&sandbox);
    let shown = show(&sandbox);
    for text in [&transcript, &journal, &shown] {
        assert!(!text.contains("hunter2"), "a secret leaked:\n{text}");
    }
    assert!(shown.contains("answer `pw` changed to \"********\""), "{shown}");
}

#[test]
fn skip_needs_a_reason_and_a_step_using_the_skipped_output_fails_clearly() {
    let sandbox = sandbox("flaky", FLAKY);
    let mut pty = started(&sandbox, "flaky");
    pty.expect(MENU);
    pty.answer("s");
    pty.expect("Why skip `flaky`?");
    pty.answer("   ");
    pty.expect("A reason is required");
    pty.expect("Why skip `flaky`?");
    pty.answer("checked by hand: ok");
    // `uses` reads the skipped step's output: it fails with a reason, not a panic.
    pty.expect("skipped at the failure menu");
    pty.expect("`uses` failed: [r]etry");
    pty.answer("s");
    pty.expect("Why skip `uses`?");
    pty.answer("nothing to use");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(file(&sandbox, "log.txt"), "last\n", "the run went on\n{transcript}");
    assert!(!transcript.contains("panicked"), "{transcript}");
    let shown = show(&sandbox);
    assert!(shown.contains("skip `flaky`: checked by hand: ok"), "{shown}");
    assert!(shown.contains("skip `uses`: nothing to use"), "{shown}");
}

#[test]
fn abort_at_the_failure_menu_exits_3_and_resume_finishes_the_run() {
    let sandbox = sandbox("flaky", FLAKY);
    let mut pty = started(&sandbox, "flaky");
    pty.expect(MENU);
    pty.answer("a");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "{transcript}");
    assert!(!sandbox.path().join("log.txt").exists(), "{transcript}");
    assert!(show(&sandbox).contains("failure menu: abort after `flaky` failed"));
    let id = sandbox.last_run_id();
    sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(file(&sandbox, "log.txt"), "last\n");
}

#[test]
fn ctrl_c_at_the_failure_menu_exits_130_and_the_run_is_resumable() {
    let sandbox = sandbox("flaky", FLAKY);
    let mut pty = started(&sandbox, "flaky");
    pty.expect(MENU);
    pty.send("\u{3}");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 130, "{transcript}");
    let id = sandbox.last_run_id();
    sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(file(&sandbox, "used.txt"), "fine\n");
}

#[test]
fn undo_at_the_failure_menu_runs_the_undo_steps_newest_first() {
    let sandbox = super::undo::sandbox();
    let mut pty = started(&sandbox, "undoable");
    pty.expect("`boom` failed: [r]etry");
    pty.expect("[u]ndo this run's changes");
    pty.answer("u");
    pty.expect("Run stage `undo of two`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("Run stage `undo of one`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 1, "{transcript}");
    assert_eq!(
        super::undo::log(&sandbox),
        ["one", "two", "three", "two_undo_a", "two_undo_b", "one_undo original"],
        "{transcript}"
    );
    assert!(show(&sandbox).contains("failure menu: undo this run's changes after `boom` failed"));
}

#[test]
fn without_a_terminal_a_failed_step_gets_no_menu() {
    let sandbox = sandbox("flaky", FLAKY);
    let run = sandbox.runbook().args(["flaky", "go", "--yes"]).output().status(1);
    assert!(!run.all().contains("[r]etry") && !run.all().contains("failure menu"), "{}", run.all());
    assert!(!journal(&sandbox).contains("failure_choice"));
    assert!(!sandbox.path().join("log.txt").exists());
}

#[test]
fn an_answer_edited_at_the_failure_menu_is_the_one_resume_uses() {
    let sandbox = sandbox("restore", RESTORE);
    let mut pty = started(&sandbox, "restore");
    pty.expect("Backup to restore");
    pty.answer("bad");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("[e]dit an answer and retry");
    pty.answer("e");
    pty.expect("Backup to restore");
    pty.answer("worse");
    pty.expect("Run `restore` with this command?");
    pty.answer("y");
    pty.expect("[e]dit an answer and retry");
    pty.answer("a");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "{transcript}");
    let id = sandbox.last_run_id();
    // The journal's latest answer is `worse`: resume retries with it, not with `bad`.
    let mut pty = Pty::spawn(&sandbox, &["resume", &id]);
    pty.expect("Run stage `Restore`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("`restore` failed: [r]etry");
    pty.answer("a");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "{transcript}");
    assert_eq!(file(&sandbox, "tried.txt"), "bad\nworse\nworse\n", "{transcript}");
}

#[test]
fn a_step_with_on_failure_continue_gets_no_menu_at_a_terminal() {
    let sandbox = sandbox(
        "flaky",
        &FLAKY.replace("            capture: text\n", "            capture: text\n            on_failure: continue\n"),
    );
    let mut pty = started(&sandbox, "flaky");
    pty.expect("(continuing: on_failure: continue)");
    // `uses` (on_failure: abort) cannot render without `flaky`'s output: its failure asks.
    pty.expect("`uses` failed: [r]etry");
    pty.answer("a");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "{transcript}");
    assert!(!transcript.contains("`flaky` failed: [r]etry"), "{transcript}");
}

const HANDLED: &str = r#"
runbook: handled
procedures:
  go:
    stages:
      - name: Work
        steps:
          - id: boom
            run: [sh, -c, 'exit 5']
            timeout: 10s
            on_failure: cleanup
  cleanup:
    stages:
      - name: Clean up
        steps:
          - id: clean
            run: [touch, cleaned]
            timeout: 10s
"#;

#[test]
fn a_step_with_a_handler_procedure_runs_it_at_a_terminal_without_the_menu() {
    let sandbox = sandbox("handled", HANDLED);
    let mut pty = started(&sandbox, "handled");
    pty.expect("running on_failure procedure `cleanup`");
    pty.expect("Run stage `Clean up`?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 1, "{transcript}");
    assert!(sandbox.path().join("cleaned").exists(), "{transcript}");
    assert!(!transcript.contains("[r]etry"), "{transcript}");
}

#[test]
fn explicit_on_failure_abort_at_a_terminal_stops_without_the_menu() {
    let sandbox = sandbox("flaky", FLAKY);
    let mut pty = Pty::spawn(&sandbox, &["flaky", "go", "--on-failure", "abort"]);
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("runbook resume");
    let (code, transcript) = pty.finish();
    // A failed step is exit 1 (SPEC); 3 is the operator aborting at a question.
    assert_eq!(code, 1, "{transcript}");
    assert!(!transcript.contains(MENU), "{transcript}");
    assert!(!journal(&sandbox).contains("failure_choice"));
    let id = sandbox.last_run_id();
    sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(file(&sandbox, "log.txt"), "last\n");
}

#[test]
fn ctrl_d_at_the_failure_menu_aborts_resumable_and_journaled() {
    let sandbox = sandbox("flaky", FLAKY);
    let mut pty = started(&sandbox, "flaky");
    pty.expect(MENU);
    pty.send("\u{4}");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "{transcript}");
    assert!(show(&sandbox).contains("abort after `flaky` failed (resumable): cannot ask the operator: end of input"));
    assert!(journal(&sandbox).contains(r#""choice":"abort""#));
    let id = sandbox.last_run_id();
    sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(file(&sandbox, "log.txt"), "last\n");
}

#[test]
fn a_huge_or_control_character_answer_at_the_failure_menu_is_cut_and_asked_again() {
    let sandbox = sandbox("flaky", FLAKY);
    let mut pty = started(&sandbox, "flaky");
    pty.expect(MENU);
    let started = std::time::Instant::now();
    // 200 KB pasted, with a bell, an escape sequence and a backspace in it.
    pty.answer(&format!("r\u{7}\u{1b}[31m{}\u{7f}", "x".repeat(200_000)));
    pty.expect("Please answer one of");
    pty.expect("(not \"r");
    pty.expect(MENU);
    let elapsed = started.elapsed();
    // Control characters look like a choice once dropped: `a` followed by Ctrl-A is no `a`.
    pty.answer("a\u{1}");
    pty.expect("Please answer one of");
    pty.expect(MENU);
    pty.answer("r");
    pty.expect("Run `uses` with this command?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert!(!transcript.contains(&"x".repeat(100)), "the paste was echoed");
    assert!(!transcript.contains('\u{7}'), "a control character was echoed");
    assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");
    eprintln!("200 KB answer at the menu: {elapsed:?}");
}

#[test]
fn a_huge_skip_reason_is_cut_and_ctrl_d_at_the_reason_aborts() {
    let sandbox = sandbox("flaky", FLAKY);
    let mut pty = started(&sandbox, "flaky");
    pty.expect(MENU);
    pty.answer("s");
    pty.expect("Why skip `flaky`?");
    pty.answer(&format!("checked\u{7}{}", "y".repeat(5_000)));
    pty.expect("`uses` failed: [r]etry");
    pty.answer("s");
    pty.expect("Why skip `uses`?");
    pty.send("\u{4}");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "{transcript}");
    let shown = show(&sandbox);
    let reason = shown.lines().find(|l| l.contains("skip `flaky`: checked")).unwrap_or_default();
    // Kept: 500 characters (the bell dropped), then the mark that it was cut.
    assert!(reason.contains(&format!("checked{}…", "y".repeat(493))), "{shown}");
    assert!(!reason.contains(&"y".repeat(600)), "{reason}");
    assert!(!journal(&sandbox).contains('\u{7}'));
    assert!(shown.contains("abort after `uses` failed (resumable): cannot ask the operator: end of input"), "{shown}");
}

#[test]
fn undo_at_the_failure_menu_with_every_undo_skipped_leaves_the_run_resumable_and_undoable() {
    let sandbox = super::undo::sandbox();
    let mut pty = started(&sandbox, "undoable");
    pty.expect("[u]ndo this run's changes");
    pty.answer("u");
    pty.expect("Run stage `undo of two`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("s");
    pty.expect("Run stage `undo of one`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("s");
    pty.expect("continued with: runbook undo");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 1, "{transcript}");
    assert_eq!(super::undo::log(&sandbox), ["one", "two", "three"], "{transcript}");
    let shown = show(&sandbox);
    assert!(shown.contains("continue the undo with: runbook undo"), "{shown}");
    assert!(shown.contains("continue it with: runbook resume"), "{shown}");
    // Nothing was taken back: resuming is not redoing anything.
    let id = sandbox.last_run_id();
    let out = sandbox.runbook().args(["resume", &id, "--yes"]).output().status(1);
    assert!(out.stderr().contains("step `boom` failed"), "{}", out.stderr());
}
