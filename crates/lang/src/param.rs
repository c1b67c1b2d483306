//! Typed inputs of a procedure and the checks on their values.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use regex::Regex;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "values")]
pub enum ParamType {
    String,
    Int,
    Bool,
    Timestamp,
    Duration,
    Url,
    Enum(Vec<String>),
}

impl ParamType {
    pub const NAMES: &[&str] = &["string", "int", "bool", "timestamp", "duration", "url", "enum"];

    pub fn name(&self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Timestamp => "timestamp",
            ParamType::Duration => "duration",
            ParamType::Url => "url",
            ParamType::Enum(_) => "enum",
        }
    }

    /// What a value of this type looks like, for help text and error messages.
    pub fn expectation(&self) -> String {
        match self {
            ParamType::String => "a string".into(),
            ParamType::Int => "an integer".into(),
            ParamType::Bool => "true or false".into(),
            ParamType::Timestamp => "an RFC 3339 timestamp with offset, e.g. 2025-06-15T14:00:00Z".into(),
            ParamType::Duration => "a duration such as 90s, 5m or 1h30m".into(),
            ParamType::Url => "an http(s) URL".into(),
            ParamType::Enum(values) => format!("one of {}", values.join(", ")),
        }
    }
}

/// `now`, `now-7d`, `now+1h` or a fixed time.
#[derive(Debug, Clone, Serialize)]
#[serde(into = "String")]
pub enum TimeBound {
    Now { offset_secs: i64, text: String },
    At(DateTime<FixedOffset>),
}

impl From<TimeBound> for String {
    fn from(bound: TimeBound) -> String {
        match bound {
            TimeBound::Now { text, .. } => text,
            TimeBound::At(at) => at.to_rfc3339(),
        }
    }
}

