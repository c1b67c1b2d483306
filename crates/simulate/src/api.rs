//! What the API handlers share: the parsed request and Google's error shape.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// An API request, parsed.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub host: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    /// The `Authorization` header (gcloud sends none with credentials disabled; the runbook's
    /// Cloud Monitoring request sends `Bearer <the token gcloud printed>`).
    pub authorization: Option<String>,
}

impl ApiRequest {
    /// The path's segments, percent-decoded.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The region a regional endpoint carries in its host: gcloud turns the override
    /// `http://127.0.0.1:PORT/` into `http://europe-west1-127.0.0.1:PORT/` for Cloud Run.
    pub fn region(&self) -> Option<&str> {
        let host = self.host.rsplit_once(':').map_or(self.host.as_str(), |(h, _)| h);
        ["-127.0.0.1", "-localhost"].iter().find_map(|suffix| host.strip_suffix(suffix)).filter(|r| !r.is_empty())
    }
}

/// An error as Google APIs answer it: `{"error": {"code", "message", "status", "errors"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        let (status, reason) = match code {
            400 => ("INVALID_ARGUMENT", "invalid"),
            401 => ("UNAUTHENTICATED", "required"),
            403 => ("PERMISSION_DENIED", "forbidden"),
            404 => ("NOT_FOUND", "notFound"),
            405 => ("METHOD_NOT_ALLOWED", "methodNotAllowed"),
            409 => ("ALREADY_EXISTS", "alreadyExists"),
            412 => ("FAILED_PRECONDITION", "conditionNotMet"),
            429 => ("RESOURCE_EXHAUSTED", "rateLimitExceeded"),
            500 => ("INTERNAL", "backendError"),
            501 => ("UNIMPLEMENTED", "notImplemented"),
            502 => ("UNAVAILABLE", "badGateway"),
            503 => ("UNAVAILABLE", "backendError"),
            504 => ("DEADLINE_EXCEEDED", "deadlineExceeded"),
            _ => ("UNKNOWN", "unknown"),
        };
        Self { code, status, reason, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn with_status(mut self, status: &'static str, reason: &'static str) -> Self {
        self.status = status;
        self.reason = reason;
        self
    }

    pub fn to_json(&self) -> Value {
        json!({"error": {
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }})
    }
}

pub type ApiResult = Result<Value, ApiError>;

pub fn method_not_allowed(request: &ApiRequest) -> ApiError {
    ApiError::new(405, format!("{} is not supported on {} by the fake", request.method, request.path))
}

/// An int64 field, which Google APIs may send as a JSON string or number.
pub fn int64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Percent-decode a URL path.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
