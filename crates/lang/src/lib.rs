//! The runbook language: reading a runbook file (YAML with positions), its diagnostics, the
//! template language, params, the checked model, the checker, the JSON Schema and the
//! Markdown docs. Nothing here starts a process, opens a connection, needs an async runtime
//! or writes state: the checker runs the same in `validate`, in CI and before every run.

pub mod checker;
pub mod diagnostic;
pub mod docs;
pub mod model;
pub mod notify;
pub mod param;
pub mod refs;
pub mod schema;
pub mod source;
pub mod step;
pub mod summary;
pub mod taint;
pub mod template;
pub mod timing;
pub mod yaml;
