//! The JSON Schema of the runbook format, for editors (`# yaml-language-server: $schema=…`).
//!
//! Runbooks are read through a spanned node tree (see `checker`), not through these types;
//! they exist to describe the format. A test keeps their keys equal to the keys the checker
//! accepts, and another keeps `schema/runbook.schema.json` equal to what they generate.

// These types describe the format for schemars; nothing deserializes into them, so their
// fields are never read.
#![allow(dead_code)]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// A runbook file: one runbook with its environments, params and procedures.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runbook")]
pub struct RunbookFile {
    /// The command name (`runbook <name> ...`): lowercase letters, digits and `-`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"))]
    pub runbook: String,
    /// One line (optional; docs fall back to the runbook name).
    pub title: Option<String>,
    /// Markdown prose: when to use the runbook, trigger conditions.
    pub description: Option<String>,
    /// Markdown prose: constraints, preventive controls.
    pub notes: Option<String>,
    /// Named targets; with any, `--env` is required.
    pub environments: Option<BTreeMap<String, EnvironmentDef>>,
    /// Typed inputs, given as `--kebab-case` flags.
    pub params: Option<BTreeMap<String, ParamDef>>,
    /// Named procedures (`kebab-case`).
    pub procedures: BTreeMap<String, ProcedureDef>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentDef {
    /// Values templates read as `{{ vars.NAME }}`; every var used must exist in every environment.
    pub vars: Option<BTreeMap<String, String>>,
    /// The operator types the environment's name before a run.
    pub protected: Option<bool>,
    /// How many people other than the plan's author must approve a saved plan
    /// (`runbook approve`) before `runbook apply` runs it; a direct run needs `--break-glass`.
    pub approvals: Option<ApprovalsDef>,
    pub description: Option<String>,
    /// In a rehearsal (`--simulate`, or a run pointed at `runbook simulate`), these vars are
    /// replaced by the local fake's base URL joined to the path given here (e.g.
    /// `api_base_url: /app`), so nothing reaches the real application. `--var` still wins.
    /// `notify: true` makes rehearsals send the environment's notifications too, each
    /// message prefixed `[REHEARSAL]` (they send nothing by default).
    pub rehearsal: Option<BTreeMap<String, RehearsalValue>>,
    /// Webhooks that hear of a run in this environment: its start, stages, failures,
    /// break-glass, undo and end. Delivery never blocks or fails the run.
    pub notify: Option<Vec<NotifyDef>>,
}

/// `N`, unsigned; or `{count: N, signers: FILE}`: N approvals, each an SSH signature by a
/// key of the allowed-signers file FILE (git's `allowedSignersFile` format, relative to the
/// runbook file). The plan's author never counts.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ApprovalsDef {
    Count(#[schemars(range(min = 0, max = 10))] u32),
    Signed(SignedApprovalsDef),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedApprovalsDef {
    #[schemars(range(min = 0, max = 10))]
    pub count: u32,
    /// The allowed-signers file, relative to the runbook file.
    pub signers: String,
}

/// A var's path on the local fake, or `notify: true|false`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RehearsalValue {
    Path(String),
    Notify(bool),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyDef {
    /// The environment variable that holds the webhook URL (a credential: never the URL itself).
    #[schemars(regex(pattern = r"^[A-Z_][A-Z0-9_]*$"))]
    pub webhook_env: String,
    /// `slack`: a Slack incoming-webhook message; `json`: the `--output json` event with its
    /// run (schema/notification.schema.json). Default: slack.
    pub format: Option<NotifyFormatDef>,
    /// The events sent (default: all of them).
    pub events: Option<Vec<NotifyEventDef>>,
    /// How long one message may take, retries included (default 5s, at most 30s).
    pub timeout: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormatDef {
    Slack,
    Json,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEventDef {
    Started,
    Stage,
    Failed,
    BreakGlass,
    Undo,
    Finished,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TypeName {
    String,
    Int,
    Bool,
    Timestamp,
    Duration,
    Url,
    Enum,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    #[serde(rename = "type")]
    pub ty: Option<TypeName>,
    /// Default: true unless a `default` is given (`bool` params default to false).
    pub required: Option<bool>,
    pub default: Option<Scalar>,
    pub help: Option<String>,
    /// A regular expression the whole value must match.
    pub pattern: Option<String>,
    /// Never printed, never on a command line.
    pub secret: Option<bool>,
    /// For timestamps: `now`, `now-7d`, `now+1h` or an RFC 3339 time.
    pub not_after: Option<String>,
    pub not_before: Option<String>,
    /// For `type: enum`.
    pub values: Option<Vec<String>>,
    /// A valid value, shown when a value is refused.
    pub example: Option<String>,
    /// What `pattern` means in words, shown instead of the regular expression.
    pub pattern_help: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    String(String),
    Int(i64),
    Bool(bool),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcedureDef {
    /// One line (optional; docs fall back to the procedure name).
    pub summary: Option<String>,
    pub description: Option<String>,
    /// Names of top-level params this procedure takes.
    pub params: Option<Vec<String>>,
    pub stages: Vec<StageDef>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageDef {
    pub name: String,
    pub description: Option<String>,
    pub steps: Vec<StepDef>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EffectName {
    Read,
    Mutate,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaptureName {
    Text,
    Json,
    Lines,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfirmName {
    Typed,
}

/// A step: an `id` and exactly one of `run`, `shell`, `http`, `manual`, `prompt`, `assert`,
/// `include`, `watch`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Unique in the runbook; later steps read `steps.<id>.output`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub id: String,
    pub name: Option<String>,
    /// A program and its arguments (templates); no shell.
    pub run: Option<Vec<String>>,
    /// A `sh -c` script, never templated; values come in as `args` ($1...) or `env`.
    pub shell: Option<String>,
    pub http: Option<HttpDef>,
    /// Instructions the operator carries out and acknowledges.
    pub manual: Option<String>,
    /// A question; the answer is `steps.<id>.output`.
    pub prompt: Option<String>,
    /// An expression that must be true.
    pub assert: Option<String>,
    /// Another procedure of this runbook.
    pub include: Option<String>,
    /// A read sampled again and again until its condition holds.
    pub watch: Option<WatchDef>,
    /// An expression; the step is skipped when it is false.
    pub when: Option<String>,
    /// A mutating step: an expression over what read steps saw that says the step's effect
    /// already holds; then it is journaled as already done and not run again.
    pub done_if: Option<String>,
    /// Shown and journaled when Ctrl-C or a timeout ends the step: what keeps running and
    /// how to look at it.
    pub on_interrupt: Option<String>,
    /// `read` steps are safe probes; default `mutate`.
    pub effect: Option<EffectName>,
    /// A duration such as `90s`, `5m`, `1h`.
    pub timeout: Option<String>,
    pub retry: Option<RetryDef>,
    pub confirm: Option<ConfirmName>,
    /// What the operator types for `confirm: typed` (a template).
    pub target: Option<String>,
    /// `abort` (default), `continue`, or a procedure to run.
    pub on_failure: Option<String>,
    /// The step's output (or a prompt's answer) is secret.
    pub secret: Option<bool>,
    /// An earlier step of the same procedure that started the operation this step waits
    /// on: when this step fails, `runbook resume` starts again at that step.
    pub restarts_from: Option<String>,
    /// This step passing means the service has recovered: the run's time to recovery ends
    /// when the first such step passes.
    pub recovery: Option<bool>,
    pub env: Option<BTreeMap<String, String>>,
    pub stdin: Option<String>,
    pub cwd: Option<String>,
    pub capture: Option<CaptureName>,
    /// For `shell`: positional arguments (templates).
    pub args: Option<Vec<String>>,
    /// For `prompt`: the answer's type.
    #[serde(rename = "type")]
    pub ty: Option<TypeName>,
    /// For `prompt`: a list, or an expression over earlier outputs.
    pub choices: Option<ChoicesDef>,
    pub default: Option<String>,
    pub pattern: Option<String>,
    /// For `prompt`: a valid answer, shown when an answer is refused.
    pub example: Option<String>,
    /// For `prompt`: what `pattern` means in words, shown instead of the regular expression.
    pub pattern_help: Option<String>,
    /// For `prompt` with `choices` from an expression: what the operator sees for each
    /// item (a template; the item is `item`).
    pub label: Option<String>,
    /// For `prompt` with `choices` from an expression: the answer for each item (a
    /// template; the item is `item`; default: the item itself).
    pub value: Option<String>,
    /// For `assert`: the failure message (a template).
    pub message: Option<String>,
    /// On a step that changes something: one step, or a list, that puts back what it
    /// changed (`runbook undo`, `--on-failure undo`); run, shell, http, manual or assert.
    pub undo: Option<UndoDef>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum UndoDef {
    One(Box<StepDef>),
    List(Vec<StepDef>),
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ChoicesDef {
    List(Vec<String>),
    Expression(String),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpDef {
    pub method: Option<String>,
    pub url: String,
    pub headers: Option<BTreeMap<String, String>>,
    /// A string, or a mapping/list sent as JSON.
    pub body: Option<serde_json::Value>,
    pub expect: Option<ExpectDef>,
    pub connect_timeout: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectDef {
    pub status: Option<StatusDef>,
    pub body_contains: Option<String>,
    /// JSON path → expected value.
    pub json: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusDef {
    One(u16),
    Any(Vec<u16>),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    pub attempts: u32,
    pub interval: Option<String>,
    /// An expression over `result` (this attempt's output).
    pub until: Option<String>,
}

/// `watch:`: one of `run`, `shell`, `http` (GET, HEAD or OPTIONS), sampled every `every`
/// until `pass` holds for `hold` samples in a row, `fail` holds, or `within` runs out.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchDef {
    pub run: Option<Vec<String>>,
    pub shell: Option<String>,
    pub http: Option<HttpDef>,
    pub capture: Option<CaptureName>,
    pub env: Option<BTreeMap<String, String>>,
    pub stdin: Option<String>,
    pub cwd: Option<String>,
    pub args: Option<Vec<String>>,
    /// Time between samples (a duration such as `30s`, or a template of `vars`, `params`,
    /// `env` such as `"{{ vars.watch_every }}"`); shorter than `within`.
    pub every: String,
    /// The longest the watch may take (a duration such as `10m`, or a template as `every`).
    pub within: String,
    /// An expression over `sample` (`sample.output`, `sample.json`, `sample.status`).
    pub pass: String,
    /// Passing samples in a row needed (default 1), or a template as `every`.
    pub hold: Option<HoldDef>,
    /// An expression over `sample`: the watch fails at once when it is true.
    pub fail: Option<String>,
    /// An expression over `sample` whose result each sample's line shows and the journal
    /// keeps (default: the start of the sample's JSON or text).
    pub value: Option<String>,
}

/// A watch's `hold`: a number, or a template resolved when the plan is bound.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HoldDef {
    Count(#[schemars(range(min = 1))] u32),
    Template(String),
}

pub fn json() -> String {
    let schema = schemars::schema_for!(RunbookFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::checker::keys;

    fn properties(schema: &serde_json::Value, def: Option<&str>) -> BTreeSet<String> {
        let object = match def {
            Some(name) => &schema["$defs"][name],
            None => schema,
        };
        object["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    }

    fn set(keys: &[&[&str]]) -> BTreeSet<String> {
        keys.iter().flat_map(|k| k.iter().map(|s| (*s).to_owned())).collect()
    }

    #[test]
    fn schema_keys_match_the_keys_the_checker_accepts() {
        let schema: serde_json::Value = serde_json::from_str(&super::json()).unwrap_or_default();
        assert_eq!(properties(&schema, None), set(&[keys::TOP]));
        assert_eq!(properties(&schema, Some("EnvironmentDef")), set(&[keys::ENVIRONMENT]));
        assert_eq!(properties(&schema, Some("ParamDef")), set(&[keys::PARAM]));
        assert_eq!(properties(&schema, Some("ProcedureDef")), set(&[keys::PROCEDURE]));
        assert_eq!(properties(&schema, Some("StageDef")), set(&[keys::STAGE]));
        assert_eq!(properties(&schema, Some("StepDef")), set(keys::STEP_ALL));
        assert_eq!(properties(&schema, Some("HttpDef")), set(&[keys::HTTP]));
        assert_eq!(properties(&schema, Some("ExpectDef")), set(&[keys::EXPECT]));
        assert_eq!(properties(&schema, Some("RetryDef")), set(&[keys::RETRY]));
        assert_eq!(properties(&schema, Some("WatchDef")), set(&[keys::WATCH]));
        assert_eq!(properties(&schema, Some("NotifyDef")), set(&[keys::NOTIFY]));
    }

    #[test]
    fn the_checked_in_schema_is_current() {
        let checked_in = include_str!("../../../schema/runbook.schema.json");
        assert!(
            checked_in == super::json(),
            "schema/runbook.schema.json is out of date: run `cargo run -- schema > schema/runbook.schema.json`"
        );
    }
}
