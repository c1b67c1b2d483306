//! Four eyes: `--save-plan`, `approve`, `apply`, and break-glass direct runs.

use std::path::{Path, PathBuf};

use crate::support::{Finished, Run, Sandbox, write_executable};

pub(super) const SVC: &str = r#"runbook: svc
title: Switch the serving revision
environments:
  production:
    protected: true
    approvals: 1
    vars: {file: serving.txt}
  staging:
    vars: {file: serving.txt}
params:
  token:
    type: string
    secret: true
    required: false
procedures:
  switch:
    summary: Point traffic at the revision after the serving one
    params: [token]
    stages:
      - name: Look
        steps:
          - id: current
            run: [cat, "{{ vars.file }}"]
            effect: read
            capture: text
            timeout: 5s
      - name: Switch
        steps:
          - id: reason
            prompt: Why?
          - id: switch
            run: [sh, -c, 'echo "$1 $2 ${TOKEN:-none}" >> switched.log', x, "{{ steps.current.output }}-next", "{{ steps.reason.output }}"]
            env: {TOKEN: "{{ params.token }}"}
            timeout: 5s
"#;

/// A sandbox with the runbook, the serving revision `rev-1`, and a `gcloud` that reports
/// `CLOUDSDK_CORE_ACCOUNT` as the active account the way the real one does (the rehearsal
/// test below uses the real gcloud).
pub(super) fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file("svc.yaml", SVC);
    sandbox.file("./serving.txt", "rev-1\n");
    write_executable(
        &sandbox.path().join("bin/gcloud"),
        "#!/bin/sh\n[ \"$*\" = 'config get-value account' ] && [ -n \"$CLOUDSDK_CORE_ACCOUNT\" ] && echo \"$CLOUDSDK_CORE_ACCOUNT\"\n",
    );
    sandbox
}

pub(super) fn as_user(sandbox: &Sandbox, who: &str) -> Run {
    let path = format!("{}:{}", sandbox.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    sandbox.runbook().env("PATH", path).env("CLOUDSDK_CORE_ACCOUNT", who).env("RUNBOOK_PARAM_TOKEN", "t0ken-default")
}

pub(super) fn plan_path(sandbox: &Sandbox) -> PathBuf {
    sandbox.path().join("switch.plan")
}

pub(super) fn save_plan(sandbox: &Sandbox, who: &str, extra: &[&str]) -> Finished {
    as_user(sandbox, who)
        .args(["svc", "switch", "--env", "production", "--answer", "reason=rollback", "--save-plan", "switch.plan"])
        .args(extra)
        .output()
}

pub(super) fn plan_id(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().next().and_then(|l| l.strip_prefix("runbook plan ")).unwrap_or_default().to_owned()
}

pub(super) fn approve(sandbox: &Sandbox, who: &str) -> Finished {
    let prefix: String = plan_id(&plan_path(sandbox)).chars().take(8).collect();
    as_user(sandbox, who).args(["approve", "switch.plan", "--plan-id", &prefix, "--comment", "looks right"]).output()
}

pub(super) fn apply(sandbox: &Sandbox, who: &str) -> Finished {
    as_user(sandbox, who).args(["apply", "switch.plan", "--confirm-env", "production"]).output()
}

pub(super) fn switched(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(sandbox.path().join("switched.log")).unwrap_or_default()
}

#[test]
fn plan_by_a_approved_by_b_applies_once_and_the_journal_names_both() {
    let sandbox = sandbox();
    let out = save_plan(&sandbox, "a@x", &[]).success();
    let id = plan_id(&plan_path(&sandbox));
    assert_eq!(id.len(), 64, "{}", out.all());
    assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
    assert!(out.stderr().contains(&id), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "", "saving a plan mutates nothing");

    let shown = as_user(&sandbox, "a@x").args(["show-plan", "switch.plan"]).output().success();
    for needle in [&id[..8], "rev-1-next", "current: rev-1", "(now 0)", "1 approval by someone other than a@x"] {
        assert!(shown.stdout().contains(needle), "missing {needle:?} in\n{}", shown.stdout());
    }

    let out = approve(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("someone else must approve it"), "{}", out.stderr());
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("has 0 of 1 approval"), "{}", out.stderr());

    approve(&sandbox, "b@x").success();
    let out = approve(&sandbox, "b@x").status(2);
    assert!(out.stderr().contains("approved plan") && out.stderr().contains("already"), "{}", out.stderr());

    let out = apply(&sandbox, "a@x").success();
    assert_eq!(switched(&sandbox), "rev-1-next rollback t0ken-default\n", "{}", out.all());
    let journal = std::fs::read_to_string(sandbox.journals().pop().unwrap_or_default()).unwrap_or_default();
    let header: serde_json::Value =
        serde_json::from_str(journal.lines().next().unwrap_or_default()).unwrap_or_default();
    assert_eq!(header["plan_id"], id.as_str());
    assert_eq!(header["approvers"], serde_json::json!(["b@x"]));
    let show = sandbox.runbook().args(["show", &sandbox.last_run_id()]).output().success();
    assert!(show.stdout().contains(&format!("applied plan {id}, approved by b@x")), "{}", show.stdout());

    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("was applied already"), "{}", out.stderr());
    assert_eq!(switched(&sandbox).lines().count(), 1, "a plan runs once");
}

