//! The operator at a real terminal: the binary runs in a pseudo-terminal driven by `rexpect`,
//! so the questions go through dialoguer exactly as at 3 a.m. (stage confirmations, protected
//! environments, typed confirmations, secret and select prompts).

use std::path::Path;
use std::process::Command;

use rexpect::process::WaitStatus;
use rexpect::session::{Options, PtySession};

use crate::support::{Sandbox, binary};

/// Every `exp_*` call gives up after this long.
const TIMEOUT_MS: u64 = 10_000;

pub(super) const STAGE_QUESTION: &str = "[y]es / [N]o, stop here / [s]kip this stage";

/// A `runbook` process on a pseudo-terminal, with everything it has shown so far.
pub(super) struct Pty {
    session: PtySession,
    /// Raw bytes: rexpect hands over one `char` per byte, so UTF-8 is rebuilt here.
    shown: Vec<u8>,
}

impl Pty {
    /// Starts `runbook ARGS...` in the sandbox with the same environment as `support::Run`.
    pub(super) fn spawn(sandbox: &Sandbox, args: &[&str]) -> Pty {
        Pty::spawn_with(sandbox, args, &[])
    }

    /// `spawn` with extra environment variables.
    pub(super) fn spawn_with(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Pty {
        let mut cmd = Command::new(binary());
        cmd.current_dir(sandbox.path()).args(args);
        for var in [
            "RUNBOOK_DIR",
            "GITHUB_ACTIONS",
            "GITHUB_ACTOR",
            "RUST_LOG",
            "XDG_STATE_HOME",
            "CLICOLOR_FORCE",
            "CLOUDSDK_CORE_ACCOUNT",
            "CLOUDSDK_ACTIVE_CONFIG_NAME",
        ] {
            cmd.env_remove(var);
        }
        // Who runs is the gcloud account: the tests' own set-up, never the developer's.
        cmd.env("CLOUDSDK_CONFIG", sandbox.path().join("gcloud-config"));
        cmd.envs(env.iter().copied());
        cmd.env("RUNBOOK_STATE_DIR", sandbox.path().join("state"))
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env("LINES", "40")
            .env("TERM", "xterm");
        let options = Options::new().timeout_ms(Some(TIMEOUT_MS)).strip_ansi_escape_codes(true);
        let session = rexpect::session::spawn_with_options(cmd, options)
            .unwrap_or_else(|e| panic!("spawn runbook on a pty: {e}"));
        Pty { session, shown: Vec::new() }
    }

    /// Sends `signal` to runbook itself (not a key: a session killed or hung up).
    pub(super) fn signal(&mut self, signal: nix::sys::signal::Signal) {
        let sent = self.session.process_mut().signal(signal);
        sent.unwrap_or_else(|e| panic!("signal: {e}\n--- transcript\n{}", self.transcript()));
    }

    /// Waits until `needle` is shown.
    #[track_caller]
    /// Waits for `needle`; what came before it.
    pub(super) fn expect(&mut self, needle: &str) -> String {
        match self.session.exp_string(needle) {
            Ok(before) => {
                self.record(&before);
                self.record(needle);
                before
            }
            Err(e) => panic!("waiting for {needle:?}: {e}\n--- transcript\n{}", self.transcript()),
        }
    }

    /// Types `text` and Enter.
    #[track_caller]
    pub(super) fn answer(&mut self, text: &str) {
        self.send(&format!("{text}\r"));
    }

    /// Sends raw keys (escape sequences included).
    #[track_caller]
    pub(super) fn send(&mut self, keys: &str) {
        self.session.send(keys).unwrap_or_else(|e| panic!("send {keys:?}: {e}\n--- transcript\n{}", self.transcript()));
        self.session.flush().unwrap_or_else(|e| panic!("flush: {e}\n--- transcript\n{}", self.transcript()));
    }

    /// Waits for the process to end; returns its exit code and the whole transcript.
    #[track_caller]
    pub(super) fn finish(mut self) -> (i32, String) {
        match self.session.exp_eof() {
            Ok(rest) => self.record(&rest),
            Err(e) => panic!("waiting for the end of the run: {e}\n--- transcript\n{}", self.transcript()),
        }
        let status = self.session.process().wait().unwrap_or_else(|e| panic!("wait: {e}\n{}", self.transcript()));
        let code = match status {
            WaitStatus::Exited(_, code) => code,
            other => panic!("runbook did not exit normally: {other:?}\n--- transcript\n{}", self.transcript()),
        };
        let transcript = self.transcript();
        (code, transcript)
    }

    fn record(&mut self, text: &str) {
        self.shown.extend(text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')));
    }

    /// Everything shown so far (escape codes stripped), as text.
    pub(super) fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.shown).into_owned()
    }
}

