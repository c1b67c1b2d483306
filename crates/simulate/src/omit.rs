//! The `omit_fields` fault: leave one named optional field out of every response of a kind, as
//! Google does for a field that holds its default or that the server did not fill in. A runbook
//! that reads the field must survive its absence (issue 24).
//!
//! A field is named by a response kind and a path inside it: `run.service` +
//! `status.traffic[].percent`. `[]` after a segment means "every element of that list". The
//! kind of a JSON object is recognised from the object itself, at any depth of a response, so
//! a list (`sql#backupRunsList`, knative's `RevisionList`) has the field left out of each item.

use serde_json::{Map, Value};

use super::scenario::OmitField;

/// The response kinds a fault may name, with what identifies an object of that kind.
pub const KINDS: &[&str] = &[
    "sql.instance",
    "sql.operation",
    "sql.backupRun",
    "secrets.version",
    "secrets.access",
    "run.service",
    "run.revision",
];

/// The kind of one JSON object, as the fake sends it.
fn kind_of(object: &Map<String, Value>) -> Option<&'static str> {
    let kind = object.get("kind").and_then(Value::as_str);
    let knative =
        object.get("apiVersion").and_then(Value::as_str).is_some_and(|v| v.starts_with("serving.knative.dev/"));
    match kind {
        Some("sql#instance") => Some("sql.instance"),
        Some("sql#operation") => Some("sql.operation"),
        Some("sql#backupRun") => Some("sql.backupRun"),
        Some("Service") if knative => Some("run.service"),
        Some("Revision") if knative => Some("run.revision"),
        Some(_) => None,
        // Secret Manager's messages carry no `kind`: an access response is the one with a
        // payload, a version the one named `.../secrets/S/versions/N`.
        None if object.contains_key("payload") => Some("secrets.access"),
        None => object
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| name.contains("/secrets/") && name.contains("/versions/"))
            .map(|_| "secrets.version"),
    }
}

/// Leaves out of `response` every field the faults name; counts each removal on its fault.
pub fn apply(faults: &mut [OmitField], response: &mut Value) {
    if faults.is_empty() {
        return;
    }
    match response {
        Value::Object(object) => {
            if let Some(kind) = kind_of(object) {
                for fault in faults.iter_mut().filter(|f| f.kind == kind) {
                    let segments: Vec<&str> = fault.path.split('.').collect();
                    fault.omitted += remove(object, &segments);
                }
            }
            for field in object.values_mut() {
                apply(faults, field);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| apply(faults, item)),
        _ => {}
    }
}

/// Removes the field at `path` under `object`; how many fields were removed.
fn remove(object: &mut Map<String, Value>, path: &[&str]) -> u32 {
    let Some((first, rest)) = path.split_first() else { return 0 };
    let (name, each) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    if rest.is_empty() {
        return u32::from(object.remove(name).is_some());
    }
    match object.get_mut(name) {
        Some(Value::Array(items)) if each => {
            items.iter_mut().filter_map(Value::as_object_mut).map(|item| remove(item, rest)).sum()
        }
        Some(Value::Object(inner)) if !each => remove(inner, rest),
        _ => 0,
    }
}

/// What types alone do not say: the kind is one the fake knows, the path is well formed.
pub fn validate(i: usize, fault: &OmitField) -> Result<(), String> {
    if !KINDS.contains(&fault.kind.as_str()) {
        return Err(format!("omit_fields[{i}].kind: {:?} is not one of {}", fault.kind, KINDS.join(", ")));
    }
    let well_formed = fault.path.split('.').all(|segment| {
        let name = segment.strip_suffix("[]").unwrap_or(segment);
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if !well_formed {
        return Err(format!(
            "omit_fields[{i}].path: {:?} is not a field path (names joined by `.`, `[]` after a list: status.traffic[].percent)",
            fault.path
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn omit(kind: &str, path: &str) -> Vec<OmitField> {
        vec![OmitField { kind: kind.into(), path: path.into(), omitted: 0 }]
    }

    #[test]
    fn a_field_is_left_out_of_each_object_of_its_kind_at_any_depth_and_counted() {
        let mut faults = omit("run.revision", "metadata.labels");
        let revision = json!({"apiVersion": "serving.knative.dev/v1", "kind": "Revision", "metadata": {"name": "r", "labels": {"a": "b"}}});
        let mut list = json!({"kind": "RevisionList", "items": [revision.clone(), revision]});
        apply(&mut faults, &mut list);
        assert_eq!(list["items"][1]["metadata"], json!({"name": "r"}));
        assert_eq!(faults[0].omitted, 2);

        let mut faults = omit("run.service", "status.traffic[].percent");
        let mut service = json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "status": {"traffic": [{"percent": 90, "revisionName": "a"}, {"revisionName": "b", "tag": "t"}]}});
        apply(&mut faults, &mut service);
        assert_eq!(service["status"]["traffic"], json!([{"revisionName": "a"}, {"revisionName": "b", "tag": "t"}]));
        assert_eq!(faults[0].omitted, 1);

        // Another kind keeps the field.
        let mut faults = omit("sql.backupRun", "status");
        let mut operation = json!({"kind": "sql#operation", "status": "DONE"});
        apply(&mut faults, &mut operation);
        assert_eq!(operation["status"], "DONE");
        assert_eq!(faults[0].omitted, 0);
    }

    #[test]
    fn secret_manager_objects_are_told_apart_without_a_kind() {
        let mut faults = omit("secrets.access", "payload.data");
        let mut access =
            json!({"name": "projects/1/secrets/s/versions/2", "payload": {"data": "eA==", "dataCrc32c": "1"}});
        apply(&mut faults, &mut access);
        assert_eq!(access["payload"], json!({"dataCrc32c": "1"}));
        let mut faults = omit("secrets.version", "createTime");
        let mut version = json!({"name": "projects/1/secrets/s/versions/2", "createTime": "t", "state": "ENABLED"});
        apply(&mut faults, &mut version);
        assert_eq!(version, json!({"name": "projects/1/secrets/s/versions/2", "state": "ENABLED"}));
    }
}