#[test]
fn a_direct_run_of_an_environment_that_needs_approvals_is_refused_without_break_glass() {
    let sandbox = sandbox();
    let out = as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--env", "production", "--yes", "--answer", "reason=x"])
        .output();
    let out = out.status(2);
    assert!(out.stderr().contains("needs 1 approval") && out.stderr().contains("--break-glass"), "{}", out.stderr());
    assert!(sandbox.journals().is_empty(), "nothing ran");
    // Staging needs none; dry-runs and rehearsal flags are untouched by the rule.
    as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--env", "staging", "--yes", "--answer", "reason=x"])
        .output()
        .success();
    as_user(&sandbox, "a@x").args(["svc", "switch", "--env", "production", "--dry-run"]).output().success();

    let out = as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--env", "production", "--yes", "--confirm-env", "production", "--answer", "reason=x"])
        .args(["--break-glass", "prod is down, nobody answers"])
        .output()
        .success();
    assert!(out.stderr().contains("BREAK GLASS"), "{}", out.stderr());
    // Two runs may start in the same second, so ids need not sort by start: ask history.
    let json = sandbox.runbook().args(["history", "--break-glass", "--format", "json"]).output().success();
    let list: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap_or_default();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{}", json.stdout());
    let id = list[0]["id"].as_str().unwrap_or_default().to_owned();
    let show = sandbox.runbook().args(["show", &id]).output().success();
    assert!(
        show.stdout().contains("BREAK GLASS (run without an approved plan): prod is down, nobody answers"),
        "{}",
        show.stdout()
    );
    let history = sandbox.runbook().args(["history", "--break-glass"]).output().success();
    assert!(history.stdout().contains(&id) && history.stdout().contains("BREAK GLASS"), "{}", history.stdout());
    assert_eq!(history.stdout().lines().filter(|l| l.contains("svc")).count(), 1, "{}", history.stdout());
    let json = sandbox.runbook().args(["history", "--format", "json"]).output().success();
    assert!(json.stdout().contains("\"break_glass\": \"prod is down, nobody answers\""), "{}", json.stdout());

    let out = as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--env", "production", "--yes", "--answer", "reason=x", "--break-glass", "a\u{1b}[2Jb"])
        .output()
        .status(2);
    assert!(out.stderr().contains("control characters"), "{}", out.stderr());
}

#[test]
fn apply_after_the_runbook_was_edited_is_refused() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    sandbox.file("svc.yaml", &SVC.replace("-next", "-after"));
    let shown = as_user(&sandbox, "b@x").args(["show-plan", "switch.plan"]).output().success();
    assert!(shown.stdout().contains("apply will refuse this plan"), "{}", shown.stdout());
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("changed since plan") && out.stderr().contains("sha256"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "");
}

#[test]
fn apply_after_the_probed_value_changed_is_refused_with_the_difference() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    sandbox.file("./serving.txt", "rev-2\n");
    let out = apply(&sandbox, "a@x").status(2);
    let err = out.stderr();
    assert!(err.contains("is stale") && err.contains("current: the output changed"), "{err}");
    assert!(err.contains("- plan: rev-1") && err.contains("+ now:  rev-2"), "{err}");
    assert_eq!(switched(&sandbox), "");
    assert!(sandbox.journals().is_empty());
}

#[test]
fn an_expired_plan_is_refused_by_approve_and_apply() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &["--plan-ttl", "1s"]).success();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = approve(&sandbox, "b@x").status(2);
    assert!(out.stderr().contains("expired"), "{}", out.stderr());
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("expired"), "{}", out.stderr());
    let out = save_plan(&sandbox, "a@x", &["--plan-ttl", "soon"]).status(2);
    assert!(out.stderr().contains("--plan-ttl"), "{}", out.stderr());
}

