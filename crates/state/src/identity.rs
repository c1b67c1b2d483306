//! Who is acting. One answer for the whole process, used by every record that names a person:
//! journal headers, run locks, `history`, `show`, plans and approvals, failure-menu choices,
//! lock breaks.
//!
//! In order: the person who started a GitHub Actions job (`github:<actor>`: the job's gcloud
//! account is a service account shared by everyone); else the active gcloud account, also
//! when the shared store is an emulator (the account is who the team knows, wherever the
//! state lives); else `user@host`. The account is the one `gcloud config get-value account`
//! prints: `CLOUDSDK_CORE_ACCOUNT`, else the `account` of the `[core]` section of the active
//! configuration (`CLOUDSDK_ACTIVE_CONFIG_NAME`, else the config folder's `active_config`,
//! else `default`) in `CLOUDSDK_CONFIG` (default `~/.config/gcloud`). It is read from those
//! files rather than by running gcloud, which takes most of a second to start: every run
//! needs it, and a run must start as fast as a shell script.
//!
//! The account names a person only as far as the machine's gcloud set-up does: anyone can
//! set `CLOUDSDK_CORE_ACCOUNT`. What must be proven (an approval) is proven by a signature,
//! not by this name.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `GITHUB_ACTOR` inside a GitHub Actions job.
    GitHub,
    /// The active gcloud account.
    Gcloud,
    /// Neither: the local user and host.
    Local,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::GitHub => "github",
            Source::Gcloud => "gcloud",
            Source::Local => "user@host",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Identity {
    /// `alice@example.com`, `github:alice` or `root@vm`.
    pub name: String,
    pub source: Source,
    /// The local account and machine, always recorded beside the name.
    pub user: String,
    pub host: String,
}

impl Identity {
    /// The acting identity of this process (worked out once).
    pub fn current() -> &'static Identity {
        static CURRENT: OnceLock<Identity> = OnceLock::new();
        CURRENT.get_or_init(|| Identity::resolve(&|name| std::env::var(name).ok(), user(), host()))
    }

    fn resolve(var: &dyn Fn(&str) -> Option<String>, user: String, host: String) -> Identity {
        if var("GITHUB_ACTIONS").as_deref() == Some("true")
            && let Some(actor) = var("GITHUB_ACTOR").filter(|a| github_login(a))
        {
            return Identity { name: format!("github:{actor}"), source: Source::GitHub, user, host };
        }
        match gcloud_account(var) {
            Some(account) => Identity { name: account, source: Source::Gcloud, user, host },
            None => Identity { name: format!("{user}@{host}"), source: Source::Local, user, host },
        }
    }

    /// `user@host` of the machine.
    pub fn local(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// How the identity is printed everywhere: `alice@example.com (root@vm)`, or `root@vm`.
    pub fn display(&self) -> String {
        display(&self.name, &self.user, &self.host)
    }
}

/// How a recorded identity is printed: the name, and the local account beside it when it
/// says something more (`alice@example.com (root@vm)`); `user@host` when no name was
/// recorded (older journals and locks).
pub fn display(name: &str, user: &str, host: &str) -> String {
    let local = format!("{user}@{host}");
    if name.is_empty() || name == local {
        local
    } else if user.is_empty() && host.is_empty() {
        name.to_owned()
    } else {
        format!("{name} ({local})")
    }
}

/// Who and where, for the journal and the lock.
pub fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

pub fn host() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".into())
}

/// A GitHub login: letters, digits and `-` (bots end in `[bot]`), at most 39 characters.
pub fn github_login(text: &str) -> bool {
    let name = text.strip_suffix("[bot]").unwrap_or(text);
    !name.is_empty() && text.len() <= 45 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The most of a gcloud configuration file read (they are a few hundred bytes).
const MAX_CONFIG: u64 = 64 * 1024;

/// The active gcloud account, as gcloud itself resolves it (see the module's note).
fn gcloud_account(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(account) = var("CLOUDSDK_CORE_ACCOUNT") {
        // Set but empty unsets the property, as in gcloud.
        return usable(&account);
    }
    let dir = match var("CLOUDSDK_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(var("HOME")?).join(".config").join("gcloud"),
    };
    let name = match var("CLOUDSDK_ACTIVE_CONFIG_NAME").filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => read_small(&dir.join("active_config")).map_or_else(|| "default".to_owned(), |t| t.trim().to_owned()),
    };
    // A configuration name is a file name part: nothing that leaves the folder.
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return None;
    }
    let text = read_small(&dir.join("configurations").join(format!("config_{name}")))?;
    usable(&ini_value(&text, "core", "account")?)
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_CONFIG).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `key` of `[section]` in gcloud's INI files (`key = value`, `#`/`;` comments).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_owned();
            continue;
        }
        if current == section
            && let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':'))
            && k.trim() == key
        {
            found = Some(v.trim().to_owned());
        }
    }
    found
}