fn exists(sandbox: &Sandbox, name: &str) -> bool {
    sandbox.path().join(name).exists()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

const TWO_STAGES: &str = r#"
runbook: two
title: Two stages
procedures:
  go:
    summary: Touch a, then b
    stages:
      - name: First
        steps:
          - id: touch_a
            run: [touch, a]
            timeout: 10s
      - name: Second
        steps:
          - id: touch_b
            run: [touch, b]
            timeout: 10s
"#;

#[test]
fn stage_yes_then_no_runs_the_first_stage_and_aborts() {
    let sandbox = Sandbox::new();
    sandbox.file("two.yaml", TWO_STAGES);
    let mut pty = Pty::spawn(&sandbox, &["two", "go"]);
    pty.expect("Run stage `First`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("Run stage `Second`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("n");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code (operator aborted)\n--- transcript\n{transcript}");
    assert!(exists(&sandbox, "a"), "stage `First` did not run\n--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "b"), "stage `Second` ran after `n`\n--- transcript\n{transcript}");
}

/// Ctrl-D at a stage confirmation is its default (No, stop here), never a wait forever; a
/// pasted line full of control characters or a huge one is neither echoed nor taken as `y`.
#[test]
fn ctrl_d_or_garbage_at_a_stage_confirmation_never_runs_the_stage() {
    let sandbox = Sandbox::new();
    sandbox.file("two.yaml", TWO_STAGES);
    let mut pty = Pty::spawn(&sandbox, &["two", "go"]);
    pty.expect("Run stage `First`?");
    pty.expect(STAGE_QUESTION);
    // `y` followed by an escape sequence, a bell and 50 KB: not a `y`.
    pty.answer(&format!("y\u{1b}[31m\u{7}{}", "y".repeat(50_000)));
    pty.expect("Please answer y, n or s.");
    pty.expect(STAGE_QUESTION);
    pty.send("\u{4}");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code (operator aborted)\n--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "a"), "stage `First` ran\n--- transcript\n{transcript}");
    assert!(!transcript.contains(&"y".repeat(100)), "the paste was echoed\n{transcript}");
    assert!(!transcript.contains('\u{7}'), "a control character was echoed");
}

/// Ctrl-D where a protected environment's name is asked refuses, exit 3, nothing ran.
#[test]
fn ctrl_d_at_the_protected_environment_name_refuses() {
    let sandbox = Sandbox::new();
    sandbox.file("prod.yaml", PROTECTED);
    let mut pty = Pty::spawn(&sandbox, &["prod", "go", "--env", "production"]);
    pty.expect(ENV_QUESTION);
    pty.send("\u{4}");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code (operator aborted)\n--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "marker-1"), "a step ran\n--- transcript\n{transcript}");
}

