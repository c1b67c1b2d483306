//! Why a run could not start or go on, as the command line reports it.

/// A run's failure before or around its steps; a failed step is an outcome, not an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused before anything changed: a usage or validation error (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The state folder, the journal or the store could not be used (exit 2).
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Plan(#[from] crate::plan::PlanError),
    /// Already reported to the operator; exit with this code.
    #[error("")]
    Reported(u8),
}
