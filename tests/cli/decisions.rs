//! Issue 10, without a terminal: names `--yes` cannot confirm, answers checked before the
//! first step, run ids in start order, a hint from the wrong folder, RB104.

use crate::support::{Run, Sandbox};

const GUARDED: &str = r#"
runbook: guarded
title: A protected target
environments:
  prod: {protected: true}
  dev: {}
procedures:
  go:
    summary: Touch a file, then wipe it after a typed confirmation
    stages:
      - name: Touch
        steps:
          - id: touch
            run: [touch, touched.txt]
            timeout: 10s
      - name: Wipe
        steps:
          - id: wipe
            run: [touch, wiped.txt]
            confirm: typed
            target: "db-{{ environment }}"
            timeout: 10s
"#;

fn guarded() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file("guarded.yaml", GUARDED);
    sandbox
}

fn ran(sandbox: &Sandbox, file: &str) -> bool {
    sandbox.path().join(file).exists()
}

#[test]
fn yes_without_a_terminal_does_not_confirm_a_protected_environment() {
    let sandbox = guarded();
    let target = ["--confirm-target", "wipe=db-prod"];
    let out = sandbox.runbook().args(["guarded", "go", "--env", "prod", "--yes"]).args(target).output().status(2);
    assert!(out.stderr().contains("pass --confirm-env prod"), "{}", out.stderr());
    assert!(!ran(&sandbox, "touched.txt"), "a step ran before the environment was confirmed");

    let wrong = ["--confirm-env", "dev"];
    let out = sandbox.runbook().args(["guarded", "go", "--env", "prod", "--yes"]).args(wrong).args(target).output();
    let out = out.status(2);
    assert!(out.stderr().contains("--confirm-env dev"), "{}", out.stderr());
    assert!(!ran(&sandbox, "touched.txt"));

    let right = ["--confirm-env", "prod"];
    sandbox.runbook().args(["guarded", "go", "--env", "prod", "--yes"]).args(right).args(target).output().success();
    assert!(ran(&sandbox, "touched.txt") && ran(&sandbox, "wiped.txt"));
}

#[test]
fn yes_without_a_terminal_does_not_confirm_a_typed_target() {
    let sandbox = guarded();
    let out = sandbox.runbook().args(["guarded", "go", "--env", "dev", "--yes"]).output().status(2);
    assert!(out.stderr().contains("--confirm-target wipe=VALUE"), "{}", out.stderr());
    assert!(!ran(&sandbox, "touched.txt"), "a step ran although the typed target was missing");

    let out = sandbox
        .runbook()
        .args(["guarded", "go", "--env", "dev", "--yes", "--confirm-target", "wipe=db-prod"])
        .output()
        .status(3);
    assert!(out.stderr().contains("did not confirm `db-dev`"), "{}", out.stderr());
    assert!(!ran(&sandbox, "wiped.txt"), "the destructive step ran with the wrong name");

    let out =
        sandbox.runbook().args(["guarded", "go", "--env", "dev", "--yes", "--confirm-target", "nosuch=x"]).output();
    assert!(out.status(2).stderr().contains("no `confirm: typed` step `nosuch`"));
}

#[test]
fn resume_does_not_inherit_yes() {
    let sandbox = guarded();
    // The wipe fails until `allowed` exists.
    let failing = GUARDED.replace("run: [touch, wiped.txt]", "run: [sh, -c, 'test -f allowed && touch wiped.txt']");
    sandbox.file("guarded.yaml", &failing);
    sandbox
        .runbook()
        .args(["guarded", "go", "--env", "dev", "--yes", "--confirm-target", "wipe=db-dev"])
        .output()
        .status(1);
    let id = sandbox.last_run_id();
    std::fs::write(sandbox.path().join("allowed"), "").unwrap_or_else(|e| panic!("{e}"));
    let out = sandbox.runbook().args(["resume", &id]).output().status(2);
    assert!(out.stderr().contains("--confirm-target wipe=VALUE"), "{}", out.stderr());
    let out = sandbox.runbook().args(["resume", &id, "--confirm-target", "wipe=db-dev"]).output().status(2);
    assert!(out.stderr().contains("pass --yes"), "without --yes again nobody confirms the stages: {}", out.stderr());
    assert!(!ran(&sandbox, "wiped.txt"));
    sandbox.runbook().args(["resume", &id, "--yes", "--confirm-target", "wipe=db-dev"]).output().success();
    assert!(ran(&sandbox, "wiped.txt"));
}

