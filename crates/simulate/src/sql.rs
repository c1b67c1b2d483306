//! Cloud SQL Admin API v1beta4: `/sql/v1beta4/projects/{project}/...`.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::api::{ApiError, ApiRequest, ApiResult, int64, method_not_allowed};
use super::scenario::{BackupRun, SqlInstance};
use super::state::{OperationEffect, State};

const BASE: &str = "https://sqladmin.googleapis.com/sql/v1beta4/projects";

pub fn handle(state: &mut State, request: &ApiRequest, project: &str, rest: &[&str]) -> ApiResult {
    let Some((project_id, _)) = state.scenario.project(project) else {
        return Err(ApiError::not_found(format!("The project {project} does not exist (fake).")));
    };
    let project_id = project_id.clone();
    let get = request.method == "GET";
    let post = request.method == "POST";
    match rest {
        ["instances"] if get => list_instances(state, &project_id),
        ["instances", name] if get => instance(state, &project_id, name).map(|i| render_instance(&project_id, name, i)),
        ["instances", name, "clone"] if post => clone(state, request, &project_id, name),
        ["instances", name, "restoreBackup"] if post => restore_backup(state, request, &project_id, name),
        ["instances", name, "backupRuns"] if get => list_backup_runs(state, &project_id, name),
        ["instances", name, "backupRuns", id] if get => {
            let instance = instance(state, &project_id, name)?;
            let run = find_backup_run(instance, id.parse().unwrap_or(-1))?;
            Ok(render_backup_run(&project_id, name, instance, run))
        }
        ["operations"] if get => list_operations(state, request, &project_id),
        ["operations", name] if get => {
            state.poll_operation(&project_id, name).map(|op| op.to_json()).ok_or_else(|| operation_not_found(name))
        }
        ["instances", ..] | ["operations", ..] => Err(method_not_allowed(request)),
        _ => Err(ApiError::not_found(format!("The fake has no Cloud SQL API at {}", request.path))),
    }
}

fn instance<'a>(state: &'a State, project: &str, name: &str) -> Result<&'a SqlInstance, ApiError> {
    state.scenario.project(project).and_then(|(_, p)| p.instances.get(name)).ok_or_else(|| {
        ApiError::not_found("The Cloud SQL instance does not exist.").with_status("NOT_FOUND", "instanceDoesNotExist")
    })
}

fn operation_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The Cloud SQL operation {name} does not exist."))
        .with_status("NOT_FOUND", "operationDoesNotExist")
}

fn find_backup_run(instance: &SqlInstance, id: i64) -> Result<&BackupRun, ApiError> {
    instance.backup_runs.iter().find(|b| b.id == id).ok_or_else(|| {
        ApiError::not_found("The backup run does not exist.").with_status("NOT_FOUND", "backupRunDoesNotExist")
    })
}

fn is_mysql(instance: &SqlInstance) -> bool {
    instance.database_version.starts_with("MYSQL")
}

pub fn render_instance(project: &str, name: &str, i: &SqlInstance) -> Value {
    let mut backup = json!({
        "kind": "sql#backupConfiguration",
        "enabled": true,
        "startTime": "02:00",
        "location": "eu",
        "pointInTimeRecoveryEnabled": i.point_in_time_recovery_enabled,
        "transactionLogRetentionDays": i.transaction_log_retention_days,
        "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 7},
        "transactionalLogStorageState": "CLOUD_STORAGE",
    });
    if is_mysql(i) || i.binary_log_enabled {
        backup["binaryLogEnabled"] = json!(i.binary_log_enabled);
    }
    let ips: Vec<Value> = i.ip_addresses.iter().map(|a| json!({"type": a.kind, "ipAddress": a.ip_address})).collect();
    json!({
        "kind": "sql#instance",
        "name": name,
        "project": project,
        "state": i.state,
        "databaseVersion": i.database_version,
        "region": i.region,
        "gceZone": i.zone,
        "backendType": "SECOND_GEN",
        "instanceType": "CLOUD_SQL_INSTANCE",
        "connectionName": format!("{project}:{}:{name}", i.region),
        "ipAddresses": ips,
        "createTime": i.create_time,
        "selfLink": format!("{BASE}/{project}/instances/{name}"),
        "serviceAccountEmailAddress": format!("p-{project}@gcp-sa-cloud-sql.iam.gserviceaccount.com"),
        "settings": {
            "kind": "sql#settings",
            "settingsVersion": "1",
            "tier": i.tier,
            "edition": "ENTERPRISE",
            "availabilityType": "ZONAL",
            "activationPolicy": "ALWAYS",
            "pricingPlan": "PER_USE",
            "dataDiskType": "PD_SSD",
            "dataDiskSizeGb": "10",
            "storageAutoResize": true,
            "ipConfiguration": {
                "ipv4Enabled": false,
                "privateNetwork": format!("projects/{project}/global/networks/default"),
            },
            "locationPreference": {"kind": "sql#locationPreference", "zone": i.zone},
            "backupConfiguration": backup,
        },
    })
}

fn list_instances(state: &State, project: &str) -> ApiResult {
    let items: Vec<Value> = state
        .scenario
        .project(project)
        .map(|(_, p)| p.instances.iter().map(|(name, i)| render_instance(project, name, i)).collect())
        .unwrap_or_default();
    Ok(json!({"kind": "sql#instancesList", "items": items}))
}

