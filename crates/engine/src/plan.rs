//! Plan: a checked runbook bound to one procedure, one environment and checked param values.
//! Steps are rendered from the plan right before they run (or, in a dry-run, with
//! placeholders for outputs that are not known yet).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectRepr};

use crate::redact::{MIN_SECRET_LEN, Redactor};
use runbook_lang::model::{Environment, Procedure, RunbookRef};
use runbook_lang::param::{ParamValue, flag_name};
use runbook_lang::step::{Choices, Step, StepKind, WatchStep};
use runbook_lang::template::{Expr, Placeholder, RenderError, Template};
use runbook_lang::timing::WatchTiming;

#[derive(Debug)]
pub struct Plan {
    pub runbook: RunbookRef,
    pub procedure: String,
    pub environment: Option<String>,
    pub params: IndexMap<String, ParamValue>,
    /// Names of secret params that were not given (a dry-run shows them masked; a run asks).
    pub missing_secrets: Vec<String>,
    /// Optional params that were not given and have no default.
    pub unset: Vec<String>,
    pub answers: HashMap<String, String>,
    /// The environment's vars with `--var` overrides applied.
    pub vars: IndexMap<String, String>,
    /// The `--var` overrides, as given (recorded in the journal for resume).
    pub var_overrides: Vec<(String, String)>,
    pub redactor: Redactor,
    /// `RUNBOOK_PARAM_<NAME>` variables in our environment that this procedure does not
    /// take: its children do not inherit them (see `secret_env`).
    pub hidden_env: Vec<String>,
    /// The run this plan runs as (`run.id`, `run.started` in templates); `None` before a run
    /// exists (a dry-run, the checks before the lock), where they render as placeholders.
    pub run: Option<RunInfo>,
}

/// `run` in templates.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunInfo {
    pub id: String,
    /// When the run first started, RFC 3339 UTC (a resume keeps it).
    pub started: String,
    /// When each step first started in an earlier attempt of this run (a resume, a
    /// hand-over): a `done_if` can tell what that attempt may have made from what was there.
    pub started_steps: std::collections::BTreeMap<String, String>,
}

/// A reason the inputs do not fit the procedure; one line, exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("runbook `{runbook}` has no procedure `{procedure}`{hint}")]
    UnknownProcedure { runbook: String, procedure: String, hint: String },
    #[error("`{runbook}` needs --env: one of {choices}")]
    MissingEnvironment { runbook: String, choices: String },
    #[error("unknown environment `{given}` for --env: one of {choices}")]
    UnknownEnvironment { given: String, choices: String },
    #[error("--env given, but runbook `{runbook}` has no environments")]
    NoEnvironments { runbook: String },
    #[error("missing --{flag}: {help}")]
    MissingParam { flag: String, help: String },
    #[error("invalid value '{value}' for --{flag}: {reason}")]
    InvalidParam { flag: String, value: String, reason: String },
    #[error("secret --{flag} is shorter than {MIN_SECRET_LEN} characters, too short to be masked reliably")]
    ShortSecret { flag: String },
    /// The value is not quoted: it may be the answer to a secret prompt.
    #[error("invalid --answer: expected STEP_ID=VALUE (the value given is not shown: it may be a secret)")]
    AnswerSyntax,
    #[error("invalid --var '{0}': expected NAME=VALUE")]
    VarSyntax(String),
    #[error("--var {name}=…: environment `{environment}` has no var `{name}` (vars: {known})")]
    UnknownVar { name: String, environment: String, known: String },
    #[error("--var needs --env: runbook `{0}` has no environments")]
    VarWithoutEnvironment(String),
    #[error("--answer {id}=…: procedure `{procedure}` has no prompt or manual step `{id}` (it has: {known})")]
    UnknownAnswer { id: String, procedure: String, known: String },
    #[error("step `{step}` reads env.{name}, but the environment variable {name} is not valid UTF-8")]
    NonUtf8Env { step: String, name: String },
    #[error("step `{step}`: cannot render {what}: {message}")]
    Render { step: String, what: String, message: String },
    /// A watch's `every`, `within` or `hold` resolved to a value that does not fit; the message
    /// names its `file:line:col`.
    #[error("step `{step}`: {message}")]
    WatchTiming { step: String, message: String },
    #[error("invalid --answer {id}=…: {reason}")]
    InvalidAnswer { id: String, reason: String },
    /// Another of these whose message quoted a secret, masked (see `Plan::bind`).
    #[error("{0}")]
    Masked(String),
}

