//! One line typed at a question (the failure menu, a stage or step confirmation), read key
//! by key: Ctrl-D on an empty line (or the end of input) is the end of input, control characters and anything beyond a limit
//! characters are kept out of the terminal and out of the answer, so a pasted megabyte or
//! an escape sequence can neither flood the screen nor be mistaken for a choice.

use std::io::Write as _;

use console::{Key, Term};

/// The operator's terminal went away or refused input, or the operator pressed Ctrl-C.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("cannot ask the operator: {0}")]
    Failed(String),
    #[error("interrupted at the question")]
    Interrupted,
}

/// At most this many characters of a menu choice or a confirmation are kept and echoed; the
/// rest is dropped.
pub const SHOWN: usize = 64;

/// At most this many characters of a name typed to confirm (an environment, an instance;
/// Cloud resource names stay under 100). A target longer than this is confirmed ahead with
/// `--confirm-target`; a cut answer never matches.
pub const NAME: usize = 1024;

/// At most this many characters of a skip reason are kept (it is journaled and shown).
pub const REASON: usize = 500;

/// What the operator typed before Enter, at most `max` characters; `None` at the end of input.
pub fn read(question: &str, max: usize) -> Result<Option<String>, AskError> {
    let term = Term::stderr();
    // The question quotes the runbook (a stage's name): shown escaped.
    let prompt = format!("? {} › ", runbook_lang::diagnostic::escape_text(question));
    let _ = write!(&term, "{prompt}");
    let mut line = String::new();
    let mut cut = false;
    loop {
        match term.read_key() {
            Ok(Key::Enter) => {
                let _ = writeln!(&term);
                if cut {
                    line.push('…');
                }
                return Ok(Some(line));
            }
            Ok(Key::Char('\u{4}')) if line.is_empty() => {
                let _ = writeln!(&term, "(end of input)");
                return Ok(None);
            }
            Ok(Key::Backspace) => {
                if line.pop().is_some() {
                    let _ = term.clear_line();
                    let _ = write!(&term, "{prompt}{line}");
                }
            }
            Ok(Key::Char(c)) if !c.is_control() => {
                if line.chars().count() < max {
                    line.push(c);
                    let _ = write!(&term, "{c}");
                } else {
                    cut = true;
                }
            }
            // Control characters, escape sequences, bytes that are not UTF-8: dropped, and the
            // answer can no longer be a choice.
            Ok(_) => cut = true,
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {
                let _ = writeln!(&term);
                return Err(AskError::Interrupted);
            }
            Err(err) => return Err(AskError::Failed(err.to_string())),
        }
    }
}
