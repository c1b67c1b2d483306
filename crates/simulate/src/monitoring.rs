//! Cloud Monitoring v3, the one call `runbooks/rollback.yaml` makes: `projects.timeSeries.list`
//! (`GET /v3/projects/{project}/timeSeries`) for `run.googleapis.com/request_count` of a Cloud
//! Run service, aligned per period (`ALIGN_DELTA`) and summed per `response_code_class`.
//!
//! The request is checked as the real API checks it: an OAuth access token (the one gcloud
//! prints in a rehearsal, [`super::ACCESS_TOKEN`]; else 401 UNAUTHENTICATED), a filter and an `interval.endTime` are
//! required, times are RFC 3339, the end may not lie in the future nor the start after the end,
//! an aligner other than `ALIGN_NONE` needs an `alignmentPeriod` of at least 60 s, enum values
//! must be known ones, `groupByFields` needs a reducer. Refusals are 400 INVALID_ARGUMENT in
//! Google's error shape.
//!
//! The numbers follow the fake's Cloud Run state: while the newest revision (the bad deploy)
//! serves any traffic, a large share of the requests answer 5xx; once traffic moved to older
//! revisions only, almost none do. The fault `errors_stay_high` keeps the share high whatever
//! serves (a rollback that did not help). The fake has no history: every point of the interval
//! shows the state it is in now (one point per alignment period, newest first, as Google orders
//! them).
//!
//! The answer is shaped as `ListTimeSeriesResponse` (gcloud's `monitoring_v3_messages.py`):
//! `timeSeries` of `TimeSeries` (`metric`, `resource`, `metricKind`, `valueType`, `points`,
//! `unit`), each point a `TimeInterval` and a `TypedValue` whose `int64Value` is a JSON string
//! (proto3 JSON of an int64); fields at their default are left out (no data: `{}`).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::api::{ApiError, ApiRequest, ApiResult, method_not_allowed};
use super::scenario::RunService;
use super::state::State;

const REQUEST_COUNT: &str = "run.googleapis.com/request_count";

/// Requests per class in one minute while the bad revision serves (36.7% 5xx).
const BAD: &[(&str, i64)] = &[("2xx", 612), ("4xx", 21), ("5xx", 367)];
/// And once traffic is back on a good revision (0.3% 5xx).
const GOOD: &[(&str, i64)] = &[("2xx", 972), ("4xx", 25), ("5xx", 3)];

/// Most points one series carries (the real API pages beyond its own limits; a rehearsal asks
/// for a few minutes).
const MAX_POINTS: i64 = 1_000;

const ALIGNERS: &[&str] = &[
    "ALIGN_NONE",
    "ALIGN_DELTA",
    "ALIGN_RATE",
    "ALIGN_INTERPOLATE",
    "ALIGN_NEXT_OLDER",
    "ALIGN_MIN",
    "ALIGN_MAX",
    "ALIGN_MEAN",
    "ALIGN_COUNT",
    "ALIGN_SUM",
    "ALIGN_STDDEV",
    "ALIGN_COUNT_TRUE",
    "ALIGN_COUNT_FALSE",
    "ALIGN_FRACTION_TRUE",
    "ALIGN_PERCENTILE_99",
    "ALIGN_PERCENTILE_95",
    "ALIGN_PERCENTILE_50",
    "ALIGN_PERCENTILE_05",
    "ALIGN_PERCENT_CHANGE",
];
const REDUCERS: &[&str] = &[
    "REDUCE_NONE",
    "REDUCE_MEAN",
    "REDUCE_MIN",
    "REDUCE_MAX",
    "REDUCE_SUM",
    "REDUCE_STDDEV",
    "REDUCE_COUNT",
    "REDUCE_COUNT_TRUE",
    "REDUCE_COUNT_FALSE",
    "REDUCE_FRACTION_TRUE",
    "REDUCE_PERCENTILE_99",
    "REDUCE_PERCENTILE_95",
    "REDUCE_PERCENTILE_50",
    "REDUCE_PERCENTILE_05",
];

/// What the request asks for, checked.
struct Query {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// Seconds per point; `None`: raw points (`ALIGN_NONE` or no aligner).
    period: Option<i64>,
    rate: bool,
    /// A cross-series reducer applies (series summed).
    reduced: bool,
    by_class: bool,
}