/// Inputs to bind, as given on the command line.
#[derive(Debug, Default)]
pub struct Inputs {
    pub environment: Option<String>,
    pub params: IndexMap<String, String>,
    pub answers: Vec<String>,
    /// `--var NAME=VALUE`: replaces an environment var for this run (a rehearsal against
    /// a local server, a differently named staging instance).
    pub vars: Vec<String>,
}

impl Plan {
    /// Binds the inputs to the procedure. Every secret given (a secret param by flag or
    /// `RUNBOOK_PARAM_*`, a secret prompt's answer) is registered with the plan's redactor
    /// before anything is checked, and every refusal is masked with it: a check that quotes
    /// what it refuses (`--count`, `--env`, `--var`, an answer's choice) never shows a secret
    /// pasted there.
    pub fn bind(runbook: RunbookRef, procedure: &str, inputs: Inputs, now: DateTime<Utc>) -> Result<Plan, PlanError> {
        let redactor = Redactor::default();
        register_given_secrets(&runbook, &inputs, &redactor);
        Plan::bind_with(runbook, procedure, inputs, now, redactor.clone()).map_err(|err| err.masked(&redactor))
    }

    fn bind_with(
        runbook: RunbookRef,
        procedure: &str,
        inputs: Inputs,
        now: DateTime<Utc>,
        redactor: Redactor,
    ) -> Result<Plan, PlanError> {
        let Some(proc) = runbook.procedures.get(procedure) else {
            let hint = runbook_lang::diagnostic::did_you_mean(procedure, runbook.procedures.keys().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Err(PlanError::UnknownProcedure {
                runbook: runbook.name.clone(),
                procedure: procedure.into(),
                hint,
            });
        };
        let environment = bind_environment(&runbook, inputs.environment)?;
        let mut params = IndexMap::new();
        let mut missing_secrets = Vec::new();
        let mut unset = Vec::new();
        for param in runbook.params_of(&proc.name) {
            let flag = flag_name(&param.name);
            let raw = inputs.params.get(&param.name).cloned().or_else(|| param.default.clone());
            let Some(raw) = raw else {
                if param.secret {
                    missing_secrets.push(param.name.clone());
                    continue;
                }
                if param.ty == runbook_lang::param::ParamType::Bool {
                    params.insert(param.name.clone(), ParamValue::Bool(false));
                    continue;
                }
                if param.required {
                    let help = param.help.clone().unwrap_or_else(|| param.ty.expectation());
                    return Err(PlanError::MissingParam { flag, help });
                }
                // Not given and optional: templates see `none` (rendered empty), and the
                // journal records nothing for it.
                unset.push(param.name.clone());
                continue;
            };
            let value = param.check_value(&raw, now).map_err(|reason| PlanError::InvalidParam {
                flag: flag.clone(),
                // A secret's value is never echoed, not even in its own error.
                value: if param.secret { crate::redact::MASK.into() } else { raw.clone() },
                reason,
            })?;
            if param.secret {
                if raw.chars().count() < MIN_SECRET_LEN {
                    return Err(PlanError::ShortSecret { flag });
                }
                redactor.add(&raw);
            }
            params.insert(param.name.clone(), value);
        }
        let answers = bind_answers(&runbook, proc, inputs.answers)?;
        // An answer to a secret prompt is a secret from the moment it is known.
        let secret_steps: Vec<&str> = runbook
            .procedures
            .values()
            .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
            .filter(|s| s.output_is_secret())
            .map(|s| s.id.as_str())
            .collect();
        for (id, value) in &answers {
            if secret_steps.contains(&id.as_str()) {
                if value.chars().count() < MIN_SECRET_LEN {
                    return Err(PlanError::ShortSecret { flag: format!("answer {id}") });
                }
                redactor.add(value);
            }
        }
        let (vars, var_overrides) = bind_vars(&runbook, environment.as_deref(), inputs.vars)?;
        let hidden_env = secret_env(&runbook, &proc.name, &redactor);
        let procedure = proc.name.clone();
        let plan = Plan {
            runbook,
            procedure,
            environment,
            params,
            missing_secrets,
            unset,
            answers,
            vars,
            var_overrides,
            redactor,
            hidden_env,
            run: None,
        };
        plan.prerender()?;
        Ok(plan)
    }

    /// Renders, before anything runs, every template and expression that does not depend
    /// on a step's output (or on a secret still to be asked for): one that fails, loops
    /// past its fuel or nests too deep stops the run here, with nothing started.
    fn prerender(&self) -> Result<(), PlanError> {
        self.check_watches()?;
        let outputs = Outputs::dry_run();
        for step in self.reachable_steps() {
            let context = self.step_context(&outputs, step);
            for (what, refs, result) in evaluations(step, &context) {
                for name in refs.iter().filter_map(|r| r.strip_prefix("env.")).map(|r| r.split('.').next().unwrap_or(r))
                {
                    if std::env::var_os(name).is_some_and(|v| v.to_str().is_none()) {
                        return Err(PlanError::NonUtf8Env { step: step.id.clone(), name: name.to_owned() });
                    }
                }
                let later = refs.iter().any(|r| {
                    r == "steps"
                        || r.starts_with("steps.")
                        || r == "result"
                        || r.starts_with("result.")
                        || self.missing_secrets.iter().any(|n| r == "params" || r.strip_prefix("params.") == Some(n))
                });
                if later {
                    continue;
                }
                if let Err(err) = result() {
                    return Err(PlanError::Render {
                        step: step.id.clone(),
                        what,
                        message: self.redactor.redact(&err.0),
                    });
                }
            }
        }
        Ok(())
    }

    /// The timing of every watch the procedure can reach, resolved and checked against the
    /// vars bound now (again after a rehearsal replaced some).
    pub fn check_watches(&self) -> Result<(), PlanError> {
        for step in self.reachable_steps() {
            if let StepKind::Watch(watch) = &step.kind {
                self.watch_timing(step, watch)?;
            }
        }
        Ok(())
    }

    /// A watch's `every`, `within` and `hold` for this plan's environment and params.
    pub fn watch_timing(&self, step: &Step, watch: &WatchStep) -> Result<WatchTiming, PlanError> {
        watch
            .timing(&self.context(&Outputs::dry_run()), &self.runbook.source)
            .map_err(|err| PlanError::WatchTiming { step: step.id.clone(), message: self.redactor.redact(&err.0) })
    }

    /// The context `step`'s templates render in: [`Plan::context`], and for a watch's sample
    /// `now`, the time the sample starts (RFC 3339, UTC, to the second; a placeholder in a
    /// dry-run, as each sample renders afresh).
    pub fn step_context(&self, steps: &Outputs, step: &Step) -> Value {
        let context = self.context(steps);
        if !matches!(step.kind, StepKind::Watch(_)) {
            return context;
        }
        let now = if steps.placeholders {
            Value::from_object(Placeholder::new("now"))
        } else {
            Value::from(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string())
        };
        minijinja::context! { now => now, ..context }
    }

    /// Every step the plan's procedure can reach: its own, included ones, failure handlers.
    pub fn reachable_steps(&self) -> Vec<&Step> {
        fn walk<'a>(
            runbook: &'a runbook_lang::model::Runbook,
            name: &str,
            seen: &mut Vec<String>,
            out: &mut Vec<&'a Step>,
        ) {
            if seen.iter().any(|s| s == name) {
                return;
            }
            seen.push(name.to_owned());
            let Some(procedure) = runbook.procedures.get(name) else { return };
            for step in procedure.stages.iter().flat_map(|s| &s.steps) {
                out.push(step);
                for other in step.procedures_used() {
                    walk(runbook, other, seen, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.runbook, &self.procedure, &mut Vec::new(), &mut out);
        out
    }

    pub fn environment(&self) -> Option<&Environment> {
        self.environment.as_ref().and_then(|e| self.runbook.environments.get(e))
    }

    /// The template context: `params`, `vars`, `env`, `environment`, `steps`.
    pub fn context(&self, steps: &Outputs) -> Value {
        let mut params: BTreeMap<String, Value> =
            self.params.iter().map(|(k, v)| (k.clone(), Value::from(minijinja::value::Serde(v)))).collect();
        for name in &self.unset {
            params.insert(name.clone(), Value::from(()));
        }
        for name in &self.missing_secrets {
            params.insert(name.clone(), Value::from_object(Placeholder::new(format!("secret params.{name}"))));
        }
        let vars: BTreeMap<String, String> = self.vars.clone().into_iter().collect();
        // A variable that is not UTF-8 cannot be a template value; it is left out here (a
        // template that reads it is refused before the run) and children still inherit it.
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        minijinja::context! {
            params => params,
            vars => vars,
            env => env,
            environment => self.environment.clone().unwrap_or_default(),
            steps => Value::from_object(steps.clone()),
            run => match &self.run {
                Some(run) => Value::from(minijinja::value::Serde(run)),
                // Before a run exists (a dry-run, the checks before the lock): its id and start
                // are not known, and no step of it has started.
                None => minijinja::context! {
                    id => Value::from_object(Placeholder::new("run.id")),
                    started => Value::from_object(Placeholder::new("run.started")),
                    started_steps => minijinja::context! {},
                },
            },
        }
    }

    /// Whether a template's value derives from a secret.
    pub fn is_secret(&self, template: &Template) -> bool {
        template_is_secret(&self.runbook, template)
    }
}

pub fn template_is_secret(runbook: &runbook_lang::model::Runbook, template: &Template) -> bool {
    // A template that does not parse never renders; the checker reports it.
    let Ok(refs) = template.references() else { return false };
    refs.iter().any(|path| runbook_lang::taint::secret_source(runbook, path).is_some())
}

/// Every secret among the inputs, registered before any of them is checked: secret params
/// (all of the runbook's, given to this procedure or not), answers to secret prompts, and
/// every `RUNBOOK_PARAM_*` variable (see `secret_env`).
fn register_given_secrets(runbook: &runbook_lang::model::Runbook, inputs: &Inputs, redactor: &Redactor) {
    let secret_params = runbook.params.values().filter(|p| p.secret);
    redactor.add_all(secret_params.filter_map(|p| inputs.params.get(&p.name)).map(String::as_str));
    let secret_answers = inputs.answers.iter().filter_map(|item| item.split_once('=')).filter(|(id, _)| {
        runbook
            .procedures
            .values()
            .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
            .any(|s| s.id == *id && s.output_is_secret())
    });
    redactor.add_all(secret_answers.map(|(_, value)| value));
    redactor.add_param_variables();
}

impl PlanError {
    /// The error with every registered secret masked in its message (itself when none is
    /// in it).
    fn masked(self, redactor: &Redactor) -> PlanError {
        let text = self.to_string();
        let masked = redactor.redact(&text);
        if masked == text { self } else { PlanError::Masked(masked) }
    }
}

/// `RUNBOOK_PARAM_<NAME>` is how secret params come in, so every such variable's value is
/// masked, whether or not this procedure takes the param; and a child gets only the ones
/// its procedure takes (least privilege: a step has no use for another procedure's secret).
/// Returns the names to strip from children's environment.
fn secret_env(runbook: &runbook_lang::model::Runbook, procedure: &str, redactor: &Redactor) -> Vec<String> {
    let taken: Vec<String> = runbook
        .params_of(procedure)
        .iter()
        .filter(|p| p.secret)
        .map(|p| runbook_lang::param::secret_env_name(&p.name))
        .collect();
    let mut hidden = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("RUNBOOK_PARAM_") {
            continue;
        }
        if let Some(value) = value.to_str() {
            redactor.add(value);
        }
        if !taken.iter().any(|t| t == name) {
            hidden.push(name.to_owned());
        }
    }
    hidden
}

fn bind_environment(
    runbook: &runbook_lang::model::Runbook,
    given: Option<String>,
) -> Result<Option<String>, PlanError> {
    let choices = || runbook.environments.keys().cloned().collect::<Vec<_>>().join(", ");
    match given {
        None if runbook.environments.is_empty() => Ok(None),
        // No silent default to production: with environments, --env is required.
        None => Err(PlanError::MissingEnvironment { runbook: runbook.name.clone(), choices: choices() }),
        Some(_) if runbook.environments.is_empty() => Err(PlanError::NoEnvironments { runbook: runbook.name.clone() }),
        Some(name) if runbook.environments.contains_key(&name) => Ok(Some(name)),
        Some(name) => Err(PlanError::UnknownEnvironment { given: name, choices: choices() }),
    }
}

type BoundVars = (IndexMap<String, String>, Vec<(String, String)>);

fn bind_vars(
    runbook: &runbook_lang::model::Runbook,
    environment: Option<&str>,
    raw: Vec<String>,
) -> Result<BoundVars, PlanError> {
    let Some(env) = environment.and_then(|e| runbook.environments.get(e)) else {
        return if raw.is_empty() {
            Ok((IndexMap::new(), Vec::new()))
        } else {
            Err(PlanError::VarWithoutEnvironment(runbook.name.clone()))
        };
    };
    let mut vars = env.vars.clone();
    let mut overrides = Vec::new();
    for item in raw {
        let Some((name, value)) = item.split_once('=') else { return Err(PlanError::VarSyntax(item)) };
        if !vars.contains_key(name) {
            let known = env.vars.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(PlanError::UnknownVar { name: name.into(), environment: env.name.clone(), known });
        }
        vars.insert(name.to_owned(), value.to_owned());
        overrides.push((name.to_owned(), value.to_owned()));
    }
    Ok((vars, overrides))
}

fn bind_answers(
    runbook: &runbook_lang::model::Runbook,
    proc: &Procedure,
    raw: Vec<String>,
) -> Result<HashMap<String, String>, PlanError> {
    let mut answerable = Vec::new();
    collect_answerable(runbook, proc, &mut answerable, &mut Vec::new());
    let mut answers = HashMap::new();
    for item in raw {
        let Some((id, value)) = item.split_once('=') else { return Err(PlanError::AnswerSyntax) };
        if !answerable.contains(&id.to_owned()) {
            // Shown escaped and cut: a mistyped id may hold control characters or be huge.
            let known = if answerable.is_empty() { "none".to_owned() } else { answerable.join(", ") };
            let id = id.escape_debug().take(80).collect();
            return Err(PlanError::UnknownAnswer { id, procedure: proc.name.clone(), known });
        }
        // SPEC §3 rule 5: a decision given ahead is checked before the first step runs.
        if let Some(step) = find_step(runbook, id)
            && let StepKind::Prompt(prompt) = &step.kind
        {
            let shown = if step.secret { crate::redact::MASK } else { value };
            prompt
                .check_answer(value, prompt.static_choices(), shown, Utc::now())
                .map_err(|reason| PlanError::InvalidAnswer { id: id.to_owned(), reason })?;
        }
        answers.insert(id.to_owned(), value.to_owned());
    }
    Ok(answers)
}

fn find_step<'a>(runbook: &'a runbook_lang::model::Runbook, id: &str) -> Option<&'a Step> {
    runbook.procedures.values().flat_map(|p| p.stages.iter().flat_map(|s| &s.steps)).find(|s| s.id == id)
}

