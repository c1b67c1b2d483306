//! Writing to stdout without panicking when the reader goes away (`runbook list | head`).

use std::io::Write;

pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe means nobody reads the rest; that is not an error worth a panic.
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Durations as people write them (`10m`, `1h 30m`), in JSON and YAML.
pub fn serialize_duration<S: serde::Serializer>(duration: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    // Milliseconds are precise enough for people and stable enough for snapshots.
    let rounded = std::time::Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    s.serialize_str(&humantime::format_duration(rounded).to_string())
}

#[allow(clippy::ref_option)] // serde's serialize_with signature
pub fn serialize_opt_duration<S: serde::Serializer>(
    duration: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(d) => serialize_duration(d, s),
        None => s.serialize_none(),
    }
}