/// SIGTERM or SIGHUP while a stage confirmation waits (a session killed, not a key pressed):
/// the run ends as interrupted (exit 130, resumable), it does not keep waiting.
#[test]
fn sigterm_or_sighup_at_a_question_ends_the_run_interrupted() {
    use nix::sys::signal::Signal;
    for (name, signal) in [("TERM", Signal::SIGTERM), ("HUP", Signal::SIGHUP)] {
        let sandbox = Sandbox::new();
        sandbox.file("two.yaml", TWO_STAGES);
        let mut pty = Pty::spawn(&sandbox, &["two", "go"]);
        pty.expect(STAGE_QUESTION);
        std::thread::sleep(std::time::Duration::from_millis(200));
        pty.signal(signal);
        let (code, transcript) = pty.finish();
        assert_eq!(code, 130, "SIG{name}\n--- transcript\n{transcript}");
        assert!(!exists(&sandbox, "a"), "a stage ran");
        let id = sandbox.last_run_id();
        let shown = sandbox.runbook().args(["show", &id]).output().success();
        assert!(shown.stdout().contains("interrupted"), "{}", shown.stdout());
    }
    // The same while a protected environment's name is asked.
    let sandbox = Sandbox::new();
    sandbox.file("prod.yaml", PROTECTED);
    let mut pty = Pty::spawn(&sandbox, &["prod", "go", "--env", "production"]);
    pty.expect(ENV_QUESTION);
    std::thread::sleep(std::time::Duration::from_millis(200));
    pty.signal(Signal::SIGTERM);
    let (code, transcript) = pty.finish();
    assert_eq!(code, 130, "--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "marker-1"), "a step ran");
}

#[test]
fn stage_skip_then_yes_runs_only_the_second_stage() {
    let sandbox = Sandbox::new();
    sandbox.file("two.yaml", TWO_STAGES);
    let mut pty = Pty::spawn(&sandbox, &["two", "go"]);
    pty.expect("Run stage `First`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("s");
    pty.expect("Run stage `Second`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "a"), "skipped stage `First` ran\n--- transcript\n{transcript}");
    assert!(exists(&sandbox, "b"), "stage `Second` did not run\n--- transcript\n{transcript}");
}

const PROTECTED: &str = r#"
runbook: prod
title: Protected
environments:
  production: {protected: true, vars: {x: "1"}}
procedures:
  go:
    summary: Touch a marker
    stages:
      - name: Only
        steps:
          - id: touch_marker
            run: [touch, "marker-{{ vars.x }}"]
            timeout: 10s
"#;

const ENV_QUESTION: &str = "`production` is a protected environment: type `production` to continue";

#[test]
fn protected_environment_wrong_name_three_times_aborts_before_anything_runs() {
    let sandbox = Sandbox::new();
    sandbox.file("prod.yaml", PROTECTED);
    let mut pty = Pty::spawn(&sandbox, &["prod", "go", "--env", "production"]);
    for wrong in ["prod", "staging", "Production"] {
        pty.expect(ENV_QUESTION);
        pty.answer(wrong);
        pty.expect("That is not `production`.");
    }
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code (operator aborted)\n--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "marker-1"), "a step ran\n--- transcript\n{transcript}");
    assert!(!transcript.contains("Run stage"), "a stage was offered\n--- transcript\n{transcript}");
}

#[test]
fn protected_environment_typed_name_goes_on() {
    let sandbox = Sandbox::new();
    sandbox.file("prod.yaml", PROTECTED);
    let mut pty = Pty::spawn(&sandbox, &["prod", "go", "--env", "production"]);
    pty.expect(ENV_QUESTION);
    pty.answer("production");
    pty.expect("Run stage `Only`?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(exists(&sandbox, "marker-1"), "the step did not run\n--- transcript\n{transcript}");
}

const TYPED: &str = r#"
runbook: typed
title: Typed confirmation
environments:
  staging: {vars: {instance: db-staging-1}}
procedures:
  go:
    summary: Destroy an instance
    stages:
      - name: Destroy
        steps:
          - id: destroy
            run: [touch, destroyed]
            timeout: 10s
            confirm: typed
            target: "{{ vars.instance }}"
"#;

const TYPED_QUESTION: &str = "step `destroy` is destructive: type `db-staging-1` to continue";

#[test]
fn typed_confirmation_with_the_instance_name_runs_the_step() {
    let sandbox = Sandbox::new();
    sandbox.file("typed.yaml", TYPED);
    let mut pty = Pty::spawn(&sandbox, &["typed", "go", "--env", "staging"]);
    pty.expect("Run stage `Destroy`?");
    pty.answer("y");
    pty.expect(TYPED_QUESTION);
    pty.answer("db-staging-2");
    pty.expect("That is not `db-staging-1`.");
    assert!(
        !exists(&sandbox, "destroyed"),
        "the step ran before it was confirmed\n--- transcript\n{}",
        pty.transcript()
    );
    pty.expect(TYPED_QUESTION);
    pty.answer("db-staging-1");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(exists(&sandbox, "destroyed"), "the confirmed step did not run\n--- transcript\n{transcript}");
}

#[test]
fn typed_confirmation_with_a_wrong_name_runs_nothing() {
    let sandbox = Sandbox::new();
    sandbox.file("typed.yaml", TYPED);
    let mut pty = Pty::spawn(&sandbox, &["typed", "go", "--env", "staging"]);
    pty.expect("Run stage `Destroy`?");
    pty.answer("y");
    for wrong in ["db-staging-2", "db-staging", "yes"] {
        pty.expect(TYPED_QUESTION);
        pty.answer(wrong);
        pty.expect("That is not `db-staging-1`.");
    }
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code (operator aborted)\n--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "destroyed"), "the unconfirmed step ran\n--- transcript\n{transcript}");
}

const SECRET: &str = r#"
runbook: secret
title: Secret prompt
procedures:
  go:
    summary: Ask for a password and hand it over on stdin
    stages:
      - name: Ask
        steps:
          - id: pw
            prompt: Database password
            secret: true
          - id: use_pw
            run: [sh, -c, 'cat > got.txt; cat got.txt']
            stdin: "{{ steps.pw.output }}"
            timeout: 10s
"#;

#[test]
fn secret_prompt_reaches_the_child_and_never_the_screen() {
    const VALUE: &str = "hunter2-s3cr3t";
    let sandbox = Sandbox::new();
    sandbox.file("secret.yaml", SECRET);
    let mut pty = Pty::spawn(&sandbox, &["secret", "go"]);
    pty.expect("Run stage `Ask`?");
    pty.answer("y");
    pty.expect("Database password");
    pty.answer(VALUE);
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert_eq!(read(&sandbox.path().join("got.txt")), VALUE, "stdin of the step\n--- transcript\n{transcript}");
    assert!(!transcript.contains(VALUE), "the secret was shown\n--- transcript\n{transcript}");
    assert!(!transcript.contains("hunter2"), "part of the secret was shown\n--- transcript\n{transcript}");
    // Dialoguer shows `Database password · ********`; the child's own echo of the value is an
    // output line of `use_pw`, drawn as `│ ********`.
    assert!(transcript.contains("\u{2502} ********"), "the child's echo was not masked\n--- transcript\n{transcript}");
}

const SELECT: &str = r#"
runbook: select
title: Select prompt
procedures:
  go:
    summary: Pick one and pass it on
    stages:
      - name: Pick
        steps:
          - id: pick
            prompt: Which one?
            choices: [alpha, beta, gamma]
          - id: record
            run: [sh, -c, 'echo "$1" > chosen.txt', x, "{{ steps.pick.output }}"]
            timeout: 10s
"#;

