//! Rehearsals: `runbooks/rollback.yaml` executed end to end by the real `gcloud` against the
//! project's local fake of the Google APIs (`runbook simulate`), state asserted afterwards.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{Run, Sandbox, binary, recent_timestamp, repo_root, write_executable};

/// The real gcloud, or `None` with a loud skip line; in CI a missing gcloud is a failure.
fn gcloud() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("gcloud")).find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "gcloud is not installed, and CI machines must have it");
        let _ =
            writeln!(std::io::stderr(), "\n*** SKIP: gcloud is not installed; the rehearsal tests did not run ***\n");
    }
    found
}

/// `runbook simulate` in the background, with what it printed for gcloud.
struct Fake {
    child: Child,
    port: u16,
    env: Vec<(String, String)>,
}

impl Fake {
    fn start(sandbox: &Sandbox) -> Fake {
        let mut child = Command::new(binary())
            .args(["simulate", "--port", "0"])
            .current_dir(sandbox.path())
            .env("RUNBOOK_STATE_DIR", sandbox.path().join("state"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("runbook simulate: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut env = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            if let Some(assignment) = line.strip_prefix("export ") {
                let words = shell_words::split(assignment).unwrap_or_default();
                if let Some((key, value)) = words.first().and_then(|w| w.split_once('=')) {
                    env.push((key.to_owned(), value.to_owned()));
                }
            }
            if line.starts_with("# Ctrl-C") {
                break;
            }
        }
        let port = env
            .iter()
            .find(|(k, _)| k == "CLOUDSDK_PROXY_PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("the fake printed no port"));
        Fake { child, port, env }
    }

    fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}/app", self.port)
    }

