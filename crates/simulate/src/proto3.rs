//! The proto3 JSON mapping Google's APIs answer with: a field that holds its default value
//! (`false`, `0`, `""`, an empty list or map, `null`) is left out of the response.
//! <https://protobuf.dev/programming-guides/json/>: "If a field has the default value, it is
//! omitted from the JSON output by default."

use serde_json::Value;

/// Fields whose value is a map (`map<string, string>` and the like): a map's entries are kept
/// whatever their value (proto3 keeps map entries); only an empty map is left out.
const MAPS: &[&str] = &["labels", "annotations", "userLabels", "limits", "requests", "nodeSelector"];

/// Leaves out every field of `value` that holds its default, at any depth.
pub fn omit_defaults(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if !MAPS.contains(&name.as_str()) {
                    omit_defaults(field);
                }
            }
            fields.retain(|name, field| !(is_default(field) || (MAPS.contains(&name.as_str()) && is_empty(field))));
        }
        // A list's elements stay where they are (a repeated field keeps its zeros); the
        // messages inside lose their own default fields.
        Value::Array(items) => items.iter_mut().for_each(omit_defaults),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.is_empty())
}

fn is_default(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        // An empty message (`{}`) is a set message field, kept as proto3 JSON keeps it.
        Value::Object(_) => false,
    }
}
