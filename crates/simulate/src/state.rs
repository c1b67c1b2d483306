//! The fake's mutable state: the scenario as it stands, the Cloud SQL operations, the request log.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::scenario::{
    CloneOrigin, Faults, IpAddress, OperationError, RestoreRecord, Scenario, SqlInstance, timestamp,
};

/// Everything the fake knows; `GET /__fake/state` serves it as JSON (without the request log).
#[derive(Debug, Clone, Serialize)]
pub struct State {
    #[serde(flatten)]
    pub scenario: Scenario,
    /// Cloud SQL operations, oldest first.
    pub operations: Vec<SqlOperation>,
    /// API requests, oldest first (`GET /__fake/requests`).
    #[serde(skip)]
    pub requests: Vec<RequestRecord>,
    /// Where each step of a run began in `requests` (`POST /__fake/marks`), so the closing
    /// report can name the step that made each call: steps run one at a time.
    #[serde(skip)]
    pub marks: Vec<StepMark>,
    #[serde(skip)]
    next_operation: u64,
}

/// The whole state as saved with a rehearsal's run (`<state dir>/simulate/<run id>.json`), so a
/// resumed rehearsal continues against the same operations, secrets and services.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub scenario: Scenario,
    pub operations: Vec<SqlOperation>,
    pub requests: Vec<RequestRecord>,
    #[serde(default)]
    pub marks: Vec<StepMark>,
    pub next_operation: u64,
}

/// A step of a run started when the fake had received `request` API requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMark {
    pub step: String,
    pub request: usize,
}

/// One API request as the fake received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    /// The `Host` (or the absolute URI's authority), e.g. `europe-west1-127.0.0.1:4321` for Cloud Run.
    pub host: String,
    /// The path, percent-decoded, e.g. `/sql/v1beta4/projects/p/instances/i/clone`.
    pub path: String,
    /// The decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The body: JSON when it parses, else a string; null when empty.
    pub body: Value,
    /// The gcloud command that sent it, from its user agent, e.g. `gcloud.sql.instances.clone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The HTTP status the fake answered with (0 while the request is still in flight).
    pub status: u16,
    /// The JSON body the fake answered with, as sent (default-valued fields left out).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub response: Value,
}

/// A Cloud SQL Admin operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlOperation {
    pub name: String,
    pub project: String,
    /// `CLONE` or `RESTORE_VOLUME`.
    pub operation_type: String,
    pub target_id: String,
    pub insert_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// `operations.get` calls so far.
    pub polls: u32,
    /// The call that answers DONE.
    pub polls_to_done: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
    pub done: bool,
    pub effect: OperationEffect,
}

/// What an operation does to the state once it is DONE without error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OperationEffect {
    Clone { source: String, destination: String, point_in_time: Option<String> },
    Restore { instance: String, backup_run_id: i64, backup_instance: String, backup_project: String },
}

impl SqlOperation {
    /// The API status: PENDING before the first poll answers, RUNNING in between, DONE at the end.
    pub fn status(&self) -> &'static str {
        if self.done {
            "DONE"
        } else if self.polls <= 1 {
            "PENDING"
        } else {
            "RUNNING"
        }
    }

    /// The operation as Cloud SQL Admin v1beta4 renders it.
    pub fn to_json(&self) -> Value {
        let base = "https://sqladmin.googleapis.com/sql/v1beta4/projects";
        let mut op = json!({
            "kind": "sql#operation",
            "name": self.name,
            "status": self.status(),
            "operationType": self.operation_type,
            "targetId": self.target_id,
            "targetProject": self.project,
            "targetLink": format!("{base}/{}/instances/{}", self.project, self.target_id),
            "selfLink": format!("{base}/{}/operations/{}", self.project, self.name),
            "insertTime": self.insert_time,
            "user": "runbook-simulate@example.com",
        });
        if self.status() != "PENDING" {
            op["startTime"] = json!(self.insert_time);
        }
        if let Some(end) = &self.end_time {
            op["endTime"] = json!(end);
        }
        if let (true, Some(error)) = (self.done, &self.error) {
            op["error"] = json!({
                "kind": "sql#operationErrors",
                "errors": [{"kind": "sql#operationError", "code": error.code, "message": error.message}],
            });
        }
        op
    }
}

impl State {
    pub fn new(scenario: Scenario) -> Self {
        Self { scenario, operations: Vec::new(), requests: Vec::new(), marks: Vec::new(), next_operation: 1 }
    }

    /// Everything, for saving with a rehearsal's run.
    pub fn save(&self) -> Saved {
        Saved {
            scenario: self.scenario.clone(),
            operations: self.operations.clone(),
            requests: self.requests.clone(),
            marks: self.marks.clone(),
            next_operation: self.next_operation,
        }
    }

    /// The state saved by [`State::save`].
    pub fn restore(saved: Saved) -> Self {
        Self {
            scenario: saved.scenario,
            operations: saved.operations,
            requests: saved.requests,
            marks: saved.marks,
            next_operation: saved.next_operation.max(1),
        }
    }

    /// A step starts: the requests from now on are its own.
    pub fn mark(&mut self, step: &str) {
        self.marks.push(StepMark { step: step.to_owned(), request: self.requests.len() });
    }

    pub fn faults_mut(&mut self) -> &mut Faults {
        &mut self.scenario.faults
    }

