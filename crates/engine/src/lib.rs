//! The run engine: binding a checked runbook to an environment and inputs (a [`plan::Plan`]),
//! rendering steps, masking secrets, executing, and recovering (the failure menu, undo).

pub mod dry_run;
pub mod exec;
pub mod notify;
pub mod output;
pub mod plan;
pub mod redact;
pub mod render;
pub mod session;
pub mod timeline;
