//! The saved plan (`--save-plan FILE`): what an approver reads and what `apply` runs.
//!
//! The file is one line `runbook plan <id>` followed by the plan as JSON. The id is the
//! sha256 of exactly those JSON bytes, so any change to the file — a param, a probe's
//! observation, an expiry — gives it another id, and approvals recorded against the old id
//! no longer count. Secrets never enter the file: they are given again at apply.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when a field changes meaning; `apply` refuses plans of another format.
pub const FORMAT: u32 = 1;
const MAGIC: &str = "runbook plan ";
/// How many characters of the id an approver types.
pub const PREFIX_LEN: usize = 8;

/// How a plan id (or a sha256) is shown: its first [`PREFIX_LEN`] characters.
pub fn short(id: &str) -> &str {
    id.get(..PREFIX_LEN).unwrap_or(id)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    pub format: u32,
    pub tool_version: String,
    pub runbook: RunbookCopy,
    pub procedure: String,
    pub environment: Option<String>,
    /// Approvals by people other than the creator that `apply` needs (at least 1).
    pub approvals_required: u32,
    /// Non-secret params, as given (or defaulted).
    pub params: Vec<(String, String)>,
    /// Secret params the procedure uses: never written, given again at apply.
    pub secret_params: Vec<String>,
    /// Answers to prompts and manual steps; answers to secret prompts are left out.
    pub answers: Vec<(String, String)>,
    /// `--var` overrides.
    pub vars: Vec<(String, String)>,
    /// What every read-only step observed when the plan was made.
    pub probes: Vec<Probe>,
    /// The rendered procedure as a dry-run prints it (what the approver approves).
    pub shown: String,
    /// The same, as `--dry-run --output json` gives it.
    pub rendered: serde_json::Value,
    pub creator: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub expires: String,
    /// Made against the local fake (`--simulate`, or a `runbook simulate` server that proved
    /// itself): shown as REHEARSAL wherever the plan is.
    #[serde(default)]
    pub rehearsal: bool,
    /// The procedure's `assert:` steps, and whether each held when the plan was made.
    #[serde(default)]
    pub asserts: Vec<AssertCheck>,
    /// The author's SSH signature (namespace [`crate::signature::PLAN_NAMESPACE`]) over
    /// [`author_message`]: how an environment with signed approvals knows who made the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_signature: Option<String>,
}

/// An `assert:` step as the approver sees it: `holds` is `Some(true)` when everything it
/// reads was known when the plan was made (probes, answers, params) and it held; `None` when
/// it reads what runs before it, and is checked only when the run gets there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AssertCheck {
    pub step: String,
    pub expr: String,
    pub holds: Option<bool>,
}

/// What the author signs: the digest of the plan as written without the signature itself.
/// Anything else in the plan changes it, so an author's signature cannot be lifted onto
/// another plan.
pub fn author_message(body: &PlanBody) -> String {
    let unsigned = PlanBody { author_signature: None, ..body.clone() };
    let json = serde_json::to_string_pretty(&unsigned).unwrap_or_default();
    format!("runbook plan v1\ncontent-sha256: {}\n", sha256_hex(json.as_bytes()))
}

/// What an approver signs: the plan id, the runbook's sha256, the environment and the expiry,
/// one per line (a canonical text; the namespace is [`crate::signature::APPROVAL_NAMESPACE`]).
pub fn approval_message(plan: &PlanFile) -> String {
    format!(
        "runbook approval v1\nplan: {}\nrunbook-sha256: {}\nenvironment: {}\nexpires: {}\n",
        plan.id,
        plan.body.runbook.sha256,
        plan.body.environment.as_deref().unwrap_or("-"),
        plan.body.expires
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookCopy {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub text: String,
}

/// One read-only step's observation. A secret step's output is not written, only its
/// digest, so apply can still tell that it changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub step: String,
    pub sha256: String,
    pub output: Option<serde_json::Value>,
}

impl Probe {
    /// `shown` is the output as the plan may show it (redacted), `None` for a secret step.
    pub fn new(step: &str, output: &serde_json::Value, shown: Option<serde_json::Value>) -> Probe {
        let text = serde_json::to_string(output).unwrap_or_default();
        Probe { step: step.to_owned(), sha256: sha256_hex(text.as_bytes()), output: shown }
    }
}

/// A plan file read back and checked against its id.
/// The longest a plan lives, whatever its file says (`--plan-ttl` is at most this).
pub const MAX_TTL: chrono::TimeDelta = chrono::TimeDelta::days(30);

#[derive(Debug)]
pub struct PlanFile {
    pub id: String,
    pub body: PlanBody,
}

impl PlanFile {
    pub fn short_id(&self) -> &str {
        short(&self.id)
    }

    pub fn expires(&self) -> Result<chrono::DateTime<chrono::Utc>, String> {
        chrono::DateTime::parse_from_rfc3339(&self.body.expires)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| format!("the plan's expiry `{}` is not a time: {e}", self.body.expires))
    }

    /// When the plan stops being valid: its expiry, but never more than [`MAX_TTL`] after its
    /// creation (`--plan-ttl` is at most that, so a later expiry was written by hand).
    pub fn lifetime_end(&self) -> Result<chrono::DateTime<chrono::Utc>, String> {
        Ok(self.expires()?.min(self.created()? + MAX_TTL))
    }

    fn created(&self) -> Result<chrono::DateTime<chrono::Utc>, String> {
        chrono::DateTime::parse_from_rfc3339(&self.body.created)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| format!("the plan's creation time `{}` is not a time: {e}", self.body.created))
    }

    /// Expired, or never valid: made (it says) more than a clock's skew in the future.
    pub fn is_expired(&self, now: chrono::DateTime<chrono::Utc>) -> Result<bool, String> {
        Ok(self.lifetime_end()? <= now || self.created()? > now + chrono::TimeDelta::minutes(10))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes the plan (aside, then renamed into place) and returns its id.
pub fn write(path: &Path, body: &PlanBody) -> Result<String, String> {
    let json = serde_json::to_string_pretty(body).map_err(|e| format!("cannot encode the plan: {e}"))?;
    let id = sha256_hex(json.as_bytes());
    let text = format!("{MAGIC}{id}\n{json}");
    let aside = path.with_extension("plan-new");
    std::fs::write(&aside, text)
        .and_then(|()| std::fs::rename(&aside, path))
        .map_err(|e| format!("cannot write the plan {}: {e}", path.display()))?;
    Ok(id)
}

/// Largest plan file read: the bound of a runbook file (`runbook_lang::checker::MAX_FILE_BYTES`,
/// which this crate cannot import). A plan holds its runbook's text and the rendered
/// procedure, a few pages; a bigger file is not a plan this tool wrote.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A plan file's bytes, read like a runbook file: a regular file only (a FIFO, a device such
/// as `/dev/zero` behind a symlink, a folder are refused at once, never read or waited on),
/// and at most [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    read_regular(path, MAX_FILE_BYTES, "plan")
}

