//! Where approvals of plans and "this plan was applied" markers are kept.
//!
//! Both are write-once records: an approval or a marker is created only if absent
//! (`O_EXCL` locally; `ifGenerationMatch=0` in a shared bucket), so two people applying the
//! same plan at once cannot both succeed. [`Store`] is the seam: the local state dir is
//! one implementation, a shared store plugs in beside it.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One person's approval of one plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    pub plan_id: String,
    pub approver: String,
    /// RFC 3339, UTC.
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// How the approver was identified: `ssh` (a signature; `approver` is the principal the
    /// allowed-signers file gave), or the self-asserted `gcloud`, `user@host`, `github`.
    pub source: String,
    /// The approver's SSH signature over [`crate::plan_file::approval_message`]; `apply`
    /// verifies it again and believes nothing else in this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A plan was applied (plans are single-use).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    pub plan_id: String,
    pub run_id: String,
    pub by: String,
    pub time: String,
    /// The run's [`crate::record::Header::inputs_digest`] (absent in marks of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

#[derive(Debug)]
pub enum StoreError {
    /// The record exists already (create-if-absent lost).
    Exists,
    Io(String),
}

pub trait Store {
    /// Records an approval; `Exists` when this approver already approved this plan.
    fn add_approval(&self, approval: &Approval) -> Result<(), StoreError>;
    /// Every approval recorded for the plan id (as stored: the caller checks them).
    fn approvals(&self, plan_id: &str) -> Result<Vec<Approval>, String>;
    /// Marks the plan applied; `Exists` when it was applied before.
    fn mark_applied(&self, applied: &Applied) -> Result<(), StoreError>;
    fn applied(&self, plan_id: &str) -> Result<Option<Applied>, String>;
    /// Where the records are, for messages.
    fn describe(&self) -> String;
}

/// `<state dir>/plans/<plan id>/approvals/<approver digest>.json` and `.../applied.json`.
pub struct LocalStore {
    pub root: PathBuf,
}

/// The plan id, if it may go into a path or an object name: the id comes from a file a
/// person may hand us, so only hex is let through.
pub(crate) fn checked_id(plan_id: &str) -> Result<&str, String> {
    if plan_id.is_empty() || !plan_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{plan_id}` is not a plan id"));
    }
    Ok(plan_id)
}

/// The file (object) name of one approver's approval: a digest, so any identity fits.
pub(crate) fn approval_name(approver: &str) -> String {
    let digest = crate::plan_file::sha256_hex(approver.as_bytes());
    format!("{}.json", &digest[..16])
}

impl LocalStore {
    fn plan_dir(&self, plan_id: &str) -> Result<PathBuf, String> {
        Ok(self.root.join(checked_id(plan_id)?))
    }
}

fn create_new(path: &std::path::Path, value: &impl Serialize) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", parent.display())))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| StoreError::Io(e.to_string()))?;
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(StoreError::Exists),
        Err(e) => return Err(StoreError::Io(format!("cannot create {}: {e}", path.display()))),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", path.display())))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &std::path::Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a readable record: {e}", path.display()))
}

impl Store for LocalStore {
    fn add_approval(&self, approval: &Approval) -> Result<(), StoreError> {
        let dir = self.plan_dir(&approval.plan_id).map_err(StoreError::Io)?.join("approvals");
        create_new(&dir.join(approval_name(&approval.approver)), approval)
    }

    fn approvals(&self, plan_id: &str) -> Result<Vec<Approval>, String> {
        let dir = self.plan_dir(plan_id)?.join("approvals");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
        paths.sort();
        paths.iter().map(|p| read_json(p)).collect()
    }

    fn mark_applied(&self, applied: &Applied) -> Result<(), StoreError> {
        let path = self.plan_dir(&applied.plan_id).map_err(StoreError::Io)?.join("applied.json");
        create_new(&path, applied)
    }

    fn applied(&self, plan_id: &str) -> Result<Option<Applied>, String> {
        let path = self.plan_dir(plan_id)?.join("applied.json");
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_or_marker_is_created_only_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = LocalStore { root: dir.path().to_path_buf() };
        let approval = Approval {
            plan_id: "ab12".into(),
            approver: "b@x".into(),
            time: "t".into(),
            comment: None,
            source: "gcloud".into(),
            signature: None,
        };
        assert!(store.add_approval(&approval).is_ok());
        assert!(matches!(store.add_approval(&approval), Err(StoreError::Exists)));
        assert_eq!(store.approvals("ab12").map(|a| a.len()).unwrap_or_default(), 1);
        let applied =
            Applied { plan_id: "ab12".into(), run_id: "r".into(), by: "a@x".into(), time: "t".into(), inputs: None };
        assert!(store.mark_applied(&applied).is_ok());
        assert!(matches!(store.mark_applied(&applied), Err(StoreError::Exists)));
        assert!(store.approvals("../etc").is_err());
    }
}
