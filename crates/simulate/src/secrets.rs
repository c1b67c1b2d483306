//! Secret Manager API v1: `/v1/projects/{project}/secrets/...`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use chrono::Utc;
use serde_json::{Value, json};

use super::api::{ApiError, ApiRequest, ApiResult, int64, method_not_allowed};
use super::crc32c::crc32c;
use super::scenario::{Secret, SecretVersion, timestamp};
use super::state::State;

pub fn handle(state: &mut State, request: &ApiRequest, project: &str, rest: &[&str]) -> ApiResult {
    let Some((project_id, p)) = state.scenario.project(project) else {
        return Err(ApiError::new(403, format!("Permission denied on resource project {project} (fake).")));
    };
    let (project_id, number) = (project_id.clone(), p.number.clone());
    let get = request.method == "GET";
    let (last, verb) = match rest.last().map(|s| s.split_once(':')) {
        Some(Some((name, verb))) => (name, Some(verb)),
        _ => (rest.last().copied().unwrap_or_default(), None),
    };
    match (rest.len(), verb) {
        (1, None) if get => {
            let secret = secret(state, &project_id, &number, last)?;
            Ok(render_secret(&number, last, secret))
        }
        (1, Some("addVersion")) if request.method == "POST" => add_version(state, request, &project_id, &number, last),
        (2, None) if get && rest[1] == "versions" => {
            let secret = secret(state, &project_id, &number, rest[0])?;
            let versions: Vec<Value> = (1..=secret.versions.len())
                .rev()
                .filter_map(|n| secret.versions.get(n - 1).map(|v| render_version(&number, rest[0], n, v, None)))
                .collect();
            Ok(json!({"versions": versions, "totalSize": versions.len()}))
        }
        (3, verb) if get && rest[1] == "versions" => {
            let secret = secret(state, &project_id, &number, rest[0])?;
            let (n, version) = resolve_version(secret, &number, rest[0], last)?;
            match verb {
                None => Ok(render_version(&number, rest[0], n, version, None)),
                Some("access") => access(&number, rest[0], n, version),
                Some(_) => Err(method_not_allowed(request)),
            }
        }
        _ => Err(ApiError::not_found(format!("The fake has no Secret Manager API at {}", request.path))),
    }
}

fn secret<'a>(state: &'a State, project: &str, number: &str, name: &str) -> Result<&'a Secret, ApiError> {
    state.scenario.project(project).and_then(|(_, p)| p.secrets.get(name)).ok_or_else(|| {
        ApiError::not_found(format!("Secret [projects/{number}/secrets/{name}] not found or has no versions."))
    })
}

fn resolve_version<'a>(
    secret: &'a Secret,
    number: &str,
    name: &str,
    wanted: &str,
) -> Result<(usize, &'a SecretVersion), ApiError> {
    let found = if wanted == "latest" {
        secret.versions.iter().enumerate().rev().find(|(_, v)| v.state == "ENABLED").map(|(i, v)| (i + 1, v))
    } else {
        wanted.parse::<usize>().ok().and_then(|n| secret.versions.get(n.wrapping_sub(1)).map(|v| (n, v)))
    };
    found.ok_or_else(|| {
        ApiError::not_found(format!("Secret Version [projects/{number}/secrets/{name}/versions/{wanted}] not found."))
    })
}

fn render_secret(number: &str, name: &str, secret: &Secret) -> Value {
    json!({
        "name": format!("projects/{number}/secrets/{name}"),
        "replication": {"automatic": {}},
        "createTime": secret.create_time,
        "etag": format!("\"{}\"", secret.versions.len()),
    })
}

fn render_version(number: &str, name: &str, n: usize, version: &SecretVersion, checksum: Option<bool>) -> Value {
    let mut value = json!({
        "name": format!("projects/{number}/secrets/{name}/versions/{n}"),
        "createTime": version.create_time,
        "state": version.state,
        "replicationStatus": {"automatic": {}},
        "etag": format!("\"{n}\""),
    });
    if version.state == "DESTROYED" {
        value["destroyTime"] = json!(version.create_time);
    }
    if let Some(checksum) = checksum {
        value["clientSpecifiedPayloadChecksum"] = json!(checksum);
    }
    value
}

fn access(number: &str, name: &str, n: usize, version: &SecretVersion) -> ApiResult {
    if version.state != "ENABLED" {
        return Err(ApiError::new(
            400,
            format!("Secret Version [projects/{number}/secrets/{name}/versions/{n}] is in {} state.", version.state),
        )
        .with_status("FAILED_PRECONDITION", "failedPrecondition"));
    }
    Ok(json!({
        "name": format!("projects/{number}/secrets/{name}/versions/{n}"),
        "payload": {
            "data": STANDARD.encode(&version.data),
            "dataCrc32c": crc32c(&version.data).to_string(),
        },
    }))
}

fn add_version(state: &mut State, request: &ApiRequest, project: &str, number: &str, name: &str) -> ApiResult {
    secret(state, project, number, name)?;
    let payload = &request.body["payload"];
    let encoded = payload["data"].as_str().unwrap_or_default();
    let data = STANDARD
        .decode(encoded)
        .or_else(|_| URL_SAFE.decode(encoded))
        .map_err(|e| ApiError::invalid(format!("Invalid value at 'payload.data': not base64: {e}")))?;
    let checksum = int64(&payload["dataCrc32c"]);
    if let Some(sent) = checksum
        && sent != i64::from(crc32c(&data))
    {
        return Err(ApiError::invalid(
            "Checksum mismatch: the payload's dataCrc32c does not match the CRC32C of payload.data.",
        ));
    }
    let acknowledge = checksum.is_some() && !state.scenario.faults.drop_payload_checksum;
    let Some(secret) = state.scenario.project_mut(project).and_then(|(_, p)| p.secrets.get_mut(name)) else {
        return Err(ApiError::not_found(format!("Secret [projects/{number}/secrets/{name}] not found.")));
    };
    secret.versions.push(SecretVersion::new(data, timestamp(Utc::now())));
    let n = secret.versions.len();
    let version = &secret.versions[n - 1];
    Ok(render_version(number, name, n, version, Some(acknowledge)))
}
