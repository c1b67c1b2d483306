//! One file per command.

pub mod list;
pub mod procedure;
pub mod runs;
pub mod validate;