#[test]
fn a_tampered_plan_file_is_refused_and_old_approvals_do_not_carry_over() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    let path = plan_path(&sandbox);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, text.replace("rev-1-next", "rev-9-next")).unwrap_or_else(|e| panic!("{e}"));
    for args in [vec!["apply", "switch.plan", "--confirm-env", "production"], vec!["show-plan", "switch.plan"]] {
        let out = as_user(&sandbox, "a@x").args(args).output().status(2);
        assert!(out.stderr().contains("was altered"), "{}", out.stderr());
    }
    // Re-labelling the altered content with its own hash makes it another plan: unapproved.
    let body = text.replace("rev-1-next", "rev-9-next");
    let json = body.split_once('\n').map(|(_, j)| j).unwrap_or_default();
    let id = sha256_hex(json.as_bytes());
    std::fs::write(&path, format!("runbook plan {id}\n{json}")).unwrap_or_else(|e| panic!("{e}"));
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("has 0 of 1 approval"), "{}", out.stderr());
    // An approval file copied over from the original plan names the original id.
    let old_id = text.lines().next().and_then(|l| l.strip_prefix("runbook plan ")).unwrap_or_default();
    let from = sandbox.path().join("state/plans").join(old_id).join("approvals");
    let to = sandbox.path().join("state/plans").join(&id).join("approvals");
    std::fs::create_dir_all(&to).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(&from).unwrap_or_else(|e| panic!("{e}")).flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("is for another plan"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "");
}

#[test]
fn secrets_stay_out_of_the_plan_and_are_given_again_at_apply() {
    let sandbox = sandbox();
    let out = save_plan(&sandbox, "a@x", &["--token", "s3cret-token-value"]).success();
    let text = std::fs::read_to_string(plan_path(&sandbox)).unwrap_or_default();
    assert!(!text.contains("s3cret-token-value"), "{text}");
    assert!(!out.all().contains("s3cret-token-value"));
    approve(&sandbox, "b@x").success();
    let out = as_user(&sandbox, "a@x")
        .env("RUNBOOK_PARAM_TOKEN", "an0ther-token")
        .args(["apply", "switch.plan", "--confirm-env", "production"])
        .output()
        .success();
    assert_eq!(switched(&sandbox), "rev-1-next rollback an0ther-token\n", "{}", out.all());
    let journal = std::fs::read_to_string(sandbox.journals().pop().unwrap_or_default()).unwrap_or_default();
    assert!(!journal.contains("an0ther-token"), "{journal}");
}

#[test]
fn apply_of_a_protected_environment_without_a_terminal_needs_confirm_env() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    let out = as_user(&sandbox, "a@x").args(["apply", "switch.plan"]).output().status(2);
    assert!(out.stderr().contains("--confirm-env production"), "{}", out.stderr());
    let out = as_user(&sandbox, "a@x").args(["apply", "switch.plan", "--confirm-env", "staging"]).output().status(2);
    assert!(out.stderr().contains("does not match"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "");
    // Refusals do not spend the plan.
    apply(&sandbox, "a@x").success();
}

#[test]
fn saving_a_plan_without_a_terminal_needs_every_answer() {
    let sandbox = sandbox();
    let out = as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--env", "production", "--save-plan", "switch.plan"])
        .output()
        .status(2);
    assert!(out.stderr().contains("--answer reason=VALUE"), "{}", out.stderr());
    assert!(!plan_path(&sandbox).exists());
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn github_mode_names_the_actor_as_author_and_the_environment_reviewer_as_approver() {
    let sandbox = sandbox();
    let github = |run: Run| run.env("GITHUB_ACTIONS", "true").env("GITHUB_ACTOR", "alice");
    let out = github(as_user(&sandbox, "deployer@project.iam.gserviceaccount.com"))
        .args(["svc", "switch", "--env", "production", "--answer", "reason=gh", "--save-plan", "switch.plan"])
        .output()
        .success();
    assert!(out.stderr().contains("made by github:alice"), "{}", out.stderr());
    let prefix: String = plan_id(&plan_path(&sandbox)).chars().take(8).collect();
    let approve = |reviewer: &str| {
        github(as_user(&sandbox, "deployer@project.iam.gserviceaccount.com"))
            .env("RUNBOOK_GITHUB_REVIEWER", reviewer)
            .args(["approve", "switch.plan", "--plan-id", &prefix, "--approver-from-github"])
            .output()
    };
    let out = approve("alice").status(2);
    assert!(out.stderr().contains("someone else must approve it"), "{}", out.stderr());
    let out = approve("bob; rm -rf /").status(2);
    assert!(out.stderr().contains("GitHub login"), "{}", out.stderr());
    let out = as_user(&sandbox, "b@x")
        .env("RUNBOOK_GITHUB_REVIEWER", "bob")
        .args(["approve", "switch.plan", "--plan-id", &prefix, "--approver-from-github"])
        .output()
        .status(2);
    assert!(out.stderr().contains("only in a GitHub Actions job"), "{}", out.stderr());
    approve("bob").success();
    github(as_user(&sandbox, "deployer@project.iam.gserviceaccount.com"))
        .args(["apply", "switch.plan", "--confirm-env", "production"])
        .output()
        .success();
    let journal = std::fs::read_to_string(sandbox.journals().pop().unwrap_or_default()).unwrap_or_default();
    assert!(journal.contains("\"approvers\":[\"github:bob\"]"), "{journal}");
}

#[test]
fn the_github_workflow_plans_then_applies_production_behind_the_environment_review() {
    let text = std::fs::read_to_string(crate::support::repo_root().join(".github/workflows/run-runbook.yml"))
        .unwrap_or_default();
    let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("not YAML: {e}"));
    let jobs = &parsed["jobs"];
    assert_eq!(jobs["apply"]["needs"], "plan");
    assert_eq!(jobs["apply"]["environment"], "${{ inputs.environment }}");
    let steps = |job: &str| jobs[job]["steps"].to_string();
    assert!(steps("plan").contains("--save-plan run.plan") && steps("plan").contains("upload-artifact"));
    for needle in ["download-artifact", "/approvals", "--approver-from-github", "apply run.plan --confirm-env"] {
        assert!(steps("apply").contains(needle), "apply job lacks {needle}");
    }
}

