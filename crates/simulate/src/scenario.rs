//! The fake's world: projects with Cloud SQL instances, secrets and Cloud Run services, plus the
//! faults to inject. A `Scenario` is plain data (JSON or YAML); the server mutates it in place as
//! gcloud calls the APIs, so `GET /__fake/state` shows the same shape with the changes applied.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Everything the fake serves, and the faults it injects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Google Cloud projects by project id.
    pub projects: BTreeMap<String, Project>,
    /// How many `operations.get` calls a Cloud SQL operation needs to reach DONE: the first answers
    /// PENDING, later ones RUNNING, the n-th DONE. `clone --async` itself makes one such call, so the
    /// default 2 means `gcloud sql operations wait` sees DONE at its first poll. 0: DONE at once.
    pub operation_polls: u32,
    /// How many answers about a Cloud Run service after a replace, the replace's own included,
    /// report `Ready: Unknown` (gcloud polls until Ready). 0: the replace answers Ready at once.
    pub run_ready_polls: u32,
    /// Faults to inject; changeable at run time with `POST /__fake/faults`.
    pub faults: Faults,
}

impl Default for Scenario {
    fn default() -> Self {
        Self { projects: BTreeMap::new(), operation_polls: 2, run_ready_polls: 1, faults: Faults::default() }
    }
}

/// One Google Cloud project.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Project {
    /// The project number; Secret Manager and Cloud Run name resources with it.
    pub number: String,
    /// Cloud SQL instances by name.
    pub instances: BTreeMap<String, SqlInstance>,
    /// Secret Manager secrets by name.
    pub secrets: BTreeMap<String, Secret>,
    /// Cloud Run services by name.
    pub services: BTreeMap<String, RunService>,
}

/// A Cloud SQL instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlInstance {
    /// e.g. `POSTGRES_15`, `MYSQL_8_0`.
    pub database_version: String,
    pub region: String,
    pub zone: String,
    pub tier: String,
    /// `RUNNABLE`, `PENDING_CREATE`, `MAINTENANCE`, `FAILED`, ...
    pub state: String,
    pub ip_addresses: Vec<IpAddress>,
    /// settings.backupConfiguration.pointInTimeRecoveryEnabled (PostgreSQL, SQL Server).
    pub point_in_time_recovery_enabled: bool,
    /// settings.backupConfiguration.binaryLogEnabled (MySQL's form of PITR).
    pub binary_log_enabled: bool,
    /// How far back a point-in-time clone may reach.
    pub transaction_log_retention_days: u32,
    pub create_time: String,
    /// Backup runs, in any order (listed newest first).
    pub backup_runs: Vec<BackupRun>,
    /// Set by the fake on an instance a clone created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloned_from: Option<CloneOrigin>,
    /// Appended by the fake each time a backup is restored onto this instance.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restores: Vec<RestoreRecord>,
}

impl Default for SqlInstance {
    fn default() -> Self {
        Self {
            database_version: "POSTGRES_15".into(),
            region: "europe-west1".into(),
            zone: "europe-west1-b".into(),
            tier: "db-custom-2-7680".into(),
            state: "RUNNABLE".into(),
            ip_addresses: Vec::new(),
            point_in_time_recovery_enabled: true,
            binary_log_enabled: false,
            transaction_log_retention_days: 7,
            create_time: "2025-01-01T00:00:00.000Z".into(),
            backup_runs: Vec::new(),
            cloned_from: None,
            restores: Vec::new(),
        }
    }
}

/// One entry of `ipAddresses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpAddress {
    pub ip_address: String,
    /// `PRIMARY`, `PRIVATE` or `OUTGOING`.
    #[serde(rename = "type", default = "private")]
    pub kind: String,
}

fn private() -> String {
    "PRIVATE".into()
}

/// A Cloud SQL backup run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRun {
    pub id: i64,
    pub window_start_time: String,
    /// `SUCCESSFUL`, `FAILED`, `RUNNING`, ...
    #[serde(default = "successful")]
    pub status: String,
    /// `AUTOMATED` or `ON_DEMAND`.
    #[serde(rename = "type", default = "automated")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn successful() -> String {
    "SUCCESSFUL".into()
}

fn automated() -> String {
    "AUTOMATED".into()
}

