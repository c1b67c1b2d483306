//! The journal's mirror in the shared store: every record also goes to the store as its own
//! object, in order. Records the store could not take stay in the local journal (the spool)
//! and in a queue, and go out before the next one; a mutating step waits for all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// After a failed send, ordinary records wait this long before the store is tried again,
    /// so a store that is down does not slow every step by its timeouts.
    quiet_until: Option<Instant>,
}

const BACK_OFF: Duration = Duration::from_secs(5);

impl Remote {
    pub fn new(store: Arc<dyn Store>, lock: Arc<dyn HeldLock>, run_id: &str, next: u64) -> Remote {
        Remote {
            store,
            lock,
            run_id: run_id.to_owned(),
            next,
            pending: Vec::new(),
            stopped: None,
            warned: false,
            quiet_until: None,
        }
    }

    /// Queues a record and sends everything queued. With `required`, any record still not
    /// stored is an error; without, a warning (once) and the record waits in the queue.
    pub fn send(&mut self, kind: &str, line: &str, required: bool) -> Result<(), String> {
        if let Some(reason) = &self.stopped {
            return if required { Err(reason.clone()) } else { Ok(()) };
        }
        self.pending.push((self.next, kind.to_owned(), line.to_owned()));
        self.next += 1;
        if !required && self.quiet_until.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        match self.flush() {
            Ok(()) => Ok(()),
            Err(err) if required => Err(err),
            Err(err) => {
                self.quiet_until = Some(Instant::now() + BACK_OFF);
                if !self.warned {
                    self.warned = true;
                    eprintln!(
                        "warning: {err}; records stay in the local journal and go to the store before the next mutating step"
                    );
                }
                Ok(())
            }
        }
    }

    /// Sends the queue, oldest first, stopping at the first failure.
    fn flush(&mut self) -> Result<(), String> {
        while let Some((seq, kind, line)) = self.pending.first() {
            self.store.put_record(&self.run_id, *seq, kind, line)?;
            self.pending.remove(0);
        }
        self.quiet_until = None;
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

impl Drop for Remote {
    /// At the end of the run, one more try for records the store missed (it may be back).
    fn drop(&mut self) {
        if self.stopped.is_some() || self.pending.is_empty() {
            return;
        }
        if let Err(err) = self.flush() {
            eprintln!(
                "warning: {} record(s) of run {} are only in the local journal: {err}",
                self.pending.len(),
                self.run_id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::Remote;
    use crate::store::{Acquired, Broken, HeldLock, Holder, LockName, LockState, RunEntry, Store};

    /// A store that takes records only while `up`, and remembers what it took.
    #[derive(Default)]
    struct Flaky {
        up: Mutex<bool>,
        taken: Mutex<Vec<(u64, String)>>,
    }

    impl Store for Flaky {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn shared(&self) -> bool {
            true
        }
        fn acquire(&self, _: &LockName, _: &Holder) -> Result<Acquired, String> {
            Err("unused".into())
        }
        fn status(&self, _: Option<&str>, _: Option<&str>) -> Result<Vec<LockState>, String> {
            Ok(Vec::new())
        }
        fn break_lock(&self, _: &LockName, _: &str, _: &str) -> Result<Broken, String> {
            Err("unused".into())
        }
        fn put_record(&self, _: &str, seq: u64, _: &str, line: &str) -> Result<(), String> {
            if !*self.up.lock().map_err(|e| e.to_string())? {
                return Err("store down".into());
            }
            self.taken.lock().map_err(|e| e.to_string())?.push((seq, line.to_owned()));
            Ok(())
        }
        fn next_seq(&self, _: &str) -> Result<u64, String> {
            Ok(0)
        }
        fn put_note(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn history(&self) -> Result<Vec<RunEntry>, String> {
            Ok(Vec::new())
        }
        fn run(&self, _: &str) -> Result<Option<crate::record::Recorded>, String> {
            Ok(None)
        }
    }

    struct Lock(Mutex<Option<String>>);

    impl HeldLock for Lock {
        fn check(&self) -> Result<(), String> {
            match self.0.lock().map_err(|e| e.to_string())?.clone() {
                Some(reason) => Err(reason),
                None => Ok(()),
            }
        }
    }

    fn set_up(store: &Flaky, up: bool) {
        if let Ok(mut flag) = store.up.lock() {
            *flag = up;
        }
    }

    #[test]
    fn records_the_store_missed_go_out_in_order_before_a_mutating_step() {
        let store = Arc::new(Flaky::default());
        let lock = Arc::new(Lock(Mutex::new(None)));
        let mut remote = Remote::new(store.clone(), lock.clone(), "r1", 5);
        set_up(&store, false);
        assert_eq!(remote.send("stage_started", "one", false), Ok(()), "an ordinary record waits");
        assert!(remote.send("step_started", "two", true).is_err(), "a mutating step's record must be stored");
        set_up(&store, true);
        assert_eq!(remote.send("step_started", "three", true), Ok(()));
        let taken = store.taken.lock().map(|t| t.clone()).unwrap_or_default();
        assert_eq!(taken, [(5, "one".to_owned()), (6, "two".to_owned()), (7, "three".to_owned())]);
    }

    #[test]
    fn a_lost_lock_stops_every_later_shared_write() {
        let store = Arc::new(Flaky::default());
        set_up(&store, true);
        let lock = Arc::new(Lock(Mutex::new(Some("taken over".into()))));
        let mut remote = Remote::new(store.clone(), lock, "r1", 0);
        let refused = remote.check_lock().err().unwrap_or_default();
        assert!(refused.contains("taken over") && refused.contains("runbook resume r1"), "{refused}");
        assert!(remote.send("step_started", "x", true).is_err());
        assert_eq!(remote.send("run_finished", "y", false), Ok(()));
        assert!(store.taken.lock().map(|t| t.is_empty()).unwrap_or(false), "nothing written after the loss");
    }
}