fn collect_answerable(
    runbook: &runbook_lang::model::Runbook,
    proc: &Procedure,
    out: &mut Vec<String>,
    seen: &mut Vec<String>,
) {
    if seen.contains(&proc.name) {
        return;
    }
    seen.push(proc.name.clone());
    for step in proc.stages.iter().flat_map(|s| &s.steps) {
        if matches!(step.kind, StepKind::Prompt(_) | StepKind::Manual(_)) || step.confirm.is_some() {
            out.push(step.id.clone());
        }
        for name in step.procedures_used() {
            if let Some(other) = runbook.procedures.get(name) {
                collect_answerable(runbook, other, out, seen);
            }
        }
    }
}

/// What finished steps produced, as seen by templates (`steps.<id>.output`, `.json`,
/// `.lines`, `.status`). In a dry-run, steps that have not run are placeholders.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub values: BTreeMap<String, Value>,
    pub placeholders: bool,
}

impl Outputs {
    pub fn dry_run() -> Self {
        Outputs { values: BTreeMap::new(), placeholders: true }
    }

    pub fn insert(&mut self, id: &str, output: &StepOutput) {
        self.values.insert(id.to_owned(), Value::from(minijinja::value::Serde(output)));
    }
}

/// One step's results, as templates see them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StepOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
}

