//! Task deadlines: overdue tasks end with TIMEOUT and their workers leave
//! the pool; sleeps are bounded so an overdue task is noticed in time.

use super::Progress;
use crate::status::{Error, Status};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Progress {
    /// Ends tasks past their deadline: each fails with TIMEOUT and its
    /// worker leaves the pool (a spawned child is killed; the reaper reaps it).
    pub fn check_deadlines(&self) {
        let Some(limit) = self.policy.task_timeout else {
            return;
        };
        let limit_ns = limit.as_nanos() as u64;
        let now = crate::worker::now_ns();
        for w in self.busy_workers() {
            if now.saturating_sub(w.launched_at.load(Ordering::Relaxed)) < limit_ns {
                continue;
            }
            let engine = self.lock();
            // Re-check under the lock: the worker may have finished and
            // started another task since.
            let overdue = w.in_flight.load(Ordering::Acquire) != 0
                && crate::worker::now_ns().saturating_sub(w.launched_at.load(Ordering::Relaxed))
                    >= limit_ns
                && !engine.is_retired(w.index);
            drop(engine);
            if !overdue {
                continue;
            }
            // Retired first, so the task ends with TIMEOUT, not CHILD_DIED.
            self.retire_worker(
                w.index,
                Error::new(
                    Status::Timeout,
                    format!("{w} ran its task past the {limit:?} deadline; it leaves the pool"),
                ),
            );
            if let crate::worker::Mode::Spawned(pid) = w.mode {
                crate::sys::kill_child(pid);
            }
        }
    }

    /// Longest sleep that still notices an overdue task in time.
    pub(super) fn nap_bound(&self, nap: Duration) -> Duration {
        match self.policy.task_timeout {
            Some(t) if self.busy() => nap.min((t / 4).max(Duration::from_millis(1))),
            _ => nap,
        }
    }
}
