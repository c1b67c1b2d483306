//! Param flags: typed, checked before anything runs, one clear line when wrong.

use crate::support::{Sandbox, recent_timestamp};

fn rollback() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    sandbox
}

#[test]
fn a_future_or_malformed_timestamp_is_refused_with_one_line() {
    let sandbox = rollback();
    for (value, reason) in [
        ("tomorrow", "expected an RFC 3339 timestamp"),
        ("2099-01-01T00:00:00Z", "must not be after now"),
        ("2020-01-01T00:00:00Z", "must not be before now-7d"),
        ("2025-06-15T14:00:00", "expected an RFC 3339 timestamp"),
    ] {
        let out = sandbox
            .runbook()
            .args(["rollback", "pitr", "--env", "production", "--dry-run", "--timestamp", value])
            .output()
            .status(2);
        let stderr = out.stderr();
        assert_eq!(stderr.lines().count(), 1, "one line for {value}: {stderr}");
        assert!(stderr.contains("--timestamp") && stderr.contains(reason), "{value}: {stderr}");
        assert_eq!(out.stdout(), "");
    }
}

#[test]
fn environment_is_required_and_checked() {
    let sandbox = rollback();
    let ts = recent_timestamp();
    let out = sandbox.runbook().args(["rollback", "pitr", "--dry-run", "--timestamp", &ts]).output().status(2);
    assert!(out.stderr().contains("--env"), "{}", out.stderr());
    let out = sandbox
        .runbook()
        .args(["rollback", "pitr", "--env", "prod", "--dry-run", "--timestamp", &ts])
        .output()
        .status(2);
    assert!(out.stderr().contains("production"), "{}", out.stderr());
}

#[test]
fn pattern_and_missing_params_are_refused() {
    let sandbox = rollback();
    let base = ["rollback", "forward-fix", "--env", "staging", "--dry-run"];
    let out = sandbox.runbook().args(base).args(["--failing-migration", "001_a.sql"]).output().status(2);
    assert!(out.stderr().contains("missing --fix-migration"), "{}", out.stderr());
    let out = sandbox
        .runbook()
        .args(base)
        .args(["--failing-migration", "001_a.sql", "--fix-migration", "fix.txt"])
        .output()
        .status(2);
    assert!(
        out.stderr().contains("invalid value 'fix.txt' for --fix-migration: does not match the pattern"),
        "{}",
        out.stderr()
    );
}

#[test]
fn procedure_help_lists_params_with_types_and_help() {
    let sandbox = rollback();
    let out = sandbox.runbook().args(["rollback", "pitr", "--help"]).output().success();
    let help = out.stdout();
    for needle in [
        "--timestamp <TIMESTAMP>",
        "BEFORE the deploy",
        "not after now",
        "not before now-7d",
        "--dry-run",
        "production, staging",
        // Issue 21: the usage line names the required flags, the prompts `--answer` takes
        // are listed, and what production needs is said before anyone tries.
        "Usage: runbook rollback pitr --env <ENV> --timestamp <TIMESTAMP> [OPTIONS]",
        "answer ahead with --answer ID=VALUE",
        "previous_revision       Pick the previous good revision",
        "runs an approved plan",
        "approve FILE --key KEY`",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from\n{help}");
    }
    let listed = sandbox.runbook().args(["list"]).output().success().stdout();
    assert!(listed.contains("production (protected, 1 signed approval of a saved plan)"), "{listed}");
    let out = sandbox.runbook().args(["rollback", "--help"]).output().success();
    for procedure in ["pitr", "snapshot", "revert-traffic", "forward-fix", "verify"] {
        assert!(out.stdout().contains(procedure), "{procedure} missing from\n{}", out.stdout());
    }
}

#[test]
fn typed_flags_reject_wrong_values() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "typed.yaml",
        r#"runbook: typed
title: Typed
params:
  count: {type: int}
  wait: {type: duration, default: 5m}
  target: {type: url}
  tier: {type: enum, values: [gold, silver]}
  skip_checks: {type: bool}
procedures:
  go:
    summary: Go
    params: [count, wait, target, tier, skip_checks]
    stages:
      - name: S
        steps:
          - {id: a, run: [echo, "{{ params.count }}", "{{ params.wait }}", "{{ params.target }}", "{{ params.tier }}", "{{ params.skip_checks }}"]}
"#,
    );
    let ok =
        ["typed", "go", "--dry-run", "--count", "3", "--target", "https://x.test/", "--tier", "gold", "--skip-checks"];
    let out = sandbox.runbook().args(ok).output().success();
    assert!(out.stdout().contains("$ echo 3 5m https://x.test/ gold true"), "{}", out.stdout());
    for (flag, bad) in [("--count", "three"), ("--wait", "soon"), ("--target", "ftp://x"), ("--tier", "bronze")] {
        let mut args: Vec<&str> = ok.to_vec();
        let at = args.iter().position(|a| *a == flag).map_or(args.len(), |i| i + 1);
        if at < args.len() {
            args[at] = bad;
        } else {
            args.extend([flag, bad]);
        }
        let out = sandbox.runbook().args(&args).output().status(2);
        assert!(out.stderr().contains(bad), "{flag} {bad}: {}", out.stderr());
    }
}
