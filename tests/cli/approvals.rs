//! Approvals that cannot be forged, stretched or hidden (issue 22): the count is the
//! runbook's, signatures are OpenSSH's, an approval covers exactly the approved run.

use super::plans::{SVC, apply, approve, as_user, plan_path, sandbox, save_plan, sha256_hex, switched};

/// Rewrites the plan file's JSON with `edit` and labels it with its own hash again, as an
/// author who wants another plan than the one approved would.
fn relabel(sandbox: &crate::support::Sandbox, edit: impl Fn(&mut serde_json::Value)) -> String {
    let path = plan_path(sandbox);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let json = text.split_once('\n').map(|(_, j)| j).unwrap_or_default();
    let mut value: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
    edit(&mut value);
    let json = serde_json::to_string_pretty(&value).unwrap_or_else(|e| panic!("{e}"));
    let id = sha256_hex(json.as_bytes());
    std::fs::write(&path, format!("runbook plan {id}\n{json}")).unwrap_or_else(|e| panic!("{e}"));
    id
}

#[test]
fn a_plan_whose_approval_count_was_lowered_is_refused_as_changed() {
    let sandbox = sandbox();
    sandbox.file("svc.yaml", &SVC.replace("approvals: 1", "approvals: 2"));
    save_plan(&sandbox, "a@x", &[]).success();
    relabel(&sandbox, |plan| plan["approvals_required"] = 1.into());
    approve(&sandbox, "b@x").success();
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("was changed") && out.stderr().contains("needs 2"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "", "nothing ran");
    assert!(sandbox.journals().is_empty());
}