/// A file's bytes, read like a runbook file: a regular file only (a FIFO, a device such as
/// `/dev/zero` behind a symlink, a folder are refused at once, never read or waited on), at
/// most `max` bytes. Errors say `cannot read the <what> <path>: why`.
pub(crate) fn read_regular(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let refuse = |why: &str| format!("cannot read the {what} {}: {why}", path.display());
    // Checked before opening: opening a FIFO for reading waits for a writer.
    let meta = std::fs::metadata(path).map_err(|e| refuse(&e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse("not a regular file"));
    }
    // Opened without waiting (O_NONBLOCK) and checked again, so a file swapped for a FIFO
    // between the two checks cannot hang the command either.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| refuse(&e.to_string()))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(refuse("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| refuse(&e.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(refuse(&format!("larger than {} KiB; a {what} is much smaller", max >> 10)));
    }
    Ok(bytes)
}

/// Reads a plan and refuses one whose content does not match its id.
pub fn read(path: &Path) -> Result<PlanFile, String> {
    let bytes = read_bounded(path)?;
    let not_a_plan = || format!("{} is not a runbook plan (it must start with `{MAGIC}<id>`)", path.display());
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(not_a_plan)?;
    let (first, rest) = bytes.split_at(newline);
    let json = rest.get(1..).unwrap_or_default();
    let first = std::str::from_utf8(first).map_err(|_| not_a_plan())?;
    let id = first.strip_prefix(MAGIC).ok_or_else(not_a_plan)?.trim_end_matches('\r');
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(not_a_plan());
    }
    let actual = sha256_hex(json);
    if actual != id {
        return Err(format!(
            "the plan file {} was altered: its content does not match its id {} (it hashes to {}); make and approve a new plan",
            path.display(),
            &id[..PREFIX_LEN],
            &actual[..PREFIX_LEN]
        ));
    }
    let body: PlanBody =
        serde_json::from_slice(json).map_err(|e| format!("{}: not a readable plan: {e}", path.display()))?;
    if body.format != FORMAT {
        return Err(format!(
            "{} is a plan of format {}, this runbook {} reads format {FORMAT}",
            path.display(),
            body.format,
            env!("CARGO_PKG_VERSION")
        ));
    }
    Ok(PlanFile { id: id.to_owned(), body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> PlanBody {
        PlanBody {
            format: FORMAT,
            tool_version: "0".into(),
            runbook: RunbookCopy { name: "r".into(), path: "r.yaml".into(), sha256: "s".into(), text: "t".into() },
            procedure: "p".into(),
            environment: None,
            approvals_required: 1,
            params: vec![("a".into(), "1".into())],
            secret_params: Vec::new(),
            answers: Vec::new(),
            vars: Vec::new(),
            probes: Vec::new(),
            shown: String::new(),
            rendered: serde_json::Value::Null,
            creator: "a@x".into(),
            created: "2026-01-01T00:00:00Z".into(),
            expires: "2026-01-01T01:00:00Z".into(),
            rehearsal: false,
            asserts: Vec::new(),
            author_signature: None,
        }
    }

    #[test]
    fn a_changed_byte_changes_the_id_and_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("p.plan");
        let id = write(&path, &body()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&path).map(|p| p.id).unwrap_or_default(), id);
        let text = std::fs::read_to_string(&path).unwrap_or_default().replace("\"1\"", "\"2\"");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let err = read(&path).err().unwrap_or_default();
        assert!(err.contains("was altered"), "{err}");
    }

    #[test]
    fn the_author_message_ignores_only_the_signature() {
        let plain = body();
        let signed = PlanBody { author_signature: Some("sig".into()), ..body() };
        assert_eq!(author_message(&plain), author_message(&signed));
        let other = PlanBody { procedure: "q".into(), ..body() };
        assert_ne!(author_message(&plain), author_message(&other));
    }

    #[test]
    fn a_secret_probe_keeps_only_its_digest() {
        let probe = Probe::new("s", &serde_json::json!({"output": "hunter22"}), None);
        assert!(probe.output.is_none());
        assert_eq!(probe.sha256.len(), 64);
    }
}
