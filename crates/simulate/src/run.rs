//! Cloud Run, knative flavour: `/apis/serving.knative.dev/v1/namespaces/{project}/...` on the
//! regional host (`europe-west1-127.0.0.1:PORT` once gcloud has prefixed the region).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::api::{ApiError, ApiRequest, ApiResult, int64, method_not_allowed};
use super::scenario::{Revision, RunService, TrafficTarget};
use super::state::State;

const API_VERSION: &str = "serving.knative.dev/v1";

pub fn handle(state: &mut State, request: &ApiRequest, namespace: &str, rest: &[&str]) -> ApiResult {
    let Some((project_id, project)) = state.scenario.project(namespace) else {
        return Err(ApiError::new(403, format!("Permission denied on resource project {namespace} (fake).")));
    };
    let (project_id, number) = (project_id.clone(), project.number.clone());
    let region = request.region().map(str::to_string);
    let get = request.method == "GET";
    match rest {
        ["services"] if get => {
            let items: Vec<Value> = project
                .services
                .iter()
                .filter(|(_, s)| region.as_deref().is_none_or(|r| r == s.region))
                .map(|(name, s)| render_service(&number, name, s, &status(s, s.pending_ready_polls == 0)))
                .collect();
            Ok(json!({"apiVersion": API_VERSION, "kind": "ServiceList", "metadata": {}, "items": items}))
        }
        ["services", name] if get => {
            let service = service_mut(state, &project_id, region.as_deref(), name)?;
            let ready = answer_ready(service);
            Ok(render_service(&number, name, service, &status(service, ready)))
        }
        ["services", name] if request.method == "PUT" => replace_service(state, request, &project_id, &number, name),
        ["revisions"] if get => list_revisions(state, request, &project_id, &number, region.as_deref()),
        ["revisions", name] if get => project
            .services
            .iter()
            .filter(|(_, s)| region.as_deref().is_none_or(|r| r == s.region))
            .find_map(|(service_name, s)| {
                s.revisions.iter().find(|r| r.name == *name).map(|r| render_revision(&number, service_name, s, r))
            })
            .ok_or_else(|| not_found("REVISION", name, region.as_deref(), &project_id)),
        ["services", ..] | ["revisions", ..] => Err(method_not_allowed(request)),
        _ => Err(ApiError::not_found(format!("The fake has no Cloud Run API at {}", request.path))),
    }
}

fn not_found(kind: &str, name: &str, region: Option<&str>, project: &str) -> ApiError {
    ApiError::not_found(format!(
        "Resource '{name}' of kind '{kind}' in region '{}' in project '{project}' does not exist.",
        region.unwrap_or("-")
    ))
}

fn service_mut<'a>(
    state: &'a mut State,
    project: &str,
    region: Option<&str>,
    name: &str,
) -> Result<&'a mut RunService, ApiError> {
    state
        .scenario
        .project_mut(project)
        .and_then(|(_, p)| p.services.get_mut(name))
        .filter(|s| region.is_none_or(|r| r == s.region))
        .ok_or_else(|| not_found("SERVICE", name, region, project))
}

/// One answer about the service: `None` while it is still becoming ready (the answer counts down
/// `pending_ready_polls`), then `Some(true)` or `Some(false)` when the last update failed.
fn answer_ready(service: &mut RunService) -> bool {
    if service.pending_ready_polls > 0 {
        service.pending_ready_polls -= 1;
        return false;
    }
    true
}

/// The service's status block; `settled` false renders `Ready: Unknown`.
fn status(service: &RunService, settled: bool) -> Value {
    let latest = service.revisions.iter().rev().find(|r| r.ready).map(|r| r.name.clone());
    let created = service.revisions.last().map(|r| r.name.clone());
    let condition = |kind: &str, status: &str, message: Option<&str>| {
        let mut c = json!({"type": kind, "status": status, "lastTransitionTime": service.create_time});
        if let Some(message) = message {
            c["message"] = json!(message);
            c["reason"] = json!(if status == "False" { "RevisionFailed" } else { "Deploying" });
        }
        c
    };
    let (ready, message) = match (&service.failed, settled) {
        (_, false) => ("Unknown", Some("Routing traffic.")),
        (Some(message), true) => ("False", Some(message.as_str())),
        (None, true) => ("True", None),
    };
    let conditions = vec![
        condition("Ready", ready, message),
        condition("ConfigurationsReady", "True", None),
        condition("RoutesReady", ready, message),
    ];
    let traffic: Vec<Value> =
        service.traffic.iter().map(|t| render_traffic(t, latest.as_deref(), &service.url)).collect();
    json!({
        "observedGeneration": service.generation,
        "conditions": conditions,
        "latestReadyRevisionName": latest,
        "latestCreatedRevisionName": created,
        "traffic": traffic,
        "url": service.url,
        "address": {"url": service.url},
    })
}

