//! Waiting for completions: a host thread in wait or drain polls the
//! mailboxes itself for a short window (a hot worker answers within it),
//! then sleeps on the doorbell, which serving sides ring when they finish.

use super::Progress;
use crate::doorbell::Sleeper;
use crate::engine::Engine;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How the dispatcher and waiting host threads wait for completions.
#[derive(Clone, Copy, Debug)]
pub struct WaitPolicy {
    /// Dispatcher: spin this long after the last event before sleeping.
    pub spin: Duration,
    /// Dispatcher: sleep at most this long while a worker that never rings
    /// (a caller-owned child) has work in flight.
    pub poll: Duration,
    /// Dispatcher: sleep at most this long otherwise (a liveness tick).
    pub idle: Duration,
    /// Host thread in wait/drain: poll this long before sleeping.
    pub caller_spin: Duration,
    /// A task running longer fails with TIMEOUT and its worker leaves the
    /// pool (a spawned child is killed). None: no deadline.
    pub task_timeout: Option<Duration>,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            spin: Duration::from_micros(50),
            poll: Duration::from_micros(50),
            idle: Duration::from_millis(500),
            caller_spin: Duration::from_micros(5),
            task_timeout: None,
        }
    }
}

/// Looks a waiting host thread spins before it starts yielding.
const PURE_SPIN_LOOKS: u32 = 16;

impl Progress {
    /// Blocks until `done` gives a value. While it waits, this thread makes
    /// progress itself and the dispatcher steps aside: it polls the
    /// mailboxes for a short window (a hot worker answers within it), then
    /// sleeps on the doorbell, which serving sides ring when they finish.
    pub fn wait_for<T>(&self, done: impl FnMut(&mut Engine) -> Option<T>) -> T {
        self.wait_for_until(None, done).expect("no deadline")
    }

    /// As `wait_for`, but gives up (None) once `deadline` passes.
    pub fn wait_for_until<T>(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut Engine) -> Option<T>,
    ) -> Option<T> {
        let passed = || deadline.is_some_and(|d| Instant::now() >= d);
        let (spin, mut seen) = {
            let mut engine = self.lock();
            // Read under the lock: every completion handed over after this
            // check moves the epoch past `seen`, so none goes unnoticed.
            let seen = self.epoch.load(Ordering::Acquire);
            if let Some(v) = done(&mut engine) {
                return Some(v);
            }
            // A worker just woken from sleep takes a wake-up to start; it
            // may be placed on this core, so sleep at once and let it run.
            let spin = if self.last_launch_woke.load(Ordering::Relaxed) {
                Duration::ZERO
            } else {
                self.policy.caller_spin
            };
            (spin, seen)
        };
        if self.workers.get().is_none() {
            return self.wait_on_condition(deadline, done);
        }
        let mut check = |this: &Self| {
            this.poll();
            let now = this.epoch.load(Ordering::Acquire);
            if now == seen {
                return None;
            }
            seen = now;
            done(&mut this.lock())
        };
        self.bell.caller_enter();
        let start = Instant::now();
        let mut looks = 0u32;
        let found = loop {
            if let Some(v) = check(self) {
                break Some(v);
            }
            if passed() {
                break None;
            }
            if start.elapsed() >= spin {
                let seq = self.bell.prepare_sleep(Sleeper::Caller);
                if let Some(v) = check(self) {
                    self.bell.cancel_sleep(Sleeper::Caller);
                    break Some(v);
                }
                let mut nap = if self.deaf_busy() {
                    self.policy.poll
                } else {
                    self.policy.idle
                };
                if let Some(d) = deadline {
                    nap = nap.min(d.saturating_duration_since(Instant::now()));
                }
                self.bell
                    .sleep(Sleeper::Caller, seq, Some(self.nap_bound(nap)));
                self.check_deadlines();
            } else if looks < PURE_SPIN_LOOKS {
                looks += 1;
                std::hint::spin_loop();
            } else {
                // The worker we wait for may need this core (more runnable
                // parties than cores): let it run between looks.
                crate::loom::yield_now();
            }
        };
        if self.bell.caller_leave() {
            // Completions stored while we polled did not ring the dispatcher:
            // take them now, and hand work that never rings back to it.
            self.poll();
            if self.deaf_busy() {
                self.bell.wake(Sleeper::Dispatcher);
            }
        }
        found
    }

    /// Blocks on the engine's condition until `done` gives a value or the
    /// deadline passes.
    fn wait_on_condition<T>(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut Engine) -> Option<T>,
    ) -> Option<T> {
        let mut engine = self.lock();
        loop {
            if let Some(v) = done(&mut engine) {
                return Some(v);
            }
            let timeout = match deadline {
                Some(d) if Instant::now() >= d => return None,
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            engine = self.wait_released(engine, timeout);
        }
    }
}
