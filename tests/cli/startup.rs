//! Start-up (issue 13): the summary cache behind `list` and the command line may make them
//! fast, never wrong; `--version` is printed before anything else is set up.

use std::path::PathBuf;

use crate::support::{Run, Sandbox};

const GOOD: &str = "runbook: good
title: A good one
params:
  target: {type: string, default: prod}
procedures:
  hello:
    summary: Say hello
    params: [target]
    stages:
      - name: Only
        steps:
          - {id: say, run: [echo, 'hello {{ params.target }}'], effect: read}
";

/// A sandbox whose runs keep their start-up cache in `<sandbox>/cache`.
fn with_cache(sandbox: &Sandbox) -> Run {
    sandbox.runbook().env("XDG_CACHE_HOME", sandbox.path().join("cache"))
}

fn cache_files(sandbox: &Sandbox) -> Vec<PathBuf> {
    let dir = sandbox.path().join("cache/runbook/summaries");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|read| read.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files
}

#[test]
fn list_fills_the_cache_and_a_cached_list_prints_the_same() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    let first = with_cache(&sandbox).args(["list"]).output().success();
    assert!(first.stdout().contains("hello — Say hello"), "{}", first.stdout());
    assert_eq!(cache_files(&sandbox).len(), 1, "one cache file per runbook file");
    let second = with_cache(&sandbox).args(["list"]).output().success();
    assert_eq!(first.stdout(), second.stdout());
    // The cache is private: it records params and their defaults.
    for file in cache_files(&sandbox) {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&file).map_or_else(|e| panic!("{}: {e}", file.display()), |m| m.permissions()),
        );
        assert_eq!(mode & 0o077, 0, "{} is readable by others: {mode:o}", file.display());
    }
}

#[test]
fn an_edit_after_a_cached_list_shows_the_new_procedure() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    with_cache(&sandbox).args(["list"]).output().success();
    let edited = format!(
        "{GOOD}  farewell:\n    summary: Say goodbye\n    stages:\n      - name: Only\n        steps:\n          - {{id: bye, run: [echo, bye], effect: read}}\n"
    );
    sandbox.file("good.yaml", &edited);
    let out = with_cache(&sandbox).args(["list"]).output().success();
    assert!(out.stdout().contains("farewell — Say goodbye"), "{}", out.stdout());
    let ran = with_cache(&sandbox).args(["good", "farewell"]).output().success();
    assert!(ran.stdout().contains("bye"), "{}", ran.all());
}

#[test]
fn a_runbook_that_became_invalid_after_a_cached_list_is_reported_and_refused() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    with_cache(&sandbox).args(["list"]).output().success();
    with_cache(&sandbox).args(["good", "hello"]).output().success();
    // Still valid YAML with the same names: only the reference check finds the error.
    sandbox.file("good.yaml", &GOOD.replace("{{ params.target }}", "{{ params.nowhere }}"));
    let out = with_cache(&sandbox).args(["list"]).output().success();
    assert!(out.stdout().contains("good  (runbooks/good.yaml: invalid"), "{}", out.stdout());
    let ran = with_cache(&sandbox).args(["good", "hello"]).output().status(2);
    assert!(ran.stderr().contains("nowhere"), "{}", ran.stderr());
    assert!(!ran.stdout().contains("hello prod"), "a step ran: {}", ran.stdout());
}

