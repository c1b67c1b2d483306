//! Issue 23: what came from outside is shown escaped and bounded, the command confirmed is the
//! command that runs; plan files are read like runbooks; a forged start-up cache record never
//! makes `validate` pass; a param variable that is not text is named, never echoed.

use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use sha2::{Digest as _, Sha256};

use crate::support::{Finished, Sandbox, binary};

/// A param holding a line break, a carriage return, a colour escape and a bell.
const HOSTILE: &str = "line1\nline2\r\u{1b}[31mred\u{7}";
/// The same in bash's ANSI-C quoting, as it is shown.
const QUOTED: &str = r"$'line1\nline2\r\e[31mred\a'";

const ECHO: &str = r#"runbook: esc
title: Escaping
params:
  text: {type: string}
procedures:
  go:
    summary: Go
    params: [text]
    stages:
      - name: S
        steps:
          - {id: one, run: [sh, -c, 'printf %s "$1" > ran.bin', x, "{{ params.text }}"], effect: mutate, timeout: 10s}
"#;

/// Control characters other than line breaks: none may reach the terminal from our text.
#[track_caller]
fn assert_no_raw_controls(what: &str, text: &str) {
    let raw: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(raw.is_empty(), "{what}: raw control characters {raw:?} in\n{text}");
}

#[test]
fn a_param_with_control_characters_is_shown_quoted_and_the_shown_command_is_what_runs() {
    let sandbox = Sandbox::new();
    sandbox.file("esc.yaml", ECHO);
    let dry = sandbox.runbook().args(["esc", "go", "--text", HOSTILE, "--dry-run"]).output().success();
    assert_no_raw_controls("dry-run", &dry.all());
    assert!(dry.stdout().contains(&format!("text = {QUOTED}")), "{}", dry.stdout());
    assert!(dry.stdout().contains(&format!("x {QUOTED}")), "{}", dry.stdout());

    let run = sandbox.runbook().args(["esc", "go", "--text", HOSTILE, "--yes"]).output().success();
    assert_no_raw_controls("run", &run.all());
    assert!(run.stderr().contains(&format!("ran.bin' x {QUOTED}")), "{}", run.stderr());
    // What ran got the bytes given, and the shown word, pasted into bash, gives them too.
    let ran = std::fs::read(sandbox.path().join("ran.bin")).unwrap_or_default();
    assert_eq!(ran, HOSTILE.as_bytes());
    let pasted = std::process::Command::new("bash")
        .args(["-c", &format!("printf %s {QUOTED}")])
        .output()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    assert_eq!(pasted.stdout, HOSTILE.as_bytes());

    let id = sandbox.last_run_id();
    let show = sandbox.runbook().args(["show", &id]).output().success();
    assert_no_raw_controls("show", &show.all());
    assert!(show.stdout().contains(&format!("--text {QUOTED}")), "{}", show.stdout());

    sandbox.runbook().args(["esc", "go", "--text", HOSTILE, "--save-plan", "esc.plan"]).output().success();
    let plan = sandbox.runbook().args(["show-plan", "esc.plan"]).output().success();
    assert_no_raw_controls("show-plan", &plan.all());
    assert!(plan.stdout().contains(QUOTED), "{}", plan.stdout());
}

/// At a real terminal, the stage confirmation shows the quoted form, and after `y` the child
/// gets the bytes given.
#[test]
fn the_stage_confirmation_shows_the_quoted_command_that_then_runs() {
    let sandbox = Sandbox::new();
    sandbox.file("esc.yaml", ECHO);
    let mut pty = super::pty::Pty::spawn(&sandbox, &["esc", "go", "--text", HOSTILE]);
    pty.expect(&format!("ran.bin' x {QUOTED}"));
    pty.expect(super::pty::STAGE_QUESTION);
    pty.answer("y");
    let (code, transcript) = pty.finish();
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(std::fs::read(sandbox.path().join("ran.bin")).unwrap_or_default(), HOSTILE.as_bytes());
}

