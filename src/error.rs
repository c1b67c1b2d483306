//! The top-level error: every failure the user sees, its exit code and how it is printed.

use runbook_lang::diagnostic::Diagnostic;

pub use runbook_state::exit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runbook has errors; nothing ran.
    #[error("{} has {count} error{s}; nothing was run", path, s = if *count == 1 { "" } else { "s" })]
    Invalid { path: String, count: usize, diagnostics: Vec<Diagnostic> },
    #[error("{0}")]
    Plan(#[from] runbook_engine::plan::PlanError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
    /// The command already printed what went wrong (e.g. `validate` found errors).
    #[error("")]
    Reported(u8),
}

impl Error {
    pub fn code(&self) -> u8 {
        match self {
            Error::Invalid { .. } | Error::Plan(_) | Error::Usage(_) | Error::Io(_) => exit::USAGE,
            Error::Reported(code) => *code,
        }
    }

    pub fn print(&self, color: bool) {
        match self {
            Error::Reported(_) => {}
            Error::Invalid { diagnostics, .. } => {
                eprint!("{}", runbook_lang::diagnostic::render_all(diagnostics, color));
                eprintln!("error: {self}");
            }
            // Messages quote what was refused (a state URL, a path, a flag's value): shown
            // escaped and cut (issue 23).
            other => eprintln!("error: {}", runbook_lang::diagnostic::clip_quoted(&other.to_string())),
        }
    }
}

impl From<runbook_engine::session::Error> for Error {
    fn from(err: runbook_engine::session::Error) -> Self {
        use runbook_engine::session::Error as Session;
        match err {
            Session::Usage(text) => Error::Usage(text),
            Session::Io(text) => Error::Io(text),
            Session::Plan(err) => Error::Plan(err),
            Session::Reported(code) => Error::Reported(code),
        }
    }
}
