//! What makes a run a rehearsal, below the commands that start one: the settings recorded in the
//! journal, the detection of a `runbook simulate` server started in another terminal, the
//! environment's `rehearsal:` var overrides, and the guard that keeps `http:` steps on the fake.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The variable `runbook simulate` prints for export: the fake's base URL. A run that sees it is
/// a rehearsal against that server.
pub const MARKER: &str = "RUNBOOK_REHEARSAL";

/// How a run rehearses, as recorded in the journal so a resumed rehearsal rehearses again.
/// `--simulate [--scenario FILE] [--simulate-port PORT]` starts a fake for the run; `server` is
/// set instead when the run's gcloud was pointed at a `runbook simulate` server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub scenario: Option<PathBuf>,
    pub port: Option<u16>,
    /// The base URL of a `runbook simulate` server the run was pointed at (not started by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// The base URL (`http://127.0.0.1:PORT/`) of a `runbook simulate` server this process's
/// environment points gcloud at: the server's marker variable, or an API endpoint override on a
/// loopback address.
pub fn detect() -> Option<String> {
    detect_in(std::env::vars_os())
}

/// Variables that are not UTF-8 are not ours and are skipped (`std::env::vars` would panic).
fn detect_in(vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> Option<String> {
    let mut overrides = None;
    for (key, value) in vars {
        let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else { continue };
        let value = value.to_owned();
        if value.trim().is_empty() {
            continue;
        }
        if key == MARKER {
            return Some(value);
        }
        if key.starts_with("CLOUDSDK_API_ENDPOINT_OVERRIDES_") && overrides.is_none() && is_loopback_url(&value) {
            overrides = Some(value);
        }
    }
    overrides
}

fn is_loopback_url(text: &str) -> bool {
    url::Url::parse(text).ok().and_then(|u| u.host_str().map(is_loopback_host)).unwrap_or(false)
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The environment's `rehearsal:` overrides resolved against the fake: a value starting with `/`
/// is a path on the fake (`/app`), joined to its base URL; any other is the var's value in a
/// rehearsal as written (`200ms`: a watch's cadence compressed). `--var` overrides win and are
/// left alone.
pub fn resolved_overrides(
    block: &indexmap::IndexMap<String, String>,
    fake_base: &str,
    operator: &[(String, String)],
) -> Vec<(String, String)> {
    let base = fake_base.trim_end_matches('/');
    block
        .iter()
        .filter(|(name, _)| !operator.iter().any(|(o, _)| o == *name))
        .map(|(name, value)| {
            let value = if value.starts_with('/') { format!("{base}{value}") } else { value.clone() };
            (name.clone(), value)
        })
        .collect()
}

/// Where `http:` steps of a rehearsal may go: the fake, and hosts the operator named with `--var`.
#[derive(Debug, Clone)]
pub struct HostGuard {
    /// `host:port` of the fake.
    fake: String,
    /// Hosts named in `--var` values, lowercase.
    named: Vec<String>,
}

/// Why a request was not sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl HostGuard {
    pub fn new(fake_base: &str, operator_vars: &[(String, String)]) -> HostGuard {
        let fake = url::Url::parse(fake_base)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_default();
        let named = operator_vars
            .iter()
            .filter_map(|(_, value)| url::Url::parse(value).ok()?.host_str().map(str::to_ascii_lowercase))
            .collect();
        HostGuard { fake, named }
    }

    /// `Ok(true)` for the fake (sent directly, never through a proxy), `Ok(false)` for a host
    /// the operator named, `Err` for anything else.
    pub fn check(&self, target: &str) -> Result<bool, Refused> {
        let Ok(url) = url::Url::parse(target) else {
            return Err(Refused(format!("not sent in a rehearsal: {target:?} is not a URL")));
        };
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or_default();
        let authority = format!("{host}:{port}");
        let fake_port = self.fake.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
        // `localhost` names the fake too; another loopback address is another listener.
        if authority == self.fake || (host == "localhost" && port.to_string() == fake_port) {
            return Ok(true);
        }
        if self.named.contains(&host) {
            return Ok(false);
        }
        Err(Refused(format!(
            "not sent: this is a rehearsal, and {host} is neither the local fake ({}) nor a host named with --var; \
             point the environment's `rehearsal:` block or --var at the fake",
            self.fake
        )))
    }
}

/// The environment of every child in a rehearsal: plain HTTP(S) clients (curl, scripts) are sent
/// to the fake as their proxy, so `http://` requests reach the fake and `https://` ones (a CONNECT
/// the fake refuses) reach nothing. Inherited proxy exclusions are dropped.
pub fn proxy_env(fake_base: &str) -> Vec<(String, String)> {
    let proxy = fake_base.trim_end_matches('/').to_owned();
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]
        .into_iter()
        .map(|k| (k.to_owned(), proxy.clone()))
        .chain(["NO_PROXY", "no_proxy"].into_iter().map(|k| (k.to_owned(), String::new())))
        .chain(std::iter::once((MARKER.to_owned(), fake_base.to_owned())))
        .collect()
}

