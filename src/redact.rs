//! The one redactor: every secret value is registered here and masked wherever text leaves
//! `runbook` (terminal, child output streamed through, journal, error messages, JSON).

use std::sync::{Arc, RwLock};

pub const MASK: &str = "********";

/// Shorter values are not masked: replacing every `a` in the output would hide everything
/// and protect nothing. Secret params are checked to be at least this long.
pub const MIN_SECRET_LEN: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn add(&self, secret: &str) {
        let secret = secret.trim_end_matches(['\n', '\r']);
        if secret.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let Ok(mut secrets) = self.secrets.write() else { return };
        if !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_owned());
            // Longest first, so a secret that contains another is masked whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        // A multi-line secret (a key file) is also masked line by line, since child output
        // is streamed a line at a time.
        if secret.contains('\n') {
            for line in secret.lines() {
                if line.trim().chars().count() >= MIN_SECRET_LEN && !secrets.iter().any(|s| s == line) {
                    secrets.push(line.to_owned());
                }
            }
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let Ok(secrets) = self.secrets.read() else { return MASK.to_owned() };
        let mut out = text.to_owned();
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.read().map_or(true, |s| s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_secret_first_and_multiline_secrets_by_line() {
        let r = Redactor::default();
        r.add("hunter2");
        r.add("postgres://app:hunter2@10.0.0.1/app");
        r.add("line-one\nline-two");
        assert_eq!(r.redact("url=postgres://app:hunter2@10.0.0.1/app pw=hunter2"), "url=******** pw=********");
        assert_eq!(r.redact("got line-two"), "got ********");
        r.add("ab");
        assert_eq!(r.redact("ab"), "ab");
    }
}
