//! Durations as people write them (`10m`, `1h 30m`) in serialized events and plans.

/// Durations as people write them (`10m`, `1h 30m`), in JSON and YAML.
pub fn serialize<S: serde::Serializer>(duration: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    // Milliseconds are precise enough for people and stable enough for snapshots.
    let rounded = std::time::Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    s.serialize_str(&humantime::format_duration(rounded).to_string())
}

#[allow(clippy::ref_option)] // serde's serialize_with signature
pub fn serialize_opt<S: serde::Serializer>(duration: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(d) => serialize(d, s),
        None => s.serialize_none(),
    }
}
