//! The HTTP side: one handler takes every request (origin-form from a direct connection, or
//! absolute-form when gcloud talks to the fake as its HTTP proxy), logs it, injects faults and
//! routes it to the API by path. `/__fake/...` is the admin API and is neither logged nor faulted.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::api::{ApiError, ApiRequest, ApiResult, percent_decode};
use super::scenario::{Faults, HangFault, Scenario};
use super::state::{RequestRecord, State};
use super::{monitoring, run, secrets, sql};

/// What the handler shares with the `Handle`.
pub struct Shared {
    state: Mutex<State>,
    pub cancel: CancellationToken,
    /// The secret this server proves it knows (`POST /__fake/proof`); see `proof.rs`.
    pub token: String,
}

impl Shared {
    pub fn with_state(state: State) -> Self {
        Self { state: Mutex::new(state), cancel: CancellationToken::new(), token: super::proof::random_hex() }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(serve).with_state(shared)
}

const BODY_LIMIT: usize = 64 << 20;

async fn serve(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.method == Method::CONNECT {
        // gcloud reaches an `http://` endpoint override through the proxy with absolute-form
        // requests; CONNECT would mean an `https://` endpoint, which the fake cannot serve.
        return json_response(
            StatusCode::NOT_IMPLEMENTED,
            &ApiError::new(
                501,
                "The fake speaks plain HTTP only: point the endpoint overrides at http://, not https://",
            )
            .to_json(),
        );
    }
    let host = parts
        .uri
        .authority()
        .map(ToString::to_string)
        .or_else(|| parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
        .unwrap_or_default();
    let command = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .and_then(|agent| agent.split(' ').find_map(|word| word.strip_prefix("command/")))
        .map(str::to_string);
    let path = percent_decode(parts.uri.path());
    let query =
        parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => return error_response(&ApiError::invalid(format!("unreadable request body: {e}"))),
    };
    if path == "/__fake" || path.starts_with("/__fake/") {
        return admin(&shared, parts.method.as_str(), &path, &bytes);
    }
    if path.starts_with("/computeMetadata/") {
        // gcloud's metadata-server variables point here: answer as no metadata server does
        // (without `Metadata-Flavor: Google`), so gcloud concludes it is not on Compute Engine.
        return (StatusCode::NOT_FOUND, "not a Compute Engine metadata server: a local fake of the Google APIs\n")
            .into_response();
    }
    if path == "/app" || path.starts_with("/app/") {
        return app(&shared, parts.method.as_str(), &host, &path);
    }
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).map(str::to_string);
    let request = ApiRequest { method: parts.method.as_str().to_string(), host, path, query, body, authorization };
    tracing::debug!(method = %request.method, host = %request.host, path = %request.path, "simulate: request");

    let (seq, hang) = {
        let mut state = shared.lock();
        let seq = state.requests.len();
        state.requests.push(RequestRecord {
            method: request.method.clone(),
            host: request.host.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            body: request.body.clone(),
            command,
            status: 0,
            response: Value::Null,
        });
        let hang = take_hang(state.faults_mut(), &request);
        (seq, hang)
    };
    if let Some(fault) = hang.as_ref().filter(|h| !h.after)
        && !hold(&shared, fault.seconds).await
    {
        return error_response(&ApiError::new(503, "The fake is shutting down."));
    }

    let (status, value) = {
        let mut state = shared.lock();
        let result = match take_http_error(state.faults_mut(), &request) {
            Some(error) => Err(error),
            None => route(&mut state, &request),
        };
        let (status, mut value) = match result {
            Ok(value) => (200, value),
            Err(error) => (error.code, error.to_json()),
        };
        super::proto3::omit_defaults(&mut value);
        super::omit::apply(&mut state.faults_mut().omit_fields, &mut value);
        // The log may have been cleared meanwhile: only touch the record if it is still this request's.
        if let Some(record) = state.requests.get_mut(seq)
            && record.status == 0
            && record.path == request.path
        {
            record.status = status;
            record.response = value.clone();
        }
        (status, value)
    };
    if let Some(fault) = hang.as_ref().filter(|h| h.after)
        && !hold(&shared, fault.seconds).await
    {
        return error_response(&ApiError::new(503, "The fake is shutting down."));
    }
    json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &value)
}

