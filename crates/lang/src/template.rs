//! MiniJinja templates and expressions: the one place that knows the template engine.
//!
//! Templates are parsed while a runbook is checked (syntax errors and references are found
//! before anything runs) and rendered against a context of `params`, `vars`, `steps`, `env`
//! and `environment` when a step is about to run, or with placeholders in a dry-run.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Environment, UndefinedBehavior, Value};

use crate::source::{Source, Span};

pub use crate::refs::ROOTS;

/// Work one rendering may do: instructions plus about one unit per 64 bytes of data it
/// creates, so it bounds both time (well under a second) and memory (about 64 MiB). A
/// runbook's templates need a few hundred; a loop over a huge range runs out instead of
/// rendering forever.
pub const RENDER_FUEL: u64 = 1_000_000;
/// The longest text one template may render to.
pub const MAX_RENDERED: usize = 16 * 1024 * 1024;
/// How deep macros and loops may nest; a macro that calls itself stops here.
pub const RECURSION_LIMIT: usize = 100;

static ENGINE: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_fuel(Some(RENDER_FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Rendered text goes to argv, stdin and HTTP bodies, never to HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("replace_host", replace_host);
    env.add_filter("utc", utc);
    env.add_filter("epoch", epoch);
    env.add_filter("minus", minus);
    // `x.startswith('10.')`, `s.split(',')`: what runbook authors write from Python habit.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    // Booleans go to argv as `true`/`false`, as the programs we call spell them, not as
    // Python's `True`.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            return Ok(());
        }
        if value.kind() == minijinja::value::ValueKind::Bool {
            return out.write_str(if value.is_true() { "true" } else { "false" }).map_err(minijinja::Error::from);
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
});

/// A templated string as the user wrote it.
#[derive(Debug, Clone)]
pub struct Template {
    pub text: String,
    pub span: Span,
}

/// An expression (`when`, `assert`, `retry.until`, `choices`) as the user wrote it.
#[derive(Debug, Clone)]
pub struct Expr {
    pub text: String,
    pub span: Span,
}

impl serde::Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl serde::Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A syntax error inside a template, with the part of the template it concerns.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
}

impl Template {
    pub fn new(text: impl Into<String>, span: Span) -> Self {
        Template { text: text.into(), span }
    }

    /// True when the text contains no template syntax and renders to itself.
    pub fn is_literal(&self) -> bool {
        !self.text.contains("{{") && !self.text.contains("{%") && !self.text.contains("{#")
    }

    /// Parses the template; returns the variables it reads (`params.x`, `steps.a.output`).
    pub fn references(&self) -> Result<BTreeSet<String>, SyntaxError> {
        if self.is_literal() {
            return Ok(BTreeSet::new());
        }
        if let Some(refs) = simple_references(&self.text) {
            return Ok(refs);
        }
        let template = ENGINE.template_from_str(&self.text).map_err(syntax_error)?;
        let mut refs: BTreeSet<String> = template.undeclared_variables(true).into_iter().collect();
        // The engine's list misses reads through a slice (`params.token[2:]`): checks and
        // taint must not.
        refs.extend(crate::refs::paths(&self.text, false));
        Ok(refs)
    }

    pub fn render(&self, context: &Value) -> Result<String, RenderError> {
        self.render_in(context, None)
    }

    /// Renders; an error names the template's `file:line:col` in `source` and the expression
    /// that failed (`` in `t.latestRevision`: `t.latestRevision` is undefined ``).
    pub fn render_located(&self, context: &Value, source: &Source) -> Result<String, RenderError> {
        self.render_in(context, Some(source))
    }

    fn render_in(&self, context: &Value, source: Option<&Source>) -> Result<String, RenderError> {
        if self.is_literal() {
            return Ok(self.text.clone());
        }
        let failed = |err: minijinja::Error| match source {
            Some(source) => located(&err, &self.text, self.span, source),
            None => render_error(err),
        };
        let template = ENGINE.template_from_str(&self.text).map_err(failed)?;
        let mut out = Bounded { text: Vec::new(), overflow: false };
        match template.render_captured_to(context, &mut out) {
            Ok(_) => String::from_utf8(out.text).map_err(|_| RenderError("the template rendered invalid UTF-8".into())),
            Err(_) if out.overflow => {
                Err(RenderError(format!("the template renders more than {} MiB of text", MAX_RENDERED / (1024 * 1024))))
            }
            Err(err) => Err(failed(err)),
        }
    }
}