pub fn handle(state: &State, request: &ApiRequest, project: &str, rest: &[&str]) -> ApiResult {
    if rest != ["timeSeries"] {
        return Err(ApiError::not_found(format!("The fake has no Cloud Monitoring API at {}", request.path)));
    }
    if request.method != "GET" {
        return Err(method_not_allowed(request));
    }
    // Cloud Monitoring wants an OAuth access token: the one gcloud prints in a rehearsal.
    if request.authorization.as_deref() != Some(&format!("Bearer {}", super::ACCESS_TOKEN)) {
        return Err(ApiError::new(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        ));
    }
    let Some((project_id, p)) = state.scenario.project(project) else {
        return Err(ApiError::new(403, format!("Permission denied on resource project {project} (fake).")));
    };
    let query = check(request, Utc::now())?;
    let filter = request.query.get("filter").map(String::as_str).unwrap_or_default();
    if quoted(filter, "metric.type").as_deref() != Some(REQUEST_COUNT) {
        // Another metric: the fake has no data for it, and an empty answer is what Google sends.
        return Ok(json!({}));
    }
    let wanted_service = quoted(filter, "resource.labels.service_name");
    let services: Vec<(&String, &RunService)> =
        p.services.iter().filter(|(name, _)| wanted_service.as_deref().is_none_or(|w| w == name.as_str())).collect();
    if services.is_empty() {
        return Ok(json!({}));
    }
    let high = state.scenario.faults.errors_stay_high || services.iter().any(|(_, s)| newest_serves(s));
    let counts = if high { BAD } else { GOOD };
    let series = |metric_labels: Value, resource_labels: Value, per_minute: i64| {
        // proto3 JSON: an empty map is left out.
        let metric = match metric_labels {
            Value::Null => json!({"type": REQUEST_COUNT}),
            labels => json!({"type": REQUEST_COUNT, "labels": labels}),
        };
        json!({
            "metric": metric,
            "resource": {"type": "cloud_run_revision", "labels": resource_labels},
            "metricKind": if query.rate { "GAUGE" } else { "DELTA" },
            "valueType": if query.rate { "DOUBLE" } else { "INT64" },
            "points": points(&query, per_minute),
            "unit": if query.rate { "1/s" } else { "1" },
        })
    };
    let all = i64::try_from(services.len()).unwrap_or(1);
    let time_series: Vec<Value> = if query.reduced && !query.by_class {
        vec![series(Value::Null, json!({"project_id": project_id}), counts.iter().map(|(_, c)| c * all).sum())]
    } else if query.by_class {
        // Summed across revisions and services: the resource keeps only what all share.
        counts
            .iter()
            .map(|(class, count)| {
                series(json!({"response_code_class": class}), json!({"project_id": project_id}), count * all)
            })
            .collect()
    } else {
        services
            .iter()
            .flat_map(|(name, service)| {
                let revision = serving_revision(service).unwrap_or_default();
                counts.iter().map(move |(class, count)| {
                    series(
                        json!({"response_code_class": class}),
                        json!({"project_id": project_id, "service_name": name, "revision_name": revision, "location": service.region, "configuration_name": name}),
                        *count,
                    )
                })
            })
            .collect()
    };
    Ok(json!({"timeSeries": time_series, "unit": if query.rate { "1/s" } else { "1" }}))
}