const ASK: &str = r#"
runbook: ask
title: Ask first
params:
  migration:
    type: string
    pattern: '[0-9]+_[a-z_]+\.sql'
    pattern_help: a migration filename such as NNN_name.sql
    example: 001_add_tags.sql
procedures:
  go:
    summary: Decide, then act
    params: [migration]
    stages:
      - name: Decide
        steps:
          - id: count
            prompt: How many?
            type: int
          - id: color
            prompt: Which colour?
            choices: [red, green]
          - id: file
            prompt: Which file?
            pattern: '[a-z]+\.txt'
      - name: Act
        steps:
          - id: act
            run: [touch, acted.txt]
            timeout: 10s
"#;

#[test]
fn every_answer_is_checked_before_the_first_step() {
    let sandbox = Sandbox::new();
    sandbox.file("ask.yaml", ASK);
    let good = ["--answer", "count=3", "--answer", "color=red", "--answer", "file=a.txt"];
    let cases = [
        ("count=three", "count", "expected"),
        ("color=blue", "color", "not one of the choices: red, green"),
        ("file=A.TXT", "file", "does not match the pattern `[a-z]+\\.txt`"),
    ];
    for (bad, id, reason) in cases {
        let mut args: Vec<&str> = vec!["ask", "go", "--yes", "--migration", "001_a.sql"];
        for pair in good.chunks(2) {
            if !pair[1].starts_with(&format!("{id}=")) {
                args.extend(pair);
            }
        }
        args.extend(["--answer", bad]);
        let out = sandbox.runbook().args(&args).output().status(2);
        assert!(out.stderr().contains(&format!("invalid --answer {id}=")), "{bad}: {}", out.stderr());
        assert!(out.stderr().contains(reason), "{bad}: {}", out.stderr());
        assert!(!out.stderr().contains("^(?:"), "the internal regex was shown: {}", out.stderr());
        assert!(sandbox.journals().is_empty(), "{bad}: a run started");
    }
    let out = sandbox.runbook().args(["ask", "go", "--yes", "--migration", "add.sql"]).args(good).output().status(2);
    assert!(
        out.stderr().contains("is not a migration filename such as NNN_name.sql (e.g. 001_add_tags.sql)"),
        "{}",
        out.stderr()
    );
    sandbox.runbook().args(["ask", "go", "--yes", "--migration", "001_a.sql"]).args(good).output().success();
    assert!(sandbox.path().join("acted.txt").exists());
}