/// Where a cloned instance came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneOrigin {
    pub instance: String,
    /// The `cloneContext.pointInTime` of the request, as sent.
    pub point_in_time: Option<String>,
    pub operation: String,
}

/// A backup restored onto an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRecord {
    pub backup_run_id: i64,
    pub backup_instance: String,
    pub operation: String,
}

/// A Secret Manager secret; version N is `versions[N - 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Secret {
    pub create_time: String,
    pub versions: Vec<SecretVersion>,
}

impl Default for Secret {
    fn default() -> Self {
        Self { create_time: "2025-01-01T00:00:00.000000Z".into(), versions: Vec::new() }
    }
}

/// One secret version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretVersion {
    /// The payload: a UTF-8 string, or `base64:` followed by standard base64 for other bytes.
    #[serde(with = "payload")]
    pub data: Vec<u8>,
    /// `ENABLED`, `DISABLED` or `DESTROYED`.
    #[serde(default = "enabled")]
    pub state: String,
    #[serde(default = "epoch")]
    pub create_time: String,
}

impl SecretVersion {
    pub fn new(data: impl Into<Vec<u8>>, create_time: String) -> Self {
        Self { data: data.into(), state: enabled(), create_time }
    }
}

fn enabled() -> String {
    "ENABLED".into()
}

fn epoch() -> String {
    "2025-01-01T00:00:00.000000Z".into()
}

mod payload {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(data) {
            Ok(text) if !text.starts_with("base64:") => serializer.serialize_str(text),
            _ => serializer.serialize_str(&format!("base64:{}", STANDARD.encode(data))),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.strip_prefix("base64:") {
            Some(encoded) => STANDARD.decode(encoded.trim()).map_err(serde::de::Error::custom),
            None => Ok(text.into_bytes()),
        }
    }
}

/// A Cloud Run service (knative `serving.knative.dev/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunService {
    pub region: String,
    pub url: String,
    pub create_time: String,
    /// Revisions, oldest first; the last one is the latest created (and ready) revision.
    pub revisions: Vec<Revision>,
    /// `spec.traffic`.
    pub traffic: Vec<TrafficTarget>,
    /// `metadata.generation`; a replace increments it.
    pub generation: i64,
    /// Reads left that answer `Ready: Unknown` after the last replace (set by the fake).
    pub pending_ready_polls: u32,
    /// The `Ready` condition's message when the last update failed (set by the fake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `spec.template` as gcloud last sent it; generated from the newest revision when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<serde_json::Value>,
}

impl Default for RunService {
    fn default() -> Self {
        Self {
            region: "europe-west1".into(),
            url: String::new(),
            create_time: "2025-01-01T00:00:00.000000Z".into(),
            revisions: Vec::new(),
            traffic: vec![TrafficTarget {
                revision_name: None,
                percent: Some(100),
                latest_revision: Some(true),
                tag: None,
            }],
            generation: 1,
            pending_ready_polls: 0,
            failed: None,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            template: None,
        }
    }
}

/// A Cloud Run revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    pub name: String,
    pub create_time: String,
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default = "yes")]
    pub ready: bool,
}

fn default_image() -> String {
    "europe-west1-docker.pkg.dev/example/app/api:latest".into()
}

fn yes() -> bool {
    true
}

/// A traffic target, as in knative's `TrafficTarget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Faults to inject (`faults` of a scenario, the body of `POST /__fake/faults`; docs/faults.md).
/// Request matchers (`method`, `path_contains`) are optional; absent means any.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer matching API requests with an HTTP error instead of serving them.
    pub http_errors: Vec<HttpErrorFault>,
    /// Hold matching API requests without answering.
    pub hangs: Vec<HangFault>,
    /// Change how new Cloud SQL operations (clone, restore) behave; the first match applies.
    pub operations: Vec<OperationFault>,
    /// Make the next Cloud Run service update end with `Ready: False` and this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_update_failure: Option<String>,
    /// Answer secret addVersion without `clientSpecifiedPayloadChecksum`, which gcloud reports as
    /// possible payload corruption.
    pub drop_payload_checksum: bool,
    /// Leave one optional field out of every response of a kind (`run.service`,
    /// `status.traffic[].percent`), as Google does for a field it did not fill in.
    pub omit_fields: Vec<OmitField>,
    /// Cloud Monitoring reports a high share of 5xx responses for Cloud Run services whatever
    /// revision serves: a rollback that did not bring the errors down.
    pub errors_stay_high: bool,
}

