//! The faults format: its JSON Schema (`schema/faults.schema.json`, documented in
//! `docs/faults.md`), and the checks that answer a bad fault with the field that is wrong.

use super::scenario::Faults;

/// Methods a request matcher may name.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// Cloud SQL operation types the fake starts.
const OPERATION_TYPES: &[&str] = &["CLONE", "RESTORE_VOLUME"];

/// The JSON Schema of [`Faults`], as checked in at `schema/faults.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Faults);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// A `POST /__fake/faults` body: JSON of the faults shape, checked. The error names the field
/// (`http_errors[0].status: ...`).
pub fn parse(body: &[u8]) -> Result<Faults, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let faults: Faults = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." { inner.to_string() } else { format!("{path}: {inner}") }
    })?;
    faults.validate()?;
    Ok(faults)
}

fn matcher(field: &str, method: Option<&String>) -> Result<(), String> {
    match method {
        Some(m) if !METHODS.contains(&m.as_str()) => {
            Err(format!("{field}.method: {m:?} is not an HTTP method (one of {})", METHODS.join(", ")))
        }
        _ => Ok(()),
    }
}

impl Faults {
    /// What types alone do not say: statuses are errors, methods and operation types exist,
    /// hang times are not negative.
    pub fn validate(&self) -> Result<(), String> {
        for (i, fault) in self.http_errors.iter().enumerate() {
            let field = format!("http_errors[{i}]");
            matcher(&field, fault.method.as_ref())?;
            if !(400..=599).contains(&fault.status) {
                return Err(format!("{field}.status: {} is not an HTTP error status (400 to 599)", fault.status));
            }
        }
        for (i, fault) in self.hangs.iter().enumerate() {
            let field = format!("hangs[{i}]");
            matcher(&field, fault.method.as_ref())?;
            if let Some(seconds) = fault.seconds
                && !(seconds.is_finite() && seconds >= 0.0)
            {
                return Err(format!("{field}.seconds: {seconds} is not a number of seconds (0 or more)"));
            }
        }
        for (i, fault) in self.operations.iter().enumerate() {
            if let Some(kind) = &fault.operation_type
                && !OPERATION_TYPES.iter().any(|t| t.eq_ignore_ascii_case(kind))
            {
                return Err(format!(
                    "operations[{i}].operation_type: {kind:?} is not one of {}",
                    OPERATION_TYPES.join(", ")
                ));
            }
        }
        for (i, fault) in self.omit_fields.iter().enumerate() {
            super::omit::validate(i, fault)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_faults_schema_is_current() {
        let checked_in = include_str!("../../../schema/faults.schema.json");
        assert!(
            checked_in == schema_json(),
            "schema/faults.schema.json is out of date: run `cargo run -- simulate --print-faults-schema > schema/faults.schema.json`"
        );
    }

    /// Every fault kind (a property of the faults shape) has an example in docs/faults.md, and
    /// every example there is a valid faults document.
    #[test]
    fn docs_faults_md_has_a_valid_example_for_every_fault_kind() {
        let doc = include_str!("../../../docs/faults.md");
        let mut covered = std::collections::BTreeSet::new();
        for block in doc.split("```json\n").skip(1) {
            let example = block.split("```").next().unwrap_or_default();
            let faults = parse(example.as_bytes()).unwrap_or_else(|e| panic!("docs/faults.md example: {e}\n{example}"));
            let value: serde_json::Value = serde_json::from_str(example).unwrap_or_default();
            covered.extend(value.as_object().into_iter().flat_map(|o| o.keys().cloned()));
            let _ = faults;
        }
        let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap_or_default();
        let kinds: std::collections::BTreeSet<String> =
            schema["properties"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        assert!(!kinds.is_empty());
        let missing: Vec<&String> = kinds.difference(&covered).collect();
        assert!(missing.is_empty(), "docs/faults.md has no example for {missing:?}");
    }

    #[test]
    fn a_bad_fault_is_answered_with_the_field_that_is_wrong() {
        let err = |body: &str| parse(body.as_bytes()).err().unwrap_or_default();
        assert!(err(r#"{"http_errors": [{"status": "x"}]}"#).starts_with("http_errors[0].status: invalid type"));
        assert!(err(r#"{"http_errors": [{"status": 200}]}"#).starts_with("http_errors[0].status: 200 is not"));
        assert!(err(r#"{"hangs": [{}, {"method": "get"}]}"#).starts_with("hangs[1].method: \"get\""));
        assert!(err(r#"{"hangs": [{"seconds": -1}]}"#).starts_with("hangs[0].seconds"));
        assert!(err(r#"{"operations": [{"operation_type": "DELETE"}]}"#).starts_with("operations[0].operation_type"));
        assert!(err(r#"{"operation": []}"#).contains("unknown field `operation`"));
        assert!(
            err(r#"{"operations": [{"polls": 3, "pols": 1}]}"#).starts_with("operations[0].pols: unknown field `pols`")
        );
        assert!(
            err(r#"{"omit_fields": [{"kind": "run.services", "path": "status"}]}"#).starts_with("omit_fields[0].kind")
        );
        assert!(
            err(r#"{"omit_fields": [{"kind": "run.service", "path": "status..traffic"}]}"#)
                .starts_with("omit_fields[0].path")
        );
        assert!(err(r#"{"omit_fields": [{"kind": "run.service"}]}"#).contains("missing field `path`"));
        assert!(err("not json").contains("expected"));
        assert!(parse(br#"{"operations": [{"operation_type": "clone", "polls": 3}]}"#).is_ok());
    }
}
