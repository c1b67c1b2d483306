//! Issue 11: `undo:` steps, `runbook undo RUN_ID` and `--on-failure undo|abort`, with
//! local processes whose files on disk prove what ran, in which order, with which values.

use std::time::{Duration, Instant};

use crate::support::{Sandbox, live_processes};

/// `one` and `two` can be undone (`two` by two steps), `three` cannot, `boom` fails. The
/// undo of `one` writes the value `before` read BEFORE `one` changed it.
const UNDOABLE: &str = r#"runbook: undoable
procedures:
  go:
    stages:
      - name: change
        steps:
          - id: before
            effect: read
            run: [cat, state.txt]
            capture: text
          - id: one
            run: [sh, -c, 'echo one >> log.txt; echo changed > state.txt']
            timeout: 5s
            undo:
              id: one_undo
              run: [sh, -c, 'echo "one_undo $1" >> log.txt; printf "%s\n" "$1" > state.txt', x, "{{ steps.before.output | trim }}"]
              timeout: 5s
          - id: two
            run: [sh, -c, 'echo two >> log.txt']
            timeout: 5s
            undo:
              - id: two_undo_a
                run: [sh, -c, 'echo two_undo_a >> log.txt']
                timeout: 5s
              - id: two_undo_b
                shell: 'echo two_undo_b >> log.txt; if [ -n "$SLOW" ]; then touch undo-started; sleep 323.57; fi'
                env: {SLOW: "{{ env.SLOW | default('') }}"}
                timeout: 10m
          - id: three
            run: [sh, -c, 'echo three >> log.txt']
            timeout: 5s
          - id: boom
            run: [sh, -c, 'exit 3']
            timeout: 5s
"#;

pub(crate) fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file("undoable.yaml", UNDOABLE);
    sandbox.file("./state.txt", "original\n");
    sandbox
}

pub(crate) fn log(sandbox: &Sandbox) -> Vec<String> {
    std::fs::read_to_string(sandbox.path().join("log.txt")).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn undo_runs_undo_steps_newest_first_with_the_values_read_before_the_change() {
    let sandbox = sandbox();
    sandbox.runbook().args(["undoable", "go", "--yes"]).output().status(1);
    let id = sandbox.last_run_id();
    assert_eq!(std::fs::read_to_string(sandbox.path().join("state.txt")).unwrap_or_default(), "changed\n");

    // Without a terminal and without --yes: refused, nothing undone.
    let out = sandbox.runbook().args(["undo", &id]).output().status(2);
    assert!(out.stderr().contains("pass --yes"), "{}", out.stderr());
    assert_eq!(log(&sandbox), ["one", "two", "three"]);

    let out = sandbox.runbook().args(["undo", &id, "--yes"]).output().success();
    assert_eq!(log(&sandbox), ["one", "two", "three", "two_undo_a", "two_undo_b", "one_undo original"]);
    assert_eq!(std::fs::read_to_string(sandbox.path().join("state.txt")).unwrap_or_default(), "original\n");
    // What remains is named with its command; the step that failed is named, not undone.
    assert!(
        out.stderr()
            .contains("undo of boom: failed before it finished; not undone, check what it changed: $ sh -c 'exit 3'"),
        "{}",
        out.stderr()
    );
    assert!(
        out.stderr().contains("undo of three: cannot be undone automatically: $ sh -c 'echo three >> log.txt'"),
        "{}",
        out.stderr()
    );

    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("undo of two done") && shown.contains("undo of one done"), "{shown}");
    assert!(shown.contains("undo of three manual"), "{shown}");
    assert!(shown.contains("status: partly undone"), "{shown}");
    let history = sandbox.runbook().args(["history"]).output().success().stdout();
    assert!(history.lines().any(|l| l.starts_with(&id) && l.contains("partly undone")), "{history}");

    // A second undo does not undo anything twice.
    let again = sandbox.runbook().args(["undo", &id, "--yes"]).output().status(2);
    assert!(again.stderr().contains("was already undone"), "{}", again.stderr());
    assert!(again.stderr().contains("cannot be undone automatically: `three`"), "{}", again.stderr());
    assert_eq!(log(&sandbox).len(), 6);
}

