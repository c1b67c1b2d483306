//! Writing to stdout: the engine's, so every layer prints the same way.

pub use runbook_engine::output::print;
