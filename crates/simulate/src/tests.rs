//! Tests of the fake: over plain HTTP (always), and with the real gcloud running the commands of
//! `runbooks/rollback.yaml` with its production vars (where gcloud is installed).

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::crc32c::crc32c;
use super::*;

const PROD: &str = "--project=delta-student-486911-n5";
const STAGING: &str = "--project=delta-student-486911-n5-staging";
const PROD_DB_URL: &str = "postgresql://pegasus:s3cr3t-pw@10.20.0.3:5432/pegasus?sslmode=require";

async fn fake(scenario: Scenario) -> Handle {
    start(scenario).await.unwrap_or_else(|e| panic!("cannot start the fake: {e}"))
}

fn prod(state: &State) -> &Project {
    state.scenario.projects.get("delta-student-486911-n5").unwrap_or_else(|| panic!("no production project"))
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP

/// One raw HTTP/1.1 exchange; `target` may be a path or an absolute URI (proxy style).
async fn http(addr: SocketAddr, method: &str, target: &str, host: &str, body: Option<&Value>) -> (u16, Value) {
    http_with(addr, method, target, host, body, "").await
}

/// `headers`: more header lines, each ending in `\r\n`.
async fn http_with(
    addr: SocketAddr,
    method: &str,
    target: &str,
    host: &str,
    body: Option<&Value>,
    headers: &str,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to the fake: {e}"));
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("send: {e}"));
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap_or_else(|e| panic!("receive: {e}"));
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let payload = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

async fn get(fake: &Handle, path: &str) -> (u16, Value) {
    http(fake.addr, "GET", path, &fake.addr.to_string(), None).await
}

/// A Cloud Monitoring GET with the access token gcloud prints in a rehearsal.
async fn monitoring(fake: &Handle, path: &str) -> (u16, Value) {
    let auth = format!("Authorization: Bearer {ACCESS_TOKEN}\r\n");
    http_with(fake.addr, "GET", path, &fake.addr.to_string(), None, &auth).await
}

async fn post(fake: &Handle, path: &str, body: &Value) -> (u16, Value) {
    http(fake.addr, "POST", path, &fake.addr.to_string(), Some(body)).await
}

const SQL: &str = "/sql/v1beta4/projects/delta-student-486911-n5";
const SECRETS: &str = "/v1/projects/delta-student-486911-n5/secrets";
const RUN: &str = "/apis/serving.knative.dev/v1/namespaces/delta-student-486911-n5";

#[test]
fn scenarios_read_from_json_and_yaml() {
    let pegasus = Scenario::pegasus();
    let text = serde_json::to_string(&pegasus).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Scenario::from_yaml(&text), Ok(pegasus.clone()), "JSON round trip");
    assert_eq!(prod_project(&pegasus).secrets["pegasus-db-url"].versions[1].data, PROD_DB_URL.as_bytes());

    let yaml = "
operation_polls: 4
projects:
  demo:
    number: '123'
    instances:
      db: {ip_addresses: [{ip_address: 10.0.0.5}], backup_runs: [{id: 7, window_start_time: '2025-06-15T02:00:00Z'}]}
    secrets:
      s: {versions: [{data: 'base64:AAEC'}, {data: plain text}]}
faults:
  http_errors: [{path_contains: /backupRuns, times: 2}]
  operations: [{operation_type: CLONE, error: {message: no space left}}]
";
    let scenario = Scenario::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.operation_polls, 4);
    let demo = &scenario.projects["demo"];
    assert_eq!(demo.instances["db"].ip_addresses[0].kind, "PRIVATE");
    assert_eq!(demo.instances["db"].backup_runs[0].status, "SUCCESSFUL");
    assert_eq!(demo.secrets["s"].versions[0].data, vec![0u8, 1, 2]);
    assert_eq!(demo.secrets["s"].versions[1].data, b"plain text");
    assert_eq!(scenario.faults.http_errors[0].status, 503);
    assert_eq!(scenario.faults.operations[0].error.as_ref().map(|e| e.code.as_str()), Some("INTERNAL_ERROR"));
    assert!(Scenario::from_yaml("projects: {p: {instances: {db: {colour: red}}}}").is_err(), "unknown keys fail");
}

fn prod_project(scenario: &Scenario) -> &Project {
    scenario.projects.get("delta-student-486911-n5").unwrap_or_else(|| panic!("no production project"))
}

