//! Check: YAML nodes → a typed [`Runbook`], with every problem of the file collected.
//!
//! The first pass ([`structure`]) reads the tree into the model, reporting unknown keys,
//! wrong types and missing keys. The second ([`references`]) resolves what templates refer
//! to, where secrets go, and how procedures include each other. A runbook with any error
//! is never handed to planning or execution.

mod filters;
pub mod keys;
mod notify;
mod reader;
mod references;
mod structure;

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::model::RunbookRef;
use crate::source::{Source, SourceRef, Span};
use crate::yaml::Node;

/// The outcome of checking one file: the runbook if it has no errors, and every diagnostic.
pub struct Checked {
    pub source: SourceRef,
    pub runbook: Option<RunbookRef>,
    /// The runbook's name as written, even when the file has errors (for `list`).
    pub name: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Built-in commands a runbook name must not shadow. The command line's own definition is
/// the source of truth: a test of the binary (`cli::tests`) fails when a built-in is added
/// there and not here, so a new built-in (such as `simulate`) can never be missing.
pub const BUILTINS: &[&str] = &[
    "list",
    "validate",
    "history",
    "show",
    "resume",
    "undo",
    "lock",
    "schema",
    "docs",
    "completions",
    "simulate",
    "man",
    "show-plan",
    "approve",
    "apply",
    "run",
    "help",
];

/// [`BUILTINS`], as the checker's callers used to get them.
pub fn builtins() -> &'static [&'static str] {
    BUILTINS
}

/// Most YAML events aliases (`*name`) may replay in one file.
const MAX_ALIAS_EVENTS: usize = 20_000;

/// Flags every procedure has; a param whose flag is one of these is an error.
pub const RESERVED_FLAGS: &[&str] = &[
    "env",
    "dry-run",
    "probe",
    "yes",
    "answer",
    "confirm-env",
    "confirm-target",
    "output",
    "help",
    "dir",
    "state-dir",
    "state-url",
    "lock-lease",
    "color",
    "quiet",
    "no-notify",
    "verbose",
    "force",
    "var",
    "simulate",
    "scenario",
    "simulate-port",
    "version",
    "save-plan",
    "plan-ttl",
    "signing-key",
    "break-glass",
    "on-failure",
];

/// Largest runbook file read (a runbook is a page or two; this is generous).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

pub fn check_file(path: &Path) -> Result<Checked, std::io::Error> {
    Ok(check_read(path, &read_file(path)?))
}

/// A runbook file's bytes, at most one byte more than [`MAX_FILE_BYTES`]: a huge (or
/// endless) file is not loaded.
pub fn read_file(path: &Path) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Checks bytes read by [`read_file`]; more than [`MAX_FILE_BYTES`] is an error of its own.
pub fn check_read(path: &Path, bytes: &[u8]) -> Checked {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let source = Source::new(path, String::new());
        let diagnostic = Diagnostic::error(
            Code::Syntax,
            &source,
            Span::default(),
            format!("the file is larger than {} MiB; a runbook is much smaller", MAX_FILE_BYTES >> 20),
        );
        return Checked { source, runbook: None, name: None, diagnostics: vec![diagnostic] };
    }
    check_bytes(path, bytes)
}

/// Checks a file's bytes; text that is not UTF-8 is reported at the first bad byte.
pub fn check_bytes(path: &Path, bytes: &[u8]) -> Checked {
    let sha256 = hex::encode(Sha256::digest(bytes));
    match std::str::from_utf8(bytes) {
        Ok(text) => check_source(Source::new(path, text), sha256),
        Err(err) => {
            // Show the file up to the bad byte so the position and excerpt are right.
            let good = &bytes[..err.valid_up_to()];
            let text = String::from_utf8_lossy(good).into_owned();
            let end = text.len();
            let source = Source::new(path, text);
            let diagnostic = Diagnostic::error(
                Code::Syntax,
                &source,
                Span::new(end, end),
                "the file is not UTF-8 text: invalid byte sequence here",
            )
            .help("runbooks are UTF-8 text; re-save the file as UTF-8");
            Checked { source, runbook: None, name: None, diagnostics: vec![diagnostic] }
        }
    }
}