#[test]
fn select_prompt_arrow_down_picks_the_second_choice() {
    let sandbox = Sandbox::new();
    sandbox.file("select.yaml", SELECT);
    let mut pty = Pty::spawn(&sandbox, &["select", "go"]);
    pty.expect("Run stage `Pick`?");
    pty.answer("y");
    pty.expect("Which one?");
    pty.expect("gamma");
    // Nothing is preselected: the first line asks to move, the second is `alpha`.
    pty.send("\x1b[B");
    pty.send("\x1b[B");
    pty.send("\r");
    // The stage was shown with a placeholder for the choice: the final command is shown now.
    pty.expect("chosen.txt' x beta");
    pty.expect("Run `record` with this command?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert_eq!(read(&sandbox.path().join("chosen.txt")), "beta\n", "the chosen value\n--- transcript\n{transcript}");
}

const MANUAL: &str = r#"
runbook: manual
title: Manual step
procedures:
  go:
    summary: Wait for the operator, then go on
    stages:
      - name: Hands
        steps:
          - id: by_hand
            manual: Drain the node by hand.
          - id: after
            run: [touch, after]
            timeout: 10s
"#;

#[test]
fn manual_step_waits_for_done() {
    let sandbox = Sandbox::new();
    sandbox.file("manual.yaml", MANUAL);
    let mut pty = Pty::spawn(&sandbox, &["manual", "go"]);
    pty.expect("Run stage `Hands`?");
    pty.answer("y");
    pty.expect("Drain the node by hand.");
    pty.expect("Type `done` when finished");
    pty.answer("later");
    pty.expect("Type `done` when finished");
    assert!(!exists(&sandbox, "after"), "the run went on before `done`\n--- transcript\n{}", pty.transcript());
    pty.answer("done");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(exists(&sandbox, "after"), "the step after the manual one did not run\n--- transcript\n{transcript}");
}

/// The preview before stage 2 must number its steps 2.x, as `--dry-run` does.
#[test]
fn stage_preview_numbers_steps_like_the_dry_run() {
    let sandbox = Sandbox::new();
    sandbox.file("two.yaml", TWO_STAGES);
    let mut pty = Pty::spawn(&sandbox, &["two", "go"]);
    pty.expect("Run stage `First`?");
    pty.answer("y");
    pty.expect("Run stage `Second`?");
    pty.answer("n");
    let (_, transcript) = pty.finish();
    assert!(transcript.contains("2.1 touch_b"), "step numbering in the stage preview\n--- transcript\n{transcript}");
}

// Issue 10: the 3 a.m. decisions.

/// Whether the real gcloud is installed (the `--simulate` runs need it); a loud skip if not.
fn has_gcloud() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("gcloud").is_file()));
    if !found {
        assert!(std::env::var_os("CI").is_none(), "gcloud is not installed, and CI machines must have it");
        eprintln!("\n*** SKIP: gcloud is not installed; this rehearsal test did not run ***\n");
    }
    found
}

