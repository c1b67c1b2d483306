//! Approvals and applied markers of plans in the shared store, next to the runs:
//! `PREFIX/plans/<plan id>/approvals/<approver digest>.json` and
//! `PREFIX/plans/<plan id>/applied.json`, each created with `ifGenerationMatch=0` so it is
//! written once: of two people applying one plan from two machines, one wins.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{Client, GcsError};
use crate::approvals::{Applied, Approval, Store, StoreError, approval_name, checked_id};

pub struct GcsPlans {
    client: Arc<Client>,
    /// Object name prefix, `PREFIX/plans`.
    root: String,
    /// `gs://bucket/PREFIX/plans`, for messages.
    location: String,
}

impl GcsPlans {
    pub fn new(client: Arc<Client>, root: String, location: String) -> GcsPlans {
        GcsPlans { client, root, location }
    }

    fn object(&self, plan_id: &str, rest: &str) -> Result<String, String> {
        Ok(format!("{}/{}/{rest}", self.root, checked_id(plan_id)?))
    }

    fn fail(&self, what: &str, err: &GcsError) -> String {
        format!("cannot {what} in the shared store {}: {err}", self.location)
    }

    fn create(&self, object: &str, kind: &str, value: &impl Serialize) -> Result<(), StoreError> {
        let body = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Io(e.to_string()))?;
        match self.client.insert(object, &body, 0, &[("record", kind)]) {
            Ok(_) => Ok(()),
            Err(GcsError::Precondition) => Err(StoreError::Exists),
            Err(err) => Err(StoreError::Io(self.fail(&format!("store the {kind}"), &err))),
        }
    }

    fn read<T: DeserializeOwned>(&self, object: &str) -> Result<Option<T>, String> {
        let body = match self.client.media(object, None) {
            Ok(body) => body,
            Err(GcsError::NotFound) => return Ok(None),
            Err(err) => return Err(self.fail("read a plan record", &err)),
        };
        serde_json::from_slice(&body).map(Some).map_err(|e| format!("{object}: not a readable record: {e}"))
    }
}

impl Store for GcsPlans {
    fn add_approval(&self, approval: &Approval) -> Result<(), StoreError> {
        let object = self
            .object(&approval.plan_id, &format!("approvals/{}", approval_name(&approval.approver)))
            .map_err(StoreError::Io)?;
        self.create(&object, "approval", approval)
    }

    fn approvals(&self, plan_id: &str) -> Result<Vec<Approval>, String> {
        let prefix = self.object(plan_id, "approvals/")?;
        let objects = self.client.list(&prefix).map_err(|e| self.fail("list the approvals", &e))?;
        let mut approvals = Vec::new();
        for object in objects.iter().filter(|o| o.name.ends_with(".json")) {
            // Listed a moment ago: an approval is never deleted, so a miss is an error.
            match self.read(&object.name)? {
                Some(approval) => approvals.push(approval),
                None => return Err(format!("{}: listed but not readable", object.name)),
            }
        }
        Ok(approvals)
    }

    fn mark_applied(&self, applied: &Applied) -> Result<(), StoreError> {
        let object = self.object(&applied.plan_id, "applied.json").map_err(StoreError::Io)?;
        self.create(&object, "applied", applied)
    }

    fn applied(&self, plan_id: &str) -> Result<Option<Applied>, String> {
        self.read(&self.object(plan_id, "applied.json")?)
    }

    fn describe(&self) -> String {
        self.location.clone()
    }
}