/// The fast path's limits stay under serde-saphyr's (depth 64, 250,000 values): a file near
/// them goes the full way, which reports them.
const FAST_MAX_DEPTH: usize = 60;
const FAST_MAX_NODES: usize = 200_000;

pub fn check_source(source: SourceRef, sha256: String) -> Checked {
    let root = match crate::yaml::parse_fast(&source.text, FAST_MAX_DEPTH, FAST_MAX_NODES) {
        Some(root) => root,
        None => match parse_full(&source) {
            Ok(root) => root,
            Err(diagnostic) => return Checked { source, runbook: None, name: None, diagnostics: vec![*diagnostic] },
        },
    };
    let mut structure = structure::Structure::new(source.clone());
    let built = structure.runbook(&root, sha256);
    let name = structure.name.clone();
    let mut diagnostics = structure.into_diagnostics();
    let runbook = built.map(|runbook| {
        diagnostics.extend(references::check(&runbook));
        Arc::new(runbook)
    });
    diagnostics.sort_by_key(|d| (d.span.start, d.severity));
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    Checked { source, runbook: if has_errors { None } else { runbook }, name, diagnostics }
}

/// The whole YAML resolver (serde-saphyr): every construct, every limit, every diagnostic.
fn parse_full(source: &SourceRef) -> Result<Node, Box<Diagnostic>> {
    // Aliases may repeat what an anchor holds, but not blow it up ("billion laughs"): the
    // default allows a million replayed events, which takes seconds to build and check.
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_ALIAS_EVENTS;
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        reject_unsupported_tags: true,
        alias_limits: alias_limits,
        // Comments are never read into the model; not collecting them saves start-up time.
        emit_comments: false,
    };
    serde_saphyr::from_str_with_options(&source.text, options).map_err(|err| {
        let mut span = err.location().map_or_else(Span::default, |l| {
            let s = Span::from_location(&l);
            if s == Span::default() { offset_of(&source.text, l.line(), l.column()) } else { s }
        });
        let message = yaml_message(&err);
        span = yaml_error_span(&source.text, span, &err);
        Box::new(Diagnostic::error(Code::Syntax, source, span, format!("invalid YAML: {message}")))
    })
}

/// Where to point for a YAML error: the library points at the scalar it was reading (or
/// just past a tab, or at a tagged value); the tab or the tag itself is what to fix.
fn yaml_error_span(text: &str, span: Span, err: &serde_saphyr::Error) -> Span {
    let start = span.start.min(text.len());
    let line_start = text[..floor_boundary(text, start)].rfind('\n').map_or(0, |i| i + 1);
    let message = err.to_string();
    if message.contains("tab") {
        let from = if text[line_start..].starts_with('\t') { line_start } else { start };
        if let Some(at) = text.get(from..).and_then(|rest| rest.find('\t')) {
            return Span::new(from + at, from + at + 1);
        }
    }
    let mut inner = err.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } | serde_saphyr::Error::WithSnippet { error, .. } = inner {
        inner = error;
    }
    if let serde_saphyr::Error::UnsupportedTag { tag, .. } = inner
        && let Some(at) = text.get(line_start..start).and_then(|before| before.rfind('!'))
    {
        let tag_start = line_start + at;
        let len = text[tag_start..].find(char::is_whitespace).unwrap_or(tag.len());
        return Span::new(tag_start, tag_start + len);
    }
    span
}