#[test]
fn history_lists_the_later_of_two_runs_in_the_same_second_first() {
    let sandbox = Sandbox::new();
    sandbox.file("quick.yaml", "runbook: quick\ntitle: Quick\nprocedures:\n  go:\n    summary: Nothing\n    stages:\n      - name: S\n        steps:\n          - {id: ok, run: ['true'], effect: read}\n");
    // Five runs within a second or two: with whole-second ids and a random suffix their
    // order in `history` was a coin toss per pair.
    let mut started = Vec::new();
    for _ in 0..5 {
        sandbox.runbook().args(["quick", "go"]).output().success();
        started.push(sandbox.journals().into_iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
    }
    let mut order: Vec<String> = Vec::new();
    for journals in started {
        let new = journals.into_iter().find(|j| !order.iter().any(|o| o == j)).unwrap_or_default();
        order.push(new);
    }
    let ids: Vec<String> = order
        .iter()
        .map(|p| std::path::Path::new(p).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success().stdout();
    let listed: Vec<String> = serde_json::from_str::<serde_json::Value>(&history)
        .unwrap_or_default()
        .as_array()
        .map(|runs| runs.iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first, "history is newest first");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "run ids sort by start time");
}

#[test]
fn a_runbook_name_from_a_folder_without_runbooks_says_where_to_look() {
    let sandbox = Sandbox::new();
    std::fs::remove_dir(sandbox.path().join("runbooks")).unwrap_or_else(|e| panic!("{e}"));
    let out = Run::new(sandbox.path()).args(["rollback", "pitr", "--env", "production"]).output().status(2);
    let stderr = out.stderr();
    assert!(stderr.contains("unrecognized subcommand 'rollback'"), "{stderr}");
    assert!(stderr.contains("runbooks are looked for in"), "{stderr}");
    assert!(stderr.contains("runbooks") && stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("--dir PATH") && stderr.contains("RUNBOOK_DIR=PATH"), "{stderr}");
}

#[test]
fn a_prompt_after_a_mutating_step_is_warned_about() {
    let sandbox = Sandbox::new();
    let path = sandbox.file(
        "late.yaml",
        r#"runbook: late
title: Asks late
procedures:
  go:
    summary: Acts, then asks
    stages:
      - name: S
        steps:
          - {id: act, run: [touch, x], timeout: 5s}
          - {id: ask, prompt: Sure?}
"#,
    );
    let out = sandbox.runbook().args(["validate".as_ref(), path.as_os_str()]).output().success();
    assert!(out.all().contains("RB104"), "{}", out.all());
    assert!(out.all().contains("prompt `ask` is asked after the mutating step `act`"), "{}", out.all());
}

const CHANGES: &str = r#"
runbook: change
title: Decide, change, verify
procedures:
  go:
    summary: Pick a colour, change two things, then check
    stages:
      - name: Decide
        steps:
          - id: colour
            prompt: Which colour?
            choices: [blue, green]
      - name: Change
        steps:
          - id: start_op
            run: [sh, -c, 'echo "{\"name\": \"op-42\", \"operationType\": \"UPDATE\", \"status\": \"PENDING\", \"colour\": \"$1\"}"', x, "{{ steps.colour.output }}"]
            capture: json
            timeout: 5s
          - id: add_version
            run: [sh, -c, 'echo "Created version [3] of the secret [db-url]." >&2']
            timeout: 5s
      - name: Check
        steps:
          - id: check
            run: [sh, -c, 'test -f ok']
            effect: read
"#;

/// The end of a run's output with times, durations, run ids and paths made stable.
fn stable_summary(stderr: &str) -> String {
    let start = stderr.find("Summary:").unwrap_or(0);
    stderr[start..].to_owned()
}

#[test]
fn the_summary_lists_decisions_changes_earlier_steps_and_ends_with_the_run_id() {
    let sandbox = Sandbox::new();
    sandbox.file("change.yaml", CHANGES);
    let first = sandbox.runbook().args(["change", "go", "--yes", "--answer", "colour=green"]).output().status(1);
    let id = sandbox.last_run_id();
    std::fs::write(sandbox.path().join("ok"), "").unwrap_or_else(|e| panic!("{e}"));
    let resumed = sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    let filters = vec![
        (r"\[\d\d:\d\d:\d\d\] ", ""),
        (r"\d+\.\ds", "[DURATION]"),
        (r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}", "[RUN_ID]"),
    ];
    insta::with_settings!({ filters => filters, prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("summary_of_a_failed_run", stable_summary(&first.stderr()));
        insta::assert_snapshot!("summary_of_a_resumed_run", stable_summary(&resumed.stderr()));
    });
    let last = resumed.stderr().trim_end().lines().last().unwrap_or_default().to_owned();
    assert!(last.contains(&format!("runbook show {id}")), "the run id comes last: {last}");
    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("decisions:\n  colour: green\n"), "{shown}");
    assert!(
        shown.contains("changes:\n  start_op: operationType UPDATE, name op-42, status PENDING when started\n"),
        "{shown}"
    );
}

#[test]
fn a_label_on_a_static_choice_list_is_a_validation_error() {
    let sandbox = Sandbox::new();
    let path = sandbox.file(
        "lbl.yaml",
        "runbook: lbl\ntitle: L\nprocedures:\n  go:\n    summary: s\n    stages:\n      - name: S\n        steps:\n          - {id: p, prompt: Q, choices: [a, b], label: 'x {{ item }}'}\n",
    );
    let out = sandbox.runbook().args(["validate".as_ref(), path.as_os_str()]).output().status(1);
    assert!(out.all().contains("`label` applies to the items of `choices` given as an expression"), "{}", out.all());
}