/// One field to leave out of every response of `kind`, at `path` (`[]`: each list element).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OmitField {
    /// The response kind: `sql.instance`, `sql.operation`, `sql.backupRun`, `secrets.version`,
    /// `secrets.access`, `run.service` or `run.revision`; list responses have it left out of
    /// each item.
    pub kind: String,
    /// The field's path inside that kind, names joined by `.`, `[]` after a list:
    /// `status.traffic[].percent`, `ipAddresses`, `metadata.creationTimestamp`.
    pub path: String,
    /// How many times the fake left the field out so far (counted by the fake).
    #[serde(default)]
    pub omitted: u32,
}

/// `times` matching requests get `status` (5xx: gcloud retries them with back-off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpErrorFault {
    /// Only requests with this HTTP method (`GET`, `POST`, `PUT`, ...); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Only requests whose path contains this text (e.g. `:addVersion`); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// The HTTP status to answer with, 400 to 599 (default 503).
    #[serde(default = "service_unavailable")]
    pub status: u16,
    /// How many requests still get the error; counts down (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// The error message in the answer (default: `Injected fault: HTTP <status> (fake).`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn service_unavailable() -> u16 {
    503
}

fn one() -> u32 {
    1
}

/// `times` matching requests hang for `seconds` (absent: until the fake shuts down), then are
/// served. gcloud has no HTTP timeout by default; with `core/http_timeout` set it retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HangFault {
    /// Only requests with this HTTP method; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Only requests whose path contains this text; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// How many requests still hang; counts down (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// How long to hold each, in seconds (0 or more); absent: until the fake shuts down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Serve the request first and hang on the answer: a reply lost after the change was made.
    #[serde(default)]
    pub after: bool,
}

/// Behaviour of new Cloud SQL operations that match `operation_type` (`CLONE`, `RESTORE_VOLUME`)
/// and `instance` (the instance the request was made on).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OperationFault {
    /// `CLONE` or `RESTORE_VOLUME`; absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_type: Option<String>,
    /// The instance the request was made on (a clone's source); absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Overrides `Scenario::operation_polls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polls: Option<u32>,
    /// The operation ends DONE with this error, and has no effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
}

/// An error in a finished Cloud SQL operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationError {
    /// The operation error's code (default `INTERNAL_ERROR`).
    #[serde(default = "internal_error")]
    pub code: String,
    /// Its message, which `gcloud sql operations wait` prints.
    #[serde(default = "internal_message")]
    pub message: String,
}

fn internal_error() -> String {
    "INTERNAL_ERROR".into()
}

fn internal_message() -> String {
    "An internal error occurred while processing the operation.".into()
}

/// An RFC 3339 timestamp with microseconds, as Google APIs print them.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Largest scenario file read: the bound of a runbook file (a scenario is a few pages).
pub const MAX_SCENARIO_BYTES: u64 = 16 << 20;

/// A scenario file's text: a regular file (checked before opening, since opening a FIFO
/// waits for a writer, and again on the handle opened with O_NONBLOCK, so a file swapped
/// for a FIFO in between cannot hang either), at most [`MAX_SCENARIO_BYTES`], UTF-8.
fn read_bounded(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if !std::fs::metadata(path).map_err(|e| e.to_string())?.is_file() {
        return Err("not a regular file".into());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| e.to_string())?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_SCENARIO_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(format!("larger than {} MiB; a scenario is much smaller", MAX_SCENARIO_BYTES >> 20));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))
}

