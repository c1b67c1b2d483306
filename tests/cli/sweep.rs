//! Outside attacks on the binary (the `sweep` pass): each test pins a promise that broke.

use crate::support::{Run, Sandbox};

/// A symlink loop is not "missing": the error names the path and says what the OS said, and
/// nothing panics (exit 2, usage).
#[test]
fn symlink_loop_path_is_named_with_its_real_reason() {
    let sandbox = Sandbox::new();
    let a = sandbox.path().join("loop_a.yaml");
    let b = sandbox.path().join("loop_b.yaml");
    std::os::unix::fs::symlink(&b, &a).unwrap_or_else(|e| panic!("symlink: {e}"));
    std::os::unix::fs::symlink(&a, &b).unwrap_or_else(|e| panic!("symlink: {e}"));
    for args in [vec!["validate", "loop_a.yaml"], vec!["run", "loop_a.yaml", "go"]] {
        let out = Run::new(sandbox.path()).args(&args).output().status(2);
        let err = out.stderr();
        assert!(err.contains("loop_a.yaml"), "{args:?}: {err}");
        assert!(err.contains("symbolic links"), "{args:?} must give the OS reason: {err}");
        assert!(!err.contains("no such"), "{args:?} claims the file is missing: {err}");
    }
}

/// `runbook run DIR PROC` used to say "no such runbook file" for a folder that exists.
#[test]
fn run_given_a_folder_says_it_is_a_folder() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.path().join("adir")).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let out = Run::new(sandbox.path()).args(["run", "adir", "go"]).output().status(2);
    assert!(out.stderr().contains("adir: a folder, not a runbook file"), "{}", out.stderr());
}

/// A really missing file keeps its plain message (both commands).
#[test]
fn missing_paths_keep_their_plain_message() {
    let sandbox = Sandbox::new();
    let out = Run::new(sandbox.path()).args(["run", "nope.yaml", "go"]).output().status(2);
    assert!(out.stderr().contains("nope.yaml: no such runbook file"), "{}", out.stderr());
    let out = Run::new(sandbox.path()).args(["validate", "nope.yaml"]).output().status(2);
    assert!(out.stderr().contains("nope.yaml: no such file or folder"), "{}", out.stderr());
}

const TINY: &str = "runbook: t
procedures:
  go:
    summary: go
    stages:
      - name: one
        steps:
          - id: a
            run: [echo, hi]
            timeout: 5s
";

/// A journal with one invalid-UTF-8 line: the error must name the line (file:line), as it does
/// for a line of valid-UTF-8 garbage, instead of "stream did not contain valid UTF-8" for the
/// whole file.
#[test]
fn journal_with_invalid_utf8_line_names_the_line() {
    let sandbox = Sandbox::new();
    sandbox.file("runbooks/t.yaml", TINY);
    sandbox.runbook().args(["t", "go", "--yes"]).output().success();
    let id = sandbox.last_run_id();
    let journal = sandbox.journals().into_iter().next().unwrap_or_else(|| panic!("no journal"));
    let text = std::fs::read(&journal).unwrap_or_else(|e| panic!("read: {e}"));
    let first_newline = text.iter().position(|b| *b == b'\n').unwrap_or_else(|| panic!("one line"));
    let mut corrupted = text[..=first_newline].to_vec();
    corrupted.extend_from_slice(b"\xff\xfe garbage\n");
    corrupted.extend_from_slice(&text[first_newline + 1..]);
    std::fs::write(&journal, corrupted).unwrap_or_else(|e| panic!("write: {e}"));
    let out = sandbox.runbook().args(["show", &id]).output();
    assert!(out.code() != 101, "panicked: {}", out.stderr());
    assert!(out.stderr().contains(".jsonl:2:"), "the bad line is not named: {}", out.stderr());
}

/// A child that prints a secret param base64- or hex-encoded (`base64`, `od`/`xxd -p`) does
/// not leak it: the whole-value encodings are masked on every channel.
#[test]
fn a_secret_printed_base64_or_hex_encoded_is_masked_everywhere() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "runbooks/k.yaml",
        r#"runbook: k
params:
  token:
    type: string
    secret: true
    required: true
procedures:
  go:
    summary: go
    params: [token]
    stages:
      - name: one
        steps:
          - id: a
            shell: 'printf %s "$T" | base64; printf %s "$T" | od -An -tx1 | tr -d " \n"; echo; printf %s "$T" | base64 >&2'
            env: {T: "{{ params.token }}"}
            timeout: 5s
