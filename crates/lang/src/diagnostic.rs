//! Problems found in a runbook, with where they are and how to render them.

use std::fmt::Write as _;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use crate::source::{SourceRef, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Stable codes, documented in the README, so CI annotations and scripts can refer to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Syntax,
    UnknownKey,
    InvalidValue,
    MissingKey,
    StepKind,
    Duplicate,
    UndeclaredParam,
    ParamNotTaken,
    MissingVar,
    StepNotYetRun,
    NotCaptured,
    SecretExposed,
    TemplateInShell,
    TemplateSyntax,
    IncludeCycle,
    UnknownProcedure,
    ShadowsBuiltin,
    UnknownVariable,
    UnquotedTemplate,
    NoTimeout,
    ShellCouldBeRun,
    ConditionalOutput,
    PromptAfterMutation,
    UnsignedApprovals,
}

impl Code {
    #[cfg(test)]
    pub const ALL: &[Code] = &[
        Code::Syntax,
        Code::UnknownKey,
        Code::InvalidValue,
        Code::MissingKey,
        Code::StepKind,
        Code::Duplicate,
        Code::UndeclaredParam,
        Code::ParamNotTaken,
        Code::MissingVar,
        Code::StepNotYetRun,
        Code::NotCaptured,
        Code::SecretExposed,
        Code::TemplateInShell,
        Code::TemplateSyntax,
        Code::IncludeCycle,
        Code::UnknownProcedure,
        Code::ShadowsBuiltin,
        Code::UnknownVariable,
        Code::UnquotedTemplate,
        Code::NoTimeout,
        Code::ShellCouldBeRun,
        Code::ConditionalOutput,
        Code::PromptAfterMutation,
        Code::UnsignedApprovals,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "RB001",
            Code::UnknownKey => "RB002",
            Code::InvalidValue => "RB003",
            Code::MissingKey => "RB004",
            Code::StepKind => "RB005",
            Code::Duplicate => "RB006",
            Code::UndeclaredParam => "RB007",
            Code::ParamNotTaken => "RB008",
            Code::MissingVar => "RB009",
            Code::StepNotYetRun => "RB010",
            Code::NotCaptured => "RB011",
            Code::SecretExposed => "RB012",
            Code::TemplateInShell => "RB013",
            Code::TemplateSyntax => "RB014",
            Code::IncludeCycle => "RB015",
            Code::UnknownProcedure => "RB016",
            Code::ShadowsBuiltin => "RB017",
            Code::UnknownVariable => "RB018",
            Code::UnquotedTemplate => "RB019",
            Code::NoTimeout => "RB101",
            Code::ShellCouldBeRun => "RB102",
            Code::ConditionalOutput => "RB103",
            Code::PromptAfterMutation => "RB104",
            Code::UnsignedApprovals => "RB105",
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            Code::Syntax => "the file is not valid YAML",
            Code::UnknownKey => "a key the format does not know (with a suggestion)",
            Code::InvalidValue => "a value of the wrong type or form",
            Code::MissingKey => "a required key is missing",
            Code::StepKind => "a step has no kind or more than one",
            Code::Duplicate => "a step id is used twice",
            Code::UndeclaredParam => "a template uses a param that is not declared",
            Code::ParamNotTaken => "a template uses a param its procedure does not take",
            Code::MissingVar => "a template uses a var missing from an environment",
            Code::StepNotYetRun => "a template uses the output of a step that has not run yet",
            Code::NotCaptured => "a template uses an output the step does not capture",
            Code::SecretExposed => "a secret would appear on a command line, URL or screen",
            Code::TemplateInShell => "template syntax in `shell:` text, which is never rendered",
            Code::TemplateSyntax => "a template or expression does not parse",
            Code::IncludeCycle => "procedures include each other in a cycle, or includes nest more than 64 deep",
            Code::UnknownProcedure => "`include` or `on_failure` names no procedure",
            Code::ShadowsBuiltin => "a runbook name shadows a built-in command",
            Code::UnknownVariable => "a template uses a name outside params, vars, steps, env, environment",
            Code::UnquotedTemplate => "an unquoted `{{ ... }}`, which YAML reads as a mapping",
            Code::NoTimeout => "warning: a mutating step without an explicit timeout",
            Code::ShellCouldBeRun => "warning: a `shell:` step that could be a `run:` step",
            Code::ConditionalOutput => {
                "warning: the output of a step that may be skipped (`when:`) is used unconditionally"
            }
            Code::PromptAfterMutation => "warning: a prompt comes after a mutating step of the same procedure",
            Code::UnsignedApprovals => "warning: a protected environment takes approvals that are not signed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub source: SourceRef,
    pub span: Span,
    pub label: Option<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, source: &SourceRef, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: clip_quoted(&message.into()),
            source: source.clone(),
            span,
            label: None,
            help: None,
        }
    }

    pub fn warning(code: Code, source: &SourceRef, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, source, span, message) }
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The help, with quoted values bounded like the message's.
    pub fn help_text(&self) -> Option<String> {
        self.help.as_deref().map(clip_quoted)
    }

    pub fn line_col(&self) -> (usize, usize) {
        self.source.line_col(self.span.start)
    }

    pub fn end_line_col(&self) -> (usize, usize) {
        self.source.line_col(self.span.end)
    }

    /// Renders as rustc does: message, `--> path:line:col`, the source excerpt, a caret.
    pub fn render(&self, color: bool) -> String {
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let path = self.source.display_path();
        let text = &self.source.text;
        let mut span = self.span.start.min(text.len())..self.span.end.min(text.len());
        if span.is_empty() && span.end < text.len() {
            span.end = next_char_boundary(text, span.end);
        }
        let mut annotation = AnnotationKind::Primary.span(span);
        if let Some(label) = &self.label {
            annotation = annotation.label(label.as_str());
        }
        let title = level.primary_title(self.message.as_str()).id(self.code.as_str());
        let mut group =
            Group::with_title(title).element(Snippet::source(text.as_str()).path(path.as_str()).annotation(annotation));
        let help = self.help_text();
        if let Some(help) = &help {
            group = group.element(Level::HELP.message(help.as_str()));
        }
        let renderer = if color { Renderer::styled() } else { Renderer::plain() };
        renderer.render(&[group])
    }
}