#[test]
fn enter_at_the_revision_list_does_not_route_traffic_to_the_serving_revision() {
    if !has_gcloud() {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    let mut pty = Pty::spawn(&sandbox, &["rollback", "revert-traffic", "--env", "production", "--simulate"]);
    pty.expect("type `production` to continue");
    pty.answer("production");
    pty.expect("Run stage `Choose the revision`?");
    pty.answer("y");
    // Labels: creation time, image, traffic share; the serving revision is marked.
    // (needles are ASCII: rexpect hands over one char per byte)
    pty.expect("move to your choice");
    pty.expect("SERVING NOW");
    pty.expect("api:v1.4.0");
    // Nothing is preselected: Enter picks nothing and the list is shown again.
    pty.send("\r");
    pty.expect("Nothing chosen yet");
    pty.expect("api:v1.4.0");
    // Choosing the serving revision on purpose is refused by the runbook's assert.
    pty.send("\x1b[B");
    pty.send("\r");
    pty.expect("already serves 100% of the traffic");
    // The failed assert offers the failure menu (editing the revision is one choice): abort.
    pty.expect("`not_the_serving_revision` failed: [r]etry / [e]dit an answer and retry");
    pty.answer("a");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code (aborted at the failure menu)\n--- transcript\n{transcript}");
    assert!(
        !transcript.contains("services update-traffic"),
        "traffic was routed to the serving revision\n--- transcript\n{transcript}"
    );
    assert!(
        transcript.contains("pegasus-api-00003-zt4 · created ")
            && transcript.contains("· image api:v1.6.0 · 100% of traffic · SERVING NOW")
            && transcript.contains("· image api:v1.5.0 · 0% of traffic\r\n"),
        "revisions are labelled with creation time, image and traffic share\n--- transcript\n{transcript}"
    );
}

#[test]
fn a_failed_backup_is_not_offered_and_ctrl_c_at_the_list_exits_130() {
    if !has_gcloud() {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    // The verify stage's smoke script is checked before anything runs (issue 21).
    crate::support::write_executable(&sandbox.path().join("scripts/smoke_worker_queue.sh"), "#!/bin/sh\n");
    let mut pty = Pty::spawn(
        &sandbox,
        &[
            "rollback",
            "snapshot",
            "--env",
            "production",
            "--simulate",
            "--answer",
            "stop_rollout=done",
            "--answer",
            "keep_healthy_version=done",
            "--answer",
            "failing_migration_file=003_add_course_tags.sql",
        ],
    );
    pty.expect("type `production` to continue");
    pty.answer("production");
    pty.expect("Run stage `Immediate response`?");
    pty.answer("y");
    pty.expect("Run stage `Choose the backup and the revision`?");
    pty.answer("y");
    pty.expect("Backup to restore onto pegasus-db-eu");
    pty.expect("move to your choice");
    pty.expect("T02:00:00.000000Z");
    pty.expect("T02:00:00.000000Z");
    pty.send("\x03");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 130, "Ctrl-C at a choice list\n--- transcript\n{transcript}");
    assert!(transcript.contains("· SUCCESSFUL"), "backups are labelled\n--- transcript\n{transcript}");
    assert!(!transcript.contains("· FAILED"), "a FAILED backup was offered\n--- transcript\n{transcript}");
    assert!(!transcript.contains("IO error"), "Ctrl-C is not an IO error\n--- transcript\n{transcript}");
    assert!(transcript.contains("runbook resume"), "the run is resumable\n--- transcript\n{transcript}");
}

const MIGRATION_PROMPT: &str = r#"
runbook: ask
title: Ask for a migration
procedures:
  go:
    summary: Ask, then record
    stages:
      - name: Ask
        steps:
          - id: migration
            prompt: Failing migration filename
            pattern: '[0-9]+_[a-z_]+\.sql'
            pattern_help: a migration filename such as NNN_name.sql
            example: 001_add_course_tags.sql
          - id: record
            run: [sh, -c, 'echo "$1" > got.txt', x, "{{ steps.migration.output }}"]
            timeout: 10s
"#;

#[test]
fn an_invalid_typed_answer_is_explained_and_asked_again() {
    let sandbox = Sandbox::new();
    sandbox.file("ask.yaml", MIGRATION_PROMPT);
    let mut pty = Pty::spawn(&sandbox, &["ask", "go"]);
    pty.expect("Run stage `Ask`?");
    pty.answer("y");
    pty.expect("Failing migration filename");
    pty.answer("add_tags.sql");
    pty.expect("is not a migration filename such as NNN_name.sql (e.g. 001_add_course_tags.sql)");
    let rejected = pty.expect("please try again");
    // Issue 21: the rejected answer is never echoed as accepted first.
    assert!(!rejected.contains("✔"), "a rejected answer was ticked: {rejected:?}");
    pty.answer("004_fix_tags.sql");
    pty.expect("Run `record` with this command?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert_eq!(read(&sandbox.path().join("got.txt")), "004_fix_tags.sql\n", "--- transcript\n{transcript}");
    assert!(!transcript.contains("^(?:"), "the internal regex was shown\n--- transcript\n{transcript}");
}

#[test]
fn ctrl_c_at_a_prompt_exits_130_with_one_clean_line_and_nothing_to_resume() {
    let sandbox = Sandbox::new();
    sandbox.file("ask.yaml", MIGRATION_PROMPT);
    let mut pty = Pty::spawn(&sandbox, &["ask", "go"]);
    pty.expect("Run stage `Ask`?");
    pty.answer("y");
    pty.expect("Failing migration filename");
    pty.send("\x03");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 130, "exit code\n--- transcript\n{transcript}");
    assert!(!transcript.contains("IO error"), "--- transcript\n{transcript}");
    assert!(!transcript.contains("cannot ask the operator"), "--- transcript\n{transcript}");
    assert_eq!(
        transcript.matches("interrupted at the question").count(),
        1,
        "one line says what happened\n--- transcript\n{transcript}"
    );
    // Issue 21: stopped at its first question, the run has nothing to resume and says so.
    assert!(transcript.contains("Nothing ran and nothing was changed"), "--- transcript\n{transcript}");
    assert!(!transcript.contains("runbook resume"), "--- transcript\n{transcript}");
    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success().stdout();
    let runs: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
    assert_eq!(runs[0]["status"], "interrupted", "{history}");
}

const GUARDED: &str = r#"
runbook: guarded
title: A protected target
environments:
  prod: {protected: true}
procedures:
  go:
    summary: Touch a file, or fail until it may
    stages:
      - name: Touch
        steps:
          - id: touch
            run: [sh, -c, 'test -f allowed && touch done.txt']
            timeout: 10s
"#;

#[test]
fn yes_at_a_terminal_still_asks_for_the_protected_environment_name() {
    let sandbox = Sandbox::new();
    sandbox.file("guarded.yaml", GUARDED);
    std::fs::write(sandbox.path().join("allowed"), "").unwrap_or_else(|e| panic!("{e}"));
    let mut pty = Pty::spawn(&sandbox, &["guarded", "go", "--env", "prod", "--yes"]);
    pty.expect("type `prod` to continue");
    pty.answer("prod");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(exists(&sandbox, "done.txt"), "--- transcript\n{transcript}");
}

#[test]
fn resume_of_a_yes_run_asks_again() {
    let sandbox = Sandbox::new();
    sandbox.file("guarded.yaml", GUARDED);
    sandbox.runbook().args(["guarded", "go", "--env", "prod", "--yes", "--confirm-env", "prod"]).output().status(1);
    let id = sandbox.last_run_id();
    std::fs::write(sandbox.path().join("allowed"), "").unwrap_or_else(|e| panic!("{e}"));
    let mut pty = Pty::spawn(&sandbox, &["resume", &id]);
    pty.expect("type `prod` to continue");
    pty.answer("prod");
    pty.expect("Run stage `Touch`?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(exists(&sandbox, "done.txt"), "--- transcript\n{transcript}");
}

const WITH_INCLUDE: &str = r#"
runbook: nest
title: A stage with an include
procedures:
  inner:
    summary: Two steps
    stages:
      - name: Inner work
        steps:
          - id: inner_a
            run: [touch, a]
            timeout: 10s
          - id: inner_b
            run: [touch, b]
            timeout: 10s
  go:
    summary: Outer, including inner
    stages:
      - name: Outer
        steps:
          - id: before
            run: [touch, before]
            timeout: 10s
          - id: include_inner
            include: inner
"#;

#[test]
fn a_stage_confirmation_shows_included_steps_inline_and_asks_once() {
    let sandbox = Sandbox::new();
    sandbox.file("nest.yaml", WITH_INCLUDE);
    let mut pty = Pty::spawn(&sandbox, &["nest", "go"]);
    pty.expect("Run stage `Outer`?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(
        !transcript.contains("Run stage `Inner work`"),
        "the inner stage asked again\n--- transcript\n{transcript}"
    );
    assert!(exists(&sandbox, "a") && exists(&sandbox, "b"), "--- transcript\n{transcript}");
    let text = transcript.replace('\r', "");
    let start = text.find("Stage 1:").unwrap_or_else(|| panic!("no preview\n--- transcript\n{transcript}"));
    let end = text[start..].find("? Run stage").map_or(text.len(), |i| start + i);
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("stage_confirmation_with_an_include", text[start..end].trim_end());
    });
}

