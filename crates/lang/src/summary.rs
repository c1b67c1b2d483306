//! What start-up needs of a checked runbook: its name, procedures, environments and param
//! flags, for the command line and `runbook list`. It is small and serialisable, so the
//! [`crate::cache`] can keep it keyed by the file's content: building the command line then
//! does not check every runbook of the folder on every call (issue 13). Running a procedure
//! still checks that runbook in full.

use serde::{Deserialize, Serialize};

use crate::checker::Checked;
use crate::model::Runbook;
use crate::param::{Param, ParamType};

/// One runbook file as start-up sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The `runbook:` name as written, even when the file has errors.
    pub name: Option<String>,
    /// Present only when the file checked without errors.
    pub runbook: Option<RunbookSummary>,
    /// Diagnostics of the check (errors and warnings), for `list`.
    pub problems: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunbookSummary {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub environments: Vec<EnvironmentSummary>,
    pub procedures: Vec<ProcedureSummary>,
    /// Ids of the steps whose `--answer` is a secret: masked if the parser quotes them.
    #[serde(default)]
    pub secret_answers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentSummary {
    pub name: String,
    pub protected: bool,
    /// Approvals a saved plan needs before it runs here (0: none; direct runs allowed).
    #[serde(default)]
    pub approvals: u32,
    /// They are SSH signatures checked against an allowed-signers file.
    #[serde(default)]
    pub signed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcedureSummary {
    pub name: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    /// The params it needs (its own and those of what it includes), in first-seen order.
    pub params: Vec<ParamSummary>,
    /// The prompts `--answer ID=VALUE` answers: each step id with its name.
    #[serde(default)]
    pub answers: Vec<(String, String)>,
}

/// A param's flag as the command line shows and parses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSummary {
    pub name: String,
    pub flag: String,
    /// `string`, `int`, `bool`, ...
    pub type_name: String,
    /// Allowed values of an `enum` param (empty otherwise).
    pub values: Vec<String>,
    /// The param's help followed by its facts (`[string; pattern ...; required]`).
    pub help: String,
    pub default: Option<String>,
    /// Required and without a default.
    pub required: bool,
    pub secret: bool,
}

impl Summary {
    pub fn of(checked: &Checked) -> Summary {
        Summary {
            name: checked.name.clone(),
            runbook: checked.runbook.as_deref().map(RunbookSummary::of),
            problems: checked.diagnostics.len(),
        }
    }
}

impl RunbookSummary {
    pub fn of(runbook: &Runbook) -> RunbookSummary {
        RunbookSummary {
            name: runbook.name.clone(),
            title: runbook.title.clone(),
            description: runbook.description.clone(),
            environments: runbook
                .environments
                .values()
                .map(|e| EnvironmentSummary {
                    name: e.name.clone(),
                    protected: e.protected,
                    approvals: e.approvals,
                    signed: e.signers.is_some(),
                })
                .collect(),
            procedures: runbook
                .procedures
                .values()
                .map(|p| ProcedureSummary {
                    name: p.name.clone(),
                    summary: p.summary.clone(),
                    description: p.description.clone(),
                    params: runbook.params_of(&p.name).into_iter().map(ParamSummary::of).collect(),
                    answers: runbook
                        .steps_of(&p.name)
                        .into_iter()
                        .filter(|s| matches!(s.kind, crate::step::StepKind::Prompt(_)))
                        .map(|s| (s.id.clone(), s.name.clone().unwrap_or_default()))
                        .collect(),
                })
                .collect(),
            secret_answers: runbook
                .procedures
                .values()
                .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
                .filter(|s| s.output_is_secret())
                .map(|s| s.id.clone())
                .collect(),
        }
    }
}

impl ParamSummary {
    fn of(param: &Param) -> ParamSummary {
        ParamSummary {
            name: param.name.clone(),
            flag: param.flag(),
            type_name: param.ty.name().to_owned(),
            values: match &param.ty {
                ParamType::Enum(values) => values.clone(),
                _ => Vec::new(),
            },
            help: help(param),
            default: param.default.clone(),
            required: param.required && param.default.is_none(),
            secret: param.secret,
        }
    }

    pub fn is_bool(&self) -> bool {
        self.type_name == ParamType::Bool.name()
    }
}

/// The help text of a param's flag: its `help:` and then its type and constraints.
fn help(param: &Param) -> String {
    let mut help = param.help.clone().unwrap_or_default();
    let mut facts = vec![param.ty.name().to_owned()];
    if let Some(pattern) = &param.pattern {
        facts.push(format!("pattern {}", pattern.as_str().trim_start_matches("^(?:").trim_end_matches(")$")));
    }
    if let Some(bound) = &param.not_after {
        facts.push(format!("not after {}", String::from(bound.clone())));
    }
    if let Some(bound) = &param.not_before {
        facts.push(format!("not before {}", String::from(bound.clone())));
    }
    if let (ParamType::Enum(values), true) = (&param.ty, param.secret) {
        facts.push(format!("one of {}", values.join(", ")));
    }
    if param.secret {
        facts.push(format!("secret; prefer the env var {}", crate::param::secret_env_name(&param.name)));
    }
    if param.required && param.default.is_none() && param.ty != ParamType::Bool {
        facts.push("required".into());
    }
    if !help.is_empty() {
        help.push(' ');
    }
    help.push_str(&format!("[{}]", facts.join("; ")));
    help
}