#[test]
fn on_failure_undo_without_a_terminal_undoes_what_the_run_changed_and_still_fails() {
    let sandbox = sandbox();
    let out = sandbox.runbook().args(["undoable", "go", "--yes", "--on-failure", "undo"]).output().status(1);
    assert_eq!(log(&sandbox), ["one", "two", "three", "two_undo_a", "two_undo_b", "one_undo original"]);
    assert!(out.stderr().contains("step `boom` failed"), "{}", out.stderr());
    assert!(out.stderr().contains("undone: `two`, `one`"), "{}", out.stderr());
    let id = sandbox.last_run_id();
    let journal = std::fs::read_to_string(sandbox.journals().pop().unwrap_or_default()).unwrap_or_default();
    assert!(journal.contains(r#""on_failure":"undo""#), "the choice is journaled");
    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("status: partly undone"), "{shown}");

    // `abort` is today's behaviour: the run stops, resumable, nothing undone.
    let sandbox = self::sandbox();
    let out = sandbox.runbook().args(["undoable", "go", "--yes", "--on-failure", "abort"]).output().status(1);
    assert_eq!(log(&sandbox), ["one", "two", "three"]);
    assert!(out.stderr().contains("runbook resume"), "{}", out.stderr());
}

#[test]
fn sigint_during_an_undo_step_exits_130_and_the_journal_says_which_undo_steps_ran() {
    let sandbox = sandbox();
    sandbox.runbook().args(["undoable", "go", "--yes"]).output().status(1);
    let id = sandbox.last_run_id();
    let mut run = sandbox.runbook().args(["undo", &id, "--yes"]).env("SLOW", "1");
    run.cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = run.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let started = sandbox.path().join("undo-started");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.exists(), "the slow undo step started");
    crate::support::signal(child.id(), "INT");
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(status.code(), Some(130));
    assert_eq!(live_processes("sleep 323.57"), Vec::<String>::new(), "orphans left behind");
    assert_eq!(log(&sandbox), ["one", "two", "three", "two_undo_a", "two_undo_b"], "`one` was not undone");

    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("done two_undo_a") && shown.contains("interrupted two_undo_b"), "{shown}");
    assert!(shown.contains("status: undo failed"), "{shown}");
    assert!(shown.contains("continue the undo with: runbook undo"), "{shown}");

    // Continued: what finished is not run again.
    sandbox.runbook().args(["undo", &id, "--yes"]).output().success();
    assert_eq!(log(&sandbox), ["one", "two", "three", "two_undo_a", "two_undo_b", "two_undo_b", "one_undo original"]);
}

#[test]
fn a_full_journal_disk_keeps_a_mutating_undo_step_from_starting() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "fill.yaml",
        r#"runbook: fill
procedures:
  go:
    stages:
      - name: s
        steps:
          - id: change
            run: [touch, changed]
            timeout: 5s
            undo:
              - id: big_read
                shell: 'head -c 6000 /dev/zero | tr "\0" a'
                effect: read
                capture: text
              - id: put_back
                run: [touch, undone]
                timeout: 5s
"#,
    );
    sandbox.runbook().args(["fill", "go", "--yes"]).output().success();
    let id = sandbox.last_run_id();
    let journal = sandbox.journals().pop().unwrap_or_default();
    let size = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or_default();
    // Room for the undo's first records, not for the read step's 6000-byte output.
    let blocks = size / 1024 + 3;
    let script = format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\"");
    let mut run = sandbox.runbook();
    let program = run.cmd.get_program().to_owned();
    run.cmd = std::process::Command::new("bash");
    run.cmd
        .current_dir(sandbox.path())
        .env("RUNBOOK_STATE_DIR", sandbox.path().join("state"))
        .env_remove("RUNBOOK_DIR");
    run.cmd.arg("-c").arg(script).arg(program).args(["undo", &id, "--yes"]);
    let out = run.output().status(1);
    assert!(out.stderr().contains("stopped before step `put_back` ran: cannot write the journal"), "{}", out.stderr());
    assert!(!sandbox.path().join("undone").exists(), "the mutating undo step did not start");
}