/// Names and texts of the runbook file reach the run's view and `show` escaped: a stage name
/// that moves the cursor up or a manual text that sets the window title acts on nothing.
#[test]
fn escape_sequences_in_a_runbook_file_are_shown_escaped_while_it_runs_and_in_show() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "hostile.yaml",
        r#"runbook: hostile
title: Hostile
procedures:
  go:
    summary: Go
    stages:
      - name: "Stage \r\e[1Aname"
        steps:
          - {id: one, name: "Step \e[31mred", run: [echo, hi], effect: read}
          - {id: m, manual: "Do \e]0;title\a this\r overwritten"}
"#,
    );
    let run = sandbox.runbook().args(["hostile", "go", "--yes"]).output().success();
    assert_no_raw_controls("run", &run.all());
    assert!(run.stderr().contains(r"Stage \r\u001b[1Aname"), "{}", run.stderr());
    let show = sandbox.runbook().args(["show", &sandbox.last_run_id()]).output().success();
    assert_no_raw_controls("show", &show.all());
}

/// JSON on stdout stays valid and means the same: the direction mark and C1 control that
/// serde writes as they are inside a string are printed as JSON escapes of themselves.
#[test]
fn json_output_with_direction_marks_and_c1_controls_stays_valid_json() {
    let sandbox = Sandbox::new();
    sandbox.file("esc.yaml", ECHO);
    let value = "a\u{202e}b\u{85}c";
    let out = sandbox.runbook().args(["esc", "go", "--text", value, "--yes", "--output", "json"]).output().success();
    assert_no_raw_controls("json", &out.stdout());
    assert!(!out.stdout().contains('\u{202e}'), "{}", out.stdout());
    let lines: Vec<serde_json::Value> =
        out.stdout().lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    assert!(lines.iter().any(|event| event.to_string().contains(r"\u202e")), "{}", out.stdout());
    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success();
    serde_json::from_str::<serde_json::Value>(&history.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}", history.stdout()));
}

/// A stored plan is any file: one made by hand with a carriage return in its rendering (its
/// id is only the hash of its content) is shown with the control characters visible.
#[test]
fn a_hand_made_plan_with_control_characters_is_shown_escaped() {
    let sandbox = Sandbox::new();
    sandbox.file("esc.yaml", ECHO);
    sandbox.runbook().args(["esc", "go", "--text", "plain", "--save-plan", "esc.plan"]).output().success();
    let path = sandbox.path().join("esc.plan");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let json = text.split_once('\n').map(|(_, json)| json).unwrap_or_default();
    let mut body: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
    body["shown"] = serde_json::Value::String("safe\r\u{1b}[2K\u{1b}[1Aevil\n".into());
    let json = serde_json::to_string_pretty(&body).unwrap_or_default();
    let id = hex::encode(Sha256::digest(json.as_bytes()));
    std::fs::write(&path, format!("runbook plan {id}\n{json}")).unwrap_or_else(|e| panic!("{e}"));
    let plan = sandbox.runbook().args(["show-plan", "esc.plan"]).output().success();
    assert_no_raw_controls("show-plan", &plan.all());
    assert!(plan.stdout().contains(r"safe\r\u001b[2K\u001b[1Aevil"), "{}", plan.stdout());
}

#[track_caller]
fn assert_escaped_and_cut(out: &Finished) {
    let stderr = out.stderr();
    assert_no_raw_controls("refusal", &stderr);
    assert!(stderr.contains("more characters)"), "{stderr}");
    assert!(stderr.len() < 1500, "{} bytes: {stderr}", stderr.len());
}

