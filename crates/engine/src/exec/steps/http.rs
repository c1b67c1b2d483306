//! `http:` steps: one request, its expectations checked, failures named precisely.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::plan::StepOutput;
use crate::redact::Redactor;
use crate::render::Action;
use runbook_lang::step::Step;

use super::{captured_output, check_secret_output, human_bytes, register_secret};
use crate::exec::context::{Attempt, StepContext};
use runbook_state::event::StepStatus;

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

pub enum Ended {
    Response(Response),
    TooLarge(usize),
    Failed(String),
    TimedOut,
    Interrupted,
}

/// `direct`: never through a proxy (a rehearsal's fake on the loopback).
pub async fn send(
    action: &Action,
    timeout: Duration,
    capture_limit: usize,
    cancel: &CancellationToken,
    direct: bool,
) -> Ended {
    let Action::Http { method, url, headers, body, connect_timeout, .. } = action else {
        return Ended::Failed("not an HTTP step".into());
    };
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout.unwrap_or(Duration::from_secs(10)).min(timeout))
        .timeout(timeout)
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")));
    if direct {
        builder = builder.no_proxy();
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(err) => return Ended::Failed(format!("cannot create an HTTP client: {err}")),
    };
    let method = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(method) => method,
        Err(_) => return Ended::Failed(format!("unknown HTTP method {method}")),
    };
    let mut request = client.request(method, url.as_str());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.value.as_str());
    }
    if let Some(body) = body {
        let looks_json = body.value.trim_start().starts_with(['{', '[']);
        if looks_json && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            request = request.header("content-type", "application/json");
        }
        request = request.body(body.value.clone());
    }
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > capture_limit {
                return Ok(None);
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<_, reqwest::Error>(Some(Response { status, body }))
    };
    tokio::select! {
        result = exchange => match result {
            Ok(Some(response)) => Ended::Response(response),
            Ok(None) => Ended::TooLarge(capture_limit),
            Err(err) if err.is_timeout() => Ended::TimedOut,
            Err(err) => Ended::Failed(describe(url, &err)),
        },
        () = cancel.cancelled() => Ended::Interrupted,
    }
}

/// Names what went wrong in words an operator can act on.
fn describe(url: &str, err: &reqwest::Error) -> String {
    let chain = error_chain(err);
    let host = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let lower = chain.to_ascii_lowercase();
    if lower.contains("dns error") || lower.contains("failed to lookup") || lower.contains("name or service not known")
    {
        format!("DNS lookup failed for {host}: {chain}")
    } else if lower.contains("connection refused") {
        format!("connection refused by {host} ({url})")
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        format!("TLS failure talking to {host}: {chain}")
    } else if err.is_connect() {
        format!("cannot connect to {host}: {chain}")
    } else {
        format!("request to {url} failed: {chain}")
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Checks the expectations; `Err` says which one failed.
/// A secret step's body is never quoted in the message; any other is quoted masked.
pub fn check(action: &Action, response: &Response, secret: bool, redactor: &Redactor) -> Result<(), String> {
    let Action::Http { expect_status, expect_body_contains, expect_json, .. } = action else { return Ok(()) };
    let body = String::from_utf8_lossy(&response.body);
    let excerpt =
        |body: &str| if secret { " (body not shown: secret step)".to_owned() } else { excerpt(body, redactor) };
    let status_ok = if expect_status.is_empty() {
        (200..300).contains(&response.status)
    } else {
        expect_status.contains(&response.status)
    };
    if !status_ok {
        let kind = if response.status >= 500 { "server error" } else { "unexpected status" };
        let wanted = if expect_status.is_empty() {
            "2xx".to_owned()
        } else {
            expect_status.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
        };
        let reason =
            reqwest::StatusCode::from_u16(response.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        return Err(format!("{kind}: HTTP {} {reason} (expected {wanted}){}", response.status, excerpt(&body)));
    }
    if let Some(needle) = expect_body_contains
        && !body.contains(needle.as_str())
    {
        return Err(format!("the response body does not contain {needle:?}{}", excerpt(&body)));
    }
    if !expect_json.is_empty() {
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("the response is not JSON ({e}){}", excerpt(&body)))?;
        for (path, expected) in expect_json {
            let parsed = serde_json_path::JsonPath::parse(path).map_err(|e| format!("{path}: {e}"))?;
            let found = parsed.query(&json).first().cloned();
            if found.as_ref() != Some(expected) {
                if secret {
                    return Err(format!("{path} is not {expected}"));
                }
                let found = found.map_or_else(|| "nothing".to_owned(), |v| v.to_string());
                return Err(format!("{path} is {found}, expected {expected}"));
            }
        }
    }
    Ok(())
}

/// The first 200 characters of a body, masked before it is cut (see `Redactor::excerpt`).
fn excerpt(body: &str, redactor: &Redactor) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let (short, cut) = redactor.excerpt(trimmed, 200);
    format!("; body: {short}{}", if cut { "…" } else { "" })
}

/// `action`: the step's own request, or a watch's sample; `timeout`: how long it may take.
pub(super) async fn http(ctx: &mut StepContext<'_>, step: &Step, action: &Action, timeout: Duration) -> Attempt {
    let capture = match action {
        Action::Http { capture, .. } => *capture,
        _ => None,
    };
    let direct = match (&ctx.options.http_guard, action) {
        (Some(guard), Action::Http { url, .. }) => match guard.check(url) {
            Ok(fake) => fake,
            Err(runbook_state::rehearsal::Refused(reason)) => return Attempt { last: true, ..Attempt::failed(reason) },
        },
        _ => false,
    };
    match send(action, timeout, ctx.options.capture_limit, ctx.cancel, direct).await {
        Ended::Interrupted => Attempt::with_status(StepStatus::Interrupted, "interrupted"),
        Ended::TimedOut => Attempt::with_status(
            StepStatus::TimedOut,
            format!("no complete response within {}", humantime::format_duration(timeout)),
        ),
        Ended::Failed(message) => Attempt::failed(message),
        Ended::TooLarge(limit) => Attempt::failed(format!(
            "the response body is larger than the capture limit of {} (RUNBOOK_CAPTURE_LIMIT)",
            human_bytes(limit)
        )),
        Ended::Response(response) => {
            if let Err(message) = check(action, &response, step.secret, &ctx.plan.redactor) {
                return Attempt { exit_code: Some(i32::from(response.status)), ..Attempt::failed(message) };
            }
            let mut output = match capture.map(|c| captured_output(c, &response.body)) {
                None => StepOutput::default(),
                Some(Ok(output)) => output,
                Some(Err(message)) => return Attempt::failed(message),
            };
            output.status = Some(i64::from(response.status));
            if step.secret {
                if let Err(message) = check_secret_output(&output) {
                    return Attempt { exit_code: Some(i32::from(response.status)), ..Attempt::failed(message) };
                }
                register_secret(&ctx.plan.redactor, &output);
            }
            Attempt { exit_code: Some(i32::from(response.status)), ..Attempt::done(Some(output)) }
        }
    }
}
