//! Faults and hostile conditions (issue 9): a hostile environment, runaway templates, a
//! full journal disk, an unwritable state dir, path-like run ids, children that die or
//! close their output, SIGHUP, SIGTERM and a second Ctrl-C during cleanup.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Sandbox, live_processes};

const HOSTILE: &str = r#"runbook: hostile
title: Hostile
params:
  word:
    type: string
    required: false
    default: x
procedures:
  plain:
    summary: Reads no env var in a template
    stages:
      - name: S
        steps:
          - id: raw
            run: [sh, -c, 'printf "%s" "$BAD_BYTES" > inherited']
            timeout: 5s
  reads-env:
    summary: Reads env.BAD_BYTES
    stages:
      - name: S
        steps:
          - id: first
            run: [touch, first-ran]
            timeout: 5s
          - id: uses
            run: [echo, "{{ env.BAD_BYTES }}"]
            timeout: 5s
  loop:
    summary: Nine nested loops, a billion iterations
    params: [word]
    stages:
      - name: S
        steps:
          - id: first_loop
            run: [touch, first-ran]
            timeout: 5s
          - id: big
            run: [echo, "LOOP"]
            timeout: 5s
  recursion:
    summary: A macro that calls itself
    stages:
      - name: S
        steps:
          - id: first_rec
            run: [touch, first-ran]
            timeout: 5s
          - id: deep
            run: [echo, "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"]
            timeout: 5s
"#;

fn hostile() -> Sandbox {
    let list = "[0,1,2,3,4,5,6,7,8,9]";
    let open: String = (0..9).map(|i| format!("{{% for a{i} in {list} %}}")).collect();
    let close = "{% endfor %}".repeat(9);
    let sandbox = Sandbox::new();
    sandbox.file("hostile.yaml", &HOSTILE.replace("LOOP", &format!("{open}x{{{{ params.word }}}}{close}")));
    sandbox
}

fn bad_bytes() -> &'static std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(b"caf\xe9\xff")
}

#[test]
fn non_utf8_env_var_that_no_template_reads_does_not_panic_and_reaches_the_child_raw() {
    let sandbox = hostile();
    sandbox.runbook().env("BAD_BYTES", bad_bytes()).args(["hostile", "plain", "--dry-run"]).output().success();
    sandbox.runbook().env("BAD_BYTES", bad_bytes()).args(["hostile", "plain", "--yes"]).output().success();
    let inherited = std::fs::read(sandbox.path().join("inherited")).unwrap_or_default();
    assert_eq!(inherited, b"caf\xe9\xff", "the child inherits the variable byte for byte");
}

#[test]
fn non_utf8_env_var_read_by_a_template_is_refused_naming_it_before_anything_runs() {
    let sandbox = hostile();
    for mode in ["--yes", "--dry-run"] {
        let out =
            sandbox.runbook().env("BAD_BYTES", bad_bytes()).args(["hostile", "reads-env", mode]).output().status(2);
        assert!(
            out.stderr()
                .contains("step `uses` reads env.BAD_BYTES, but the environment variable BAD_BYTES is not valid UTF-8"),
            "{}",
            out.stderr()
        );
    }
    assert!(!sandbox.path().join("first-ran").exists(), "nothing ran");
}

#[test]
fn runaway_template_loop_fails_before_the_first_step_in_bounded_time() {
    let sandbox = hostile();
    for mode in ["--yes", "--dry-run"] {
        let started = Instant::now();
        let out = sandbox.runbook().args(["hostile", "loop", mode]).output().status(2);
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        assert!(
            out.stderr().contains("step `big`: cannot render `run[1]`: the template does too much work"),
            "{}",
            out.stderr()
        );
    }
    assert!(!sandbox.path().join("first-ran").exists(), "nothing ran");
    assert!(sandbox.journals().is_empty(), "no run was recorded");
}

#[test]
fn self_calling_macro_fails_before_the_first_step() {
    let sandbox = hostile();
    let out = sandbox.runbook().args(["hostile", "recursion", "--yes"]).output().status(2);
    assert!(
        out.stderr().contains("step `deep`: cannot render `run[1]`: the template nests too deep"),
        "{}",
        out.stderr()
    );
    assert!(!sandbox.path().join("first-ran").exists(), "nothing ran");
}

