//! What the four-eyes commands share: reading a plan file, where approvals are kept, which
//! approvals count. The commands: `--save-plan` (`save_plan.rs`), `show-plan`, `approve`,
//! `apply`; the break-glass rule for direct runs is the session's (`runbook_engine::session`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::Error;
use runbook_engine::plan::{Outputs, Plan};
use runbook_engine::session::Settings;
use runbook_lang::diagnostic::clip;
use runbook_lang::step::Step;
use runbook_state::approvals::Store;
use runbook_state::dir::StateDir;
use runbook_state::plan_file::{PlanFile, Probe, short};
use runbook_state::signature;

pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

pub fn refuse(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

pub fn now_text(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn secret_step_ids(runbook: &runbook_lang::model::Runbook) -> Vec<String> {
    runbook
        .procedures
        .values()
        .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
        .filter(|s| s.output_is_secret())
        .map(|s| s.id.clone())
        .collect()
}

/// Approvals a plan for this environment needs (at least one): always the runbook's
/// number, never the plan file's.
pub fn required_approvals(runbook: &runbook_lang::model::Runbook, environment: Option<&str>) -> u32 {
    environment.and_then(|e| runbook.environments.get(e)).map_or(0, |e| e.approvals).max(1)
}

pub fn read_plan(file: &Path) -> Result<PlanFile, Error> {
    runbook_state::plan_file::read(file).map_err(refuse)
}

pub fn store(settings: &Settings) -> Result<Box<dyn Store>, Error> {
    let state = StateDir::resolve(settings.state_dir.as_deref()).map_err(Error::Io)?;
    Ok(runbook_state::store::plan_records(settings.store()?.as_ref(), &state))
}

/// How the approvals of a plan are counted: the rule of its environment in the runbook as it
/// is now (never what the plan file says).
pub enum Rule {
    /// `approvals: N`: each approver is who their gcloud account (or user@host, or GitHub
    /// reviewer) says they are — self-asserted, weaker.
    Unsigned,
    /// `approvals: {count: N, signers: FILE}`: each approval is an SSH signature by a key of
    /// FILE, counted once per principal; the author is the principal who signed the plan.
    Signed { signers: PathBuf },
    /// The runbook the plan names cannot be read or checked now (`show-plan` still shows the
    /// plan; `apply` and `approve` refuse it).
    Unknown(String),
}

impl Rule {
    pub fn of(runbook: &runbook_lang::model::Runbook, environment: Option<&str>) -> Rule {
        match environment.and_then(|e| runbook.environments.get(e)).and_then(|e| e.signers.clone()) {
            Some(signers) => Rule::Signed { signers },
            None => Rule::Unsigned,
        }
    }

    /// The rule for a plan, from the runbook file it names.
    pub fn of_plan(planned: &PlanFile) -> Result<Rule, Error> {
        let entry = crate::library::load_entry(&planned.body.runbook.path);
        let runbook = crate::library::checked_runbook(&entry)?;
        Ok(Rule::of(&runbook, planned.body.environment.as_deref()))
    }
}

/// One approval that counts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Counted {
    /// The principal of the allowed-signers file, or the recorded (self-asserted) name.
    pub approver: String,
    /// `ssh`, or the self-asserted source: `gcloud`, `user@host`, `github`.
    pub source: String,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Counted {
    /// How the approver is shown: a verified principal as it is, anything else labelled.
    pub fn shown(&self) -> String {
        match self.source.as_str() {
            "ssh" => format!("{} (SSH signature)", clip(&self.approver)),
            "github" => clip(&self.approver),
            source => format!("{} (self-asserted: {source})", clip(&self.approver)),
        }
    }
}

/// The approvals that count, the author as the rule knows them, and why the others do not.
pub struct Tally {
    pub counted: Vec<Counted>,
    pub author: String,
    pub notes: Vec<String>,
}

/// Who made a plan, as the rule knows them.
pub enum Author {
    /// The recorded creator: self-asserted (unsigned rule), or `github:<actor>` in a GitHub
    /// Actions job, where only GitHub reviewers' approvals count.
    Named(String),
    /// The principal whose signature the plan carries.
    Signed(String),
}

impl Author {
    pub fn name(&self) -> &str {
        match self {
            Author::Named(name) | Author::Signed(name) => name,
        }
    }
}

/// The author of a plan under `rule`: the principal whose signature the plan carries (signed),
/// else the recorded creator — under a signed rule only a `github:` creator, whose plan only
/// GitHub environment reviewers approve.
pub fn author(planned: &PlanFile, rule: &Rule) -> Result<Author, String> {
    let creator = &planned.body.creator;
    match (rule, planned.body.author_signature.as_deref()) {
        (Rule::Unknown(why), _) => Err(format!("cannot tell which approvals count: {why}")),
        (Rule::Unsigned, _) => Ok(Author::Named(creator.clone())),
        (Rule::Signed { signers }, Some(signature)) => {
            let message = runbook_state::plan_file::author_message(&planned.body);
            signature::verified_principal(signers, signature::PLAN_NAMESPACE, signature, &message)
                .map(Author::Signed)
                .map_err(|e| format!("the author's signature of the plan does not count: {e}"))
        }
        (Rule::Signed { .. }, None) if creator.starts_with("github:") => Ok(Author::Named(creator.clone())),
        (Rule::Signed { .. }, None) => Err(
            "the plan carries no signature of its author, and its environment takes signed approvals: the author makes it again with --signing-key".to_owned(),
        ),
    }
}

/// Approvals that count under `rule`: for this id, each approver once, never the author.
/// Under a signed rule an approval counts when its SSH signature verifies against the
/// allowed-signers file (the approver is the principal it gives), or when it is a GitHub
/// environment reviewer's (`github:<login>`, recorded in a GitHub Actions job); a gcloud or
/// user@host name never counts there.
pub fn tally(planned: &PlanFile, store: &dyn Store, rule: &Rule) -> Result<Tally, Error> {
    let mut counted: Vec<Counted> = Vec::new();
    let mut notes = Vec::new();
    let author = match author(planned, rule) {
        Ok(author) => author,
        Err(why) => {
            notes.push(why);
            return Ok(Tally { counted, author: planned.body.creator.clone(), notes });
        }
    };
    let message = runbook_state::plan_file::approval_message(planned);
    for approval in store.approvals(&planned.id).map_err(Error::Io)? {
        let recorded = clip(&approval.approver);
        if approval.plan_id != planned.id {
            notes.push(format!("the approval by {recorded} is for another plan ({})", clip(short(&approval.plan_id))));
            continue;
        }
        let (approver, source) = match (rule, &approval.signature, &author) {
            (Rule::Unsigned | Rule::Unknown(_), _, _) => (approval.approver.clone(), approval.source.clone()),
            (Rule::Signed { .. }, None, _)
                if approval.source == "github" && approval.approver.starts_with("github:") =>
            {
                (approval.approver.clone(), approval.source.clone())
            }
            (Rule::Signed { .. }, None, _) => {
                notes.push(format!("the approval by {recorded} is not signed and does not count here"));
                continue;
            }
            (Rule::Signed { .. }, Some(_), Author::Named(_)) => {
                notes.push(format!(
                    "the signed approval by {recorded} does not count: the plan is not signed by its author"
                ));
                continue;
            }
            (Rule::Signed { signers }, Some(sig), Author::Signed(_)) => {
                match signature::verified_principal(signers, signature::APPROVAL_NAMESPACE, sig, &message) {
                    Ok(principal) => (principal, "ssh".to_owned()),
                    Err(why) => {
                        notes.push(format!("the approval recorded as {recorded} does not count: {why}"));
                        continue;
                    }
                }
            }
        };
        if approver == author.name() {
            notes.push(format!("the approval by {} does not count: they made the plan", clip(&approver)));
        } else if !counted.iter().any(|c| c.approver == approver) {
            counted.push(Counted { approver, source, time: approval.time, comment: approval.comment });
        }
    }
    Ok(Tally { counted, author: author.name().to_owned(), notes })
}

pub fn steps(plan: &Plan) -> Vec<&Step> {
    let mut out = Vec::new();
    if let Some(procedure) = plan.runbook.procedures.get(&plan.procedure) {
        runbook_engine::plan::steps_in_order(&plan.runbook, procedure, &mut out);
    }
    out
}

/// The observations of the read-only steps that ran, in step order.
pub fn probes(plan: &Plan, outputs: &Outputs) -> Vec<Probe> {
    steps(plan)
        .into_iter()
        .filter_map(|step| {
            let value = outputs.values.get(&step.id)?;
            let json = serde_json::to_value(value).ok()?;
            let shown = (!step.output_is_secret())
                .then(|| serde_json::from_str(&plan.redactor.redact(&json.to_string())).ok())
                .flatten();
            Some(Probe::new(&step.id, &json, shown))
        })
        .collect()
}

/// The dry-run text (redacted) and JSON an approver sees.
pub fn rendered(plan: &Plan, outputs: &Outputs) -> Result<(String, serde_json::Value), Error> {
    let dry = runbook_engine::dry_run::build(plan, outputs, true);
    let shown = plan.redactor.redact(&runbook_engine::dry_run::human(plan, &dry));
    let json = serde_json::to_string(&dry).map_err(|e| Error::Io(e.to_string()))?;
    let json = serde_json::from_str(&plan.redactor.redact(&json)).map_err(|e| Error::Io(e.to_string()))?;
    Ok((shown, json))
}