/// A traffic target as the service's status reports it: the spec's form, with the latest
/// revision named and the tag's URL.
fn render_traffic(target: &TrafficTarget, latest: Option<&str>, url: &str) -> Value {
    let mut value = spec_traffic(target);
    if let (None, Some(true), Some(latest)) = (&target.revision_name, target.latest_revision, latest) {
        value["revisionName"] = json!(latest);
    }
    if let Some(tag) = &target.tag {
        value["url"] = json!(url.replacen("https://", &format!("https://{tag}---"), 1));
    }
    value
}

fn spec_traffic(target: &TrafficTarget) -> Value {
    let mut value = json!({});
    if let Some(name) = &target.revision_name {
        value["revisionName"] = json!(name);
    }
    if let Some(percent) = target.percent {
        value["percent"] = json!(percent);
    }
    if let Some(latest) = target.latest_revision {
        value["latestRevision"] = json!(latest);
    }
    if let Some(tag) = &target.tag {
        value["tag"] = json!(tag);
    }
    value
}

fn default_template(service: &RunService) -> Value {
    let image = service.revisions.last().map_or("", |r| r.image.as_str());
    json!({
        "metadata": {"annotations": {"autoscaling.knative.dev/maxScale": "10"}},
        "spec": {
            "containerConcurrency": 80,
            "timeoutSeconds": 300,
            "containers": [{
                "image": image,
                "ports": [{"name": "http1", "containerPort": 8080}],
                "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}},
            }],
        },
    })
}

fn resource_version(service: &RunService) -> String {
    format!("AAY{:08}", service.generation)
}

fn render_service(number: &str, name: &str, service: &RunService, status: &Value) -> Value {
    let mut labels = service.labels.clone();
    labels.insert("cloud.googleapis.com/location".into(), service.region.clone());
    let mut annotations = service.annotations.clone();
    annotations.entry("run.googleapis.com/ingress".into()).or_insert_with(|| "all".into());
    annotations.entry("serving.knative.dev/creator".into()).or_insert_with(|| "deployer@example.com".into());
    annotations.entry("serving.knative.dev/lastModifier".into()).or_insert_with(|| "deployer@example.com".into());
    if let Some(ingress) = annotations.get("run.googleapis.com/ingress").cloned() {
        annotations.insert("run.googleapis.com/ingress-status".into(), ingress);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": number,
            "selfLink": format!("/apis/{API_VERSION}/namespaces/{number}/services/{name}"),
            "uid": format!("00000000-0000-4000-8000-{:012x}", fnv(name)),
            "resourceVersion": resource_version(service),
            "generation": service.generation,
            "creationTimestamp": service.create_time,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "template": service.template.clone().unwrap_or_else(|| default_template(service)),
            "traffic": service.traffic.iter().map(spec_traffic).collect::<Vec<_>>(),
        },
        "status": status,
    })
}