/// Inherited variables a rehearsal's children must not see: every `CLOUDSDK_*` setting (an
/// account, another endpoint) and every proxy setting of the operator's.
pub fn removed_env() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("CLOUDSDK_") || k.to_ascii_lowercase().ends_with("_proxy"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::ffi::OsString;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn a_simulate_server_is_detected_by_its_marker_or_a_loopback_override() {
        assert_eq!(detect_in(vars(&[(MARKER, "http://127.0.0.1:9/")])).as_deref(), Some("http://127.0.0.1:9/"));
        let over = [("CLOUDSDK_API_ENDPOINT_OVERRIDES_SQL", "http://127.0.0.1:7/")];
        assert_eq!(detect_in(vars(&over)).as_deref(), Some("http://127.0.0.1:7/"));
        let real = [("CLOUDSDK_API_ENDPOINT_OVERRIDES_SQL", "https://sqladmin.googleapis.com/")];
        assert_eq!(detect_in(vars(&real)), None);
        assert_eq!(detect_in(vars(&[(MARKER, "")])), None);
    }

    #[test]
    fn variables_that_are_not_utf8_are_skipped_not_a_panic() {
        use std::os::unix::ffi::OsStringExt as _;
        let bad = OsString::from_vec(vec![0x66, 0xff, 0x6f]);
        let pairs = vec![(bad.clone(), bad), (OsString::from(MARKER), OsString::from("http://127.0.0.1:3/"))];
        assert_eq!(detect_in(pairs.into_iter()).as_deref(), Some("http://127.0.0.1:3/"));
    }

    #[test]
    fn the_guard_lets_through_the_fake_and_named_hosts_only() {
        let guard = HostGuard::new("http://127.0.0.1:4321/", &[("api".into(), "https://staging.example.com/x".into())]);
        assert_eq!(guard.check("http://127.0.0.1:4321/app/health"), Ok(true));
        assert_eq!(guard.check("http://localhost:4321/app"), Ok(true));
        assert_eq!(guard.check("https://staging.example.com/health"), Ok(false));
        assert!(guard.check("http://127.0.0.1:4322/app").is_err());
        assert!(guard.check("http://127.0.0.2:4321/app").is_err(), "another loopback address is not the fake");
        assert!(guard.check("https://pegasus-api.run.app/health").is_err());
        assert!(guard.check("not a url").is_err());
    }

    #[test]
    fn rehearsal_overrides_join_the_fake_and_yield_to_var() {
        let block: indexmap::IndexMap<String, String> =
            [("api".to_owned(), "/app".to_owned()), ("other".to_owned(), "/x".to_owned())].into_iter().collect();
        let got = resolved_overrides(&block, "http://127.0.0.1:5/", &[("other".into(), "http://h/".into())]);
        assert_eq!(got, vec![("api".to_owned(), "http://127.0.0.1:5/app".to_owned())]);
        // A plain value (not a path) is the var's value in a rehearsal.
        let block: indexmap::IndexMap<String, String> =
            [("every".to_owned(), "200ms".to_owned())].into_iter().collect();
        assert_eq!(
            resolved_overrides(&block, "http://127.0.0.1:5/", &[]),
            vec![("every".to_owned(), "200ms".to_owned())]
        );
    }
}
