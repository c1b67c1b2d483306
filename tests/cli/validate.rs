//! `runbook validate`: the shipped runbooks are clean; every broken one is caught.

use crate::support::{Sandbox, repo_root};

fn broken_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("tests/broken"))
        .unwrap_or_else(|e| panic!("tests/broken: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_runbooks_are_clean() {
    let out = crate::support::Run::new(&repo_root()).args(["validate", "runbooks"]).output().success();
    assert!(out.stdout().contains("no problems"), "{}", out.stdout());
    assert_eq!(out.stderr(), "");
}

#[test]
fn every_broken_runbook_yields_its_diagnostic() {
    let files = broken_files();
    assert!(files.len() >= 15, "the corpus needs at least 15 distinct mistakes, has {}", files.len());
    let mut codes = std::collections::BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(repo_root()).unwrap_or(&file).to_path_buf();
        let out =
            crate::support::Run::new(&repo_root()).args(["validate".as_ref(), relative.as_os_str()]).output().status(1);
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mistake = text.lines().next().unwrap_or_default().to_owned();
        let stderr = out.stderr();
        assert!(stderr.contains(&format!("{}:", relative.display())), "{stem}: no file:line:col in\n{stderr}");
        let json = crate::support::Run::new(&repo_root())
            .args(["validate".as_ref(), relative.as_os_str(), "--format".as_ref(), "json".as_ref()])
            .output()
            .status(1);
        let list: serde_json::Value =
            serde_json::from_str(&json.stdout()).unwrap_or_else(|e| panic!("{stem}: json: {e}"));
        let first =
            list.as_array().into_iter().flatten().find(|d| d["severity"] == "error").cloned().unwrap_or_default();
        codes.insert(first["code"].as_str().unwrap_or_default().to_owned());
        let errors = list.as_array().into_iter().flatten().filter(|d| d["severity"] == "error").count();
        assert_eq!(errors, 1, "{stem}: expected exactly one error, got\n{stderr}");
        insta::with_settings!({ description => mistake, prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("broken__{stem}"), stderr);
        });
    }
    assert!(codes.len() >= 15, "distinct error codes: {codes:?}");
}

#[test]
fn a_folder_is_reported_in_one_pass() {
    let out = crate::support::Run::new(&repo_root())
        .args(["validate", "tests/broken", "--format", "json"])
        .output()
        .status(1);
    let list: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("json: {e}"));
    let files: std::collections::BTreeSet<&str> =
        list.as_array().into_iter().flatten().filter_map(|d| d["file"].as_str()).collect();
    assert_eq!(files.len(), broken_files().len(), "every file reported: {files:?}");
}

#[test]
fn several_mistakes_in_one_file_are_all_reported() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "many.yaml",
        r#"runbook: many
title: Many
params:
  token: {type: string, secret: true}
procedures:
  go:
    summary: Go
    params: [token]
    stages:
      - name: One
        steps:
          - id: a
            run: [echo, "{{ params.token }}", "{{ params.nope }}"]
            captur: text
          - id: b
            manual: "{{ steps.later.output }}"
          - id: later
            run: [true]
            timeout: 5
          - {id: a, manual: again}
"#,
    );
    let out = sandbox.runbook().args(["validate"]).output().status(1);
    let stderr = out.stderr();
    for code in ["RB012", "RB007", "RB002", "RB006", "RB010", "RB003"] {
        assert!(stderr.contains(code), "{code} missing from\n{stderr}");
    }
    assert!(stderr.contains("runbooks/many.yaml:13:"), "{stderr}");
}

#[test]
fn running_a_broken_runbook_runs_nothing_and_exits_2() {
    let sandbox = Sandbox::new();
    let (bin, log) = sandbox.recording_path(&["touch"]);
    sandbox.file(
        "bad.yaml",
        "runbook: bad\ntitle: Bad\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: a, run: [touch, x]}\n          - {id: b, run: [echo, \"{{ params.missing }}\"]}\n",
    );
    let out = sandbox.runbook().env("PATH", &bin).args(["bad", "go", "--yes"]).output().status(2);
    assert!(out.stderr().contains("runbooks/bad.yaml:10:"), "{}", out.stderr());
    assert!(!log.exists(), "a step ran");
}