#[test]
fn a_cached_summary_never_skips_the_full_check_before_running() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    with_cache(&sandbox).args(["list"]).output().success();
    let files = cache_files(&sandbox);
    assert_eq!(files.len(), 1);
    // Forge a record for an invalid version of the file that still claims the valid
    // runbook (as if the file changed between building the command line and running).
    // Records are authenticated with the cache's key (issue 23): this forger has it, as
    // only the cache's owner does; the name is HMAC("name\n<binary>\n<content sha256>"),
    // the binary its version, size, mtime and inode, and the record starts with its HMAC.
    let invalid = GOOD.replace("{{ params.target }}", "{{ params.nowhere }}");
    let (good_sha, bad_sha) = (sha256_hex(GOOD.as_bytes()), sha256_hex(invalid.as_bytes()));
    let meta = std::fs::metadata(crate::support::binary()).unwrap_or_else(|e| panic!("{e}"));
    let binary = {
        use std::os::unix::fs::MetadataExt as _;
        format!("{} {} {}.{} {}", env!("CARGO_PKG_VERSION"), meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
    };
    let record = std::fs::read_to_string(&files[0]).unwrap_or_default();
    assert!(record.contains(&good_sha) && record.contains(&binary), "{record}");
    let key = std::fs::read(sandbox.path().join("cache/runbook/key")).unwrap_or_else(|e| panic!("{e}"));
    let hmac = |bytes: &[u8]| {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap_or_else(|e| panic!("{e}"));
        mac.update(bytes);
        hex::encode(mac.finalize().into_bytes())
    };
    let json = record.split_once('\n').map(|(_, json)| json).unwrap_or_default().replace(&good_sha, &bad_sha);
    let name = hmac(format!("name\n{binary}\n{bad_sha}").as_bytes());
    std::fs::write(files[0].with_file_name(format!("{name}.json")), format!("{}\n{json}", hmac(json.as_bytes())))
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.file("good.yaml", &invalid);
    let list = with_cache(&sandbox).args(["list"]).output().success();
    assert!(list.stdout().contains("hello — Say hello"), "the forged record is used: {}", list.stdout());
    let ran = with_cache(&sandbox).args(["good", "hello"]).output().status(2);
    assert!(ran.stderr().contains("nowhere"), "{}", ran.stderr());
    assert!(!ran.stdout().contains("hello prod"), "a step ran: {}", ran.all());
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(bytes)?;
            }
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("sha256sum: {e}"));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

#[test]
fn a_corrupt_or_truncated_cache_file_is_ignored() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    let fresh = with_cache(&sandbox).args(["list"]).output().success();
    let files = cache_files(&sandbox);
    assert_eq!(files.len(), 1);
    let text = std::fs::read(&files[0]).unwrap_or_default();
    for damaged in [&text[..text.len() / 2], b"", b"\xff\xfe not json \x00", b"{\"summary\": 1}"] {
        std::fs::write(&files[0], damaged).unwrap_or_else(|e| panic!("{e}"));
        let out = with_cache(&sandbox).args(["list"]).output().success();
        assert_eq!(out.stdout(), fresh.stdout(), "damaged cache: {:?}", String::from_utf8_lossy(damaged));
        assert_eq!(out.stderr(), "");
    }
    // The damaged record was replaced by a good one.
    assert_eq!(std::fs::read(&files[0]).unwrap_or_default(), text);
}

#[test]
fn an_unusable_cache_folder_still_lists_and_runs() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    let blocker = sandbox.file("not-a-folder/file", "x");
    for cache in [blocker.clone(), blocker.join("below"), PathBuf::from("relative/cache")] {
        let run = || sandbox.runbook().env("XDG_CACHE_HOME", &cache).env("HOME", &blocker);
        let out = run().args(["list"]).output().success();
        assert!(out.stdout().contains("hello — Say hello"), "{}", out.all());
        assert_eq!(out.stderr(), "");
        let ran = run().args(["good", "hello"]).output().success();
        assert!(ran.stdout().contains("hello prod"), "{}", ran.all());
    }
    assert!(!sandbox.path().join("relative").exists(), "a relative XDG_CACHE_HOME is ignored");
}

#[test]
fn the_cache_folder_stays_bounded() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    let dir = sandbox.path().join("cache/runbook/summaries");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..600 {
        std::fs::write(dir.join(format!("old-{i:04}.json")), "{}").unwrap_or_else(|e| panic!("{e}"));
    }
    with_cache(&sandbox).args(["list"]).output().success();
    let count = cache_files(&sandbox).len();
    assert!(count <= 512 / 2 + 1, "{count} cache files kept");
    assert!(cache_files(&sandbox).iter().any(|f| !f.to_string_lossy().contains("old-")), "the new record was kept");
}

#[test]
fn a_broken_runbook_does_not_stop_a_good_one_with_or_without_the_cache() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    sandbox.file("broken.yaml", "runbook: broken\nprocedures: [\n");
    for _ in 0..2 {
        let ran = with_cache(&sandbox).args(["good", "hello"]).output().success();
        assert!(ran.stdout().contains("hello prod"), "{}", ran.all());
        let broken = with_cache(&sandbox).args(["broken", "anything"]).output().status(2);
        assert!(broken.stderr().contains("invalid YAML"), "{}", broken.stderr());
    }
}

#[test]
fn duplicate_names_stay_errors_when_the_summaries_come_from_the_cache() {
    let sandbox = Sandbox::new();
    sandbox.file("a.yaml", GOOD);
    sandbox.file("b.yaml", GOOD);
    for _ in 0..2 {
        let list = with_cache(&sandbox).args(["list"]).output().success();
        assert!(list.stdout().contains("good  (runbooks/a.yaml: invalid, 1 problem(s)"), "{}", list.stdout());
        let ran = with_cache(&sandbox).args(["good", "hello"]).output().status(2);
        assert!(ran.stderr().contains("also used by runbooks/b.yaml"), "{}", ran.stderr());
    }
}