#[test]
fn the_command_using_a_just_made_choice_is_shown_final_before_it_runs() {
    if !has_gcloud() {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    let mut pty = Pty::spawn(&sandbox, &["rollback", "revert-traffic", "--env", "production", "--simulate"]);
    pty.expect("type `production` to continue");
    pty.answer("production");
    pty.expect("Run stage `Choose the revision`?");
    pty.answer("y");
    pty.expect("move to your choice");
    pty.expect("api:v1.4.0");
    // The placeholder line, the serving revision, then the previous one.
    pty.send("\x1b[B");
    pty.send("\x1b[B");
    pty.send("\r");
    pty.expect("--to-revisions=pegasus-api-00002-x9m=100");
    pty.expect("Run stage `Revert Cloud Run traffic`?");
    pty.answer("n");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "stopped before the change\n--- transcript\n{transcript}");
    assert!(!transcript.contains("--to-revisions=<steps."), "--- transcript\n{transcript}");
}

#[test]
fn no_to_the_final_command_of_a_just_chosen_value_runs_nothing() {
    let sandbox = Sandbox::new();
    sandbox.file("select.yaml", SELECT);
    let mut pty = Pty::spawn(&sandbox, &["select", "go"]);
    pty.expect("Run stage `Pick`?");
    pty.answer("y");
    pty.expect("gamma");
    pty.send("\x1b[B");
    pty.send("\r");
    pty.expect("chosen.txt' x alpha");
    pty.expect("Run `record` with this command?");
    pty.answer("");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code (operator stopped)\n--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "chosen.txt"), "--- transcript\n{transcript}");
}

#[test]
fn ctrl_c_at_a_confirmation_exits_130_and_runs_nothing() {
    let sandbox = Sandbox::new();
    sandbox.file("guarded.yaml", GUARDED);
    std::fs::write(sandbox.path().join("allowed"), "").unwrap_or_else(|e| panic!("{e}"));
    // At the protected environment's name...
    let mut pty = Pty::spawn(&sandbox, &["guarded", "go", "--env", "prod"]);
    pty.expect("type `prod` to continue");
    pty.send("\x03");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 130, "exit code\n--- transcript\n{transcript}");
    assert!(!transcript.contains("IO error"), "--- transcript\n{transcript}");
    // ...and at a stage confirmation.
    let mut pty = Pty::spawn(&sandbox, &["guarded", "go", "--env", "prod"]);
    pty.expect("type `prod` to continue");
    pty.answer("prod");
    pty.expect("Run stage `Touch`?");
    pty.send("\x03");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 130, "exit code\n--- transcript\n{transcript}");
    assert!(!transcript.contains("IO error"), "--- transcript\n{transcript}");
    assert!(!exists(&sandbox, "done.txt"), "--- transcript\n{transcript}");
    assert!(transcript.contains("Nothing ran and nothing was changed"), "--- transcript\n{transcript}");
}