    /// Start a Cloud SQL operation; `instance` is the instance the request was made on.
    pub fn start_operation(
        &mut self,
        project: &str,
        operation_type: &str,
        instance: &str,
        effect: OperationEffect,
    ) -> SqlOperation {
        let fault = self
            .scenario
            .faults
            .operations
            .iter()
            .find(|f| {
                f.operation_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(operation_type))
                    && f.instance.as_deref().is_none_or(|i| i == instance)
            })
            .cloned()
            .unwrap_or_default();
        let n = self.next_operation;
        self.next_operation += 1;
        let mut operation = SqlOperation {
            name: format!("{:08x}-{:04x}-4{:03x}-8000-{:012x}", 0x5eed_0000_u64 + n, n & 0xffff, n & 0xfff, n),
            project: project.to_string(),
            operation_type: operation_type.to_string(),
            target_id: instance.to_string(),
            insert_time: timestamp(Utc::now()),
            end_time: None,
            polls: 0,
            polls_to_done: fault.polls.unwrap_or(self.scenario.operation_polls),
            error: fault.error,
            done: false,
            effect,
        };
        self.create_clone(project, &operation.name, &operation.effect);
        if operation.polls_to_done == 0 {
            self.finish(&mut operation);
        }
        self.operations.push(operation.clone());
        operation
    }

    /// Answer one `operations.get`: count the poll, finish the operation when its time has come.
    pub fn poll_operation(&mut self, project: &str, name: &str) -> Option<SqlOperation> {
        let index = self.operations.iter().position(|op| op.name == name && op.project == project)?;
        let mut operation = self.operations[index].clone();
        operation.polls += 1;
        if !operation.done && operation.polls >= operation.polls_to_done {
            self.finish(&mut operation);
        }
        self.operations[index] = operation.clone();
        Some(operation)
    }

    fn finish(&mut self, operation: &mut SqlOperation) {
        operation.done = true;
        operation.end_time = Some(timestamp(Utc::now()));
        if operation.error.is_none() {
            self.apply(operation);
        } else if let OperationEffect::Clone { destination, .. } = &operation.effect {
            // A clone that failed leaves no instance behind: the name is free again.
            if let Some((_, project)) = self.scenario.project_mut(&operation.project) {
                project.instances.remove(destination);
            }
        }
    }

    /// Cloud SQL creates a clone's instance when the clone starts: it is listed and described
    /// (state `PENDING_CREATE`, no address yet) while the operation runs.
    fn create_clone(&mut self, project: &str, operation: &str, effect: &OperationEffect) {
        let OperationEffect::Clone { source, destination, point_in_time } = effect else { return };
        let Some((_, p)) = self.scenario.project(project) else { return };
        let Some(source_instance) = p.instances.get(source) else { return };
        let clone = SqlInstance {
            state: "PENDING_CREATE".into(),
            ip_addresses: Vec::new(),
            create_time: timestamp(Utc::now()),
            backup_runs: Vec::new(),
            cloned_from: Some(CloneOrigin {
                instance: source.clone(),
                point_in_time: point_in_time.clone(),
                operation: operation.to_owned(),
            }),
            restores: Vec::new(),
            ..source_instance.clone()
        };
        if let Some((_, p)) = self.scenario.project_mut(project) {
            p.instances.insert(destination.clone(), clone);
        }
    }

    fn apply(&mut self, operation: &SqlOperation) {
        match &operation.effect {
            OperationEffect::Clone { source, destination, .. } => {
                // The clone exists since its operation started (PENDING_CREATE); now it runs
                // and has its address.
                let Some((_, project)) = self.scenario.project(&operation.project) else { return };
                let Some(source_instance) = project.instances.get(source) else { return };
                let address = IpAddress {
                    ip_address: free_ip(&self.scenario, source_instance),
                    kind: source_instance
                        .ip_addresses
                        .first()
                        .map_or_else(|| "PRIVATE".to_string(), |a| a.kind.clone()),
                };
                let clone = self
                    .scenario
                    .project_mut(&operation.project)
                    .and_then(|(_, project)| project.instances.get_mut(destination));
                if let Some(clone) = clone {
                    clone.state = "RUNNABLE".into();
                    clone.ip_addresses = vec![address];
                }
            }
            OperationEffect::Restore { instance, backup_run_id, backup_instance, .. } => {
                let target = self
                    .scenario
                    .project_mut(&operation.project)
                    .and_then(|(_, project)| project.instances.get_mut(instance));
                if let Some(target) = target {
                    target.restores.push(RestoreRecord {
                        backup_run_id: *backup_run_id,
                        backup_instance: backup_instance.clone(),
                        operation: operation.name.clone(),
                    });
                }
            }
        }
    }
}

/// An address for a new clone: the source's first address with the host part counted up from 100,
/// skipping any address already in use.
fn free_ip(scenario: &Scenario, source: &SqlInstance) -> String {
    let network = source
        .ip_addresses
        .first()
        .and_then(|a| a.ip_address.rsplit_once('.'))
        .map_or_else(|| "10.99.0".to_string(), |(net, _)| net.to_string());
    let used: Vec<&str> = scenario
        .projects
        .values()
        .flat_map(|p| p.instances.values())
        .flat_map(|i| i.ip_addresses.iter().map(|a| a.ip_address.as_str()))
        .collect();
    (100..255)
        .map(|host| format!("{network}.{host}"))
        .find(|ip| !used.contains(&ip.as_str()))
        .unwrap_or_else(|| format!("{network}.254"))
}
