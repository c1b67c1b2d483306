//! The top-level error: every failure the user sees, its exit code and how it is printed.

use crate::diagnostic::Diagnostic;

/// Exit codes, per the product contract.
pub mod exit {
    pub const OK: u8 = 0;
    pub const STEP_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ABORTED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runbook has errors; nothing ran.
    #[error("{} has {count} error{s}; nothing was run", path, s = if *count == 1 { "" } else { "s" })]
    Invalid { path: String, count: usize, diagnostics: Vec<Diagnostic> },
    #[error("{0}")]
    Plan(#[from] crate::plan::PlanError),
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
                eprint!("{}", crate::diagnostic::render_all(diagnostics, color));
                eprintln!("error: {self}");
            }
            other => eprintln!("error: {other}"),
        }
    }
}
