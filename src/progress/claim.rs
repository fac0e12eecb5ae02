//! Claiming completions: scanning in-flight mailboxes, handing what they
//! hold to the engine, and taking broken or dead workers out of their pools.

use super::{Locked, Progress};
use crate::clock;
use crate::doorbell::Sleeper;
use crate::engine::token_launch;
use crate::log::{self, Level};
use crate::mailbox::state;
use crate::status::{Error, Status};
use crate::worker::Worker;
use std::sync::atomic::Ordering;

/// What a poll found on one worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// TASK_DONE with this error code (and, on failure, the child's message).
    Done(i32, Option<String>),
    /// A state the protocol does not allow while a task is in flight.
    Broken(u32),
    /// TASK_DONE that echoes another launch: stale or written twice.
    Stale,
}

/// Claims `w`'s completion, if its mailbox holds one for the task in
/// flight: the token is swapped to 0 (so exactly one claimer wins), the
/// error and message are read, and IDLE hands the mailbox back, all before
/// the engine hears of it (so a shutdown that follows the engine's last
/// completion is never overwritten). Returns the token claimed and what
/// was found. Lock-free; any thread may call it.
pub(crate) fn claim(w: &Worker) -> Option<(u64, Claim)> {
    let tok = w.in_flight.load(Ordering::Acquire);
    if tok == 0 {
        return None;
    }
    let found = match w.mailbox.state() {
        // IDLE while in flight is a child's store caught half-way: a
        // reference child written in Python (struct.pack_into) zeroes the
        // word before writing TASK_DONE. Look again later.
        state::TASK_READY | state::IDLE => return None,
        state::TASK_DONE => match w.mailbox.completes_launch(token_launch(tok)) {
            Some(false) => Claim::Stale,
            _ => Claim::Done(w.mailbox.error(), None),
        },
        other => Claim::Broken(other),
    };
    if !take_token(w, tok) {
        return None;
    }
    Some((
        tok,
        match found {
            Claim::Done(error, _) => {
                // Read before IDLE hands the mailbox back.
                let message = (error != 0).then(|| w.mailbox.message()).flatten();
                #[cfg(loom)]
                if super::loom_model::bugs::idle_after_complete() {
                    return Some((tok, Claim::Done(error, message))); // IDLE comes later
                }
                w.mailbox.hand_back();
                Claim::Done(error, message)
            }
            other => other,
        },
    ))
}

/// Takes the in-flight token `tok` from `w`: true for exactly one claimer.
fn take_token(w: &Worker, tok: u64) -> bool {
    #[cfg(loom)]
    if super::loom_model::bugs::plain_claim() {
        w.in_flight.store(0, Ordering::Release);
        return true;
    }
    w.in_flight
        .compare_exchange(tok, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

impl Progress {
    /// Scans in-flight mailboxes once and hands completions to the engine,
    /// taking the engine lock at the first one and keeping it for the rest
    /// of the scan. Returns how many it handled. Any thread may call it.
    pub fn poll(&self) -> usize {
        let mut engine: Option<Locked<'_>> = None;
        let mut now = 0;
        let mut handled = 0;
        for w in self.workers() {
            let Some((tok, claim)) = claim(w) else {
                continue;
            };
            let e = engine.get_or_insert_with(|| {
                // One clock read per batch: every completion in it ends now.
                let e = self.lock();
                now = clock::ticks();
                e
            });
            hand_over(e, w, tok, claim, now);
            handled += 1;
        }
        if let Some(e) = engine {
            self.after_claims(e);
        }
        handled
    }

    /// A pool thread's own completion, claimed by the thread that ran it
    /// (unless another poller took it first): the engine hears of it, and
    /// what became ready is launched, before the thread looks for work.
    pub fn claim_own(&self, worker: usize) {
        let w = &self.workers()[worker];
        if let Some((tok, claim)) = claim(w) {
            let mut e = self.lock();
            hand_over(&mut e, w, tok, claim, clock::ticks());
            self.after_claims(e);
        }
    }

    /// After claims under `e`: waiters learn of them, then the lock goes
    /// (launching what became ready).
    fn after_claims(&self, e: Locked<'_>) {
        self.epoch.fetch_add(1, Ordering::Release);
        self.notify();
        drop(e);
        // A host thread asleep in wait/drain was not rung for these (the
        // worker saw them claimed): wake it to look.
        self.bell.wake_callers_if_asleep();
    }

    /// Takes the worker of a child that died out of its pool; its task (if
    /// any) fails with CHILD_DIED.
    pub fn child_died(&self, worker: usize, how: &str) {
        let w = &self.workers()[worker];
        self.retire_worker(
            worker,
            Error::new(Status::ChildDied, format!("{w} {how}; it leaves the pool")),
        );
    }

    /// Takes a worker out of its pool for good; its task (if any) fails
    /// with `cause`. Waiters and the dispatcher are woken.
    pub fn retire_worker(&self, worker: usize, cause: Error) {
        let w = &self.workers()[worker];
        let mut engine = self.lock();
        if engine.is_retired(worker) {
            return;
        }
        // Under the lock no launch can race this; a poller that already
        // claimed a completion finds the worker retired and leaves it out.
        let tok = w.in_flight.swap(0, Ordering::AcqRel);
        engine.retire(worker, tok, cause, clock::ticks());
        self.epoch.fetch_add(1, Ordering::Release);
        self.notify();
        drop(engine);
        self.bell.wake(Sleeper::Caller);
        self.bell.wake(Sleeper::Dispatcher);
    }

    /// The workers with a task in flight.
    pub fn busy_workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers()
            .iter()
            .filter(|w| w.in_flight.load(Ordering::Acquire) != 0)
    }

    pub(super) fn busy(&self) -> bool {
        self.workers()
            .iter()
            .any(|w| w.in_flight.load(Ordering::Acquire) != 0)
    }

    /// A task in flight on a worker that is not a pool thread (those claim
    /// their own completions): only then is the dispatcher's spin worth it.
    pub(super) fn busy_elsewhere(&self) -> bool {
        self.workers()
            .iter()
            .any(|w| !w.on_pool_thread() && w.in_flight.load(Ordering::Acquire) != 0)
    }

    pub(super) fn deaf_busy(&self) -> bool {
        self.workers()
            .iter()
            .any(|w| !w.rings() && w.in_flight.load(Ordering::Acquire) != 0)
    }
}

/// Hands one claimed completion of `w` to the engine: the member ends, or
/// a worker that broke the protocol leaves its pool.
fn hand_over(e: &mut Locked<'_>, w: &Worker, tok: u64, claim: Claim, now: u64) {
    match claim {
        Claim::Done(error, message) => {
            if log::enabled(Level::Debug) {
                let id = e.task_of_token(tok);
                e.note(
                    Level::Debug,
                    format!("task {id:#x} ended on {w} with error {error}"),
                );
            }
            e.complete(w.index, tok, error, message, now)
        }
        Claim::Broken(s) => {
            let err = Error::new(
                Status::Protocol,
                format!(
                    "{w} left its mailbox in state {s} while running a task; \
                     the worker leaves the pool"
                ),
            );
            e.retire(w.index, tok, err, now);
        }
        Claim::Stale => {
            let err = Error::new(
                Status::Protocol,
                format!(
                    "{w} stored TASK_DONE for launch {} while launch {} ran \
                     (a stale or doubled completion); the worker leaves the pool",
                    w.mailbox.done_seq(),
                    token_launch(tok)
                ),
            );
            e.retire(w.index, tok, err, now);
        }
    }
}