#[test]
fn gcloud_env_points_every_api_and_the_proxy_at_the_fake() {
    let env = gcloud_env(SocketAddr::from(([127, 0, 0, 1], 4321)), Path::new("/tmp/gcloud-config"));
    let value = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(value("CLOUDSDK_CONFIG"), Some("/tmp/gcloud-config"));
    assert_eq!(value("CLOUDSDK_AUTH_DISABLE_CREDENTIALS"), Some("true"));
    assert_eq!(value("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"), Some("/tmp/gcloud-config/access-token"));
    assert_eq!(value("CLOUDSDK_CORE_DISABLE_PROMPTS"), Some("1"));
    for api in ["SQL", "SECRETMANAGER", "RUN"] {
        assert_eq!(value(&format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}")), Some("http://127.0.0.1:4321/"));
    }
    assert_eq!(value("CLOUDSDK_PROXY_TYPE"), Some("http"));
    assert_eq!(value("CLOUDSDK_PROXY_ADDRESS"), Some("127.0.0.1"));
    assert_eq!(value("CLOUDSDK_PROXY_PORT"), Some("4321"));
    let any = gcloud_env(SocketAddr::from(([0, 0, 0, 0], 80)), Path::new("/c"));
    assert!(any.contains(&("CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN".into(), "http://127.0.0.1:80/".into())));
}

#[tokio::test]
async fn serves_origin_form_and_proxy_style_requests_and_google_errors() {
    let fake = fake(Scenario::pegasus()).await;
    let port = fake.addr.port();

    let (status, instance) = get(&fake, &format!("{SQL}/instances/pegasus-db-eu?alt=json")).await;
    assert_eq!(status, 200);
    assert_eq!(instance["ipAddresses"][0]["ipAddress"], "10.20.0.3");
    assert_eq!(instance["settings"]["backupConfiguration"]["pointInTimeRecoveryEnabled"], true);

    // What gcloud sends through its HTTP proxy setting, with the region in the host.
    let host = format!("europe-west1-127.0.0.1:{port}");
    let target = format!("http://{host}{RUN}/services/pegasus-api?alt=json");
    let (status, service) = http(fake.addr, "GET", &target, &host, None).await;
    assert_eq!(status, 200, "{service}");
    assert_eq!(service["status"]["traffic"][0]["revisionName"], "pegasus-api-00003-zt4");
    assert_eq!(service["status"]["conditions"][0]["status"], "True");
    assert_eq!(service["metadata"]["generation"], service["status"]["observedGeneration"]);
    // The same service asked for in another region does not exist.
    let host = format!("us-central1-127.0.0.1:{port}");
    let target = format!("http://{host}{RUN}/services/pegasus-api");
    assert_eq!(http(fake.addr, "GET", &target, &host, None).await.0, 404);

    let (status, error) = get(&fake, &format!("{SQL}/instances/no-such-db")).await;
    assert_eq!(status, 404);
    assert_eq!(error["error"]["code"], 404);
    assert_eq!(error["error"]["status"], "NOT_FOUND");
    assert_eq!(error["error"]["message"], "The Cloud SQL instance does not exist.");

    let (status, _) = http(fake.addr, "CONNECT", &format!("127.0.0.1:{port}"), "127.0.0.1", None).await;
    assert_eq!(status, 501, "CONNECT means an https endpoint, which the fake cannot serve");

    let log = fake.requests();
    assert_eq!(log.len(), 4, "admin calls and CONNECT are not logged: {log:?}");
    assert_eq!(log[1].host, format!("europe-west1-127.0.0.1:{port}"));
    assert_eq!(log[1].path, format!("{RUN}/services/pegasus-api"));
    assert_eq!(log[1].query.get("alt").map(String::as_str), Some("json"));
    assert_eq!((log[2].status, log[3].status), (404, 404));
}

#[tokio::test]
async fn operations_progress_over_polls_and_apply_their_effect_when_done() {
    let fake = fake(Scenario { operation_polls: 3, ..Scenario::pegasus() }).await;
    let at = chrono::Utc::now() - chrono::Duration::hours(1);
    let clone = json!({"cloneContext": {"destinationInstanceName": "pegasus-db-eu-rollback", "pointInTime": scenario::timestamp(at)}});
    let (status, op) = post(&fake, &format!("{SQL}/instances/pegasus-db-eu/clone"), &clone).await;
    assert_eq!((status, op["status"].as_str()), (200, Some("PENDING")), "{op}");
    let name = op["name"].as_str().unwrap_or_default().to_string();
    let path = format!("{SQL}/operations/{name}");
    // As in Cloud SQL, the clone's instance exists while its clone runs: PENDING_CREATE, with
    // no address yet (proto3 leaves the empty list out), and its name is taken.
    let (status, pending) = get(&fake, &format!("{SQL}/instances/pegasus-db-eu-rollback")).await;
    assert_eq!((status, pending["state"].as_str()), (200, Some("PENDING_CREATE")), "{pending}");
    assert!(pending.get("ipAddresses").is_none(), "{pending}");
    assert!(pending["createTime"].is_string(), "{pending}");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (_, op) = get(&fake, &path).await;
        seen.push(op["status"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(seen, ["PENDING", "RUNNING", "DONE"]);
    let state = fake.state();
    let clone = &prod(&state).instances["pegasus-db-eu-rollback"];
    assert_eq!(clone.ip_addresses[0].ip_address, "10.20.0.100");
    assert_eq!(clone.cloned_from.as_ref().and_then(|c| c.point_in_time.clone()), Some(scenario::timestamp(at)));
    // The name is taken now, and the instance shows up in the listing.
    let (status, _) = post(
        &fake,
        &format!("{SQL}/instances/pegasus-db-eu/clone"),
        &json!({"cloneContext": {"destinationInstanceName": "pegasus-db-eu-rollback"}}),
    )
    .await;
    assert_eq!(status, 409);
    let (_, list) = get(&fake, &format!("{SQL}/instances")).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));

    // A failing operation: DONE with an error, and no instance.
    fake.set_faults(Faults {
        operations: vec![OperationFault {
            operation_type: Some("CLONE".into()),
            polls: Some(1),
            error: Some(OperationError { code: "ERROR_RDBMS".into(), message: "disk full".into() }),
            ..OperationFault::default()
        }],
        ..Faults::default()
    });
    let request = json!({"cloneContext": {"destinationInstanceName": "second"}});
    let (_, op) = post(&fake, &format!("{SQL}/instances/pegasus-db-eu/clone"), &request).await;
    let (_, op) = get(&fake, &format!("{SQL}/operations/{}", op["name"].as_str().unwrap_or_default())).await;
    assert_eq!(op["status"], "DONE");
    assert_eq!(op["error"]["errors"][0]["code"], "ERROR_RDBMS");
    assert!(!prod(&fake.state()).instances.contains_key("second"));

    // Point-in-time checks: the future, and beyond the retention window.
    for at in [chrono::Utc::now() + chrono::Duration::hours(1), chrono::Utc::now() - chrono::Duration::days(8)] {
        let request =
            json!({"cloneContext": {"destinationInstanceName": "third", "pointInTime": scenario::timestamp(at)}});
        let (status, error) = post(&fake, &format!("{SQL}/instances/pegasus-db-eu/clone"), &request).await;
        assert_eq!(status, 400, "{error}");
    }
    let (_, ops) = get(&fake, &format!("{SQL}/operations?instance=pegasus-db-eu")).await;
    assert_eq!(ops["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn http_faults_count_down_and_can_be_set_over_the_admin_api() {
    let fake = fake(Scenario::pegasus()).await;
    let faults = json!({"http_errors": [{"path_contains": "/backupRuns", "times": 2, "status": 500}]});
    let (status, echoed) = post(&fake, "/__fake/faults", &faults).await;
    assert_eq!((status, &echoed["http_errors"][0]["times"]), (200, &json!(2)));
    let path = format!("{SQL}/instances/pegasus-db-eu/backupRuns");
    let statuses: Vec<u16> = [get(&fake, &path).await.0, get(&fake, &path).await.0, get(&fake, &path).await.0].into();
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(get(&fake, &format!("{SQL}/instances/pegasus-db-eu")).await.0, 200, "other paths are not affected");
    let (_, faults) = get(&fake, "/__fake/faults").await;
    assert_eq!(faults["http_errors"][0]["times"], 0);

    let (_, requests) = get(&fake, "/__fake/requests").await;
    assert_eq!(requests.as_array().map(Vec::len), Some(4));
    assert_eq!(requests[0]["status"], 500);
    let (_, state) = get(&fake, "/__fake/state").await;
    assert_eq!(state["projects"]["delta-student-486911-n5"]["instances"]["pegasus-db-eu"]["state"], "RUNNABLE");
    assert!(state["operations"].is_array());
    assert_eq!(http(fake.addr, "DELETE", "/__fake/requests", "x", None).await.0, 200);
    assert!(fake.requests().is_empty());

    // Replace the whole scenario: an empty world has no instance.
    assert_eq!(post(&fake, "/__fake/scenario", &json!({"projects": {"p": {"number": "1"}}})).await.0, 200);
    assert_eq!(get(&fake, &format!("{SQL}/instances/pegasus-db-eu")).await.0, 404);
    assert_eq!(post(&fake, "/__fake/faults", &json!({"nonsense": 1})).await.0, 400);
}

#[tokio::test]
async fn hangs_hold_the_answer_and_end_at_shutdown() {
    let fake = fake(Scenario::pegasus()).await;
    fake.set_faults(Faults {
        hangs: vec![
            HangFault {
                method: None,
                path_contains: Some("versions/2".into()),
                times: 1,
                seconds: Some(0.3),
                after: false,
            },
            HangFault { method: None, path_contains: Some("/services/".into()), times: 1, seconds: None, after: false },
        ],
        ..Faults::default()
    });
    let started = Instant::now();
    let (status, version) = get(&fake, &format!("{SECRETS}/pegasus-db-url/versions/2:access")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(STANDARD.decode(version["payload"]["data"].as_str().unwrap_or_default()).ok(), Some(PROD_DB_URL.into()));

    let addr = fake.addr;
    let held = tokio::spawn(async move { http(addr, "GET", &format!("{RUN}/services/pegasus-api"), "x", None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the hang holds the request");
    fake.shutdown().await;
    let (status, _) = held.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 503, "shutdown answers held requests");
}

#[tokio::test]
async fn secret_versions_check_the_payload_checksum() {
    let fake = fake(Scenario::pegasus()).await;
    let data = b"postgresql://pegasus:pw@10.20.0.100:5432/pegasus";
    let body = |crc: u32| json!({"payload": {"data": STANDARD.encode(data), "dataCrc32c": crc.to_string()}});
    let (status, error) = post(&fake, &format!("{SECRETS}/pegasus-db-url:addVersion"), &body(crc32c(data) ^ 1)).await;
    assert_eq!(status, 400, "{error}");
    let (status, version) = post(&fake, &format!("{SECRETS}/pegasus-db-url:addVersion"), &body(crc32c(data))).await;
    assert_eq!(status, 200, "{version}");
    assert_eq!(version["name"], "projects/988514135894/secrets/pegasus-db-url/versions/3");
    assert_eq!(version["clientSpecifiedPayloadChecksum"], true);
    let (_, latest) = get(&fake, &format!("{SECRETS}/pegasus-db-url/versions/latest:access")).await;
    assert_eq!(latest["payload"]["dataCrc32c"], crc32c(data).to_string());
    assert_eq!(get(&fake, &format!("{SECRETS}/pegasus-db-url/versions/1:access")).await.0, 400, "v1 is disabled");
    assert_eq!(get(&fake, &format!("{SECRETS}/pegasus-db-url/versions/9:access")).await.0, 404);
    let (_, list) = get(&fake, &format!("{SECRETS}/pegasus-db-url/versions")).await;
    assert_eq!(list["versions"][0]["name"], "projects/988514135894/secrets/pegasus-db-url/versions/3");
}

// ---------------------------------------------------------------------------------------------
// The real gcloud

fn gcloud_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("gcloud").is_file()))
}

/// True when the test should return: gcloud is missing (said loudly). Under CI it must be there.
fn skip_without_gcloud(test: &str) -> bool {
    if gcloud_installed() {
        return false;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: gcloud is not installed, and CI is set: the gcloud rehearsal tests must run in CI");
    }
    // Straight to the stream: the test harness captures `eprintln!`, and this must be seen.
    let _ =
        writeln!(std::io::stderr(), "SKIP: gcloud not installed: {test} did not run the real gcloud against the fake");
    true
}

/// gcloud pointed at one fake, with its own configuration directory.
struct Gcloud {
    env: Vec<(String, String)>,
    _config: tempfile::TempDir,
}

#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    timed_out: bool,
}

/// Environment that would change what gcloud does, removed from what the tests inherit.
const INHERITED: [&str; 6] = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"];

impl Gcloud {
    fn new(fake: &Handle) -> Self {
        let config = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        prepare_config_dir(config.path()).unwrap_or_else(|e| panic!("gcloud config dir: {e}"));
        Self { env: gcloud_env(fake.addr, config.path()), _config: config }
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>, limit: Duration) -> Run {
        let mut command = tokio::process::Command::new("gcloud");
        command.args(args).kill_on_drop(true).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CLOUDSDK_") || INHERITED.contains(&key.as_ref()) {
                command.env_remove(key.as_ref());
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let started = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start gcloud: {e}"));
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.unwrap_or_else(|e| panic!("gcloud stdin: {e}"));
        }
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(output)) => Run {
                success: output.status.success(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                elapsed: started.elapsed(),
                timed_out: false,
            },
            Ok(Err(e)) => panic!("gcloud {args:?}: {e}"),
            // Dropping the child kills it.
            Err(_) => Run {
                success: false,
                stdout: String::new(),
                stderr: String::new(),
                elapsed: started.elapsed(),
                timed_out: true,
            },
        }
    }

    /// Run, require success, return stdout.
    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let run = self.run(args, stdin, Duration::from_secs(60)).await;
        assert!(run.success, "gcloud {} failed: {run:?}", args.join(" "));
        run.stdout
    }

    /// Run, require failure, return stderr.
    async fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let run = self.run(args, stdin, Duration::from_secs(60)).await;
        assert!(!run.success && !run.timed_out, "gcloud {} should have failed: {run:?}", args.join(" "));
        run.stderr
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn gcloud_runs_the_pitr_procedure() {
    if skip_without_gcloud("gcloud_runs_the_pitr_procedure") {
        return;
    }
    let fake = fake(Scenario::pegasus()).await;
    let gcloud = Gcloud::new(&fake);

    // pitr_enabled
    let format = "--format=value(settings.backupConfiguration.pointInTimeRecoveryEnabled,settings.backupConfiguration.binaryLogEnabled)";
    let enabled = gcloud.ok(&["sql", "instances", "describe", "pegasus-db-eu", PROD, format], None).await;
    assert!(enabled.contains("True"), "{enabled:?}");

    // clone_op, then clone_wait
    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let point_in_time = format!("--point-in-time={at}");
    let args = [
        "sql",
        "instances",
        "clone",
        "pegasus-db-eu",
        "pegasus-db-eu-rollback",
        &point_in_time,
        PROD,
        "--async",
        "--format=json",
    ];
    let operation = json_of(&gcloud.ok(&args, None).await);
    assert_eq!((&operation["operationType"], &operation["status"]), (&json!("CLONE"), &json!("PENDING")));
    let clone_request = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/instances/pegasus-db-eu/clone"))
        .unwrap_or_else(|| panic!("no clone request"));
    assert_eq!(clone_request.command.as_deref(), Some("gcloud.sql.instances.clone"));
    let context = &clone_request.body["cloneContext"];
    assert_eq!(context["destinationInstanceName"], "pegasus-db-eu-rollback");
    // gcloud sends the point in time with microseconds.
    assert_eq!(context["pointInTime"], format!("{}.000000Z", at.trim_end_matches('Z')));
    let name = operation["name"].as_str().unwrap_or_default();
    gcloud.ok(&["sql", "operations", "wait", name, PROD, "--timeout=unlimited"], None).await;
    let state = fake.state();
    let clone = prod(&state).instances.get("pegasus-db-eu-rollback").unwrap_or_else(|| panic!("no clone"));
    assert_eq!(clone.state, "RUNNABLE");
    assert_eq!(state.operations[0].polls, 2, "one poll by clone --async, one by operations wait");

    // new_ip
    let ip = gcloud
        .ok(
            &[
                "sql",
                "instances",
                "describe",
                "pegasus-db-eu-rollback",
                PROD,
                "--format=value(ipAddresses[0].ipAddress)",
            ],
            None,
        )
        .await;
    let ip = ip.trim();
    assert_eq!(ip, clone.ip_addresses[0].ip_address);
    assert_ne!(ip, "10.20.0.3");

    // current_db_url, then add_secret_version with the host replaced, on stdin
    let current = gcloud.ok(&["secrets", "versions", "access", "latest", "--secret=pegasus-db-url", PROD], None).await;
    assert_eq!(current, PROD_DB_URL, "gcloud prints the payload as it is, without a newline");
    let new_url = current.replace("@10.20.0.3:", &format!("@{ip}:"));
    gcloud.ok(&["secrets", "versions", "add", "pegasus-db-url", "--data-file=-", PROD], Some(&new_url)).await;
    let state = fake.state();
    let versions = &prod(&state).secrets["pegasus-db-url"].versions;
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[2].data, new_url.as_bytes(), "the new version holds exactly the new URL");
    let add = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/secrets/pegasus-db-url:addVersion"))
        .unwrap_or_else(|| panic!("no addVersion request"));
    let sent = STANDARD.decode(add.body["payload"]["data"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(sent, new_url.as_bytes());
    assert_eq!(
        add.body["payload"]["dataCrc32c"],
        crc32c(new_url.as_bytes()).to_string(),
        "gcloud sends the CRC32C as a string"
    );
}

#[tokio::test]
async fn gcloud_runs_the_snapshot_restore() {
    if skip_without_gcloud("gcloud_runs_the_snapshot_restore") {
        return;
    }
    let fake = fake(Scenario::pegasus()).await;
    let gcloud = Gcloud::new(&fake);

    // backups
    let list =
        json_of(&gcloud.ok(&["sql", "backups", "list", "--instance=pegasus-db-eu", PROD, "--format=json"], None).await);
    let backups = list.as_array().unwrap_or_else(|| panic!("not a list: {list}"));
    assert_eq!(backups.len(), 4);
    assert!(
        backups.windows(2).all(|w| w[0]["windowStartTime"].as_str() >= w[1]["windowStartTime"].as_str()),
        "newest first"
    );
    assert!(backups.iter().all(|b| b["id"].is_string()), "int64 ids stay strings, as the real API sends them");
    let chosen = backups
        .iter()
        .find(|b| b["status"] == "SUCCESSFUL")
        .and_then(|b| b["id"].as_str())
        .unwrap_or_else(|| panic!("no successful backup"));

    // restore_op, then restore_wait
    let restore_args = [
        "sql",
        "backups",
        "restore",
        chosen,
        "--restore-instance=pegasus-db-eu",
        PROD,
        "--async",
        "--format=json",
        "--quiet",
    ];
    let operation = json_of(&gcloud.ok(&restore_args, None).await);
    assert_eq!(operation["operationType"], "RESTORE_VOLUME");
    let name = operation["name"].as_str().unwrap_or_default();
    gcloud.ok(&["sql", "operations", "wait", name, PROD, "--timeout=unlimited"], None).await;
    let state = fake.state();
    let restores = &prod(&state).instances["pegasus-db-eu"].restores;
    assert_eq!(restores.len(), 1);
    assert_eq!(restores[0].backup_run_id.to_string(), chosen);
    assert_eq!(restores[0].backup_instance, "pegasus-db-eu");
}

#[tokio::test]
async fn gcloud_reverts_cloud_run_traffic() {
    if skip_without_gcloud("gcloud_reverts_cloud_run_traffic") {
        return;
    }
    let fake = fake(Scenario::pegasus()).await;
    let gcloud = Gcloud::new(&fake);

    // revisions
    let args = [
        "run",
        "revisions",
        "list",
        "--service=pegasus-api",
        "--region=europe-west1",
        PROD,
        "--limit=5",
        "--format=json",
    ];
    let list = json_of(&gcloud.ok(&args, None).await);
    let names: Vec<&str> =
        list.as_array().into_iter().flatten().filter_map(|r| r["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["pegasus-api-00003-zt4", "pegasus-api-00002-x9m", "pegasus-api-00001-k7q"]);
    let listing =
        fake.requests().into_iter().find(|r| r.path.ends_with("/revisions")).unwrap_or_else(|| panic!("no list"));
    assert_eq!(listing.host, format!("europe-west1-127.0.0.1:{}", fake.addr.port()), "regional host, via the proxy");
    assert_eq!(
        listing.query.get("labelSelector").map(String::as_str),
        Some("serving.knative.dev/service = pegasus-api")
    );

    // update_traffic
    let args = [
        "run",
        "services",
        "update-traffic",
        "pegasus-api",
        "--region=europe-west1",
        PROD,
        "--to-revisions=pegasus-api-00002-x9m=100",
    ];
    gcloud.ok(&args, None).await;
    let state = fake.state();
    let service = &prod(&state).services["pegasus-api"];
    let target = TrafficTarget {
        revision_name: Some("pegasus-api-00002-x9m".into()),
        percent: Some(100),
        latest_revision: None,
        tag: None,
    };
    assert_eq!(service.traffic, [target]);
    assert_eq!(service.generation, 4);
    let requests = fake.requests();
    let methods: Vec<&str> = requests.iter().skip(1).map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "PUT", "GET", "GET"], "read, replace, then poll until Ready");
}

/// `projects.timeSeries.list` as rollback.yaml's `error_rate` watch asks it: Cloud Run's request
/// count of one service, summed per response class over the interval.
fn time_series_query(service: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "filter",
            &format!("metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=\"{service}\""),
        )
        .append_pair("interval.startTime", "2025-06-15T14:00:00Z")
        .append_pair("interval.endTime", "2025-06-15T14:05:00Z")
        .append_pair("aggregation.alignmentPeriod", "300s")
        .append_pair("aggregation.perSeriesAligner", "ALIGN_DELTA")
        .append_pair("aggregation.crossSeriesReducer", "REDUCE_SUM")
        .append_pair("aggregation.groupByFields", "metric.label.response_code_class")
        .finish();
    format!("/v3/projects/delta-student-486911-n5/timeSeries?{query}")
}