const JOURNAL: &str = r#"runbook: journal
title: Journal
procedures:
  go:
    summary: A read step that fills the disk, then a mutating step
    stages:
      - name: S
        steps:
          - id: fill
            run: [sh, -c, 'if [ -n "$FILL" ]; then cat /dev/zero > "$FILL" 2>/dev/null; fi; head -c 6000 /dev/zero | tr "\0" a']
            effect: read
            capture: text
          - id: mutate
            run: [touch, mutated]
            timeout: 5s
"#;

/// Runs runbook under bash with a file-size limit of `blocks` KiB (SIGXFSZ ignored, so a
/// write past it fails with EFBIG as on a full disk).
fn limited(sandbox: &Sandbox, blocks: u32, args: &[&str]) -> crate::support::Run {
    let script = format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\"");
    let mut run = sandbox.runbook();
    let program = run.cmd.get_program().to_owned();
    run.cmd = std::process::Command::new("bash");
    run.cmd.current_dir(sandbox.path());
    for var in ["RUNBOOK_DIR", "GITHUB_ACTIONS", "RUST_LOG", "XDG_STATE_HOME"] {
        run.cmd.env_remove(var);
    }
    run.cmd.env("RUNBOOK_STATE_DIR", sandbox.path().join("state")).env("NO_COLOR", "1");
    run.cmd.arg("-c").arg(script).arg(program).args(args);
    run
}

/// A small tmpfs over the sandbox's state dir, when this process may mount one (root in
/// CI); `None` otherwise.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn assert_whole_records(journal: &Path) {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    assert!(text.ends_with('\n'), "the journal ends with a whole record");
    for line in text.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "torn line: {line}");
    }
}

/// The journal's writes start failing in the middle of the run: the step after must not
/// start, the file must end with a whole record, and the run must resume once space is back.
fn journal_full_mid_run(use_tmpfs: bool) {
    let sandbox = Sandbox::new();
    sandbox.file("journal.yaml", JOURNAL);
    let state = sandbox.path().join("state");
    let tmpfs = if use_tmpfs { Tmpfs::mount(&state) } else { None };
    let fill = state.join("filler");
    // A real full disk where we may mount one; otherwise a file-size limit, which fails
    // the same write(2) calls with EFBIG.
    let out = match &tmpfs {
        Some(_) => sandbox.runbook().env("FILL", &fill).args(["journal", "go", "--yes"]).output(),
        None => limited(&sandbox, 4, &["journal", "go", "--yes"]).env("FILL", &fill).output(),
    };
    let out = out.status(1);
    assert!(out.stderr().contains("stopped before step `mutate` ran: cannot write the journal"), "{}", out.stderr());
    assert!(out.stderr().contains("the record step_finished of `fill` is missing"), "{}", out.stderr());
    assert!(out.stderr().contains("The run can be continued with: runbook resume"), "{}", out.stderr());
    assert!(!sandbox.path().join("mutated").exists(), "the mutating step did not run");
    let journal = sandbox.journals().pop().unwrap_or_default();
    assert_whole_records(&journal);
    let id = sandbox.last_run_id();
    let shown = sandbox.runbook().args(["show", &id]).output().success();
    assert!(shown.stdout().contains("status: interrupted"), "{}", shown.stdout());
    // Space is back: the run resumes and finishes.
    let _ = std::fs::remove_file(&fill);
    sandbox.runbook().env("FILL", "").args(["resume", &id, "--yes"]).output().success();
    assert!(sandbox.path().join("mutated").exists());
    drop(tmpfs);
}

#[test]
fn journal_disk_full_mid_run_stops_before_the_next_step_and_is_resumable() {
    journal_full_mid_run(true);
}

#[test]
fn journal_file_size_limit_mid_run_stops_before_the_next_step_and_is_resumable() {
    journal_full_mid_run(false);
}

#[test]
fn resuming_a_journal_with_a_torn_last_line_keeps_it_readable() {
    let sandbox = Sandbox::new();
    sandbox.file("journal.yaml", &JOURNAL.replace("[touch, mutated]", "[sh, -c, 'test -e go-on && touch mutated']"));
    sandbox.runbook().env("FILL", "").args(["journal", "go", "--yes"]).output().status(1);
    let journal = sandbox.journals().pop().unwrap_or_default();
    // A crash in the middle of a write.
    let mut text = std::fs::read_to_string(&journal).unwrap_or_default();
    text.push_str(r#"{"record":"event","ts":"2026-01-01T00:00:00Z","event":"step_sta"#);
    std::fs::write(&journal, text).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sandbox.path().join("go-on"), "").unwrap_or_else(|e| panic!("{e}"));
    let id = sandbox.last_run_id();
    sandbox.runbook().env("FILL", "").args(["resume", &id, "--yes"]).output().success();
    assert_whole_records(&journal);
    let shown = sandbox.runbook().args(["show", &id]).output().success();
    assert!(shown.stdout().contains("status: done"), "{}", shown.stdout());
}