/// The variables of a template whose every tag is a plain path (`{{ params.target }}`,
/// `{{ steps.a.output }}`), found without parsing it (issue 13: the engine's parser was most
/// of checking a 5,000-step runbook). `None` for anything else (statements, comments,
/// filters, calls, subscripts, whitespace control, keywords, a syntax error): the engine
/// decides. `simple_references_match_the_engine` holds the two to the same answer.
fn simple_references(text: &str) -> Option<BTreeSet<String>> {
    const KEYWORDS: &[&str] = &[
        "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else", "loop", "self",
        "super", "varargs", "kwargs",
    ];
    if text.contains("{%") || text.contains("{#") {
        return None;
    }
    let mut refs = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after.find("}}")?;
        let inner = &after[..close];
        if inner.starts_with(['-', '+']) || inner.ends_with(['-', '+']) {
            return None;
        }
        let path = inner.trim_matches(|c| c == ' ');
        if KEYWORDS.contains(&path.split('.').next()?) {
            return None;
        }
        for segment in path.split('.') {
            let mut chars = segment.chars();
            let head = chars.next()?;
            if !(head.is_ascii_alphabetic() || head == '_') || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
        }
        refs.insert(path.to_owned());
        rest = &after[close + 2..];
    }
    Some(refs)
}