fn floor_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The YAML library's error in the words of a runbook author: no library internals
/// (`budget breached: Depth { .. }`, `set DuplicateKeyPolicy in Options`), no position
/// (the diagnostic shows it).
fn yaml_message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut inner = err.without_snippet();
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = inner {
        inner = error;
    }
    match inner {
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => "nesting deeper than 64 levels".into(),
            B::Nodes { .. } | B::Events { .. } => "more than 250000 values; the file is too big".into(),
            B::Aliases { .. } | B::AliasAnchorRatio { .. } | B::Anchors { .. } | B::MergeKeys { .. } => {
                "too many anchors or aliases (`&name`, `*name`); the file expands too much".into()
            }
            B::Documents { .. } => "more than one YAML document (`---`); a runbook file holds one".into(),
            _ => "the file is too big or expands too much".into(),
        },
        E::DuplicateMappingKey { key: Some(key), .. } => {
            format!("duplicate key `{}`", crate::diagnostic::clip(key))
        }
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".into(),
        E::MultipleDocuments { .. } => "more than one YAML document (`---`); a runbook file holds one".into(),
        E::UnsupportedTag { tag, .. } => format!(
            "unknown tag `{}`; runbooks use no YAML tags (there is no `!include`: use an `include:` step)",
            crate::diagnostic::clip(tag)
        ),
        E::NonFiniteFloat { value, .. } => {
            format!("`{}` is not a number a runbook can use", crate::diagnostic::clip(value))
        }
        E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => "aliases (`*name`) expand too much".into(),
        other => {
            let message = other.to_string();
            let message = message.lines().next().unwrap_or("invalid YAML");
            let message = message.split(" at line ").next().unwrap_or(message);
            crate::diagnostic::clip_quoted(message)
        }
    }
}

/// Byte offset of a 1-based line and column, for errors that carry no byte span.
fn offset_of(text: &str, line: u64, column: u64) -> Span {
    let mut offset = 0;
    for (index, l) in text.split_inclusive('\n').enumerate() {
        if index as u64 + 1 == line {
            let col = usize::try_from(column.saturating_sub(1)).unwrap_or(0);
            let within: usize = l.chars().take(col).map(char::len_utf8).sum();
            return Span::new(offset + within, offset + within);
        }
        offset += l.len();
    }
    Span::new(text.len(), text.len())
}

#[cfg(test)]
mod fast_path_tests {
    use super::{FAST_MAX_DEPTH, FAST_MAX_NODES, parse_full};
    use crate::source::Source;
    use crate::yaml::{Node, Value, parse_fast};

    /// The first place two trees differ, as a path.
    fn difference(fast: &Node, full: &Node, path: &str) -> Option<String> {
        if fast.span != full.span {
            return Some(format!("{path}: span {:?} (fast) vs {:?}", fast.span, full.span));
        }
        match (&fast.value, &full.value) {
            (Value::Seq(a), Value::Seq(b)) => {
                if a.len() != b.len() {
                    return Some(format!("{path}: {} items vs {}", a.len(), b.len()));
                }
                a.iter().zip(b).enumerate().find_map(|(i, (x, y))| difference(x, y, &format!("{path}[{i}]")))
            }
            (Value::Map(a), Value::Map(b)) => {
                if a.len() != b.len() {
                    return Some(format!("{path}: {} entries vs {}", a.len(), b.len()));
                }
                a.iter().zip(b).find_map(|((k1, v1), (k2, v2))| {
                    let key = k1.scalar_text().unwrap_or_default();
                    difference(k1, k2, &format!("{path}.<key {key}>"))
                        .or_else(|| difference(v1, v2, &format!("{path}.{key}")))
                })
            }
            (a, b) if a == b => None,
            (a, b) => Some(format!("{path}: {a:?} (fast) vs {b:?}")),
        }
    }

    /// Whatever the fast path accepts, it reads exactly as serde-saphyr does: the same
    /// values and the same spans. Returns whether the fast path took it.
    fn same(text: &str) -> bool {
        let source = Source::new(std::path::Path::new("t.yaml"), text.to_owned());
        let Some(fast) = parse_fast(&source.text, FAST_MAX_DEPTH, FAST_MAX_NODES) else { return false };
        let full = parse_full(&source)
            .unwrap_or_else(|d| panic!("the fast path took what the full one refuses: {}\n{text}", d.message));
        if let Some(diff) = difference(&fast, &full, "$") {
            panic!("{diff}\n--- in\n{text}");
        }
        true
    }

