//! What a run leaves behind and shares: the state folder, who is acting, the run lock, the
//! journal and the events it records, the local and Cloud Storage stores, plan and approval
//! files. Knows nothing of how a run executes; the engine and the commands build on it.

pub mod approvals;
pub mod dir;
pub mod durations;
pub mod event;
pub mod exit;
pub mod identity;
pub mod journal;
pub mod lock;
pub mod plan_file;
pub mod record;
pub mod rehearsal;
pub mod signature;
pub mod store;