impl Object for Outputs {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let id = key.as_str()?;
        match self.values.get(id) {
            Some(value) => Some(value.clone()),
            None if self.placeholders => Some(Value::from_object(Placeholder::new(format!("steps.{id}")))),
            None => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.values.keys().map(|k| Value::from(k.as_str())).collect())
    }
}

type Evaluation<'a> = (String, std::collections::BTreeSet<String>, Box<dyn FnOnce() -> Result<(), RenderError> + 'a>);

/// What rendering a step involves: each template and expression, named as the runbook
/// names it, with the variables it reads and a closure that renders or evaluates it.
fn evaluations<'a>(step: &'a Step, context: &'a Value) -> Vec<Evaluation<'a>> {
    let mut templates: Vec<(String, &Template)> = Vec::new();
    let mut exprs: Vec<(String, &Expr)> = Vec::new();
    let process = |p: &'a runbook_lang::step::Process, templates: &mut Vec<(String, &'a Template)>| {
        templates.extend(p.env.iter().map(|(k, t)| (format!("env.{k}"), t)));
        templates.extend(p.stdin.iter().map(|t| ("stdin".to_owned(), t)));
        templates.extend(p.cwd.iter().map(|t| ("cwd".to_owned(), t)));
    };
    // A watch renders its sample's templates; `pass` and `fail` see a sample, known only
    // when one is taken.
    let kind = match &step.kind {
        StepKind::Watch(watch) => &*watch.sample,
        kind => kind,
    };
    match kind {
        StepKind::Run(run) => {
            templates.extend(run.argv.iter().enumerate().map(|(i, t)| (format!("run[{i}]"), t)));
            process(&run.process, &mut templates);
        }
        StepKind::Shell(shell) => {
            templates.extend(shell.args.iter().enumerate().map(|(i, t)| (format!("args[{i}]"), t)));
            process(&shell.process, &mut templates);
        }
        StepKind::Http(http) => {
            templates.push(("url".to_owned(), &http.url));
            templates.extend(http.headers.iter().map(|(k, t)| (format!("headers.{k}"), t)));
            templates.extend(http.body.iter().map(|t| ("body".to_owned(), t)));
            templates.extend(http.expect.body_contains.iter().map(|t| ("expect.body_contains".to_owned(), t)));
        }
        StepKind::Manual(text) => templates.push(("manual".to_owned(), text)),
        StepKind::Prompt(prompt) => {
            templates.push(("prompt".to_owned(), &prompt.question));
            templates.extend(prompt.default.iter().map(|t| ("default".to_owned(), t)));
            if let Some(Choices::Expr(expr)) = &prompt.choices {
                exprs.push(("choices".to_owned(), expr));
            }
        }
        StepKind::Assert(assert) => {
            exprs.push(("assert".to_owned(), &assert.expr));
            templates.extend(assert.message.iter().map(|t| ("message".to_owned(), t)));
        }
        StepKind::Include(_) | StepKind::Watch(_) => {}
    }
    templates.extend(step.confirm.iter().map(|t| ("target".to_owned(), t)));
    exprs.extend(step.when.iter().map(|e| ("when".to_owned(), e)));
    exprs.extend(step.retry.iter().filter_map(|r| r.until.as_ref()).map(|e| ("until".to_owned(), e)));
    let mut out: Vec<Evaluation<'a>> = Vec::new();
    for (what, template) in templates {
        let refs = template.references().unwrap_or_default();
        out.push((format!("`{what}`"), refs, Box::new(move || template.render(context).map(drop))));
    }
    for (what, expr) in exprs {
        let refs = expr.references().unwrap_or_default();
        out.push((format!("`{what}`"), refs, Box::new(move || expr.eval(context).map(drop))));
    }
    out
}

/// Steps of a procedure in the order they run, with included procedures expanded.
pub fn steps_in_order<'a>(
    runbook: &'a runbook_lang::model::Runbook,
    procedure: &'a Procedure,
    out: &mut Vec<&'a Step>,
) {
    for step in procedure.stages.iter().flat_map(|s| &s.steps) {
        out.push(step);
        if let StepKind::Include(include) = &step.kind
            && let Some(other) = runbook.procedures.get(&include.procedure)
        {
            steps_in_order(runbook, other, out);
        }
    }
}