/// A runbook whose procedure `p{i}` includes `p{i+1}` (`times` times), `count` procedures.
fn include_chain(count: usize, times: usize) -> String {
    let mut text = String::from("runbook: chain\nprocedures:\n");
    for i in 0..count {
        text.push_str(&format!("  p{i}:\n    stages:\n      - name: S\n        steps:\n"));
        text.push_str(&format!("          - {{id: s{i}, run: [\"true\"], effect: read}}\n"));
        if i + 1 < count {
            for t in 0..times {
                text.push_str(&format!("          - {{id: i{i}_{t}, include: p{}}}\n", i + 1));
            }
        }
    }
    text
}

/// Issue 9 item 4: 4,000 chained procedures took 47 s; 30 procedures each including the
/// next twice never finished. The guard is generous: the point is "finishes", not speed.
#[test]
fn validation_time_does_not_explode_with_include_chains() {
    let sandbox = Sandbox::new();
    for (name, count, times, expected) in [
        ("long.yaml", 4000, 1, "includes nested more than 64 procedures deep"),
        ("doubled.yaml", 30, 2, "would run a second time"),
    ] {
        let file = sandbox.file(name, &include_chain(count, times));
        let started = std::time::Instant::now();
        let out = sandbox.runbook().args(["validate".as_ref(), file.as_os_str()]).output().status(1);
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{name}: {:?}", started.elapsed());
        assert!(out.stderr().contains(expected), "{name}: {}", out.stderr());
    }
    // Within the bound, a chain is fine.
    let file = sandbox.file("ok.yaml", &include_chain(60, 1));
    let out = sandbox.runbook().args(["validate".as_ref(), file.as_os_str()]).output().success();
    assert!(out.stdout().contains("no problems"), "{}", out.stderr());
}

/// Issue 9 item 7: the run silently picked the first of two files with one name.
#[test]
fn two_files_declaring_one_runbook_name_refuse_to_run_naming_both() {
    let sandbox = Sandbox::new();
    let text = "runbook: twin\nprocedures:\n  go:\n    stages:\n      - name: S\n        steps:\n          - {id: a, run: [touch, ran], effect: read}\n";
    sandbox.file("a.yaml", text);
    sandbox.file("b.yaml", text);
    let out = sandbox.runbook().args(["twin", "go", "--yes"]).output().status(2);
    assert!(out.stderr().contains("runbooks/a.yaml") && out.stderr().contains("runbooks/b.yaml"), "{}", out.stderr());
    assert!(!sandbox.path().join("ran").exists(), "a step ran");
    let out = sandbox.runbook().args(["validate"]).output().status(1);
    assert!(out.stderr().contains("also used by runbooks/b.yaml"), "{}", out.stderr());
    assert!(out.stderr().contains("also used by runbooks/a.yaml"), "{}", out.stderr());
}

/// Issue 9 item 17: a missing `title`/`summary` stopped validation and hid every
/// reference error; they are optional now and every error shows in one pass.
#[test]
fn missing_title_and_summary_hide_no_other_error() {
    let sandbox = Sandbox::new();
    let file = sandbox.file(
        "prose.yaml",
        "runbook: prose\nprocedures:\n  go:\n    stages:\n      - steps:\n          - {id: a, run: [echo, \"{{ params.x }}\"], timeout: 0s}\n          - {id: b, run: [echo, \"{{ steps.nope.output }}\"], effect: read}\n",
    );
    let out = sandbox
        .runbook()
        .args(["validate".as_ref(), file.as_os_str(), "--format".as_ref(), "json".as_ref()])
        .output()
        .status(1);
    let list: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("json: {e}"));
    let messages: Vec<&str> = list.as_array().into_iter().flatten().filter_map(|d| d["message"].as_str()).collect();
    for expected in ["a stage is missing `name`", "`params.x`", "`timeout` must be longer than zero", "no step `nope`"]
    {
        assert!(messages.iter().any(|m| m.contains(expected)), "{expected} missing from {messages:#?}");
    }
    assert!(!messages.iter().any(|m| m.contains("title") || m.contains("summary")), "{messages:#?}");
}