    fn admin(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap_or_else(|e| panic!("connect: {e}"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("send: {e}"));
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap_or_else(|e| panic!("read: {e}"));
        let json = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str(json).unwrap_or_else(|e| panic!("admin {path}: {e}: {response}"))
    }

    fn state(&self) -> serde_json::Value {
        self.admin("GET", "/__fake/state", "")
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        self.admin("GET", "/__fake/requests", "").as_array().cloned().unwrap_or_default()
    }

    fn faults(&self, faults: &str) {
        self.admin("POST", "/__fake/faults", faults);
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sandbox with rollback.yaml, the app's smoke script, and a `gcloud` on PATH that logs
/// every command line before running the real one.
fn rehearsal(gcloud: &Path) -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new();
    sandbox.copy_rollback();
    let smoke = std::fs::read_to_string(repo_root().join("examples/pegasus/scripts/smoke_worker_queue.sh"))
        .unwrap_or_else(|e| panic!("smoke script: {e}"));
    write_executable(&sandbox.path().join("scripts/smoke_worker_queue.sh"), &smoke);
    let argv_log = sandbox.path().join("gcloud-argv.log");
    write_executable(
        &sandbox.path().join("bin/gcloud"),
        &format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n", argv_log.display(), gcloud.display()),
    );
    (sandbox, argv_log)
}

fn runbook(sandbox: &Sandbox, fake: &Fake) -> Run {
    let path = format!("{}:{}", sandbox.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut run = sandbox.runbook().env("PATH", path);
    for (key, value) in &fake.env {
        run = run.env(key, value);
    }
    run
}

const PROJECT: &str = "delta-student-486911-n5";
const ORIGINAL_SECRET: &str = "postgresql://pegasus:s3cr3t-pw@10.20.0.3:5432/pegasus?sslmode=require";

fn journals(sandbox: &Sandbox) -> String {
    std::fs::read_dir(sandbox.path().join("state/runs"))
        .map(|d| d.filter_map(Result::ok).map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect())
        .unwrap_or_default()
}

#[test]
fn pitr_rehearsal_clones_repoints_the_secret_reverts_traffic_and_verifies() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, argv_log) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    // A slow clone: the operation needs three polls before it is done.
    fake.faults(r#"{"operations": [{"operation_type": "CLONE", "polls": 3}]}"#);
    let ts = recent_timestamp();
    let out = runbook(&sandbox, &fake)
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes"])
        .args(["--break-glass", "rehearsal against the local fake"])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .args(["--var", &format!("api_base_url={}", fake.app_url())])
        .output();
    let all = out.all();
    assert_eq!(out.code(), 0, "{all}");

    let requests = fake.requests();
    let clone = requests
        .iter()
        .find(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/pegasus-db-eu/clone")))
        .unwrap_or_else(|| panic!("no clone request: {requests:?}"));
    let point_in_time = clone["body"]["cloneContext"]["pointInTime"].as_str().unwrap_or_default();
    assert!(point_in_time.starts_with(ts.trim_end_matches('Z')), "clone at {point_in_time}, asked {ts}");
    assert_eq!(clone["body"]["cloneContext"]["destinationInstanceName"], "pegasus-db-eu-rollback");

    let state = fake.state();
    let project = &state["projects"][PROJECT];
    let clone_ip = project["instances"]["pegasus-db-eu-rollback"]["ip_addresses"][0]["ip_address"]
        .as_str()
        .unwrap_or_else(|| panic!("the clone exists with an IP: {}", project["instances"]));
    let versions = project["secrets"]["pegasus-db-url"]["versions"].as_array().cloned().unwrap_or_default();
    let newest = versions.last().and_then(|v| v["data"].as_str()).unwrap_or_default();
    let repointed = format!("postgresql://pegasus:s3cr3t-pw@{clone_ip}:5432/pegasus?sslmode=require");
    assert_eq!(newest, repointed, "same credentials, the clone's host");
    assert_eq!(versions.get(versions.len() - 2).and_then(|v| v["data"].as_str()), Some(ORIGINAL_SECRET));
    let traffic = &project["services"]["pegasus-api"]["traffic"];
    assert_eq!(traffic, &serde_json::json!([{"percent": 100, "revision_name": "pegasus-api-00002-x9m"}]));
    for path in ["/app/health/ready", "/app/courses", "/app/lectures", "/app/jobs/smoke"] {
        assert!(
            requests.iter().any(|r| r["path"] == path && r["status"].as_u64().is_some_and(|s| s < 300)),
            "{path} not hit"
        );
    }

    // The credentials travelled on stdin only: never on a command line, never recorded.
    let argv = std::fs::read_to_string(&argv_log).unwrap_or_default();
    assert!(argv.contains("sql instances clone pegasus-db-eu pegasus-db-eu-rollback"), "{argv}");
    for (text, place) in [(&argv, "a gcloud command line"), (&journals(&sandbox), "the journal"), (&all, "the output")]
    {
        assert!(!text.contains("s3cr3t-pw"), "the password appeared in {place}");
        assert!(
            !text.contains(&repointed) && !text.contains(ORIGINAL_SECRET),
            "a connection string appeared in {place}"
        );
    }
}

#[test]
fn snapshot_revert_traffic_and_verify_rehearsals() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let state = fake.state();
    let backups =
        state["projects"][PROJECT]["instances"]["pegasus-db-eu"]["backup_runs"].as_array().cloned().unwrap_or_default();
    let pre_deploy = backups
        .iter()
        .find(|b| b["description"] == "pre-deploy")
        .and_then(|b| b["id"].as_i64())
        .unwrap_or_else(|| panic!("the scenario has a pre-deploy backup"));
    runbook(&sandbox, &fake)
        .args([
            "rollback",
            "snapshot",
            "--env",
            "production",
            "--yes",
            "--break-glass",
            "rehearsal against the local fake",
        ])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", &format!("backup_id={pre_deploy}")])
        .args(["--answer", "previous_revision=pegasus-api-00001-k7q"])
        .args(["--var", &format!("api_base_url={}", fake.app_url())])
        .output()
        .success();
    let restore = fake
        .requests()
        .into_iter()
        .find(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/pegasus-db-eu/restoreBackup")))
        .unwrap_or_else(|| panic!("no restoreBackup request"));
    assert_eq!(
        restore["body"]["restoreBackupContext"]["backupRunId"].to_string().trim_matches('"'),
        pre_deploy.to_string()
    );
    let traffic = &fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"];
    assert_eq!(traffic[0]["revision_name"], "pegasus-api-00001-k7q");

    runbook(&sandbox, &fake)
        .args([
            "rollback",
            "revert-traffic",
            "--env",
            "production",
            "--yes",
            "--break-glass",
            "rehearsal against the local fake",
            "--answer",
            "previous_revision=pegasus-api-00003-zt4",
        ])
        .output()
        .success();
    let traffic = &fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"];
    assert_eq!(traffic, &serde_json::json!([{"percent": 100, "revision_name": "pegasus-api-00003-zt4"}]));

    let out = runbook(&sandbox, &fake)
        .args([
            "rollback",
            "verify",
            "--env",
            "production",
            "--yes",
            "--break-glass",
            "rehearsal against the local fake",
            "--var",
            &format!("api_base_url={}", fake.app_url()),
        ])
        .output()
        .success();
    assert!(out.all().contains("GET http://127.0.0.1:"), "{}", out.all());
}

#[test]
fn faults_fail_a_step_clearly_and_leave_the_run_resumable() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let ts = recent_timestamp();
    let pitr = |extra: &[&str]| {
        runbook(&sandbox, &fake)
            .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes"])
            .args(["--break-glass", "rehearsal against the local fake"])
            .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
            .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
            .args(["--var", &format!("api_base_url={}", fake.app_url())])
            .args(extra)
            .output()
    };

    // Secret Manager refuses the new version once (403 is not retried by gcloud).
    fake.faults(r#"{"http_errors": [{"method": "POST", "path_contains": ":addVersion", "status": 403, "times": 1, "message": "Permission denied on secret pegasus-db-url"}]}"#);
    let out = pitr(&[]).status(1);
    assert!(
        out.stderr().contains("step `add_secret_version` failed") && out.stderr().contains("Permission denied"),
        "{}",
        out.stderr()
    );
    let id = sandbox.last_run_id();
    let shown = Run::new(sandbox.path()).args(["show", &id]).output().success().stdout();
    assert!(shown.contains("failed add_secret_version") && shown.contains("status: failed"), "{shown}");
    let clones_before =
        fake.requests().iter().filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/clone"))).count();
    runbook(&sandbox, &fake).args(["resume", &id]).output().success();
    let clones_after =
        fake.requests().iter().filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/clone"))).count();
    assert_eq!(clones_before, clones_after, "resume did not clone again");
    let versions = fake.state()["projects"][PROJECT]["secrets"]["pegasus-db-url"]["versions"].as_array().map(Vec::len);
    assert_eq!(versions, Some(3), "the new version was added on resume");

    // A clone operation that ends in error fails the wait step with the operation's message.
    fake.admin("POST", "/__fake/scenario", &default_scenario_json(&fake));
    fake.faults(r#"{"operations": [{"operation_type": "CLONE", "error": {"code": "INTERNAL_ERROR", "message": "simulated clone failure"}}]}"#);
    let out = pitr(&[]).status(1);
    assert!(
        out.stderr().contains("step `clone_wait` failed") && out.stderr().contains("simulated clone failure"),
        "{}",
        out.stderr()
    );
    let history = Run::new(sandbox.path()).args(["history", "--format", "json"]).output().success().stdout();
    assert!(history.contains(&sandbox.last_run_id()) && history.contains("\"failed\""), "{history}");

    // A missing source instance stops the run at the first read, before anything changes.
    fake.admin("POST", "/__fake/scenario", &without_instance(&fake, "pegasus-db-eu"));
    fake.admin("DELETE", "/__fake/requests", "");
    let out = pitr(&[]).status(1);
    assert!(
        out.stderr().contains("step `pitr_enabled` failed") && out.stderr().contains("pegasus-db-eu"),
        "{}",
        out.stderr()
    );
    assert!(fake.requests().iter().all(|r| r["method"] == "GET"), "nothing was changed");
}

/// The built-in scenario as the fake serves it now, minus what runs changed.
fn default_scenario_json(fake: &Fake) -> String {
    let _ = fake;
    let out = Command::new(binary()).args(["simulate", "--print-scenario"]).output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => panic!("runbook simulate --print-scenario failed"),
    }
}

fn without_instance(fake: &Fake, name: &str) -> String {
    let mut scenario: serde_json::Value = serde_json::from_str(&default_scenario_json(fake)).unwrap_or_default();
    if let Some(instances) = scenario["projects"][PROJECT]["instances"].as_object_mut() {
        instances.remove(name);
    }
    scenario.to_string()
}

#[test]
fn a_hung_request_is_ended_by_the_step_timeout_and_resumes() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    sandbox.file(
        "hang.yaml",
        r#"runbook: hang
title: A request that never returns
procedures:
  read:
    summary: Reads the secret's latest version
    stages:
      - name: Read
        steps:
          - id: access
            run: [gcloud, secrets, versions, access, latest, --secret=pegasus-db-url, --project=delta-student-486911-n5]
            effect: read
            capture: text
            secret: true
            timeout: 10s
  read-patiently:
    summary: The same read, with time for gcloud's own retries
    stages:
      - name: Read
        steps:
          - id: access_patiently
            run: [gcloud, secrets, versions, access, latest, --secret=pegasus-db-url, --project=delta-student-486911-n5]
            effect: read
            capture: text
            secret: true
            timeout: 2m
"#,
    );
    let fake = Fake::start(&sandbox);
    fake.faults(r#"{"hangs": [{"path_contains": ":access", "times": 1}]}"#);
    let out = runbook(&sandbox, &fake).args(["hang", "read", "--yes"]).output().status(1);
    assert!(out.stderr().contains("timed out after 10s"), "{}", out.stderr());
    let id = sandbox.last_run_id();
    let out = runbook(&sandbox, &fake).args(["resume", &id]).output().success();
    assert!(!out.all().contains("s3cr3t-pw"), "the secret output is masked: {}", out.all());

    // One 503: gcloud retries it itself, and the step succeeds.
    fake.admin("DELETE", "/__fake/requests", "");
    fake.faults(r#"{"http_errors": [{"path_contains": ":access", "status": 503, "times": 1}]}"#);
    runbook(&sandbox, &fake).args(["hang", "read-patiently", "--yes"]).output().success();
    let statuses: Vec<u64> = fake.requests().iter().filter_map(|r| r["status"].as_u64()).collect();
    assert_eq!(statuses, vec![503, 200], "the 5xx was retried");
}

/// Issue 15 against the fake with the real gcloud: a plan of `revert-traffic` made by one
/// account and approved by another applies; a second plan goes stale when a new revision
/// starts serving in the fake, and apply refuses it with the difference.
#[test]
fn a_revert_traffic_plan_applies_once_approved_and_is_refused_after_the_serving_revision_changed() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let as_user = |who: &str| runbook(&sandbox, &fake).env("CLOUDSDK_CORE_ACCOUNT", who);
    let plan = |revision: &str| {
        as_user("a@x")
            .args(["rollback", "revert-traffic", "--env", "production", "--save-plan", "revert.plan"])
            .args(["--answer", &format!("previous_revision={revision}")])
            .output()
            .success()
    };
    let approve = || {
        let text = std::fs::read_to_string(sandbox.path().join("revert.plan")).unwrap_or_default();
        let prefix: String = text.trim_start_matches("runbook plan ").chars().take(8).collect();
        as_user("b@x").args(["approve", "revert.plan", "--plan-id", &prefix]).output().success()
    };
    let apply = || as_user("a@x").args(["apply", "revert.plan", "--confirm-env", "production"]).output();

    plan("pegasus-api-00002-x9m");
    let requests = fake.requests().len();
    assert!(requests > 0, "the plan probed the fake");
    assert!(!fake.requests().iter().any(|r| r["method"] != "GET"), "a plan only reads: {:?}", fake.requests());
    approve();
    let out = apply();
    assert_eq!(out.code(), 0, "{}", out.all());
    let traffic = &fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"];
    assert_eq!(traffic, &serde_json::json!([{"percent": 100, "revision_name": "pegasus-api-00002-x9m"}]));
    assert!(journals(&sandbox).contains("\"approvers\":[\"b@x\"]"), "{}", journals(&sandbox));

    plan("pegasus-api-00001-k7q");
    approve();
    // Someone deploys: a new revision appears and serves.
    let mut scenario = fake.state();
    let service = &mut scenario["projects"][PROJECT]["services"]["pegasus-api"];
    if let Some(revisions) = service["revisions"].as_array_mut() {
        let mut newer = revisions.last().cloned().unwrap_or_default();
        newer["name"] = "pegasus-api-00004-hot".into();
        revisions.push(newer);
    }
    service["traffic"] = serde_json::json!([{"percent": 100, "latest_revision": true}]);
    let scenario = serde_json::json!({"projects": scenario["projects"]});
    fake.admin("POST", "/__fake/scenario", &scenario.to_string());
    let out = apply();
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(
        out.stderr().contains("is stale") && out.stderr().contains("revisions: the output changed"),
        "{}",
        out.stderr()
    );
    assert!(out.stderr().contains("pegasus-api-00004-hot"), "{}", out.stderr());
    let traffic = &fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"];
    assert_eq!(traffic, &serde_json::json!([{"percent": 100, "latest_revision": true}]), "nothing changed");
}