/// The share of 5xx responses in a `ListTimeSeriesResponse`, its int64 values read as Google
/// sends them (JSON strings).
fn share_5xx(answer: &Value) -> f64 {
    let mut total = 0.0;
    let mut errors = 0.0;
    for series in answer["timeSeries"].as_array().into_iter().flatten() {
        for point in series["points"].as_array().into_iter().flatten() {
            let count: f64 = point["value"]["int64Value"]
                .as_str()
                .unwrap_or_else(|| panic!("int64Value must be a JSON string: {point}"))
                .parse()
                .unwrap_or_else(|e| panic!("int64Value: {e}"));
            total += count;
            if series["metric"]["labels"]["response_code_class"] == "5xx" {
                errors += count;
            }
        }
    }
    assert!(total > 0.0, "no requests counted: {answer}");
    errors / total
}

#[tokio::test]
async fn monitoring_counts_follow_the_serving_revision_and_the_fault_keeps_them_high() {
    let fake = fake(Scenario::pegasus()).await;
    let (status, answer) = monitoring(&fake, &time_series_query("pegasus-api")).await;
    assert_eq!(status, 200, "{answer}");
    let series = &answer["timeSeries"][0];
    assert_eq!(series["metric"]["type"], "run.googleapis.com/request_count");
    assert_eq!(series["metricKind"], "DELTA");
    assert_eq!(series["valueType"], "INT64");
    assert_eq!(series["points"][0]["interval"]["endTime"], "2025-06-15T14:05:00Z", "the interval asked for");
    assert_eq!(
        series["resource"],
        json!({"type": "cloud_run_revision", "labels": {"project_id": "delta-student-486911-n5"}})
    );
    let classes: Vec<&str> = answer["timeSeries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["metric"]["labels"]["response_code_class"].as_str())
        .collect();
    assert_eq!(classes, ["2xx", "4xx", "5xx"]);
    assert!(share_5xx(&answer) > 0.2, "the newest revision serves: errors are high");

    // Traffic moved to the previous revision: errors are low.
    let mut scenario = Scenario::pegasus();
    let service = scenario
        .projects
        .get_mut("delta-student-486911-n5")
        .and_then(|p| p.services.get_mut("pegasus-api"))
        .unwrap_or_else(|| panic!("no service"));
    service.traffic = vec![TrafficTarget {
        revision_name: Some("pegasus-api-00002-x9m".into()),
        percent: Some(100),
        latest_revision: None,
        tag: None,
    }];
    let reverted = serde_json::to_value(&scenario).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(post(&fake, "/__fake/scenario", &reverted).await.0, 200);
    let (_, answer) = monitoring(&fake, &time_series_query("pegasus-api")).await;
    assert!(share_5xx(&answer) < 0.01, "after the revert: {answer}");

    // A rollback that did not help.
    let (status, _) = post(&fake, "/__fake/faults", &json!({"errors_stay_high": true})).await;
    assert_eq!(status, 200);
    let (_, answer) = monitoring(&fake, &time_series_query("pegasus-api")).await;
    assert!(share_5xx(&answer) > 0.2, "errors_stay_high: {answer}");

    // Another service, another metric: no data is an empty answer (proto3: `{}`).
    assert_eq!(monitoring(&fake, &time_series_query("no-such-service")).await, (200, json!({})));
    let other = time_series_query("pegasus-api").replace("request_count", "request_latencies");
    assert_eq!(monitoring(&fake, &other).await, (200, json!({})));
    // What Google refuses: no interval; a project the caller cannot see.
    let (status, answer) = monitoring(&fake, "/v3/projects/delta-student-486911-n5/timeSeries?filter=x").await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) =
        monitoring(&fake, &time_series_query("pegasus-api").replace("delta-student-486911-n5", "other")).await;
    assert_eq!(status, 403);
    // No access token, or not the one gcloud printed: 401, as Google answers.
    let (status, answer) = get(&fake, &time_series_query("pegasus-api")).await;
    assert_eq!((status, &answer["error"]["status"]), (401, &json!("UNAUTHENTICATED")), "{answer}");
    let wrong = "Authorization: Bearer ya29.someone-elses\r\n";
    let (status, _) = http_with(fake.addr, "GET", &time_series_query("pegasus-api"), "h", None, wrong).await;
    assert_eq!(status, 401);
}