/// An account fit to be recorded and printed: no control characters or blanks, bounded.
fn usable(account: &str) -> Option<String> {
    let account = account.trim();
    let fit = !account.is_empty()
        && account != "(unset)"
        && account.len() <= 320
        && !account.chars().any(|c| c.is_control() || c.is_whitespace());
    fit.then(|| account.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{Identity, Source, display};

    fn resolve(vars: &[(&str, &str)]) -> Identity {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Identity::resolve(&|name| vars.get(name).cloned(), "root".into(), "vm".into())
    }

    #[test]
    fn the_github_actor_then_the_gcloud_account_then_user_at_host() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().to_string_lossy().into_owned();
        let gh = resolve(&[("GITHUB_ACTIONS", "true"), ("GITHUB_ACTOR", "alice"), ("CLOUDSDK_CORE_ACCOUNT", "sa@x")]);
        assert_eq!((gh.name.as_str(), gh.source), ("github:alice", Source::GitHub));
        let env = resolve(&[("CLOUDSDK_CORE_ACCOUNT", "alice@example.com"), ("CLOUDSDK_CONFIG", &config)]);
        assert_eq!((env.name.as_str(), env.source), ("alice@example.com", Source::Gcloud));
        assert_eq!(env.display(), "alice@example.com (root@vm)");
        let none = resolve(&[("CLOUDSDK_CONFIG", &config)]);
        assert_eq!((none.name.as_str(), none.source), ("root@vm", Source::Local));
        assert_eq!(none.display(), "root@vm");
    }

    #[test]
    fn the_account_is_read_from_the_active_configuration() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let configs = dir.path().join("configurations");
        std::fs::create_dir_all(&configs).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(configs.join("config_default"), "[core]\naccount = default@x\n").unwrap_or_default();
        std::fs::write(configs.join("config_oncall"), "[compute]\nregion = eu\n[core]\nproject = p\naccount = bob@x\n")
            .unwrap_or_default();
        let config = dir.path().to_string_lossy().into_owned();
        assert_eq!(resolve(&[("CLOUDSDK_CONFIG", &config)]).name, "default@x");
        std::fs::write(dir.path().join("active_config"), "oncall\n").unwrap_or_default();
        assert_eq!(resolve(&[("CLOUDSDK_CONFIG", &config)]).name, "bob@x");
        let named = resolve(&[("CLOUDSDK_CONFIG", &config), ("CLOUDSDK_ACTIVE_CONFIG_NAME", "default")]);
        assert_eq!(named.name, "default@x");
        // A configuration name that would leave the folder is not followed.
        let escape = resolve(&[("CLOUDSDK_CONFIG", &config), ("CLOUDSDK_ACTIVE_CONFIG_NAME", "../../etc/x")]);
        assert_eq!(escape.source, Source::Local);
        // An empty CLOUDSDK_CORE_ACCOUNT unsets it; junk is not recorded.
        assert_eq!(resolve(&[("CLOUDSDK_CONFIG", &config), ("CLOUDSDK_CORE_ACCOUNT", "")]).source, Source::Local);
        let junk = resolve(&[("CLOUDSDK_CONFIG", &config), ("CLOUDSDK_CORE_ACCOUNT", "a@x\u{1b}[2J")]);
        assert_eq!(junk.source, Source::Local);
    }

    #[test]
    fn a_recorded_identity_prints_with_its_local_account() {
        assert_eq!(display("alice@example.com", "root", "vm"), "alice@example.com (root@vm)");
        assert_eq!(display("", "root", "vm"), "root@vm");
        assert_eq!(display("root@vm", "root", "vm"), "root@vm");
        assert_eq!(display("github:alice", "", ""), "github:alice");
    }
}
