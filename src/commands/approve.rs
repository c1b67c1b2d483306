//! `runbook approve FILE`: a second person approves a plan.

use super::plan::{now_text, read_plan, refuse, store, valid_approvals};
use super::show_plan::describe;

use std::path::Path;

use chrono::Utc;

use crate::error::{Error, exit};
use runbook_engine::session::{Settings, check_text, interactive};
use runbook_state::approvals::{Approval, StoreError};
use runbook_state::plan_file::PREFIX_LEN;

/// `runbook approve FILE`.
pub fn approve(
    file: &Path,
    comment: Option<String>,
    prefix: Option<String>,
    from_github: bool,
    settings: &Settings,
) -> Result<(), Error> {
    let planned = read_plan(file)?;
    if planned.is_expired(Utc::now()).map_err(refuse)? {
        return Err(refuse(format!(
            "plan {} expired at {}; it cannot be approved: make a new plan",
            planned.short_id(),
            planned.body.expires
        )));
    }
    let comment = comment.map(|c| check_text(&c, "the comment")).transpose()?;
    let (approver, source) = if from_github {
        github_reviewer()?
    } else {
        let me = runbook_state::identity::Identity::current();
        (me.name.clone(), me.source.as_str())
    };
    if approver == planned.body.creator {
        return Err(refuse(format!("{approver} made plan {}; someone else must approve it", planned.short_id())));
    }
    let store = store(settings)?;
    eprint!("{}", describe(&planned, store.as_ref())?);
    match prefix {
        Some(given) => {
            if given.trim().to_ascii_lowercase() != planned.short_id() {
                return Err(refuse(format!("--plan-id {given} does not match plan {}", planned.short_id())));
            }
        }
        None if interactive() => {
            let typed: String = dialoguer::Input::new()
                .with_prompt(format!("Approve as {approver}: type the first {PREFIX_LEN} characters of the plan id"))
                .allow_empty(true)
                .interact_text()
                .map_err(|e| refuse(format!("cannot ask for the plan id: {e}")))?;
            if typed.trim().to_ascii_lowercase() != planned.short_id() {
                eprintln!("not approved: `{}` is not the start of the plan id", typed.trim());
                return Err(Error::Reported(exit::ABORTED));
            }
        }
        None => {
            return Err(refuse(format!(
                "there is no terminal to type the plan id: pass --plan-id with its first {PREFIX_LEN} characters"
            )));
        }
    }
    let approval = Approval {
        plan_id: planned.id.clone(),
        approver: approver.clone(),
        time: now_text(Utc::now()),
        comment,
        source: source.to_owned(),
    };
    match store.add_approval(&approval) {
        Ok(()) => {}
        Err(StoreError::Exists) => {
            return Err(refuse(format!("{approver} approved plan {} already", planned.short_id())));
        }
        Err(StoreError::Io(err)) => return Err(Error::Io(err)),
    }
    let (valid, _) = valid_approvals(&planned, store.as_ref())?;
    eprintln!(
        "Approved plan {} as {approver} ({} of {} approvals; recorded in {}).",
        planned.short_id(),
        valid.len(),
        planned.body.approvals_required,
        store.describe()
    );
    Ok(())
}

/// GitHub mode: the workflow looks up who approved the protected environment's
/// deployment and passes it in; see SECURITY.md for what this does and does not prove.
fn github_reviewer() -> Result<(String, &'static str), Error> {
    if std::env::var("GITHUB_ACTIONS").as_deref() != Ok("true") {
        return Err(refuse("--approver-from-github works only in a GitHub Actions job (GITHUB_ACTIONS=true)"));
    }
    let reviewer = std::env::var("RUNBOOK_GITHUB_REVIEWER").unwrap_or_default();
    let reviewer = reviewer.trim();
    if !runbook_state::identity::github_login(reviewer) {
        return Err(refuse("--approver-from-github: RUNBOOK_GITHUB_REVIEWER must hold the reviewer's GitHub login"));
    }
    Ok((format!("github:{reviewer}"), "github"))
}
