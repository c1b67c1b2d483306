//! `runbook approve FILE`: a second person approves a plan.

use super::plan::{Author, Rule, author, now_text, read_plan, refuse, store, tally};
use super::show_plan::describe;

use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::error::{Error, exit};
use runbook_engine::session::{Settings, check_text, interactive};
use runbook_lang::diagnostic::clip;
use runbook_state::approvals::{Approval, StoreError};
use runbook_state::plan_file::PREFIX_LEN;
use runbook_state::signature;

/// The default of `--key` (for `approve`) and `--signing-key` (for `--save-plan`).
pub const KEY_VAR: &str = "RUNBOOK_SIGNING_KEY";

/// Options of `runbook approve`.
pub struct ApproveArgs<'a> {
    pub file: &'a Path,
    pub comment: Option<String>,
    /// `--plan-id PREFIX`, when there is no terminal to type it.
    pub prefix: Option<String>,
    pub from_github: bool,
    /// `--key PATH` (else `RUNBOOK_SIGNING_KEY`): what `ssh-keygen -Y sign -f` takes.
    pub key: Option<PathBuf>,
}

/// `runbook approve FILE`.
pub fn approve(args: ApproveArgs<'_>, settings: &Settings) -> Result<(), Error> {
    let planned = read_plan(args.file)?;
    if planned.is_expired(Utc::now()).map_err(refuse)? {
        return Err(refuse(format!(
            "plan {} expired at {}; it cannot be approved: make a new plan",
            planned.short_id(),
            planned.lifetime_end().map_err(refuse)?.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    let comment = args.comment.map(|c| check_text(&c, "the comment")).transpose()?;
    let rule = Rule::of_plan(&planned)?;
    // The approver reads the plan before anything is signed or typed.
    let store = store(settings)?;
    eprint!("{}", describe(&planned, store.as_ref(), &rule)?);
    let explicit = args.key.is_some();
    let key = args.key.or_else(|| std::env::var_os(KEY_VAR).filter(|k| !k.is_empty()).map(PathBuf::from));
    let (approver, source, signature) = match (&rule, args.from_github) {
        (Rule::Signed { signers }, false) => {
            let key = key.ok_or_else(|| {
                refuse(format!(
                    "the plan's environment takes signed approvals: pass --key PATH (a private key, or a public key whose private half is in ssh-agent), or set {KEY_VAR}"
                ))
            })?;
            let Author::Signed(author) = author(&planned, &rule).map_err(refuse)? else {
                return Err(refuse(format!(
                    "plan {} was made in a GitHub Actions job without an author's signature: only the GitHub environment's reviewers approve it",
                    planned.short_id()
                )));
            };
            let message = runbook_state::plan_file::approval_message(&planned);
            let signed =
                signature::sign(&key, signature::APPROVAL_NAMESPACE, &message, interactive()).map_err(refuse)?;
            let principal = signature::verified_principal(signers, signature::APPROVAL_NAMESPACE, &signed, &message)
                .map_err(|why| refuse(format!("your approval would not count: {why}")))?;
            if principal == author {
                return Err(refuse(format!(
                    "{} made plan {}; someone else must approve it",
                    clip(&principal),
                    planned.short_id()
                )));
            }
            (principal, "ssh", Some(signed))
        }
        (Rule::Unknown(why), _) => return Err(refuse(why.clone())),
        (Rule::Unsigned, false) if explicit => {
            return Err(refuse(
                "the plan's environment takes unsigned approvals (`approvals: N`): approve without --key (or make it `approvals: {count: N, signers: FILE}`)",
            ));
        }
        (_, true) => {
            let (name, source) = github_reviewer()?;
            (name, source, None)
        }
        (Rule::Unsigned, false) => {
            let me = runbook_state::identity::Identity::current();
            (me.name.clone(), me.source.as_str(), None)
        }
    };
    if signature.is_none() && approver == planned.body.creator {
        return Err(refuse(format!(
            "{} made plan {}; someone else must approve it",
            clip(&approver),
            planned.short_id()
        )));
    }
    let shown = clip(&approver);
    match args.prefix {
        Some(given) => {
            if given.trim().to_ascii_lowercase() != planned.short_id() {
                return Err(refuse(format!("--plan-id {} does not match plan {}", clip(&given), planned.short_id())));
            }
        }
        None if interactive() => {
            let typed: String = dialoguer::Input::new()
                .with_prompt(format!("Approve as {shown}: type the first {PREFIX_LEN} characters of the plan id"))
                .allow_empty(true)
                .interact_text()
                .map_err(|e| refuse(format!("cannot ask for the plan id: {e}")))?;
            if typed.trim().to_ascii_lowercase() != planned.short_id() {
                eprintln!("not approved: `{}` is not the start of the plan id", clip(typed.trim()));
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
        signature,
    };
    match store.add_approval(&approval) {
        Ok(()) => {}
        Err(StoreError::Exists) => {
            return Err(refuse(format!("{shown} approved plan {} already", planned.short_id())));
        }
        Err(StoreError::Io(err)) => return Err(Error::Io(err)),
    }
    let tally = tally(&planned, store.as_ref(), &rule)?;
    let label = match (&rule, source) {
        (_, "github") => "GitHub environment reviewer",
        (Rule::Signed { .. }, _) => "signed",
        (Rule::Unsigned | Rule::Unknown(_), _) => "self-asserted, unsigned",
    };
    eprintln!(
        "Approved plan {} as {shown} ({label}; {} of {} approvals; recorded in {}).",
        planned.short_id(),
        tally.counted.len(),
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
