//! `runbook --version` takes the cheap path (issue 13, release profile): it is printed before
//! the runbook folder, the state and cache folders, the environment or logging are looked at,
//! so it answers in an environment where everything else fails.

use std::path::Path;
use std::process::Command;

use crate::support::{Sandbox, binary};

/// `runbook ARGS` run from a working folder that was deleted, with HOME unset, the runbook,
/// state and cache folders pointing at paths that do not exist, and verbose logging asked for.
fn in_a_hostile_environment(sandbox: &Sandbox, args: &str) -> std::process::Output {
    let missing = sandbox.path().join("missing");
    let gone = sandbox.path().join("gone");
    std::fs::create_dir(&gone).unwrap_or_else(|e| panic!("{e}"));
    let script = format!("cd \"$1\" && rmdir \"$1\" && exec \"$2\" {args}");
    let output = Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(&gone)
        .arg(binary())
        .env_remove("HOME")
        .env_remove("XDG_STATE_HOME")
        .env("RUNBOOK_DIR", missing.join("runbooks"))
        .env("RUNBOOK_STATE_DIR", missing.join("state"))
        .env("XDG_CACHE_HOME", missing.join("cache"))
        .env("RUST_LOG", "trace")
        .output()
        .unwrap_or_else(|e| panic!("cannot start sh: {e}"));
    assert!(!gone.exists(), "the working folder was not deleted");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_needs_no_runbook_folder_state_cache_home_or_working_folder() {
    let sandbox = Sandbox::new();
    // The same environment makes any command that sets up fail: the check below is not idle.
    let list = in_a_hostile_environment(&sandbox, "list");
    assert_eq!(list.status.code(), Some(2), "{}", text(&list.stderr));
    assert!(text(&list.stderr).contains("runbook folder"), "{}", text(&list.stderr));
    for flag in ["--version", "-V"] {
        let out = in_a_hostile_environment(&sandbox, flag);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("runbook {}\n", env!("CARGO_PKG_VERSION")), "{flag}");
        assert_eq!(text(&out.stderr), "", "{flag}: nothing else is said (no log line, no warning)");
    }
    assert!(!Path::new(&sandbox.path().join("missing")).exists(), "--version created a state or cache folder");
}
