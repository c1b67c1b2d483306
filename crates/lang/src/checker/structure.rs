//! First pass: read the YAML tree into the model, shape and types only.

use std::sync::LazyLock;
use std::time::Duration;

use indexmap::IndexMap;
use regex::Regex;

use super::keys;
use super::reader::{Fields, Reader};
use super::{RESERVED_FLAGS, builtins};
use crate::diagnostic::{Code, Diagnostic, clip, did_you_mean};
use crate::model::{Environment, Procedure, Runbook, Stage};
use crate::param::{Param, ParamType, TimeBound, flag_name};
use crate::source::SourceRef;
use crate::step::{
    AssertStep, Capture, Choices, Effect, Expect, HttpStep, IncludeStep, OnFailure, Process, PromptStep, Retry,
    RunStep, ShellStep, Step, StepKind, WatchStep,
};
use crate::template::Template;
use crate::timing::{MAX_HOLD, Timing};
use crate::yaml::{Node, Value};

static KEBAB: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$").unwrap_or_else(|_| unreachable!()));
static SNAKE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_]*$").unwrap_or_else(|_| unreachable!()));
static VAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap_or_else(|_| unreachable!()));
static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_-]*$").unwrap_or_else(|_| unreachable!()));

/// Most attempts a `retry` may make (a larger number is surely a mistake).
pub const MAX_ATTEMPTS: u32 = 10_000;

pub struct Structure {
    r: Reader,
    pub name: Option<String>,
    seen_ids: IndexMap<String, crate::source::Span>,
}