#[test]
fn a_refused_command_line_value_is_echoed_escaped_and_cut() {
    let sandbox = Sandbox::new();
    let long = format!("\u{1b}[31m\r{}", "x".repeat(5000));
    // Refused by runbook (the state URL) and by the argument parser (a lease, a command).
    let url = format!("gs://b/{long}");
    assert_escaped_and_cut(&sandbox.runbook().args(["--state-url", &url, "history"]).output().status(2));
    assert_escaped_and_cut(&sandbox.runbook().env("RUNBOOK_STATE_URL", &url).args(["history"]).output().status(2));
    assert_escaped_and_cut(&sandbox.runbook().args(["--lock-lease", &long, "history"]).output().status(2));
    let out = sandbox.runbook().args([long.as_str()]).output().status(2);
    assert_no_raw_controls("unknown command", &out.stderr());
}

/// A FIFO and a link to `/dev/zero` where a plan is expected: refused at once (exit 2, the
/// path named), never waited on or read without end. Run under `timeout` so a hang fails.
#[test]
fn a_plan_path_that_is_a_fifo_or_a_link_to_dev_zero_is_refused_at_once() {
    let sandbox = Sandbox::new();
    sandbox.file("esc.yaml", ECHO);
    let fifo = sandbox.path().join("fifo.plan");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", sandbox.path().join("zero.plan")).unwrap_or_else(|e| panic!("{e}"));
    for name in ["fifo.plan", "zero.plan"] {
        for args in [vec!["show-plan", name], vec!["approve", name, "--plan-id", "12345678"], vec!["apply", name]] {
            let started = std::time::Instant::now();
            let out = sandbox.runbook().args(&args).wrapped("timeout", &["20"]).output().status(2);
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "{args:?} took {:?}", started.elapsed());
            assert!(
                out.stderr().contains(name) && out.stderr().contains("not a regular file"),
                "{args:?}: {}",
                out.stderr()
            );
        }
    }
}

/// A FIFO at `path`, made by the real `mkfifo`.
fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status().unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(made.success());
}

/// A FIFO at `fifo` and a link to `/dev/zero` at `zero`.
fn fifo_and_dev_zero(fifo: &std::path::Path, zero: &std::path::Path) {
    mkfifo(fifo);
    std::os::unix::fs::symlink("/dev/zero", zero).unwrap_or_else(|e| panic!("{e}"));
}

/// Attack on issue 23 (atk2): a scenario path that is a FIFO hung `simulate` and
/// `--simulate`; a link to `/dev/zero` was read without bound (4 GB of memory in 4 s). A
/// scenario is read like a runbook or a plan: a regular file, bounded, refused at once.
#[test]
fn a_scenario_path_that_is_a_fifo_or_a_link_to_dev_zero_is_refused_at_once() {
    let sandbox = Sandbox::new();
    sandbox.file("esc.yaml", ECHO);
    fifo_and_dev_zero(&sandbox.path().join("fifo.yaml"), &sandbox.path().join("zero.yaml"));
    for name in ["fifo.yaml", "zero.yaml"] {
        for args in [
            vec!["simulate", "--scenario", name],
            vec!["esc", "go", "--text", "x", "--yes", "--simulate", "--scenario", name],
        ] {
            let started = std::time::Instant::now();
            let out = sandbox.runbook().args(&args).wrapped("timeout", &["20"]).output().status(2);
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "{args:?} took {:?}", started.elapsed());
            assert!(
                // A run resolves the path first: the link is named by its target.
                (out.stderr().contains(name) || out.stderr().contains("/dev/zero"))
                    && out.stderr().contains("not a regular file"),
                "{args:?}: {}",
                out.stderr()
            );
            assert!(!sandbox.path().join("ran.bin").exists(), "nothing ran");
        }
    }
}

