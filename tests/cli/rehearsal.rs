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
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes", "--confirm-env", "production"])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .args(["--var", &format!("api_base_url={}", fake.app_url())])
        .output();
    let all = out.all();
    assert_eq!(out.code(), 0, "{all}");
    // Issue 21: a manual text of a rehearsal is marked and says how to point a shell at the
    // fake, never a bare real command to paste.
    assert!(all.contains("REHEARSAL against the local fake at http://127.0.0.1:"), "{all}");
    assert!(all.contains("export CLOUDSDK_API_ENDPOINT_OVERRIDES_SQL=http://127.0.0.1:"), "{all}");
    // Issue 21: the secret stage names where the new connection string points, with the
    // clone's address known before the stage is confirmed (its IP is read in the Clone stage).
    assert!(all.contains("the new version of pegasus-db-url will point at 10."), "{all}");

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
        .args(["rollback", "snapshot", "--env", "production", "--yes", "--confirm-env", "production"])
        .args(["--confirm-target", "restore_op=pegasus-db-eu"])
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
    // The run told the server where each step began: the restore request is restore_op's.
    let requests = fake.requests();
    let index = requests.iter().position(|r| r == &restore).unwrap_or(usize::MAX);
    let marks = fake.admin("GET", "/__fake/marks", "").as_array().cloned().unwrap_or_default();
    let maker = marks.iter().rev().find(|m| m["request"].as_u64().is_some_and(|i| i as usize <= index));
    assert_eq!(maker.map(|m| m["step"].clone()), Some(serde_json::json!("restore_op")), "{marks:?}");
    let traffic = &fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"];
    assert_eq!(traffic[0]["revision_name"], "pegasus-api-00001-k7q");

    // Only the marker and its token exported (the CLOUDSDK_* lines not copied): gcloud still
    // reaches the fake.
    let path = format!("{}:{}", sandbox.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let exported = |name: &str| fake.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    sandbox
        .runbook()
        .env("PATH", path)
        .env("RUNBOOK_REHEARSAL", exported("RUNBOOK_REHEARSAL"))
        .env("RUNBOOK_REHEARSAL_TOKEN", exported("RUNBOOK_REHEARSAL_TOKEN"))
        .args([
            "rollback",
            "revert-traffic",
            "--env",
            "production",
            "--yes",
            "--confirm-env",
            "production",
            "--answer",
            // Not the newest (bad) revision: verify's error-rate watch would rightly fail on it.
            "previous_revision=pegasus-api-00002-x9m",
        ])
        .output()
        .success();
    let traffic = &fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"];
    assert_eq!(traffic, &serde_json::json!([{"percent": 100, "revision_name": "pegasus-api-00002-x9m"}]));

    let out = runbook(&sandbox, &fake)
        .args([
            "rollback",
            "verify",
            "--env",
            "production",
            "--yes",
            "--confirm-env",
            "production",
            "--var",
            &format!("api_base_url={}", fake.app_url()),
        ])
        .output()
        .success();
    assert!(out.all().contains("GET http://127.0.0.1:"), "{}", out.all());
    assert!(out.all().contains("`runbook simulate` server at http://127.0.0.1:"), "{}", out.all());

    // Runs pointed at a `runbook simulate` server are rehearsals too, and say so.
    let history = Run::new(sandbox.path()).args(["history", "--rehearsals", "--format", "json"]).output().success();
    let runs: serde_json::Value = serde_json::from_str(&history.stdout()).unwrap_or_default();
    assert_eq!(runs.as_array().map(Vec::len), Some(3), "{}", history.stdout());
    assert!(runs.as_array().into_iter().flatten().all(|r| r["rehearsal"] == true));
    let locks: Vec<String> = std::fs::read_dir(sandbox.path().join("state/locks"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert_eq!(locks, vec!["rollback.rehearsal--production.lock".to_owned()], "the rehearsal lock namespace");
    let real = Run::new(sandbox.path()).args(["history", "--no-rehearsals"]).output().success().stdout();
    assert!(!real.contains("rollback"), "{real}");
    let shown = Run::new(sandbox.path()).args(["show", &sandbox.last_run_id()]).output().success().stdout();
    assert!(shown.contains("REHEARSAL against the `runbook simulate` server at http://127.0.0.1:"), "{shown}");
    assert!(shown.contains(&format!("--var api_base_url={}", fake.app_url())), "{shown}");
}

#[test]
fn faults_fail_a_step_clearly_and_leave_the_run_resumable() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let ts = recent_timestamp();
    let pitr = |extra: &[&str]| {
        runbook(&sandbox, &fake)
            .args([
                "rollback",
                "pitr",
                "--env",
                "production",
                "--timestamp",
                &ts,
                "--yes",
                "--confirm-env",
                "production",
            ])
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
    // Rehearsed against a `runbook simulate` server, it resumes only against one.
    let out = Run::new(sandbox.path()).args(["resume", &id]).output().status(2);
    assert!(out.stderr().contains("export the settings a `runbook simulate` prints"), "{}", out.stderr());
    let out = Run::new(sandbox.path()).args([
        "rollback",
        "verify",
        "--env",
        "production",
        "--yes",
        "--confirm-env",
        "production",
    ]);
    let out = out.env("RUNBOOK_REHEARSAL", "https://sqladmin.googleapis.com/").output().status(2);
    assert!(out.stderr().contains("is not on a loopback IPv4 address"), "{}", out.stderr());
    let out = Run::new(sandbox.path()).args(["rollback", "verify", "--env", "production", "--dry-run", "--probe"]);
    let token = fake.env.iter().find(|(k, _)| k == "RUNBOOK_REHEARSAL_TOKEN").map(|(_, v)| v.clone());
    let out = out
        .env("RUNBOOK_REHEARSAL", fake.app_url())
        .env("RUNBOOK_REHEARSAL_TOKEN", token.unwrap_or_default())
        .output()
        .success();
    // Issue 21: a `runbook simulate` server keeps its state, so probing it is a rehearsal too.
    assert!(out.stderr().contains("REHEARSAL: probing the `runbook simulate` server"), "{}", out.stderr());
    let clones_before =
        fake.requests().iter().filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/clone"))).count();
    runbook(&sandbox, &fake).args(["resume", &id, "--yes", "--confirm-env", "production"]).output().success();
    // After the finished rollback, the probe reports its changes as already done (their
    // `done_if` over what the fake says now), and changes nothing.
    let mutating_before = fake.requests().iter().filter(|r| r["method"] != "GET").count();
    let probe = runbook(&sandbox, &fake)
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--dry-run", "--probe"])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .success();
    let shown = probe.stdout();
    for (step, state) in
        [("clone_op", "WOULD CHANGE"), ("add_secret_version", "ALREADY DONE"), ("pitr_update_traffic", "ALREADY DONE")]
    {
        let block = shown.split(&format!(" {step} — ")).nth(1).unwrap_or_default();
        let first = block.lines().nth(1).unwrap_or_default();
        assert!(first.contains(state), "{step}: {state}:\n{shown}");
    }
    assert_eq!(
        fake.requests().iter().filter(|r| r["method"] != "GET").count(),
        mutating_before,
        "the probe changed nothing"
    );
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
    let out = runbook(&sandbox, &fake).args(["resume", &id, "--yes"]).output().success();
    assert!(!out.all().contains("s3cr3t-pw"), "the secret output is masked: {}", out.all());

    // One 503: gcloud retries it itself, and the step succeeds.
    fake.admin("DELETE", "/__fake/requests", "");
    fake.faults(r#"{"http_errors": [{"path_contains": ":access", "status": 503, "times": 1}]}"#);
    runbook(&sandbox, &fake).args(["hang", "read-patiently", "--yes"]).output().success();
    let statuses: Vec<u64> = fake.requests().iter().filter_map(|r| r["status"].as_u64()).collect();
    assert_eq!(statuses, vec![503, 200], "the 5xx was retried");
}

/// A listener on a loopback address that is not the fake's, standing for everything outside:
/// it records every connection it receives.
struct Recorder {
    addr: std::net::SocketAddr,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap_or_else(|e| panic!("bind 127.0.0.2: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut first = String::new();
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
                let _ = BufReader::new(&stream).read_line(&mut first);
                seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(first);
                let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Recorder { addr, hits }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// rollback.yaml's procedures run with `--simulate` and the sandbox's gcloud wrapper on PATH.
fn simulated(sandbox: &Sandbox, args: &[&str]) -> Run {
    let path = format!("{}:{}", sandbox.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    sandbox.runbook().env("PATH", path).args(args).args(["--simulate", "--yes", "--confirm-env", "production"])
}

const PITR_ANSWERS: [&str; 4] = [
    "--answer",
    "failing_migration_file=003_add_course_tags.sql",
    "--answer",
    "previous_revision=pegasus-api-00002-x9m",
];

#[test]
fn a_rehearsal_without_var_sends_nothing_outside_the_fake() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let outside = Recorder::start();
    // Everything that would leave the machine is offered a way out through the recorder: an
    // operator's proxy settings and gcloud endpoint overrides that are not the fake.
    let mut run = simulated(&sandbox, &["rollback", "pitr", "--env", "production", "--timestamp", &recent_timestamp()])
        .args(PITR_ANSWERS);
    for key in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        run = run.env(key, outside.url());
    }
    let out = run.env("CLOUDSDK_API_ENDPOINT_OVERRIDES_SQL", format!("{}/", outside.url())).output();
    let all = out.all();
    assert_eq!(out.code(), 0, "{all}");
    assert_eq!(outside.hits(), Vec::<String>::new(), "requests left the fake: {all}");
    assert!(all.contains("rehearsal: var api_base_url = http://127.0.0.1:"), "the rehearsal block applied: {all}");
    assert!(!all.contains("--var api_base_url="), "no hint to pass a var that is already set: {all}");
    assert!(all.contains("The simulated app received 4 request(s)"), "the verify steps hit the fake app: {all}");
    assert!(
        all.contains("step clone_op:") && all.contains("/pegasus-db-eu/clone"),
        "the clone is listed with its step: {all}"
    );
    assert!(all.contains("This was a REHEARSAL"), "{all}");

    // Labelled everywhere a run is shown.
    let id = sandbox.last_run_id();
    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success().stdout();
    let runs: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["rehearsal"], true, "{history}");
    let table = sandbox.runbook().args(["history"]).output().success().stdout();
    assert!(table.contains("KIND") && table.contains(" rehearsal "), "{table}");
    let real_only = sandbox.runbook().args(["history", "--no-rehearsals", "--format", "json"]).output().success();
    assert_eq!(real_only.stdout().trim(), "[]");
    let shown = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("REHEARSAL against a local fake (--simulate"), "{shown}");
    assert!(shown.contains("--yes: confirmations answered"), "{shown}");
}

#[test]
fn an_http_step_to_a_real_host_is_refused_in_a_rehearsal_without_retry() {
    let sandbox = Sandbox::new();
    let outside = Recorder::start();
    sandbox.file(
        "probe.yaml",
        &format!(
            r#"runbook: probe
title: Calls the app
environments:
  production:
    vars: {{base: "{}", other: "{}"}}
procedures:
  check:
    summary: One check
    stages:
      - name: Check
        steps:
          - id: health
            http: {{method: GET, url: "{{{{ vars.base }}}}/health"}}
            effect: read
            retry: {{attempts: 5, interval: 10s}}
"#,
            outside.url(),
            outside.url()
        ),
    );
    let started = std::time::Instant::now();
    let out = sandbox.runbook().args(["probe", "check", "--env", "production", "--simulate", "--yes"]).output();
    let stderr = out.stderr();
    assert_eq!(out.code(), 1, "{stderr}");
    assert!(stderr.contains("not sent: this is a rehearsal") && stderr.contains("127.0.0.2"), "{stderr}");
    assert!(!stderr.contains("retrying") && !stderr.contains("attempt"), "a refused request is not retried: {stderr}");
    let journal = journals(&sandbox);
    assert_eq!(journal.matches(r#""event":"step_started""#).count(), 1, "one attempt only: {journal}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "no retry wait");
    assert!(stderr.contains("note: var base points at"), "the unpointed URL var is named: {stderr}");
    assert_eq!(outside.hits(), Vec::<String>::new());

    // Named by the operator with --var: sent, and the port mismatch is not the fake's concern.
    let out = sandbox
        .runbook()
        .args(["probe", "check", "--env", "production", "--simulate", "--yes"])
        .args(["--var", &format!("base={}", outside.url())])
        .output()
        .success();
    assert_eq!(outside.hits().len(), 1, "the named host got the one request");
    assert!(out.stderr().contains("warning: --var base="), "a loopback var off the fake's port is flagged");

    // --output json says so on its first line.
    let out = sandbox
        .runbook()
        .args(["probe", "check", "--env", "production", "--simulate", "--yes", "--output", "json"])
        .args(["--var", &format!("base={}", outside.url())])
        .output()
        .success();
    let first: serde_json::Value =
        serde_json::from_str(out.stdout().lines().next().unwrap_or_default()).unwrap_or_default();
    assert_eq!(first["event"], "rehearsal", "{}", out.stdout());
    assert_eq!(first["rehearsal"], true);
}

#[test]
fn child_output_is_plain_when_piped_and_no_color_reaches_children() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "colour.yaml",
        r#"runbook: colour
title: Prints colour
procedures:
  go:
    summary: Colourful
    stages:
      - name: S
        steps:
          - id: paint
            run: [sh, -c, 'printf "\033[1mbold\033[m nc=%s cc=%s\n" "$NO_COLOR" "$CLOUDSDK_CORE_DISABLE_COLOR"']
            timeout: 5s
"#,
    );
    let mut run = sandbox.runbook().args(["--color", "never", "colour", "go", "--yes"]);
    run.cmd.env_remove("NO_COLOR");
    let out = run.output().success();
    let all = out.all();
    assert!(all.contains("bold nc=1 cc=true"), "{all}");
    assert!(!all.contains('\u{1b}'), "escape sequences stripped: {all:?}");
}

/// Waits until a journal in the sandbox records `needle`; false after 60 s.
fn journal_shows(sandbox: &Sandbox, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if journals(sandbox).contains(needle) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

#[test]
fn ctrl_c_during_a_slow_simulated_clone_then_resume_finishes_with_one_clone() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let mut scenario: serde_json::Value = serde_json::from_str(&default_scenario_json_plain()).unwrap_or_default();
    scenario["faults"] = serde_json::json!({"operations": [{"operation_type": "CLONE", "polls": 6}]});
    sandbox.file("scenarios/slow-clone.json", &scenario.to_string());
    let ts = recent_timestamp();
    let mut run = simulated(&sandbox, &["rollback", "pitr", "--env", "production", "--timestamp", &ts])
        .args(PITR_ANSWERS)
        .args(["--scenario", "scenarios/slow-clone.json"]);
    run.cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = run.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let waiting = journal_shows(&sandbox, r#""event":"step_started","id":"clone_wait""#);

    // A real run of the same runbook and environment is not blocked by the rehearsal.
    let stub = sandbox.path().join("real-bin");
    write_executable(&stub.join("gcloud"), "#!/bin/sh\necho 'real gcloud: no route to Google' >&2\nexit 1\n");
    let real = sandbox
        .runbook()
        .env("PATH", format!("{}:{}", stub.display(), std::env::var("PATH").unwrap_or_default()))
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes", "--confirm-env", "production"])
        .args(["--break-glass", "a real run beside a rehearsal"])
        .args(PITR_ANSWERS)
        .output();

    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let interrupted = child.wait_with_output().unwrap_or_else(|e| panic!("wait: {e}"));
    let stderr = String::from_utf8_lossy(&interrupted.stderr).into_owned();
    assert!(waiting, "the rehearsal reached clone_wait: {stderr}");
    assert_eq!(interrupted.status.code(), Some(130), "{stderr}");
    // Issue 21: the operator learns that the clone itself goes on, and how to look at it.
    assert!(
        stderr.contains("clone_wait was cut short: only the wait stopped: the clone keeps running in Cloud SQL"),
        "{stderr}"
    );
    assert!(stderr.contains("gcloud sql operations describe "), "{stderr}");
    assert!(!real.stderr().contains("already running"), "a rehearsal blocked a real run: {}", real.stderr());
    assert!(real.stderr().contains("real gcloud: no route to Google"), "the real run ran: {}", real.stderr());

    let history = sandbox.runbook().args(["history", "--rehearsals", "--format", "json"]).output().success().stdout();
    let runs: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
    let id = runs[0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{history}");
    let path = format!("{}:{}", sandbox.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out =
        sandbox.runbook().env("PATH", path).args(["resume", &id, "--yes", "--confirm-env", "production"]).output();
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stderr().contains("state was restored"), "{}", out.stderr());
    let waits = journals(&sandbox).matches(r#""event":"step_started","id":"clone_wait""#).count();
    assert_eq!(waits, 2, "interrupted in the wait, and the resume picked up at the wait");

    let saved = std::fs::read_to_string(sandbox.path().join(format!("state/simulate/{id}.json")))
        .unwrap_or_else(|e| panic!("the fake's state is saved with the run: {e}"));
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap_or_default();
    let marks = saved["fake"]["marks"].as_array().cloned().unwrap_or_default();
    assert_eq!(marks.iter().filter(|m| m["step"] == "clone_op").count(), 1, "{marks:?}");
    let clones: Vec<&serde_json::Value> = saved["fake"]["requests"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/clone"))).collect())
        .unwrap_or_default();
    assert_eq!(clones.len(), 1, "exactly one clone: {clones:?}");
    let operations = saved["fake"]["operations"].as_array().cloned().unwrap_or_default();
    assert_eq!(operations.iter().filter(|o| o["operation_type"] == "CLONE").count(), 1);
    assert_eq!(operations[0]["done"], true, "the same operation finished: {operations:?}");
    assert!(
        saved["fake"]["scenario"]["projects"][PROJECT]["instances"]["pegasus-db-eu-rollback"].is_object(),
        "the clone exists in the fake's end state"
    );
}

/// Issue 21: Ctrl-C while the clone request is in flight — Cloud SQL made the clone, its reply
/// never came. `resume` adopts the clone (`done_if`: made after the run started, being
/// created), finds its operation on the source instance and waits for it: one clone, and the
/// run finishes.
#[test]
fn ctrl_c_while_the_clone_reply_is_lost_then_resume_adopts_the_clone() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    fake.faults(r#"{"operations": [{"operation_type": "CLONE", "polls": 3}], "hangs": [{"method": "POST", "path_contains": "/clone", "after": true}]}"#);
    let ts = recent_timestamp();
    let mut run = runbook(&sandbox, &fake)
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes", "--confirm-env", "production"])
        .args(PITR_ANSWERS)
        .args(["--var", &format!("api_base_url={}", fake.app_url())]);
    run.cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = run.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let clones = |fake: &Fake| {
        fake.requests().iter().filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/clone"))).count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while clones(&fake) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let interrupted = child.wait_with_output().unwrap_or_else(|e| panic!("wait: {e}"));
    let stderr = String::from_utf8_lossy(&interrupted.stderr).into_owned();
    assert_eq!(interrupted.status.code(), Some(130), "{stderr}");
    assert_eq!(clones(&fake), 1, "the clone request reached the fake: {stderr}");
    let clone = &fake.state()["projects"][PROJECT]["instances"]["pegasus-db-eu-rollback"];
    assert_eq!(clone["state"], "PENDING_CREATE", "the clone is being made: {clone}");

    let id = sandbox.last_run_id();
    let out = runbook(&sandbox, &fake).args(["resume", &id, "--yes", "--confirm-env", "production"]).output();
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stderr().contains("clone_op: already done"), "{}", out.stderr());
    assert!(out.stderr().contains("waiting for the clone operation"), "{}", out.stderr());
    assert_eq!(clones(&fake), 1, "resume did not clone again");
    let state = fake.state();
    let clone = &state["projects"][PROJECT]["instances"]["pegasus-db-eu-rollback"];
    assert_eq!(clone["state"], "RUNNABLE", "{clone}");
    let operations = state["operations"].as_array().cloned().unwrap_or_default();
    assert_eq!(operations.len(), 1, "{operations:?}");
    assert_eq!(operations[0]["done"], true, "the adopted clone's operation was waited for: {operations:?}");
    let shown = Run::new(sandbox.path()).args(["show", &id]).output().success().stdout();
    assert!(shown.contains("status: done"), "{shown}");
}

/// Issue 21, the other side of adoption: a clone that appeared after the run started but
/// that this run never asked for (made by hand while the run waited for a corrected answer)
/// is not adopted — the clone step was never started in this run — and the run stops at the
/// clone with ALREADY_EXISTS instead of repointing the secret at somebody else's clone.
#[test]
fn a_clone_this_run_never_started_is_not_adopted_on_resume() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let ts = recent_timestamp();
    let out = runbook(&sandbox, &fake)
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes", "--confirm-env", "production"])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", "previous_revision=no-such-revision"])
        .args(["--var", &format!("api_base_url={}", fake.app_url())])
        .output()
        .status(2);
    assert!(out.stderr().contains("Nothing was changed"), "{}", out.stderr());
    let id = sandbox.last_run_id();
    let mut scenario: serde_json::Value = serde_json::from_str(&default_scenario_json(&fake)).unwrap_or_default();
    let instances = &mut scenario["projects"][PROJECT]["instances"];
    let mut by_hand = instances["pegasus-db-eu"].clone();
    by_hand["create_time"] = serde_json::json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    instances["pegasus-db-eu-rollback"] = by_hand;
    fake.admin("POST", "/__fake/scenario", &scenario.to_string());
    let out = runbook(&sandbox, &fake)
        .args(["resume", &id, "--yes", "--confirm-env", "production"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .status(1);
    assert!(!out.stderr().contains("clone_op: already done"), "{}", out.stderr());
    assert!(out.stderr().contains("step `clone_op` failed"), "{}", out.stderr());
    let secrets =
        fake.requests().iter().filter(|r| r["path"].as_str().is_some_and(|p| p.contains(":addVersion"))).count();
    assert_eq!(secrets, 0, "the secret was not repointed");
}

/// Issue 21: an instance that already has the clone's name (left by an earlier rollback)
/// is refused in the preflight, with the commands to inspect or delete it and the `--var`
/// that picks another name, before any mutating request.
#[test]
fn a_clone_left_by_another_run_is_refused_in_the_preflight() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let mut scenario: serde_json::Value = serde_json::from_str(&default_scenario_json_plain()).unwrap_or_default();
    let instances = &mut scenario["projects"][PROJECT]["instances"];
    let leftover = instances["pegasus-db-eu"].clone();
    instances["pegasus-db-eu-rollback"] = leftover;
    sandbox.file("scenarios/leftover.json", &scenario.to_string());
    let out = simulated(&sandbox, &["rollback", "pitr", "--env", "production", "--timestamp", &recent_timestamp()])
        .args(PITR_ANSWERS)
        .args(["--scenario", "scenarios/leftover.json"])
        .output()
        .status(1);
    let stderr = out.stderr();
    assert!(stderr.contains("step `no_clone_yet` failed"), "{stderr}");
    assert!(stderr.contains("An instance named pegasus-db-eu-rollback already exists"), "{stderr}");
    assert!(stderr.contains("gcloud sql instances delete pegasus-db-eu-rollback"), "{stderr}");
    assert!(stderr.contains("--var clone_instance=pegasus-db-eu-rollback-2"), "{stderr}");
    let id = sandbox.last_run_id();
    let saved = std::fs::read_to_string(sandbox.path().join(format!("state/simulate/{id}.json"))).unwrap_or_default();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap_or_default();
    let mutating: Vec<&serde_json::Value> = saved["fake"]["requests"]
        .as_array()
        .map(|r| {
            r.iter().filter(|r| r["method"] != "GET" && !r["path"].as_str().unwrap_or("").contains("__fake")).collect()
        })
        .unwrap_or_default();
    assert!(mutating.is_empty(), "no mutating request: {mutating:?}");
}

fn default_scenario_json_plain() -> String {
    let out = Command::new(binary()).args(["simulate", "--print-scenario"]).output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => panic!("runbook simulate --print-scenario failed"),
    }
}

#[test]
fn bad_faults_are_refused_naming_the_field_and_the_format_is_documented() {
    let sandbox = Sandbox::new();
    let help = Run::new(sandbox.path()).args(["simulate", "--help"]).output().success().stdout();
    assert!(help.contains("docs/faults.md"), "{help}");
    let schema = Run::new(sandbox.path()).args(["simulate", "--print-faults-schema"]).output().success().stdout();
    let checked_in = std::fs::read_to_string(repo_root().join("schema/faults.schema.json")).unwrap_or_default();
    assert_eq!(
        schema, checked_in,
        "regenerate: cargo run -- simulate --print-faults-schema > schema/faults.schema.json"
    );

    sandbox.file("scenarios/bad.yaml", "faults:\n  http_errors:\n    - {path_contains: ':access', status: 200}\n");
    let out = Run::new(sandbox.path()).args(["simulate", "--scenario", "scenarios/bad.yaml"]).output().status(2);
    assert!(out.stderr().contains("faults.http_errors[0].status: 200 is not an HTTP error status"), "{}", out.stderr());
    sandbox.file("scenarios/typo.yaml", "faults:\n  operation: []\n");
    let out = Run::new(sandbox.path()).args(["simulate", "--scenario", "scenarios/typo.yaml"]).output().status(2);
    assert!(out.stderr().contains("unknown field `operation`"), "{}", out.stderr());

    let fake = Fake::start(&sandbox);
    let answer = fake.admin("POST", "/__fake/faults", r#"{"hangs": [{"seconds": "long"}]}"#);
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(answer["error"]["code"], 400, "{answer}");
    assert!(message.starts_with("faults: hangs[0].seconds: invalid type"), "{message}");
    assert_eq!(
        fake.admin("GET", "/__fake/faults", "")["hangs"],
        serde_json::json!([]),
        "the bad faults were not applied"
    );
    assert_eq!(fake.admin("GET", "/__fake/faults/schema", "")["title"], "Faults");
    assert!(fake.env.iter().any(|(k, v)| k == "RUNBOOK_REHEARSAL" && v.contains(&fake.port.to_string())));
}

#[test]
fn a_rehearsal_block_names_only_the_environments_vars_and_gives_paths() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "bad-rehearsal.yaml",
        r#"runbook: bad-rehearsal
title: Bad rehearsal blocks
environments:
  production:
    vars: {api_base_url: "https://api.example.com", status_url: "https://status.example.com", every: 60s}
    rehearsal: {api_url: /app, api_base_url: "http://127.0.0.1:1/app", status_url: status, every: 200ms}
procedures:
  go:
    summary: Nothing
    stages:
      - name: S
        steps:
          - id: check
            http: {method: GET, url: "{{ vars.api_base_url }}/health"}
            effect: read
"#,
    );
    let out = sandbox.runbook().args(["validate"]).output().status(1);
    let all = out.all();
    assert!(all.contains("names `api_url`, which is not one of its vars (api_base_url, status_url, every)"), "{all}");
    assert!(all.contains("rehearsal var `api_base_url` must be a path on the local fake"), "{all}");
    // A var that is a URL gets a path; any other var may get a plain value (a watch's cadence).
    assert!(all.contains("rehearsal var `status_url` must be a path on the local fake"), "{all}");
    assert!(!all.contains("rehearsal var `every`"), "{all}");
    let out = sandbox.runbook().args(["bad-rehearsal", "go", "--env", "production", "--simulate", "--yes"]).output();
    assert_eq!(out.code(), 2, "nothing runs: {}", out.all());
}

/// Requests that change something (anything but GET) the fake received.
fn mutating_requests(fake: &Fake) -> Vec<serde_json::Value> {
    fake.requests().into_iter().filter(|r| r["method"] != "GET").collect()
}

#[test]
fn a_bad_answer_for_any_pitr_prompt_exits_2_before_anything_changes() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let ts = recent_timestamp();
    let good = [("failing_migration_file", "003_add_course_tags.sql"), ("previous_revision", "pegasus-api-00002-x9m")];
    let bad = [
        ("failing_migration_file", "add_course_tags.sql"),
        ("previous_revision", "pegasus-api-0002-x9m"),
        ("previous_revision", "Pegasus API"),
    ];
    for (id, value) in bad {
        let mut run = runbook(&sandbox, &fake)
            .args([
                "rollback",
                "pitr",
                "--env",
                "production",
                "--timestamp",
                &ts,
                "--yes",
                "--confirm-env",
                "production",
            ])
            .args(["--var", &format!("api_base_url={}", fake.app_url())]);
        for (other, answer) in good.iter().filter(|(other, _)| *other != id) {
            run = run.args(["--answer", &format!("{other}={answer}")]);
        }
        let out = run.args(["--answer", &format!("{id}={value}")]).output().status(2);
        assert!(out.stderr().contains(value), "{id}={value}: {}", out.stderr());
        assert_eq!(mutating_requests(&fake), Vec::<serde_json::Value>::new(), "{id}={value}: something changed");
    }
}

/// Issue 21: the point in time is checked against the deploy serving now (created 45
/// minutes ago in the fake): ten minutes ago, typed with an offset, is refused in the
/// preflight, shown in UTC beside the revision's creation time, before any change.
#[test]
fn a_timestamp_after_the_bad_deploy_is_refused_before_any_change() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let offset = chrono::FixedOffset::east_opt(2 * 3600).unwrap_or_else(|| panic!("offset"));
    let when = (chrono::Utc::now() - chrono::Duration::minutes(10)).with_timezone(&offset);
    let ts = when.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let out = runbook(&sandbox, &fake)
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes", "--confirm-env", "production"])
        .args(["--var", &format!("api_base_url={}", fake.app_url())])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .status(1);
    let utc = when.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let stderr = out.stderr();
    assert!(stderr.contains("timestamp_before_the_deploy"), "{stderr}");
    assert!(stderr.contains(&format!("is {utc} in UTC: not before the deploy")), "{stderr}");
    assert!(stderr.contains("pegasus-api-00003-zt4, created "), "{stderr}");
    assert_eq!(mutating_requests(&fake), Vec::<serde_json::Value>::new(), "something changed");
}

#[test]
fn a_failed_backup_given_with_answer_is_refused_before_the_restore() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let backups = fake.state()["projects"][PROJECT]["instances"]["pegasus-db-eu"]["backup_runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let failed = backups
        .iter()
        .find(|b| b["status"] == "FAILED")
        .and_then(|b| b["id"].as_i64())
        .unwrap_or_else(|| panic!("the scenario has a FAILED backup: {backups:?}"));
    let out = runbook(&sandbox, &fake)
        .args(["rollback", "snapshot", "--env", "production", "--yes", "--confirm-env", "production"])
        .args(["--confirm-target", "restore_op=pegasus-db-eu"])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", &format!("backup_id={failed}")])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .status(2);
    assert!(out.stderr().contains("is not one of the choices"), "{}", out.stderr());
    assert_eq!(mutating_requests(&fake), Vec::<serde_json::Value>::new(), "the FAILED backup was restored");
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
    // Production takes signed approvals: alice signs the plan she makes, bob approves it.
    let keys = super::approvals::Keys::new(&sandbox);
    let plan = |revision: &str| {
        as_user("a@x")
            .args(["rollback", "revert-traffic", "--env", "production", "--save-plan", "revert.plan"])
            .args(["--signing-key", &keys.key("alice")])
            .args(["--answer", &format!("previous_revision={revision}")])
            .output()
            .success()
    };
    let approve = || {
        let text = std::fs::read_to_string(sandbox.path().join("revert.plan")).unwrap_or_default();
        let prefix: String = text.trim_start_matches("runbook plan ").chars().take(8).collect();
        as_user("b@x")
            .args(["approve", "revert.plan", "--plan-id", &prefix, "--key", &keys.key("bob")])
            .output()
            .success()
    };
    let apply = || as_user("a@x").args(["apply", "revert.plan", "--confirm-env", "production"]).output();

    plan("pegasus-api-00002-x9m");
    // Made against the proven fake: marked so for whoever approves it.
    let shown = as_user("b@x").args(["show-plan", "revert.plan"]).output().success();
    assert!(shown.stdout().starts_with("REHEARSAL: this plan was made against the local fake"), "{}", shown.stdout());
    let json = as_user("b@x").args(["show-plan", "revert.plan", "--output", "json"]).output().success();
    assert!(json.stdout().contains("\"rehearsal\": true"), "{}", json.stdout());
    let requests = fake.requests().len();
    assert!(requests > 0, "the plan probed the fake");
    assert!(!fake.requests().iter().any(|r| r["method"] != "GET"), "a plan only reads: {:?}", fake.requests());
    approve();
    let out = apply();
    assert_eq!(out.code(), 0, "{}", out.all());
    let traffic = &fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"];
    assert_eq!(traffic, &serde_json::json!([{"percent": 100, "revision_name": "pegasus-api-00002-x9m"}]));
    assert!(journals(&sandbox).contains("\"approvers\":[\"bob@x\"]"), "{}", journals(&sandbox));

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

/// Issue 11: a traffic update fails after the secret was repointed; `runbook undo` puts the
/// fake back as it was — the original connection string as the latest secret version (added
/// again via stdin), the original traffic split — and the clone's undo is left to a person.
#[test]
fn undo_after_a_failed_traffic_update_restores_the_original_secret_and_traffic() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, argv_log) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let before = fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"].clone();
    fake.faults(r#"{"run_update_failure": "Revision 'pegasus-api-00002-x9m' is not ready and cannot serve traffic."}"#);
    let ts = recent_timestamp();
    let out = runbook(&sandbox, &fake)
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes", "--confirm-env", "production"])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .args(["--var", &format!("api_base_url={}", fake.app_url())])
        .output()
        .status(1);
    assert!(out.stderr().contains("step `pitr_update_traffic` failed"), "{}", out.stderr());
    let id = sandbox.last_run_id();
    let versions = fake.state()["projects"][PROJECT]["secrets"]["pegasus-db-url"]["versions"].clone();
    assert_ne!(versions.as_array().and_then(|v| v.last()).map(|v| &v["data"]), Some(&ORIGINAL_SECRET.into()));

    let out = runbook(&sandbox, &fake).args(["undo", &id, "--yes", "--confirm-env", "production"]).output();
    let all = out.all();
    assert_eq!(out.code(), 0, "{all}");
    assert!(all.contains("cannot be undone automatically") || all.contains("clone_delete_by_hand"), "{all}");

    let project = &fake.state()["projects"][PROJECT];
    let versions = project["secrets"]["pegasus-db-url"]["versions"].as_array().cloned().unwrap_or_default();
    assert_eq!(versions.len(), 4, "original, old disabled, the clone's, the original again: {versions:?}");
    assert_eq!(versions.last().and_then(|v| v["data"].as_str()), Some(ORIGINAL_SECRET), "latest is the original");
    assert_eq!(project["services"]["pegasus-api"]["traffic"], before, "the original traffic split");
    assert!(project["instances"]["pegasus-db-eu-rollback"].is_object(), "the clone is left for a person to delete");

    let shown = Run::new(sandbox.path()).args(["show", &id]).output().success().stdout();
    // The failed update did not finish: it is named for the operator to check, not undone;
    // what finished is undone, newest first.
    assert!(shown.contains("undo of pitr_update_traffic manual: failed before it finished; not undone"), "{shown}");
    assert!(!shown.contains("pitr_route_back"), "{shown}");
    let secret = shown.find("undo of add_secret_version done").unwrap_or_else(|| panic!("{shown}"));
    // The clone's undo is deleting it by hand: with --yes nobody did, so it is not undone
    // (issue 21) but waits for a person.
    let clone = shown.find("undo of clone_op waiting: waiting for a person").unwrap_or_else(|| panic!("{shown}"));
    assert!(secret < clone, "newest first: {shown}");
    assert!(shown.contains("status: partly undone"), "{shown}");
    // The old value travelled on stdin only: never on a command line, never recorded.
    let argv = std::fs::read_to_string(&argv_log).unwrap_or_default();
    assert!(argv.contains("secrets versions access 2 --secret=pegasus-db-url"), "{argv}");
    for (text, place) in [(&argv, "a gcloud command line"), (&journals(&sandbox), "the journal"), (&all, "the output")]
    {
        assert!(!text.contains("s3cr3t-pw"), "the password appeared in {place}");
    }
    // Undo again: what was undone is not undone twice; the clone still waits for a person.
    let again = runbook(&sandbox, &fake).args(["undo", &id, "--yes", "--confirm-env", "production"]).output();
    let all = again.all();
    assert!(all.contains("undo of add_secret_version: already undone"), "{all}");
    assert!(all.contains("undo of clone_op: waiting for a person"), "{all}");
    let versions = fake.state()["projects"][PROJECT]["secrets"]["pegasus-db-url"]["versions"].as_array().map(Vec::len);
    assert_eq!(versions, Some(4), "the secret was not undone twice");
}

/// Issue 11: a finished traffic update is undone by routing traffic back to the split read
/// before the change (the latest revision, as the scenario serves it), with the real gcloud.
#[test]
fn undo_of_a_finished_traffic_revert_routes_traffic_back_to_the_split_read_before() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, argv_log) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let traffic = |fake: &Fake| fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"].clone();
    let before = traffic(&fake);
    runbook(&sandbox, &fake)
        .args(["rollback", "revert-traffic", "--env", "production", "--yes", "--confirm-env", "production"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .success();
    assert_eq!(traffic(&fake), serde_json::json!([{"percent": 100, "revision_name": "pegasus-api-00002-x9m"}]));
    let id = sandbox.last_run_id();
    // Without a terminal and without --yes, nothing is undone.
    let refused = runbook(&sandbox, &fake).args(["undo", &id, "--confirm-env", "production"]).output().status(2);
    assert!(refused.stderr().contains("pass --yes"), "{}", refused.stderr());
    runbook(&sandbox, &fake).args(["undo", &id, "--yes", "--confirm-env", "production"]).output().success();
    assert_eq!(traffic(&fake), before, "the split that served before");
    let argv = std::fs::read_to_string(&argv_log).unwrap_or_default();
    assert!(argv.contains("update-traffic pegasus-api --region=europe-west1 --project=delta-student-486911-n5 --to-revisions=LATEST=100"), "{argv}");
    let history = Run::new(sandbox.path()).args(["history"]).output().success().stdout();
    assert!(history.lines().any(|l| l.starts_with(&id) && l.contains("undone")), "{history}");
}

/// Issue 11: `runbook undo` of a `--simulate` rehearsal undoes against that rehearsal's fake,
/// restored from the state dir, and saves it again: the traffic split is back as it was.
#[test]
fn undo_of_a_simulated_rehearsal_runs_against_its_restored_fake() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    simulated(&sandbox, &["rollback", "revert-traffic", "--env", "production"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .success();
    let history = sandbox.runbook().args(["history", "--rehearsals", "--format", "json"]).output().success().stdout();
    let runs: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
    let id = runs[0]["id"].as_str().unwrap_or_default().to_owned();
    let saved = || -> serde_json::Value {
        let text =
            std::fs::read_to_string(sandbox.path().join(format!("state/simulate/{id}.json"))).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    };
    let traffic = |saved: &serde_json::Value| {
        saved["fake"]["scenario"]["projects"][PROJECT]["services"]["pegasus-api"]["traffic"].clone()
    };
    assert_eq!(traffic(&saved()), serde_json::json!([{"percent": 100, "revision_name": "pegasus-api-00002-x9m"}]));
    let path = format!("{}:{}", sandbox.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = sandbox.runbook().env("PATH", path).args(["undo", &id, "--yes", "--confirm-env", "production"]).output();
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stderr().contains("state was restored"), "{}", out.stderr());
    assert_eq!(
        traffic(&saved()),
        serde_json::json!([{"latest_revision": true, "percent": 100}]),
        "as the scenario served it"
    );
}

/// Issue 11: a clone operation that ends in error (an `operations` fault) fails `clone_wait`;
/// `resume` starts again at `clone_op` (`restarts_from:`), a second clone is made, and the run
/// finishes, instead of waiting on the failed operation again.
#[test]
fn a_failed_clone_operation_is_started_again_on_resume_and_the_run_finishes() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let ts = recent_timestamp();
    fake.faults(r#"{"operations": [{"operation_type": "CLONE", "error": {"code": "INTERNAL_ERROR", "message": "simulated clone failure"}}]}"#);
    let out = runbook(&sandbox, &fake)
        .args(["rollback", "pitr", "--env", "production", "--timestamp", &ts, "--yes", "--confirm-env", "production"])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .args(["--var", &format!("api_base_url={}", fake.app_url())])
        .output()
        .status(1);
    assert!(out.stderr().contains("step `clone_wait` failed"), "{}", out.stderr());
    let id = sandbox.last_run_id();
    let instances = |fake: &Fake| fake.state()["projects"][PROJECT]["instances"].clone();
    assert!(instances(&fake)["pegasus-db-eu-rollback"].is_null(), "the failed clone made an instance");
    fake.faults("{}");
    // Without a terminal and without --answer: the first attempt's answers are reused.
    let out = runbook(&sandbox, &fake).args(["resume", &id, "--yes", "--confirm-env", "production"]).output().success();
    assert!(out.stderr().contains("resume starts again at step clone_op"), "{}", out.stderr());
    let clones = fake.requests().iter().filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/clone"))).count();
    assert_eq!(clones, 2, "resume started a second clone");
    assert!(instances(&fake)["pegasus-db-eu-rollback"].is_object(), "the second clone exists");
    let shown = Run::new(sandbox.path()).args(["show", &id]).output().success().stdout();
    assert!(shown.contains("`clone_wait` failed: the operation `clone_op` started ended in error"), "{shown}");
    assert!(shown.contains("status: done"), "{shown}");
}

/// Issue 11: the restore of the chosen backup fails at restore time (an `operations` fault on
/// RESTORE_VOLUME: FAILED backups are no longer offered, so this is how a backup that cannot be
/// restored shows); `resume --answer backup_id=<other>` restores the other backup, from the
/// prompt on, without asking again for what the first attempt answered.
#[test]
fn a_restore_that_failed_is_redone_with_the_backup_given_on_resume() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let backups = fake.state()["projects"][PROJECT]["instances"]["pegasus-db-eu"]["backup_runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let good: Vec<i64> =
        backups.iter().filter(|b| b["status"] == "SUCCESSFUL").filter_map(|b| b["id"].as_i64()).collect();
    let [first, second, ..] = good[..] else { panic!("the scenario has two SUCCESSFUL backups: {backups:?}") };
    fake.faults(r#"{"operations": [{"operation_type": "RESTORE_VOLUME", "instance": "pegasus-db-eu", "error": {"code": "INTERNAL_ERROR", "message": "simulated restore failure"}}]}"#);
    let out = runbook(&sandbox, &fake)
        .args(["rollback", "snapshot", "--env", "production", "--yes", "--confirm-env", "production"])
        .args(["--confirm-target", "restore_op=pegasus-db-eu"])
        .args(["--answer", "failing_migration_file=003_add_course_tags.sql"])
        .args(["--answer", &format!("backup_id={first}")])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .args(["--var", &format!("api_base_url={}", fake.app_url())])
        .output()
        .status(1);
    assert!(out.stderr().contains("simulated restore failure"), "{}", out.stderr());
    let id = sandbox.last_run_id();
    fake.faults("{}");
    let out = runbook(&sandbox, &fake)
        .args(["resume", &id, "--yes", "--confirm-env", "production"])
        .args(["--confirm-target", "restore_op=pegasus-db-eu"])
        .args(["--answer", &format!("backup_id={second}")])
        .output()
        .success();
    assert!(out.stderr().contains("answer to backup_id replaced by"), "{}", out.stderr());
    let restores = fake.state()["projects"][PROJECT]["instances"]["pegasus-db-eu"]["restores"].clone();
    let restored: Vec<i64> =
        restores.as_array().into_iter().flatten().filter_map(|r| r["backup_run_id"].as_i64()).collect();
    assert_eq!(restored, [second], "the backup given on resume was restored: {restores}");
    let bodies: Vec<String> = mutating_requests(&fake)
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/restoreBackup")))
        .map(|r| r["body"].to_string())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[1].contains(&second.to_string()), "{bodies:?}");
}

/// What in an strace log (`connect`, `sendto`, `sendmsg`) reaches beyond loopback or asks a
/// name server: a socket address that is not 127.0.0.0/8 or ::1, anything to port 53, or
/// systemd-resolved's socket. (The name-service cache daemon's socket is not counted: user and
/// group look-ups go there too.)
fn outside_loopback(trace: &str) -> Vec<String> {
    let address =
        |line: &str, key: &str| line.split(key).nth(1).and_then(|rest| rest.split('"').nth(1)).map(str::to_owned);
    trace
        .lines()
        .filter(|line| line.contains("connect(") || line.contains("sendto(") || line.contains("sendmsg("))
        .filter(|line| {
            let v4 = address(line, "inet_addr(");
            let v6 = address(line, "inet_pton(AF_INET6, ");
            let outside_v4 = v4.as_deref().is_some_and(|a| !a.starts_with("127."));
            let outside_v6 = v6.as_deref().is_some_and(|a| a != "::1");
            outside_v4 || outside_v6 || line.contains("htons(53)") || line.contains("systemd/resolve")
        })
        .map(str::to_owned)
        .collect()
}

/// Issue 24: a full `--simulate` rehearsal — the runbook, every gcloud, the smoke script —
/// connects to loopback only and asks no name server: gcloud's Compute Engine check
/// (`metadata.google.internal`) is turned off and its metadata host is the fake.
#[test]
fn a_rehearsal_under_strace_connects_to_loopback_only_and_asks_no_dns() {
    let Some(gcloud) = gcloud() else { return };
    if !Path::new("/usr/bin/strace").is_file() {
        assert!(std::env::var_os("CI").is_none(), "strace is not installed, and CI machines must have it");
        let _ = writeln!(std::io::stderr(), "\n*** SKIP: /usr/bin/strace is not installed ***\n");
        return;
    }
    let (sandbox, _) = rehearsal(&gcloud);
    let trace = sandbox.path().join("strace.log");
    let trace_arg = trace.display().to_string();
    let out = simulated(&sandbox, &["rollback", "pitr", "--env", "production", "--timestamp", &recent_timestamp()])
        .args(PITR_ANSWERS)
        .wrapped("/usr/bin/strace", &["-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", &trace_arg])
        .output();
    let all = out.all();
    assert_eq!(out.code(), 0, "{all}");
    let log = std::fs::read_to_string(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
    assert!(log.contains("inet_addr(\"127.0.0.1\")"), "strace saw the calls to the fake: {log}");
    assert_eq!(outside_loopback(&log), Vec::<String>::new(), "left loopback or asked a name server");
}

/// Issue 24: the same rehearsal inside an empty network namespace (only a loopback device)
/// finishes: nothing it does needs a network beyond the machine.
#[test]
fn a_rehearsal_finishes_inside_an_empty_network_namespace() {
    let Some(gcloud) = gcloud() else { return };
    let allowed = Command::new("unshare")
        .args(["-rn", "ip", "link", "set", "lo", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIP: this machine does not allow an unprivileged network namespace (`unshare -rn`) with `ip`; the empty-network rehearsal did not run ***\n"
        );
        return;
    }
    let (sandbox, _) = rehearsal(&gcloud);
    let out = simulated(&sandbox, &["rollback", "pitr", "--env", "production", "--timestamp", &recent_timestamp()])
        .args(PITR_ANSWERS)
        .wrapped("unshare", &["-rn", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
        .output();
    let all = out.all();
    assert_eq!(out.code(), 0, "{all}");
    assert!(all.contains("This was a REHEARSAL"), "{all}");
}

/// Issue 24, the check: Google leaves out default-valued fields (a traffic entry carries
/// `latestRevision` only when true, `tag` only when set). A split on named revisions is
/// reverted and undone with the real gcloud: traffic is back on the revisions that served.
#[test]
fn undo_of_a_traffic_revert_restores_a_split_whose_entries_omit_default_fields() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let mut scenario: serde_json::Value = serde_json::from_str(&default_scenario_json(&fake)).unwrap_or_default();
    let split = serde_json::json!([
        {"percent": 90, "revision_name": "pegasus-api-00003-zt4"},
        {"percent": 10, "revision_name": "pegasus-api-00001-k7q", "tag": "canary"},
    ]);
    scenario["projects"][PROJECT]["services"]["pegasus-api"]["traffic"] = split.clone();
    fake.admin("POST", "/__fake/scenario", &scenario.to_string());
    let traffic = |fake: &Fake| fake.state()["projects"][PROJECT]["services"]["pegasus-api"]["traffic"].clone();
    runbook(&sandbox, &fake)
        .args(["rollback", "revert-traffic", "--env", "production", "--yes", "--confirm-env", "production"])
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .success();
    let serving = |fake: &Fake| -> Vec<(String, u64)> {
        traffic(fake)
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|t| t["percent"].as_u64().is_some_and(|p| p > 0))
            .map(|t| (t["revision_name"].as_str().unwrap_or_default().to_owned(), t["percent"].as_u64().unwrap_or(0)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    // gcloud keeps the tag on its revision, with no share of the traffic.
    assert_eq!(serving(&fake), vec![("pegasus-api-00002-x9m".to_owned(), 100)]);
    let id = sandbox.last_run_id();
    let undo = runbook(&sandbox, &fake).args(["undo", &id, "--yes", "--confirm-env", "production"]).output();
    assert_eq!(undo.code(), 0, "{}", undo.all());
    assert_eq!(
        serving(&fake),
        vec![("pegasus-api-00001-k7q".to_owned(), 10), ("pegasus-api-00003-zt4".to_owned(), 90)]
    );
}

/// gcloud's installation folder and its bundled Python, from `gcloud info`.
fn gcloud_python() -> Option<(String, String)> {
    let info = |format: &str| {
        Command::new("gcloud")
            .args(["info", &format!("--format=value({format})")])
            .env("CLOUDSDK_CONFIG", std::env::temp_dir().join("runbook-tests-gcloud-info"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    Some((info("installation.sdk_root")?, info("basic.python_location")?))
}

/// `tests/support/google_decode.py` over request records (`method`, `path`, `status`,
/// `response`): its report; fails on any problem it finds.
fn google_decode(sdk: &str, python: &str, records: Vec<serde_json::Value>) -> String {
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/support/google_decode.py"))
        .arg(sdk)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(serde_json::Value::Array(records).to_string().as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("wait: {e}"));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    report
}

/// Issue 24: every response the fake sent during full `pitr`, `snapshot` and `revert-traffic`
/// rehearsals decodes with gcloud's own generated message classes (sqladmin v1beta4,
/// secretmanager v1, run v1), strictly — no unknown field at any depth, no wrong type — and
/// leaves out every default-valued field, as Google's proto3 JSON does.
#[test]
fn every_response_of_three_rehearsals_decodes_with_gclouds_message_classes() {
    let Some(gcloud) = gcloud() else { return };
    let Some((sdk, python)) = gcloud_python() else { panic!("`gcloud info` names no SDK root or Python") };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    let backups = fake.state()["projects"][PROJECT]["instances"]["pegasus-db-eu"]["backup_runs"].clone();
    let pre_deploy = backups
        .as_array()
        .and_then(|b| b.iter().find(|b| b["description"] == "pre-deploy"))
        .and_then(|b| b["id"].as_i64())
        .unwrap_or_else(|| panic!("the scenario has a pre-deploy backup"));
    let app = format!("api_base_url={}", fake.app_url());
    let common = ["--env", "production", "--yes", "--confirm-env", "production", "--var", &app];
    let migration = ["--answer", "failing_migration_file=003_add_course_tags.sql"];
    runbook(&sandbox, &fake)
        .args(["rollback", "pitr", "--timestamp", &recent_timestamp()])
        .args(common)
        .args(migration)
        .args(["--answer", "previous_revision=pegasus-api-00002-x9m"])
        .output()
        .success();
    runbook(&sandbox, &fake)
        .args(["rollback", "snapshot", "--confirm-target", "restore_op=pegasus-db-eu"])
        .args(common)
        .args(migration)
        .args(["--answer", &format!("backup_id={pre_deploy}"), "--answer", "previous_revision=pegasus-api-00001-k7q"])
        .output()
        .success();
    runbook(&sandbox, &fake)
        .args(["rollback", "revert-traffic"])
        .args(common)
        .args(["--answer", "previous_revision=pegasus-api-00003-zt4"])
        .output()
        .success();
    let report = google_decode(&sdk, &python, fake.requests());
    let decoded: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("decoded ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    // Every call of the three procedures: describes, clones, operations, backups, secrets, traffic.
    assert!(decoded >= 25, "{report}");
}

/// Issue 24: a run sends its steps' marks to a `runbook simulate` server only once the server
/// proved it knows the token `runbook simulate` printed (an HMAC of a fresh nonce). Issue 22:
/// without that proof the endpoint overrides on loopback make a REAL run (a local forwarder to
/// the real APIs looks the same), which needs production's approval: refused, nothing sent.
#[test]
fn step_marks_go_only_to_a_server_that_proved_it_is_the_fake() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let fake = Fake::start(&sandbox);
    assert!(
        fake.env.iter().any(|(k, v)| k == "RUNBOOK_REHEARSAL_TOKEN" && v.len() == 64),
        "runbook simulate prints its token: {:?}",
        fake.env
    );
    let marks = |fake: &Fake| fake.admin("GET", "/__fake/marks", "").as_array().map_or(0, Vec::len);
    let revert = ["rollback", "revert-traffic", "--env", "production", "--yes", "--confirm-env", "production"];
    for (token, revision) in [("0".repeat(64), "pegasus-api-00002-x9m"), (String::new(), "pegasus-api-00003-zt4")] {
        let out = runbook(&sandbox, &fake)
            .env("RUNBOOK_REHEARSAL_TOKEN", &token)
            .args(revert)
            .args(["--answer", &format!("previous_revision={revision}")])
            .output()
            .status(2);
        let err = out.stderr();
        assert!(err.contains("this is a REAL run, not a rehearsal"), "{}", out.all());
        assert!(err.contains("environment `production` needs 1 approval"), "{}", out.all());
        assert_eq!(marks(&fake), 0, "no mark without the proof");
        assert!(fake.requests().iter().all(|r| r["method"] == "GET"), "a refused run changes nothing");
    }
    runbook(&sandbox, &fake)
        .args(revert)
        .args(["--answer", "previous_revision=pegasus-api-00001-k7q"])
        .output()
        .success();
    assert!(marks(&fake) > 0, "the proven fake gets the marks");
}

/// How a rehearsal must end when the fake leaves a field out.
enum Without {
    /// It finishes (a `revert-traffic` is also undone: the revision that served before serves again).
    Finishes,
    /// It stops at `step` with a message containing `needle`, the fake having received only
    /// these changes (path endings) first: none where the field is read before the first change.
    Stops { step: &'static str, needle: &'static str, changes: &'static [&'static str] },
}

/// One optional field the fake sends and rollback.yaml (or gcloud for it) reads, the
/// procedures that read it, and how they must end without it.
struct Omission {
    kind: &'static str,
    path: &'static str,
    procedure: &'static str,
    without: Without,
    /// Part of the representative subset `scripts/test` runs; `scripts/omissions` runs all.
    quick: bool,
}

const fn stops(step: &'static str, needle: &'static str, changes: &'static [&'static str]) -> Without {
    Without::Stops { step, needle, changes }
}

/// Every optional field of the fake's responses that rollback.yaml's procedures read.
const OMISSIONS: &[Omission] = &[
    Omission {
        kind: "sql.instance",
        path: "settings.backupConfiguration.pointInTimeRecoveryEnabled",
        procedure: "pitr",
        without: stops("pitr_available", "Point-in-time recovery is not enabled on pegasus-db-eu", &[]),
        quick: true,
    },
    // The clone's IP is read from the clone, which exists only after the first change: the run
    // stops before the secret is touched.
    Omission {
        kind: "sql.instance",
        path: "ipAddresses",
        procedure: "pitr",
        without: stops("new_ip_present", "pegasus-db-eu-rollback has no IP address", &["/clone"]),
        quick: false,
    },
    Omission {
        kind: "sql.instance",
        path: "ipAddresses[].ipAddress",
        procedure: "pitr",
        without: stops("new_ip_present", "pegasus-db-eu-rollback has no IP address", &["/clone"]),
        quick: false,
    },
    // An empty payload: gcloud itself refuses the answer, before the secret is touched.
    Omission {
        kind: "secrets.access",
        path: "payload.data",
        procedure: "pitr",
        without: stops("current_db_url", "`gcloud` exited with status 1", &["/clone"]),
        quick: false,
    },
    Omission {
        kind: "sql.backupRun",
        path: "windowStartTime",
        procedure: "snapshot",
        without: Without::Finishes,
        quick: false,
    },
    Omission {
        kind: "sql.backupRun",
        path: "startTime",
        procedure: "snapshot",
        without: Without::Finishes,
        quick: false,
    },
    Omission { kind: "sql.backupRun", path: "type", procedure: "snapshot", without: Without::Finishes, quick: false },
    Omission {
        kind: "sql.backupRun",
        path: "description",
        procedure: "snapshot",
        without: Without::Finishes,
        quick: false,
    },
    Omission {
        kind: "sql.backupRun",
        path: "status",
        procedure: "snapshot",
        without: stops("successful_backup_listed", "without a status", &[]),
        quick: true,
    },
    Omission {
        kind: "run.service",
        path: "status.traffic",
        procedure: "revert-traffic",
        without: stops("traffic_split_known", "the service has no status.traffic", &[]),
        quick: false,
    },
    Omission {
        kind: "run.service",
        path: "status.traffic[].percent",
        procedure: "revert-traffic",
        without: stops("traffic_split_known", "status.traffic[].percent is missing", &[]),
        quick: true,
    },
    Omission {
        kind: "run.service",
        path: "status.traffic[].revisionName",
        procedure: "revert-traffic",
        without: stops("traffic_split_known", "status.traffic[].revisionName is missing", &[]),
        quick: false,
    },
    Omission {
        kind: "run.service",
        path: "status.traffic[].latestRevision",
        procedure: "revert-traffic",
        without: Without::Finishes,
        quick: true,
    },
    Omission {
        kind: "run.revision",
        path: "metadata.creationTimestamp",
        procedure: "revert-traffic",
        without: Without::Finishes,
        quick: true,
    },
    Omission {
        kind: "run.revision",
        path: "metadata.creationTimestamp",
        procedure: "pitr",
        without: stops("timestamp_before_the_deploy", "created at an unknown time", &[]),
        quick: false,
    },
    Omission {
        kind: "run.revision",
        path: "spec.containers",
        procedure: "revert-traffic",
        without: Without::Finishes,
        quick: false,
    },
    Omission {
        kind: "run.revision",
        path: "spec.containers[].image",
        procedure: "revert-traffic",
        without: Without::Finishes,
        quick: false,
    },
];

/// The revision serving 100% of pegasus-api in the fake (the latest one where it serves LATEST).
fn serving_revision(fake: &Fake) -> String {
    let service = &fake.state()["projects"][PROJECT]["services"]["pegasus-api"];
    let traffic = service["traffic"].as_array().cloned().unwrap_or_default();
    let full = traffic.iter().find(|t| t["percent"] == 100).unwrap_or_else(|| panic!("no 100% entry: {service}"));
    if full["latest_revision"] == true {
        let revisions = service["revisions"].as_array().cloned().unwrap_or_default();
        revisions.last().and_then(|r| r["name"].as_str()).unwrap_or_default().to_owned()
    } else {
        full["revision_name"].as_str().unwrap_or_default().to_owned()
    }
}

fn rehearse_without(gcloud: &Path, omission: &Omission) {
    let (sandbox, _) = rehearsal(gcloud);
    let fake = Fake::start(&sandbox);
    let case = format!("without {}: {} in `{}`", omission.kind, omission.path, omission.procedure);
    let before = serving_revision(&fake);
    let backups = fake.state()["projects"][PROJECT]["instances"]["pegasus-db-eu"]["backup_runs"].clone();
    let pre_deploy = backups
        .as_array()
        .and_then(|b| b.iter().find(|b| b["description"] == "pre-deploy"))
        .and_then(|b| b["id"].as_i64())
        .unwrap_or_else(|| panic!("the scenario has a pre-deploy backup"));
    fake.faults(&serde_json::json!({"omit_fields": [{"kind": omission.kind, "path": omission.path}]}).to_string());
    let app = format!("api_base_url={}", fake.app_url());
    let mut run = runbook(&sandbox, &fake)
        .args(["rollback", omission.procedure, "--env", "production", "--yes", "--confirm-env", "production"])
        .args(["--var", &app, "--answer", "previous_revision=pegasus-api-00002-x9m"]);
    run = match omission.procedure {
        "pitr" => run.args(["--timestamp", &recent_timestamp()]).args(&PITR_ANSWERS[..2]),
        "snapshot" => run
            .args(["--confirm-target", "restore_op=pegasus-db-eu"])
            .args(&PITR_ANSWERS[..2])
            .args(["--answer", &format!("backup_id={pre_deploy}")]),
        _ => run,
    };
    let out = run.output();
    let all = out.all();
    let omitted = fake.admin("GET", "/__fake/faults", "")["omit_fields"][0]["omitted"].as_u64().unwrap_or(0);
    assert!(omitted > 0, "{case}: the fake never sent the field, so the case proves nothing");
    match &omission.without {
        Without::Finishes => {
            assert_eq!(out.code(), 0, "{case}: {all}");
            if omission.procedure == "revert-traffic" {
                assert_eq!(serving_revision(&fake), "pegasus-api-00002-x9m", "{case}");
                let id = sandbox.last_run_id();
                let undo =
                    runbook(&sandbox, &fake).args(["undo", &id, "--yes", "--confirm-env", "production"]).output();
                assert_eq!(undo.code(), 0, "{case}: undo: {}", undo.all());
                assert_eq!(serving_revision(&fake), before, "{case}: the undo routes traffic back");
            }
        }
        Without::Stops { step, needle, changes } => {
            assert_ne!(out.code(), 0, "{case}: {all}");
            let stderr = out.stderr();
            assert!(stderr.contains(&format!("step `{step}` failed")), "{case}: {stderr}");
            assert!(stderr.contains(needle), "{case}: {stderr}");
            let made: Vec<String> = mutating_requests(&fake)
                .iter()
                .map(|r| r["path"].as_str().unwrap_or_default().to_owned())
                .filter(|p| !p.starts_with("/app"))
                .collect();
            assert_eq!(made.len(), changes.len(), "{case}: changes made before the stop: {made:?}");
            for (path, ending) in made.iter().zip(changes.iter()) {
                assert!(path.ends_with(ending), "{case}: {made:?}");
            }
        }
    }
}

/// Issue 24: the fake leaves out, one at a time, each optional field rollback.yaml reads
/// (the `omit_fields` fault); each rehearsal finishes (a traffic revert is undone too) or stops
/// before its first change with a message naming what is missing. A representative subset
/// here; `scripts/omissions` (RUNBOOK_OMISSIONS=all) runs every field.
#[test]
fn rehearsals_survive_the_fake_leaving_out_each_optional_field_they_read() {
    let Some(gcloud) = gcloud() else { return };
    let all = std::env::var("RUNBOOK_OMISSIONS").is_ok_and(|v| v == "all");
    for omission in OMISSIONS.iter().filter(|o| all || o.quick) {
        rehearse_without(&gcloud, omission);
    }
}

/// Issue 24: the fixtures of Google's responses (`tests/fixtures/google/`, rendered through
/// rollback.yaml by `crates/engine/tests/google_fixtures.rs`) decode with gcloud's own message
/// classes as strictly as the fake's answers do, each at the call it stands for.
#[test]
fn the_google_response_fixtures_decode_with_gclouds_message_classes() {
    let Some(_) = gcloud() else { return };
    let Some((sdk, python)) = gcloud_python() else { panic!("`gcloud info` names no SDK root or Python") };
    let sql = "/sql/v1beta4/projects/delta-student-486911-n5";
    let secret = "/v1/projects/delta-student-486911-n5/secrets/pegasus-db-url";
    let run = "/apis/serving.knative.dev/v1/namespaces/delta-student-486911-n5";
    let calls = [
        ("GET", format!("{sql}/instances/pegasus-db-eu"), "sql.instances.get"),
        ("GET", format!("{sql}/operations/5c1e5b0a-7d2f-4a6e-9b3c-2f1d00000024"), "sql.operations.get"),
        ("GET", format!("{sql}/instances/pegasus-db-eu/backupRuns"), "sql.backupRuns.list"),
        ("GET", format!("{secret}/versions/latest:access"), "secretmanager.versions.access"),
        ("GET", format!("{secret}/versions/latest"), "secretmanager.versions.get"),
        ("GET", format!("{run}/services/pegasus-api"), "run.services.get"),
        ("GET", format!("{run}/revisions"), "run.revisions.list"),
        ("PUT", format!("{run}/services/pegasus-api"), "run.services.replaceService"),
        ("GET", "/v3/projects/delta-student-486911-n5/timeSeries".to_owned(), "monitoring.timeSeries.list"),
    ];
    let dir = repo_root().join("tests/fixtures/google");
    let listed = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
        .unwrap_or(0);
    assert_eq!(listed, calls.len(), "every fixture in {} is decoded", dir.display());
    let records: Vec<serde_json::Value> = calls
        .iter()
        .map(|(method, path, name)| {
            let text =
                std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut response: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let source = response.as_object_mut().and_then(|o| o.remove("_source"));
            assert!(source.is_some(), "{name}: the fixture names its source in `_source`");
            serde_json::json!({"method": method, "path": path, "status": 200, "response": response})
        })
        .collect();
    let report = google_decode(&sdk, &python, records);
    assert!(report.contains(&format!("decoded {} response(s)", calls.len())), "{report}");
}

/// What `gcloud auth print-access-token` prints in a rehearsal (the fake's token file).
const REHEARSAL_ACCESS_TOKEN: &str = "ya29.rehearsal-token-of-the-local-fake";

/// The `interval.endTime` of every Cloud Monitoring request a journal recorded for the watch
/// (its rendered URL), parsed.
fn monitoring_end_times(journal: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
    journal
        .split("interval.endTime=")
        .skip(1)
        .filter_map(|rest| rest.split(['&', '"']).next())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .collect()
}

/// The error rate after the revert, read from the fake's Cloud Monitoring with the token gcloud
/// printed, on the rehearsal's compressed cadence: the watch passes, and the run records its
/// time to recovery.
#[test]
fn a_pitr_rehearsal_watches_the_error_rate_fall_and_records_the_time_to_recovery() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, argv_log) = rehearsal(&gcloud);
    let started = chrono::Utc::now();
    let out = simulated(&sandbox, &["rollback", "pitr", "--env", "production", "--timestamp", &recent_timestamp()])
        .args(PITR_ANSWERS)
        .output();
    let all = out.all();
    assert_eq!(out.code(), 0, "{all}");
    assert!(all.contains("rehearsal: var monitoring_api = http://127.0.0.1:"), "{all}");
    assert!(all.contains("rehearsal: var watch_every = 250ms"), "{all}");
    assert!(all.contains("/v3/projects/delta-student-486911-n5/timeSeries"), "the watch asked the fake: {all}");
    assert!(all.contains("passing (3/3)"), "three passing samples in a row: {all}");
    assert!(!all.contains(REHEARSAL_ACCESS_TOKEN), "the access token is masked: {all}");
    assert!(std::fs::read_to_string(&argv_log).unwrap_or_default().contains("auth print-access-token"));
    let journal = journals(&sandbox);
    assert!(!journal.contains(REHEARSAL_ACCESS_TOKEN), "the access token is never journaled");
    assert!(journal.contains(r#""event":"recovered""#), "{journal}");
    // The window asked for ends at the sample's `now`: never in the future, never before the run.
    let ends = monitoring_end_times(&journal);
    assert!(!ends.is_empty(), "the watch's request is journaled: {journal}");
    for end in ends {
        assert!(end >= started - chrono::Duration::seconds(1) && end <= chrono::Utc::now(), "endTime {end}");
    }
    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success().stdout();
    let runs: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
    let seconds = runs[0]["time_to_recovery_s"].as_f64();
    assert!(seconds.is_some_and(|s| s > 0.0), "time_to_recovery_s is a number: {history}");
    assert_eq!(runs[0]["recovery"], "recovered", "{history}");
}

/// A scenario file: the built-in one with `faults`.
fn scenario_with_faults(sandbox: &Sandbox, name: &str, faults: serde_json::Value) -> String {
    let mut scenario: serde_json::Value = serde_json::from_str(&default_scenario_json_plain()).unwrap_or_default();
    scenario["faults"] = faults;
    let path = format!("scenarios/{name}.json");
    sandbox.file(&path, &scenario.to_string());
    path
}

/// A rollback that did not help: the errors stay high, the watch runs out (5s in a rehearsal)
/// and the run fails at it, without a time to recovery.
#[test]
fn a_pitr_rehearsal_with_errors_staying_high_fails_at_the_watch() {
    let Some(gcloud) = gcloud() else { return };
    let (sandbox, _) = rehearsal(&gcloud);
    let scenario = scenario_with_faults(&sandbox, "errors", serde_json::json!({"errors_stay_high": true}));
    let out = simulated(&sandbox, &["rollback", "pitr", "--env", "production", "--timestamp", &recent_timestamp()])
        .args(PITR_ANSWERS)
        .args(["--scenario", &scenario])
        .output();
    let all = out.all();
    assert_eq!(out.code(), 1, "{all}");
    assert!(all.contains("`within: 5s` ran out"), "{all}");
    // The samples are the fake's answers (high 5xx), shown by the watch's `value:`, not errors.
    let counts = all
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once(": ")?;
            let (errors, rest) = rest.split_once(" of ")?;
            let (total, _) = rest.split_once(" requests were 5xx")?;
            Some((errors.trim().parse::<u64>().ok()?, total.trim().parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no sample value in {all}"));
    let (errors, total) = counts;
    assert!(total > 0 && errors * 100 > total, "a high 5xx share: {errors} of {total}");
    assert!(all.contains("not passing"), "{all}");
    assert!(!all.contains("HTTP 4"), "{all}");
    let journal = journals(&sandbox);
    assert!(journal.contains(r#""id":"error_rate""#), "{journal}");
    assert!(!journal.contains(r#""event":"recovered""#), "{journal}");
    let history = sandbox.runbook().args(["history", "--format", "json"]).output().success().stdout();
    let runs: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
    assert_eq!(runs[0]["time_to_recovery_s"], serde_json::Value::Null, "{history}");
    assert_eq!(runs[0]["recovery"], "not recovered", "{history}");
}

/// Issue 22, attacked from outside: a plan made against a proven `runbook simulate` server is
/// marked REHEARSAL for its approver; applied from a shell that is not pointed at the fake it
/// would run for real under an approval given for a rehearsal. Refused, nothing runs.
#[test]
fn a_rehearsal_plan_is_not_applied_for_real() {
    let sandbox = super::plans::sandbox();
    let fake = Fake::start(&sandbox);
    let with_fake = |who: &str| {
        let mut run = super::plans::as_user(&sandbox, who);
        for (key, value) in fake.env.iter().filter(|(k, _)| k != "CLOUDSDK_CORE_ACCOUNT") {
            run = run.env(key, value);
        }
        run
    };
    let args = ["svc", "switch", "--env", "production", "--answer", "reason=rollback", "--save-plan", "switch.plan"];
    let out = with_fake("a@x").args(args).output().success();
    let text = std::fs::read_to_string(super::plans::plan_path(&sandbox)).unwrap_or_default();
    assert!(text.contains("\"rehearsal\": true"), "{}\n{text}", out.all());
    let prefix: String = super::plans::plan_id(&super::plans::plan_path(&sandbox)).chars().take(8).collect();
    with_fake("b@x").args(["approve", "switch.plan", "--plan-id", &prefix]).output().success();

    let out = super::plans::apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("REHEARSAL") && out.stderr().contains("real"), "{}", out.stderr());
    assert_eq!(super::plans::switched(&sandbox), "", "a rehearsal plan ran for real");
    // Applied against the fake, as it was made, it runs (as a rehearsal).
    let out = with_fake("a@x").args(["apply", "switch.plan", "--confirm-env", "production"]).output();
    assert_eq!(out.code(), 0, "{}", out.all());
}