#[test]
fn a_file_that_is_not_a_plan_is_refused_whatever_it_holds() {
    let sandbox = sandbox();
    let valid_looking = format!("runbook plan {}\n{{}}", "a".repeat(64));
    let cases: [&[u8]; 5] =
        [b"", b"runbook plan \n{}", b"\xff\xfe\x00garbage\n", b"runbook plan 0123\n{}", valid_looking.as_bytes()];
    for bytes in cases {
        std::fs::write(plan_path(&sandbox), bytes).unwrap_or_else(|e| panic!("{e}"));
        for command in ["show-plan", "approve", "apply"] {
            let extra: &[&str] = if command == "approve" { &["--plan-id", "aaaaaaaa"] } else { &[] };
            let out = as_user(&sandbox, "b@x").args([command, "switch.plan"]).args(extra).output().status(2);
            let err = out.stderr();
            assert!(err.contains("is not a runbook plan") || err.contains("was altered"), "{command}: {err}");
        }
    }
}

/// `show-plan --output json`: what a reviewer's tooling needs, secrets never in it, and the
/// approvals and "applied" state as the store holds them at each moment.
#[test]
fn show_plan_as_json_names_the_plan_its_approvals_and_no_secret() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &[]).success();
    let id = plan_id(&plan_path(&sandbox));
    let json = |sandbox: &Sandbox| -> serde_json::Value {
        let out = as_user(sandbox, "a@x").args(["show-plan", "switch.plan", "--output", "json"]).output().success();
        assert!(!out.stdout().contains("t0ken-default"), "a secret param in the plan's JSON:\n{}", out.stdout());
        serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout()))
    };
    let shown = json(&sandbox);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["creator"], "a@x");
    assert_eq!(shown["procedure"], "switch");
    assert_eq!(shown["environment"], "production");
    assert_eq!(shown["expired"], false);
    assert_eq!(shown["runbook"]["unchanged"], true);
    assert_eq!(shown["secret_params"], serde_json::json!(["token"]));
    assert_eq!(shown["answers"]["reason"], "rollback");
    assert_eq!(shown["probes"][0]["step"], "current");
    assert_eq!(shown["approvals_required"], 1);
    assert_eq!(shown["approvals"], serde_json::json!([]));
    assert_eq!(shown["applied"], serde_json::Value::Null);

    approve(&sandbox, "b@x").success();
    let shown = json(&sandbox);
    assert_eq!(shown["approvals"][0]["approver"], "b@x", "{shown}");
    assert_eq!(shown["approvals"][0]["comment"], "looks right");
    as_user(&sandbox, "a@x").args(["apply", "switch.plan", "--confirm-env", "production"]).output().success();
    let shown = json(&sandbox);
    assert_eq!(shown["applied"]["by"], "a@x", "{shown}");

    sandbox.file("svc.yaml", &SVC.replace("Why?", "Why now?"));
    assert_eq!(json(&sandbox)["runbook"]["unchanged"], false, "a changed runbook shows");
    let out = sandbox.runbook().args(["show-plan", "missing.plan", "--output", "json"]).output();
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("missing.plan"), "{}", out.stderr());
}