/// Attack on issue 23 (atk2): an environment's `signers:` file was read whole at load time
/// by every command that checks the runbook: a FIFO hung `validate` (and `list`, and a run),
/// a link to `/dev/zero` took 2.3 GB in 3 s. It is refused at its file:line:col at once.
#[test]
fn a_signers_file_that_is_a_fifo_or_a_link_to_dev_zero_is_refused_at_once() {
    let sandbox = Sandbox::new();
    fifo_and_dev_zero(&sandbox.path().join("runbooks/fifo_signers"), &sandbox.path().join("runbooks/zero_signers"));
    for name in ["fifo_signers", "zero_signers"] {
        sandbox.file(
            "sv.yaml",
            &format!(
                "runbook: sv\ntitle: t\nenvironments:\n  prod: {{approvals: {{count: 1, signers: {name}}}}}\n{}",
                GOOD.split_once("procedures:").map(|(_, p)| format!("procedures:{p}")).unwrap_or_default()
            ),
        );
        let started = std::time::Instant::now();
        let out =
            sandbox.runbook().args(["validate", "runbooks/sv.yaml"]).wrapped("timeout", &["20"]).output().status(1);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{name} took {:?}", started.elapsed());
        assert!(
            out.stderr().contains(&format!("cannot read the signers file `{name}`: not a regular file"))
                && out.stderr().contains("sv.yaml:4:"),
            "{name}: {}",
            out.stderr()
        );
    }
}

/// Attack on issue 23 (atk2): the folder's `runbook-state.json` was read whole by every
/// command that opens the store: a FIFO hung `history`, a link to `/dev/zero` took 3.5 GB
/// in 3 s. Refused at once like a plan file (exit 2).
#[test]
fn a_state_config_file_that_is_a_fifo_or_a_link_to_dev_zero_is_refused_at_once() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    let config = sandbox.path().join("runbooks/runbook-state.json");
    mkfifo(&config);
    for round in ["fifo", "zero"] {
        if round == "zero" {
            std::fs::remove_file(&config).unwrap_or_else(|e| panic!("{e}"));
            std::os::unix::fs::symlink("/dev/zero", &config).unwrap_or_else(|e| panic!("{e}"));
        }
        let started = std::time::Instant::now();
        let out = sandbox.runbook().args(["history"]).wrapped("timeout", &["20"]).output().status(2);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{round} took {:?}", started.elapsed());
        assert!(out.stderr().contains("runbook-state.json: not a regular file"), "{round}: {}", out.stderr());
    }
}

const GOOD: &str = "runbook: good
title: A good one
procedures:
  hello:
    summary: Say hello
    stages:
      - name: Only
        steps:
          - {id: say, run: [echo, hello], effect: read}
";