fn next_char_boundary(text: &str, mut offset: usize) -> usize {
    offset += 1;
    while offset < text.len() && !text.is_char_boundary(offset) {
        offset += 1;
    }
    offset
}

/// All diagnostics of one validation, in file and position order.
pub fn render_all(diagnostics: &[Diagnostic], color: bool) -> String {
    let mut out = String::new();
    for diagnostic in diagnostics {
        let _ = writeln!(out, "{}", diagnostic.render(color));
    }
    out
}

/// Longest value quoted in a message: a 1 MB bad value is not echoed whole.
pub const EXCERPT_CHARS: usize = 80;

/// A value for a message: at most [`EXCERPT_CHARS`] characters, then `… (N more
/// characters)`, control characters escaped so they cannot act on the terminal.
///
/// The one escaping of text that came from outside (a file, the shared store, a plan, a
/// param, the command line) before it is printed; [`clip_to`] with another bound,
/// [`shell_word`] for an argument of a command line.
pub fn clip(text: &str) -> String {
    clip_to(text, EXCERPT_CHARS)
}

/// [`clip`] cut at `max` characters.
pub fn clip_to(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(max) {
        if is_unseen(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    let more = chars.count();
    if more > 0 {
        let _ = write!(out, "… ({more} more character{})", if more == 1 { "" } else { "s" });
    }
    out
}

/// Longest param or var value shown whole (a URL, a list of ids); longer ones are cut
/// with a note.
pub const VALUE_CHARS: usize = 500;

/// A value (a param, a `--var`, an answer) as it is shown: as it is when plain, in bash's
/// `$'…'` form when it holds a control character (see [`shell_word`]), cut at
/// [`VALUE_CHARS`].
pub fn shown_value(value: &str) -> String {
    match shell_word(value) {
        Some(quoted) => clip_to(&quoted, VALUE_CHARS),
        None => clip_to(value, VALUE_CHARS),
    }
}

/// A whole text of many lines (a report, a stored plan's rendering, a journal's timeline,
/// JSON) with every character that would act on the terminal made visible, except the line
/// breaks and tabs that lay it out. Not cut: what it quotes was bounded where it was made.
///
/// The escapes are JSON's (`\r`, `\b`, `\f`, `\u001b`, `\u202e`), so JSON printed through
/// it stays valid and means the same: serde writes C1 controls and direction marks inside
/// strings as they are, and they become escapes of the same characters.
pub fn escape_text(text: &str) -> String {
    let kept = |c: char| !is_unseen(c) || c == '\n' || c == '\t';
    if text.chars().all(kept) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if kept(c) => out.push(c),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
    }
    out
}

/// A character that acts on a terminal or hides itself instead of showing: control
/// characters (C0, DEL, C1), zero-width and direction marks and overrides.
fn is_unseen(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// One argument of a command line as it is shown and pasted into bash: `None` when it
/// holds nothing [`is_unseen`], so the caller's plain or single-quoted form shows it as it
/// is; otherwise bash's ANSI-C quoting, `$'line1\nline2\r\e[31mred\a'`, in which every such
/// character is a visible escape — what the operator confirms is what runs, and pasting it
/// into bash gives the same bytes. Never cut: a shortened command would not be the one
/// that runs. (`shell-words` quotes only with `'…'`, which passes a carriage return or an
/// escape sequence to the terminal as it is.)
pub fn shell_word(arg: &str) -> Option<String> {
    if !arg.chars().any(is_unseen) {
        return None;
    }
    let mut out = String::from("$'");
    for c in arg.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unseen(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    Some(out)
}

/// A message with every `quoted` value clipped (see [`clip`]), and the whole bounded.
pub fn clip_quoted(message: &str) -> String {
    let mut out = String::new();
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(&clip(part));
        } else {
            // Outside quotes: newlines are the message's own, other control characters not.
            out.extend(part.chars().take(10 * EXCERPT_CHARS).flat_map(|c| {
                let escape = c.is_control() && c != '\n';
                let mut buf = String::new();
                if escape {
                    buf.extend(c.escape_default())
                } else {
                    buf.push(c)
                }
                buf.chars().collect::<Vec<_>>()
            }));
        }
    }
    out
}

/// "did you mean `procedures`?" for a misspelt key or name.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(given, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

/// The stable machine-readable form: one object per diagnostic.
pub fn to_json(diagnostics: &[Diagnostic]) -> String {
    let list: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            let (line, column) = d.line_col();
            let (end_line, end_column) = d.end_line_col();
            serde_json::json!({
                "file": d.source.display_path(),
                "line": line,
                "column": column,
                "end_line": end_line,
                "end_column": end_column,
                "severity": d.severity,
                "code": d.code.as_str(),
                "message": d.message,
                "help": d.help_text(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into())
}

/// A GitHub Actions workflow command: `::error file=…,line=…,col=…::message`.
pub fn github_annotation(d: &Diagnostic) -> String {
    let (line, col) = d.line_col();
    let (end_line, end_col) = d.end_line_col();
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut message = format!("[{}] {}", d.code.as_str(), d.message);
    if let Some(help) = d.help_text() {
        message.push_str("\nhelp: ");
        message.push_str(&help);
    }
    format!(
        "::{level} file={},line={line},col={col},endLine={end_line},endColumn={end_col},title={}::{}",
        escape_property(&d.source.display_path()),
        escape_property(&format!("{} {}", d.code.as_str(), d.code.summary())),
        escape_data(&message)
    )
}

/// Escaping of workflow command data, as the Actions runner defines it.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented_in_the_readme() {
        let readme = include_str!("../../../README.md");
        for code in Code::ALL {
            assert!(readme.contains(&format!("| {} |", code.as_str())), "{} missing from README", code.as_str());
        }
    }

    #[test]
    fn a_long_value_is_cut_with_a_note_of_what_was_left_out() {
        let text = format!("\u{1b}[31m{}", "x".repeat(5000));
        let shown = clip(&text);
        assert!(shown.starts_with("\\u{1b}[31mxxx"), "{shown}");
        assert!(shown.ends_with("… (4925 more characters)"), "{shown}");
        assert!(!shown.contains('\u{1b}'));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn escaped_text_keeps_its_layout_and_json_stays_valid_and_the_same() {
        assert_eq!(escape_text("a\tb\nc\r\u{1b}[2K"), "a\tb\nc\\r\\u001b[2K");
        let value = serde_json::json!({"v": "x\u{202e}y\u{85}z\u{1b}\r"});
        let text = serde_json::to_string(&value).unwrap_or_default();
        let shown = escape_text(&text);
        assert!(!shown.chars().any(|c| c == '\u{202e}' || c == '\u{85}'), "{shown}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&shown).ok(), Some(value));
    }

    #[test]
    fn a_shell_word_with_control_characters_is_ansi_c_quoted() {
        assert_eq!(shell_word("plain; text"), None);
        assert_eq!(shell_word("line1\nline2\r\u{1b}[31mred\u{7}").as_deref(), Some("$'line1\\nline2\\r\\e[31mred\\a'"));
        assert_eq!(shell_word("a'b\\\u{1}\u{202e}").as_deref(), Some("$'a\\'b\\\\\\x01\\u202e'"));
    }

    #[test]
    fn annotations_escape_what_the_runner_would_misread() {
        let source = crate::source::Source::new("dir,a:b/x%.yaml", "key: value\n");
        let d = Diagnostic::error(Code::InvalidValue, &source, Span::new(0, 3), "50% of a: b, c\nnext").help("h");
        let line = github_annotation(&d);
        assert!(line.starts_with("::error file=dir%2Ca%3Ab/x%25.yaml,line=1,col=1,endLine=1,endColumn=4,"), "{line}");
        assert!(line.ends_with("::[RB003] 50%25 of a: b, c%0Anext%0Ahelp: h"), "{line}");
    }
}
