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

const STAGE_QUESTION: &str = "[y]es / [N]o, stop here / [s]kip this stage";

/// A `runbook` process on a pseudo-terminal, with everything it has shown so far.
struct Pty {
    session: PtySession,
    /// Raw bytes: rexpect hands over one `char` per byte, so UTF-8 is rebuilt here.
    shown: Vec<u8>,
}

impl Pty {
    /// Starts `runbook ARGS...` in the sandbox with the same environment as `support::Run`.
    fn spawn(sandbox: &Sandbox, args: &[&str]) -> Pty {
        let mut cmd = Command::new(binary());
        cmd.current_dir(sandbox.path()).args(args);
        for var in ["RUNBOOK_DIR", "GITHUB_ACTIONS", "RUST_LOG", "XDG_STATE_HOME", "CLICOLOR_FORCE"] {
            cmd.env_remove(var);
        }
        cmd.env("RUNBOOK_STATE_DIR", sandbox.path().join("state"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env("LINES", "40")
            .env("TERM", "xterm");
        let options = Options::new().timeout_ms(Some(TIMEOUT_MS)).strip_ansi_escape_codes(true);
        let session = rexpect::session::spawn_with_options(cmd, options)
            .unwrap_or_else(|e| panic!("spawn runbook on a pty: {e}"));
        Pty { session, shown: Vec::new() }
    }

    /// Waits until `needle` is shown.
    #[track_caller]
    fn expect(&mut self, needle: &str) {
        match self.session.exp_string(needle) {
            Ok(before) => {
                self.record(&before);
                self.record(needle);
            }
            Err(e) => panic!("waiting for {needle:?}: {e}\n--- transcript\n{}", self.transcript()),
        }
    }

    /// Types `text` and Enter.
    #[track_caller]
    fn answer(&mut self, text: &str) {
        self.send(&format!("{text}\r"));
    }

    /// Sends raw keys (escape sequences included).
    #[track_caller]
    fn send(&mut self, keys: &str) {
        self.session.send(keys).unwrap_or_else(|e| panic!("send {keys:?}: {e}\n--- transcript\n{}", self.transcript()));
        self.session.flush().unwrap_or_else(|e| panic!("flush: {e}\n--- transcript\n{}", self.transcript()));
    }

    /// Waits for the process to end; returns its exit code and the whole transcript.
    #[track_caller]
    fn finish(mut self) -> (i32, String) {
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
    fn transcript(&self) -> String {
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
    pty.send("\x1b[B");
    pty.send("\r");
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