/// Issue 15 at a terminal: the approver types the plan id's first 8 characters; a wrong
/// prefix approves nothing (exit 3).
#[test]
fn approve_at_a_terminal_needs_the_plan_id_typed() {
    use super::plans;
    let sandbox = plans::sandbox();
    plans::save_plan(&sandbox, "a@x", &[]).success();
    let id = plans::plan_id(&plans::plan_path(&sandbox));
    let question = "type the first 8 characters of the plan id";
    let mut pty = Pty::spawn(&sandbox, &["approve", "switch.plan"]);
    pty.expect(question);
    pty.answer("00000000");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "a wrong prefix aborts\n--- transcript\n{transcript}");
    let mut pty = Pty::spawn(&sandbox, &["approve", "switch.plan"]);
    pty.expect(question);
    pty.answer(&id[..8]);
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(transcript.contains("Approved plan"), "{transcript}");

    // Apply at a terminal still asks for the protected environment and the secret.
    let mut pty = Pty::spawn(&sandbox, &["apply", "switch.plan"]);
    pty.expect("type `production` to apply the plan");
    pty.answer("production");
    pty.expect("(--token, hidden)");
    pty.answer("typed-t0ken");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert_eq!(plans::switched(&sandbox), "rev-1-next rollback typed-t0ken\n", "{transcript}");
}

#[test]
fn a_refused_direct_run_at_a_terminal_asks_for_a_break_glass_reason() {
    let sandbox = super::plans::sandbox();
    let mut pty = Pty::spawn(&sandbox, &["svc", "switch", "--env", "production"]);
    pty.expect("Reason to break glass");
    pty.answer("");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 2, "no reason, no run\n--- transcript\n{transcript}");
    assert!(transcript.contains("needs an approved plan or a break-glass reason"), "{transcript}");
    assert!(sandbox.journals().is_empty());
}

