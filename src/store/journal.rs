//! The journal's mirror in the shared store: every record also goes to the store as its own
//! object, in order. Records the store could not take stay in the local journal (the spool)
//! and in a queue, and go out before the next one; a mutating step waits for all of them.

use std::sync::Arc;

use super::{HeldLock, Store};

pub struct Remote {
    store: Arc<dyn Store>,
    lock: Arc<dyn HeldLock>,
    run_id: String,
    next: u64,
    /// Records not yet in the store, oldest first: (sequence number, kind, line).
    pending: Vec<(u64, String, String)>,
    /// Set once the lock is lost: this process no longer writes the shared journal.
    stopped: Option<String>,
    warned: bool,
}

impl Remote {
    pub fn new(store: Arc<dyn Store>, lock: Arc<dyn HeldLock>, run_id: &str, next: u64) -> Remote {
        Remote { store, lock, run_id: run_id.to_owned(), next, pending: Vec::new(), stopped: None, warned: false }
    }

    /// Queues a record and sends everything queued. With `required`, any record still not
    /// stored is an error; without, a warning (once) and the record waits in the queue.
    pub fn send(&mut self, kind: &str, line: &str, required: bool) -> Result<(), String> {
        if let Some(reason) = &self.stopped {
            return if required { Err(reason.clone()) } else { Ok(()) };
        }
        self.pending.push((self.next, kind.to_owned(), line.to_owned()));
        self.next += 1;
        while let Some((seq, kind, line)) = self.pending.first() {
            match self.store.put_record(&self.run_id, *seq, kind, line) {
                Ok(()) => {
                    self.pending.remove(0);
                }
                Err(err) if required => return Err(err),
                Err(err) => {
                    if !self.warned {
                        self.warned = true;
                        eprintln!(
                            "warning: {err}; records stay in the local journal and go to the store before the next mutating step"
                        );
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Before a mutating step: is the lock still ours?
    pub fn check_lock(&mut self) -> Result<(), String> {
        if let Some(reason) = &self.stopped {
            return Err(reason.clone());
        }
        self.lock.check().map_err(|reason| {
            let reason =
                format!("{reason}; the run stops here and can be continued with `runbook resume {}`", self.run_id);
            self.stopped = Some(reason.clone());
            reason
        })
    }
}
