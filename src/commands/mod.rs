//! One file per command.

pub mod apply;
pub mod approve;
pub mod drift;
pub mod history;
pub mod list;
pub mod lock;
pub mod plan;
pub mod procedure;
pub mod rehearse;
pub mod restart;
pub mod resume;
pub mod runs;
pub mod save_plan;
pub mod show;
pub mod show_plan;
pub mod tooling;
pub mod validate;
