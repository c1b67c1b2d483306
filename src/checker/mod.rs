//! Check: YAML nodes → a typed [`Runbook`], with every problem of the file collected.
//!
//! The first pass ([`structure`]) reads the tree into the model, reporting unknown keys,
//! wrong types and missing keys. The second ([`references`]) resolves what templates refer
//! to, where secrets go, and how procedures include each other. A runbook with any error
//! is never handed to planning or execution.

pub mod keys;
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

/// Built-in commands a runbook name must not shadow.
pub const BUILTINS: &[&str] =
    &["list", "validate", "run", "docs", "history", "show", "resume", "schema", "completions", "man", "help"];

/// Flags every procedure has; a param whose flag is one of these is an error.
pub const RESERVED_FLAGS: &[&str] = &[
    "env",
    "dry-run",
    "probe",
    "yes",
    "answer",
    "output",
    "help",
    "dir",
    "state-dir",
    "color",
    "quiet",
    "verbose",
    "force",
    "var",
    "simulate",
    "scenario",
    "simulate-port",
    "version",
];

pub fn check_file(path: &Path) -> Result<Checked, std::io::Error> {
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8 text"))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(check_source(Source::new(path, text), sha256))
}

pub fn check_source(source: SourceRef, sha256: String) -> Checked {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        // Comments are never read into the model; not collecting them saves start-up time.
        emit_comments: false,
    };
    let root: Node = match serde_saphyr::from_str_with_options(&source.text, options) {
        Ok(root) => root,
        Err(err) => {
            let span = err.location().map_or_else(Span::default, |l| {
                let s = Span::from_location(&l);
                if s == Span::default() { offset_of(&source.text, l.line(), l.column()) } else { s }
            });
            let message = err.without_snippet().to_string();
            let message = message.lines().next().unwrap_or("invalid YAML");
            // The position is shown by the diagnostic itself.
            let message = message.split(" at line ").next().unwrap_or(message).to_owned();
            let diagnostic = Diagnostic::error(Code::Syntax, &source, span, format!("invalid YAML: {message}"));
            return Checked { source, runbook: None, name: None, diagnostics: vec![diagnostic] };
        }
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
