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
    /// How an object's name is printed (escaped, cut).
    show: super::Show,
}

impl GcsPlans {
    pub fn new(client: Arc<Client>, root: String, location: String, show: super::Show) -> GcsPlans {
        GcsPlans { client, root, location, show }
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
        serde_json::from_slice(&body).map(Some).map_err(|e| {
            // The plan's part of the name is long and ours; what someone added is the rest.
            let rest = object.strip_prefix(&self.root).unwrap_or(object).trim_start_matches('/');
            let rest = rest.split_once('/').map_or(rest, |(_, rest)| rest);
            format!("{}: not a readable record (in {}): {e}", super::shown(self.show, rest), self.location)
        })
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
            // Anyone who may create objects can add one here: one that is not an approval
            // is named and skipped, never allowed to block the plan for everyone.
            match self.read(&object.name) {
                Ok(Some(approval)) => approvals.push(approval),
                Ok(None) => return Err(format!("{}: listed but not readable", super::shown(self.show, &object.name))),
                Err(why) => eprintln!("warning: skipped an object that is not an approval: {why}"),
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