/// The checks the real API makes on `projects.timeSeries.list`, answered as 400
/// INVALID_ARGUMENT in Google's error shape.
#[tokio::test]
async fn monitoring_refuses_what_the_real_api_refuses() {
    let fake = fake(Scenario::pegasus()).await;
    let query = time_series_query("pegasus-api");
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (from, to, why) in [
        (
            "interval.endTime=2025-06-15T14%3A05%3A00Z",
            format!("interval.endTime={}", soon.replace(':', "%3A")),
            "The end time must not be in the future",
        ),
        (
            "interval.startTime=2025-06-15T14%3A00%3A00Z",
            "interval.startTime=2025-06-15T14%3A06%3A00Z".to_owned(),
            "The start time must be before the end time",
        ),
        ("interval.endTime=2025-06-15T14%3A05%3A00Z", "interval.endTime=yesterday".to_owned(), "not an RFC 3339 time"),
        (
            "aggregation.alignmentPeriod=300s",
            "aggregation.alignmentPeriod=30s".to_owned(),
            "must be at least 60 seconds",
        ),
        (
            "aggregation.alignmentPeriod=300s",
            "aggregation.alignmentPeriod=".to_owned(),
            "an alignment period is required",
        ),
        ("aggregation.alignmentPeriod=300s", "aggregation.alignmentPeriod=5m".to_owned(), "google.protobuf.Duration"),
        ("ALIGN_DELTA", "ALIGN_SOMETIMES".to_owned(), "aggregation.per_series_aligner"),
        ("REDUCE_SUM", "REDUCE_NONE".to_owned(), "grouping needs a cross-series reducer"),
    ] {
        assert!(query.contains(from), "{from} not in {query}");
        let (status, answer) = monitoring(&fake, &query.replace(from, &to)).await;
        assert_eq!(status, 400, "{to}: {answer}");
        assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT", "{answer}");
        assert_eq!(answer["error"]["code"], 400, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{to}: {message}");
    }
    // A window of five minutes aligned per minute: five points, newest first, each a minute.
    let (status, answer) = monitoring(&fake, &query.replace("alignmentPeriod=300s", "alignmentPeriod=60s")).await;
    assert_eq!(status, 200, "{answer}");
    let ends: Vec<&str> = answer["timeSeries"][0]["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["interval"]["endTime"].as_str())
        .collect();
    assert_eq!(
        ends,
        [
            "2025-06-15T14:05:00Z",
            "2025-06-15T14:04:00Z",
            "2025-06-15T14:03:00Z",
            "2025-06-15T14:02:00Z",
            "2025-06-15T14:01:00Z"
        ]
    );
    assert_eq!(answer["timeSeries"][0]["points"][4]["interval"]["startTime"], "2025-06-15T14:00:00Z");
    // Summed without grouping: one series, its metric without labels (an empty map is left out).
    let (_, answer) =
        monitoring(&fake, &query.replace("&aggregation.groupByFields=metric.label.response_code_class", "")).await;
    assert_eq!(answer["timeSeries"].as_array().map(Vec::len), Some(1), "{answer}");
    assert_eq!(answer["timeSeries"][0]["metric"], json!({"type": "run.googleapis.com/request_count"}));
    assert_eq!(answer["timeSeries"][0]["points"][0]["value"]["int64Value"], "5000", "1000 a minute over 5 minutes");
}

#[tokio::test]
async fn gcloud_prints_the_fakes_access_token() {
    if skip_without_gcloud("gcloud_prints_the_fakes_access_token") {
        return;
    }
    let fake = fake(Scenario::pegasus()).await;
    let token = Gcloud::new(&fake).ok(&["auth", "print-access-token"], None).await;
    assert_eq!(token.trim(), ACCESS_TOKEN);
    assert!(fake.requests().is_empty(), "no account was looked up: {:?}", fake.requests());
}

/// Each fault, surfaced by the real gcloud; run side by side on one fake to keep the time down.
#[tokio::test]
async fn gcloud_surfaces_faults() {
    if skip_without_gcloud("gcloud_surfaces_faults") {
        return;
    }
    let mut scenario = Scenario::pegasus();
    scenario.faults = Faults {
        http_errors: vec![
            // Once: gcloud retries after about 2 s and succeeds.
            HttpErrorFault {
                method: None,
                path_contains: Some("latest:access".into()),
                status: 503,
                times: 1,
                message: None,
            },
            // Not retried: a 4xx surfaces at once. (A lasting 5xx does too, but only after gcloud's
            // 5 attempts with 2 + 4 + 8 + 16 s of back-off, too slow for a unit test.)
            HttpErrorFault {
                method: None,
                path_contains: Some("/backupRuns".into()),
                status: 403,
                times: 99,
                message: Some("The client is not authorized to make this request.".into()),
            },
        ],
        hangs: vec![HangFault {
            method: None,
            path_contains: Some("/revisions".into()),
            times: 1,
            seconds: None,
            after: false,
        }],
        operations: vec![
            OperationFault {
                operation_type: Some("CLONE".into()),
                instance: None,
                polls: None,
                error: Some(OperationError { code: "ERROR_RDBMS".into(), message: "Disk quota exceeded.".into() }),
            },
            OperationFault {
                operation_type: Some("RESTORE_VOLUME".into()),
                instance: None,
                polls: Some(3),
                error: None,
            },
        ],
        run_update_failure: Some("Revision 'pegasus-api-00001-k7q' is not ready to serve.".into()),
        drop_payload_checksum: true,
        omit_fields: Vec::new(),
        errors_stay_high: false,
    };
    let fake = fake(scenario).await;
    let gcloud = Gcloud::new(&fake);
    let started = Instant::now();

    let failed_clone = async {
        let at =
            (chrono::Utc::now() - chrono::Duration::hours(1)).format("--point-in-time=%Y-%m-%dT%H:%M:%SZ").to_string();
        let args = [
            "sql",
            "instances",
            "clone",
            "pegasus-db-eu",
            "pegasus-db-eu-rollback",
            &at,
            PROD,
            "--async",
            "--format=json",
        ];
        let operation = json_of(&gcloud.ok(&args, None).await);
        let name = operation["name"].as_str().unwrap_or_default().to_string();
        gcloud.fails(&["sql", "operations", "wait", &name, PROD, "--timeout=unlimited"], None).await
    };
    let slow_restore = async {
        let args = [
            "sql",
            "backups",
            "restore",
            "1",
            "--restore-instance=pegasus-db-eu",
            PROD,
            "--async",
            "--format=json",
            "--quiet",
        ];
        let missing_backup = gcloud.fails(&args, None).await;
        let id = prod(&fake.state()).instances["pegasus-db-eu"].backup_runs[0].id.to_string();
        let args = [
            "sql",
            "backups",
            "restore",
            &id,
            "--restore-instance=pegasus-db-eu",
            PROD,
            "--async",
            "--format=json",
            "--quiet",
        ];
        let operation = json_of(&gcloud.ok(&args, None).await);
        let name = operation["name"].as_str().unwrap_or_default().to_string();
        let wait = gcloud.run(&["sql", "operations", "wait", &name, PROD], None, Duration::from_secs(60)).await;
        (missing_backup, wait)
    };
    let missing_instance = gcloud.fails(&["sql", "instances", "describe", "pegasus-db-eu-rollback-2", PROD], None);
    let retried_access =
        gcloud.ok(&["secrets", "versions", "access", "latest", "--secret=pegasus-db-url", STAGING], None);
    let forbidden = gcloud.fails(&["sql", "backups", "list", "--instance=pegasus-db-eu", PROD, "--format=json"], None);
    let checksum_dropped =
        gcloud.fails(&["secrets", "versions", "add", "pegasus-db-url", "--data-file=-", PROD], Some("x"));
    let hung = gcloud.run(
        &["run", "revisions", "list", "--service=pegasus-api", "--region=europe-west1", PROD, "--format=json"],
        None,
        Duration::from_secs(4),
    );
    let failed_traffic = gcloud.fails(
        &[
            "run",
            "services",
            "update-traffic",
            "pegasus-api",
            "--region=europe-west1",
            PROD,
            "--to-revisions=pegasus-api-00001-k7q=100",
        ],
        None,
    );
    let (clone_error, (missing_backup, slow_wait), missing_instance, staging_url, forbidden, checksum, hung, traffic) = tokio::join!(
        failed_clone,
        slow_restore,
        missing_instance,
        retried_access,
        forbidden,
        checksum_dropped,
        hung,
        failed_traffic
    );
    let state = fake.state();

    assert!(clone_error.contains("[ERROR_RDBMS] Disk quota exceeded."), "{clone_error}");
    assert!(!prod(&state).instances.contains_key("pegasus-db-eu-rollback"), "a failed clone leaves no instance");

    assert!(missing_backup.contains("The backup run does not exist."), "{missing_backup}");
    assert!(slow_wait.success, "{slow_wait:?}");
    assert!(slow_wait.elapsed >= Duration::from_secs(3), "polled 1 s and 2 s apart: {slow_wait:?}");
    let restore = state.operations.iter().find(|op| op.operation_type == "RESTORE_VOLUME");
    assert_eq!(restore.map(|op| (op.polls, op.done)), Some((3, true)));

    assert!(missing_instance.contains("The Cloud SQL instance does not exist."), "{missing_instance}");

    assert_eq!(staging_url, "postgresql://pegasus:st4g1ng-pw@10.30.0.3:5432/pegasus?sslmode=require");
    let accesses = fake.requests().iter().filter(|r| r.path.ends_with("latest:access")).count();
    assert_eq!(accesses, 2, "the 503 was retried");

    assert!(forbidden.contains("The client is not authorized to make this request."), "{forbidden}");
    let listings = fake.requests().iter().filter(|r| r.path.ends_with("/backupRuns")).count();
    assert_eq!(listings, 1, "gcloud does not retry a 4xx");

    assert!(checksum.contains("payload data corruption may have occurred"), "{checksum}");

    assert!(hung.timed_out, "a hung request keeps gcloud waiting (no HTTP timeout by default): {hung:?}");

    assert!(traffic.contains("is not ready to serve"), "{traffic}");
    let service = &prod(&state).services["pegasus-api"];
    assert_eq!(service.traffic[0].latest_revision, Some(true), "traffic unchanged after a failed update");

    eprintln!("gcloud_surfaces_faults: {:?}", started.elapsed());
}

#[tokio::test]
#[ignore = "manual: serves Scenario::pegasus() (or $SIMULATE_SCENARIO) on $SIMULATE_PORT (18600) until killed"]
async fn serve_manually() {
    let port: u16 = std::env::var("SIMULATE_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(18600);
    let scenario = match std::env::var("SIMULATE_SCENARIO") {
        Ok(path) => Scenario::load(Path::new(&path)).unwrap_or_else(|e| panic!("{e}")),
        Err(_) => Scenario::pegasus(),
    };
    let handle = start_on(SocketAddr::from(([127, 0, 0, 1], port)), scenario).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("fake Google APIs on {}; gcloud environment:", handle.url());
    for (key, value) in gcloud_env(handle.addr, Path::new("/tmp/runbook-simulate-gcloud")) {
        eprintln!("export {key}={value}");
    }
    std::future::pending::<()>().await;
}