fn route(state: &mut State, request: &ApiRequest) -> ApiResult {
    let segments = request.segments();
    match segments.as_slice() {
        ["sql", "v1beta4", "projects", project, rest @ ..] => sql::handle(state, request, project, rest),
        ["v1", "projects", project, "secrets", rest @ ..] if !rest.is_empty() => {
            secrets::handle(state, request, project, rest)
        }
        ["apis", "serving.knative.dev", "v1", "namespaces", namespace, rest @ ..] => {
            run::handle(state, request, namespace, rest)
        }
        ["v3", "projects", project, rest @ ..] => monitoring::handle(state, request, project, rest),
        _ => Err(ApiError::not_found(format!(
            "The fake serves no API at {} {} (host {})",
            request.method, request.path, request.host
        ))),
    }
}

fn fault_matches(method: Option<&str>, path_contains: Option<&str>, request: &ApiRequest) -> bool {
    method.is_none_or(|m| m.eq_ignore_ascii_case(&request.method))
        && path_contains.is_none_or(|p| request.path.contains(p))
}

/// Consume one hang that matches.
fn take_hang(faults: &mut Faults, request: &ApiRequest) -> Option<HangFault> {
    let fault = faults
        .hangs
        .iter_mut()
        .find(|f| f.times > 0 && fault_matches(f.method.as_deref(), f.path_contains.as_deref(), request))?;
    fault.times -= 1;
    Some(fault.clone())
}

/// Hold a request for `seconds` (none: until shutdown); false when the fake shuts down first.
async fn hold(shared: &Shared, seconds: Option<f64>) -> bool {
    let wait = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = wait => true,
        () = shared.cancel.cancelled() => false,
    }
}

fn take_http_error(faults: &mut Faults, request: &ApiRequest) -> Option<ApiError> {
    let fault = faults
        .http_errors
        .iter_mut()
        .find(|f| f.times > 0 && fault_matches(f.method.as_deref(), f.path_contains.as_deref(), request))?;
    fault.times -= 1;
    let message = fault.message.clone().unwrap_or_else(|| format!("Injected fault: HTTP {} (fake).", fault.status));
    Some(ApiError::new(fault.status, message))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    response
}

fn error_response(error: &ApiError) -> Response {
    json_response(StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &error.to_json())
}

