//! A step with every template rendered: what dry-run prints and what execution runs.

use std::path::PathBuf;
use std::time::Duration;

use minijinja::Value;
use serde::Serialize;

use crate::plan::{Outputs, Plan};
use crate::redact::MASK;
use runbook_lang::step::{Capture, Choices, Effect, Step, StepKind};
use runbook_lang::template::{RenderError, Template};

/// A rendered value that may be secret; `shown` is what may be printed.
#[derive(Debug, Clone, Serialize)]
pub struct Text {
    #[serde(skip)]
    pub value: String,
    pub shown: String,
    pub secret: bool,
}

impl Text {
    /// `shown` is filled in by [`render`] once every value derived from a secret in the
    /// step is registered.
    fn new(plan: &Plan, template: &Template, value: String, derived: &Derived) -> Self {
        let secret = plan.is_secret(template);
        if secret {
            derived.note(&value);
        }
        Text { value, shown: MASK.to_owned(), secret }
    }
}

/// The values derived from a secret while rendering one step (a slice of it, the new
/// connection string): secrets too, registered together once the step is rendered, so a
/// step costs at most one rebuild of the masker however many such values it has. Not in a
/// dry-run while a value holds placeholders: they are not the value.
struct Derived {
    placeholders: bool,
    values: std::cell::RefCell<Vec<String>>,
}