"#,
    );
    let secret = "s3cr3t-Tok3n?value>";
    let forms =
        ["czNjcjN0LVRvazNuP3ZhbHVlPg==", "czNjcjN0LVRvazNuP3ZhbHVlPg", "7333637233742d546f6b336e3f76616c75653e"];
    for output in ["human", "json"] {
        let out =
            sandbox.runbook().args(["k", "go", "--token", secret, "--yes", "--output", output]).output().success();
        for form in forms {
            assert!(!out.all().contains(form), "{output}: {form} leaked: {}", out.all());
        }
        assert!(out.all().contains("********"), "{output}: nothing masked: {}", out.all());
    }
    for journal in sandbox.journals() {
        let text = std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("{}: {e}", journal.display()));
        for form in forms {
            assert!(!text.contains(form), "journal: {form} leaked");
        }
    }
    let out = sandbox.runbook().args(["show", &sandbox.last_run_id(), "--format", "json"]).output().success();
    for form in forms {
        assert!(!out.all().contains(form), "show: {form} leaked");
    }
}

/// `lock break` with an escape sequence, a newline or a path in the name used to echo it raw
/// ("pass --confirm a<ESC>[31mb"): refused with exit 2, the name shown escaped.
#[test]
fn lock_break_refuses_names_with_control_chars_or_paths_without_echoing_them_raw() {
    let sandbox = Sandbox::new();
    for args in [
        vec!["lock", "break", "a\u{1b}[31mb", "--reason", "x"],
        vec!["lock", "break", "../../etc", "--reason", "x"],
        vec!["lock", "break", "t", "--env", "x\ny", "--reason", "x"],
        vec!["lock", "break", "", "--reason", "x"],
    ] {
        let out = Run::new(sandbox.path()).args(&args).output().status(2);
        assert!(!out.all().contains('\u{1b}'), "{args:?}: raw escape echoed: {:?}", out.all());
        assert!(out.stderr().contains("is not a runbook or environment name"), "{args:?}: {}", out.stderr());
    }
}

/// A crash during a write can cut the last record inside a multi-byte character: the
/// journal is still read (minus the torn line), not refused as "not UTF-8".
#[test]
fn a_journal_torn_inside_a_multibyte_character_is_still_read() {
    let sandbox = Sandbox::new();
    sandbox.file("runbooks/t.yaml", TINY);
    sandbox.runbook().args(["t", "go", "--yes"]).output().success();
    let id = sandbox.last_run_id();
    let journal = sandbox.journals().into_iter().next().unwrap_or_else(|| panic!("no journal"));
    let mut bytes = std::fs::read(&journal).unwrap_or_else(|e| panic!("read: {e}"));
    bytes.extend_from_slice(b"{\"record\":\"event\",\"ts\":\"x\",\"event\":\"notice\",\"text\":\"caf\xc3");
    std::fs::write(&journal, bytes).unwrap_or_else(|e| panic!("write: {e}"));
    let out = sandbox.runbook().args(["show", &id]).output();
    assert_eq!(out.code(), 0, "{}", out.all());
}

/// A param value that is not UTF-8 is named by its position and flag — never echoed (it may
/// be a secret's bytes) — with exit 2 and nothing run.
#[test]
fn a_non_utf8_param_value_names_its_flag_without_echoing_it() {
    use std::os::unix::ffi::OsStrExt;
    let sandbox = Sandbox::new();
    sandbox.file(
        "runbooks/p.yaml",
        "runbook: p\nparams:\n  name: {type: string}\nprocedures:\n  go:\n    summary: go\n    params: [name]\n    stages:\n      - name: one\n        steps:\n          - {id: a, run: [touch, ran], timeout: 5s}\n",
    );
    let bad = std::ffi::OsStr::from_bytes(b"s3cr\xffet");
    for args in [
        vec![std::ffi::OsStr::new("p"), "go".as_ref(), "--name".as_ref(), bad, "--yes".as_ref()],
        vec!["p".as_ref(), "go".as_ref(), std::ffi::OsStr::from_bytes(b"--name=s3cr\xffet"), "--yes".as_ref()],
    ] {
        let out = sandbox.runbook().args(args).output();
        assert_eq!(out.code(), 2, "{}", out.all());
        assert!(out.stderr().contains("not valid UTF-8") && out.stderr().contains("`--name`"), "{}", out.stderr());
        assert!(!out.all().contains("s3cr"), "the bytes were echoed: {}", out.all());
        assert!(!sandbox.path().join("ran").exists());
    }
}