fn render_backup_run(project: &str, name: &str, instance: &SqlInstance, run: &BackupRun) -> Value {
    let start = DateTime::parse_from_rfc3339(&run.window_start_time).map(|t| t.with_timezone(&Utc)).ok();
    let later = |minutes| {
        start.map_or_else(
            || run.window_start_time.clone(),
            |s| super::scenario::timestamp(s + Duration::minutes(minutes)),
        )
    };
    let mut value = json!({
        "kind": "sql#backupRun",
        "id": run.id.to_string(),
        "instance": name,
        "status": run.status,
        "type": run.kind,
        "backupKind": "SNAPSHOT",
        "databaseVersion": instance.database_version,
        "location": "eu",
        "windowStartTime": run.window_start_time,
        "enqueuedTime": run.window_start_time,
        "startTime": later(1),
        "endTime": later(6),
        "selfLink": format!("{BASE}/{project}/instances/{name}/backupRuns/{}", run.id),
    });
    if let Some(description) = &run.description {
        value["description"] = json!(description);
    }
    if run.status == "FAILED" {
        value["error"] = json!({"kind": "sql#operationError", "code": "BACKUP_FAILED", "message": "Backup failed."});
    }
    value
}

fn list_backup_runs(state: &State, project: &str, name: &str) -> ApiResult {
    let instance = instance(state, project, name)?;
    let mut runs: Vec<&BackupRun> = instance.backup_runs.iter().collect();
    runs.sort_by(|a, b| b.window_start_time.cmp(&a.window_start_time).then(b.id.cmp(&a.id)));
    let items: Vec<Value> = runs.into_iter().map(|r| render_backup_run(project, name, instance, r)).collect();
    Ok(json!({"kind": "sql#backupRunsList", "items": items}))
}

fn list_operations(state: &State, request: &ApiRequest, project: &str) -> ApiResult {
    let wanted = request.query.get("instance");
    let items: Vec<Value> = state
        .operations
        .iter()
        .rev()
        .filter(|op| op.project == project && wanted.is_none_or(|w| *w == op.target_id))
        .map(|op| op.to_json())
        .collect();
    Ok(json!({"kind": "sql#operationsList", "items": items}))
}

fn clone(state: &mut State, request: &ApiRequest, project: &str, source: &str) -> ApiResult {
    let instance = instance(state, project, source)?;
    let context = &request.body["cloneContext"];
    let Some(destination) = context["destinationInstanceName"].as_str().filter(|d| !d.is_empty()) else {
        return Err(ApiError::invalid("Invalid request: cloneContext.destinationInstanceName is required."));
    };
    // The clone's instance exists from the moment its clone started (PENDING_CREATE).
    let taken = state.scenario.project(project).is_some_and(|(_, p)| p.instances.contains_key(destination));
    if taken {
        return Err(ApiError::new(409, "The Cloud SQL instance already exists.")
            .with_status("ALREADY_EXISTS", "instanceAlreadyExists"));
    }
    let point_in_time = match (context["pointInTime"].as_str(), int64(&context["pitrTimestampMs"])) {
        (Some(text), _) => Some(text.to_string()),
        (None, Some(ms)) => DateTime::from_timestamp_millis(ms).map(super::scenario::timestamp),
        (None, None) => None,
    };
    if let Some(text) = &point_in_time {
        check_point_in_time(instance, text)?;
    }
    let operation = state.start_operation(
        project,
        "CLONE",
        source,
        OperationEffect::Clone { source: source.into(), destination: destination.into(), point_in_time },
    );
    Ok(operation.to_json())
}

fn check_point_in_time(instance: &SqlInstance, text: &str) -> Result<(), ApiError> {
    if !instance.point_in_time_recovery_enabled && !instance.binary_log_enabled {
        return Err(ApiError::invalid(
            "Invalid request: Point-in-time recovery is not enabled on the source instance.",
        ));
    }
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| ApiError::invalid(format!("Invalid request: invalid pointInTime {text:?}: {e}.")))?
        .with_timezone(&Utc);
    let now = Utc::now();
    if at > now {
        return Err(ApiError::invalid(format!("Invalid request: the point in time {text} is in the future.")));
    }
    let window = Duration::days(i64::from(instance.transaction_log_retention_days));
    if at < now - window {
        return Err(ApiError::invalid(format!(
            "Invalid request: the point in time {text} is outside the transaction log retention window of {} days.",
            instance.transaction_log_retention_days
        )));
    }
    Ok(())
}

fn restore_backup(state: &mut State, request: &ApiRequest, project: &str, name: &str) -> ApiResult {
    instance(state, project, name)?;
    let context = &request.body["restoreBackupContext"];
    if context.is_null() {
        return Err(ApiError::invalid(
            "Invalid request: the fake supports restoreBackupContext (restore by backup run id) only.",
        ));
    }
    let Some(backup_run_id) = int64(&context["backupRunId"]) else {
        return Err(ApiError::invalid("Invalid request: restoreBackupContext.backupRunId is required."));
    };
    let backup_instance = context["instanceId"].as_str().unwrap_or(name).to_string();
    let backup_project = context["project"].as_str().unwrap_or(project).to_string();
    let source = instance(state, &backup_project, &backup_instance)?;
    let run = find_backup_run(source, backup_run_id)?;
    if run.status != "SUCCESSFUL" {
        return Err(ApiError::invalid(format!(
            "Invalid request: backup run {backup_run_id} is {} and cannot be restored.",
            run.status
        )));
    }
    let operation = state.start_operation(
        project,
        "RESTORE_VOLUME",
        name,
        OperationEffect::Restore { instance: name.into(), backup_run_id, backup_instance, backup_project },
    );
    Ok(operation.to_json())
}