impl Derived {
    fn note(&self, value: &str) {
        if !(self.placeholders && value.contains('<')) {
            self.values.borrow_mut().push(value.to_owned());
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Rendered {
    pub id: String,
    pub name: Option<String>,
    pub effect: Effect,
    #[serde(serialize_with = "runbook_state::durations::serialize")]
    pub timeout: Duration,
    #[serde(flatten)]
    pub action: Action,
    /// `confirm: typed`: what the operator must type.
    pub confirm: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Action {
    Run {
        argv: Vec<String>,
        env: Vec<(String, Text)>,
        stdin: Option<Text>,
        cwd: Option<PathBuf>,
        capture: Option<Capture>,
    },
    Shell {
        script: String,
        args: Vec<String>,
        env: Vec<(String, Text)>,
        stdin: Option<Text>,
        cwd: Option<PathBuf>,
        capture: Option<Capture>,
    },
    Http {
        method: String,
        url: String,
        headers: Vec<(String, Text)>,
        body: Option<Text>,
        expect_status: Vec<u16>,
        expect_body_contains: Option<String>,
        expect_json: Vec<(String, serde_json::Value)>,
        #[serde(serialize_with = "runbook_state::durations::serialize_opt")]
        connect_timeout: Option<Duration>,
        capture: Option<Capture>,
    },
    Manual {
        text: String,
    },
    Prompt {
        question: String,
        choices: Option<Vec<String>>,
        /// What the operator sees for each choice (`label:`), in the order of `choices`.
        #[serde(skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<String>>,
        /// Choices that come from an expression not evaluable yet (dry-run).
        choices_from: Option<String>,
        default: Option<String>,
        secret: bool,
    },
    Assert {
        expr: String,
        message: Option<String>,
    },
    Include {
        procedure: String,
    },
    /// A read sampled every `every` until `pass` held `hold` times in a row (or `fail`
    /// held, or `within` ran out).
    Watch {
        sample: Box<Action>,
        #[serde(serialize_with = "runbook_state::durations::serialize")]
        every: Duration,
        #[serde(serialize_with = "runbook_state::durations::serialize")]
        within: Duration,
        pass: String,
        hold: u32,
        fail: Option<String>,
    },
}

impl Rendered {
    /// Whether any value still holds a dry-run placeholder (an output not known yet), so
    /// the step cannot be run for real by `--probe`.
    pub fn has_placeholders(&self) -> bool {
        let unknown = |text: &str| {
            text.contains("<steps.") || text.contains("<secret params.") || text.contains("<url with host")
        };
        let texts = |list: &[(String, Text)]| list.iter().any(|(_, t)| unknown(&t.value));
        let action = match &self.action {
            Action::Watch { sample, .. } => sample,
            action => action,
        };
        match action {
            Action::Run { argv, env, stdin, cwd, .. } => {
                argv.iter().any(|a| unknown(a))
                    || texts(env)
                    || stdin.as_ref().is_some_and(|s| unknown(&s.value))
                    || cwd.as_ref().is_some_and(|c| unknown(&c.to_string_lossy()))
            }
            Action::Shell { args, env, stdin, cwd, .. } => {
                args.iter().any(|a| unknown(a))
                    || texts(env)
                    || stdin.as_ref().is_some_and(|s| unknown(&s.value))
                    || cwd.as_ref().is_some_and(|c| unknown(&c.to_string_lossy()))
            }
            Action::Http { url, headers, body, .. } => {
                unknown(url) || texts(headers) || body.as_ref().is_some_and(|b| unknown(&b.value))
            }
            _ => false,
        }
    }

    /// What runs: the step's own process or request, or a watch's sample.
    pub fn work(&self) -> &Action {
        match &self.action {
            Action::Watch { sample, .. } => sample,
            action => action,
        }
    }

    /// Every [`Text`] of the step.
    fn texts_mut(&mut self) -> Vec<&mut Text> {
        let action = match &mut self.action {
            Action::Watch { sample, .. } => sample,
            action => action,
        };
        let (list, one) = match action {
            Action::Run { env, stdin, .. } | Action::Shell { env, stdin, .. } => (env, stdin),
            Action::Http { headers, body, .. } => (headers, body),
            _ => return Vec::new(),
        };
        list.iter_mut().map(|(_, text)| text).chain(one.as_mut()).collect()
    }

    /// The argv as it would be typed in a terminal, secrets masked.
    pub fn command_line(&self, plan: &Plan) -> Option<String> {
        match self.work() {
            Action::Run { argv, .. } => Some(command_line(argv.iter().map(|a| plan.redactor.redact(a)))),
            Action::Shell { script, args, .. } => {
                let mut argv = vec!["sh".to_owned(), "-c".to_owned(), script.clone(), "runbook".to_owned()];
                argv.extend(args.iter().map(|a| plan.redactor.redact(a)));
                Some(command_line(argv))
            }
            _ => None,
        }
    }
}

/// Renders a step. `outputs` holds finished steps (or placeholders in a dry-run).
///
/// A watch renders again before each sample (`now` is that sample's start): its timing is the
/// plan's, resolved from vars when the plan was bound.
pub fn render(plan: &Plan, step: &Step, outputs: &Outputs) -> Result<Rendered, RenderError> {
    let context = plan.step_context(outputs, step);
    let derived = Derived { placeholders: outputs.placeholders, values: std::cell::RefCell::new(Vec::new()) };
    let source = &plan.runbook.source;
    let text = |t: &Template| -> Result<Text, RenderError> {
        Ok(Text::new(plan, t, t.render_located(&context, source)?, &derived))
    };
    // Where the checker lets a secret through unmarked (an expectation, a confirmation
    // target), the value is still registered.
    let plain = |t: &Template| -> Result<String, RenderError> {
        let value = t.render_located(&context, source)?;
        if plan.is_secret(t) {
            derived.note(&value);
        }
        Ok(value)
    };
    // Registered below even when a later template fails: what was derived is a secret.
    let built = (|| -> Result<(Action, Option<String>), RenderError> {
        // What runs: a process or a request, alone or as a watch's sample.
        let work = |kind: &StepKind| -> Result<Action, RenderError> {
            Ok(match kind {
                StepKind::Run(run) => Action::Run {
                    argv: run.argv.iter().map(plain).collect::<Result<_, _>>()?,
                    env: run
                        .process
                        .env
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), text(t)?)))
                        .collect::<Result<_, RenderError>>()?,
                    stdin: run.process.stdin.as_ref().map(text).transpose()?,
                    cwd: run.process.cwd.as_ref().map(plain).transpose()?.map(PathBuf::from),
                    capture: run.process.capture,
                },
                StepKind::Shell(shell) => Action::Shell {
                    script: shell.script.clone(),
                    args: shell.args.iter().map(plain).collect::<Result<_, _>>()?,
                    env: shell
                        .process
                        .env
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), text(t)?)))
                        .collect::<Result<_, RenderError>>()?,
                    stdin: shell.process.stdin.as_ref().map(text).transpose()?,
                    cwd: shell.process.cwd.as_ref().map(plain).transpose()?.map(PathBuf::from),
                    capture: shell.process.capture,
                },
                StepKind::Http(http) => Action::Http {
                    method: http.method.clone(),
                    url: plain(&http.url)?,
                    headers: http
                        .headers
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), text(t)?)))
                        .collect::<Result<_, RenderError>>()?,
                    body: http.body.as_ref().map(text).transpose()?,
                    expect_status: http.expect.status.clone(),
                    expect_body_contains: http.expect.body_contains.as_ref().map(plain).transpose()?,
                    expect_json: http.expect.json.clone(),
                    connect_timeout: http.connect_timeout,
                    capture: http.capture,
                },
                _ => return Err(RenderError("a watch samples a `run`, `shell` or `http` step".into())),
            })
        };
        let action = match &step.kind {
            StepKind::Run(_) | StepKind::Shell(_) | StepKind::Http(_) => work(&step.kind)?,
            StepKind::Watch(watch) => {
                let timing = plan.watch_timing(step, watch).map_err(|e| RenderError(e.to_string()))?;
                Action::Watch {
                    sample: Box::new(work(&watch.sample)?),
                    every: timing.every,
                    within: timing.within,
                    pass: watch.pass.text.clone(),
                    hold: timing.hold,
                    fail: watch.fail.as_ref().map(|f| f.text.clone()),
                }
            }
            StepKind::Manual(template) => Action::Manual { text: plain(template)? },
            StepKind::Prompt(prompt) => {
                let (mut labels, mut choices, mut choices_from) = (None, None, None);
                match &prompt.choices {
                    None => {}
                    Some(Choices::List(list)) => choices = Some(list.clone()),
                    Some(Choices::Expr(expr)) => match expr.eval_located(&context, source) {
                        Ok(value) => match labelled_choices(prompt, &value, &context, source) {
                            Some(Ok((values, shown))) => (choices, labels) = (Some(values), shown),
                            Some(Err(_)) if outputs.placeholders => choices_from = Some(expr.text.clone()),
                            Some(Err(err)) => return Err(err),
                            None if outputs.placeholders => choices_from = Some(expr.text.clone()),
                            None => {
                                return Err(RenderError(format!(
                                    "`choices` must evaluate to a list, got {}",
                                    value.kind()
                                )));
                            }
                        },
                        Err(_) if outputs.placeholders => choices_from = Some(expr.text.clone()),
                        Err(err) => return Err(err),
                    },
                }
                Action::Prompt {
                    question: plain(&prompt.question)?,
                    choices,
                    labels,
                    choices_from,
                    default: prompt.default.as_ref().map(plain).transpose()?,
                    secret: step.secret,
                }
            }
            StepKind::Assert(assert) => Action::Assert {
                expr: assert.expr.text.clone(),
                // A message that loops over outputs not known yet (a dry-run) is shown as
                // written; when the assert runs, its outputs are known and it renders.
                message: match assert.message.as_ref().map(plain).transpose() {
                    Ok(message) => message,
                    Err(_) if outputs.placeholders => {
                        assert.message.as_ref().map(|m| m.text.split_whitespace().collect::<Vec<_>>().join(" "))
                    }
                    Err(err) => return Err(err),
                },
            },
            StepKind::Include(include) => Action::Include { procedure: include.procedure.clone() },
        };
        Ok((action, step.confirm.as_ref().map(plain).transpose()?))
    })();
    // A derived value is a secret wherever it turns up (a child may print it), and so in
    // this step's own values: registered before any of them is masked for showing.
    plan.redactor.add_all(derived.values.borrow().iter().map(String::as_str));
    let (action, confirm) = built?;
    let mut rendered = Rendered {
        id: step.id.clone(),
        name: step.name.clone(),
        effect: step.effect,
        timeout: step.timeout_or_default(),
        action,
        confirm,
    };
    for text in rendered.texts_mut() {
        if !text.secret {
            text.shown = plan.redactor.redact(&text.value);
        }
    }
    Ok(rendered)
}