#[test]
fn journal_disk_full_before_the_run_refuses_with_exit_2_and_runs_nothing() {
    let sandbox = Sandbox::new();
    sandbox.file("journal.yaml", JOURNAL);
    let out = limited(&sandbox, 0, &["journal", "go", "--yes"]).env("FILL", "").output().status(2);
    assert!(out.stderr().contains("cannot write the"), "{}", out.stderr());
    assert!(!sandbox.path().join("mutated").exists());
    let leftovers: Vec<_> = std::fs::read_dir(sandbox.path().join("state/runs"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.iter().all(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0)), "{leftovers:?}");
}

#[test]
fn state_dir_unwritable_is_a_clear_error_before_anything_runs() {
    let sandbox = Sandbox::new();
    sandbox.file("journal.yaml", JOURNAL);
    // Root ignores permission bits, so the state dir sits below a regular file instead.
    let blocker = sandbox.path().join("blocker");
    std::fs::write(&blocker, "").unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox
        .runbook()
        .env("RUNBOOK_STATE_DIR", blocker.join("state"))
        .env("FILL", "")
        .args(["journal", "go", "--yes"])
        .output()
        .status(2);
    assert!(out.stderr().contains("cannot create"), "{}", out.stderr());
    assert!(out.stderr().lines().count() <= 2, "one clear line: {}", out.stderr());
    assert!(!sandbox.path().join("mutated").exists());
}

