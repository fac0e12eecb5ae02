//! The doorbell: words in shared memory through which serving sides wake
//! whoever waits for completions (the dispatcher thread, or host threads
//! blocked in wait or drain), instead of leaving them to a timed poll.
//!
//! It lives in the runtime's control page, mapped MAP_SHARED before any
//! child is forked, so children ring the same words.

use crate::sys;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::Duration;

/// Words in shared memory through which serving sides wake whoever waits
/// for completions (the dispatcher thread, or host threads blocked in wait
/// or drain), instead of leaving them to a timed poll.
///
/// Layout (u32 each): `callers_seq` and `dispatcher_seq` (the futexes host
/// threads and the dispatcher sleep on: separate, so a ring meant for a
/// host thread never wakes the dispatcher too), `dispatcher_asleep`,
/// `callers` (host threads waiting for completions; while any do, they poll
/// and the dispatcher stays out of the way), `callers_asleep`.
#[derive(Clone, Copy, Debug)]
pub struct Doorbell {
    base: NonNull<AtomicU32>,
}

// SAFETY: the words are only accessed atomically.
unsafe impl Send for Doorbell {}
// SAFETY: as above.
unsafe impl Sync for Doorbell {}

/// Bytes of shared memory a doorbell needs.
pub const DOORBELL_BYTES: usize = 20;

const CALLERS_SEQ: usize = 0;
const DISPATCHER_SEQ: usize = 1;
const DISPATCHER_ASLEEP: usize = 2;
const CALLERS: usize = 3;
const CALLERS_ASLEEP: usize = 4;

/// Who is sleeping on a doorbell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sleeper {
    /// The dispatcher thread.
    Dispatcher,
    /// A host thread in wait or drain.
    Caller,
}

impl Doorbell {
    /// Wraps `DOORBELL_BYTES` of zeroed shared memory.
    ///
    /// # Safety
    /// `base` must be 4-aligned and point to `DOORBELL_BYTES` that outlive every copy.
    pub unsafe fn from_raw(base: NonNull<u8>) -> Doorbell {
        Doorbell { base: base.cast() }
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: per `from_raw`, i < 5.
        unsafe { &*self.base.as_ptr().add(i) }
    }

    fn words(&self, who: Sleeper) -> (&AtomicU32, &AtomicU32) {
        match who {
            Sleeper::Dispatcher => (self.word(DISPATCHER_SEQ), self.word(DISPATCHER_ASLEEP)),
            Sleeper::Caller => (self.word(CALLERS_SEQ), self.word(CALLERS_ASLEEP)),
        }
    }

    /// Serving side, after TASK_DONE: wakes the host threads that sleep
    /// waiting, or else the dispatcher if it sleeps and no host thread
    /// waits. Costs a fence and up to three loads when nobody sleeps.
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.word(CALLERS_ASLEEP).load(Ordering::Relaxed) != 0 {
            self.wake(Sleeper::Caller);
        } else if self.word(DISPATCHER_ASLEEP).load(Ordering::Relaxed) != 0
            && self.word(CALLERS).load(Ordering::Relaxed) == 0
        {
            self.wake(Sleeper::Dispatcher);
        }
    }

    /// Wakes host threads asleep waiting, if any: a completion handed over
    /// by someone else (the dispatcher) may be the one they wait for.
    pub fn wake_callers_if_asleep(&self) {
        fence(Ordering::SeqCst);
        if self.word(CALLERS_ASLEEP).load(Ordering::Relaxed) != 0 {
            self.wake(Sleeper::Caller);
        }
    }

    /// Wakes every sleeper of that kind unconditionally.
    pub fn wake(&self, who: Sleeper) {
        let (seq, _) = self.words(who);
        seq.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(seq, i32::MAX);
    }

    /// Announces a sleep; returns the sequence to sleep on. The sleeper
    /// must re-check its condition after this and before `sleep`.
    pub fn prepare_sleep(&self, who: Sleeper) -> u32 {
        let (seq, asleep) = self.words(who);
        let s = seq.load(Ordering::SeqCst);
        asleep.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        s
    }

    /// Sleeps until rung (sequence moved) or `timeout`.
    pub fn sleep(&self, who: Sleeper, seq: u32, timeout: Option<Duration>) {
        sys::futex_wait(self.words(who).0, seq, timeout);
        self.cancel_sleep(who);
    }

    /// Gives up a prepared sleep.
    pub fn cancel_sleep(&self, who: Sleeper) {
        self.words(who).1.fetch_sub(1, Ordering::SeqCst);
    }

    /// Host threads waiting for completions.
    pub fn callers(&self) -> u32 {
        self.word(CALLERS).load(Ordering::SeqCst)
    }

    /// A host thread starts waiting: the dispatcher steps aside.
    pub fn caller_enter(&self) {
        self.word(CALLERS).fetch_add(1, Ordering::SeqCst);
    }

    /// A host thread stops waiting; true if it was the last. The caller must
    /// then poll once more: a completion stored before this may not have rung.
    pub fn caller_leave(&self) -> bool {
        let last = self.word(CALLERS).fetch_sub(1, Ordering::SeqCst) == 1;
        fence(Ordering::SeqCst);
        last
    }
}