#[test]
fn dry_run_and_docs_show_each_undo_under_its_step() {
    let sandbox = sandbox();
    let out = sandbox.runbook().args(["undoable", "go", "--dry-run"]).output().success().stdout();
    assert!(
        out.contains("undo: one_undo $ sh -c 'echo \"one_undo $1\" >> log.txt; printf \"%s\\n\" \"$1\" > state.txt' x '<steps.before.output>'"),
        "{out}"
    );
    assert!(out.contains("undo: two_undo_a $ sh -c 'echo two_undo_a >> log.txt'"), "{out}");
    let docs = sandbox.runbook().args(["docs", "undoable"]).output().success().stdout();
    assert!(docs.contains("Undone (`runbook undo`, `--on-failure undo`) by:"), "{docs}");
    assert!(docs.contains("- `two_undo_b` (shell)"), "{docs}");
}

#[test]
fn undo_refuses_a_changed_runbook_file_and_a_run_that_changed_nothing() {
    let sandbox = sandbox();
    sandbox.runbook().args(["undoable", "go", "--yes"]).output().status(1);
    let id = sandbox.last_run_id();
    sandbox.file("undoable.yaml", &UNDOABLE.replace("exit 3", "exit 4"));
    let out = sandbox.runbook().args(["undo", &id, "--yes"]).output().status(2);
    assert!(out.stderr().contains("refusing to undo run") && out.stderr().contains("--force"), "{}", out.stderr());
    assert_eq!(log(&sandbox), ["one", "two", "three"], "nothing undone");
    sandbox.runbook().args(["undo", &id, "--yes", "--force"]).output().success();
    assert_eq!(log(&sandbox).len(), 6);

    let quiet = Sandbox::new();
    quiet.file("quiet.yaml", "runbook: quiet\nprocedures:\n  go:\n    stages:\n      - name: s\n        steps:\n          - id: look\n            run: [\"true\"]\n            effect: read\n");
    quiet.runbook().args(["quiet", "go"]).output().success();
    let out = quiet.runbook().args(["undo", &quiet.last_run_id(), "--yes"]).output().status(2);
    assert!(out.stderr().contains("changed nothing; there is nothing to undo"), "{}", out.stderr());
    let out = quiet.runbook().args(["undo", "../../etc", "--yes"]).output().status(2);
    assert!(!out.stderr().contains("panicked"), "{}", out.stderr());
}

/// `b`'s undo fails while the file `broken` exists; `a`'s undo may depend on it.
const BREAKABLE: &str = r#"runbook: breakable
procedures:
  go:
    stages:
      - name: change
        steps:
          - id: a
            run: [sh, -c, 'echo a >> log.txt']
            timeout: 5s
            undo:
              id: a_undo
              run: [sh, -c, 'echo a_undo >> log.txt']
              timeout: 5s
          - id: b
            run: [sh, -c, 'echo b >> log.txt']
            timeout: 5s
            undo:
              id: b_undo
              run: [sh, -c, 'if [ -e broken ]; then echo still broken >&2; exit 5; fi; echo b_undo >> log.txt']
              timeout: 5s
          - id: boom
            run: [sh, -c, 'exit 3']
            timeout: 5s
"#;

/// A sandbox with `text` as breakable.yaml, after a run of `go` (with `extra`) that failed.
fn failed_breakable(text: &str, extra: &[&str]) -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    sandbox.file("breakable.yaml", text);
    sandbox.runbook().args(["breakable", "go", "--yes"]).args(extra).output().status(1);
    let id = sandbox.last_run_id();
    (sandbox, id)
}