type ChoiceList = (Vec<String>, Option<Vec<String>>);

/// The values of an expression's choices and, with `label:`, what the operator sees for
/// each; `value:`/`label:` are rendered once per item, with the item as `item`.
/// `None`: not a list (or not known yet).
fn labelled_choices(
    prompt: &runbook_lang::step::PromptStep,
    list: &Value,
    context: &Value,
    source: &runbook_lang::source::Source,
) -> Option<Result<ChoiceList, RenderError>> {
    if runbook_lang::template::is_placeholder(list) {
        return None;
    }
    let iter = list.try_iter().ok()?;
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for item in iter {
        let scope = minijinja::context! { item => item.clone(), ..context.clone() };
        let value = match &prompt.value {
            Some(template) => match template.render_located(&scope, source) {
                Ok(value) => value,
                Err(err) => return Some(Err(err)),
            },
            None => item.to_string(),
        };
        if let Some(template) = &prompt.label {
            match template.render_located(&scope, source) {
                // One line, and nothing that could drive the terminal (escape sequences).
                Ok(label) => labels.push(
                    label
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect(),
                ),
                Err(err) => return Some(Err(err)),
            }
        }
        values.push(value);
    }
    Some(Ok((values, prompt.label.is_some().then_some(labels))))
}

/// Joins argv for pasting into a terminal. `shell_words::quote` also quotes `=`, which is
/// only special in a command's first word; `--project=x` reads better unquoted. An argument
/// holding a control character (a param's `\r` or escape sequence) is shown in bash's
/// `$'…'` form with each one visible, so the line confirmed is the argv that runs.
pub fn command_line(argv: impl IntoIterator<Item = String>) -> String {
    let mut out = Vec::new();
    for (index, arg) in argv.into_iter().enumerate() {
        if let Some(quoted) = runbook_lang::diagnostic::shell_word(&arg) {
            out.push(quoted);
            continue;
        }
        let plain = !arg.is_empty()
            && arg.chars().all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
            && !(index == 0 && arg.contains('='));
        out.push(if plain { arg } else { shell_words::quote(&arg).into_owned() });
    }
    out.join(" ")
}

/// How an `http:` step is shown: its method and URL, secrets masked.
pub fn http_line(plan: &Plan, rendered: &Rendered) -> Option<String> {
    match rendered.work() {
        Action::Http { method, url, .. } => Some(format!("{method} {}", plan.redactor.redact(url))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn command_line_quotes_only_what_the_shell_would_interpret() {
        let argv = ["gcloud", "--project=p-1", "x; rm -rf ~", "", "a'b", "value(ip[0])"].map(String::from);
        let line = command_line(argv);
        assert_eq!(line, r#"gcloud --project=p-1 'x; rm -rf ~' '' 'a'\''b' 'value(ip[0])'"#);
        assert_eq!(shell_words::split(&line).map(|v| v.len()).ok(), Some(6));
    }

    #[test]
    fn command_line_shows_control_characters_of_an_argument() {
        let line = command_line(["echo".to_owned(), "line1\nline2\r\u{1b}[31mred\u{7}".to_owned()]);
        assert_eq!(line, r"echo $'line1\nline2\r\e[31mred\a'");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
}
