//! Schema, docs, completions, man pages, validate's output formats and the workflows.

use crate::support::{Run, Sandbox, repo_root};

fn in_repo() -> Run {
    Run::new(&repo_root())
}

#[test]
fn the_schema_command_prints_the_checked_in_schema() {
    let out = in_repo().args(["schema"]).output().success();
    let checked_in = std::fs::read_to_string(repo_root().join("schema/runbook.schema.json")).unwrap_or_default();
    assert_eq!(out.stdout(), checked_in, "regenerate with: cargo run -- schema > schema/runbook.schema.json");
    let rollback = std::fs::read_to_string(repo_root().join("runbooks/rollback.yaml")).unwrap_or_default();
    assert!(rollback.starts_with("# yaml-language-server: $schema=../schema/runbook.schema.json\n"));
}

#[test]
fn docs_rollback_md_is_generated_from_the_yaml() {
    let out = in_repo().args(["docs", "rollback"]).output().success();
    let checked_in = std::fs::read_to_string(repo_root().join("docs/rollback.md")).unwrap_or_default();
    assert!(out.stdout() == checked_in, "docs/rollback.md is stale: cargo run -- docs rollback > docs/rollback.md");
    let by_file = in_repo().args(["docs", "runbooks/rollback.yaml"]).output().success();
    assert_eq!(by_file.stdout(), checked_in);
}

#[test]
fn the_rollback_document_covers_the_seed_runbook() {
    let doc = std::fs::read_to_string(repo_root().join("docs/rollback.md")).unwrap_or_default();
    // Every instruction of the seed, by a phrase or the command it gives.
    for needle in [
        "schema migration causes production errors",
        "applied automatically at startup",
        "no in-app `down` migration executor",
        "API/worker fails after deploy",
        "schema mismatch",
        "Elevated 5xx rates",
        "pause the deploy pipeline",
        "scale down the new release",
        "Keep one healthy version active",
        "backend/migrations/*.sql",
        "gcloud sql instances clone <vars.instance> <vars.clone_instance> --point-in-time=<timestamp>",
        "gcloud sql instances describe <vars.clone_instance> --project=<vars.project> '--format=value(ipAddresses[0].ipAddress)'",
        "gcloud secrets versions add <vars.secret> --data-file=- --project=<vars.project>",
        "gcloud sql backups list --instance=<vars.instance> --project=<vars.project>",
        "gcloud sql backups restore",
        "--restore-instance=<vars.instance>",
        "gcloud run revisions list --service=<vars.service> --region=<vars.region> --project=<vars.project> --limit=5",
        "gcloud run services update-traffic <vars.service>",
        "=100",
        "Restore storage snapshot only if",
        "lexicographically",
        "IF EXISTS",
        "against a staging clone before the production deploy",
        "/health/ready",
        "/courses",
        "/lectures",
        "./scripts/smoke_worker_queue.sh",
        "API_BASE_URL=",
        "production-like data volume",
        "Prefer additive migrations",
        "split into 2 releases",
        "rollback strategy",
        "expected lock behavior",
        "data backfill plan",
        "runtime compatibility notes",
        "delta-student-486911-n5",
        "pegasus-db-eu-rollback",
        "https://pegasus-api-988514135894.europe-west1.run.app",
    ] {
        assert!(doc.contains(needle), "docs/rollback.md lacks `{needle}`");
    }
}

#[test]
fn completions_know_runbooks_procedures_and_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = in_repo().args(["completions", shell]).output().success();
        let script = out.stdout();
        for needle in ["rollback", "pitr", "revert-traffic", "timestamp", "validate"] {
            assert!(script.contains(needle), "{shell} completion lacks {needle}");
        }
    }
    let out = in_repo().args(["completions", "powershell"]).output().success();
    assert!(out.stdout().contains("rollback"));
}

#[test]
fn man_pages_are_generated() {
    let out = in_repo().args(["man"]).output().success();
    assert!(out.stdout().contains(".TH runbook"), "{}", out.stdout());
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("man");
    in_repo().args(["man".as_ref(), "--out-dir".as_ref(), dir.as_os_str()]).output().success();
    assert!(dir.join("runbook.1").is_file());
    assert!(dir.join("runbook-validate.1").is_file());
}

fn corpus(format: &str) -> String {
    in_repo().args(["validate", "tests/broken", "--format", format]).output().status(1).stdout()
}

#[test]
fn validate_formats_on_the_broken_corpus() {
    let json: serde_json::Value = serde_json::from_str(&corpus("json")).unwrap_or_else(|e| panic!("json: {e}"));
    let list = json.as_array().cloned().unwrap_or_default();
    let errors = list.iter().filter(|d| d["severity"] == "error").count();
    let files = std::fs::read_dir(repo_root().join("tests/broken")).map(|d| d.count()).unwrap_or(0);
    assert!(errors >= files, "every file's error is listed ({errors} errors, {files} files)");
    for d in &list {
        for key in ["file", "line", "column", "end_line", "end_column", "severity", "code", "message"] {
            assert!(!d[key].is_null(), "{key} missing in {d}");
        }
    }
    let github = corpus("github");
    assert_eq!(github.lines().count(), list.len());
    assert!(
        github
            .lines()
            .all(|l| l.starts_with("::error file=tests/broken/") || l.starts_with("::warning file=tests/broken/"))
    );
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("validate_corpus_json", corpus("json"));
        insta::assert_snapshot!("validate_corpus_github", github);
    });
    let auto = in_repo().env("GITHUB_ACTIONS", "true").args(["validate", "tests/broken"]).output().status(1);
    assert_eq!(auto.stdout(), corpus("github"), "GITHUB_ACTIONS=true picks the github format");
}

#[test]
fn warnings_fail_only_with_strict() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "warn.yaml",
        "runbook: warn\ntitle: Warn\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: a, shell: 'echo hello'}\n",
    );
    let out = sandbox.runbook().args(["validate"]).output().success();
    assert!(out.stderr().contains("warning[RB101]") && out.stderr().contains("warning[RB102]"), "{}", out.stderr());
    sandbox.runbook().args(["validate", "--strict"]).output().status(1);
    in_repo().args(["validate", "runbooks", "--strict"]).output().success();
}

#[test]
fn workflows_parse_and_run_the_checks() {
    let dir = repo_root().join(".github/workflows");
    let ci = std::fs::read_to_string(dir.join("ci.yml")).unwrap_or_default();
    let dispatch = std::fs::read_to_string(dir.join("run-runbook.yml")).unwrap_or_default();
    for (name, text) in [("ci.yml", &ci), ("run-runbook.yml", &dispatch)] {
        let parsed: Result<serde_json::Value, _> = serde_saphyr::from_str(text);
        let parsed = parsed.unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        assert!(parsed["jobs"].is_object(), "{name} has jobs");
        assert!(parsed.get("on").is_some(), "{name} has triggers");
    }
    assert!(ci.contains("validate runbooks/ --format github"));
    assert!(ci.contains(".ci/run"));
    assert!(dispatch.contains("workflow_dispatch") && dispatch.contains("environment: ${{ inputs.environment }}"));
    // --yes never confirms a protected environment: the approved environment is named.
    assert!(dispatch.contains("--yes --confirm-env \"$TARGET_ENV\""), "run-runbook.yml must pass --confirm-env");
}