    #[test]
    fn fast_path_matches_serde_saphyr_on_every_runbook_of_the_repository() {
        let root = &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in ["runbooks", "examples", "examples/runbooks", "tests/fixtures", "docs"] {
            if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
                files.extend(
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml")),
                );
            }
        }
        assert!(!files.is_empty(), "{files:?}");
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            // The runbooks we ship are the common case the fast path is for.
            assert!(same(&text), "{} went the slow way", file.display());
        }
    }

    #[test]
    fn fast_path_matches_serde_saphyr_on_tricky_yaml() {
        let cases = [
            "a: 1\nb: -5\nc: 0\nd: -0\ne: 007\nf: 1.5\ng: 5s\nh: 10m\ni: 1e3\nj: 0x1F\nk: 1_000\n",
            "a: true\nb: True\nc: FALSE\nd: yes\ne: no\nf: on\ng: off\nh: y\ni: n\n",
            "a: null\nb: ~\nc:\nd: Null\ne: NULL\nf: nil\ng: 'null'\nh: \"~\"\n",
            "a: .inf\nb: -.inf\nc: .nan\nd: inf\ne: nan\nf: Infinity\ng: +5\nh: +.5\n",
            "a: 10.0.0.1\nb: 1.2.3\nc: 2026-11-28T04:12:00Z\nd: 2026-11-28\ne: 12:30\nf: 1d\n",
            "\u{feff}runbook: bom\ntitle: x\n",
            "runbook: crlf\r\ntitle: x\r\nlist:\r\n  - a\r\n  - 'b c'\r\n",
            "név: ünïcödé\nτίτλος: \"ελληνικά — 日本語 🎉\"\nk: [é, ü, {x: ß}]\n",
            "a: |\n  line one\n  line two\nb: >\n  folded\n  text\nc: |-\n  keep\nd: \"esc \\t \\n \\u00e9\"\ne: 'it''s'\n",
            "a: {x: 1, y: [1, 2, {z: w}], 'q': \"r\"}\nb: [ ]\nc: { }\n",
            "---\na: 1\n...\n",
            "# comment\na: 1 # trailing\n# more\nb:\n  # inside\n  - x # after\n",
            "a: multi\n  line\n  plain\nb: \"multi\n  line quoted\"\n",
            "? complex\n: value\n",
            "- top\n- level\n- [seq]\n",
            "just a scalar\n",
            "5: five\ntrue: yes-key\nnull: null-key\n'5x': q\n",
            "a: x${y}\nb: '${HOME}'\n",
            "a: -\nb: '-'\nc: - x\n",
            "a: &s scalar\nb: *s\nc: &m {x: [1, 2], y: *s}\nd: *m\ne: [*m, *s]\n",
            "a: &l [x, y]\nb:\n  <<: {k: v}\n  z: *l\n",
            "a: *missing\n",
            "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\nd: &d [*c, *c, *c]\ne: [*d, *d, *d, *d]\n",
            "a: &x 1\na2: &x 2\nb: *x\n",
            "a: 1\na: 2\n",
            "a: {b: 1, b: 2}\n",
            "a: 1\n'a': 2\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\n---\nb: 2\n",
            "a: !!str 5\nb: !custom x\n",
            "a: [1, 2\n",
            "a:\n\t- x\n",
            "a: b: c\n",
            "",
            "# only a comment\n",
            "steps:\n  - {id: s1, run: [echo, \"{{ params.x }}\"], timeout: 5s}\n  - id: s2\n    shell: 'echo \"a: b\"'\n",
        ];
        let taken: Vec<bool> = cases.iter().map(|case| same(case)).collect();
        // A big mapping: every key is looked up once; the repeat at its end still falls back.
        let big: String = (0..20_000).map(|i| format!("k{i}: {i}\n")).collect();
        assert!(same(&big), "a 20,000-key mapping takes the fast path");
        assert!(!same(&format!("{big}k7: again\n")), "a repeated key at the end falls back");
        // The plain cases must not all have fallen back (the test would prove nothing).
        assert!(taken.iter().filter(|t| **t).count() >= 8, "{taken:?}");
    }
}