/// The query parameters as the real API checks them; `now` is the server's clock.
fn check(request: &ApiRequest, now: DateTime<Utc>) -> Result<Query, ApiError> {
    let get = |key: &str| request.query.get(key).map(String::as_str).filter(|v| !v.is_empty());
    if get("filter").is_none_or(|f| f.trim().is_empty()) {
        return Err(invalid("Field filter had an invalid value: a filter is required."));
    }
    let time = |field: &str, text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| invalid(&format!("Field {field} had an invalid value of \"{text}\": not an RFC 3339 time.")))
    };
    let Some(end_text) = get("interval.endTime") else {
        return Err(invalid("Field interval.endTime had an invalid value: an end time is required."));
    };
    let end = time("interval.endTime", end_text)?;
    let start = match get("interval.startTime") {
        Some(text) => time("interval.startTime", text)?,
        None => end,
    };
    if end > now {
        return Err(invalid(&format!(
            "Field interval.endTime had an invalid value of \"{end_text}\": The end time must not be in the future."
        )));
    }
    if start > end {
        return Err(invalid(&format!(
            "Field interval.startTime had an invalid value of \"{}\": The start time must be before the end time.",
            get("interval.startTime").unwrap_or_default()
        )));
    }
    let aligner = get("aggregation.perSeriesAligner").unwrap_or("ALIGN_NONE");
    if !ALIGNERS.contains(&aligner) {
        return Err(invalid(&format!("Invalid value at 'aggregation.per_series_aligner' (TYPE_ENUM), \"{aligner}\"")));
    }
    let reducer = get("aggregation.crossSeriesReducer").unwrap_or("REDUCE_NONE");
    if !REDUCERS.contains(&reducer) {
        return Err(invalid(&format!(
            "Invalid value at 'aggregation.cross_series_reducer' (TYPE_ENUM), \"{reducer}\""
        )));
    }
    let period = match (aligner, get("aggregation.alignmentPeriod")) {
        ("ALIGN_NONE", _) => None,
        (_, None) => {
            return Err(invalid(
                "Field aggregation.alignmentPeriod had an invalid value: an alignment period is required with a per-series aligner.",
            ));
        }
        (_, Some(text)) => {
            let seconds = text.strip_suffix('s').and_then(|n| n.parse::<f64>().ok()).filter(|n| n.is_finite());
            match seconds {
                #[allow(clippy::cast_possible_truncation)] // at least 60, at most 104 weeks
                Some(n) if (60.0..=62_899_200.0).contains(&n) => Some(n as i64),
                Some(_) => {
                    return Err(invalid(&format!(
                        "Field aggregation.alignmentPeriod had an invalid value of \"{text}\": The alignment period must be at least 60 seconds."
                    )));
                }
                None => {
                    return Err(invalid(&format!(
                        "Invalid value at 'aggregation.alignment_period' (type.googleapis.com/google.protobuf.Duration), \"{text}\""
                    )));
                }
            }
        }
    };
    if reducer != "REDUCE_NONE" && period.is_none() {
        return Err(invalid(
            "Field aggregation.perSeriesAligner had an invalid value of \"ALIGN_NONE\": a cross-series reducer needs a per-series aligner.",
        ));
    }
    // (Repeated `groupByFields` keep their last value: the fake's query map holds one.)
    let group = get("aggregation.groupByFields");
    if group.is_some() && reducer == "REDUCE_NONE" {
        return Err(invalid(
            "Field aggregation.groupByFields had an invalid value: grouping needs a cross-series reducer.",
        ));
    }
    Ok(Query {
        start,
        end,
        period,
        rate: aligner == "ALIGN_RATE",
        reduced: reducer != "REDUCE_NONE",
        by_class: reducer != "REDUCE_NONE" && group == Some("metric.label.response_code_class"),
    })
}

/// One point per alignment period ending at the interval's end, newest first (raw points: one
/// a minute, as Cloud Run writes them), each the count of a minute scaled to the period.
fn points(query: &Query, per_minute: i64) -> Vec<Value> {
    let step = query.period.unwrap_or(60);
    let span = (query.end - query.start).num_seconds();
    let count = ((span + step - 1) / step).clamp(1, MAX_POINTS);
    (0..count)
        .map(|k| {
            let end = query.end - chrono::Duration::seconds(k * step);
            let start = end - chrono::Duration::seconds(step);
            let total = per_minute * step / 60;
            let value = if query.rate {
                #[allow(clippy::cast_precision_loss)] // request counts, far below 2^53
                let rate = total as f64 / step as f64;
                json!({"doubleValue": rate})
            } else {
                json!({"int64Value": total.to_string()})
            };
            json!({"interval": {"startTime": rfc3339(start), "endTime": rfc3339(end)}, "value": value})
        })
        .collect()
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn invalid(message: &str) -> ApiError {
    ApiError::invalid(message)
}

/// Whether the newest revision (the deploy being rolled back) gets any traffic.
fn newest_serves(service: &RunService) -> bool {
    let Some(newest) = service.revisions.last() else { return false };
    let latest_ready = service.revisions.iter().rev().find(|r| r.ready).map(|r| r.name.as_str());
    service.traffic.iter().any(|t| {
        t.percent.unwrap_or(0) > 0
            && (t.revision_name.as_deref() == Some(newest.name.as_str())
                || (t.latest_revision == Some(true) && latest_ready == Some(newest.name.as_str())))
    })
}

/// The revision with the most traffic (for the labels of unreduced series).
fn serving_revision(service: &RunService) -> Option<String> {
    let target = service.traffic.iter().max_by_key(|t| t.percent.unwrap_or(0))?;
    match (&target.revision_name, target.latest_revision) {
        (Some(name), _) => Some(name.clone()),
        (None, Some(true)) => service.revisions.iter().rev().find(|r| r.ready).map(|r| r.name.clone()),
        _ => None,
    }
}

/// The quoted value a filter gives `field` (`field = "value"` or `field="value"`).
fn quoted(filter: &str, field: &str) -> Option<String> {
    let at = filter.find(field)? + field.len();
    let rest = filter[at..].trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?;
    rest.split_once('"').map(|(value, _)| value.to_owned())
}