fn admin(shared: &Shared, method: &str, path: &str, body: &Bytes) -> Response {
    if (method, path) == ("POST", "/__fake/proof") {
        let nonce = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["nonce"].as_str().map(str::to_owned));
        return match nonce.filter(|n| n.len() >= 16) {
            Some(nonce) => {
                json_response(StatusCode::OK, &serde_json::json!({"proof": super::proof::prove(&shared.token, &nonce)}))
            }
            None => {
                error_response(&ApiError::invalid("POST /__fake/proof expects {\"nonce\": \"AT LEAST 16 CHARACTERS\"}"))
            }
        };
    }
    let mut state = shared.lock();
    let ok = |value: Value| json_response(StatusCode::OK, &value);
    let to_value = |result: Result<Value, serde_json::Error>| match result {
        Ok(value) => ok(value),
        Err(e) => error_response(&ApiError::new(500, e.to_string())),
    };
    match (method, path.trim_end_matches('/')) {
        ("GET", "/__fake") => ok(json!({
            "endpoints": {
                "GET /__fake/state": "the whole state (scenario as changed, operations, faults)",
                "GET /__fake/requests": "the API request log, oldest first",
                "DELETE /__fake/requests": "clear the request log",
                "GET /__fake/faults": "the faults in force",
                "POST /__fake/faults": "replace the faults (JSON body, the scenario's `faults` shape; see docs/faults.md)",
                "GET /__fake/faults/schema": "the JSON Schema of the faults shape (schema/faults.schema.json)",
                "POST /__fake/proof": "{\"nonce\": N} → {\"proof\": HMAC-SHA256(token, N)}: the server knows the token `runbook simulate` printed",
                "GET|POST /__fake/marks": "where each step of a run began in the request log ({\"step\": ID}); runbook posts them",
                "POST /__fake/scenario": "replace the whole scenario (JSON body); keeps the request log",
            }
        })),
        ("GET", "/__fake/state") => to_value(serde_json::to_value(&*state)),
        ("GET", "/__fake/requests") => to_value(serde_json::to_value(&state.requests)),
        ("DELETE", "/__fake/requests") => {
            state.requests.clear();
            state.marks.clear();
            ok(json!({}))
        }
        ("GET", "/__fake/faults") => to_value(serde_json::to_value(&state.scenario.faults)),
        ("GET", "/__fake/marks") => to_value(serde_json::to_value(&state.marks)),
        ("POST", "/__fake/marks") => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mark)) if mark.get("step").is_some_and(Value::is_string) => {
                state.mark(mark.get("step").and_then(Value::as_str).unwrap_or_default());
                to_value(serde_json::to_value(&state.marks))
            }
            _ => error_response(&ApiError::invalid("marks: expected {\"step\": \"<step id>\"}")),
        },
        ("GET", "/__fake/faults/schema") => match serde_json::from_str::<Value>(&super::faults::schema_json()) {
            Ok(schema) => ok(schema),
            Err(e) => error_response(&ApiError::new(500, e.to_string())),
        },
        ("POST" | "PUT", "/__fake/faults") => match super::faults::parse(body) {
            Ok(faults) => {
                state.scenario.faults = faults;
                to_value(serde_json::to_value(&state.scenario.faults))
            }
            Err(e) => error_response(&ApiError::invalid(format!("faults: {e} (the format: docs/faults.md)"))),
        },
        ("POST" | "PUT", "/__fake/scenario") => match serde_json::from_slice::<Scenario>(body) {
            Ok(scenario) if scenario.faults.validate().is_err() => {
                let reason = scenario.faults.validate().err().unwrap_or_default();
                error_response(&ApiError::invalid(format!("scenario: faults.{reason} (the format: docs/faults.md)")))
            }
            Ok(scenario) => {
                let requests = std::mem::take(&mut state.requests);
                let marks = std::mem::take(&mut state.marks);
                *state = State::new(scenario);
                state.requests = requests;
                state.marks = marks;
                to_value(serde_json::to_value(&*state))
            }
            Err(e) => error_response(&ApiError::invalid(format!("scenario: {e}"))),
        },
        _ => error_response(&ApiError::not_found(format!("no admin endpoint {method} {path}; see GET /__fake"))),
    }
}

/// The application behind the API service, for the post-rollback checks of a rehearsal:
/// `--var api_base_url=http://127.0.0.1:PORT/app` makes `verify` call these.
fn app(shared: &Shared, method: &str, host: &str, path: &str) -> Response {
    let (status, body) = match (method, path.trim_end_matches('/')) {
        ("GET", "/app/health/ready") => (StatusCode::OK, serde_json::json!({"status": "ok", "simulated": true})),
        ("GET", "/app/courses") => (StatusCode::OK, serde_json::json!([{"id": 1, "title": "Simulated course"}])),
        ("GET", "/app/lectures") => (StatusCode::OK, serde_json::json!([{"id": 1, "course_id": 1}])),
        ("POST", "/app/jobs/smoke") => (StatusCode::ACCEPTED, serde_json::json!({"job": "smoke", "state": "done"})),
        _ => (StatusCode::NOT_FOUND, serde_json::json!({"error": format!("the simulated app has no {method} {path}")})),
    };
    shared.lock().requests.push(RequestRecord {
        method: method.to_owned(),
        host: host.to_owned(),
        path: path.to_owned(),
        query: Default::default(),
        body: Value::Null,
        command: None,
        status: status.as_u16(),
        response: Value::Null,
    });
    json_response(status, &body)
}