impl Scenario {
    /// Read a scenario from YAML (JSON is YAML too).
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }

    /// Read a scenario file, YAML or JSON; its faults are checked too. Read like a runbook:
    /// a regular file only (a FIFO or a link to `/dev/zero` is refused at once, never waited
    /// on or read without end), at most [`MAX_SCENARIO_BYTES`].
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = read_bounded(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let scenario = Self::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        scenario.faults.validate().map_err(|e| format!("{}: faults.{e}", path.display()))?;
        Ok(scenario)
    }

    /// The Pegasus deployment of `runbooks/rollback.yaml`: its production and staging projects,
    /// each with the PostgreSQL instance (PITR on, a few backups), the `pegasus-db-url` secret and
    /// the API service with three revisions, 100% of traffic on the newest. Times are relative to
    /// now, so a point in time from the last hours lies inside the PITR window.
    pub fn pegasus() -> Self {
        let now = Utc::now();
        let mut projects = BTreeMap::new();
        projects.insert(
            "delta-student-486911-n5".to_string(),
            pegasus_project(now, "988514135894", "pegasus-db-eu", "10.20.0.3", "s3cr3t-pw", "pegasus-api"),
        );
        projects.insert(
            "delta-student-486911-n5-staging".to_string(),
            pegasus_project(
                now,
                "402817356120",
                "pegasus-db-eu-staging",
                "10.30.0.3",
                "st4g1ng-pw",
                "pegasus-api-staging",
            ),
        );
        Self { projects, ..Self::default() }
    }

    /// A project by id or number.
    pub fn project(&self, id_or_number: &str) -> Option<(&String, &Project)> {
        self.projects.iter().find(|(id, p)| id.as_str() == id_or_number || p.number == id_or_number)
    }

    pub fn project_mut(&mut self, id_or_number: &str) -> Option<(&String, &mut Project)> {
        self.projects.iter_mut().find(|(id, p)| id.as_str() == id_or_number || p.number == id_or_number)
    }
}

fn pegasus_project(
    now: DateTime<Utc>,
    number: &str,
    instance: &str,
    ip: &str,
    password: &str,
    service: &str,
) -> Project {
    let day = now.duration_trunc(Duration::days(1)).unwrap_or(now);
    let backup = |at: DateTime<Utc>, status: &str, kind: &str, description: Option<&str>| BackupRun {
        id: at.timestamp_millis(),
        window_start_time: timestamp(at),
        status: status.into(),
        kind: kind.into(),
        description: description.map(str::to_string),
    };
    let db = SqlInstance {
        ip_addresses: vec![IpAddress { ip_address: ip.into(), kind: "PRIVATE".into() }],
        create_time: timestamp(now - Duration::days(200)),
        backup_runs: vec![
            backup(day - Duration::days(3) + Duration::hours(2), "SUCCESSFUL", "AUTOMATED", None),
            backup(day - Duration::days(2) + Duration::hours(2), "FAILED", "AUTOMATED", None),
            backup(day - Duration::days(1) + Duration::hours(2), "SUCCESSFUL", "AUTOMATED", None),
            backup(now - Duration::hours(2), "SUCCESSFUL", "ON_DEMAND", Some("pre-deploy")),
        ],
        ..SqlInstance::default()
    };
    let old_ip = ip.rsplit_once('.').map(|(net, _)| format!("{net}.2")).unwrap_or_else(|| ip.to_string());
    let url = |host: &str, pw: &str| format!("postgresql://pegasus:{pw}@{host}:5432/pegasus?sslmode=require");
    let secret = Secret {
        create_time: timestamp(now - Duration::days(200)),
        versions: vec![
            SecretVersion {
                data: url(&old_ip, "0ld-pw").into_bytes(),
                state: "DISABLED".into(),
                create_time: timestamp(now - Duration::days(200)),
            },
            SecretVersion::new(url(ip, password), timestamp(now - Duration::days(30))),
        ],
    };
    let image = |tag: &str| format!("europe-west1-docker.pkg.dev/{number}/pegasus/api:{tag}");
    let revision = |n: u32, suffix: &str, age: Duration, tag: &str| Revision {
        name: format!("{service}-{n:05}-{suffix}"),
        create_time: timestamp(now - age),
        image: image(tag),
        ready: true,
    };
    let run = RunService {
        url: format!("https://{service}-988514135894.europe-west1.run.app"),
        create_time: timestamp(now - Duration::days(60)),
        revisions: vec![
            revision(1, "k7q", Duration::days(9), "v1.4.0"),
            revision(2, "x9m", Duration::days(3), "v1.5.0"),
            revision(3, "zt4", Duration::minutes(45), "v1.6.0"),
        ],
        generation: 3,
        ..RunService::default()
    };
    Project {
        number: number.into(),
        instances: BTreeMap::from([(instance.to_string(), db)]),
        secrets: BTreeMap::from([("pegasus-db-url".to_string(), secret)]),
        services: BTreeMap::from([(service.to_string(), run)]),
    }
}
