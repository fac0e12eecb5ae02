//! Waiting: for one task, or for all (drain). A drain releases no id while
//! another thread still has to see the outcome it waits for, and a wait
//! from inside a callable of this runtime never hangs.

use super::{phase, Runtime};
use crate::abi::DistTaskId;
use crate::engine::Engine;
use crate::status::{fail, Error, Result, Status};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts a thread inside `wait` while it lives; the last one to leave
/// wakes the drains that held back for it.
struct Waiting<'a>(&'a Runtime);

impl<'a> Waiting<'a> {
    fn enter(rt: &'a Runtime) -> Waiting<'a> {
        rt.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(rt)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.draining.load(Ordering::SeqCst) > 0
        {
            self.0.shared.wake_waiters();
        }
    }
}

/// Counts a thread inside `drain` while it lives.
struct Draining<'a>(&'a AtomicUsize);

impl<'a> Draining<'a> {
    fn enter(n: &'a AtomicUsize) -> Draining<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Draining(n)
    }
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Runtime {
    /// Waits for one task; returns its outcome. From inside a callable of
    /// this runtime's pool threads, a wait that can never end (on the
    /// callable's own task, on a task that needs it, or with every busy
    /// worker waiting like this) returns BAD_STATE instead of hanging.
    pub fn wait(&self, id: DistTaskId) -> Result<()> {
        self.wait_until(id, None)
    }

    /// As `wait`, giving up after `timeout` with TIMEOUT (the task is
    /// unaffected and can be waited for again). A zero timeout only looks.
    pub fn wait_timeout(&self, id: DistTaskId, timeout: Duration) -> Result<()> {
        self.wait_until(id, Some(Instant::now() + timeout))
    }

    fn wait_until(&self, id: DistTaskId, deadline: Option<Instant>) -> Result<()> {
        if self.phase()? == phase::FAILED {
            self.accepting()?;
        }
        let _inside = Waiting::enter(self);
        let nested = self.pool_worker();
        let r = self
            .shared
            .wait_for_until(deadline, |e| match e.outcome(id) {
                Err(err) => Some(Err(self.unknown_after_close(err))),
                Ok(Some(r)) => Some(r),
                // Recorded and checked in one critical section: of two callables
                // that close a cycle, only the second one sees the deadlock.
                Ok(None) => nested.and_then(|w| {
                    e.set_nested_wait(w, Some(id));
                    let stuck = e.nested_deadlock(w, id);
                    if stuck.is_some() {
                        e.set_nested_wait(w, None);
                    }
                    stuck.map(Err)
                }),
            });
        if let Some(w) = nested {
            self.shared.lock().set_nested_wait(w, None);
        }
        r.unwrap_or_else(|| {
            fail(
                Status::Timeout,
                format!(
                    "task {id:#x} has not finished yet; it runs on and can be waited for again"
                ),
            )
        })
    }

    /// An unknown id while shutting down was released by the shutdown.
    fn unknown_after_close(&self, err: Error) -> Error {
        if self.phase.load(Ordering::Acquire) == phase::CLOSING {
            Error::new(
                Status::ShutDown,
                "the worker shut down; finished tasks were released",
            )
        } else {
            err
        }
    }

    /// Waits for every submitted task; returns the first failure since the
    /// last drain and releases every finished task's id. Refused
    /// (BAD_STATE) from inside a callable of this runtime, whose own task
    /// could never finish meanwhile.
    pub fn drain(&self) -> Result<()> {
        if self.phase()? == phase::FAILED {
            self.accepting()?;
        }
        if let Some(w) = self.pool_worker() {
            return fail(
                Status::BadState,
                format!(
                    "drain called from a callable running on pool thread of worker {w}: it \
                     would wait for that callable's own task (deadlock); wait on the \
                     tasks it dispatched instead"
                ),
            );
        }
        let _inside = Draining::enter(&self.draining);
        let r = self
            .shared
            .wait_for(|e| self.drainable(e).then(|| e.drain()));
        self.shared.notify();
        r
    }

    /// Whether a drain may release the finished ids now: nothing is
    /// unfinished and no thread still has to see the outcome it waits for.
    fn drainable(&self, e: &Engine) -> bool {
        e.unfinished() == 0 && self.waiting.load(Ordering::SeqCst) == 0
    }
}
