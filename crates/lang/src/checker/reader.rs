//! Typed reading of YAML nodes that records a diagnostic for every mistake and goes on.

use std::time::Duration;

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::param::parse_duration;
use crate::source::{SourceRef, Span};
use crate::template::{Expr, Template};
use crate::yaml::{Node, Value};

/// Collects the diagnostics of one file while its nodes are read.
pub struct Reader {
    pub source: SourceRef,
    pub diagnostics: Vec<Diagnostic>,
}

/// The entries of a mapping whose keys have been checked against the known ones.
pub struct Fields<'n> {
    pub node: &'n Node,
    entries: &'n [(Node, Node)],
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    pub fn key_span(&self, key: &str) -> Option<Span> {
        self.entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, _)| k.span)
    }

    pub fn entries(&self) -> &'n [(Node, Node)] {
        self.entries
    }
}

impl Reader {
    pub fn new(source: SourceRef) -> Self {
        Reader { source, diagnostics: Vec::new() }
    }

    pub fn error(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::error(code, &self.source, span, message));
        let last = self.diagnostics.len() - 1;
        &mut self.diagnostics[last]
    }

    /// A mapping with only the `known` keys; unknown keys are reported with a suggestion.
    pub fn fields<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, &format!("{what} must be a mapping"));
            return None;
        };
        for (key, _) in entries {
            match key.as_str() {
                Some(name) if known.contains(&name) => {}
                Some(name) => {
                    let message = format!("unknown key `{name}` in {what}");
                    let help = did_you_mean(name, known.iter().copied())
                        .unwrap_or_else(|| format!("known keys: {}", known.join(", ")));
                    let diagnostic = self.error(Code::UnknownKey, key.span, message);
                    diagnostic.label = Some("unknown key".into());
                    diagnostic.help = Some(help);
                }
                None => self.wrong_type(key, &format!("keys of {what} must be strings")),
            }
        }
        Some(Fields { node, entries })
    }

    /// Reports a value of the wrong shape, recognising an unquoted `{{ ... }}`.
    pub fn wrong_type(&mut self, node: &Node, expected: &str) {
        if is_unquoted_template(node) {
            self.error(Code::UnquotedTemplate, node.span, "unquoted template: YAML reads `{{ ... }}` as a mapping")
                .help = Some("quote the whole value, e.g. \"{{ vars.name }}\"".into());
            return;
        }
        let message = format!("{expected}, found {}", node.kind());
        self.error(Code::InvalidValue, node.span, message);
    }

    pub fn required<'n>(&mut self, fields: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let node = fields.get(key);
        // A misspelt `procedure:` is already reported with "did you mean `procedures`?".
        // (Looked for only when the key is missing: edit distances cost start-up time.)
        let misspelt = || {
            fields
                .entries
                .iter()
                .any(|(k, _)| k.as_str().is_some_and(|k| k != key && strsim::damerau_levenshtein(k, key) <= 2))
        };
        if node.is_none() && !misspelt() {
            self.error(Code::MissingKey, fields.node.span, format!("{what} is missing `{key}`"));
        }
        node
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::String(s) => Some(s.clone()),
            // A bare number or boolean where text is expected is what the user meant
            // (`run: [true]` runs the program `true`).
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => node.scalar_text(),
            _ => {
                self.wrong_type(node, &format!("{what} must be a string"));
                None
            }
        }
    }

    pub fn opt_string(&mut self, fields: &Fields<'_>, key: &str) -> Option<String> {
        fields.get(key).and_then(|n| self.string(n, &format!("`{key}`")))
    }

    pub fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        if let Value::Bool(b) = node.value {
            Some(b)
        } else {
            self.wrong_type(node, &format!("{what} must be true or false"));
            None
        }
    }

    pub fn opt_bool(&mut self, fields: &Fields<'_>, key: &str) -> Option<bool> {
        fields.get(key).and_then(|n| self.bool(n, &format!("`{key}`")))
    }

    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let Value::String(text) = &node.value else {
            let message = format!("{what} must be a duration such as 90s, 5m or 1h30m");
            self.wrong_type(node, &message);
            return None;
        };
        match parse_duration(text) {
            // A zero timeout kills the step at once (it may have mutated, and resume repeats
            // it); a zero interval retries in a busy loop. Every duration must be positive.
            Ok(duration) if duration.is_zero() => {
                self.error(Code::InvalidValue, node.span, format!("{what} must be longer than zero, found `{text}`"))
                    .help = Some("give a positive duration such as 30s, 5m or 1h30m".into());
                None
            }
            Ok(duration) => Some(duration),
            Err(reason) => {
                self.error(Code::InvalidValue, node.span, format!("{what}: {reason}"));
                None
            }
        }
    }

    pub fn template(&mut self, node: &Node, what: &str) -> Option<Template> {
        self.string(node, what).map(|text| Template::new(text, node.span))
    }

    pub fn expr(&mut self, node: &Node, what: &str) -> Option<Expr> {
        match &node.value {
            Value::Bool(b) => Some(Expr::new(b.to_string(), node.span)),
            _ => self.string(node, what).map(|text| Expr::new(text, node.span)),
        }
    }

    pub fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        if let Value::Seq(items) = &node.value {
            Some(items)
        } else {
            self.wrong_type(node, &format!("{what} must be a list"));
            None
        }
    }

    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Span)>> {
        let items = self.list(node, what)?;
        let mut out = Vec::new();
        for item in items {
            if let Some(text) = self.string(item, &format!("each item of {what}")) {
                out.push((text, item.span));
            }
        }
        Some(out)
    }

    /// A mapping of names to templates (`env:`, `headers:`).
    pub fn template_map(&mut self, node: &Node, what: &str) -> Vec<(String, Template)> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, &format!("{what} must be a mapping"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let (Some(name), Some(template)) =
                (self.string(key, "a name"), self.template(value, &format!("{what} values")))
            else {
                continue;
            };
            out.push((name, template));
        }
        out
    }

    /// A name that must match `pattern` (described as `form`).
    pub fn check_name(&mut self, name: &str, span: Span, pattern: &regex::Regex, what: &str, form: &str) -> bool {
        if pattern.is_match(name) {
            return true;
        }
        self.error(Code::InvalidValue, span, format!("{what} `{name}` is not a valid name")).help =
            Some(format!("use {form}"));
        false
    }
}

/// `{{ x }}` unquoted parses as `{ {x: null}: null }`.
fn is_unquoted_template(node: &Node) -> bool {
    match &node.value {
        Value::Map(entries) => {
            entries.len() == 1
                && matches!(&entries[0].0.value, Value::Map(_))
                && matches!(entries[0].1.value, Value::Null)
        }
        _ => false,
    }
}