#[test]
fn run_ids_with_path_separators_are_refused_before_any_file_is_opened() {
    let sandbox = Sandbox::new();
    sandbox.file("journal.yaml", JOURNAL);
    sandbox.runbook().env("FILL", "").args(["journal", "go", "--yes"]).output().success();
    // A real journal placed outside the state dir, where `../../x` would point.
    let journal = sandbox.journals().pop().unwrap_or_default();
    std::fs::copy(&journal, sandbox.path().join("x.jsonl")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(sandbox.path().join("mutated")).unwrap_or_else(|e| panic!("{e}"));
    for args in [vec!["show", "../../x"], vec!["resume", "../../x", "--yes"], vec!["show", "/etc/passwd"]] {
        let out = sandbox.runbook().env("FILL", "").args(&args).output().status(2);
        assert!(out.stderr().contains("invalid run id"), "{args:?}: {}", out.stderr());
    }
    let long = "a".repeat(5000);
    let out = sandbox.runbook().args(["show", &long]).output().status(2);
    assert!(out.stderr().len() < 400, "the id is not echoed whole: {}", out.stderr());
    assert!(!sandbox.path().join("mutated").exists(), "resume ran nothing");
}

const CHILDREN: &str = r#"runbook: children
title: Children
procedures:
  killed:
    summary: The child is killed by a signal
    stages:
      - name: S
        steps:
          - id: victim
            shell: 'kill -9 $$'
            timeout: 5s
          - id: after
            run: [touch, after]
            timeout: 5s
  closes:
    summary: The child closes stdout early and goes on
    stages:
      - name: S
        steps:
          - id: closer
            shell: 'echo before; exec 1>&-; sleep 0.5; touch finished'
            timeout: 5s
  long:
    summary: A long step with a setsid grandchild, and one that must not run
    stages:
      - name: S
        steps:
          - id: long
            shell: 'trap "" TERM; setsid sleep SLEEP & touch started; sleep SLEEP & wait'
            timeout: 10m
          - id: never
            run: [touch, never]
            timeout: 5s
  escape:
    summary: setsid grandchildren and a timeout
    stages:
      - name: S
        steps:
          - id: escape
            shell: 'setsid sleep SLEEP & setsid sh -c "sleep SLEEP & sleep SLEEP" & sleep SLEEP'
            timeout: 1s
  daemon:
    summary: A step that ends at once and leaves a setsid daemon behind
    stages:
      - name: S
        steps:
          - id: spawner
            shell: 'setsid sh -c "sleep SLEEP & sleep SLEEP & touch up; wait" >/dev/null 2>&1 & while [ ! -e up ]; do sleep 0.01; done'
            timeout: 5s
          - id: next
            run: [touch, after]
            timeout: 5s
  probed:
    summary: A read step, run by --probe, that leaves a setsid daemon behind
    stages:
      - name: S
        steps:
          - id: reader
            shell: 'setsid sh -c "sleep SLEEP & touch up; wait" >/dev/null 2>&1 & while [ ! -e up ]; do sleep 0.01; done; echo read'
            effect: read
            timeout: 5s
"#;

fn children(sleep: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file("children.yaml", &CHILDREN.replace("SLEEP", sleep));
    sandbox
}

#[test]
fn a_child_killed_by_a_signal_fails_its_step_and_names_the_signal() {
    let sandbox = children("1");
    let out = sandbox.runbook().args(["children", "killed", "--yes"]).output().status(1);
    assert!(out.stderr().contains("killed by signal 9"), "{}", out.stderr());
    assert!(!sandbox.path().join("after").exists());
}

#[test]
fn a_child_closing_stdout_early_is_waited_for_not_taken_as_finished() {
    let sandbox = children("1");
    let out = sandbox.runbook().args(["children", "closes", "--yes"]).output().success();
    assert!(out.stdout().contains("before"), "{}", out.all());
    assert!(sandbox.path().join("finished").exists(), "the step ran to its end");
}

#[test]
fn a_timeout_also_ends_setsid_grandchildren() {
    let sandbox = children("601.13");
    sandbox.runbook().args(["children", "escape", "--yes"]).output().status(1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(live_processes("sleep 601.13"), Vec::<String>::new(), "a setsid grandchild survived");
}

/// The cheap "any child left?" check after a step that exited on its own must still find
/// a double-forked daemon, which runbook adopted as subreaper.
#[test]
fn a_setsid_daemon_left_by_a_step_that_exited_normally_is_ended() {
    let sandbox = children("601.17");
    sandbox.runbook().args(["children", "daemon", "--yes"]).output().success();
    assert!(sandbox.path().join("after").exists(), "the next step ran");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(live_processes("sleep 601.17"), Vec::<String>::new(), "a setsid daemon survived");
}

/// `--probe` runs read steps before anything is shown; what they leave behind goes too
/// (SPEC rule 8), as in a run.
#[test]
fn a_setsid_daemon_left_by_a_probed_read_step_is_ended() {
    let sandbox = children("601.19");
    sandbox.runbook().args(["children", "probed", "--dry-run", "--probe"]).output().success();
    assert!(sandbox.path().join("up").exists(), "the read step ran");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(live_processes("sleep 601.19"), Vec::<String>::new(), "a setsid daemon survived the probe");
}

/// Starts `children long`, waits for its step to start, and returns the running runbook.
fn start_long(sandbox: &Sandbox) -> Child {
    let mut run = sandbox.runbook().args(["children", "long", "--yes"]);
    run.cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = run.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let started = sandbox.path().join("started");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.exists(), "the step started");
    std::thread::sleep(Duration::from_millis(200));
    child
}

fn signal(child: &Child, name: &str) {
    let sent = std::process::Command::new("kill").args([format!("-{name}"), child.id().to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{name}");
}

fn assert_interrupted_cleanly(sandbox: &Sandbox, child: Child, needle: &str) {
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("wait: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("The run can be continued with: runbook resume"), "{stderr}");
    assert!(!sandbox.path().join("never").exists(), "the next step did not run");
    assert_eq!(live_processes(needle), Vec::<String>::new(), "orphans left behind");
    let journal = sandbox.journals().pop().unwrap_or_default();
    assert_whole_records(&journal);
    let text = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(text.contains(r#""status":"interrupted""#), "the interruption is recorded: {text}");
}

#[test]
fn sighup_ends_the_step_and_its_setsid_grandchild_records_and_exits_130() {
    let sandbox = children("602.11");
    let child = start_long(&sandbox);
    signal(&child, "HUP");
    assert_interrupted_cleanly(&sandbox, child, "sleep 602.11");
}

#[test]
fn sigterm_ends_the_step_and_its_setsid_grandchild_records_and_exits_130() {
    let sandbox = children("603.11");
    let child = start_long(&sandbox);
    signal(&child, "TERM");
    assert_interrupted_cleanly(&sandbox, child, "sleep 603.11");
}

#[test]
fn a_second_ctrl_c_during_cleanup_leaves_no_orphan_and_no_torn_journal() {
    // The step ignores SIGTERM, so cleanup waits out the grace period before SIGKILL;
    // the second Ctrl-C lands inside it.
    let sandbox = children("604.11");
    let child = start_long(&sandbox);
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "INT");
    assert_interrupted_cleanly(&sandbox, child, "sleep 604.11");
}