impl Structure {
    pub fn new(source: SourceRef) -> Self {
        Structure { r: Reader::new(source), name: None, seen_ids: IndexMap::new() }
    }

    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.r.diagnostics
    }

    pub fn runbook(&mut self, root: &Node, sha256: String) -> Option<Runbook> {
        if matches!(root.value, Value::Null) {
            self.r.error(Code::MissingKey, root.span, "the file is empty; a runbook needs `runbook` and `procedures`");
            return None;
        }
        let top = self.r.fields(root, "a runbook", keys::TOP)?;
        let name = self.r.required(&top, "runbook", "the runbook").and_then(|n| {
            let name = self.r.string(n, "`runbook`")?;
            self.name = Some(name.clone());
            if builtins().contains(&name.as_str()) {
                self.r
                    .error(
                        Code::ShadowsBuiltin,
                        n.span,
                        format!("runbook name `{name}` shadows the built-in command `runbook {name}`"),
                    )
                    .help = Some("choose another name; built-ins are ".to_owned() + &builtins().join(", "));
                return None;
            }
            self.r.check_name(&name, n.span, &KEBAB, "runbook", "lowercase letters, digits and `-`").then_some(name)
        });
        let title = self.r.opt_string(&top, "title");
        let description = self.r.opt_string(&top, "description");
        let notes = self.r.opt_string(&top, "notes");
        let environments = top.get("environments").map(|n| self.environments(n)).unwrap_or_default();
        let params = top.get("params").map(|n| self.params(n)).unwrap_or_default();
        let procedures = match self.r.required(&top, "procedures", "the runbook") {
            Some(n) => self.procedures(n, &params),
            None => IndexMap::new(),
        };
        Some(Runbook {
            // A name with mistakes (already reported) still lets the references be checked.
            name: name.or_else(|| self.name.clone()).unwrap_or_default(),
            title,
            description,
            notes,
            environments,
            params,
            procedures,
            source: self.r.source.clone(),
            sha256,
        })
    }

    /// Entries of a mapping of named things (`environments`, `params`, `procedures`).
    fn named<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(String, &'n Node, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            self.r.wrong_type(node, &format!("`{what}` must be a mapping of names"));
            return Vec::new();
        };
        entries.iter().filter_map(|(k, v)| self.r.string(k, "a name").map(|name| (name, k, v))).collect()
    }

    fn environments(&mut self, node: &Node) -> IndexMap<String, Environment> {
        let mut out = IndexMap::new();
        for (name, key, value) in self.named(node, "environments") {
            self.r.check_name(&name, key.span, &ENV_NAME, "environment", "lowercase letters, digits, `-` and `_`");
            let Some(fields) = self.r.fields(value, &format!("environment `{name}`"), keys::ENVIRONMENT) else {
                continue;
            };
            let protected = self.r.opt_bool(&fields, "protected").unwrap_or(false);
            let (approvals, signers) = self.approvals(fields.get("approvals"));
            if protected
                && approvals > 0
                && signers.is_none()
                && let Some(node) = fields.get("approvals")
                && !matches!(node.value, Value::Map(_))
            {
                self.r.diagnostics.push(
                    Diagnostic::warning(
                        Code::UnsignedApprovals,
                        &self.r.source,
                        node.span,
                        format!("the approvals of protected environment `{name}` are not signed"),
                    )
                    .help(
                        "an unsigned approval names whoever the approver's gcloud account says; require SSH signatures with `approvals: {count: N, signers: allowed_signers}`",
                    ),
                );
            }
            let description = self.r.opt_string(&fields, "description");
            let mut vars = IndexMap::new();
            if let Some(vars_node) = fields.get("vars") {
                for (var, var_key, var_value) in self.named(vars_node, "vars") {
                    self.r.check_name(&var, var_key.span, &VAR, "var", "letters, digits and `_`");
                    if let Some(text) = self.r.string(var_value, &format!("var `{var}`")) {
                        vars.insert(var, text);
                    }
                }
            }
            let (rehearsal, rehearsal_notify) =
                fields.get("rehearsal").map(|n| self.rehearsal(n, &name, &vars)).unwrap_or_default();
            let notify =
                fields.get("notify").map(|n| super::notify::notify_list(&mut self.r, n, &name)).unwrap_or_default();
            out.insert(
                name.clone(),
                Environment {
                    name,
                    protected,
                    approvals,
                    signers,
                    description,
                    vars,
                    rehearsal,
                    notify,
                    rehearsal_notify,
                },
            );
        }
        out
    }

    /// An environment's `rehearsal:` block: vars of the environment, each replaced by a path on
    /// the local fake in a rehearsal; and `notify: true|false`, whether rehearsals notify.
    fn rehearsal(
        &mut self,
        node: &Node,
        env: &str,
        vars: &IndexMap<String, String>,
    ) -> (IndexMap<String, String>, bool) {
        let mut out = IndexMap::new();
        let mut notify = false;
        for (var, var_key, var_value) in self.named(node, "rehearsal") {
            if var == "notify" {
                notify =
                    self.r.bool(var_value, "`notify` in `rehearsal:` (whether rehearsals notify)").unwrap_or(false);
                continue;
            }
            if !vars.contains_key(&var) {
                let known = vars.keys().cloned().collect::<Vec<_>>().join(", ");
                self.r.error(
                    Code::MissingVar,
                    var_key.span,
                    format!(
                        "`rehearsal:` of environment `{env}` names `{var}`, which is not one of its vars ({known})"
                    ),
                );
                continue;
            }
            let Some(path) = self.r.string(var_value, &format!("rehearsal var `{var}`")) else { continue };
            // A var that points somewhere (a URL) gets a path on the fake; any other var may get
            // a plain value for rehearsals (a watch's `every: 200ms` instead of `60s`). A URL
            // is never a rehearsal value: rehearsals reach nothing real.
            let points_somewhere =
                vars.get(&var).is_some_and(|v| v.starts_with("http://") || v.starts_with("https://"));
            let is_url = path.contains("://");
            let bad_path = path.starts_with('/') && path.chars().any(char::is_whitespace);
            if is_url || bad_path || (points_somewhere && !path.starts_with('/')) {
                self.r.error(
                    Code::InvalidValue,
                    var_value.span,
                    if points_somewhere || is_url {
                        format!("rehearsal var `{var}` must be a path on the local fake, such as `/app`, not {path:?}")
                    } else {
                        format!("rehearsal var `{var}`: a path on the local fake has no spaces, not {path:?}")
                    },
                );
                continue;
            }
            out.insert(var, path);
        }
        (out, notify)
    }

    fn params(&mut self, node: &Node) -> IndexMap<String, Param> {
        let mut out = IndexMap::new();
        for (name, key, value) in self.named(node, "params") {
            if !self.r.check_name(&name, key.span, &SNAKE, "param", "lowercase letters, digits and `_`") {
                continue;
            }
            if RESERVED_FLAGS.contains(&flag_name(&name).as_str()) {
                self.r
                    .error(
                        Code::InvalidValue,
                        key.span,
                        format!("param `{name}` clashes with the built-in flag `--{}`", flag_name(&name)),
                    )
                    .help = Some("rename the param".into());
            }
            // A param with mistakes is still declared (as a string), so its uses are not
            // reported a second time as undeclared.
            let param = self.param(&name, value).unwrap_or_else(|| Param {
                name: name.clone(),
                ty: ParamType::String,
                required: false,
                default: None,
                help: None,
                pattern: None,
                secret: false,
                not_after: None,
                not_before: None,
                hint: crate::param::AnswerHint::default(),
            });
            out.insert(name, param);
        }
        out
    }

    fn param(&mut self, name: &str, node: &Node) -> Option<Param> {
        let fields = self.r.fields(node, &format!("param `{name}`"), keys::PARAM)?;
        let ty = self.param_type(&fields, &format!("param `{name}`"))?;
        let default = fields.get("default").and_then(|n| {
            let text = n.scalar_text();
            if text.is_none() {
                self.r.wrong_type(n, "`default` must be a scalar");
            }
            text.map(|t| (t, n.span))
        });
        let pattern = self.pattern(&fields);
        let not_after = self.time_bound(&fields, "not_after", &ty);
        let not_before = self.time_bound(&fields, "not_before", &ty);
        let required = self.r.opt_bool(&fields, "required").unwrap_or(default.is_none() && ty != ParamType::Bool);
        let param = Param {
            name: name.to_owned(),
            ty,
            required,
            default: default.as_ref().map(|(text, _)| text.clone()),
            help: self.r.opt_string(&fields, "help"),
            pattern,
            secret: self.r.opt_bool(&fields, "secret").unwrap_or(false),
            not_after,
            not_before,
            hint: self.hint(&fields),
        };
        if let Some((text, span)) = default {
            // Bounds such as `now` are checked when the run starts, not here.
            let unbounded = Param { not_after: None, not_before: None, ..param.clone() };
            if let Err(reason) = unbounded.check_value(&text, chrono::Utc::now()) {
                self.r.error(Code::InvalidValue, span, format!("default `{text}` of param `{name}` {reason}"));
            }
        }
        Some(param)
    }

    fn param_type(&mut self, fields: &Fields<'_>, what: &str) -> Option<ParamType> {
        let values = fields.get("values");
        let ty = match fields.get("type") {
            None => "string".to_owned(),
            Some(n) => self.r.string(n, "`type`")?,
        };
        let ty = match ty.as_str() {
            "string" => ParamType::String,
            "int" => ParamType::Int,
            "bool" => ParamType::Bool,
            "timestamp" => ParamType::Timestamp,
            "duration" => ParamType::Duration,
            "url" => ParamType::Url,
            "enum" => {
                let Some(values_node) = values else {
                    self.r
                        .error(Code::MissingKey, fields.node.span, format!("{what} is an enum without `values`"))
                        .help = Some("list the allowed values: `values: [a, b]`".into());
                    return None;
                };
                let values: Vec<String> =
                    self.r.string_list(values_node, "`values`")?.into_iter().map(|(v, _)| v).collect();
                if values.is_empty() {
                    self.r.error(Code::InvalidValue, values_node.span, "`values` must list at least one value");
                    return None;
                }
                return Some(ParamType::Enum(values));
            }
            other => {
                let span = fields.get("type").map(|n| n.span).unwrap_or_default();
                let help = did_you_mean(other, ParamType::NAMES.iter().copied())
                    .unwrap_or_else(|| format!("types are {}", ParamType::NAMES.join(", ")));
                self.r.error(Code::InvalidValue, span, format!("unknown type `{other}`")).help = Some(help);
                return None;
            }
        };
        if let Some(values_node) = values {
            self.r.error(Code::InvalidValue, values_node.span, "`values` only applies to `type: enum`");
        }
        Some(ty)
    }

    fn pattern(&mut self, fields: &Fields<'_>) -> Option<Regex> {
        let node = fields.get("pattern")?;
        let text = self.r.string(node, "`pattern`")?;
        // The whole value must match, as users of `pattern` expect.
        match Regex::new(&format!("^(?:{text})$")) {
            Ok(regex) => Some(regex),
            Err(err) => {
                let reason = err.to_string();
                let last = reason.lines().last().unwrap_or("invalid").trim().to_owned();
                self.r.error(
                    Code::InvalidValue,
                    node.span,
                    format!("`pattern` is not a valid regular expression: {last}"),
                );
                None
            }
        }
    }

    /// `example:` and `pattern_help:` (params and prompts).
    fn hint(&mut self, fields: &Fields<'_>) -> crate::param::AnswerHint {
        crate::param::AnswerHint {
            example: self.r.opt_string(fields, "example"),
            pattern_help: self.r.opt_string(fields, "pattern_help"),
        }
    }

    fn time_bound(&mut self, fields: &Fields<'_>, key: &str, ty: &ParamType) -> Option<TimeBound> {
        let node = fields.get(key)?;
        if *ty != ParamType::Timestamp {
            self.r.error(Code::InvalidValue, node.span, format!("`{key}` only applies to `type: timestamp`"));
            return None;
        }
        let text = self.r.string(node, &format!("`{key}`"))?;
        match TimeBound::parse(&text) {
            Ok(bound) => Some(bound),
            Err(reason) => {
                self.r.error(Code::InvalidValue, node.span, format!("`{key}`: {reason}"));
                None
            }
        }
    }

    fn procedures(&mut self, node: &Node, params: &IndexMap<String, Param>) -> IndexMap<String, Procedure> {
        let mut out = IndexMap::new();
        for (name, key, value) in self.named(node, "procedures") {
            if !self.r.check_name(&name, key.span, &KEBAB, "procedure", "lowercase letters, digits and `-`") {
                continue;
            }
            if name == "help" {
                self.r
                    .error(
                        Code::ShadowsBuiltin,
                        key.span,
                        "procedure name `help` shadows the built-in `runbook <RUNBOOK> help`",
                    )
                    .help = Some("choose another name".into());
            }
            // Likewise a broken procedure still exists for `include` and `on_failure`.
            let procedure = self.procedure(&name, value, params).unwrap_or_else(|| Procedure {
                name: name.clone(),
                summary: None,
                description: None,
                params: Vec::new(),
                stages: Vec::new(),
            });
            out.insert(name, procedure);
        }
        if out.is_empty() && self.r.diagnostics.is_empty() {
            self.r.error(Code::MissingKey, node.span, "the runbook has no procedures");
        }
        out
    }

    fn procedure(&mut self, name: &str, node: &Node, params: &IndexMap<String, Param>) -> Option<Procedure> {
        let what = format!("procedure `{name}`");
        let fields = self.r.fields(node, &what, keys::PROCEDURE)?;
        let summary = self.r.opt_string(&fields, "summary");
        let description = self.r.opt_string(&fields, "description");
        let mut own_params = Vec::new();
        if let Some(list) = fields.get("params") {
            for (param, span) in self.r.string_list(list, "`params`").unwrap_or_default() {
                if params.contains_key(&param) {
                    own_params.push(param);
                } else {
                    let help = did_you_mean(&param, params.keys().map(String::as_str))
                        .unwrap_or_else(|| "declare it under the top-level `params:`".into());
                    self.r
                        .error(
                            Code::UndeclaredParam,
                            span,
                            format!("procedure `{name}` takes param `{param}`, which is not declared"),
                        )
                        .help = Some(help);
                }
            }
        }
        let mut stages = Vec::new();
        if let Some(stages_node) = self.r.required(&fields, "stages", &what) {
            for stage in self.r.list(stages_node, "`stages`").unwrap_or_default() {
                if let Some(stage) = self.stage(stage) {
                    stages.push(stage);
                }
            }
            if stages.is_empty() && matches!(&stages_node.value, Value::Seq(s) if s.is_empty()) {
                self.r.error(Code::MissingKey, stages_node.span, format!("{what} has no stages"));
            }
        }
        Some(Procedure { name: name.to_owned(), summary, description, params: own_params, stages })
    }

    fn stage(&mut self, node: &Node) -> Option<Stage> {
        let fields = self.r.fields(node, "a stage", keys::STAGE)?;
        let name = self.r.required(&fields, "name", "a stage").and_then(|n| self.r.string(n, "`name`"));
        let description = self.r.opt_string(&fields, "description");
        let mut steps = Vec::new();
        if let Some(steps_node) = self.r.required(&fields, "steps", "a stage") {
            for step in self.r.list(steps_node, "`steps`").unwrap_or_default() {
                if let Some(step) = self.step(step) {
                    steps.push(step);
                }
            }
        }
        // A stage with mistakes (already reported) keeps its steps, so references to them
        // are checked and do not turn into "no such step".
        Some(Stage { name: name.unwrap_or_default(), description, steps })
    }

    fn step(&mut self, node: &Node) -> Option<Step> {
        // Unknown keys are judged against every key a step may have; keys of the wrong kind
        // are reported below with a message that names the kind.
        let all: Vec<&str> = keys::STEP_ALL.concat();
        let fields = self.r.fields(node, "a step", &all)?;
        let id_node = self.r.required(&fields, "id", "a step");
        let id = id_node.and_then(|n| {
            let id = self.r.string(n, "`id`")?;
            if !self.r.check_name(
                &id,
                n.span,
                &SNAKE,
                "step id",
                "lowercase letters, digits and `_` (ids are used as `steps.<id>` in templates)",
            ) {
                // Reported; the step is still checked so its other mistakes show too.
                return Some(id);
            }
            if let Some(first) = self.seen_ids.get(&id) {
                let (line, _) = self.r.source.line_col(first.start);
                self.r.error(Code::Duplicate, n.span, format!("step id `{id}` is already used on line {line}")).help =
                    Some("step ids are unique within a runbook".into());
                return Some(id);
            }
            self.seen_ids.insert(id.clone(), n.span);
            Some(id)
        });
        let kinds: Vec<&str> = keys::KINDS.iter().copied().filter(|k| fields.get(k).is_some()).collect();
        let kind_name = match kinds.as_slice() {
            [one] => *one,
            [] => {
                self.r
                    .error(
                        Code::StepKind,
                        fields.node.span,
                        format!("step{} has no kind", id.as_ref().map(|i| format!(" `{i}`")).unwrap_or_default()),
                    )
                    .help = Some(format!("give it exactly one of: {}", keys::KINDS.join(", ")));
                return None;
            }
            [_, second, ..] => {
                let span = fields.key_span(second).unwrap_or(fields.node.span);
                self.r
                    .error(
                        Code::StepKind,
                        span,
                        format!(
                            "a step has exactly one kind, this one has {}",
                            kinds.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
                        ),
                    )
                    .help = Some("split it into separate steps".into());
                return None;
            }
        };
        let allowed: &[&str] = match kind_name {
            "run" => keys::PROCESS_KEYS,
            "shell" => &["env", "stdin", "cwd", "capture", "args"],
            "http" => keys::HTTP_STEP_KEYS,
            "prompt" => keys::PROMPT_KEYS,
            "assert" => keys::ASSERT_KEYS,
            _ => &[],
        };
        for (key, _) in fields.entries() {
            let Some(key_name) = key.as_str() else { continue };
            let is_kind_key =
                !keys::KINDS.contains(&key_name) && !keys::COMMON_KEYS.contains(&key_name) && all.contains(&key_name);
            let is_kind_key = is_kind_key && key_name != keys::UNDO;
            if is_kind_key && !allowed.contains(&key_name) {
                self.r.error(
                    Code::UnknownKey,
                    key.span,
                    format!("`{key_name}` does not apply to a `{kind_name}` step"),
                );
            }
        }
        let kind_node = fields.get(kind_name)?;
        let kind = self.step_kind(kind_name, kind_node, &fields);
        let effect_node = fields.get("effect");
        let effect = match effect_node {
            None => Effect::Mutate,
            Some(n) => match self.r.string(n, "`effect`").as_deref() {
                Some("read") => Effect::Read,
                Some("mutate") => Effect::Mutate,
                Some(other) => {
                    self.r.error(
                        Code::InvalidValue,
                        n.span,
                        format!("`effect` must be `read` or `mutate`, found `{other}`"),
                    );
                    Effect::Mutate
                }
                None => Effect::Mutate,
            },
        };
        // A watch only reads: `effect: read` is implied, and claiming otherwise is a mistake.
        let effect = match (&kind, effect_node) {
            (Some(StepKind::Watch(_)), Some(node)) if effect == Effect::Mutate => {
                self.r
                    .error(Code::InvalidValue, node.span, "a `watch` step only reads; it cannot be `effect: mutate`")
                    .help = Some("drop `effect:` (a watch is `effect: read`)".into());
                Effect::Read
            }
            (Some(StepKind::Watch(_)), _) => Effect::Read,
            _ => effect,
        };
        if let (Effect::Read, Some(StepKind::Http(http)), Some(node)) = (effect, &kind, effect_node) {
            // `--dry-run --probe` runs read steps for real: only safe methods may claim to read.
            if !matches!(http.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
                self.r
                    .error(
                        Code::InvalidValue,
                        node.span,
                        format!("an HTTP {} request is not `effect: read`", http.method),
                    )
                    .help = Some("only GET, HEAD and OPTIONS requests can be read-only steps".into());
            }
        }
        let when = fields.get("when").and_then(|n| self.r.expr(n, "`when`"));
        let done_if = fields.get("done_if").and_then(|n| self.r.expr(n, "`done_if`"));
        let on_interrupt = fields.get("on_interrupt").and_then(|n| self.r.template(n, "`on_interrupt`"));
        let timeout = fields.get("timeout").and_then(|n| self.r.duration(n, "`timeout`"));
        let retry = fields.get("retry").and_then(|n| self.retry(n));
        let confirm = self.confirm(&fields);
        let on_failure = fields.get("on_failure").and_then(|n| {
            let text = self.r.string(n, "`on_failure`")?;
            Some(match text.as_str() {
                "abort" => OnFailure::Abort,
                "continue" => OnFailure::Continue,
                other => OnFailure::Procedure(other.to_owned()),
            })
        });
        let secret = self.r.opt_bool(&fields, "secret").unwrap_or(false);
        let restarts_from = self.r.opt_string(&fields, "restarts_from");
        let name = self.r.opt_string(&fields, "name");
        let recovery = self.r.opt_bool(&fields, "recovery").unwrap_or(false);
        let mutates = matches!(kind_name, "run" | "shell" | "http") && effect == Effect::Mutate;
        let undo = self.undo(&fields, mutates);
        if let (Some(node), false) = (fields.get("done_if"), mutates) {
            self.r
                .error(Code::InvalidValue, node.span, "`done_if` is for a step that changes something".to_owned())
                .help = Some("a read, prompt, manual or assert step is never skipped as already done".into());
        }
        Some(Step {
            // A missing id is reported; the step's templates are still checked.
            id: id.unwrap_or_default(),
            name,
            kind: kind?,
            when,
            done_if,
            on_interrupt,
            effect,
            timeout,
            retry,
            confirm,
            on_failure: on_failure.unwrap_or(OnFailure::Abort),
            secret,
            undo,
            restarts_from,
            restarts_from_span: fields.get("restarts_from").map(|n| n.span),
            recovery,
            span: id_node.map_or(fields.node.span, |n| n.span),
            on_failure_span: fields.get("on_failure").map(|n| n.span),
        })
    }

    /// `undo:` — one step or a list, checked like any step; only a step that changes
    /// something has anything to undo, and an undo step has no undo of its own.
    fn undo(&mut self, fields: &Fields<'_>, mutates: bool) -> Vec<Step> {
        let Some(node) = fields.get(keys::UNDO) else { return Vec::new() };
        let key = fields.key_span(keys::UNDO).unwrap_or(node.span);
        if !mutates {
            self.r.error(Code::InvalidValue, key, "`undo` on a step that changes nothing").help =
                Some("only `run`, `shell` and `http` steps with `effect: mutate` (the default) can be undone".into());
        }
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        if items.is_empty() {
            self.r.error(Code::InvalidValue, node.span, "`undo` lists no steps").help =
                Some("give one step, or a list of steps, that put back what this step changes".into());
        }
        let mut steps = Vec::new();
        for item in items {
            let Some(step) = self.step(item) else { continue };
            if !keys::UNDO_KINDS.contains(&step.kind_name()) {
                self.r
                    .error(Code::StepKind, step.span, format!("an undo step cannot be a `{}` step", step.kind_name()))
                    .help = Some(format!("an undo step is one of: {}", keys::UNDO_KINDS.join(", ")));
            }
            if let Some(span) = step.undo.first().map(|u| u.span) {
                self.r
                    .error(Code::InvalidValue, span, format!("undo step `{}` has an `undo` of its own", step.id))
                    .help = Some("list every step of the undo in the owner's `undo:`".into());
            }
            steps.push(step);
        }
        steps
    }

    fn confirm(&mut self, fields: &Fields<'_>) -> Option<crate::template::Template> {
        let target = fields.get("target");
        let Some(confirm) = fields.get("confirm") else {
            if let Some(target) = target {
                self.r.error(Code::InvalidValue, target.span, "`target` is only used with `confirm: typed`");
            }
            return None;
        };
        match self.r.string(confirm, "`confirm`").as_deref() {
            Some("typed") => {}
            Some(other) => {
                self.r.error(Code::InvalidValue, confirm.span, format!("`confirm` must be `typed`, found `{other}`"));
                return None;
            }
            None => return None,
        }
        match target {
            Some(target) => self.r.template(target, "`target`"),
            None => {
                self.r
                    .error(Code::MissingKey, confirm.span, "`confirm: typed` needs a `target` the operator must type")
                    .help = Some("e.g. `target: \"{{ vars.instance }}\"`".into());
                None
            }
        }
    }

    /// `approvals: N`, or `approvals: {count: N, signers: FILE}`: how many other people must
    /// approve a saved plan (0 = none) and, when signed, the allowed-signers file (git's
    /// `allowedSignersFile` format) relative to the runbook file, which must be readable.
    fn approvals(&mut self, node: Option<&Node>) -> (u32, Option<std::path::PathBuf>) {
        let Some(node) = node else { return (0, None) };
        if let Value::Map(_) = node.value {
            let Some(fields) = self.r.fields(node, "`approvals`", keys::APPROVALS) else { return (0, None) };
            let count = self.r.required(&fields, "count", "`approvals`").map_or(0, |n| self.approval_count(n));
            let signers = self.r.required(&fields, "signers", "`approvals`").and_then(|n| self.signers(n));
            return (count, signers);
        }
        (self.approval_count(node), None)
    }

    fn approval_count(&mut self, node: &Node) -> u32 {
        match node.value {
            Value::Int(i) if (0..=10).contains(&i) => u32::try_from(i).unwrap_or(0),
            _ => {
                self.r.wrong_type(
                    node,
                    "`approvals` must be a whole number from 0 to 10, or `{count: N, signers: FILE}`",
                );
                0
            }
        }
    }

    /// The allowed-signers file, beside the runbook file; it must exist and be readable now.
    fn signers(&mut self, node: &Node) -> Option<std::path::PathBuf> {
        let given = self.r.string(node, "`signers`")?;
        let base = self.r.source.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let path = base.join(&given);
        match read_signers(&path) {
            Ok(bytes) if std::str::from_utf8(&bytes).is_ok() => Some(path),
            Ok(_) => {
                self.r.error(Code::InvalidValue, node.span, format!("the signers file `{}` is not text", clip(&given)));
                None
            }
            Err(e) => {
                self.r
                    .error(Code::InvalidValue, node.span, format!("cannot read the signers file `{}`: {e}", clip(&given)))
                    .help = Some(
                    "give an allowed-signers file (git's format: `principal key-type key` per line) relative to the runbook file".into(),
                );
                None
            }
        }
    }

    fn retry(&mut self, node: &Node) -> Option<Retry> {
        let fields = self.r.fields(node, "`retry`", keys::RETRY)?;
        let attempts = match self.r.required(&fields, "attempts", "`retry`") {
            Some(n) => match n.value {
                Value::Int(i) if (1..=i64::from(MAX_ATTEMPTS)).contains(&i) => u32::try_from(i).ok(),
                Value::Int(i) if i > 0 => {
                    self.r.error(
                        Code::InvalidValue,
                        n.span,
                        format!("`attempts` is {i}, more than the maximum of {MAX_ATTEMPTS}"),
                    );
                    None
                }
                _ => {
                    self.r.wrong_type(n, &format!("`attempts` must be an integer from 1 to {MAX_ATTEMPTS}"));
                    None
                }
            },
            None => None,
        };
        let interval = match fields.get("interval") {
            Some(n) => self.r.duration(n, "`interval`"),
            None => Some(std::time::Duration::from_secs(5)),
        };
        let until = fields.get("until").and_then(|n| self.r.expr(n, "`until`"));
        Some(Retry { attempts: attempts?, interval: interval?, until })
    }

    fn step_kind(&mut self, kind: &str, node: &Node, fields: &Fields<'_>) -> Option<StepKind> {
        match kind {
            "run" => {
                let items = self.r.list(node, "`run`")?;
                if items.is_empty() {
                    self.r.error(Code::InvalidValue, node.span, "`run` needs at least the program to run");
                    return None;
                }
                let argv: Vec<Template> =
                    items.iter().filter_map(|n| self.r.template(n, "each `run` argument")).collect();
                let process = self.process(fields);
                (argv.len() == items.len()).then_some(StepKind::Run(RunStep { argv, process }))
            }
            "shell" => {
                let script = self.r.string(node, "`shell`")?;
                let args = match fields.get("args") {
                    Some(list) => {
                        let items = self.r.list(list, "`args`").unwrap_or_default();
                        items.iter().filter_map(|n| self.r.template(n, "each of `args`")).collect()
                    }
                    None => Vec::new(),
                };
                let process = self.process(fields);
                Some(StepKind::Shell(ShellStep { script, script_span: node.span, args, process }))
            }
            "http" => self.http(node, fields).map(StepKind::Http),
            "manual" => self.r.template(node, "`manual`").map(StepKind::Manual),
            "prompt" => {
                let question = self.r.template(node, "`prompt`")?;
                let ty = self.param_type(fields, "the prompt")?;
                let choices = fields.get("choices").and_then(|n| match &n.value {
                    Value::Seq(_) => self
                        .r
                        .string_list(n, "`choices`")
                        .map(|list| Choices::List(list.into_iter().map(|(v, _)| v).collect())),
                    _ => self.r.expr(n, "`choices` (a list or an expression)").map(Choices::Expr),
                });
                let default = fields.get("default").and_then(|n| self.r.template(n, "`default`"));
                let pattern = self.pattern(fields);
                let hint = self.hint(fields);
                let label = fields.get("label").and_then(|n| self.r.template(n, "`label`"));
                let value = fields.get("value").and_then(|n| self.r.template(n, "`value`"));
                for (key, given) in [("label", &label), ("value", &value)] {
                    if let (Some(template), false) = (given, matches!(choices, Some(Choices::Expr(_)))) {
                        self.r.error(
                            Code::InvalidValue,
                            template.span,
                            format!("`{key}` applies to the items of `choices` given as an expression"),
                        );
                    }
                }
                Some(StepKind::Prompt(PromptStep { question, ty, choices, default, pattern, hint, label, value }))
            }
            "assert" => {
                let expr = self.r.expr(node, "`assert`")?;
                let message = fields.get("message").and_then(|n| self.r.template(n, "`message`"));
                Some(StepKind::Assert(AssertStep { expr, message }))
            }
            "include" => {
                let procedure = self.r.string(node, "`include`")?;
                Some(StepKind::Include(IncludeStep { procedure, span: node.span }))
            }
            "watch" => self.watch(node).map(StepKind::Watch),
            _ => None,
        }
    }

    /// `watch:`: one read body (`run`, `shell` or a safe `http`), its capture, and when the
    /// samples pass. Every mistake is reported, not only the first.
    fn watch(&mut self, node: &Node) -> Option<WatchStep> {
        let fields = self.r.fields(node, "`watch`", keys::WATCH)?;
        let bodies: Vec<&str> = keys::WATCH_BODIES.iter().copied().filter(|k| fields.get(k).is_some()).collect();
        let body = match bodies.as_slice() {
            [one] => Some(*one),
            [] => {
                self.r.error(Code::MissingKey, node.span, "`watch` is missing what to sample").help =
                    Some("give it one read to repeat: `http:`, `run:` or `shell:`".into());
                None
            }
            [_, second, ..] => {
                let span = fields.key_span(second).unwrap_or(node.span);
                self.r.error(
                    Code::StepKind,
                    span,
                    format!(
                        "a `watch` samples one thing, this one has {}",
                        bodies.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
                    ),
                );
                None
            }
        };
        if let Some(body) = body {
            // Keys of another body (`args` with `run`, `env` with `http`) are mistakes.
            let applies: &[&str] = match body {
                "run" => keys::PROCESS_KEYS,
                "shell" => &["env", "stdin", "cwd", "capture", "args"],
                _ => keys::HTTP_STEP_KEYS,
            };
            for key in ["env", "stdin", "cwd", "args"] {
                if let (Some(span), false) = (fields.key_span(key), applies.contains(&key)) {
                    self.r.error(Code::UnknownKey, span, format!("`{key}` does not apply to a watch of `{body}`"));
                }
            }
        }
        let sample = body.and_then(|body| {
            let body_node = fields.get(body)?;
            let kind = self.step_kind(body, body_node, &fields)?;
            if let StepKind::Http(http) = &kind
                && !matches!(http.method.as_str(), "GET" | "HEAD" | "OPTIONS")
            {
                let method = match &body_node.value {
                    Value::Map(entries) => {
                        entries.iter().find(|(k, _)| k.as_str() == Some("method")).map(|(_, v)| v.span)
                    }
                    _ => None,
                };
                let span = method.unwrap_or(body_node.span);
                self.r
                    .error(
                        Code::InvalidValue,
                        span,
                        format!("a `watch` only reads; an HTTP {} request changes things", http.method),
                    )
                    .help = Some("sample with GET, HEAD or OPTIONS".into());
            }
            Some(kind)
        });
        let every = self.r.required(&fields, "every", "`watch`").and_then(|n| self.watch_duration(n, "`every`"));
        let within = self.r.required(&fields, "within", "`watch`").and_then(|n| self.watch_duration(n, "`within`"));
        // Both written as values: compared now. With a template, when the plan is bound.
        if let (Some(Timing::Fixed(every)), Some(Timing::Fixed(within)), Some(n)) =
            (&every, &within, fields.get("every"))
            && every >= within
        {
            self.r
                .error(
                    Code::InvalidValue,
                    n.span,
                    format!(
                        "`every` ({}) must be shorter than `within` ({}): the watch would take one sample",
                        humantime::format_duration(*every),
                        humantime::format_duration(*within)
                    ),
                )
                .help = Some("sample more often, or watch for longer".into());
        }
        let pass = self.r.required(&fields, "pass", "`watch`").and_then(|n| self.r.expr(n, "`pass`"));
        let hold = match fields.get("hold") {
            None => Some(Timing::Fixed(1)),
            Some(n) => match &n.value {
                Value::Int(i) if (1..=i64::from(MAX_HOLD)).contains(i) => u32::try_from(*i).ok().map(Timing::Fixed),
                Value::String(text) if !Template::new(text.as_str(), n.span).is_literal() => {
                    Some(Timing::Templated(Template::new(text.as_str(), n.span)))
                }
                _ => {
                    // Reported; the watch is still checked (its expressions, its sample).
                    self.r.wrong_type(
                        n,
                        &format!("`hold` must be a whole number from 1 to {MAX_HOLD} (or a template such as \"{{{{ vars.hold }}}}\")"),
                    );
                    Some(Timing::Fixed(1))
                }
            },
        };
        let fail = fields.get("fail").and_then(|n| self.r.expr(n, "`fail`"));
        let value = fields.get("value").and_then(|n| self.r.expr(n, "`value`"));
        Some(WatchStep {
            sample: Box::new(sample?),
            every: every?,
            within: within?,
            pass: pass?,
            hold: hold?,
            fail,
            value,
        })
    }

    /// A watch's `every` or `within`: a duration, or a template of vars, params and env (its
    /// references are checked with the step's; the value when the plan is bound).
    fn watch_duration(&mut self, node: &Node, what: &str) -> Option<Timing<Duration>> {
        if let Value::String(text) = &node.value {
            let template = Template::new(text.as_str(), node.span);
            if !template.is_literal() {
                return Some(Timing::Templated(template));
            }
        }
        self.r.duration(node, what).map(Timing::Fixed)
    }

    fn capture(&mut self, fields: &Fields<'_>) -> Option<Capture> {
        let node = fields.get("capture")?;
        match self.r.string(node, "`capture`")?.as_str() {
            "text" => Some(Capture::Text),
            "json" => Some(Capture::Json),
            "lines" => Some(Capture::Lines),
            other => {
                let help =
                    did_you_mean(other, ["text", "json", "lines"]).unwrap_or_else(|| "use text, json or lines".into());
                self.r
                    .error(
                        Code::InvalidValue,
                        node.span,
                        format!("`capture` must be text, json or lines, found `{other}`"),
                    )
                    .help = Some(help);
                None
            }
        }
    }

    fn process(&mut self, fields: &Fields<'_>) -> Process {
        Process {
            env: fields.get("env").map(|n| self.r.template_map(n, "`env`")).unwrap_or_default(),
            stdin: fields.get("stdin").and_then(|n| self.r.template(n, "`stdin`")),
            cwd: fields.get("cwd").and_then(|n| self.r.template(n, "`cwd`")),
            capture: self.capture(fields),
        }
    }

    fn http(&mut self, node: &Node, step: &Fields<'_>) -> Option<HttpStep> {
        let fields = self.r.fields(node, "`http`", keys::HTTP)?;
        let url = self.r.required(&fields, "url", "`http`").and_then(|n| self.r.template(n, "`url`"));
        let method = match fields.get("method") {
            None => Some("GET".to_owned()),
            Some(n) => self.r.string(n, "`method`").and_then(|m| {
                let upper = m.to_ascii_uppercase();
                if ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(&upper.as_str()) {
                    Some(upper)
                } else {
                    self.r.error(Code::InvalidValue, n.span, format!("unknown HTTP method `{m}`"));
                    None
                }
            }),
        };
        let headers = fields.get("headers").map(|n| self.r.template_map(n, "`headers`")).unwrap_or_default();
        for (name, template) in &headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.r.error(Code::InvalidValue, template.span, format!("`{name}` is not a valid HTTP header name"));
            }
        }
        let body = fields.get("body").and_then(|n| match &n.value {
            // A mapping or list body is sent as JSON.
            Value::Map(_) | Value::Seq(_) => Some(Template::new(n.to_json().to_string(), n.span)),
            _ => self.r.template(n, "`body`"),
        });
        let expect = fields.get("expect").map(|n| self.expect(n)).unwrap_or_default();
        let connect_timeout = fields.get("connect_timeout").and_then(|n| self.r.duration(n, "`connect_timeout`"));
        Some(HttpStep {
            method: method?,
            url: url?,
            headers,
            body,
            expect,
            connect_timeout,
            capture: self.capture(step),
        })
    }

    fn expect(&mut self, node: &Node) -> Expect {
        let Some(fields) = self.r.fields(node, "`expect`", keys::EXPECT) else { return Expect::default() };
        let mut expect = Expect::default();
        if let Some(status) = fields.get("status") {
            let nodes: Vec<&Node> = match &status.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![status],
            };
            for n in nodes {
                match n.value {
                    Value::Int(code) if (100..=599).contains(&code) => {
                        expect.status.push(u16::try_from(code).unwrap_or(0))
                    }
                    _ => self.r.wrong_type(n, "`status` must be an HTTP status code (100-599) or a list of them"),
                }
            }
        }
        expect.body_contains = fields.get("body_contains").and_then(|n| self.r.template(n, "`body_contains`"));
        if let Some(json) = fields.get("json") {
            if let Value::Map(entries) = &json.value {
                for (path, value) in entries {
                    let Some(path_text) = self.r.string(path, "a JSON path") else { continue };
                    let full = if path_text.starts_with('$') { path_text } else { format!("$.{path_text}") };
                    if let Err(err) = serde_json_path::JsonPath::parse(&full) {
                        self.r.error(Code::InvalidValue, path.span, format!("`{full}` is not a JSON path: {err}"));
                        continue;
                    }
                    expect.json.push((full, value.to_json()));
                }
            } else {
                self.r.wrong_type(json, "`json` must map JSON paths to expected values");
            }
        }
        expect
    }
}

/// Largest allowed-signers file read: a line per key, a few KiB for a team.
const MAX_SIGNERS_BYTES: u64 = 1 << 20;

/// An allowed-signers file's bytes: a regular file (a FIFO would hang every command that
/// loads the runbook, `/dev/zero` fill the memory) of at most [`MAX_SIGNERS_BYTES`].
fn read_signers(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, Read as _};
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_SIGNERS_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SIGNERS_BYTES {
        return Err(Error::other(format!(
            "larger than {} KiB; an allowed-signers file is much smaller",
            MAX_SIGNERS_BYTES >> 10
        )));
    }
    Ok(bytes)
}
