//! One file per command.

pub mod list;
pub mod lock;
pub mod plan;
pub mod procedure;
pub mod rehearse;
pub mod restart;
pub mod runs;
pub mod tooling;
pub mod validate;