/// Issue 11: at a terminal, `runbook undo` shows each step's undo and asks like a stage:
/// `s` skips one undo, `y` runs the next; the skipped change is reported as remaining.
#[test]
fn undo_at_a_terminal_confirms_each_undo_like_a_stage() {
    let sandbox = super::undo::sandbox();
    sandbox.runbook().args(["undoable", "go", "--yes"]).output().status(1);
    let id = sandbox.last_run_id();
    let mut pty = Pty::spawn(&sandbox, &["undo", &id]);
    pty.expect("Undo of `two`:");
    pty.expect("two_undo_a: sh -c 'echo two_undo_a >> log.txt'");
    pty.expect("Run stage `undo of two`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("s");
    pty.expect("one_undo: sh -c");
    pty.expect("Run stage `undo of one`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(super::undo::log(&sandbox), ["one", "two", "three", "one_undo original"], "{transcript}");
    assert!(transcript.contains("undo skipped: `two`"), "{transcript}");
    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("undo of two skipped") && shown.contains("status: partly undone"), "{shown}");
}

// Issue 11: resume at a terminal and after one.

fn resume_log(sandbox: &Sandbox) -> Vec<String> {
    std::fs::read_to_string(sandbox.path().join("log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn a_finished_wrapper_stage_is_not_confirmed_again_on_resume() {
    let sandbox = Sandbox::new();
    sandbox.file("r.yaml", super::resume::RUNBOOK);
    crate::support::Run::new(sandbox.path())
        .args(["r", "go", "--yes", "--answer", "ticket=OPS-1", "--answer", "choice=bad"])
        .output()
        .status(1);
    let id = sandbox.last_run_id();
    let mut pty = Pty::spawn(&sandbox, &["resume", &id, "--answer", "choice=good"]);
    pty.expect("Stage done in an earlier attempt: Wrapper");
    pty.expect("Run stage `First`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    pty.expect("Run stage `Second`?");
    pty.expect(STAGE_QUESTION);
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    assert!(!transcript.contains("Run stage `Wrapper`"), "the finished wrapper was confirmed again\n{transcript}");
    assert!(!transcript.contains("Stage skipped"), "{transcript}");
    assert_eq!(resume_log(&sandbox), ["before", "use bad OPS-1", "use good OPS-1"]);
}

/// The issue's `give --answer failing_migration_file=VALUE`: what the operator answered at
/// the terminal is reused by a resume without one, even when the prompt runs again.
#[test]
fn resume_without_a_terminal_never_asks_for_an_answer_given_at_the_terminal() {
    let sandbox = Sandbox::new();
    sandbox.file("r.yaml", super::resume::RUNBOOK);
    let mut pty = Pty::spawn(&sandbox, &["r", "go"]);
    pty.expect("Run stage `Wrapper`?");
    pty.answer("y");
    pty.expect("Type `done` when finished");
    pty.answer("done");
    pty.expect("Ticket id?");
    pty.answer("OPS-7");
    pty.expect("Run stage `First`?");
    pty.answer("y");
    pty.expect("Which one?");
    pty.answer("bad");
    pty.expect("Run stage `Second`?");
    pty.answer("y");
    // The failure menu (issue 11): abort, resumable.
    pty.expect("[a]bort");
    pty.answer("a");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code\n--- transcript\n{transcript}");
    let id = sandbox.last_run_id();
    let again = crate::support::Run::new(sandbox.path()).args(["resume", &id, "--yes", "--from", "note"]).output();
    assert_eq!(again.code(), 1, "{}", again.stderr());
    assert!(
        !again.stderr().contains("--answer ticket") && !again.stderr().contains("acknowledge"),
        "{}",
        again.stderr()
    );
    let done = crate::support::Run::new(sandbox.path()).args(["resume", &id, "--yes", "--answer", "choice=good"]);
    done.output().success();
    assert_eq!(resume_log(&sandbox), ["before", "use bad OPS-7", "before", "use bad OPS-7", "use good OPS-7"]);
}

const WAITS: &str = r#"
runbook: waits
procedures:
  go:
    stages:
      - name: Operation
        steps:
          - id: start
            shell: 'echo op-4711'
            capture: text
            timeout: 10s
          - id: wait
            shell: 'test -e ok && echo "waited $1" >> log'
            args: ["{{ steps.start.output }}"]
            effect: read
            timeout: 10s
"#;

#[test]
fn a_resumed_stage_preview_shows_what_earlier_attempts_produced_and_from_is_confirmed() {
    let sandbox = Sandbox::new();
    sandbox.file("waits.yaml", WAITS);
    crate::support::Run::new(sandbox.path()).args(["waits", "go", "--yes"]).output().status(1);
    let id = sandbox.last_run_id();
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("{e}"));
    // --from at a terminal asks first; `n` runs nothing.
    let mut pty = Pty::spawn(&sandbox, &["resume", &id, "--from", "start"]);
    pty.expect("Start again at step `start`?");
    pty.answer("n");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code\n--- transcript\n{transcript}");
    assert!(resume_log(&sandbox).is_empty(), "{transcript}");
    let mut pty = Pty::spawn(&sandbox, &["resume", &id]);
    pty.expect("Run stage `Operation`?");
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "exit code\n--- transcript\n{transcript}");
    let preview = transcript.split("Run stage `Operation`?").next().unwrap_or_default();
    assert!(preview.contains("op-4711") && !preview.contains("<steps.start"), "{preview}");
    assert_eq!(resume_log(&sandbox), ["waited op-4711"]);
}

/// Issue 22: a run of an approved plan resumed at a terminal goes on as `apply` runs it: the
/// approval confirms the stages (no stage can be skipped) and a failure offers no menu to edit
/// an answer or skip the step; it stops, resumable.
#[test]
fn a_resumed_applied_run_at_a_terminal_offers_no_skip_and_no_edit() {
    use super::plans;
    let sandbox = plans::sandbox();
    sandbox.file("svc.yaml", super::approvals::GATED);
    plans::save_plan(&sandbox, "a@x", &[]).success();
    plans::approve(&sandbox, "b@x").success();
    plans::apply(&sandbox, "a@x").status(1);
    let id = sandbox.last_run_id();
    let pty = Pty::spawn(&sandbox, &["resume", &id, "--confirm-env", "production"]);
    let (code, transcript) = pty.finish();
    assert_eq!(code, 1, "the gate fails again\n--- transcript\n{transcript}");
    assert!(transcript.contains("the same steps and values as approved"), "{transcript}");
    assert!(!transcript.contains("Run stage") && !transcript.contains("[s]kip"), "{transcript}");
    assert_eq!(plans::switched(&sandbox), "", "{transcript}");
}

/// A verify rehearsal whose errors stay high (issue 26): at a terminal, the watch shows its
/// samples, runs out after the rehearsal's 5 s and offers the failure menu; abort is exit 3.
#[test]
fn a_watch_that_runs_out_in_a_rehearsal_offers_the_failure_menu() {
    if !has_gcloud() {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    let smoke =
        std::fs::read_to_string(crate::support::repo_root().join("examples/pegasus/scripts/smoke_worker_queue.sh"))
            .unwrap_or_else(|e| panic!("smoke script: {e}"));
    crate::support::write_executable(&sandbox.path().join("scripts/smoke_worker_queue.sh"), &smoke);
    // The built-in scenario with the fault (a scenario file is whole: its projects too).
    let printed = Command::new(binary()).args(["simulate", "--print-scenario"]).output();
    let printed = printed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let mut scenario: serde_json::Value = serde_json::from_str(&printed).unwrap_or_else(|e| panic!("scenario: {e}"));
    scenario["faults"] = serde_json::json!({"errors_stay_high": true});
    sandbox.file("scenarios/errors.json", &scenario.to_string());
    let mut pty = Pty::spawn(
        &sandbox,
        &["rollback", "verify", "--env", "production", "--simulate", "--scenario", "scenarios/errors.json"],
    );
    pty.expect("type `production` to continue");
    pty.answer("production");
    pty.expect("Run stage `Post-rollback validation`?");
    pty.answer("y");
    pty.expect("`within: 5s` ran out");
    pty.expect("`error_rate` failed: [r]etry");
    pty.answer("a");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 3, "exit code (aborted at the failure menu)\n--- transcript\n{transcript}");
    // Each sample shows its `value:` (the counts the fake's series add up to), not an error.
    assert!(
        transcript.contains("requests were 5xx (at most 1.0% passes)") && transcript.contains("not passing"),
        "the samples are shown\n--- transcript\n{transcript}"
    );
}