/// Rendered text, refused past [`MAX_RENDERED`].
struct Bounded {
    text: Vec<u8>,
    overflow: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_RENDERED {
            self.overflow = true;
            return Err(std::io::Error::other("rendered text too long"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Expr {
    pub fn new(text: impl Into<String>, span: Span) -> Self {
        Expr { text: text.into(), span }
    }

    pub fn references(&self) -> Result<BTreeSet<String>, SyntaxError> {
        let expr = ENGINE.compile_expression(&self.text).map_err(syntax_error)?;
        let mut refs: BTreeSet<String> = expr.undeclared_variables(true).into_iter().collect();
        refs.extend(crate::refs::paths(&self.text, true));
        Ok(refs)
    }

    pub fn eval(&self, context: &Value) -> Result<Value, RenderError> {
        let expr = ENGINE.compile_expression(&self.text).map_err(render_error)?;
        expr.eval(context).map_err(render_error)
    }

    /// Evaluates; an error names the expression's `file:line:col` in `source`.
    pub fn eval_located(&self, context: &Value, source: &Source) -> Result<Value, RenderError> {
        let failed = |err: minijinja::Error| located(&err, &self.text, self.span, source);
        let expr = ENGINE.compile_expression(&self.text).map_err(failed)?;
        expr.eval(context).map_err(failed)
    }

    pub fn is_true(&self, context: &Value) -> Result<bool, RenderError> {
        self.eval(context).map(|v| v.is_true())
    }
}

fn syntax_error(err: minijinja::Error) -> SyntaxError {
    SyntaxError { message: describe(&err) }
}

/// A template that failed while rendering (an undefined value, a filter on the wrong type).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

fn render_error(err: minijinja::Error) -> RenderError {
    RenderError(describe(&err))
}

/// `file:line:col: in `EXPR`: MESSAGE`: where in the runbook a template failed. The engine
/// reports a byte range inside the template's text; the runbook's source holds that text at
/// `span` (quoted, or folded over lines): the failing part is looked up there, and the
/// template's own start is given where it cannot be found verbatim.
fn located(err: &minijinja::Error, text: &str, span: Span, source: &Source) -> RenderError {
    let message = describe(err);
    let part = err.range().and_then(|r| text.get(r)).map(str::trim).filter(|p| !p.is_empty());
    let written = source.text.get(span.start..span.end.max(span.start)).unwrap_or_default();
    let offset = part.and_then(|p| written.find(p)).map_or(span.start, |i| span.start + i);
    let (line, col) = source.line_col(offset);
    let part = part.map(|p| format!(" in `{p}`")).unwrap_or_default();
    RenderError(format!("{}:{line}:{col}:{part}: {message}", source.display_path()))
}

fn describe(err: &minijinja::Error) -> String {
    match err.kind() {
        minijinja::ErrorKind::OutOfFuel => {
            return format!(
                "the template does too much work (more than {RENDER_FUEL} units of rendering fuel): a loop or a value too large?"
            );
        }
        minijinja::ErrorKind::InvalidOperation if err.detail().is_some_and(|d| d.contains("recursion")) => {
            return format!("the template nests too deep (limit {RECURSION_LIMIT}): a macro that calls itself?");
        }
        _ => {}
    }
    let mut message = err.detail().map_or_else(|| err.kind().to_string(), str::to_owned);
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// `{{ url | replace_host(ip) }}`: the connection string of the current secret, pointed at a
/// new host. Keeps scheme, credentials, port, path and query exactly as they were.
fn replace_host(url: Value, host: Value) -> Result<Value, minijinja::Error> {
    if let Some(placeholder) = url.downcast_object_ref::<Placeholder>() {
        return Ok(Value::from_object(placeholder.derived("replace_host")));
    }
    if host.downcast_object_ref::<Placeholder>().is_some() {
        // The URL itself may be a secret: name only the host that is not known yet.
        return Ok(Value::from_object(Placeholder::new(format!("url with host {host}"))));
    }
    let url = url.as_str().ok_or_else(|| invalid("replace_host expects a URL string"))?;
    let host = host.to_string();
    replace_url_host(url, host.trim()).map(Value::from).map_err(|m| invalid(&m))
}

/// An RFC 3339 time (any offset, any fraction: `--timestamp`, Cloud Run's
/// `creationTimestamp`) as UTC to the second: `2025-06-15T14:00:00Z`. Shown beside times from
/// the cloud so that a time typed with an offset can be compared by eye.
fn utc(value: Value) -> Result<Value, minijinja::Error> {
    if let Some(placeholder) = value.downcast_object_ref::<Placeholder>() {
        return Ok(Value::from_object(placeholder.derived("utc")));
    }
    let time = parse_time(&value)?;
    Ok(Value::from(time.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// An RFC 3339 time as seconds since 1970 (with its fraction): what `assert`s compare, as
/// texts with different offsets or fractions do not sort by time.
fn epoch(value: Value) -> Result<Value, minijinja::Error> {
    if let Some(placeholder) = value.downcast_object_ref::<Placeholder>() {
        return Ok(Value::from_object(placeholder.derived("epoch")));
    }
    let time = parse_time(&value)?;
    let nanos = f64::from(time.timestamp_subsec_nanos()) / 1e9;
    #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit an f64's 53 bits exactly
    Ok(Value::from(time.timestamp() as f64 + nanos))
}

/// `{{ now | minus('5m') }}`: an RFC 3339 time moved back by a duration, in UTC to the
/// second: the start of a window that ends at a watch sample's `now` (a Cloud Monitoring
/// `interval.startTime`). The duration may be a var (`vars.error_window`).
fn minus(value: Value, duration: Value) -> Result<Value, minijinja::Error> {
    if let Some(placeholder) = value.downcast_object_ref::<Placeholder>() {
        return Ok(Value::from_object(placeholder.derived(&format!("minus({duration})"))));
    }
    let time = parse_time(&value)?;
    let text = duration.as_str().map_or_else(|| duration.to_string(), str::to_owned);
    let by = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(&format!("`{}` is not a duration ({e}); expected e.g. 90s, 5m", crate::diagnostic::clip(&text)))
    })?;
    let by = chrono::Duration::from_std(by).map_err(|_| invalid("the duration is too long"))?;
    let moved = time.checked_sub_signed(by).ok_or_else(|| invalid("the time moves out of range"))?;
    Ok(Value::from(moved.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn parse_time(value: &Value) -> Result<chrono::DateTime<chrono::Utc>, minijinja::Error> {
    let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| invalid(&format!("`{}` is not an RFC 3339 time ({e})", crate::diagnostic::clip(&text))))
}

fn invalid(message: &str) -> minijinja::Error {
    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message.to_owned())
}

/// Replaces the host of `scheme://[user[:password]@]host[:port][/path][?query]`.
///
/// Written by hand rather than with the `url` crate: that crate re-encodes the userinfo
/// and path of non-special schemes such as `postgres`, which would change the password.
pub fn replace_url_host(url: &str, new_host: &str) -> Result<String, String> {
    if new_host.is_empty() || new_host.contains(['/', '@', '?', '#', ' ']) {
        return Err(format!("replace_host: `{new_host}` is not a host name or IP address"));
    }
    let Some(scheme_end) = url.find("://") else {
        return Err("replace_host: the value is not a URL of the form scheme://host/...".into());
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_and_port = &authority[host_start..];
    let port = if host_and_port.starts_with('[') {
        host_and_port.find(']').map_or("", |i| &host_and_port[i + 1..])
    } else {
        host_and_port.rfind(':').map_or("", |i| &host_and_port[i..])
    };
    if host_and_port.len() == port.len() {
        return Err("replace_host: the URL has no host to replace".into());
    }
    let host = if new_host.contains(':') && !new_host.starts_with('[') {
        format!("[{new_host}]")
    } else {
        new_host.to_owned()
    };
    Ok(format!("{}{}{}{}{}", &url[..authority_start], &authority[..host_start], host, port, &rest[authority_len..]))
}

/// A value that is not known yet (the output of a step that has not run), rendered in a
/// dry-run as `<steps.new_ip.output>`. Attribute and index access extend the path, so
/// `steps.backups.json[0].id` renders as `<steps.backups.json[0].id>`.
#[derive(Debug, Clone)]
pub struct Placeholder {
    path: String,
}

impl Placeholder {
    pub fn new(path: impl Into<String>) -> Self {
        Placeholder { path: path.into() }
    }

    /// A root whose members render bare: `params.timestamp` as `<timestamp>`.
    pub fn prefix(prefix: &str) -> Self {
        Placeholder { path: format!("{prefix}\u{0}") }
    }

    fn derived(&self, filter: &str) -> Placeholder {
        Placeholder::new(format!("{} | {filter}", self.path))
    }
}

impl Object for Placeholder {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let path = match (key.as_str(), self.path.strip_suffix('\u{0}')) {
            (Some(name), Some(prefix)) => format!("{prefix}{name}"),
            (Some(name), None) => format!("{}.{name}", self.path),
            (None, _) => format!("{}[{key}]", self.path),
        };
        Some(Value::from_object(Placeholder::new(path)))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.path)
    }
}

/// Whether a rendered value is, or contains, a placeholder.
pub fn is_placeholder(value: &Value) -> bool {
    value.downcast_object_ref::<Placeholder>().is_some()
}

/// Whether the engine knows a filter: `| name` of an unknown filter only fails when the
/// template renders, so the checker asks here. (Filters handle a `none` argument without
/// side effects; any error but "unknown filter" means the filter exists.)
pub fn has_filter(name: &str) -> bool {
    let source = format!("none | {name}");
    let Ok(expr) = ENGINE.compile_expression(&source) else { return false };
    !matches!(expr.eval(Value::UNDEFINED), Err(e) if e.kind() == minijinja::ErrorKind::UnknownFilter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undefined_value_names_the_file_line_col_the_expression_and_the_missing_name() {
        let text = "{% for t in traffic %}{{ 'LATEST' if t.latestRevision else t.revisionName }}{% endfor %}";
        let yaml = format!("steps:\n  - run:\n      - \"{text}\"\n");
        let start = yaml.find(text).unwrap_or(0);
        let source = Source::new("rollback.yaml", yaml.clone());
        let template = Template::new(text, Span::new(start - 1, start + text.len() + 1));
        let context = minijinja::context! { traffic => vec![minijinja::context! { revisionName => "r1" }] };
        let err = template.render_located(&context, &source).err().map(|e| e.0).unwrap_or_default();
        let column = start - yaml[..start].rfind('\n').unwrap_or(0) + "{% for t in traffic %}".len();
        assert_eq!(
            err,
            format!(
                "rollback.yaml:3:{column}: in `{{{{ 'LATEST' if t.latestRevision else t.revisionName`: `t.latestRevision` is undefined"
            )
        );
        let expr = Expr::new("traffic[0].percent > 0", Span::new(0, 4));
        let err = expr.eval_located(&context, &source).err().map(|e| e.0).unwrap_or_default();
        assert!(err.starts_with("rollback.yaml:1:1:") && err.contains("`traffic[0].percent` is undefined"), "{err}");
    }

    #[test]
    fn replace_host_keeps_credentials_port_and_query() {
        assert_eq!(
            replace_url_host("postgres://app:p%40ss:w@10.0.0.5:5432/app?sslmode=require", "10.9.8.7").as_deref(),
            Ok("postgres://app:p%40ss:w@10.9.8.7:5432/app?sslmode=require")
        );
        assert_eq!(
            replace_url_host("postgresql://db.internal/app", "1.2.3.4").as_deref(),
            Ok("postgresql://1.2.3.4/app")
        );
        assert!(replace_url_host("not a url", "1.2.3.4").is_err());
        assert!(replace_url_host("postgres://u@h/db", "").is_err());
    }

    #[test]
    fn utc_and_epoch_compare_times_written_with_any_offset() {
        let ctx = minijinja::context! { a => "2025-06-15T16:00:00+02:00", b => "2025-06-15T14:00:00.500000Z" };
        let render = |text: &str| Template::new(text, Span::default()).render(&ctx).map_err(|e| e.to_string());
        assert_eq!(render("{{ a | utc }}").as_deref(), Ok("2025-06-15T14:00:00Z"));
        assert_eq!(render("{{ (a | epoch) < (b | epoch) }}").as_deref(), Ok("true"));
        assert!(render("{{ 'yesterday' | utc }}").is_err_and(|e| e.contains("not an RFC 3339 time")));
        // A window that ends at a watch sample's `now`.
        assert_eq!(render("{{ a | minus('5m') }}").as_deref(), Ok("2025-06-15T13:55:00Z"));
        assert_eq!(render("{{ b | minus('90s') }}").as_deref(), Ok("2025-06-15T13:58:30Z"));
        assert!(render("{{ a | minus('soon') }}").is_err_and(|e| e.contains("`soon` is not a duration")));
    }

    #[test]
    fn references_are_nested_paths() {
        let t = Template::new("{{ steps.a.output | replace_host(steps.b.output) }}-{{ params.x }}", Span::default());
        let refs = t.references().map_err(|e| e.message).unwrap_or_default();
        assert!(refs.contains("steps.a.output"), "{refs:?}");
        assert!(refs.contains("steps.b.output"), "{refs:?}");
        assert!(refs.contains("params.x"), "{refs:?}");
    }

    #[test]
    fn placeholders_render_their_path() {
        let ctx = minijinja::context! { steps => Value::from_object(Placeholder::new("steps")) };
        let t = Template::new("{{ steps.backups.json[0].id }}", Span::default());
        assert_eq!(t.render(&ctx).map_err(|e| e.0).as_deref(), Ok("<steps.backups.json[0].id>"));
    }
}

#[cfg(test)]
mod simple_reference_tests {
    use std::collections::BTreeSet;

    use super::{ENGINE, simple_references};

    /// What the engine (and the taint scan) say a template reads.
    fn engine(text: &str) -> Option<BTreeSet<String>> {
        let template = ENGINE.template_from_str(text).ok()?;
        let mut refs: BTreeSet<String> = template.undeclared_variables(true).into_iter().collect();
        refs.extend(crate::refs::paths(text, false));
        Some(refs)
    }

    #[test]
    fn simple_references_match_the_engine() {
        let cases = [
            "step 1 of {{ params.target }}",
            "{{params.target}}",
            "{{ steps.a.output }} and {{ vars.project }}-{{ env.HOME }}",
            "{{ x }}",
            "{{ a.b.c.d }} {{ a.b }}",
            "{{  spaced  }}",
            "{{ _under.score_9 }}",
            "a }} b {{ params.x }}",
            "{{ params.x }}}",
            "{{ true }}",
            "{{ none }}",
            "{{ loop.index }}",
            "{{ params.x | upper }}",
            "{{ params.x[0] }}",
            "{{ params.token[2:] }}",
            "{{ params['x'] }}",
            "{{- params.x -}}",
            "{{ params. }}",
            "{{ }}",
            "{{ params.x",
            "{% if x %}{{ y }}{% endif %}",
            "{# c #}{{ y }}",
            "{{ a.0 }}",
            "{{ f(x) }}",
            "{{ x\t}}",
            "{{ é }}",
        ];
        for case in cases {
            if let Some(fast) = simple_references(case) {
                assert_eq!(Some(fast), engine(case), "{case:?}");
            }
        }
        assert!(simple_references("step 1 of {{ params.target }}").is_some(), "the common case is fast");
        assert!(simple_references("{{ steps.a.output }} and {{ vars.project }}").is_some());
    }
}
