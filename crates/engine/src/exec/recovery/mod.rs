//! Ways back when a run goes wrong: the undo engine (`undo`). Lives under `exec` so it
//! drives the same [`Runner`](super::Runner) walk (confirmations, journal, SPEC rule 7).

pub mod menu;
pub mod undo;