impl TimeBound {
    pub fn parse(text: &str) -> Result<TimeBound, String> {
        let trimmed = text.trim();
        if let Some(rest) = trimmed.strip_prefix("now") {
            let rest = rest.trim();
            if rest.is_empty() {
                return Ok(TimeBound::Now { offset_secs: 0, text: trimmed.into() });
            }
            let (sign, amount) = match (rest.strip_prefix('+'), rest.strip_prefix('-')) {
                (Some(amount), _) => (1, amount),
                (_, Some(amount)) => (-1, amount),
                _ => return Err(format!("`{text}`: expected now, now-7d, now+1h or an RFC 3339 time")),
            };
            let duration =
                humantime::parse_duration(amount.trim()).map_err(|e| format!("`{text}`: {e}; expected e.g. now-7d"))?;
            // A century either way is more than any retention window; beyond it, date
            // arithmetic would overflow.
            let secs = i64::try_from(duration.as_secs())
                .ok()
                .filter(|s| *s <= 100 * 366 * 86_400)
                .ok_or_else(|| format!("`{text}`: the offset is too large (at most 100 years)"))?;
            return Ok(TimeBound::Now { offset_secs: sign * secs, text: trimmed.into() });
        }
        DateTime::parse_from_rfc3339(trimmed)
            .map(TimeBound::At)
            .map_err(|_| format!("`{text}`: expected now, now-7d, now+1h or an RFC 3339 time"))
    }

    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeBound::Now { offset_secs, .. } => chrono::TimeDelta::try_seconds(*offset_secs)
                .and_then(|delta| now.checked_add_signed(delta))
                .unwrap_or(now),
            TimeBound::At(at) => at.with_timezone(&Utc),
        }
    }

    pub fn describe(&self, now: DateTime<Utc>) -> String {
        match self {
            TimeBound::Now { text, .. } => {
                format!("{text} ({})", self.resolve(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }
            TimeBound::At(at) => at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Param {
    pub name: String,
    #[serde(flatten)]
    pub ty: ParamType,
    pub required: bool,
    pub default: Option<String>,
    pub help: Option<String>,
    #[serde(serialize_with = "serialize_regex")]
    pub pattern: Option<Regex>,
    pub secret: bool,
    pub not_after: Option<TimeBound>,
    pub not_before: Option<TimeBound>,
    /// `example:` / `pattern_help:` shown when a value is refused.
    #[serde(flatten)]
    pub hint: AnswerHint,
}

#[allow(clippy::ref_option)] // serde's serialize_with signature
fn serialize_regex<S: serde::Serializer>(regex: &Option<Regex>, s: S) -> Result<S::Ok, S::Error> {
    match regex {
        Some(regex) => s.serialize_some(regex.as_str()),
        None => s.serialize_none(),
    }
}

/// A checked param value, typed for templates (`when: params.force` sees a boolean).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Int(i64),
    Bool(bool),
}

impl ParamValue {
    pub fn as_text(&self) -> String {
        match self {
            ParamValue::String(s) => s.clone(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Bool(b) => b.to_string(),
        }
    }
}

impl Param {
    /// The command-line flag: `backup_id` → `--backup-id`.
    pub fn flag(&self) -> String {
        flag_name(&self.name)
    }

    /// Checks one value; the error is a reason without the param's name.
    pub fn check_value(&self, raw: &str, now: DateTime<Utc>) -> Result<ParamValue, String> {
        let value = check_typed(&self.ty, raw, now)?;
        if let (Some(pattern), ParamValue::String(text)) = (&self.pattern, &value)
            && !pattern.is_match(text)
        {
            return Err(self.hint.pattern_mismatch(pattern));
        }
        if self.ty == ParamType::Timestamp {
            let at = DateTime::parse_from_rfc3339(raw.trim()).map_err(|e| e.to_string())?.with_timezone(&Utc);
            if let Some(bound) = &self.not_after
                && at > bound.resolve(now)
            {
                return Err(format!("must not be after {}", bound.describe(now)));
            }
            if let Some(bound) = &self.not_before
                && at < bound.resolve(now)
            {
                return Err(format!("must not be before {}", bound.describe(now)));
            }
        }
        Ok(value)
    }
}

pub fn flag_name(name: &str) -> String {
    name.replace('_', "-")
}

pub fn check_typed(ty: &ParamType, raw: &str, now: DateTime<Utc>) -> Result<ParamValue, String> {
    let _ = now;
    let expected = || format!("expected {}", ty.expectation());
    match ty {
        ParamType::String => Ok(ParamValue::String(raw.to_owned())),
        ParamType::Int => raw.trim().parse::<i64>().map(ParamValue::Int).map_err(|_| expected()),
        ParamType::Bool => match raw.trim() {
            "true" => Ok(ParamValue::Bool(true)),
            "false" => Ok(ParamValue::Bool(false)),
            _ => Err(expected()),
        },
        ParamType::Timestamp => DateTime::parse_from_rfc3339(raw.trim())
            .map(|_| ParamValue::String(raw.trim().to_owned()))
            .map_err(|_| expected()),
        ParamType::Duration => {
            parse_duration(raw).map(|_| ParamValue::String(raw.trim().to_owned())).map_err(|_| expected())
        }
        ParamType::Url => match url::Url::parse(raw.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Ok(ParamValue::String(raw.trim().to_owned()))
            }
            _ => Err(expected()),
        },
        ParamType::Enum(values) => {
            if values.iter().any(|v| v == raw) {
                Ok(ParamValue::String(raw.to_owned()))
            } else {
                Err(expected())
            }
        }
    }
}

/// `90s`, `5m`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); expected e.g. 90s, 5m, 1h30m"))
}

pub fn secret_env_name(param: &str) -> String {
    format!("RUNBOOK_PARAM_{}", param.to_uppercase())
}

/// Help for an operator whose answer was refused (params and prompts).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnswerHint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern_help: Option<String>,
}

impl AnswerHint {
    /// Why `value` does not match `pattern`, in the runbook author's words when given.
    pub fn pattern_mismatch(&self, pattern: &Regex) -> String {
        let mut text = match &self.pattern_help {
            Some(help) => format!("is not {}", help.trim()),
            None => format!("does not match the pattern `{}`", pattern_source(pattern)),
        };
        if let Some(example) = &self.example {
            text.push_str(&format!(" (e.g. {})", example.trim()));
        }
        text
    }

    /// `reason`, followed by the example when there is one.
    pub fn explain(&self, reason: &str) -> String {
        match &self.example {
            Some(example) => format!("{reason} (e.g. {})", example.trim()),
            None => reason.to_owned(),
        }
    }
}

/// A `pattern` as the runbook wrote it: without the `^(?:…)$` that anchors it.
pub fn pattern_source(pattern: &Regex) -> &str {
    let text = pattern.as_str();
    text.strip_prefix("^(?:").and_then(|t| t.strip_suffix(")$")).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamp(not_after: &str, not_before: &str) -> Param {
        Param {
            name: "timestamp".into(),
            ty: ParamType::Timestamp,
            required: true,
            default: None,
            help: None,
            pattern: None,
            secret: false,
            not_after: TimeBound::parse(not_after).ok(),
            not_before: TimeBound::parse(not_before).ok(),
            hint: AnswerHint::default(),
        }
    }

    #[test]
    fn timestamp_bounds_are_relative_to_now() {
        let now = DateTime::parse_from_rfc3339("2025-06-16T00:00:00Z").map(|t| t.with_timezone(&Utc));
        let Ok(now) = now else { panic!("fixed time parses") };
        let param = timestamp("now", "now-7d");
        assert!(param.check_value("2025-06-15T14:00:00Z", now).is_ok());
        assert!(param.check_value("2025-06-17T00:00:00Z", now).is_err_and(|e| e.contains("after now")));
        assert!(param.check_value("2025-06-01T00:00:00Z", now).is_err_and(|e| e.contains("before now-7d")));
        assert!(param.check_value("tomorrow", now).is_err_and(|e| e.contains("RFC 3339")));
        assert!(param.check_value("2025-06-15T14:00:00", now).is_err(), "offset is required");
    }
}