#[test]
fn a_failed_undo_step_stops_the_undo_and_a_second_undo_retries_from_it() {
    let (sandbox, id) = failed_breakable(BREAKABLE, &[]);
    sandbox.file("./broken", "");
    let out = sandbox.runbook().args(["undo", &id, "--yes"]).output().status(1);
    // Older undo steps may depend on the failed one: nothing after it ran.
    assert_eq!(log(&sandbox), ["a", "b"], "{}", out.stderr());
    assert!(out.stderr().contains("step `b_undo` failed"), "{}", out.stderr());
    assert!(out.stderr().contains("left to undo: `b`, `a`"), "{}", out.stderr());
    assert!(out.stderr().contains(&format!("continued with: runbook undo {id}")), "{}", out.stderr());
    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("status: undo failed"), "{shown}");
    assert!(shown.contains(&format!("continue the undo with: runbook undo {id}")), "{shown}");
    assert!(!shown.contains("runbook resume"), "an undone run is not offered to resume\n{shown}");

    std::fs::remove_file(sandbox.path().join("broken")).unwrap_or_default();
    let out = sandbox.runbook().args(["undo", &id, "--yes"]).output().success();
    assert_eq!(log(&sandbox), ["a", "b", "b_undo", "a_undo"], "{}", out.stderr());
    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("status: partly undone"), "{shown}");
    // Nothing left that `runbook undo` could do: it is not suggested.
    assert!(!out.stderr().contains("continued with"), "{}", out.stderr());
    assert!(!shown.contains("continue the undo with"), "{shown}");

    let again = sandbox.runbook().args(["undo", &id, "--yes"]).output().status(2);
    assert!(again.stderr().contains("was already undone"), "{}", again.stderr());
    assert_eq!(log(&sandbox).len(), 4);
}

#[test]
fn resume_of_an_undone_run_is_refused() {
    let (sandbox, id) = failed_breakable(BREAKABLE, &[]);
    sandbox.runbook().args(["undo", &id, "--yes"]).output().success();
    let out = sandbox.runbook().args(["resume", &id, "--yes"]).output().status(2);
    assert!(out.stderr().contains(&format!("run {id} was undone")), "{}", out.stderr());
    assert!(out.stderr().contains("start a new run"), "{}", out.stderr());
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--from", "a"]).output().status(2);
    assert!(out.stderr().contains("was undone"), "{}", out.stderr());
    assert_eq!(log(&sandbox), ["a", "b", "b_undo", "a_undo"]);

    // `--on-failure undo` that put everything back suggests neither resume nor undo.
    let sandbox = Sandbox::new();
    sandbox.file("breakable.yaml", BREAKABLE);
    let out = sandbox.runbook().args(["breakable", "go", "--yes", "--on-failure", "undo"]).output().status(1);
    assert!(!out.stderr().contains("continued with"), "{}", out.stderr());
    let id = sandbox.last_run_id();
    sandbox.runbook().args(["resume", &id, "--yes"]).output().status(2);
    assert_eq!(log(&sandbox), ["a", "b", "b_undo", "a_undo"]);

    // Partly undone (the undo failed half-way): refused too; the undo can be finished.
    let (sandbox, id) = failed_breakable(BREAKABLE, &[]);
    sandbox.file("./broken", "");
    sandbox.runbook().args(["undo", &id, "--yes"]).output().status(1);
    let out = sandbox.runbook().args(["resume", &id, "--yes"]).output().status(2);
    assert!(out.stderr().contains("was undone"), "{}", out.stderr());
    assert!(out.stderr().contains("runbook undo"), "{}", out.stderr());
    assert_eq!(log(&sandbox), ["a", "b"]);
}

#[test]
fn resume_from_an_undo_step_is_refused_naming_the_steps_that_can_restart() {
    let (sandbox, id) = failed_breakable(BREAKABLE, &[]);
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--from", "a_undo"]).output().status(2);
    assert!(out.stderr().contains("`a_undo` is an undo step of `a`"), "{}", out.stderr());
    assert!(out.stderr().contains("runbook undo"), "{}", out.stderr());
    assert_eq!(log(&sandbox), ["a", "b"]);
}