fn render_revision(number: &str, service_name: &str, service: &RunService, revision: &Revision) -> Value {
    let generation = service.revisions.iter().position(|r| r.name == revision.name).map_or(1, |i| i + 1);
    let latest = service.revisions.iter().rev().find(|r| r.ready).map(|r| r.name.as_str());
    let serving = service.failed.is_none()
        && service.traffic.iter().any(|t| {
            t.percent.unwrap_or(0) > 0
                && (t.revision_name.as_deref() == Some(&revision.name)
                    || (t.latest_revision == Some(true) && latest == Some(&revision.name)))
        });
    let mut labels = BTreeMap::from([
        ("serving.knative.dev/service".to_string(), service_name.to_string()),
        ("serving.knative.dev/configuration".to_string(), service_name.to_string()),
        ("serving.knative.dev/configurationGeneration".to_string(), generation.to_string()),
        ("serving.knative.dev/serviceUid".to_string(), format!("00000000-0000-4000-8000-{:012x}", fnv(service_name))),
        ("cloud.googleapis.com/location".to_string(), service.region.clone()),
    ]);
    if serving {
        labels.insert("serving.knative.dev/route".into(), service_name.into());
    }
    let ready = if revision.ready { "True" } else { "False" };
    json!({
        "apiVersion": API_VERSION,
        "kind": "Revision",
        "metadata": {
            "name": revision.name,
            "namespace": number,
            "selfLink": format!("/apis/{API_VERSION}/namespaces/{number}/revisions/{}", revision.name),
            "uid": format!("00000000-0000-4000-9000-{:012x}", fnv(&revision.name)),
            "resourceVersion": format!("AAR{generation:08}"),
            "generation": 1,
            "creationTimestamp": revision.create_time,
            "labels": labels,
            "annotations": {"autoscaling.knative.dev/maxScale": "10", "serving.knative.dev/creator": "deployer@example.com"},
            "ownerReferences": [{
                "kind": "Configuration",
                "name": service_name,
                "uid": format!("00000000-0000-4000-a000-{:012x}", fnv(service_name)),
                "apiVersion": API_VERSION,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "containerConcurrency": 80,
            "timeoutSeconds": 300,
            "containers": [{
                "image": revision.image,
                "ports": [{"name": "http1", "containerPort": 8080}],
                "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}},
            }],
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": ready, "lastTransitionTime": revision.create_time},
                {"type": "Active", "status": if serving { "True" } else { "False" }, "lastTransitionTime": revision.create_time, "severity": "Info"},
                {"type": "ContainerHealthy", "status": ready, "lastTransitionTime": revision.create_time},
                {"type": "ResourcesAvailable", "status": ready, "lastTransitionTime": revision.create_time},
            ],
            "logUrl": format!("https://console.cloud.google.com/logs/viewer?project={number}&resource=cloud_run_revision/service_name/{service_name}/revision_name/{}", revision.name),
            "imageDigest": format!("{}@sha256:{:064x}", revision.image.split(':').next().unwrap_or_default(), fnv(&revision.image)),
            "serviceName": service_name,
        },
    })
}

fn list_revisions(state: &State, request: &ApiRequest, project: &str, number: &str, region: Option<&str>) -> ApiResult {
    let Some((_, p)) = state.scenario.project(project) else {
        return Err(not_found("PROJECT", project, region, project));
    };
    // gcloud sends `serving.knative.dev/service = NAME`; a selector on another label matches nothing here.
    let wanted_service = match request.query.get("labelSelector") {
        None => None,
        Some(selector) => match selector.split_once('=') {
            Some((key, value)) if key.trim() == "serving.knative.dev/service" => Some(value.trim().to_string()),
            _ => Some(String::new()),
        },
    };
    let mut items: Vec<(&str, &String, &RunService, &Revision)> = p
        .services
        .iter()
        .filter(|(name, s)| {
            region.is_none_or(|r| r == s.region) && wanted_service.as_deref().is_none_or(|w| w == name.as_str())
        })
        .flat_map(|(name, s)| s.revisions.iter().map(move |r| (r.create_time.as_str(), name, s, r)))
        .collect();
    items.sort_by(|a, b| b.0.cmp(a.0).then_with(|| b.3.name.cmp(&a.3.name)));
    let start = request.query.get("continue").and_then(|c| c.parse::<usize>().ok()).unwrap_or(0);
    let limit =
        request.query.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let page: Vec<Value> = items
        .iter()
        .skip(start)
        .take(limit)
        .map(|(_, name, service, revision)| render_revision(number, name, service, revision))
        .collect();
    let mut metadata = json!({"resourceVersion": "AAR00000001", "selfLink": format!("/apis/{API_VERSION}/namespaces/{number}/revisions")});
    if start.saturating_add(page.len()) < items.len() {
        metadata["continue"] = json!((start + page.len()).to_string());
    }
    Ok(json!({"apiVersion": API_VERSION, "kind": "RevisionList", "metadata": metadata, "items": page}))
}

fn replace_service(state: &mut State, request: &ApiRequest, project: &str, number: &str, name: &str) -> ApiResult {
    let region = request.region().map(str::to_string);
    let ready_polls = state.scenario.run_ready_polls;
    let failure = state.scenario.faults.run_update_failure.take();
    let body = &request.body;
    let service = service_mut(state, project, region.as_deref(), name)?;
    if body["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::invalid(format!("metadata.name must be {name:?}")));
    }
    if let Some(sent) = body["metadata"]["resourceVersion"].as_str()
        && sent != resource_version(service)
    {
        return Err(ApiError::new(409, "The service has been modified since it was read; read it again and retry.")
            .with_status("ABORTED", "conflict"));
    }
    let traffic = parse_traffic(&body["spec"]["traffic"], service)?;
    service.generation += 1;
    service.annotations = string_map(&body["metadata"]["annotations"]);
    service.labels = string_map(&body["metadata"]["labels"]);
    service.labels.remove("cloud.googleapis.com/location");
    if body["spec"]["template"].is_object() {
        service.template = Some(body["spec"]["template"].clone());
    }
    service.failed = failure;
    if service.failed.is_none() {
        service.traffic = traffic;
    }
    service.pending_ready_polls = ready_polls;
    let ready = answer_ready(service);
    Ok(render_service(number, name, service, &status(service, ready)))
}

fn parse_traffic(value: &Value, service: &RunService) -> Result<Vec<TrafficTarget>, ApiError> {
    let Some(targets) = value.as_array() else { return Ok(service.traffic.clone()) };
    let mut parsed = Vec::new();
    for target in targets {
        let target = TrafficTarget {
            revision_name: target["revisionName"].as_str().map(str::to_string),
            percent: int64(&target["percent"]),
            latest_revision: target["latestRevision"].as_bool(),
            tag: target["tag"].as_str().map(str::to_string),
        };
        if let Some(name) = &target.revision_name
            && !service.revisions.iter().any(|r| r.name == *name)
        {
            return Err(ApiError::invalid(format!(
                "Revision named '{name}' with traffic percentage {} is not found.",
                target.percent.unwrap_or(0)
            )));
        }
        parsed.push(target);
    }
    let total: i64 = parsed.iter().filter_map(|t| t.percent).sum();
    if total != 100 {
        return Err(ApiError::invalid(format!("Traffic percentages must add up to 100, not {total}.")));
    }
    Ok(parsed)
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

/// A stable hash for made-up uids and digests.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        & 0xffff_ffff_ffff
}