/// The cache's record name before issue 23: sha256 of (binary id, file sha256), which anyone
/// who can write the cache folder (a shared CI cache) can compute.
fn old_record_name(file_sha256: &str) -> String {
    let meta = std::fs::metadata(binary()).unwrap_or_else(|e| panic!("{e}"));
    let id =
        format!("{} {} {}.{} {}", env!("CARGO_PKG_VERSION"), meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
    format!("{}.json", hex::encode(Sha256::digest(format!("{id}\n{file_sha256}"))))
}

#[test]
fn a_forged_cache_record_never_makes_validate_pass_a_broken_runbook() {
    let sandbox = Sandbox::new();
    let cache = sandbox.path().join("cache");
    let run = || sandbox.runbook().env("XDG_CACHE_HOME", &cache);
    sandbox.file("good.yaml", GOOD);
    run().args(["validate"]).output().success();
    let key = std::fs::metadata(cache.join("runbook/key")).unwrap_or_else(|e| panic!("no cache key: {e}"));
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let summaries = cache.join("runbook/summaries");
    let records: Vec<std::path::PathBuf> = std::fs::read_dir(&summaries)
        .map(|read| read.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(records.len(), 1, "{records:?}");
    // The forger takes a clean record and points it at the broken file's content.
    let clean = std::fs::read_to_string(&records[0]).unwrap_or_default();
    let json = &clean[clean.find('{').unwrap_or(0)..];
    let broken = GOOD.replace("[echo, hello]", "[echo, '{{ params.nowhere }}']");
    let sha = hex::encode(Sha256::digest(broken.as_bytes()));
    let mut record: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {clean}"));
    record["sha256"] = serde_json::Value::String(sha.clone());
    let forged = serde_json::to_string(&record).unwrap_or_default();
    std::fs::write(summaries.join(old_record_name(&sha)), &forged).unwrap_or_else(|e| panic!("{e}"));
    // And over the record there, keeping its authentication line as it was.
    let first_line = clean.split_once('\n').map(|(tag, _)| format!("{tag}\n")).unwrap_or_default();
    std::fs::write(&records[0], format!("{first_line}{forged}")).unwrap_or_else(|e| panic!("{e}"));
    sandbox.file("good.yaml", &broken);
    for args in [vec!["validate"], vec!["validate", "runbooks/good.yaml"]] {
        let out = run().args(&args).output().status(1);
        assert!(out.stderr().contains("nowhere"), "{args:?}: {}", out.stderr());
    }
}

/// Attack on issue 23 (atk2): whoever could write the cache folder (a restored CI cache,
/// a world-writable `XDG_CACHE_HOME`) made `runbook/summaries` a link to another folder, and
/// the cache's trim removed 344 of its 600 files; a FIFO as `runbook/key` hung every command.
/// The cache is used only in folders that are this user's own, not links, not writable by
/// others; the key is opened without waiting; trim removes only the cache's own files.
#[test]
fn a_cache_folder_someone_else_could_write_is_not_used_and_never_loses_a_file() {
    let sandbox = Sandbox::new();
    let cache = sandbox.path().join("cache");
    let run = || sandbox.runbook().env("XDG_CACHE_HOME", &cache).wrapped("timeout", &["20"]);
    sandbox.file("good.yaml", GOOD);
    run().args(["validate"]).output().success();
    let victim = sandbox.path().join("victim");
    std::fs::create_dir(&victim).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..600 {
        std::fs::write(victim.join(format!("f{i}")), "keep").unwrap_or_else(|e| panic!("{e}"));
    }
    let summaries = cache.join("runbook/summaries");
    std::fs::remove_dir_all(&summaries).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&victim, &summaries).unwrap_or_else(|e| panic!("{e}"));
    sandbox.file("good.yaml", &format!("{GOOD}# changed\n"));
    run().args(["validate"]).output().success();
    let left = std::fs::read_dir(&victim).map(|r| r.count()).unwrap_or(0);
    assert_eq!(left, 600, "the cache removed files of the folder its summaries link to");
    // A cache root others may write: not used (no summaries written there).
    std::fs::remove_dir_all(cache.join("runbook")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(cache.join("runbook")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(cache.join("runbook"), std::fs::Permissions::from_mode(0o777))
        .unwrap_or_else(|e| panic!("{e}"));
    run().args(["validate"]).output().success();
    assert!(!summaries.exists() && !cache.join("runbook/key").exists(), "a world-writable cache folder was used");
    // A FIFO where the key belongs: the cache is off, nothing waits on it.
    std::fs::set_permissions(cache.join("runbook"), std::fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&cache.join("runbook/key"));
    let started = std::time::Instant::now();
    run().args(["validate"]).output().success();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "validate waited on a FIFO key");
}

#[test]
fn a_param_variable_that_is_not_utf8_is_named_and_never_echoed() {
    let sandbox = Sandbox::new();
    let step = r#"          - {id: one, run: [sh, -c, 'test -n "$T"'], env: {T: "{{ params.token }}"}, effect: read}"#;
    sandbox.file("leak.yaml", &format!("{}\n", super::secrets::token_runbook(step)));
    let value = std::ffi::OsString::from_vec(b"s3cr\xffetvalue".to_vec());
    let out = sandbox.runbook().env("RUNBOOK_PARAM_TOKEN", &value).args(["leak", "go", "--yes"]).output().status(2);
    assert!(out.stderr().contains("RUNBOOK_PARAM_TOKEN is not valid UTF-8"), "{}", out.stderr());
    assert!(!out.all().contains("s3cr") && !out.all().contains("etvalue"), "{}", out.all());
}