#[test]
fn on_failure_undo_on_resume_undoes_and_is_journaled() {
    let (sandbox, id) = failed_breakable(BREAKABLE, &[]);
    let out = sandbox.runbook().args(["resume", &id, "--yes", "--on-failure", "undo"]).output().status(1);
    assert_eq!(log(&sandbox), ["a", "b", "b_undo", "a_undo"], "{}", out.stderr());
    assert!(out.stderr().contains("undone: `b`, `a`"), "{}", out.stderr());
    let journal = std::fs::read_to_string(sandbox.journals().pop().unwrap_or_default()).unwrap_or_default();
    let resumed = journal.lines().find(|l| l.contains(r#""record":"run_resumed""#) || l.contains("run_resumed"));
    assert!(resumed.is_some_and(|l| l.contains(r#""on_failure":"undo""#)), "{journal}");
}

/// `svc` of the plans tests, with an undo on `switch` and a step after it that fails.
const SVC_UNDO: &str = r#"runbook: svc
environments:
  production:
    protected: true
    approvals: 1
    vars: {file: serving.txt}
params:
  token:
    type: string
    secret: true
    required: false
procedures:
  switch:
    params: [token]
    stages:
      - name: Switch
        steps:
          - id: reason
            prompt: Why?
          - id: switch
            run: [sh, -c, 'echo switch >> log.txt']
            timeout: 5s
            undo:
              id: switch_back
              run: [sh, -c, 'echo switch_back >> log.txt']
              timeout: 5s
          - id: check
            run: [sh, -c, 'exit 4']
            timeout: 5s
"#;

#[test]
fn on_failure_undo_on_apply_undoes_what_the_plan_changed() {
    use super::plans::{approve, as_user, save_plan};
    let sandbox = super::plans::sandbox();
    sandbox.file("svc.yaml", SVC_UNDO);
    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    let out = as_user(&sandbox, "a@x")
        .args(["apply", "switch.plan", "--confirm-env", "production", "--on-failure", "undo"])
        .output()
        .status(1);
    assert_eq!(log(&sandbox), ["switch", "switch_back"], "{}", out.stderr());
    assert!(!out.stderr().contains("continued with"), "{}", out.stderr());
    let journal = std::fs::read_to_string(sandbox.journals().pop().unwrap_or_default()).unwrap_or_default();
    assert!(journal.contains(r#""on_failure":"undo""#), "{journal}");
}

#[test]
fn a_resume_keeps_the_on_failure_undo_the_run_was_started_with() {
    let sandbox = Sandbox::new();
    // `boom` interrupts the run the first time (SIGINT to runbook), fails the second.
    let text = BREAKABLE.replace(
        "run: [sh, -c, 'exit 3']",
        "run: [sh, -c, 'if [ -e interrupted ]; then exit 3; fi; touch interrupted; kill -INT $PPID; sleep 1']",
    );
    sandbox.file("breakable.yaml", &text);
    sandbox.runbook().args(["breakable", "go", "--yes", "--on-failure", "undo"]).output().status(130);
    let id = sandbox.last_run_id();
    assert_eq!(log(&sandbox), ["a", "b"]);
    let out = sandbox.runbook().args(["resume", &id, "--yes"]).output().status(1);
    assert_eq!(log(&sandbox), ["a", "b", "b_undo", "a_undo"], "{}", out.stderr());
    // Given explicitly, the resume's own choice wins.
    let sandbox = Sandbox::new();
    sandbox.file("breakable.yaml", &text);
    sandbox.runbook().args(["breakable", "go", "--yes", "--on-failure", "undo"]).output().status(130);
    let id = sandbox.last_run_id();
    sandbox.runbook().args(["resume", &id, "--yes", "--on-failure", "abort"]).output().status(1);
    assert_eq!(log(&sandbox), ["a", "b"]);
}

/// `breakable` whose first step `mk` changes something and prints a secret; its undo reads
/// that secret.
fn secret_owner() -> String {
    BREAKABLE.replace(
        "          - id: a\n            run: [sh, -c, 'echo a >> log.txt']\n            timeout: 5s\n            undo:\n              id: a_undo\n              run: [sh, -c, 'echo a_undo >> log.txt']\n",
        "          - id: mk\n            run: [sh, -c, 'echo mk >> log.txt; echo tok-123']\n            capture: text\n            secret: true\n            timeout: 5s\n            undo:\n              id: mk_undo\n              run: [sh, -c, 'cat >> undo.txt; echo mk_undo >> log.txt']\n              stdin: \"{{ steps.mk.output }}\"\n",
    )
}

#[test]
fn undo_needing_a_secret_output_never_journaled_is_refused_before_any_undo_step() {
    let (sandbox, id) = failed_breakable(&secret_owner(), &[]);
    let out = sandbox.runbook().args(["undo", &id, "--yes"]).output().status(2);
    assert!(
        out.stderr()
            .contains("undo step `mk_undo` needs the output of step `mk`, which was secret and never journaled"),
        "{}",
        out.stderr()
    );
    // Nothing half-undone: `b` (newer, undone first) was not touched either.
    assert_eq!(log(&sandbox), ["mk", "b"]);

    // An undo that does not read the secret goes on.
    let (sandbox, id) =
        failed_breakable(&secret_owner().replace(r#"stdin: "{{ steps.mk.output }}""#, "stdin: fixed"), &[]);
    sandbox.runbook().args(["undo", &id, "--yes"]).output().success();
    assert_eq!(log(&sandbox), ["mk", "b", "b_undo", "mk_undo"]);
    assert!(!std::fs::read_to_string(sandbox.path().join("undo.txt")).unwrap_or_default().contains("tok-123"));
}

#[test]
fn on_failure_undo_without_a_terminal_needs_the_typed_targets_of_undo_steps_up_front() {
    let sandbox = Sandbox::new();
    let text = BREAKABLE.replace(
        "              id: a_undo\n",
        "              id: a_undo\n              confirm: typed\n              target: put-a-back\n",
    );
    sandbox.file("breakable.yaml", &text);
    let out = sandbox.runbook().args(["breakable", "go", "--yes", "--on-failure", "undo"]).output().status(2);
    assert!(out.stderr().contains("--confirm-target a_undo=VALUE"), "{}", out.stderr());
    assert!(!sandbox.path().join("log.txt").exists(), "nothing ran: {}", out.stderr());
    // Given ahead, the undo runs to the end.
    let out = sandbox
        .runbook()
        .args(["breakable", "go", "--yes", "--on-failure", "undo", "--confirm-target", "a_undo=put-a-back"])
        .output()
        .status(1);
    assert_eq!(log(&sandbox), ["a", "b", "b_undo", "a_undo"], "{}", out.stderr());
    // Without --on-failure undo no undo can run: not asked for.
    let sandbox = Sandbox::new();
    sandbox.file("breakable.yaml", &text);
    sandbox.runbook().args(["breakable", "go", "--yes"]).output().status(1);
}

#[test]
fn on_failure_undo_in_a_protected_environment_without_a_terminal_needs_confirm_env_up_front() {
    let sandbox = Sandbox::new();
    let text = BREAKABLE.replace("procedures:\n", "environments:\n  production:\n    protected: true\nprocedures:\n");
    sandbox.file("breakable.yaml", &text);
    let args = ["breakable", "go", "--env", "production", "--yes", "--on-failure", "undo"];
    let out = sandbox.runbook().args(args).output().status(2);
    assert!(out.stderr().contains("--confirm-env"), "{}", out.stderr());
    assert!(!sandbox.path().join("log.txt").exists(), "nothing ran: {}", out.stderr());
    let out = sandbox.runbook().args(args).args(["--confirm-env", "production"]).output().status(1);
    assert_eq!(log(&sandbox), ["a", "b", "b_undo", "a_undo"], "{}", out.stderr());
}