#[test]
fn procedure_help_is_the_same_from_the_cache_as_from_a_fresh_check() {
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    let procedure = "pitr";
    for args in [vec!["rollback", "--help"], vec!["rollback", procedure, "--help"], vec!["list"]] {
        // Neither an absolute XDG_CACHE_HOME nor an absolute HOME: no cache at all.
        let uncached = sandbox.runbook().env("XDG_CACHE_HOME", "relative").env("HOME", "relative").args(&args).output();
        with_cache(&sandbox).args(&args).output();
        let cached = with_cache(&sandbox).args(&args).output();
        assert_eq!(uncached.all(), cached.all(), "{args:?}");
        assert_eq!(uncached.code(), cached.code(), "{args:?}");
    }
    assert!(!sandbox.path().join("relative").exists(), "a relative cache folder was used");
}

#[test]
fn version_is_printed_alone_and_a_full_stdout_is_an_error() {
    let sandbox = Sandbox::new();
    for flag in ["--version", "-V"] {
        let out = sandbox.runbook().args([flag]).output().success();
        assert_eq!(out.stdout(), format!("runbook {}\n", env!("CARGO_PKG_VERSION")));
    }
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap_or_else(|e| panic!("{e}"));
    let mut run = sandbox.runbook().args(["--version"]);
    run.cmd.stdout(full).stderr(std::process::Stdio::null());
    let status = run.cmd.status().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(1));
}

#[test]
fn validate_after_a_cached_check_still_reports_an_edit_that_broke_the_file() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    sandbox.file("other.yaml", &GOOD.replace("runbook: good", "runbook: other"));
    for _ in 0..2 {
        let out = with_cache(&sandbox).args(["validate"]).output().success();
        assert!(out.stdout().contains("2 runbook files checked: no problems"), "{}", out.all());
        with_cache(&sandbox).args(["validate", "runbooks/good.yaml"]).output().success();
    }
    assert_eq!(cache_files(&sandbox).len(), 2);
    sandbox.file("good.yaml", &GOOD.replace("{{ params.target }}", "{{ params.nowhere }}"));
    for args in [vec!["validate"], vec!["validate", "runbooks/good.yaml"]] {
        let out = with_cache(&sandbox).args(&args).output().status(1);
        assert!(out.stderr().contains("nowhere"), "{args:?}: {}", out.stderr());
        let json = with_cache(&sandbox).args(&args).args(["--format", "json"]).output().status(1);
        assert!(json.stdout().contains("nowhere"), "{args:?}: {}", json.stdout());
    }
}

#[test]
fn validate_with_cached_clean_files_still_reports_a_name_used_twice() {
    let sandbox = Sandbox::new();
    sandbox.file("a.yaml", GOOD);
    sandbox.file("b.yaml", &GOOD.replace("runbook: good", "runbook: other"));
    with_cache(&sandbox).args(["validate"]).output().success();
    // Both files' bytes are cached clean; a third file claims a name already used.
    sandbox.file("c.yaml", GOOD);
    let out = with_cache(&sandbox).args(["validate"]).output().status(1);
    assert!(out.stderr().contains("also used by runbooks/c.yaml"), "{}", out.stderr());
    assert!(out.stderr().contains("also used by runbooks/a.yaml"), "{}", out.stderr());
}

#[test]
fn built_ins_parsed_without_the_runbooks_still_show_them_where_they_should() {
    let sandbox = Sandbox::new();
    sandbox.file("good.yaml", GOOD);
    let help = with_cache(&sandbox).args(["help"]).output().success();
    assert!(help.stdout().contains("good"), "{}", help.stdout());
    let completions = with_cache(&sandbox).args(["completions", "bash"]).output().success();
    assert!(completions.stdout().contains("hello"), "no procedure in the completions");
    assert!(completions.stdout().contains("--target"), "no param flag in the completions");
    // A built-in's own flags and errors are the same with the runbooks left out.
    let list_help = with_cache(&sandbox).args(["list", "--help"]).output().success();
    assert!(list_help.stdout().contains("Usage: runbook list"), "{}", list_help.stdout());
    let wrong = with_cache(&sandbox).args(["list", "--nope"]).output().status(2);
    assert!(wrong.stderr().contains("--nope"), "{}", wrong.stderr());
}
